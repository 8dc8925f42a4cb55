// Strata's WGSL prelude: what every generated kernel may call. Elements live in `array<u32>`
// bindings whatever their type (WGSL has no 8-bit storage and 16-bit only behind an extension),
// so 8- and 16-bit values are unpacked on load and packed on store, and the conversions are
// written in integer arithmetic: WGSL leaves an f32 -> f16 conversion out of range
// indeterminate and its rounding to the implementation, and these must match the CPU backend
// bit for bit. NaN and infinity are tested on the bits, since WGSL lets implementations assume
// neither occurs in floating-point arithmetic.

const STRATA_NAN: u32 = 0x7fc00000u;
const STRATA_INF: u32 = 0x7f800000u;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(STRATA_NAN);
}

fn inf() -> f32 {
    return bitcast<f32>(STRATA_INF);
}

// ---- 16-bit floats ----------------------------------------------------------------------------

fn f16_to_f32(h: u32) -> f32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if e == 0u {
        // Zero or subnormal: m * 2^-24, exact (and a normal f32, so no flush to zero).
        return bitcast<f32>(s | bitcast<u32>(f32(m) * 5.9604644775390625e-8));
    }
    if e == 31u {
        return bitcast<f32>(s | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}

// Round to nearest even; overflow to infinity; NaN keeps its sign and top payload bits, quiet.
fn f32_to_f16(f: f32) -> u32 {
    let x = bitcast<u32>(f);
    let s = (x >> 16u) & 0x8000u;
    let a = x & 0x7fffffffu;
    if a > 0x7f800000u {
        return s | 0x7e00u | ((a >> 13u) & 0x3ffu);
    }
    if a >= 0x477ff000u {
        return s | 0x7c00u;
    }
    if a >= 0x38800000u {
        let r = a - 0x38000000u;
        return s | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
    }
    if a <= 0x33000000u {
        return s;
    }
    let e = a >> 23u;
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    let q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    return s | select(q, q + 1u, rem > half || (rem == half && (q & 1u) == 1u));
}

fn bf16_to_f32(h: u32) -> f32 {
    return bitcast<f32>(h << 16u);
}

fn f32_to_bf16(f: f32) -> u32 {
    let x = bitcast<u32>(f);
    if (x & 0x7fffffffu) > 0x7f800000u {
        return (x >> 16u) | 0x40u;
    }
    return (x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u;
}

// ---- float to integer: truncate, saturate, NaN -> 0 ---------------------------------------

// Infinities are told apart on the bits: drivers may assume arithmetic never meets one.
fn f32_to_i32_sat(v: f32, lo: i32, hi: i32) -> i32 {
    if is_nan(v) {
        return 0;
    }
    if is_inf(v) || abs(v) >= 2147483648.0 {
        return select(hi, lo, bitcast<i32>(v) < 0);
    }
    return clamp(i32(v), lo, hi);
}

fn f32_to_u32_sat(v: f32, hi: u32) -> u32 {
    if is_nan(v) || bitcast<i32>(v) < 0 || v == 0.0 {
        return 0u;
    }
    if is_inf(v) || v >= 4294967296.0 {
        return hi;
    }
    return min(u32(v), hi);
}

// ---- trigonometry (Cephes' single-precision kernels with their own argument reduction) --------
// Drivers bound the error of sin, cos and tan only on [-pi, pi] (Vulkan) and are far off near
// tan's poles, so the argument is reduced here: j = the octant, x - j*pi/4 with pi/4 in three
// parts (exact products for |x| below about 8192, good to about 1e-7 somewhat beyond).

struct Octant {
    r: f32,
    j: u32,
}

fn octant(x: f32) -> Octant {
    var j = u32(x * 1.2732395447351628);
    j = (j + 1u) & ~1u;
    let y = f32(j);
    let r = ((x - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
    return Octant(r, j & 7u);
}

fn sin_poly(x: f32, z: f32) -> f32 {
    return ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * x + x;
}

fn cos_poly(z: f32) -> f32 {
    return ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
}

fn sin_f(x: f32) -> f32 {
    if is_nan(x) || is_inf(x) {
        return nan();
    }
    let o = octant(abs(x));
    var j = o.j;
    var neg = x < 0.0;
    if j > 3u {
        neg = !neg;
        j = j - 4u;
    }
    let z = o.r * o.r;
    let y = select(sin_poly(o.r, z), cos_poly(z), j == 1u || j == 2u);
    return select(y, -y, neg);
}

fn cos_f(x: f32) -> f32 {
    if is_nan(x) || is_inf(x) {
        return nan();
    }
    let o = octant(abs(x));
    var j = o.j;
    var neg = false;
    if j > 3u {
        neg = true;
        j = j - 4u;
    }
    if j > 1u {
        neg = !neg;
    }
    let z = o.r * o.r;
    let y = select(cos_poly(z), sin_poly(o.r, z), j == 1u || j == 2u);
    return select(y, -y, neg);
}

fn tan_f(x: f32) -> f32 {
    if is_nan(x) || is_inf(x) {
        return nan();
    }
    let o = octant(abs(x));
    let z = o.r * o.r;
    var y = o.r;
    if z > 1.0e-4 {
        y = (((((9.38540185543e-3 * z + 3.11992232697e-3) * z + 2.44301354525e-2) * z + 5.34112807005e-2) * z
            + 1.33387994085e-1) * z + 3.33331568548e-1) * z * o.r + o.r;
    }
    if (o.j & 2u) != 0u {
        y = -1.0 / y;
    }
    return select(y, -y, x < 0.0);
}

// ---- inverse trigonometry (Cephes' single-precision fits: a few ulps, where drivers may be
// thousands off) ----------------------------------------------------------------------------

fn atan_f(x: f32) -> f32 {
    if is_nan(x) {
        return x;
    }
    var v = abs(x);
    var y = 0.0;
    if v > 2.414213562373095 {
        y = 1.5707963267948966;
        v = -1.0 / v;
    } else if v > 0.4142135623730950 {
        y = 0.7853981633974483;
        v = (v - 1.0) / (v + 1.0);
    }
    let z = v * v;
    y = y + (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * v + v;
    return select(y, -y, x < 0.0);
}

fn asin_poly(v: f32) -> f32 {
    let z = v * v;
    return ((((4.2163199048e-2 * z + 2.4181311049e-2) * z + 4.5470025998e-2) * z + 7.4953002686e-2) * z
        + 1.6666752422e-1) * z * v + v;
}

fn asin_f(x: f32) -> f32 {
    let a = abs(x);
    if is_nan(x) || a > 1.0 {
        return nan();
    }
    var y: f32;
    if a > 0.5 {
        y = 1.5707963267948966 - 2.0 * asin_poly(sqrt(0.5 * (1.0 - a)));
    } else {
        y = asin_poly(a);
    }
    return select(y, -y, x < 0.0);
}

fn acos_f(x: f32) -> f32 {
    if is_nan(x) || abs(x) > 1.0 {
        return nan();
    }
    if x < -0.5 {
        return 3.141592653589793 - 2.0 * asin_poly(sqrt(0.5 * (1.0 + x)));
    }
    if x > 0.5 {
        return 2.0 * asin_poly(sqrt(0.5 * (1.0 - x)));
    }
    return 1.5707963267948966 - asin_poly(x);
}

fn atan2_f(y: f32, x: f32) -> f32 {
    if is_nan(x) || is_nan(y) {
        return nan();
    }
    let ys = bitcast<i32>(y) < 0;
    let xs = bitcast<i32>(x) < 0;
    var r: f32;
    if y == 0.0 {
        r = select(0.0, 3.141592653589793, xs);
    } else if x == 0.0 {
        r = 1.5707963267948966;
    } else if is_inf(x) && is_inf(y) {
        r = select(0.7853981633974483, 2.356194490192345, xs);
    } else if is_inf(x) {
        r = select(0.0, 3.141592653589793, xs);
    } else if is_inf(y) {
        r = 1.5707963267948966;
    } else {
        r = atan_f(abs(y / x));
        if xs {
            r = 3.141592653589793 - r;
        }
    }
    return select(r, -r, ys);
}

// ---- float functions WGSL lacks -----------------------------------------------------------

fn sign_f(v: f32) -> f32 {
    return select(select(v, -1.0, v < 0.0), 1.0, v > 0.0);
}

fn expm1_f(v: f32) -> f32 {
    let u = exp(v);
    if u == 1.0 || is_nan(v) {
        return v;
    }
    let um1 = u - 1.0;
    if um1 == -1.0 {
        return -1.0;
    }
    if is_inf(u) {
        return u;
    }
    return um1 * v / log(u);
}

fn log1p_f(v: f32) -> f32 {
    let u = 1.0 + v;
    if u == 1.0 || is_nan(v) {
        return v;
    }
    if v < -1.0 {
        return nan();
    }
    if is_inf(u) {
        return u;
    }
    return log(u) * v / (u - 1.0);
}

fn erf_small(x: f32) -> f32 {
    let x2 = x * x;
    let p = 1.0 + x2 * (-0.333333333 + x2 * (0.1 + x2 * (-0.0238095238 + x2 * (0.00462962963 + x2 * -0.000757575758))));
    return 1.1283791671 * x * p;
}

// erfc for x >= 0 (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).
fn erfc_pos(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-x * x + p);
}

fn erf_f(x: f32) -> f32 {
    if is_nan(x) {
        return x;
    }
    if abs(x) < 0.5 {
        return erf_small(x);
    }
    let r = 1.0 - erfc_pos(abs(x));
    return select(r, -r, x < 0.0);
}

fn erfc_f(x: f32) -> f32 {
    if is_nan(x) {
        return x;
    }
    if abs(x) < 0.5 {
        return 1.0 - erf_small(x);
    }
    if x > 0.0 {
        return erfc_pos(x);
    }
    return 2.0 - erfc_pos(-x);
}

// Giles, "Approximating the erfinv function" (GPU Computing Gems), single precision.
fn erfinv_f(x: f32) -> f32 {
    if is_nan(x) || abs(x) > 1.0 {
        return nan();
    }
    if abs(x) == 1.0 {
        return select(inf(), -inf(), x < 0.0);
    }
    var w = -log((1.0 - x) * (1.0 + x));
    var p: f32;
    if w < 5.0 {
        w = w - 2.5;
        p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w;
        p = -3.5233877e-06 + p * w;
        p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w;
        p = -0.00125372503 + p * w;
        p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w;
        p = 1.50140941 + p * w;
    } else {
        w = sqrt(w) - 3.0;
        p = -0.000200214257;
        p = 0.000100950558 + p * w;
        p = 0.00134934322 + p * w;
        p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w;
        p = -0.0076224613 + p * w;
        p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w;
        p = 2.83297682 + p * w;
    }
    return p * x;
}

// Whether b is an odd integer (|b| >= 2^24 is always even in f32).
fn is_odd_int(b: f32) -> bool {
    return !is_inf(b) && floor(b) == b && abs(b) < 16777216.0 && (i32(abs(b)) & 1) == 1;
}

// a^b with C's pow rules (WGSL's pow is undefined for a < 0).
fn pow_f(a: f32, b: f32) -> f32 {
    if b == 0.0 || a == 1.0 {
        return 1.0;
    }
    if is_nan(a) || is_nan(b) {
        return nan();
    }
    if is_inf(b) {
        if abs(a) == 1.0 {
            return 1.0;
        }
        let grows = (abs(a) > 1.0) == (b > 0.0);
        return select(0.0, inf(), grows);
    }
    if is_inf(a) {
        let m = select(0.0, inf(), b > 0.0);
        return select(m, -m, a < 0.0 && is_odd_int(b));
    }
    if a == 0.0 {
        let m = select(0.0, inf(), b < 0.0);
        return select(m, -m, bitcast<i32>(a) < 0 && is_odd_int(b));
    }
    let m = exp2(b * log2(abs(a)));
    if a > 0.0 {
        return m;
    }
    if floor(b) != b {
        return nan();
    }
    return select(m, -m, is_odd_int(b));
}

// C's fmod, exact: subtract |b| scaled by powers of two (each step exact by Sterbenz's lemma
// and at least one binade smaller), for finite a and b != 0.
fn fmod_f(a: f32, b: f32) -> f32 {
    var r = abs(a);
    let m = abs(b);
    for (var i = 0; i < 300 && r >= m; i++) {
        let k = i32(bitcast<u32>(r) >> 23u) - i32(bitcast<u32>(m) >> 23u);
        var s = ldexp(m, k);
        if s > r {
            s = s * 0.5;
        }
        r = r - s;
    }
    return select(r, -r, bitcast<i32>(a) < 0);
}

// NumPy's npy_divmod: the quotient of a - fmod(a, b), a whole multiple of b, rounded to the
// nearest integer, so that a division a few ulps off (drivers allow 2.5) cannot move it.
fn floordiv_f(a: f32, b: f32) -> f32 {
    if b == 0.0 {
        return a / b;
    }
    if is_nan(a) || is_nan(b) || is_inf(a) {
        return nan();
    }
    let m = select(fmod_f(a, b), a, is_inf(b));
    var div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div = div - 1.0;
    }
    if div == 0.0 {
        return select(0.0, -0.0, (bitcast<u32>(a) ^ bitcast<u32>(b)) >= 0x80000000u);
    }
    let f = floor(div);
    return select(f, f + 1.0, div - f > 0.5);
}

fn py_rem_f(a: f32, b: f32) -> f32 {
    if is_nan(a) || is_nan(b) || is_inf(a) || b == 0.0 {
        return nan();
    }
    // fmod(a, ±inf) is a.
    let r = select(fmod_f(a, b), a, is_inf(b));
    if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
        return r + b;
    }
    return r;
}

fn nan_max(a: f32, b: f32) -> f32 {
    if is_nan(a) || is_nan(b) {
        return nan();
    }
    return select(b, a, a > b);
}

fn nan_min(a: f32, b: f32) -> f32 {
    if is_nan(a) || is_nan(b) {
        return nan();
    }
    return select(b, a, a < b);
}

// As the CPU: the larger by C's fmax (which skips a NaN) decides -inf first, then NaN wins.
fn logaddexp_f(a: f32, b: f32) -> f32 {
    let m = select(select(max(a, b), a, is_nan(b)), b, is_nan(a));
    if !is_nan(m) && is_inf(m) && m < 0.0 {
        return m;
    }
    if is_nan(a) || is_nan(b) {
        return nan();
    }
    return m + log1p_f(exp(-abs(a - b)));
}

fn gelu_f(v: f32) -> f32 {
    return 0.5 * v * erfc_f(-v * 0.70710678118654752440);
}

fn gelu_tanh_f(v: f32) -> f32 {
    return v / (1.0 + exp(-2.0 * 0.79788456080286535588 * (v + 0.044715 * v * v * v)));
}

// ---- integer functions with the CPU's semantics (wrapping; division by zero gives 0) --------

fn floordiv_i(a: i32, b: i32) -> i32 {
    if b == 0 {
        return 0;
    }
    if b == -1 {
        return 0 - a;
    }
    var q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q = q - 1;
    }
    return q;
}

fn floordiv_u(a: u32, b: u32) -> u32 {
    if b == 0u {
        return 0u;
    }
    return a / b;
}

fn rem_i(a: i32, b: i32) -> i32 {
    if b == 0 || b == -1 {
        return 0;
    }
    var r = a % b;
    if r != 0 && ((r < 0) != (b < 0)) {
        r = r + b;
    }
    return r;
}

fn rem_u(a: u32, b: u32) -> u32 {
    if b == 0u {
        return 0u;
    }
    return a % b;
}

fn pow_i(a: i32, b: i32) -> i32 {
    if b < 0 {
        if a == 1 {
            return 1;
        }
        if a == -1 {
            return select(-1, 1, (b & 1) == 0);
        }
        return 0;
    }
    var acc = 1;
    var base = a;
    var e = u32(b);
    while e > 0u {
        if (e & 1u) == 1u {
            acc = acc * base;
        }
        base = base * base;
        e = e >> 1u;
    }
    return acc;
}

fn pow_u(a: u32, b: u32) -> u32 {
    var acc = 1u;
    var base = a;
    var e = b;
    while e > 0u {
        if (e & 1u) == 1u {
            acc = acc * base;
        }
        base = base * base;
        e = e >> 1u;
    }
    return acc;
}

fn shl_i(a: i32, b: i32, width: i32) -> i32 {
    if b < 0 || b >= width {
        return 0;
    }
    return a << u32(b);
}

fn shr_i(a: i32, b: i32, width: i32) -> i32 {
    if b < 0 || b >= width {
        return select(0, -1, a < 0);
    }
    return a >> u32(b);
}

fn shl_u(a: u32, b: u32, width: u32) -> u32 {
    if b >= width {
        return 0u;
    }
    return a << b;
}

fn shr_u(a: u32, b: u32, width: u32) -> u32 {
    if b >= width {
        return 0u;
    }
    return a >> b;
}
