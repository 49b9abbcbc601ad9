/* Hand-written C loops: the kernel's speed targets, timed by the benchmark
 * runner side by side with the kernels on the same data, interleaved round by
 * round (registered in kernel/bench/cloops.py: one entry per loop).
 *
 * Calling convention (what cloops.py passes):
 *   single-line orders: fn(stock, sku, qty, status, n[, threads])
 *   carts:              fn(stock, start, sku, qty, status, n[, threads])
 * status[i] = 0 accepted, 1 refused.
 *
 * seq_*: one thread, plain loads and stores (a single-writer loop: no
 *        atomics, so not safe to share; the upper bound).
 * cas_*: OpenMP threads, compare-and-swap per decision (what any lock-free
 *        kernel must at least pay).
 * Carts: all-or-nothing per order; a line that cannot fit rolls back.
 */
#include <stdint.h>

/* Prefetch distance (orders for single-line loops, lines for carts). */
#ifndef SINGLE_AHEAD
#define SINGLE_AHEAD 16
#endif
#ifndef CARTS_AHEAD
#define CARTS_AHEAD 16
#endif
#define PREFETCH_SINGLE(i) do { if (SINGLE_AHEAD > 0 && (i) + SINGLE_AHEAD < n) \
    __builtin_prefetch(&stock[sku[(i) + SINGLE_AHEAD]], 1, 3); } while (0)
#define PREFETCH_LINE(l) do { if (CARTS_AHEAD > 0 && (l) + CARTS_AHEAD < n_lines) \
    __builtin_prefetch(&stock[sku[(l) + CARTS_AHEAD]], 1, 3); } while (0)

void seq_single(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        PREFETCH_SINGLE(i);
        int64_t s = sku[i], q = qty[i];
        if (stock[s] >= q) { stock[s] -= q; status[i] = 0; } else status[i] = 1;
    }
}

void cas_single(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status, int64_t n, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        PREFETCH_SINGLE(i);
        int64_t s = sku[i], q = qty[i];
        int64_t v = __atomic_load_n(&stock[s], __ATOMIC_RELAXED);
        status[i] = 1;
        while (v >= q) {
            if (__atomic_compare_exchange_n(&stock[s], &v, v - q, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                status[i] = 0;
                break;
            }
        }
    }
}

void seq_carts(int64_t *stock, const int64_t *start, const int64_t *sku, const int64_t *qty, int8_t *status,
               int64_t n) {
    int64_t n_lines = start[n];
    for (int64_t o = 0; o < n; o++) {
        int64_t l, ok = 1;
        for (l = start[o]; l < start[o + 1]; l++) {
            PREFETCH_LINE(l);
            if (stock[sku[l]] < qty[l]) { ok = 0; break; }
            stock[sku[l]] -= qty[l];
        }
        if (!ok) for (int64_t k = start[o]; k < l; k++) stock[sku[k]] += qty[k];
        status[o] = ok ? 0 : 1;
    }
}

void cas_carts(int64_t *stock, const int64_t *start, const int64_t *sku, const int64_t *qty, int8_t *status,
               int64_t n, int threads) {
    int64_t n_lines = start[n], rollbacks = 0;
    #pragma omp parallel for num_threads(threads) schedule(static) reduction(+:rollbacks)
    for (int64_t o = 0; o < n; o++) {
        int64_t l, ok = 1;
        for (l = start[o]; l < start[o + 1]; l++) {
            PREFETCH_LINE(l);
            int64_t s = sku[l], q = qty[l];
            int64_t v = __atomic_load_n(&stock[s], __ATOMIC_RELAXED);
            int took = 0;
            while (v >= q) {
                if (__atomic_compare_exchange_n(&stock[s], &v, v - q, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                    took = 1;
                    break;
                }
            }
            if (!took) { ok = 0; break; }
        }
        if (!ok && l > start[o]) {
            for (int64_t k = start[o]; k < l; k++) __atomic_fetch_add(&stock[sku[k]], qty[k], __ATOMIC_ACQ_REL);
            rollbacks++;
        }
        status[o] = ok ? 0 : 1;
    }
    if (rollbacks) {  /* G4, as the kernels' concurrent mode: re-run the refused in arrival order */
        for (int64_t o = 0; o < n; o++) {
            if (!status[o]) continue;
            int64_t l, ok = 1;
            for (l = start[o]; l < start[o + 1]; l++) {
                if (stock[sku[l]] < qty[l]) { ok = 0; break; }
                stock[sku[l]] -= qty[l];
            }
            if (!ok) for (int64_t k = start[o]; k < l; k++) stock[sku[k]] += qty[k];
            status[o] = ok ? 0 : 1;
        }
    }
}
