//! `Matmul2d`: `C = op(A)·op(B)` or `C = op(A)·op(B) + C` over optional batch axes.

use super::{Activation, Layout, Storage, TensorMut, TensorRef};
use crate::DType;
use crate::error::{Error, Result};

/// Whether the product replaces C or is added to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatmulMode {
    /// `C = A·B`; C's previous contents are never read.
    #[default]
    Multiply,
    /// `C = A·B + C`.
    MultiplyAccumulate,
}

/// Work applied to every output after the product: `activation(C + bias[j])`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// Nothing.
    #[default]
    None,
    /// Add a bias vector of length `n` (an extra operand), then apply the activation.
    Bias(Activation),
    /// Apply the activation.
    Activation(Activation),
}

impl Epilogue {
    /// Whether a bias operand is expected.
    pub fn has_bias(self) -> bool {
        matches!(self, Epilogue::Bias(_))
    }

    /// The activation applied last.
    pub fn activation(self) -> Activation {
        match self {
            Epilogue::None => Activation::None,
            Epilogue::Bias(a) | Epilogue::Activation(a) => a,
        }
    }
}

/// The scale factors of a scaled (fp8) product: `C = act((sₗ ⊗ sᵣ) ∘ (A·B) (+ C) + bias)`,
/// where `sₗ` is one f32 for the whole left operand (shape `[]`) or one per row of the output
/// (`[m]`), and `sᵣ` one for the whole right operand (`[]`) or one per column (`[n]`) — the
/// per-tensor and per-row scaling of `torch._scaled_mm` and cuBLASLt. The same factors apply
/// to every batch entry.
pub struct Scales<'a, B> {
    /// `sₗ`: `[]` or `[m]`, f32.
    pub left: TensorRef<'a, B>,
    /// `sᵣ`: `[]` or `[n]`, f32.
    pub right: TensorRef<'a, B>,
}

impl<B> Clone for Scales<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Scales<'_, B> {}

/// A 2-D matrix multiplication, batched over any leading axes.
///
/// Operands: left `[..batch, m, k]` (`[..batch, k, m]` with `transpose_left`), right
/// `[..batch, k, n]` (`[..batch, n, k]` with `transpose_right`), output `[..batch, m, n]`,
/// and with a bias epilogue a bias `[n]`. Batch axes must agree exactly (a stride of 0
/// broadcasts). Types: f32·f32, f16·f16 and bf16·bf16 with f32 accumulation (output of the
/// same type or f32), f64·f64 (CPU), i8·i8 → i32, and fp8 (`float8_e4m3fn` or `float8_e5m2`
/// on either side) with f32 accumulation into f32, f16 or bf16, optionally with [`Scales`].
///
/// ```
/// use strata_core::kernel::{Layout, Matmul2d};
///
/// let mm = Matmul2d::new(64, 32, 128).transpose_right(true);
/// let (a, b, c) = (Layout::contiguous(&[64, 128]), Layout::contiguous(&[32, 128]), Layout::contiguous(&[64, 32]));
/// assert!(mm.validate_shapes(&a, &b, &c, None).is_ok());
/// assert!(Matmul2d::new(64, 32, 100).validate_shapes(&a, &b, &c, None).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Matmul2d {
    /// Rows of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// The reduction length.
    pub k: usize,
    /// The left operand is stored `k × m`.
    pub transpose_left: bool,
    /// The right operand is stored `n × k`.
    pub transpose_right: bool,
    /// Allow lower-precision arithmetic where the backend has it (e.g. TF32 tensor cores for
    /// f32 on CUDA). The CPU computes exactly as without it.
    pub relaxed_precision: bool,
    /// Multiply or multiply-accumulate.
    pub mode: MatmulMode,
    /// Bias and activation applied to the result.
    pub epilogue: Epilogue,
}

/// Whether `t` is one of the fp8 types the product takes.
pub fn is_fp8(t: DType) -> bool {
    matches!(t, DType::F8E4M3 | DType::F8E5M2)
}

impl Matmul2d {
    /// `C[m×n] = A[m×k]·B[k×n]`, no transposes, exact precision, no epilogue.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Matmul2d {
            m,
            n,
            k,
            transpose_left: false,
            transpose_right: false,
            relaxed_precision: false,
            mode: MatmulMode::Multiply,
            epilogue: Epilogue::None,
        }
    }

    /// The descriptor whose sizes the operands imply (the last two axes of each).
    pub fn for_operands(left: &Layout, right: &Layout, transpose_left: bool, transpose_right: bool) -> Result<Self> {
        let dims = |l: &Layout, what| -> Result<(usize, usize)> {
            match l.shape() {
                [.., r, c] => Ok((*r, *c)),
                s => Err(Error::InvalidArgument {
                    op: "matmul2d",
                    message: format!("the {what} operand has shape {s:?}; it needs at least 2 axes"),
                }),
            }
        };
        let (lr, lc) = dims(left, "left")?;
        let (rr, rc) = dims(right, "right")?;
        let (m, k) = if transpose_left { (lc, lr) } else { (lr, lc) };
        let n = if transpose_right { rr } else { rc };
        Ok(Matmul2d { transpose_left, transpose_right, ..Matmul2d::new(m, n, k) })
    }

    /// Sets `transpose_left`.
    pub fn transpose_left(mut self, t: bool) -> Self {
        self.transpose_left = t;
        self
    }

    /// Sets `transpose_right`.
    pub fn transpose_right(mut self, t: bool) -> Self {
        self.transpose_right = t;
        self
    }

    /// Sets `relaxed_precision`.
    pub fn relaxed_precision(mut self, r: bool) -> Self {
        self.relaxed_precision = r;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: MatmulMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the epilogue.
    pub fn epilogue(mut self, e: Epilogue) -> Self {
        self.epilogue = e;
        self
    }

    /// Checks the operand types: both inputs the same type (or two fp8 types), an output the
    /// pair supports.
    pub fn validate_types(&self, left: DType, right: DType, out: DType, bias: Option<DType>) -> Result<()> {
        let ok = if is_fp8(left) || is_fp8(right) {
            is_fp8(left) && is_fp8(right) && matches!(out, DType::F32 | DType::F16 | DType::BF16)
        } else {
            left == right
                && match left {
                    DType::F32 | DType::F64 => out == left,
                    DType::F16 | DType::BF16 => out == left || out == DType::F32,
                    DType::I8 => out == DType::I32,
                    _ => false,
                }
        };
        if !ok {
            return Err(Error::InvalidArgument {
                op: "matmul2d",
                message: format!(
                    "unsupported types {left} · {right} -> {out} (supported: f32·f32->f32, f64·f64->f64, f16·f16->f16|f32, bf16·bf16->bf16|f32, int8·int8->int32, fp8·fp8->f32|f16|bf16 with fp8 = float8_e4m3fn|float8_e5m2)"
                ),
            });
        }
        if left == DType::I8 && self.epilogue.activation() != Activation::None {
            return Err(Error::InvalidArgument {
                op: "matmul2d",
                message: format!(
                    "an int8 product admits a bias but no activation (got {:?})",
                    self.epilogue.activation()
                ),
            });
        }
        if let Some(b) = bias
            && b != out
        {
            return Err(Error::InvalidArgument {
                op: "matmul2d",
                message: format!("the bias is {b} but the output is {out}; they must match"),
            });
        }
        Ok(())
    }

    /// Checks a whole call for any backend: types, shapes, scales, every operand inside its
    /// buffer, and an output whose elements do not overlap.
    pub fn validate_call<B: Storage>(
        &self,
        left: &TensorRef<'_, B>,
        right: &TensorRef<'_, B>,
        bias: Option<&TensorRef<'_, B>>,
        scales: Option<&Scales<'_, B>>,
        out: &TensorMut<'_, B>,
    ) -> Result<()> {
        const OP: &str = "matmul2d";
        self.validate_types(left.dtype, right.dtype, out.dtype, bias.map(|b| b.dtype))?;
        self.validate_shapes(left.layout, right.layout, out.layout, bias.map(|b| b.layout))?;
        left.check(OP, "the left operand")?;
        right.check(OP, "the right operand")?;
        out.check(OP, "the output")?;
        if let Some(b) = bias {
            b.check(OP, "the bias")?;
        }
        if let Some(s) = scales {
            if !is_fp8(left.dtype) {
                return Err(Error::InvalidArgument {
                    op: OP,
                    message: format!("scales apply to fp8 operands; these are {} · {}", left.dtype, right.dtype),
                });
            }
            for (what, t, len) in [("left", &s.left, self.m), ("right", &s.right, self.n)] {
                let shape = t.layout.shape();
                if t.dtype != DType::F32 || !(shape.is_empty() || shape == [len]) {
                    return Err(Error::InvalidArgument {
                        op: OP,
                        message: format!(
                            "the {what} scale is {} of shape {shape:?}; it must be float32 of shape [] or [{len}]",
                            t.dtype
                        ),
                    });
                }
                t.check(OP, if what == "left" { "the left scale" } else { "the right scale" })?;
            }
        }
        if !out.layout.is_non_overlapping() {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!(
                    "the output (shape {:?}, strides {:?}) has elements that share memory",
                    out.layout.shape(),
                    out.layout.strides()
                ),
            });
        }
        Ok(())
    }

    /// Checks the operand shapes against `m`, `n`, `k`, the batch axes and the epilogue.
    pub fn validate_shapes(&self, left: &Layout, right: &Layout, out: &Layout, bias: Option<&Layout>) -> Result<()> {
        let err = |message: String| Err(Error::InvalidArgument { op: "matmul2d", message });
        let want_left = if self.transpose_left { [self.k, self.m] } else { [self.m, self.k] };
        let want_right = if self.transpose_right { [self.n, self.k] } else { [self.k, self.n] };
        let operands = [("left", left, want_left), ("right", right, want_right), ("output", out, [self.m, self.n])];
        let batch = &out.shape()[..out.ndim().saturating_sub(2)];
        for (what, l, want) in operands {
            let s = l.shape();
            if s.len() < 2 || s[s.len() - 2..] != want || &s[..s.len() - 2] != batch {
                let mut expected = batch.to_vec();
                expected.extend(want);
                return err(format!(
                    "the {what} operand has shape {s:?}; m={}, n={}, k={}{}{} and the output's batch axes {batch:?} need {expected:?}",
                    self.m,
                    self.n,
                    self.k,
                    if self.transpose_left { ", transpose_left" } else { "" },
                    if self.transpose_right { ", transpose_right" } else { "" },
                ));
            }
        }
        match (self.epilogue.has_bias(), bias) {
            (true, None) => return err("the epilogue adds a bias but no bias operand was given".into()),
            (false, Some(_)) => return err("a bias operand was given but the epilogue has no bias".into()),
            (true, Some(b)) if b.shape() != [self.n] => {
                return err(format!("the bias has shape {:?}; it needs [{}]", b.shape(), self.n));
            }
            _ => {}
        }
        Ok(())
    }
}
