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
 *
 * Not weak, how it was checked (bench/c_variants.py: every variant built
 * with -O3 -march=native -fopenmp, timed side by side, interleaved rounds,
 * every call checked; 2-core AMD EPYC VM, 2 MiB L2 / 32 MiB L3, shared with
 * other jobs, so medians of 3-5 rounds; M orders/s):
 *  - prefetch SINGLE_AHEAD / CARTS_AHEAD 0/4/8/16 at scale 1.0 (10M orders,
 *    1M SKUs: 8 MB of stock, in L3): seq_single 608/579/520/502, cas_single
 *    2 threads 360/357/361/355, seq_carts 127/111/118/121, cas_carts 2
 *    threads 129/129/129/130 (1 thread 63-64 for every distance).  The
 *    out-of-order core already overlaps the independent stock misses, and a
 *    prefetch costs an extra load and address computation per order: the
 *    distance is 0 (no prefetch); the macros stay to re-check.
 *  - past the cache it is the other way round: 1M orders / carts over 4M
 *    SKUs (32 MB of stock), SINGLE_AHEAD_BIG / CARTS_AHEAD_BIG none/8/16/32/
 *    64/128/256 (min of 9-12 rounds): seq_single 134/156/180/250/323/378/388,
 *    cas_single 1 thread 80/94/122/157/181/184/182, seq_carts
 *    36/40/49/67/96/120/110, cas_carts 1 thread 21/30/38/51/63/65/65.  So
 *    the *_pf twins prefetch 128 ahead, and cloops.py calls them for stocks
 *    of at least 2^21 words (no registry workload has one; the threshold is
 *    the kernels' own, kernel/_cython/general.pxi).
 *  - the run-coalescing twins (seq_single_runs, cas_single_runs, below)
 *    against the per-order loops, scale 1.0: flash sale 2,252 vs 1,500
 *    (seq) and 2,539 vs 908 (CAS, 1 thread); uniform 425 vs 481 (seq,
 *    spreads 28-322%), zipf 104 vs 170 (seq).  Both are registered: the
 *    report takes the best C loop per workload, mode and thread count.
 *  - single-writer vs CAS: both registered, the report takes the better at
 *    each thread count (the single-writer figure bounds every count).
 *  - cas_carts re-runs the refused orders in arrival order after a rollback
 *    (the kernels' G4 rule) on two or more threads: without it its result
 *    would not meet the concurrent mode's guarantee; on carts (stock for 17x
 *    the demand) it costs nothing (no rollback happens).
 */
#include <stdint.h>
#include <omp.h>

/* Prefetch distance (orders for single-line loops, lines for carts) of the
 * plain loops, and of their *_pf twins, which cloops.py calls instead when
 * the stock has at least 2^21 words (16 MiB: past what the last-level cache
 * keeps, as the kernels decide, kernel/_cython/general.pxi). */
#ifndef SINGLE_AHEAD
#define SINGLE_AHEAD 0
#endif
#ifndef CARTS_AHEAD
#define CARTS_AHEAD 0
#endif
#ifndef SINGLE_AHEAD_BIG
#define SINGLE_AHEAD_BIG 128
#endif
#ifndef CARTS_AHEAD_BIG
#define CARTS_AHEAD_BIG 128
#endif
#define PREFETCH_SINGLE(i) do { if (ahead > 0 && (i) + ahead < n) \
    __builtin_prefetch(&stock[sku[(i) + ahead]], 1, 3); } while (0)
#define PREFETCH_LINE(l) do { if (ahead > 0 && (l) + ahead < n_lines) \
    __builtin_prefetch(&stock[sku[(l) + ahead]], 1, 3); } while (0)

static inline void seq_single_ahead(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status,
                                    int64_t n, const int64_t ahead) {
    for (int64_t i = 0; i < n; i++) {
        PREFETCH_SINGLE(i);
        int64_t s = sku[i], q = qty[i];
        if (stock[s] >= q) { stock[s] -= q; status[i] = 0; } else status[i] = 1;
    }
}

static inline void cas_single_ahead(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status,
                                    int64_t n, int threads, const int64_t ahead) {
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

static inline void seq_carts_ahead(int64_t *stock, const int64_t *start, const int64_t *sku, const int64_t *qty,
                                   int8_t *status, int64_t n, const int64_t ahead) {
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

static inline void cas_carts_ahead(int64_t *stock, const int64_t *start, const int64_t *sku, const int64_t *qty,
                                   int8_t *status, int64_t n, int threads, const int64_t ahead) {
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
    /* G4, as the kernels' concurrent mode: re-run the refused in arrival
     * order, unless one thread made every rollback (an order gives back
     * before the next is decided: the facade skips that re-run too). */
    if (rollbacks && threads > 1) {
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

#define I64 int64_t
void seq_single(I64 *stock, const I64 *sku, const I64 *qty, int8_t *status, I64 n) {
    seq_single_ahead(stock, sku, qty, status, n, SINGLE_AHEAD);
}
void seq_single_pf(I64 *stock, const I64 *sku, const I64 *qty, int8_t *status, I64 n) {
    seq_single_ahead(stock, sku, qty, status, n, SINGLE_AHEAD_BIG);
}
void cas_single(I64 *stock, const I64 *sku, const I64 *qty, int8_t *status, I64 n, int threads) {
    cas_single_ahead(stock, sku, qty, status, n, threads, SINGLE_AHEAD);
}
void cas_single_pf(I64 *stock, const I64 *sku, const I64 *qty, int8_t *status, I64 n, int threads) {
    cas_single_ahead(stock, sku, qty, status, n, threads, SINGLE_AHEAD_BIG);
}
void seq_carts(I64 *stock, const I64 *start, const I64 *sku, const I64 *qty, int8_t *status, I64 n) {
    seq_carts_ahead(stock, start, sku, qty, status, n, CARTS_AHEAD);
}
void seq_carts_pf(I64 *stock, const I64 *start, const I64 *sku, const I64 *qty, int8_t *status, I64 n) {
    seq_carts_ahead(stock, start, sku, qty, status, n, CARTS_AHEAD_BIG);
}
void cas_carts(I64 *stock, const I64 *start, const I64 *sku, const I64 *qty, int8_t *status, I64 n, int threads) {
    cas_carts_ahead(stock, start, sku, qty, status, n, threads, CARTS_AHEAD);
}
void cas_carts_pf(I64 *stock, const I64 *start, const I64 *sku, const I64 *qty, int8_t *status, I64 n, int threads) {
    cas_carts_ahead(stock, start, sku, qty, status, n, threads, CARTS_AHEAD_BIG);
}

/* Single-line orders with runs of one SKU coalesced (what a flash sale is):
 * the run is decided greedily in arrival order against a value held in a
 * register, then stored once (seq) or published with ONE CAS, recomputed if
 * the word moved (cas); once the SKU is sold out the rest of the run is
 * refused without a decision each.  Same outcome as the per-order loops. */
#include <string.h>

/* The run's end: one by one for its first LONG_RUN orders (most runs are
 * short), then four at a time, one branch for the four, as the kernels'
 * _run_end does (kernel/_cython/single.pxi says why and what it measured). */
#define LONG_RUN 8
static inline int64_t run_end(const int64_t *sku, int64_t i, int64_t n) {
    int64_t s = sku[i], j = i + 1;
    while (j < n && sku[j] == s) {
        j++;
        if (j - i == LONG_RUN) {
            while (j + 4 <= n && ((sku[j] ^ s) | (sku[j + 1] ^ s) | (sku[j + 2] ^ s) | (sku[j + 3] ^ s)) == 0) j += 4;
            while (j < n && sku[j] == s) j++;
            break;
        }
    }
    return j;
}

static inline int64_t decide_run(int64_t v, const int64_t *qty, int8_t *status, int64_t i, int64_t j) {
    for (int64_t k = i; k < j; k++) {
        if (v == 0) { memset(&status[k], 1, (size_t)(j - k)); break; }
        int64_t q = qty[k];
        if (q <= v) { v -= q; status[k] = 0; } else status[k] = 1;
    }
    return v;
}

void seq_single_runs(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status, int64_t n) {
    for (int64_t i = 0; i < n;) {
        int64_t j = run_end(sku, i, n), s = sku[i];
        stock[s] = decide_run(stock[s], qty, status, i, j);
        i = j;
    }
}

void cas_single_runs(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status, int64_t n,
                     int threads) {
    #pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
        for (int64_t i = lo; i < hi;) {
            int64_t j = run_end(sku, i, hi), s = sku[i];
            int64_t cur = __atomic_load_n(&stock[s], __ATOMIC_RELAXED);
            for (;;) {
                int64_t v = decide_run(cur, qty, status, i, j);
                if (v == cur) break;  /* nothing taken: no write */
                if (__atomic_compare_exchange_n(&stock[s], &cur, v, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) break;
            }
            i = j;
        }
    }
}
