//! [`Fused`]: a chain of element-wise operations run as one kernel, each element read once
//! and written once, the intermediates kept in registers or L1. The array layer's `compile`
//! builds these from traced graphs; a GPU backend can generate one kernel from the same
//! description.

use super::{BinaryOp, Layout, UnaryOp};
use crate::DType;
use crate::error::{Error, Result};

/// One step of a fused program; operands name earlier steps by index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FusedOp {
    /// Input operand `i`.
    Input(usize),
    /// `op(step)`.
    Unary(UnaryOp, usize),
    /// `op(step, step)`.
    Binary(BinaryOp, usize, usize),
}

/// A fused element-wise program over operands of one floating type and shape; the last step
/// is the output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fused {
    /// The type of every operand, step and the output (float32 or float64).
    pub dtype: DType,
    /// The steps, in order.
    pub ops: Vec<FusedOp>,
}

impl Fused {
    /// Checks the program and the operands: `inputs` and `out` are `(layout, dtype)`.
    pub fn validate(&self, inputs: &[(&Layout, DType)], out: (&Layout, DType)) -> Result<()> {
        let err = |message: String| Err(Error::InvalidArgument { op: "fused", message });
        if !matches!(self.dtype, DType::F32 | DType::F64) {
            return err(format!("fused programs compute in float32 or float64, not {}", self.dtype));
        }
        if self.ops.is_empty() {
            return err("an empty program".into());
        }
        for (i, op) in self.ops.iter().enumerate() {
            let (ok, what) = match *op {
                FusedOp::Input(k) => (k < inputs.len(), format!("input {k} of {}", inputs.len())),
                FusedOp::Unary(u, a) => {
                    (a < i && u.output_dtype(self.dtype).ok() == Some(self.dtype), format!("{} of step {a}", u.name()))
                }
                FusedOp::Binary(b, x, y) => (
                    x < i && y < i && b.output_dtype(self.dtype).ok() == Some(self.dtype),
                    format!("{} of steps {x} and {y}", b.name()),
                ),
            };
            if !ok {
                return err(format!("step {i} ({what}) is not a valid {} step", self.dtype));
            }
        }
        for (i, (l, t)) in inputs.iter().enumerate() {
            if *t != self.dtype || l.shape() != out.0.shape() {
                return err(format!(
                    "input {i} is {t} {:?}; the program needs {} {:?}",
                    l.shape(),
                    self.dtype,
                    out.0.shape()
                ));
            }
        }
        if out.1 != self.dtype {
            return err(format!("the output is {}, the program computes {}", out.1, self.dtype));
        }
        Ok(())
    }
}
