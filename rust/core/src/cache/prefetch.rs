//! A cache-line prefetch hint, for the few places where the next cache miss is known
//! one step ahead (the next LRU victim, the admission filter's second counter block).

/// Asks the CPU to start loading `value`'s cache line; does nothing elsewhere than x86_64.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is in the
        // target's baseline features); it is a hint that never faults or writes, and the
        // pointer comes from a live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
