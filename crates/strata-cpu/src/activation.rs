//! Scalar definitions of the activations, shared by the GEMM epilogue and the unary ops.

pub use strata_core::kernel::Activation;

/// `√(2/π)`.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// Evaluation of an [`Activation`] on the CPU.
pub(crate) trait Apply {
    fn apply_f32(self, x: f32) -> f32;
    fn apply_f64(self, x: f64) -> f64;
}

impl Apply for Activation {
    #[inline]
    fn apply_f32(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * libm::erfcf(-x * std::f32::consts::FRAC_1_SQRT_2),
            // ½(1 + tanh z) = σ(2z), without the cancellation for z < 0.
            Activation::GeluTanh => x / (1.0 + (-2.0 * SQRT_2_OVER_PI as f32 * (x + 0.044715 * x * x * x)).exp()),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }

    #[inline]
    fn apply_f64(self, x: f64) -> f64 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2),
            Activation::GeluTanh => x / (1.0 + (-2.0 * SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).exp()),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }
}
