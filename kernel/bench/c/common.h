/* Static inline helpers shared by the C loops of kernel/bench/c/ (included,
 * not compiled on its own: cloops.load() compiles the *.c files).
 *
 * ATOMIC arguments are compile-time constants at every call, so the
 * compiler keeps one branch: plain loads and stores (the single-writer
 * loops) or relaxed loads and CAS (the OpenMP loops). */
#ifndef KERNEL_BENCH_C_COMMON_H
#define KERNEL_BENCH_C_COMMON_H
#include <stdint.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CAS(p, e, d) __atomic_compare_exchange_n((p), (e), (d), 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)

/* First statement of every prefetch-only helper: an empty volatile asm.
 * Without it GCC 12 (-O1 and up) deleted every call of such a helper, its
 * prefetches having no side effect (checked with objdump: no prefetchw left
 * in the loops). */
#define KEEP_PREFETCHES() __asm__ __volatile__("")

/* Units SKU s's offers priced <= mp hold, walked in priority order and
 * counted only until q (the read-only pre-check of
 * kernel/reference/stock.py offers_available). */
static inline int64_t offers_enough(const int ATOMIC, const int64_t *stock, const int64_t *price,
                                    const int64_t *offer_start, const int64_t *by_prio, int64_t s, int64_t mp,
                                    int64_t q) {
    int64_t total = 0;
    for (int64_t k = offer_start[s], e = offer_start[s + 1]; k < e; k++) {
        int64_t offer = by_prio[k];
        if (price[offer] > mp) break;
        total += ATOMIC ? LOAD(&stock[offer]) : stock[offer];
        if (total >= q) break;
    }
    return total;
}

/* min(stock[offer], need) taken from the offer (one CAS when ATOMIC,
 * retried while the word moves and still holds units); returns it. */
static inline int64_t take_up_to(const int ATOMIC, int64_t *stock, int64_t offer, int64_t need) {
    int64_t v = ATOMIC ? LOAD(&stock[offer]) : stock[offer];
    if (!ATOMIC) {
        int64_t got = v < need ? v : need;
        stock[offer] = v - got;
        return got;
    }
    while (v > 0) {
        int64_t g = v < need ? v : need;
        if (CAS(&stock[offer], &v, v - g)) return g;
    }
    return 0;
}

#endif
