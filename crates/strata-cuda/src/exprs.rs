//! The CUDA expression of every element-wise operation, per kind of type, with the semantics
//! of the CPU backend (which is the reference the GPU tests compare against). `v` is the
//! operand of a unary operation, `a` and `b` those of a binary one, `CT` the compute type
//! (`float` for 16- and 32-bit floats, `double`, the integer type itself, `bool`).

use strata_core::kernel::{BinaryOp, UnaryOp};
use strata_core::{DType, Kind};

/// The C type that stores an element, where the CUDA backend supports the type yet.
pub fn c_type(t: DType) -> Option<&'static str> {
    Some(match t {
        DType::Bool | DType::U8 => "u8",
        DType::I8 => "i8",
        DType::U16 => "u16",
        DType::I16 => "i16",
        DType::U32 => "u32",
        DType::I32 => "i32",
        DType::U64 => "u64",
        DType::I64 => "i64",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F32 => "float",
        DType::F64 => "double",
        _ => return None,
    })
}

/// The type arithmetic is done in.
pub fn compute_type(t: DType) -> &'static str {
    match t {
        DType::F16 | DType::BF16 | DType::F32 => "float",
        DType::F64 => "double",
        DType::Bool => "bool",
        t => c_type(t).unwrap_or("float"),
    }
}

/// The expression of `op` on `v` for operands of type `t` (already validated by the op's
/// type rule).
pub fn unary(op: UnaryOp, t: DType) -> &'static str {
    use UnaryOp as U;
    if t == DType::Bool {
        return "!v"; // LogicalNot and BitwiseNot are the only ops that accept bool
    }
    if t.is_float() {
        return match op {
            U::Neg => "-v",
            U::Abs => "fabs(v)",
            U::Sign => "strata::sign_float(v)",
            U::Square => "v * v",
            U::Sqrt => "sqrt(v)",
            U::Rsqrt => "(CT)1 / sqrt(v)",
            U::Reciprocal => "(CT)1 / v",
            U::Exp => "exp(v)",
            U::Exp2 => "exp2(v)",
            U::Expm1 => "expm1(v)",
            U::Log => "log(v)",
            U::Log2 => "log2(v)",
            U::Log10 => "log10(v)",
            U::Log1p => "log1p(v)",
            U::Sin => "sin(v)",
            U::Cos => "cos(v)",
            U::Tan => "tan(v)",
            U::Asin => "asin(v)",
            U::Acos => "acos(v)",
            U::Atan => "atan(v)",
            U::Sinh => "sinh(v)",
            U::Cosh => "cosh(v)",
            U::Tanh => "tanh(v)",
            U::Asinh => "asinh(v)",
            U::Acosh => "acosh(v)",
            U::Atanh => "atanh(v)",
            U::Erf => "erf(v)",
            U::ErfInv => "erfinv(v)",
            U::Sigmoid => "(CT)1 / ((CT)1 + exp(-v))",
            U::Softplus => "fmax(v, (CT)0) + log1p(exp(-fabs(v)))",
            U::Relu => "v < (CT)0 ? (CT)0 : v",
            U::Gelu => "(CT)0.5 * v * erfc(-v * (CT)0.70710678118654752440)",
            U::GeluTanh => "v / ((CT)1 + exp((CT)-2 * (CT)0.79788456080286535588 * (v + (CT)0.044715 * v * v * v)))",
            U::Silu => "v / ((CT)1 + exp(-v))",
            U::Floor => "floor(v)",
            U::Ceil => "ceil(v)",
            U::Round => "rint(v)",
            U::IsNan => "isnan(v)",
            U::IsInf => "isinf(v)",
            U::IsFinite => "isfinite(v)",
            U::LogicalNot | U::BitwiseNot => "v",
        };
    }
    match op {
        U::Neg => "strata::wneg(v)",
        U::Abs => "strata::is_neg(v) ? strata::wneg(v) : v",
        U::Sign => "v > (CT)0 ? (CT)1 : (strata::is_neg(v) ? strata::wneg((CT)1) : (CT)0)",
        U::Square => "strata::wmul(v, v)",
        U::Relu => "strata::is_neg(v) ? (CT)0 : v",
        U::BitwiseNot => "(CT)~v",
        U::IsNan | U::IsInf => "false",
        U::IsFinite => "true",
        _ => "v", // Floor, Ceil, Round leave integers unchanged
    }
}

/// The expression of `op` on `a` and `b` of type `t`.
pub fn binary(op: BinaryOp, t: DType) -> &'static str {
    use BinaryOp as B;
    match op {
        B::Equal => return "a == b",
        B::NotEqual => return "a != b",
        B::Less => return "a < b",
        B::LessEqual => return "a <= b",
        B::Greater => return "a > b",
        B::GreaterEqual => return "a >= b",
        B::LogicalAnd => return "a && b",
        B::LogicalOr => return "a || b",
        _ => {}
    }
    if t == DType::Bool {
        return match op {
            B::BitwiseAnd => "a && b",
            B::BitwiseOr => "a || b",
            _ => "a != b", // BitwiseXor (shifts take integers only)
        };
    }
    if t.is_float() {
        return match op {
            B::Add => "a + b",
            B::Sub => "a - b",
            B::Mul => "a * b",
            B::Div => "a / b",
            B::FloorDiv => "strata::floordiv_float(a, b)",
            B::Remainder => "strata::py_rem(a, b)",
            B::Pow => "pow(a, b)",
            B::Maximum => "strata::nan_max(a, b)",
            B::Minimum => "strata::nan_min(a, b)",
            B::Atan2 => "atan2(a, b)",
            B::LogAddExp => "strata::logaddexp(a, b)",
            _ => "a",
        };
    }
    match op {
        B::Add => "strata::wadd(a, b)",
        B::Sub => "strata::wsub(a, b)",
        B::Mul => "strata::wmul(a, b)",
        B::FloorDiv => "strata::floordiv_int(a, b)",
        B::Remainder => "strata::rem_int(a, b)",
        B::Pow => "strata::pow_int(a, b)",
        B::Maximum => "(a > b ? a : b)",
        B::Minimum => "(a < b ? a : b)",
        B::BitwiseAnd => "(CT)(a & b)",
        B::BitwiseOr => "(CT)(a | b)",
        B::BitwiseXor => "(CT)(a ^ b)",
        B::LeftShift => "strata::shl_int(a, b)",
        B::RightShift => "strata::shr_int(a, b)",
        _ => "a",
    }
}

/// The expression converting the raw element `x` of type `from` to type `to`, with the CPU
/// backend's rules (round to nearest even, f64 → 16-bit through round-to-odd, integers to
/// bfloat16 through f32, float → integer truncating and saturating with NaN → 0, integers
/// wrapping, anything → bool as `!= 0`).
pub fn cast(from: DType, to: DType) -> String {
    let to_c = c_type(to).unwrap_or("float");
    if from == to {
        return "x".into();
    }
    let float_src = from.is_float();
    let value = if float_src { "(double)strata::ld(x)".to_owned() } else { "(double)x".to_owned() };
    match to {
        DType::Bool => {
            if float_src {
                "(u8)(strata::ld(x) != 0)".into()
            } else {
                "(u8)(x != 0)".into()
            }
        }
        DType::F64 => value,
        DType::F32 if from == DType::F16 || from == DType::BF16 => "strata::ld(x)".into(),
        DType::F32 => format!("(float){value}"),
        DType::F16 | DType::BF16 => {
            if from == DType::F32 || from == DType::F16 || from == DType::BF16 {
                format!("strata::St<{to_c}>::from((float)strata::ld(x))")
            } else if to == DType::BF16 && !float_src {
                // Integers to bfloat16 through float32, two roundings, as the CPU and ml_dtypes
                // do (to f16, whose range ends below 2^24, the two rules agree).
                format!("strata::St<{to_c}>::from((float)x)")
            } else {
                format!("strata::St<{to_c}>::from(strata::round_to_odd_f32({value}))")
            }
        }
        DType::I64 if float_src => format!("strata::sat_i64({value})"),
        DType::U64 if float_src => format!("strata::sat_u64({value})"),
        t if float_src => {
            let (lo, hi): (f64, f64) = match t {
                DType::U8 => (0.0, 255.0),
                DType::I8 => (-128.0, 127.0),
                DType::U16 => (0.0, 65535.0),
                DType::I16 => (-32768.0, 32767.0),
                DType::U32 => (0.0, 4294967295.0),
                _ => (-2147483648.0, 2147483647.0),
            };
            format!("strata::sat<{to_c}>({value}, {lo:.1}, {hi:.1})")
        }
        _ if from.kind() == Kind::Bool => format!("({to_c})(x != 0)"),
        _ => format!("({to_c})x"),
    }
}

/// The expression of an epilogue activation on `v` of compute type `ct` (the CPU's GEMM
/// epilogue: ReLU as `max`, which maps NaN to 0).
pub fn activation(a: strata_core::kernel::Activation, ct: &str) -> String {
    use strata_core::kernel::Activation as A;
    let e = match a {
        A::None => "v",
        A::Relu => "fmax(v, (CT)0)",
        A::Gelu => unary(UnaryOp::Gelu, DType::F32),
        A::GeluTanh => unary(UnaryOp::GeluTanh, DType::F32),
        A::Silu => unary(UnaryOp::Silu, DType::F32),
        A::Sigmoid => unary(UnaryOp::Sigmoid, DType::F32),
        A::Tanh => unary(UnaryOp::Tanh, DType::F32),
    };
    e.replace("CT", ct)
}
