/*
 * Tiny atomic helpers on int64_t words for kernels.pyx.
 *
 * Memory orders.  Every stock word is an independent counter: no kernel ever
 * reads one word to decide how to publish another, so there is nothing for an
 * acquire load to order.  A relaxed load is only a *guess* of the current
 * value; correctness comes from the CAS, which fails (and hands back the real
 * value) whenever the guess is stale.  The CAS/fetch-add use ACQ_REL so the
 * read-modify-write itself is totally ordered per word, and the join at the
 * end of the OpenMP region (or the GIL re-acquire) publishes everything the
 * threads wrote to the caller.
 *
 * Order words (tracked orders) are different: a reserve writes the order's
 * record (user, deadline, fill range, fill log) and *then* publishes it with
 * the CAS that makes the word HELD (release, via ACQ_REL).  A kernel that
 * reads a word and then the record loads the word with
 * atomic_load_acquire_i64, so it sees the record published with that word.
 * atomic_store_i64 (release) is for the plain final stores of order words:
 * whatever was written before (fill entries zeroed, stock given back) is
 * visible to whoever reads the new state.
 */
#ifndef KERNEL_ATOMICS_H
#define KERNEL_ATOMICS_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)

static inline int64_t atomic_load_i64(int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Acquire load: reads after it see what was written before the release that
 * stored the value it returns (see "Order words" above). */
static inline int64_t atomic_load_acquire_i64(int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Release store: writes before it are visible to an acquire load of v. */
static inline void atomic_store_i64(int64_t *p, int64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Strong CAS: on failure *expected receives the current value, so the caller
 * can re-decide without another load. */
static inline int atomic_cas_i64(int64_t *p, int64_t *expected, int64_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* Fetch-add; returns the old value. */
static inline int64_t atomic_add_i64(int64_t *p, int64_t v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}

/* Exchange; returns the old value.  Gives a fill-log entry back exactly once
 * when a live cancel and a recovery race for it: whoever swaps out a non-zero
 * quantity owns those units. */
static inline int64_t atomic_exchange_i64(int64_t *p, int64_t v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
}

#elif defined(_MSC_VER)

#include <intrin.h>

/* Aligned 64-bit loads are single-copy atomic on x64/ARM64; volatile keeps
 * the compiler from caching the value. */
static __inline int64_t atomic_load_i64(int64_t *p)
{
    return *(volatile int64_t *)p;
}

/* x64: every plain load is an acquire in hardware, so a volatile load plus a
 * compiler barrier (no later access hoisted above it) is enough; ARM64 needs
 * the ldar instruction. */
static __inline int64_t atomic_load_acquire_i64(int64_t *p)
{
#if defined(_M_ARM64)
    return (int64_t)__ldar64((unsigned __int64 volatile *)p);
#else
    int64_t v = *(volatile int64_t *)p;
    _ReadWriteBarrier();
    return v;
#endif
}

/* x64: every plain store is a release in hardware (barrier: no earlier access
 * sunk below it); ARM64 needs stlr. */
static __inline void atomic_store_i64(int64_t *p, int64_t v)
{
#if defined(_M_ARM64)
    __stlr64((unsigned __int64 volatile *)p, (unsigned __int64)v);
#else
    _ReadWriteBarrier();
    *(volatile int64_t *)p = v;
#endif
}

static __inline int atomic_cas_i64(int64_t *p, int64_t *expected, int64_t desired)
{
    int64_t old = _InterlockedCompareExchange64((volatile __int64 *)p, desired, *expected);
    if (old == *expected)
        return 1;
    *expected = old;
    return 0;
}

static __inline int64_t atomic_add_i64(int64_t *p, int64_t v)
{
    return _InterlockedExchangeAdd64((volatile __int64 *)p, v);
}

static __inline int64_t atomic_exchange_i64(int64_t *p, int64_t v)
{
    return _InterlockedExchange64((volatile __int64 *)p, v);
}

#else /* portable C11 fallback */

#include <stdatomic.h>

static inline int64_t atomic_load_i64(int64_t *p)
{
    return atomic_load_explicit((_Atomic int64_t *)p, memory_order_relaxed);
}

static inline int64_t atomic_load_acquire_i64(int64_t *p)
{
    return atomic_load_explicit((_Atomic int64_t *)p, memory_order_acquire);
}

static inline void atomic_store_i64(int64_t *p, int64_t v)
{
    atomic_store_explicit((_Atomic int64_t *)p, v, memory_order_release);
}

static inline int atomic_cas_i64(int64_t *p, int64_t *expected, int64_t desired)
{
    return atomic_compare_exchange_strong_explicit((_Atomic int64_t *)p, expected, desired,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

static inline int64_t atomic_add_i64(int64_t *p, int64_t v)
{
    return atomic_fetch_add_explicit((_Atomic int64_t *)p, v, memory_order_acq_rel);
}

static inline int64_t atomic_exchange_i64(int64_t *p, int64_t v)
{
    return atomic_exchange_explicit((_Atomic int64_t *)p, v, memory_order_acq_rel);
}

#endif

/* Write-intent prefetch hint: random stock words miss cache, and a locked CAS
 * stalls the pipeline until its line arrives, so misses of consecutive orders
 * would not overlap on their own.  Prefetching a few orders ahead restores
 * memory-level parallelism.  A hint only: never faults, no-op elsewhere. */
#if defined(__GNUC__) || defined(__clang__)
#define prefetch_rw(p) __builtin_prefetch((const void *)(p), 1, 3)
#else
#define prefetch_rw(p) ((void)(p))
#endif

#endif /* KERNEL_ATOMICS_H */
