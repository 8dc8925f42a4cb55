//! Operator overloading: `a + b`, `&a * 2.0`, `-a`, … on arrays and references, with Rust
//! `f64` and `i32` scalars taking the array's type (as Python scalars do in NumPy 2 and MLX);
//! only these two, so that literals (`2.0`, `1`) need no annotation.
//!
//! Operators cannot return a `Result`: a failed one (say, shapes that do not broadcast)
//! returns an array that carries the error, and evaluating or reading it — or using it in a
//! function op — returns that error. Use the functions (`strata::add`, …) to get it at the
//! call.

use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Not, Rem, Sub};

use crate::graph::Array;
use crate::ops;

fn lift(r: strata_core::Result<Array>) -> Array {
    r.unwrap_or_else(ops::failed)
}

macro_rules! binop {
    ($tr:ident, $m:ident, $f:path) => {
        impl $tr<&Array> for &Array {
            type Output = Array;
            fn $m(self, rhs: &Array) -> Array {
                lift($f(self, rhs))
            }
        }
        impl $tr<Array> for Array {
            type Output = Array;
            fn $m(self, rhs: Array) -> Array {
                lift($f(&self, &rhs))
            }
        }
        impl $tr<&Array> for Array {
            type Output = Array;
            fn $m(self, rhs: &Array) -> Array {
                lift($f(&self, rhs))
            }
        }
        impl $tr<Array> for &Array {
            type Output = Array;
            fn $m(self, rhs: Array) -> Array {
                lift($f(self, &rhs))
            }
        }
        binop!(@scalar $tr, $m, $f, f64, i32);
    };
    (@scalar $tr:ident, $m:ident, $f:path, $($s:ty),*) => {$(
        impl $tr<$s> for &Array {
            type Output = Array;
            fn $m(self, rhs: $s) -> Array {
                lift($f(self, &ops::weak_scalar(self, rhs as f64)))
            }
        }
        impl $tr<$s> for Array {
            type Output = Array;
            fn $m(self, rhs: $s) -> Array {
                lift($f(&self, &ops::weak_scalar(&self, rhs as f64)))
            }
        }
        impl $tr<&Array> for $s {
            type Output = Array;
            fn $m(self, rhs: &Array) -> Array {
                lift($f(&ops::weak_scalar(rhs, self as f64), rhs))
            }
        }
        impl $tr<Array> for $s {
            type Output = Array;
            fn $m(self, rhs: Array) -> Array {
                lift($f(&ops::weak_scalar(&rhs, self as f64), &rhs))
            }
        }
    )*};
}

binop!(Add, add, ops::add);
binop!(Sub, sub, ops::subtract);
binop!(Mul, mul, ops::multiply);
binop!(Div, div, ops::divide);
binop!(Rem, rem, ops::remainder);
binop!(BitAnd, bitand, ops::bitwise_and);
binop!(BitOr, bitor, ops::bitwise_or);
binop!(BitXor, bitxor, ops::bitwise_xor);

impl Neg for &Array {
    type Output = Array;
    fn neg(self) -> Array {
        lift(ops::negative(self))
    }
}
impl Neg for Array {
    type Output = Array;
    fn neg(self) -> Array {
        lift(ops::negative(&self))
    }
}
impl Not for &Array {
    type Output = Array;
    fn not(self) -> Array {
        lift(if self.dtype() == strata_core::DType::Bool { ops::logical_not(self) } else { ops::bitwise_invert(self) })
    }
}
