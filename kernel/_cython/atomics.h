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
 */
#ifndef KERNEL_ATOMICS_H
#define KERNEL_ATOMICS_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)

static inline int64_t atomic_load_i64(int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
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

#elif defined(_MSC_VER)

#include <intrin.h>

/* Aligned 64-bit loads are single-copy atomic on x64/ARM64; volatile keeps
 * the compiler from caching the value. */
static __inline int64_t atomic_load_i64(int64_t *p)
{
    return *(volatile int64_t *)p;
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

#else /* portable C11 fallback */

#include <stdatomic.h>

static inline int64_t atomic_load_i64(int64_t *p)
{
    return atomic_load_explicit((_Atomic int64_t *)p, memory_order_relaxed);
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
