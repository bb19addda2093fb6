//! Loops compiled for the vector instructions of the CPU they run on, chosen at run time:
//! msbreg's own kernels on flex (batch norm + ReLU, the convolution's gathers) and the
//! augmentation. The binary is built for x86-64's baseline, so without this their loops would
//! use SSE2's 4 lanes on every machine.

/// `run` compiled for the best vector instructions this CPU has, chosen at run time (pulp:
/// AVX-512, AVX2 with FMA, or x86-64's baseline SSE2, which the binary is built for). Mark
/// the closure `#[inline(always)]`: inlined into each of pulp's variants, its plain loops are
/// vectorised for that variant's instructions (`objdump` shows `zmm` registers in each batch
/// norm kernel; without the attribute some closures stayed calls, compiled for SSE2). No
/// floating-point operation changes (Rust fuses and reorders nothing), so the results are the
/// same bits on every variant.
#[inline]
pub fn vectorized<R>(run: impl FnOnce() -> R) -> R {
    struct Run<F>(F);
    impl<R, F: FnOnce() -> R> pulp::WithSimd for Run<F> {
        type Output = R;
        // Always: the closure must be compiled inside pulp's variant for its instructions.
        #[allow(clippy::inline_always)]
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> R {
            (self.0)()
        }
    }
    pulp::Arch::new().dispatch(Run(run))
}

/// The variant [`vectorized`] runs on this CPU, in words (`bench train --profile` prints it
/// beside gemm's choice: they dispatch separately, and a build without pulp's `x86-v3` feature
/// once ran these loops on SSE2 while gemm used AVX2).
#[must_use]
pub fn variant() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match pulp::Arch::new() {
            pulp::Arch::V4(_) => "AVX-512",
            pulp::Arch::V3(_) => "AVX2 + FMA",
            _ => "SSE2 (x86-64's baseline)",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "pulp's choice for this CPU"
    }
}

#[cfg(test)]
mod tests {
    /// pulp's levels are separate features (Cargo.toml): built with "x86-v4" alone, a CPU with
    /// AVX2 but not AVX-512 got the baseline variant, SSE2, for every loop here.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_cpu_with_avx2_gets_a_vector_variant() {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let arch = pulp::Arch::new();
        if avx2 {
            assert!(
                !matches!(arch, pulp::Arch::Scalar),
                "{arch:?} on a CPU with AVX2 + FMA"
            );
            assert_ne!(super::variant(), "SSE2 (x86-64's baseline)");
        }
    }
}
