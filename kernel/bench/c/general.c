/* Hand-written C loops of the general path: several priced offers per SKU,
 * carts all or nothing, a price limit per line (the marketplace workload).
 * Registered in kernel/bench/cloops.py; same semantics as
 * kernel/reference/general.py (take_order, roll_back_order):
 *
 *   per order: a read-only pre-check (each line: the units of its SKU's
 *   offers in priority order, stopping at the first offer priced above the
 *   line's limit, counted until enough) -> refused if short; then per line
 *   walk the same offers taking min(stock, need) from each, recording what
 *   it took in taken[slot_start[line] + j] (j: the offer's rank in its SKU);
 *   a line left short gives back every unit of the order and clears its
 *   slots (all or nothing).
 *
 * seq_general: one thread, plain loads and stores (single writer, the upper
 *              bound); its result is the reference's ordered result
 *              (tests/test_bench_cloops.py checks it on a small case).
 * cas_general: OpenMP threads, one CAS per offer taken from, fetch-add to
 *              give back; after the parallel loop, when any rollback
 *              happened on two or more threads, the refused orders run
 *              again in arrival order (the kernels' concurrent rule G4,
 *              kernel/backends.py rerun_refused_after_rollback), so its
 *              result meets the same guarantee as the kernels' concurrent
 *              mode.
 *
 * Both work on the inventory's own layout (stock and price per offer id,
 * offer_start / offer_by_priority per SKU) and get slot_start precomputed
 * and `taken` zeroed outside the timed call (the kernel computes and
 * allocates both inside it): a bound the kernel cannot beat by bookkeeping.
 * Both prefetch in three levels: the offer range of the line GENERAL_AHEAD
 * lines ahead (offer_start[sku]), the priority list of the line half as far
 * ahead, and the first offer's stock and price words a quarter as far ahead
 * (each level read once the one above is in cache).
 *
 * Calling convention:
 *   fn(stock, price, offer_start, offer_by_priority, start, sku, qty,
 *      max_price, slot_start, taken, status, n[, threads])
 * status[o] = 0 accepted, 1 refused.
 *
 * Not weak, how it was checked (bench/c_variants.py, side by side,
 * interleaved, checked; 2-core shared VM, so noisy: spreads 35-100%, hence
 * also the best round): GENERAL_AHEAD 0/8/16/32 on marketplace at scale 1.0
 * (2M carts, 250k offers), M orders/s median (best round): seq_general
 * 14.1 (25.9) / 16.6 (26.3) / 24.1 (32.9) / 20.6 (29.1), cas_general one
 * thread 16.8 (21.9) / 14.7 (18.9) / 24.3 (26.7) / 17.8 (28.0): 16 kept.
 * Note the empty volatile asm in prefetch_line: without it GCC 12 deleted
 * every prefetch of this file (objdump showed none; the first figures taken
 * before that was found measured no prefetch at all).  The pre-check walk
 * and the take walk read the same offers, so the second is served from L1;
 * a 0 taken needs no store (fresh slots are zero).
 * seq_general is checked equal to the reference's ordered result (statuses,
 * stock per offer, fills) in tests/test_bench_cloops.py.
 */
#include <stdint.h>

#include "common.h"

#ifndef GENERAL_AHEAD
#define GENERAL_AHEAD 16
#endif

static inline void prefetch_line(const int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                 const int64_t *by_prio, const int64_t *sku, int64_t l, int64_t n_lines) {
    KEEP_PREFETCHES();
#if GENERAL_AHEAD > 0
    /* Three levels, each once the level above is (likely) in cache: the SKU's
     * offer range, its priority list, its first offer's stock and price. */
    if (l + GENERAL_AHEAD < n_lines) __builtin_prefetch(&offer_start[sku[l + GENERAL_AHEAD]], 0, 3);
    if (l + GENERAL_AHEAD / 2 < n_lines) __builtin_prefetch(&by_prio[offer_start[sku[l + GENERAL_AHEAD / 2]]], 0, 3);
    if (l + GENERAL_AHEAD / 4 < n_lines) {
        int64_t offer = by_prio[offer_start[sku[l + GENERAL_AHEAD / 4]]];
        __builtin_prefetch(&stock[offer], 1, 3);
        __builtin_prefetch(&price[offer], 0, 3);
    }
#else
    (void)stock; (void)price; (void)offer_start; (void)by_prio; (void)sku; (void)l; (void)n_lines;
#endif
}

/* One order, all or nothing.  ATOMIC: CAS / fetch-add versions (the
 * compiler drops the other branches). */
static inline int8_t general_order(const int ATOMIC, int64_t *stock, const int64_t *price,
                                   const int64_t *offer_start, const int64_t *by_prio, int64_t a, int64_t b,
                                   const int64_t *sku, const int64_t *qty, const int64_t *max_price,
                                   const int64_t *slot_start, int64_t *taken, int64_t n_lines, int64_t *rollbacks) {
    int64_t l;
    for (l = a; l < b; l++) {  /* read-only pre-check */
        prefetch_line(stock, price, offer_start, by_prio, sku, l, n_lines);
        if (offers_enough(ATOMIC, stock, price, offer_start, by_prio, sku[l], max_price[l], qty[l]) < qty[l])
            return 1;
    }
    for (l = a; l < b; l++) {
        int64_t s = sku[l], need = qty[l], mp = max_price[l], base = offer_start[s], slot = slot_start[l];
        for (int64_t j = 0, m = offer_start[s + 1] - base; j < m; j++) {
            int64_t offer = by_prio[base + j];
            if (price[offer] > mp) break;
            int64_t got = take_up_to(ATOMIC, stock, offer, need);
            if (got) taken[slot + j] = got;  /* fresh zeroed slots: a 0 needs no store */
            need -= got;
            if (need == 0) break;
        }
        if (need) {  /* roll back the whole order (lines a..l) and clear its slots */
            for (int64_t k = a; k <= l; k++) {
                int64_t kb = offer_start[sku[k]];
                for (int64_t j = 0, m = slot_start[k + 1] - slot_start[k]; j < m; j++) {
                    int64_t got = taken[slot_start[k] + j];
                    if (got) {
                        if (ATOMIC) __atomic_fetch_add(&stock[by_prio[kb + j]], got, __ATOMIC_ACQ_REL);
                        else stock[by_prio[kb + j]] += got;
                        taken[slot_start[k] + j] = 0;
                    }
                }
            }
            (*rollbacks)++;
            return 1;
        }
    }
    return 0;
}

void seq_general(int64_t *stock, const int64_t *price, const int64_t *offer_start, const int64_t *by_prio,
                 const int64_t *start, const int64_t *sku, const int64_t *qty, const int64_t *max_price,
                 const int64_t *slot_start, int64_t *taken, int8_t *status, int64_t n) {
    int64_t rollbacks = 0, n_lines = start[n];
    for (int64_t o = 0; o < n; o++)
        status[o] = general_order(0, stock, price, offer_start, by_prio, start[o], start[o + 1], sku, qty, max_price,
                                  slot_start, taken, n_lines, &rollbacks);
}

void cas_general(int64_t *stock, const int64_t *price, const int64_t *offer_start, const int64_t *by_prio,
                 const int64_t *start, const int64_t *sku, const int64_t *qty, const int64_t *max_price,
                 const int64_t *slot_start, int64_t *taken, int8_t *status, int64_t n, int threads) {
    int64_t rollbacks = 0, n_lines = start[n];
    #pragma omp parallel for num_threads(threads) schedule(static) reduction(+:rollbacks)
    for (int64_t o = 0; o < n; o++)
        status[o] = general_order(1, stock, price, offer_start, by_prio, start[o], start[o + 1], sku, qty, max_price,
                                  slot_start, taken, n_lines, &rollbacks);
    /* G4: units came back after others were refused; re-run the refused in
     * arrival order.  Not after one thread's own rollbacks (an order gives
     * back before the next is decided), as the kernels' facade. */
    if (rollbacks && threads > 1) {
        int64_t again = 0;
        for (int64_t o = 0; o < n; o++)
            if (status[o])
                status[o] = general_order(0, stock, price, offer_start, by_prio, start[o], start[o + 1], sku, qty,
                                          max_price, slot_start, taken, n_lines, &again);
    }
}
