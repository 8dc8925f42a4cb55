//! How each element type is read, computed on and written in WGSL, and the WGSL expression of
//! every element-wise operation with the CPU backend's semantics (the reference the tests
//! compare against). Every binding is an `array<u32>`: 8- and 16-bit elements are unpacked on
//! load and packed on store (see `kernels/prelude.wgsl`); 64-bit ones span two words, low first.

use strata_core::kernel::{Activation, BinaryOp, UnaryOp};
use strata_core::{DType, Error, Result};

/// The type arithmetic is done in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ct {
    F32,
    I32,
    U32,
    Bool,
    /// int64 and uint64 values, on devices with `SHADER_INT64` (element-wise kernels only).
    I64,
    U64,
}

impl Ct {
    pub(crate) fn of(t: DType) -> Ct {
        match t {
            DType::F16 | DType::BF16 | DType::F32 => Ct::F32,
            DType::I8 | DType::I16 | DType::I32 => Ct::I32,
            DType::I64 => Ct::I64,
            DType::U64 => Ct::U64,
            DType::Bool => Ct::Bool,
            _ => Ct::U32,
        }
    }

    /// The type an index of type `t` is read as: int32 for the signed types (int64 indices
    /// are read as int32, [`index_loader`]), uint32 for the unsigned.
    pub(crate) fn of_index(t: DType) -> Ct {
        if matches!(t, DType::I32 | DType::I64) { Ct::I32 } else { Ct::U32 }
    }

    /// Whether this is a signed integer type.
    pub(crate) fn signed(self) -> bool {
        matches!(self, Ct::I32 | Ct::I64)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Ct::F32 => "f32",
            Ct::I32 => "i32",
            Ct::U32 => "u32",
            Ct::Bool => "bool",
            Ct::I64 => "i64",
            Ct::U64 => "u64",
        }
    }
}

/// The element types every wgpu kernel takes: everything up to 32 bits. Core WGSL has no 64-bit
/// types: the element-wise kernels also take int64 and uint64 where the device has wgpu's
/// `SHADER_INT64` ([`check_types_with`]), and Metal has no float64. The 8-bit floats and packed
/// formats go through the quantized kernels. (int64 indices are read as int32: [`check_index_type`].)
pub(crate) fn supported(t: DType) -> bool {
    matches!(
        t,
        DType::Bool
            | DType::U8
            | DType::I8
            | DType::U16
            | DType::I16
            | DType::U32
            | DType::I32
            | DType::F16
            | DType::BF16
            | DType::F32
    )
}

/// `Ok` for the types indices come in: int32, uint32, and int64 (PyTorch's and NumPy's
/// default), which the kernels read as int32 ([`index_loader`]), so a program's int64 token ids do
/// not send a gather and its table to the CPU.
pub(crate) fn check_index_type(op: &'static str, t: DType) -> Result<()> {
    match t {
        DType::I32 | DType::U32 | DType::I64 => Ok(()),
        _ => Err(Error::NotImplemented { op, backend: format!("wgpu for {t} indices") }),
    }
}

/// `Err` naming the first operand type the kernels cannot take (64-bit types, which core WGSL
/// has no arithmetic for; the narrow MX formats): `NotImplemented`, so that the array layer
/// can run such an op on the CPU.
pub(crate) fn check_types(op: &'static str, dtypes: &[DType]) -> Result<()> {
    check_types_with(op, dtypes, false)
}

/// [`check_types`] for the element-wise kernels, which also take int64 and uint64 where the
/// device has `SHADER_INT64` (`int64`).
pub(crate) fn check_types_with(op: &'static str, dtypes: &[DType], int64: bool) -> Result<()> {
    let ok = |t: DType| supported(t) || (int64 && matches!(t, DType::I64 | DType::U64));
    match dtypes.iter().find(|t| !ok(**t)) {
        Some(&dtype) => Err(Error::NotImplemented { op, backend: format!("wgpu for {dtype}") }),
        None => Ok(()),
    }
}

/// Bits per element.
pub(crate) fn bits(t: DType) -> u32 {
    match t {
        DType::Bool | DType::U8 | DType::I8 => 8,
        DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 16,
        DType::I64 | DType::U64 => 64,
        _ => 32,
    }
}

/// Elements per 32-bit word.
pub(crate) fn per_word(t: DType) -> u32 {
    32 / bits(t)
}

/// A WGSL function `ld_<var>(e: u32) -> i32 or u32` reading index `e` of binding `var`, of
/// type `t` ([`Ct::of_index`]).
pub(crate) fn index_loader(var: &str, t: DType) -> String {
    if t == DType::I64 {
        // The two words as an i32 where the value fits, else i32's minimum, which is out of
        // range for every axis a binding can hold (so the index check reports it).
        return format!(
            "fn ld_{var}(e: u32) -> i32 {{
    let lo = {var}[2u * e];
    if {var}[2u * e + 1u] != select(0u, 0xffffffffu, (lo & 0x80000000u) != 0u) {{ return i32(-2147483647 - 1); }}
    return bitcast<i32>(lo);
}}
"
        );
    }
    loader(var, t)
}

/// A WGSL function `ld_<var>(e: u32) -> CT` reading element `e` of binding `var` as type `t`.
pub(crate) fn loader(var: &str, t: DType) -> String {
    if bits(t) == 64 {
        // Two words, low first.
        let wide = format!("(u64({var}[2u * e + 1u]) << 32u) | u64({var}[2u * e])");
        let value = if t == DType::I64 { format!("bitcast<i64>({wide})") } else { wide };
        return format!(
            "fn ld_{var}(e: u32) -> {} {{
    return {value};
}}
",
            Ct::of(t).name()
        );
    }
    let raw = match bits(t) {
        32 => format!("{var}[e]"),
        16 => format!("({var}[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu"),
        _ => format!("({var}[e >> 2u] >> ((e & 3u) * 8u)) & 0xffu"),
    };
    let value = decode("w", t);
    let ct = Ct::of(t).name();
    format!("fn ld_{var}(e: u32) -> {ct} {{\n    let w = {raw};\n    return {value};\n}}\n")
}

/// The expression of element bits `w` (a u32 holding them in its low bits, the rest zero) as
/// `t`'s compute type.
pub(crate) fn decode(w: &str, t: DType) -> String {
    match t {
        DType::F32 => format!("bitcast<f32>({w})"),
        DType::F16 => format!("f16_to_f32({w})"),
        DType::BF16 => format!("bf16_to_f32({w})"),
        DType::I32 => format!("bitcast<i32>({w})"),
        DType::I16 => format!("bitcast<i32>({w} << 16u) >> 16u"),
        DType::I8 => format!("bitcast<i32>({w} << 24u) >> 24u"),
        DType::Bool => format!("{w} != 0u"),
        _ => w.to_owned(),
    }
}

/// The expression turning `v` (of `t`'s compute type) into `t`'s bits, in the low bits of a u32.
pub(crate) fn encode(t: DType, v: &str) -> String {
    match t {
        DType::F32 => format!("bitcast<u32>({v})"),
        DType::F16 => format!("f32_to_f16({v})"),
        DType::BF16 => format!("f32_to_bf16({v})"),
        DType::I32 => format!("bitcast<u32>({v})"),
        DType::I16 => format!("(bitcast<u32>({v}) & 0xffffu)"),
        DType::I8 => format!("(bitcast<u32>({v}) & 0xffu)"),
        DType::U16 => format!("(({v}) & 0xffffu)"),
        DType::U8 => format!("(({v}) & 0xffu)"),
        DType::Bool => format!("select(0u, 1u, {v})"),
        _ => v.to_owned(),
    }
}

/// WGSL statements storing `value(i)` for every logical index `i < n` into binding `out` (of
/// type `t`) at element `pos(i)`, for the thread `gid`. 32-bit outputs take one element per
/// thread at any layout; narrower ones need a contiguous output starting at element `base`,
/// and each thread owns one 32-bit word, so no two threads write the same word.
pub(crate) fn store_loop(t: DType) -> String {
    if bits(t) == 64 {
        let wide = if t == DType::I64 { "bitcast<u64>(value(i))" } else { "value(i)" };
        return format!(
            "    let i = gid;
    if i >= n {{ return; }}
    let w = {wide};
    let o = out_pos(i);
    out[2u * o] = u32(w & 0xfffffffflu);
    out[2u * o + 1u] = u32(w >> 32u);
"
        );
    }
    let enc = encode(t, "value(i)");
    if bits(t) == 32 {
        return format!("    let i = gid;\n    if i >= n {{ return; }}\n    out[out_pos(i)] = {enc};\n");
    }
    let per = per_word(t);
    let width = bits(t);
    let mask = (1u64 << width) - 1;
    format!(
        "    let first = base / {per}u;
    let last = (base + n - 1u) / {per}u;
    let w = first + gid;
    if n == 0u || w > last {{ return; }}
    var word = 0u;
    if w * {per}u < base || w * {per}u + {per}u > base + n {{ word = out[w]; }}
    for (var j = 0u; j < {per}u; j++) {{
        let e = w * {per}u + j;
        if e >= base && e < base + n {{
            let i = e - base;
            let sh = j * {width}u;
            word = (word & ~({mask}u << sh)) | ({enc} << sh);
        }}
    }}
    out[w] = word;
"
    )
}

/// The expression of `op` on `v` for operands of type `t` (already validated by the op's
/// type rule).
pub(crate) fn unary(op: UnaryOp, t: DType) -> String {
    use UnaryOp as U;
    if t == DType::Bool {
        return "!v".into(); // LogicalNot and BitwiseNot are the only ops that accept bool
    }
    let s = |e: &str| e.to_owned();
    if t.is_float() {
        // Drivers may assume NaN never occurs (WGSL allows it): a NaN operand passes through.
        let nan_safe = |e: &str| format!("select({e}, v, is_nan(v))");
        match op {
            U::IsNan => return s("is_nan(v)"),
            U::IsInf => return s("is_inf(v)"),
            U::IsFinite => return s("!(is_nan(v) || is_inf(v))"),
            _ => {}
        }
        return nan_safe(match op {
            U::Neg => "-v",
            U::Abs => "abs(v)",
            U::Sign => "sign_f(v)",
            U::Square => "v * v",
            U::Sqrt => "sqrt(v)",
            U::Rsqrt => "1.0 / sqrt(v)",
            U::Reciprocal => "1.0 / v",
            U::Exp => "exp(v)",
            U::Exp2 => "exp2(v)",
            U::Expm1 => "expm1_f(v)",
            U::Log => "log(v)",
            U::Log2 => "log2(v)",
            U::Log10 => "log2(v) * 0.30102999566398119521",
            U::Log1p => "log1p_f(v)",
            U::Sin => "sin_f(v)",
            U::Cos => "cos_f(v)",
            U::Tan => "tan_f(v)",
            U::Asin => "asin_f(v)",
            U::Acos => "acos_f(v)",
            U::Atan => "atan_f(v)",
            U::Sinh => "sinh(v)",
            U::Cosh => "cosh(v)",
            U::Tanh => "tanh(v)",
            U::Asinh => "asinh(v)",
            U::Acosh => "acosh(v)",
            U::Atanh => "atanh(v)",
            U::Erf => "erf_f(v)",
            U::ErfInv => "erfinv_f(v)",
            U::Sigmoid => "1.0 / (1.0 + exp(-v))",
            U::Softplus => "max(v, 0.0) + log1p_f(exp(-abs(v)))",
            U::Relu => "select(v, 0.0, v < 0.0)",
            U::Gelu => "gelu_f(v)",
            U::GeluTanh => "gelu_tanh_f(v)",
            U::Silu => "v / (1.0 + exp(-v))",
            U::Floor => "floor(v)",
            U::Ceil => "ceil(v)",
            U::Round => "round(v)",
            U::IsNan | U::IsInf | U::IsFinite | U::LogicalNot | U::BitwiseNot => "v",
        });
    }
    let signed = Ct::of(t).signed();
    // (Unsigned literals name their width; signed ones are abstract and take v's.)
    let (zero, one) = if Ct::of(t) == Ct::U64 { ("0lu", "1lu") } else { ("0u", "1u") };
    s(match op {
        U::Neg if signed => "0 - v",
        U::Neg => return format!("{zero} - v"),
        U::Abs if signed => "select(v, 0 - v, v < 0)",
        U::Sign if Ct::of(t) == Ct::I64 => "select(select(0li, -1li, v < 0), 1li, v > 0)",
        U::Sign if signed => "select(select(0, -1, v < 0), 1, v > 0)",
        U::Sign => return format!("select({zero}, {one}, v > {zero})"),
        U::Square => "v * v",
        U::Relu if signed => "select(v, 0, v < 0)",
        U::BitwiseNot => "~v",
        U::IsNan | U::IsInf => "false",
        U::IsFinite => "true",
        _ => "v", // Abs and Relu of unsigned, Floor, Ceil, Round leave integers unchanged
    })
}

/// The expression of `op` on `a` and `b` of type `t`.
pub(crate) fn binary(op: BinaryOp, t: DType) -> String {
    use BinaryOp as B;
    let cmp = match op {
        B::Equal => Some("a == b"),
        B::NotEqual => Some("a != b"),
        B::Less => Some("a < b"),
        B::LessEqual => Some("a <= b"),
        B::Greater => Some("a > b"),
        B::GreaterEqual => Some("a >= b"),
        B::LogicalAnd => Some("a && b"),
        B::LogicalOr => Some("a || b"),
        _ => None,
    };
    if let Some(c) = cmp {
        // Float comparisons with NaN are false (but `!=`), whatever the driver assumes.
        if t.is_float() {
            let e = if op == B::NotEqual {
                "(is_nan(a) || is_nan(b) || a != b)"
            } else {
                "(!is_nan(a) && !is_nan(b) && C)"
            };
            return e.replace('C', c);
        }
        return c.into();
    }
    if t == DType::Bool {
        return match op {
            B::BitwiseAnd => "a && b",
            B::BitwiseOr => "a || b",
            _ => "a != b", // BitwiseXor (shifts take integers only)
        }
        .into();
    }
    if t.is_float() {
        return match op {
            B::Add => "a + b",
            B::Sub => "a - b",
            B::Mul => "a * b",
            B::Div => "a / b",
            B::FloorDiv => "floordiv_f(a, b)",
            B::Remainder => "py_rem_f(a, b)",
            B::Pow => "pow_f(a, b)",
            B::Maximum => "nan_max(a, b)",
            B::Minimum => "nan_min(a, b)",
            B::Atan2 => "atan2_f(a, b)",
            B::LogAddExp => "logaddexp_f(a, b)",
            _ => "a",
        }
        .into();
    }
    let (sfx, w) = match Ct::of(t) {
        Ct::I32 => ("i", format!("{}", bits(t))),
        Ct::I64 => ("i64", "64".to_owned()),
        Ct::U64 => ("u64", "64lu".to_owned()),
        _ => ("u", format!("{}u", bits(t))),
    };
    match op {
        B::Add => "a + b".into(),
        B::Sub => "a - b".into(),
        B::Mul => "a * b".into(),
        B::FloorDiv => format!("floordiv_{sfx}(a, b)"),
        B::Remainder => format!("rem_{sfx}(a, b)"),
        B::Pow => format!("pow_{sfx}(a, b)"),
        B::Maximum => "max(a, b)".into(),
        B::Minimum => "min(a, b)".into(),
        B::BitwiseAnd => "(a & b)".into(),
        B::BitwiseOr => "(a | b)".into(),
        B::BitwiseXor => "(a ^ b)".into(),
        B::LeftShift => format!("shl_{sfx}(a, b, {w})"),
        B::RightShift => format!("shr_{sfx}(a, b, {w})"),
        _ => "a".into(),
    }
}

/// The expression converting `x` (of `from`'s compute type) to `to`'s compute type with the
/// CPU backend's rules (round to nearest even, integers to bfloat16 through float32,
/// float → integer truncating and saturating with NaN → 0, integers wrapping, anything → bool
/// as `!= 0`).
pub(crate) fn cast(from: DType, to: DType) -> String {
    cast_of(from, to, "x")
}

/// [`cast`] of the expression `x`.
fn cast_of(from: DType, to: DType, x: &str) -> String {
    let (cf, ct) = (Ct::of(from), Ct::of(to));
    match (cf, ct) {
        _ if from == to => x.into(),
        (Ct::Bool, Ct::F32) => format!("select(0.0, 1.0, {x})"),
        (Ct::Bool, Ct::I32) => format!("select(0, 1, {x})"),
        (Ct::Bool, Ct::U32) => format!("select(0u, 1u, {x})"),
        (Ct::Bool, Ct::I64) => format!("select(0li, 1li, {x})"),
        (Ct::Bool, Ct::U64) => format!("select(0lu, 1lu, {x})"),
        (Ct::F32, Ct::Bool) => format!("({x} != 0.0 || is_nan({x}))"),
        (Ct::I32, Ct::Bool) => format!("({x} != 0)"),
        (Ct::U32, Ct::Bool) => format!("({x} != 0u)"),
        (Ct::I64, Ct::Bool) => format!("({x} != 0li)"),
        (Ct::U64, Ct::Bool) => format!("({x} != 0lu)"),
        (Ct::F32, Ct::F32) => x.into(), // 16-bit floats are f32 once loaded; the store rounds
        // (Integers to bfloat16 through float32, two roundings, as the CPU and ml_dtypes do; to
        // f16, whose range ends below 2^24, the rounding to f32 changes nothing.)
        (Ct::I32 | Ct::U32 | Ct::I64 | Ct::U64, Ct::F32) => format!("f32({x})"),
        (Ct::F32, Ct::I32) => {
            let (lo, hi) = match to {
                DType::I8 => ("-128", "127"),
                DType::I16 => ("-32768", "32767"),
                _ => ("i32(-2147483648)", "2147483647"),
            };
            format!("f32_to_i32_sat({x}, {lo}, {hi})")
        }
        (Ct::F32, Ct::U32) => {
            let hi = match to {
                DType::U8 => "255u",
                DType::U16 => "65535u",
                _ => "4294967295u",
            };
            format!("f32_to_u32_sat({x}, {hi})")
        }
        (Ct::F32, Ct::I64) => format!("f32_to_i64_sat({x})"),
        (Ct::F32, Ct::U64) => format!("f32_to_u64_sat({x})"),
        (Ct::I32, Ct::U32) => mask(to, &format!("bitcast<u32>({x})")),
        (Ct::U32, Ct::I32) => {
            // Wrap to the target's width, then sign-extend from it.
            let sh = 32 - bits(to);
            if sh == 0 { format!("bitcast<i32>({x})") } else { format!("(bitcast<i32>({x} << {sh}u) >> {sh}u)") }
        }
        (Ct::I32, Ct::I32) => {
            let sh = 32 - bits(to);
            if sh == 0 { x.into() } else { format!("(({x} << {sh}u) >> {sh}u)") }
        }
        (Ct::U32, Ct::U32) => mask(to, x),
        (Ct::Bool, Ct::Bool) => x.into(),
        // Widening: sign- or zero-extended as the source is signed (Rust's `as`). (naga 30
        // turns `i64(x)` of a u32 into a sign extension, so that one goes through u64.)
        (Ct::I32, Ct::I64) => format!("i64({x})"),
        (Ct::U32, Ct::I64) => format!("bitcast<i64>(u64({x}))"),
        (Ct::I32, Ct::U64) => format!("bitcast<u64>(i64({x}))"),
        (Ct::U32, Ct::U64) => format!("u64({x})"),
        (Ct::I64, Ct::U64) => format!("bitcast<u64>({x})"),
        (Ct::U64, Ct::I64) => format!("bitcast<i64>({x})"),
        // Narrowing wraps: the low word, then as from uint32.
        (Ct::I64 | Ct::U64, Ct::I32 | Ct::U32) => {
            let wide = if cf == Ct::I64 { format!("bitcast<u64>({x})") } else { x.to_owned() };
            cast_of(DType::U32, to, &format!("u32({wide} & 0xfffffffflu)"))
        }
        (Ct::I64, Ct::I64) | (Ct::U64, Ct::U64) => x.into(),
    }
}

/// WGSL helpers of the 64-bit integer operations (a kernel with an int64 or uint64 operand
/// takes them; the prelude cannot, as a device without `SHADER_INT64` rejects the types). The
/// same rules as the 32-bit ones in `kernels/prelude.wgsl`, which the CPU backend's match.
pub(crate) const INT64_HELPERS: &str = "
fn floordiv_i64(a: i64, b: i64) -> i64 {
    if b == 0 { return 0; }
    if b == -1 { return 0 - a; }
    var q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) { q = q - 1; }
    return q;
}
fn floordiv_u64(a: u64, b: u64) -> u64 {
    if b == 0lu { return 0lu; }
    return a / b;
}
fn rem_i64(a: i64, b: i64) -> i64 {
    if b == 0 || b == -1 { return 0; }
    var r = a % b;
    if r != 0 && ((r < 0) != (b < 0)) { r = r + b; }
    return r;
}
fn rem_u64(a: u64, b: u64) -> u64 {
    if b == 0lu { return 0lu; }
    return a % b;
}
fn pow_i64(a: i64, b: i64) -> i64 {
    if b < 0 {
        if a == 1 { return 1; }
        if a == -1 { return select(-1li, 1li, (b & 1) == 0); }
        return 0;
    }
    var acc = 1li;
    var base = a;
    var e = bitcast<u64>(b);
    while e > 0lu {
        if (e & 1lu) == 1lu { acc = acc * base; }
        base = base * base;
        e = e >> 1u;
    }
    return acc;
}
fn pow_u64(a: u64, b: u64) -> u64 {
    var acc = 1lu;
    var base = a;
    var e = b;
    while e > 0lu {
        if (e & 1lu) == 1lu { acc = acc * base; }
        base = base * base;
        e = e >> 1u;
    }
    return acc;
}
fn shl_i64(a: i64, b: i64, width: i64) -> i64 {
    if b < 0 || b >= width { return 0; }
    return a << u32(b);
}
fn shr_i64(a: i64, b: i64, width: i64) -> i64 {
    if b < 0 || b >= width { return select(0li, -1li, a < 0); }
    return a >> u32(b);
}
fn shl_u64(a: u64, b: u64, width: u64) -> u64 {
    if b >= width { return 0lu; }
    return a << u32(b);
}
fn shr_u64(a: u64, b: u64, width: u64) -> u64 {
    if b >= width { return 0lu; }
    return a >> u32(b);
}
// Truncating, saturating, NaN -> 0 (Rust's `as`); infinities told apart on the bits.
fn f32_to_i64_sat(v: f32) -> i64 {
    if is_nan(v) { return 0; }
    if is_inf(v) || abs(v) >= 9223372036854775808.0 {
        return select(9223372036854775807li, -9223372036854775807li - 1li, bitcast<i32>(v) < 0);
    }
    return i64(v);
}
fn f32_to_u64_sat(v: f32) -> u64 {
    if is_nan(v) || bitcast<i32>(v) < 0 || v == 0.0 { return 0lu; }
    if is_inf(v) || v >= 18446744073709551616.0 { return 18446744073709551615lu; }
    return u64(v);
}
";

/// `x` (a u32) wrapped to the unsigned type `t`'s width.
fn mask(t: DType, x: &str) -> String {
    match bits(t) {
        32 => x.to_owned(),
        b => format!("({x} & {}u)", (1u32 << b) - 1),
    }
}

/// The expression of an epilogue activation on the f32 `v` (the CPU's GEMM epilogue: ReLU as
/// `max`, which maps NaN to 0).
pub(crate) fn activation(a: Activation) -> String {
    match a {
        Activation::None => "v".into(),
        Activation::Relu => "select(max(v, 0.0), 0.0, is_nan(v))".into(),
        Activation::Gelu => unary(UnaryOp::Gelu, DType::F32),
        Activation::GeluTanh => unary(UnaryOp::GeluTanh, DType::F32),
        Activation::Silu => unary(UnaryOp::Silu, DType::F32),
        Activation::Sigmoid => unary(UnaryOp::Sigmoid, DType::F32),
        Activation::Tanh => unary(UnaryOp::Tanh, DType::F32),
    }
}
