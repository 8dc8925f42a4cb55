//! Element-wise, reduction and scan operations: their names, the types they accept and the
//! type they produce. The array layer promotes types before it calls them (integers to float
//! for `exp`, both operands of `add` to one type); the kernels accept exactly what these
//! rules say and nothing else.

use super::{Layout, Storage, TensorMut, TensorRef};
use crate::DType;
use crate::error::{Error, Result};

/// What an operation accepts and what it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Any numeric type (integers, floats; not bool), returned unchanged.
    Numeric,
    /// Floating types only, returned unchanged.
    Float,
    /// Numeric types; returns `bool`.
    Predicate,
    /// Integer types and `bool`, returned unchanged.
    Bits,
    /// Integer types only, returned unchanged.
    Integer,
    /// `bool` in, `bool` out.
    Logical,
    /// What `Numeric` takes, and complex64.
    NumericComplex,
    /// What `Float` takes, and complex64.
    FloatComplex,
    /// What `Predicate` takes, and complex64; returns `bool`.
    PredicateComplex,
}

impl Rule {
    fn accepts(self, t: DType) -> bool {
        let standard = !t.is_packed() && t.float_format().is_none();
        if t == DType::C64 {
            return matches!(self, Rule::NumericComplex | Rule::FloatComplex | Rule::PredicateComplex);
        }
        standard
            && match self {
                Rule::NumericComplex => Rule::Numeric.accepts(t),
                Rule::FloatComplex => Rule::Float.accepts(t),
                Rule::PredicateComplex => Rule::Predicate.accepts(t),
                Rule::Numeric | Rule::Predicate => t.is_integer() || t.is_float(),
                Rule::Float => t.is_float(),
                Rule::Bits => t.is_integer() || t == DType::Bool,
                Rule::Integer => t.is_integer(),
                Rule::Logical => t == DType::Bool,
            }
    }

    fn output(self, t: DType) -> DType {
        match self {
            Rule::Predicate | Rule::PredicateComplex | Rule::Logical => DType::Bool,
            _ => t,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Rule::Numeric | Rule::Predicate => "an integer or floating type",
            Rule::Float => "a floating type (float16, bfloat16, float32, float64)",
            Rule::Bits => "an integer type or bool",
            Rule::Integer => "an integer type",
            Rule::Logical => "bool",
            Rule::NumericComplex | Rule::PredicateComplex => "an integer, floating or complex type",
            Rule::FloatComplex => "a floating or complex type",
        }
    }
}

macro_rules! ops {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $str:literal, $rule:ident, $doc:literal;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = $doc] $variant,)*
        }

        impl $name {
            /// Every operation of this kind.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The operation's name (as NumPy spells it).
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $str,)* }
            }

            fn rule(self) -> Rule {
                match self { $($name::$variant => Rule::$rule,)* }
            }

            /// The output type for inputs of type `t`, or an error naming the operation.
            pub fn output_dtype(self, t: DType) -> Result<DType> {
                let rule = self.rule();
                if rule.accepts(t) {
                    Ok(rule.output(t))
                } else {
                    Err(Error::UnsupportedDType { op: self.name(), dtype: t, expected: rule.describe() })
                }
            }
        }
    };
}

ops! {
    /// An element-wise function of one operand.
    UnaryOp {
        Neg => "negative", NumericComplex, "`-x` (wrapping for integers).";
        Abs => "absolute", Numeric, "`|x|` (wrapping at the minimum integer).";
        Sign => "sign", Numeric, "-1, 0 or 1 (NaN stays NaN).";
        Square => "square", Numeric, "`x²`.";
        Sqrt => "sqrt", Float, "`√x`.";
        Rsqrt => "rsqrt", Float, "`1/√x`.";
        Reciprocal => "reciprocal", Float, "`1/x`.";
        Exp => "exp", FloatComplex, "`eˣ`.";
        Exp2 => "exp2", Float, "`2ˣ`.";
        Expm1 => "expm1", Float, "`eˣ − 1`, accurate near 0.";
        Log => "log", Float, "Natural logarithm.";
        Log2 => "log2", Float, "Base-2 logarithm.";
        Log10 => "log10", Float, "Base-10 logarithm.";
        Log1p => "log1p", Float, "`ln(1 + x)`, accurate near 0.";
        Sin => "sin", Float, "Sine.";
        Cos => "cos", Float, "Cosine.";
        Tan => "tan", Float, "Tangent.";
        Asin => "arcsin", Float, "Inverse sine.";
        Acos => "arccos", Float, "Inverse cosine.";
        Atan => "arctan", Float, "Inverse tangent.";
        Sinh => "sinh", Float, "Hyperbolic sine.";
        Cosh => "cosh", Float, "Hyperbolic cosine.";
        Tanh => "tanh", Float, "Hyperbolic tangent.";
        Asinh => "arcsinh", Float, "Inverse hyperbolic sine.";
        Acosh => "arccosh", Float, "Inverse hyperbolic cosine.";
        Atanh => "arctanh", Float, "Inverse hyperbolic tangent.";
        Erf => "erf", Float, "The error function.";
        ErfInv => "erfinv", Float, "The inverse error function.";
        Sigmoid => "sigmoid", Float, "`1/(1 + e⁻ˣ)`.";
        Softplus => "softplus", Float, "`ln(1 + eˣ)`, without overflow.";
        Relu => "relu", Numeric, "`max(x, 0)`.";
        Gelu => "gelu", Float, "`x·Φ(x)`.";
        GeluTanh => "gelu_tanh", Float, "GELU's tanh approximation.";
        Silu => "silu", Float, "`x·σ(x)`.";
        Floor => "floor", Numeric, "Round toward −∞ (integers unchanged).";
        Ceil => "ceil", Numeric, "Round toward +∞ (integers unchanged).";
        Round => "round", Numeric, "Round to nearest, ties to even (integers unchanged).";
        IsNan => "isnan", Predicate, "Whether x is NaN (false for integers).";
        IsInf => "isinf", Predicate, "Whether x is ±∞ (false for integers).";
        IsFinite => "isfinite", Predicate, "Whether x is neither NaN nor ±∞.";
        LogicalNot => "logical_not", Logical, "`!x`.";
        BitwiseNot => "invert", Bits, "Bitwise complement (`!x` for bool).";
    }
}

ops! {
    /// An element-wise function of two operands of one type.
    BinaryOp {
        Add => "add", NumericComplex, "`a + b` (wrapping for integers).";
        Sub => "subtract", NumericComplex, "`a − b` (wrapping for integers).";
        Mul => "multiply", NumericComplex, "`a · b` (wrapping for integers).";
        Div => "divide", FloatComplex, "`a / b`.";
        FloorDiv => "floor_divide", Numeric, "`⌊a / b⌋`; integer division by zero gives 0, as NumPy.";
        Remainder => "remainder", Numeric, "`a − ⌊a/b⌋·b`, the sign of `b` (Python's `%`); integer remainder by zero gives 0.";
        Pow => "power", Numeric, "`aᵇ` (integers: wrapping, negative exponents give 0 unless `a` is ±1).";
        Maximum => "maximum", Numeric, "The larger; NaN if either is NaN.";
        Minimum => "minimum", Numeric, "The smaller; NaN if either is NaN.";
        Atan2 => "arctan2", Float, "The angle of the point `(b, a)`.";
        LogAddExp => "logaddexp", Float, "`ln(eᵃ + eᵇ)`, without overflow.";
        Equal => "equal", PredicateComplex, "`a == b`.";
        NotEqual => "not_equal", PredicateComplex, "`a != b`.";
        Less => "less", Predicate, "`a < b`.";
        LessEqual => "less_equal", Predicate, "`a <= b`.";
        Greater => "greater", Predicate, "`a > b`.";
        GreaterEqual => "greater_equal", Predicate, "`a >= b`.";
        LogicalAnd => "logical_and", Logical, "`a && b`.";
        LogicalOr => "logical_or", Logical, "`a || b`.";
        BitwiseAnd => "bitwise_and", Bits, "`a & b`.";
        BitwiseOr => "bitwise_or", Bits, "`a | b`.";
        BitwiseXor => "bitwise_xor", Bits, "`a ^ b`.";
        LeftShift => "left_shift", Integer, "`a << b`; shifts of the width or more (or negative) give 0.";
        RightShift => "right_shift", Integer, "`a >> b` (arithmetic for signed); shifts of the width or more give 0 or -1.";
    }
}

ops! {
    /// A reduction over a set of axes.
    ReduceOp {
        Sum => "sum", Numeric, "Sum (pairwise for floats; f32 accumulation for 16-bit floats).";
        Prod => "prod", Numeric, "Product.";
        Max => "max", Numeric, "Largest (NaN if any is NaN).";
        Min => "min", Numeric, "Smallest (NaN if any is NaN).";
        ArgMax => "argmax", Numeric, "Index of the first largest (of the first NaN, if any).";
        ArgMin => "argmin", Numeric, "Index of the first smallest (of the first NaN, if any).";
        All => "all", Predicate, "Whether every element is non-zero.";
        Any => "any", Predicate, "Whether some element is non-zero.";
    }
}

ops! {
    /// An inclusive or exclusive scan along one axis.
    ScanOp {
        Sum => "cumsum", Numeric, "Running sum.";
        Prod => "cumprod", Numeric, "Running product.";
        Max => "cummax", Numeric, "Running maximum.";
        Min => "cummin", Numeric, "Running minimum.";
        LogAddExp => "logcumsumexp", Float, "Running `ln Σ eˣ`.";
    }
}

impl ReduceOp {
    /// Whether the output is an index (argmax/argmin): then its type is an integer type
    /// rather than the input's.
    pub fn is_index(self) -> bool {
        matches!(self, ReduceOp::ArgMax | ReduceOp::ArgMin)
    }

    /// Checks the types: the output is the input's type (bool for all/any, any integer type
    /// for argmax/argmin). `All`/`Any` accept `bool` too.
    pub fn validate_types(self, input: DType, out: DType) -> Result<()> {
        let ok = match self {
            ReduceOp::All | ReduceOp::Any => {
                (input == DType::Bool || self.output_dtype(input).is_ok()) && out == DType::Bool
            }
            ReduceOp::ArgMax | ReduceOp::ArgMin => self.output_dtype(input).is_ok() && out.is_integer(),
            _ => self.output_dtype(input)? == out,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument { op: self.name(), message: format!("cannot reduce {input} into {out}") })
        }
    }
}

/// Checks a reduction's axes and output shape: `axes` distinct and in range, the output the
/// input's shape with each reduced axis of size 1 (kept) or removed (the output's rank says
/// which). Returns the axes sorted.
pub fn validate_reduce(op: ReduceOp, input: &Layout, axes: &[usize], out: &Layout) -> Result<Vec<usize>> {
    let err = |message: String| Err(Error::InvalidArgument { op: op.name(), message });
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != axes.len() || sorted.last().is_some_and(|&a| a >= input.ndim()) {
        return err(format!("axes {axes:?} must be distinct and below the input's {} axes", input.ndim()));
    }
    if op.is_index() && sorted.len() != 1 {
        return err(format!("{} reduces exactly one axis, not {axes:?}", op.name()));
    }
    let kept: Vec<usize> =
        input.shape().iter().enumerate().map(|(i, &d)| if sorted.contains(&i) { 1 } else { d }).collect();
    let removed: Vec<usize> =
        input.shape().iter().enumerate().filter(|(i, _)| !sorted.contains(i)).map(|(_, &d)| d).collect();
    if out.shape() != kept && out.shape() != removed {
        return err(format!(
            "reducing {:?} over axes {axes:?} gives {kept:?} (or {removed:?}), not {:?}",
            input.shape(),
            out.shape()
        ));
    }
    if (op.is_index() || op == ReduceOp::Max || op == ReduceOp::Min) && sorted.iter().any(|&a| input.shape()[a] == 0) {
        return err(format!("{} of an empty axis is undefined", op.name()));
    }
    Ok(sorted)
}

/// Checks an element-wise call: every operand has the output's shape (broadcast operands use
/// zero strides), and no two output elements share memory.
pub fn validate_elementwise(op: &'static str, inputs: &[&Layout], out: &Layout) -> Result<()> {
    for (i, l) in inputs.iter().enumerate() {
        if l.shape() != out.shape() {
            return Err(Error::InvalidArgument {
                op,
                message: format!(
                    "operand {i} has shape {:?} but the output has {:?} (broadcast operands with zero strides first)",
                    l.shape(),
                    out.shape()
                ),
            });
        }
    }
    if !out.is_non_overlapping() {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "the output (shape {:?}, strides {:?}) has elements that share memory",
                out.shape(),
                out.strides()
            ),
        });
    }
    Ok(())
}

fn check_output_dtype(op: &'static str, want: DType, got: DType) -> Result<()> {
    if got != want {
        return Err(Error::InvalidArgument {
            op,
            message: format!("the output is {got} but {op} produces {want} here"),
        });
    }
    Ok(())
}

/// Checks the operands of a unary operation for any backend (types, shapes, buffer bounds);
/// returns the output type.
pub fn validate_unary<B: Storage>(op: UnaryOp, x: &TensorRef<'_, B>, out: &TensorMut<'_, B>) -> Result<DType> {
    let want = op.output_dtype(x.dtype)?;
    check_output_dtype(op.name(), want, out.dtype)?;
    validate_elementwise(op.name(), &[x.layout], out.layout)?;
    x.check(op.name(), "the operand")?;
    out.check(op.name(), "the output")?;
    Ok(want)
}

/// Checks the operands of a binary operation for any backend; returns the output type.
pub fn validate_binary<B: Storage>(
    op: BinaryOp,
    a: &TensorRef<'_, B>,
    b: &TensorRef<'_, B>,
    out: &TensorMut<'_, B>,
) -> Result<DType> {
    if a.dtype != b.dtype {
        return Err(Error::InvalidArgument {
            op: op.name(),
            message: format!("operands of {} and {}: promote them to one type first", a.dtype, b.dtype),
        });
    }
    let want = op.output_dtype(a.dtype)?;
    check_output_dtype(op.name(), want, out.dtype)?;
    validate_elementwise(op.name(), &[a.layout, b.layout], out.layout)?;
    a.check(op.name(), "the first operand")?;
    b.check(op.name(), "the second operand")?;
    out.check(op.name(), "the output")?;
    Ok(want)
}

/// Checks the operands of `where` (`select`) for any backend.
pub fn validate_select<B: Storage>(
    cond: &TensorRef<'_, B>,
    a: &TensorRef<'_, B>,
    b: &TensorRef<'_, B>,
    out: &TensorMut<'_, B>,
) -> Result<()> {
    const OP: &str = "where";
    if cond.dtype != DType::Bool || a.dtype != b.dtype || out.dtype != a.dtype || a.dtype.is_packed() {
        return Err(Error::InvalidArgument {
            op: OP,
            message: format!(
                "needs a bool condition and two values of the output's type; got {}, {}, {} -> {}",
                cond.dtype, a.dtype, b.dtype, out.dtype
            ),
        });
    }
    validate_elementwise(OP, &[cond.layout, a.layout, b.layout], out.layout)?;
    for (t, what) in [(cond, "the condition"), (a, "the first value"), (b, "the second value")] {
        t.check(OP, what)?;
    }
    out.check(OP, "the output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_rules() {
        assert_eq!(UnaryOp::Exp.output_dtype(DType::F16).unwrap(), DType::F16);
        let e = UnaryOp::Exp.output_dtype(DType::I32).unwrap_err().to_string();
        assert!(e.contains("exp") && e.contains("int32") && e.contains("floating"), "{e}");
        assert_eq!(UnaryOp::IsNan.output_dtype(DType::I8).unwrap(), DType::Bool);
        assert_eq!(BinaryOp::Less.output_dtype(DType::F32).unwrap(), DType::Bool);
        assert!(BinaryOp::Add.output_dtype(DType::Bool).is_err());
        assert!(BinaryOp::BitwiseAnd.output_dtype(DType::Bool).is_ok());
        assert!(BinaryOp::Add.output_dtype(DType::F8E4M3).is_err(), "narrow formats are storage, not arithmetic");
        assert!(ReduceOp::ArgMax.validate_types(DType::F32, DType::U32).is_ok());
        assert!(ReduceOp::Sum.validate_types(DType::F32, DType::F16).is_err());
        let l = Layout::contiguous(&[2, 3, 4]);
        assert_eq!(validate_reduce(ReduceOp::Sum, &l, &[2, 0], &Layout::contiguous(&[3])).unwrap(), [0, 2]);
        assert!(validate_reduce(ReduceOp::Sum, &l, &[1], &Layout::contiguous(&[2, 1, 4])).is_ok());
        assert!(validate_reduce(ReduceOp::Sum, &l, &[3], &Layout::contiguous(&[2, 3])).is_err());
        assert!(validate_reduce(ReduceOp::ArgMax, &l, &[0, 1], &Layout::contiguous(&[4])).is_err());
    }
}
