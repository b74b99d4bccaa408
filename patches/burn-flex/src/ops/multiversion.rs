//! Element-wise loops compiled for the running CPU's vector width (cxrlens patch, see
//! `PATCH.md`).
//!
//! The crate is built for the target's baseline (SSE2 on x86-64), so loops that LLVM
//! vectorises on their own (batch norm's passes, ReLU's gradient mask, 2×2 max pooling) ran four
//! lanes wide, or scalar, on CPUs with AVX2 or AVX-512. [`multiversion!`] compiles such a loop
//! three times (AVX-512F, AVX2 + FMA, baseline) and picks one per call from the CPU's features
//! (`std` caches the detection). The arithmetic is the same in each: Rust never fuses `a * b + c`
//! into an FMA by itself, and lane-wise partial sums stay lane-wise, so all three give the same
//! bits.

/// Defines `fn $name` whose body is compiled for AVX-512F, for AVX2 + FMA and for the baseline,
/// dispatched at run time on x86-64 with `std`; just the baseline elsewhere. Generic parameters
/// take one bound each.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($g:ident : $bound:path),* $(,)?>)?
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(all(target_arch = "x86_64", feature = "std"))]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the running CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the running CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
