/* Hand-written C baselines of the tracked (flash-sale service) path: the
 * kernel's speed target in mode "tracked", registered in
 * kernel/bench/cloops.py (timed by the runner side by side with the
 * kernels, checked: no oversell, conservation, one HELD / REFUSED record per
 * order, caps honoured, and the serial loop's accepted count equal to the
 * kernels' tracked count on one thread); bench/tracked_vs_c.py also compares
 * its one-thread tables with the kernel's word for word.
 *
 * Same work per order as the kernel's reserve of one tracked single-line
 * order (kernel/reference/tracked.py): claim the id in an open-addressing
 * table (duplicate -> 2), check stock (-> 1) and the user's cap on the SKU
 * (-> 3), write the hold record (user, deadline, fill range), count the
 * units against the (user, SKU) pair, take the stock, log the fill, publish
 * PENDING -> HELD; a refused order ends REFUSED.  Same hash, same table
 * layout as the kernel's version-3 state (kernel/codes.py): 4-word records,
 * 2-word (key, count) pairs, so with one thread the statuses and tables
 * equal the kernel's word for word (bench/tracked_vs_c.py checks that).
 *
 * Unlike the kernel it does everything in one pass (the kernel claims the
 * whole batch first, then reserves, then settles the refused), and takes
 * its fill-log entry at the order's index (the kernel hands out a range per
 * batch): the best the work allows, not a copy of the kernel's structure.
 *
 * seq_*: one thread, plain loads and stores (single writer: not safe to
 *        share, the upper bound);
 * cas_*: OpenMP threads, a CAS or fetch-add per shared-word decision.
 * Both prefetch the record, the pair and the stock word TRACKED_AHEAD orders
 * ahead (TRACKED_CART_AHEAD carts ahead for the cart loops).
 *
 * Not weak, how it was checked (bench/c_variants.py --modes tracked, side
 * by side, interleaved, checked; 2-core shared VM; M orders/s, median and
 * best round): TRACKED_AHEAD 0/4/8/16/32 (0: the current order, nothing
 * ahead) at scale 0.1, uniform: seq_tracked_single 17.1 (17.7) / 25.0
 * (26.2) / 30.0 (32.1) / 12.7 (21.3) / 16.2 (21.6), cas_tracked_single one
 * thread 10.4 / 12.4 / 21.0 / 9.0 / 9.1: 8 kept (earlier, with
 * bench/tracked_vs_c.py --c-ahead 4,8,16: seq 25.1/28.6/17.6, CAS
 * 17.7/21.6/13.5).  Carts: GCC 12 had deleted prefetch_cart's calls (a
 * helper with a loop and only prefetches: no side effect; objdump showed no
 * prefetchw in the cart loops), so the cart loops ran without prefetch
 * (6.3 M carts/s seq, 4.5 CAS, whatever the distance); with the empty
 * volatile asm that keeps them, TRACKED_CART_AHEAD 0/4/8/16/32 carts:
 * seq_tracked_carts 5.6 (7.2) / 8.2 (11.2) / 7.6 (9.8) / 6.9 (9.8) / 9.3
 * (9.8), cas_tracked_carts one thread 3.7 (5.4) / 5.6 (7.5) / 5.4 (6.7) /
 * 5.0 (6.8) / 5.8 (6.8): 4 kept.
 *
 * Tracked carts over priced offers (seq_tracked_general,
 * cas_tracked_general; the marketplace workload, kernel/reference/tracked.py
 * take_tracked with take_line): as the carts, but each line walks its SKU's
 * offers in priority order, stopping at the first priced above the line's
 * limit (pre-check counted until enough, then the take, min(stock, need)
 * per offer), and logs each take at its own fill-log entry, one per offer
 * slot of each line (slot_start, the kernels' fill_slot for a batch: the
 * record's range is slot_start[a] .. slot_start[b]).  The cap pre-check is
 * read only (a refused cart adds no pair, as the reference); the take
 * resumes the probe where the pre-check stopped.  With one thread it leaves
 * the reference's tracked result in arrival order word for word: statuses,
 * stock, order table, limit table, fill log (tests/test_bench_cloops.py).
 * Prefetch, TRACKED_GENERAL_AHEAD carts ahead: the record, the pairs and
 * the offer ranges; half as far ahead the priority lists and first offers.
 * Measured (bench/c_variants.py --workloads marketplace --modes tracked
 * --aheads 0,4,8,16,32 --rounds 7, side by side, interleaved, checked;
 * shared 2-core VM; M carts/s median (best round)): scale 1.0 (2M carts,
 * 128 MiB order and limit tables): seq_tracked_general 9.7 (10.8) / 12.2
 * (12.7) / 12.2 (12.6) / 12.0 (12.3) / 12.2 (12.6), cas_tracked_general
 * one thread 8.6 (9.1) / 10.6 (10.9) / 10.4 (10.7) / 10.4 (10.7) / 10.6
 * (10.7): prefetch pays ~25%, any distance 4-32 alike; at scale 0.1 (tables
 * 16 MiB) all within 8%, 4 best by median (seq 13.5, CAS 11.0 against 13.1
 * and 10.8 at 8): 4 kept.  Two threads: 10-20 M/s, spreads 25-170% (the
 * other jobs on the VM), no distance apart.  The CAS loop does not re-run
 * the refused after a rollback as the kernels' facade does (nor does
 * cas_tracked_carts): on one thread a rollback restores what it took before
 * anything else runs, so it changes no decision; on more threads it is
 * work the C loop leaves out (rare here: a rollback needs a line short
 * after its pre-check passed).
 *
 * Calling convention: baseline.c's (stock, [start,] sku, qty, status,
 * n), then the tracked arguments, then ``threads`` for the cas_ loops; the
 * general ones general.c's (stock, price, offer_start, offer_by_priority,
 * start, sku, qty, max_price, slot_start, status, n) then the tracked
 * arguments (fill_offer, fill_qty: slot_start[n_lines] entries).
 */
#include <stdint.h>

#include "common.h"

#ifndef TRACKED_AHEAD
#define TRACKED_AHEAD 8
#endif
/* Carts (~3 lines each): orders ahead for the cart loops. */
#ifndef TRACKED_CART_AHEAD
#define TRACKED_CART_AHEAD 4
#endif

#define MULT 0x9E3779B97F4A7C15ULL
#define STATE_SHIFT 56
#define ID_MASK ((INT64_C(1) << STATE_SHIFT) - 1)
#define PENDING INT64_C(1)
#define HELD INT64_C(2)
#define REFUSED INT64_C(6)
#define NO_DEADLINE INT64_MAX
#define FILL_COUNT_BITS 24

static inline int64_t hash_slot(int64_t key, int64_t mask) {
    return (int64_t)(((uint64_t)key * MULT) >> 32) & mask;
}

/* Claim id in PENDING: its record's word, or NULL if the table has it
 * (a duplicate). */
static inline int64_t *claim_id(const int ATOMIC, int64_t *order_table, int64_t order_mask, int64_t id) {
    int64_t slot = hash_slot(id, order_mask), mine = (PENDING << STATE_SHIFT) | id;
    for (;;) {
        int64_t *word = &order_table[4 * slot];
        int64_t w = ATOMIC ? LOAD(word) : *word;
        if (w == 0) {
            if (!ATOMIC) { *word = mine; return word; }
            if (CAS(word, &w, mine)) return word;
        }
        if ((w & ID_MASK) == id) return 0;
        slot = (slot + 1) & order_mask;
    }
}

/* One tracked single-line order.  ATOMIC selects the CAS / plain version at
 * compile time (the compiler removes the other branches). */
static inline int8_t tracked_one(const int ATOMIC, int64_t *stock, int64_t s, int64_t q, int64_t id, int64_t user,
                                 int64_t *order_table, int64_t order_mask, int64_t *limit_table, int64_t limit_mask,
                                 int64_t *fill_offer, int64_t *fill_qty, int64_t f, int64_t n_skus, int64_t cap) {
    int64_t mine = (PENDING << STATE_SHIFT) | id, *word = claim_id(ATOMIC, order_table, order_mask, id);
    if (!word) return 2;
    int8_t status = 0;
    /* pre-checks: stock, then the cap */
    int64_t key = user * n_skus + s + 1, p = hash_slot(key, limit_mask), *pair;
    if ((ATOMIC ? LOAD(&stock[s]) : stock[s]) < q) { status = 1; goto refuse; }
    for (;;) {
        pair = &limit_table[2 * p];
        int64_t k = ATOMIC ? LOAD(pair) : *pair;
        if (k == key) break;
        if (k == 0) {
            if (!ATOMIC) { *pair = key; break; }
            if (CAS(pair, &k, key) || k == key) break;
        }
        p = (p + 1) & limit_mask;
    }
    if ((ATOMIC ? LOAD(&pair[1]) : pair[1]) + q > cap) { status = 3; goto refuse; }
    /* record, then the cap count, then the stock */
    word[1] = user;
    word[2] = NO_DEADLINE;
    word[3] = (f << FILL_COUNT_BITS) | 1;
    if (ATOMIC) {
        int64_t c = LOAD(&pair[1]);
        for (;;) {
            if (c + q > cap) { status = 3; goto clear; }
            if (CAS(&pair[1], &c, c + q)) break;
        }
        int64_t v = LOAD(&stock[s]);
        for (;;) {
            if (v < q) { __atomic_fetch_add(&pair[1], -q, __ATOMIC_ACQ_REL); status = 1; goto clear; }
            if (CAS(&stock[s], &v, v - q)) break;
        }
    } else {
        pair[1] += q;  /* the pre-check saw room, and no one else writes */
        stock[s] -= q;  /* the pre-check saw enough, and no one else writes */
    }
    fill_offer[f] = s;
    fill_qty[f] = q;
    if (ATOMIC) {
        int64_t expected = mine;
        if (!CAS(word, &expected, (HELD << STATE_SHIFT) | id)) return 4;  /* cancelled meanwhile: not in a bench */
    } else {
        *word = (HELD << STATE_SHIFT) | id;
    }
    return 0;
clear:  /* refused after the record was written: back as the claim left it (the kernels' clear_record) */
    word[1] = word[2] = word[3] = 0;
refuse:
    if (ATOMIC) __atomic_store_n(word, (REFUSED << STATE_SHIFT) | id, __ATOMIC_RELEASE);
    else *word = (REFUSED << STATE_SHIFT) | id;
    return status;
}

static inline void prefetch_order(const int64_t *sku, const int64_t *order_id, const int64_t *user_id,
                                  int64_t *stock, int64_t *order_table, int64_t order_mask, int64_t *limit_table,
                                  int64_t limit_mask, int64_t n_skus, int64_t i) {
    KEEP_PREFETCHES();
    int64_t s = sku[i];
    __builtin_prefetch(&order_table[4 * hash_slot(order_id[i], order_mask)], 1, 3);
    __builtin_prefetch(&limit_table[2 * hash_slot(user_id[i] * n_skus + s + 1, limit_mask)], 1, 3);
    __builtin_prefetch(&stock[s], 1, 3);
}

#define TRACKED_ARGS const int64_t *order_id, const int64_t *user_id, int64_t *order_table, int64_t order_slots, \
    int64_t *limit_table, int64_t limit_slots, int64_t *fill_offer, int64_t *fill_qty, int64_t n_skus, int64_t cap

void seq_tracked_single(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status, int64_t n,
                        TRACKED_ARGS) {
    int64_t om = order_slots - 1, lm = limit_slots - 1;
    for (int64_t i = 0; i < n; i++) {
        if (i + TRACKED_AHEAD < n)
            prefetch_order(sku, order_id, user_id, stock, order_table, om, limit_table, lm, n_skus, i + TRACKED_AHEAD);
        status[i] = tracked_one(0, stock, sku[i], qty[i], order_id[i], user_id[i], order_table, om, limit_table, lm,
                                fill_offer, fill_qty, i, n_skus, cap);
    }
}

void cas_tracked_single(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status, int64_t n,
                        TRACKED_ARGS, int threads) {
    int64_t om = order_slots - 1, lm = limit_slots - 1;
    #pragma omp parallel num_threads(threads)
    {
        /* static blocks: each thread walks its own range, prefetching in it */
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (i + TRACKED_AHEAD < n)
                prefetch_order(sku, order_id, user_id, stock, order_table, om, limit_table, lm, n_skus,
                               i + TRACKED_AHEAD);
            status[i] = tracked_one(1, stock, sku[i], qty[i], order_id[i], user_id[i], order_table, om, limit_table,
                                    lm, fill_offer, fill_qty, i, n_skus, cap);
        }
    }
}

/* One tracked cart (lines a..b-1), all or nothing, in the kernel's order:
 * claim; every line's stock, then every line's cap (read only); the record;
 * then per line the cap count and the stock, logging the fill at the line's
 * index; on a refusal the lines taken so far go back (log entry zeroed first). */
#define MAX_CART 64
static inline int8_t tracked_cart(const int ATOMIC, int64_t *stock, const int64_t *sku, const int64_t *qty,
                                  int64_t a, int64_t b, int64_t id, int64_t user, int64_t *order_table,
                                  int64_t order_mask, int64_t *limit_table, int64_t limit_mask, int64_t *fill_offer,
                                  int64_t *fill_qty, int64_t n_skus, int64_t cap) {
    int64_t mine = (PENDING << STATE_SHIFT) | id, *word = claim_id(ATOMIC, order_table, order_mask, id);
    if (!word) return 2;
    int8_t status = 0;
    int64_t *pairs[MAX_CART], l;
    for (l = a; l < b; l++)
        if ((ATOMIC ? LOAD(&stock[sku[l]]) : stock[sku[l]]) < qty[l]) { status = 1; goto refuse; }
    for (l = a; l < b; l++) {  /* find (or make) each line's pair; the pre-check reads its count */
        int64_t key = user * n_skus + sku[l] + 1, p = hash_slot(key, limit_mask), *pair;
        for (;;) {
            pair = &limit_table[2 * p];
            int64_t k = ATOMIC ? LOAD(pair) : *pair;
            if (k == key) break;
            if (k == 0) {
                if (!ATOMIC) { *pair = key; break; }
                if (CAS(pair, &k, key) || k == key) break;
            }
            p = (p + 1) & limit_mask;
        }
        if (l - a < MAX_CART) pairs[l - a] = pair;
        if ((ATOMIC ? LOAD(&pair[1]) : pair[1]) + qty[l] > cap) { status = 3; goto refuse; }
    }
    word[1] = user;
    word[2] = NO_DEADLINE;
    word[3] = (a << FILL_COUNT_BITS) | (b - a);
    for (l = a; l < b; l++) {
        int64_t s = sku[l], q = qty[l], *count = &pairs[(l - a) & (MAX_CART - 1)][1];
        if (ATOMIC) {
            int64_t c = LOAD(count), v;
            for (;;) {
                if (c + q > cap) { status = 3; goto undo; }
                if (CAS(count, &c, c + q)) break;
            }
            v = LOAD(&stock[s]);
            for (;;) {
                if (v < q) { __atomic_fetch_add(count, -q, __ATOMIC_ACQ_REL); status = 1; goto undo; }
                if (CAS(&stock[s], &v, v - q)) break;
            }
        } else {
            if (*count + q > cap) { status = 3; goto undo; }
            if (stock[s] < q) { status = 1; goto undo; }
            *count += q;
            stock[s] -= q;
        }
        fill_offer[l] = s;
        fill_qty[l] = q;
    }
    if (ATOMIC) {
        int64_t expected = mine;
        if (!CAS(word, &expected, (HELD << STATE_SHIFT) | id)) return 4;
    } else {
        *word = (HELD << STATE_SHIFT) | id;
    }
    return 0;
undo:
    for (int64_t k = a; k < l; k++) {
        int64_t got = fill_qty[k];
        fill_qty[k] = 0;
        if (ATOMIC) {
            __atomic_fetch_add(&stock[sku[k]], got, __ATOMIC_ACQ_REL);
            __atomic_fetch_add(&pairs[(k - a) & (MAX_CART - 1)][1], -got, __ATOMIC_ACQ_REL);
        } else {
            stock[sku[k]] += got;
            pairs[(k - a) & (MAX_CART - 1)][1] -= got;
        }
    }
    word[1] = word[2] = word[3] = 0;  /* everything given back: the kernels' clear_record */
refuse:
    if (ATOMIC) __atomic_store_n(word, (REFUSED << STATE_SHIFT) | id, __ATOMIC_RELEASE);
    else *word = (REFUSED << STATE_SHIFT) | id;
    return status;
}

static inline void prefetch_cart(const int64_t *start, const int64_t *sku, const int64_t *order_id,
                                 const int64_t *user_id, int64_t *stock, int64_t *order_table, int64_t order_mask,
                                 int64_t *limit_table, int64_t limit_mask, int64_t n_skus, int64_t o) {
    KEEP_PREFETCHES();
    __builtin_prefetch(&order_table[4 * hash_slot(order_id[o], order_mask)], 1, 3);
    for (int64_t l = start[o]; l < start[o + 1]; l++) {
        __builtin_prefetch(&limit_table[2 * hash_slot(user_id[o] * n_skus + sku[l] + 1, limit_mask)], 1, 3);
        __builtin_prefetch(&stock[sku[l]], 1, 3);
    }
}

void seq_tracked_carts(int64_t *stock, const int64_t *start, const int64_t *sku, const int64_t *qty, int8_t *status,
                       int64_t n, TRACKED_ARGS) {
    int64_t om = order_slots - 1, lm = limit_slots - 1;
    for (int64_t o = 0; o < n; o++) {
        if (o + TRACKED_CART_AHEAD < n)
            prefetch_cart(start, sku, order_id, user_id, stock, order_table, om, limit_table, lm, n_skus,
                          o + TRACKED_CART_AHEAD);
        status[o] = tracked_cart(0, stock, sku, qty, start[o], start[o + 1], order_id[o], user_id[o], order_table, om,
                                 limit_table, lm, fill_offer, fill_qty, n_skus, cap);
    }
}

void cas_tracked_carts(int64_t *stock, const int64_t *start, const int64_t *sku, const int64_t *qty, int8_t *status,
                       int64_t n, TRACKED_ARGS, int threads) {
    int64_t om = order_slots - 1, lm = limit_slots - 1;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t o = 0; o < n; o++) {
        if (o + TRACKED_CART_AHEAD < n)
            prefetch_cart(start, sku, order_id, user_id, stock, order_table, om, limit_table, lm, n_skus,
                          o + TRACKED_CART_AHEAD);
        status[o] = tracked_cart(1, stock, sku, qty, start[o], start[o + 1], order_id[o], user_id[o], order_table, om,
                                 limit_table, lm, fill_offer, fill_qty, n_skus, cap);
    }
}

/* ---- Tracked carts over priced offers (the marketplace workload) ----
 *
 * Same work per order as kernel/reference/tracked.py take_tracked with
 * take_line: claim; every line's stock over its SKU's offers priced within
 * the line's limit (read only, counted until enough), then every line's cap
 * (read only: the probe stops at the pair or at the empty slot it would
 * take, and the take below starts there); the record, its fill range
 * slot_start[a] .. slot_start[b] (one entry per offer of each line's SKU, as
 * the kernels lay the log out); then per line the cap count and the offers
 * in priority order, up to the first priced above the limit, each take
 * logged at slot_start[line] + rank.  A line short of its cap or its units
 * gives back what the order took (cap count of the units missing first,
 * then each logged fill, entry zeroed before its units go back) and the
 * order ends REFUSED. */

/* Probe for key from slot p on: the slot holding it, else the first empty
 * one (where it would go).  Read only. */
static inline int64_t pair_probe(const int ATOMIC, const int64_t *limit_table, int64_t limit_mask, int64_t key,
                                 int64_t p) {
    for (;;) {
        int64_t k = ATOMIC ? LOAD(&limit_table[2 * p]) : limit_table[2 * p];
        if (k == key || k == 0) return p;
        p = (p + 1) & limit_mask;
    }
}

/* The pair of key, inserted if absent, probing from slot p (a slot at or
 * before the key's in its chain: slots are never emptied). */
static inline int64_t *pair_insert(const int ATOMIC, int64_t *limit_table, int64_t limit_mask, int64_t key,
                                   int64_t p) {
    for (;;) {
        int64_t *pair = &limit_table[2 * p], k = ATOMIC ? LOAD(pair) : *pair;
        if (k == key) return pair;
        if (k == 0) {
            if (!ATOMIC) { *pair = key; return pair; }
            if (CAS(pair, &k, key) || k == key) return pair;
        }
        p = (p + 1) & limit_mask;
    }
}

static inline int8_t tracked_general(const int ATOMIC, int64_t *stock, const int64_t *price,
                                     const int64_t *offer_start, const int64_t *by_prio, int64_t a, int64_t b,
                                     const int64_t *sku, const int64_t *qty, const int64_t *max_price,
                                     const int64_t *slot_start, int64_t id, int64_t user, int64_t *order_table,
                                     int64_t order_mask, int64_t *limit_table, int64_t limit_mask,
                                     int64_t *fill_offer, int64_t *fill_qty, int64_t n_skus, int64_t cap) {
    int64_t mine = (PENDING << STATE_SHIFT) | id, *word = claim_id(ATOMIC, order_table, order_mask, id);
    if (!word) return 2;
    int8_t status = 0;
    int64_t at[MAX_CART], *pairs[MAX_CART], l, undo_to;
    for (l = a; l < b; l++)
        if (offers_enough(ATOMIC, stock, price, offer_start, by_prio, sku[l], max_price[l], qty[l]) < qty[l]) {
            status = 1;
            goto refuse;
        }
    for (l = a; l < b; l++) {
        int64_t key = user * n_skus + sku[l] + 1;
        int64_t p = pair_probe(ATOMIC, limit_table, limit_mask, key, hash_slot(key, limit_mask));
        at[(l - a) & (MAX_CART - 1)] = p;
        int64_t *pair = &limit_table[2 * p];
        /* an empty slot: no pair yet, count 0 */
        if ((ATOMIC ? LOAD(pair) : *pair) == key && (ATOMIC ? LOAD(&pair[1]) : pair[1]) + qty[l] > cap) {
            status = 3;
            goto refuse;
        }
    }
    word[1] = user;
    word[2] = NO_DEADLINE;
    word[3] = (slot_start[a] << FILL_COUNT_BITS) | (slot_start[b] - slot_start[a]);
    for (l = a; l < b; l++) {
        int64_t s = sku[l], q = qty[l], mp = max_price[l], key = user * n_skus + s + 1;
        int64_t *count = &(pairs[(l - a) & (MAX_CART - 1)] =
                               pair_insert(ATOMIC, limit_table, limit_mask, key, at[(l - a) & (MAX_CART - 1)]))[1];
        if (ATOMIC) {
            int64_t c = LOAD(count);
            for (;;) {
                if (c + q > cap) { status = 3; undo_to = l; goto undo; }
                if (CAS(count, &c, c + q)) break;
            }
        } else {
            if (*count + q > cap) { status = 3; undo_to = l; goto undo; }
            *count += q;
        }
        int64_t base = offer_start[s], f = slot_start[l], need = q;
        for (int64_t j = 0, m = offer_start[s + 1] - base; j < m; j++) {
            int64_t offer = by_prio[base + j];
            if (price[offer] > mp) break;
            int64_t got = take_up_to(ATOMIC, stock, offer, need);
            if (got) {
                fill_offer[f + j] = offer;
                fill_qty[f + j] = got;
                need -= got;
                if (need == 0) break;
            }
        }
        if (need) {  /* the reference's order: the cap count of what is missing, then every fill */
            if (ATOMIC) __atomic_fetch_add(count, -need, __ATOMIC_ACQ_REL);
            else *count -= need;
            status = 1;
            undo_to = l + 1;
            goto undo;
        }
    }
    if (ATOMIC) {
        int64_t expected = mine;
        if (!CAS(word, &expected, (HELD << STATE_SHIFT) | id)) return 4;  /* cancelled meanwhile: not in a bench */
    } else {
        *word = (HELD << STATE_SHIFT) | id;
    }
    return 0;
undo:
    for (int64_t k = a; k < undo_to; k++) {
        int64_t *count = &pairs[(k - a) & (MAX_CART - 1)][1];
        for (int64_t f = slot_start[k]; f < slot_start[k + 1]; f++) {
            int64_t got = ATOMIC ? __atomic_exchange_n(&fill_qty[f], 0, __ATOMIC_ACQ_REL) : fill_qty[f];
            if (got) {
                if (!ATOMIC) fill_qty[f] = 0;
                if (ATOMIC) {
                    __atomic_fetch_add(&stock[fill_offer[f]], got, __ATOMIC_ACQ_REL);
                    __atomic_fetch_add(count, -got, __ATOMIC_ACQ_REL);
                } else {
                    stock[fill_offer[f]] += got;
                    *count -= got;
                }
            }
        }
    }
    word[1] = word[2] = word[3] = 0;  /* everything given back: the kernels' clear_record */
refuse:
    if (ATOMIC) __atomic_store_n(word, (REFUSED << STATE_SHIFT) | id, __ATOMIC_RELEASE);
    else *word = (REFUSED << STATE_SHIFT) | id;
    return status;
}

/* Carts (1-3 lines, 1-4 offers per SKU): carts ahead for the loops below. */
#ifndef TRACKED_GENERAL_AHEAD
#define TRACKED_GENERAL_AHEAD 4
#endif

/* Two levels, each once the level above is (likely) in cache: cart o's
 * record, pairs and offer ranges; cart o2's (half as far ahead) priority
 * list and first offer's stock and price. */
static inline void prefetch_general_cart(const int64_t *start, const int64_t *sku, const int64_t *order_id,
                                         const int64_t *user_id, const int64_t *stock, const int64_t *price,
                                         const int64_t *offer_start, const int64_t *by_prio, int64_t *order_table,
                                         int64_t order_mask, int64_t *limit_table, int64_t limit_mask,
                                         int64_t n_skus, int64_t o, int64_t o2, int64_t n) {
    KEEP_PREFETCHES();
    if (o < n) {
        __builtin_prefetch(&order_table[4 * hash_slot(order_id[o], order_mask)], 1, 3);
        for (int64_t l = start[o]; l < start[o + 1]; l++) {
            __builtin_prefetch(&limit_table[2 * hash_slot(user_id[o] * n_skus + sku[l] + 1, limit_mask)], 1, 3);
            __builtin_prefetch(&offer_start[sku[l]], 0, 3);
        }
    }
    if (o2 < n) {
        for (int64_t l = start[o2]; l < start[o2 + 1]; l++) {
            int64_t k = offer_start[sku[l]];
            __builtin_prefetch(&by_prio[k], 0, 3);
            int64_t offer = by_prio[k];
            __builtin_prefetch(&stock[offer], 1, 3);
            __builtin_prefetch(&price[offer], 0, 3);
        }
    }
}

#if TRACKED_GENERAL_AHEAD > 0
#define PREFETCH_GENERAL_CART(o)                                                                                  \
    prefetch_general_cart(start, sku, order_id, user_id, stock, price, offer_start, by_prio, order_table, om,     \
                          limit_table, lm, n_skus, (o) + TRACKED_GENERAL_AHEAD, (o) + TRACKED_GENERAL_AHEAD / 2, n)
#else
#define PREFETCH_GENERAL_CART(o) ((void)0)
#endif

#define GENERAL_ARGS int64_t *stock, const int64_t *price, const int64_t *offer_start, const int64_t *by_prio, \
    const int64_t *start, const int64_t *sku, const int64_t *qty, const int64_t *max_price,                   \
    const int64_t *slot_start, int8_t *status, int64_t n

void seq_tracked_general(GENERAL_ARGS, TRACKED_ARGS) {
    int64_t om = order_slots - 1, lm = limit_slots - 1;
    for (int64_t o = 0; o < n; o++) {
        PREFETCH_GENERAL_CART(o);
        status[o] = tracked_general(0, stock, price, offer_start, by_prio, start[o], start[o + 1], sku, qty,
                                    max_price, slot_start, order_id[o], user_id[o], order_table, om, limit_table,
                                    lm, fill_offer, fill_qty, n_skus, cap);
    }
}

void cas_tracked_general(GENERAL_ARGS, TRACKED_ARGS, int threads) {
    int64_t om = order_slots - 1, lm = limit_slots - 1;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t o = 0; o < n; o++) {
        PREFETCH_GENERAL_CART(o);
        status[o] = tracked_general(1, stock, price, offer_start, by_prio, start[o], start[o + 1], sku, qty,
                                    max_price, slot_start, order_id[o], user_id[o], order_table, om, limit_table,
                                    lm, fill_offer, fill_qty, n_skus, cap);
    }
}
