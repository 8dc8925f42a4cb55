//! `einsum` and `tensordot`: contractions written as index strings, lowered to the ops there
//! already are (diagonals by an identity mask, sums, transposes, and batched `matmul` for each
//! pairwise contraction), so they run on every device and differentiate like those ops.

use std::collections::BTreeMap;

use strata_core::Result;

use crate::graph::Array;
use crate::ops::*;

fn err(message: String) -> strata_core::Error {
    invalid("einsum", message)
}

/// An operand with one letter per axis.
struct Term {
    a: Array,
    letters: Vec<char>,
}

/// Parses one side of the subscripts into letters, expanding `...` to `n_ellipsis` placeholder
/// letters (private-use characters, so they never clash with the caller's).
fn letters(spec: &str, ndim: Option<usize>, n_ellipsis: usize) -> Result<Vec<char>> {
    let parts: Vec<&str> = spec.split("...").collect();
    if parts.len() > 2 {
        return Err(err(format!("`{spec}` has more than one ellipsis")));
    }
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        for c in p.chars().filter(|c| !c.is_whitespace()) {
            if !c.is_ascii_alphabetic() {
                return Err(err(format!("`{c}` in `{spec}`: subscripts are letters (and one `...`)")));
            }
            out.push(c);
        }
        if i == 0 && parts.len() == 2 {
            let n = ndim.map_or(n_ellipsis, |d| {
                d.saturating_sub(parts.concat().chars().filter(|c| !c.is_whitespace()).count())
            });
            out.extend((0..n).map(|k| char::from_u32(0xE000 + (n_ellipsis - n + k) as u32).unwrap()));
        }
    }
    Ok(out)
}

/// `t` with axis letters made unique (a repeated letter takes the diagonal).
fn diagonals(mut t: Term) -> Result<Term> {
    while let Some((i, j)) = (0..t.letters.len())
        .flat_map(|i| (i + 1..t.letters.len()).map(move |j| (i, j)))
        .find(|&(i, j)| t.letters[i] == t.letters[j])
    {
        let n = t.a.shape()[i];
        if t.a.shape()[j] != n {
            return Err(err(format!("index `{}` has sizes {n} and {} in one operand", t.letters[i], t.a.shape()[j])));
        }
        // x · I over axes (i, j), summed over j: the diagonal, on axis i.
        let mut eye_shape = vec![1; t.a.ndim()];
        eye_shape[i] = n;
        eye_shape[j] = n;
        let eye = reshape_to(&crate::array::identity(n, t.a.dtype())?, &eye_shape);
        t.a = sum(&multiply(&t.a, &eye)?, Some(&[j as isize]), false)?;
        t.letters.remove(j);
    }
    Ok(t)
}

/// `t` summed over the letters not in `keep`.
fn sum_out(t: Term, keep: &[char]) -> Result<Term> {
    let axes: Vec<isize> =
        (0..t.letters.len()).filter(|&i| !keep.contains(&t.letters[i])).map(|i| i as isize).collect();
    if axes.is_empty() {
        return Ok(t);
    }
    let letters = t.letters.iter().filter(|c| keep.contains(c)).copied().collect();
    Ok(Term { a: sum(&t.a, Some(&axes), false)?, letters })
}

/// `t` with its axes in the order of `order` (a permutation of its letters).
fn arrange(t: &Term, order: &[char]) -> Array {
    let perm = order.iter().map(|c| t.letters.iter().position(|l| l == c).expect("letter present")).collect();
    permute(&t.a, perm)
}

/// The contraction of `x` and `y` over their shared letters not in `keep`.
fn contract(x: Term, y: Term, keep: &[char], size: &BTreeMap<char, usize>) -> Result<Term> {
    let in_x = |c: &char| x.letters.contains(c);
    let in_y = |c: &char| y.letters.contains(c);
    let batch: Vec<char> = x.letters.iter().filter(|c| in_y(c) && keep.contains(c)).copied().collect();
    let summed: Vec<char> = x.letters.iter().filter(|c| in_y(c) && !keep.contains(c)).copied().collect();
    let xo: Vec<char> = x.letters.iter().filter(|c| !in_y(c)).copied().collect();
    let yo: Vec<char> = y.letters.iter().filter(|c| !in_x(c)).copied().collect();
    let n = |cs: &[char]| cs.iter().map(|c| size[c]).product::<usize>();
    let bs: Vec<usize> = batch.iter().map(|c| size[c]).collect();
    let xa = arrange(&x, &[&batch[..], &xo, &summed].concat());
    let ya = arrange(&y, &[&batch[..], &summed, &yo].concat());
    let xm = reshape_to(&xa, &[&bs[..], &[n(&xo), n(&summed)]].concat());
    let ym = reshape_to(&ya, &[&bs[..], &[n(&summed), n(&yo)]].concat());
    let out_shape: Vec<usize> = [&batch[..], &xo, &yo].concat().iter().map(|c| size[c]).collect();
    Ok(Term { a: reshape_to(&matmul(&xm, &ym)?, &out_shape), letters: [batch, xo, yo].concat() })
}

/// Einstein summation over `operands`, as `numpy.einsum`: `"ij,jk->ik"` is a matrix product,
/// `"ii->i"` a diagonal, `"bij,bkj->bik"` a batched product with a transpose, `"...ij,jk"` takes
/// leading axes by broadcasting; without `->` the output is the letters seen once, sorted.
///
/// ```
/// use strata::{Array, einsum};
/// let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let b = Array::from_slice(&[5.0f32, 6.0, 7.0, 8.0], &[2, 2])?;
/// assert_eq!(einsum("ij,jk->ik", &[&a, &b])?.to_vec::<f32>()?, [19.0, 22.0, 43.0, 50.0]);
/// assert_eq!(einsum("ii", &[&a])?.item::<f32>()?, 5.0); // the trace
/// # Ok::<(), strata::Error>(())
/// ```
pub fn einsum(subscripts: &str, operands: &[&Array]) -> Result<Array> {
    check_ok(operands)?;
    let (lhs, rhs) = match subscripts.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (subscripts, None),
    };
    let specs: Vec<&str> = lhs.split(',').collect();
    if specs.len() != operands.len() || operands.is_empty() {
        return Err(err(format!("`{subscripts}` names {} operands; {} given", specs.len(), operands.len())));
    }
    // The ellipsis stands for as many axes as the widest operand leaves over.
    let mut n_ell = 0;
    for (s, a) in specs.iter().zip(operands) {
        let named = s.replace("...", "").chars().filter(|c| !c.is_whitespace()).count();
        if s.contains("...") {
            n_ell = n_ell.max(a.ndim().saturating_sub(named));
        }
    }
    let t = operands.iter().fold(operands[0].dtype(), |t, a| result_type(t, a.dtype()));
    let mut terms = Vec::with_capacity(operands.len());
    let mut size: BTreeMap<char, usize> = BTreeMap::new();
    for (s, a) in specs.iter().zip(operands) {
        let ls = letters(s, Some(a.ndim()), n_ell)?;
        if ls.len() != a.ndim() {
            return Err(err(format!("`{s}` has {} indices for an operand of shape {:?}", ls.len(), a.shape())));
        }
        for (&c, &d) in ls.iter().zip(a.shape()) {
            let e = size.entry(c).or_insert(d);
            if *e == 1 {
                *e = d;
            } else if d != 1 && d != *e {
                return Err(err(format!("index `{c}` has sizes {e} and {d}")));
            }
        }
        terms.push(Term { a: a.astype(t)?, letters: ls });
    }
    let output: Vec<char> = match rhs {
        Some(r) => {
            let o = letters(r, None, n_ell)?;
            if let Some(c) = o.iter().find(|c| !size.contains_key(c)) {
                return Err(err(format!("output index `{c}` appears in no operand")));
            }
            if o.iter().enumerate().any(|(i, c)| o[..i].contains(c)) {
                return Err(err(format!("output `{r}` repeats an index")));
            }
            o
        }
        None => {
            let all: Vec<char> = terms.iter().flat_map(|t| t.letters.clone()).collect();
            let mut once: Vec<char> =
                size.keys().filter(|c| all.iter().filter(|a| a == c).count() == 1).copied().collect();
            once.retain(|c| (*c as u32) < 0xE000);
            let ell: Vec<char> = size.keys().filter(|c| (**c as u32) >= 0xE000).copied().collect();
            [ell, once].concat()
        }
    };
    // Broadcast size-1 axes to the index's size, take diagonals, then contract left to right,
    // summing each index away as soon as no later operand or the output needs it.
    let terms = terms
        .into_iter()
        .map(|t| {
            let full: Vec<usize> = t.letters.iter().map(|c| size[c]).collect();
            diagonals(Term { a: broadcast_to(&t.a, &full)?, letters: t.letters })
        })
        .collect::<Result<Vec<_>>>()?;
    // keeps[i]: the letters the output or operands i.. still need.
    let keeps: Vec<Vec<char>> = (0..=terms.len())
        .map(|i| output.iter().chain(terms[i..].iter().flat_map(|t| &t.letters)).copied().collect())
        .collect();
    let mut rest = terms.into_iter();
    let first = rest.next().expect("at least one operand");
    let mut acc = sum_out(first, &keeps[1])?;
    for (i, next) in rest.enumerate() {
        let keep = &keeps[i + 2];
        let next = sum_out(next, &[&keep[..], &acc.letters].concat())?;
        acc = contract(acc, next, keep, &size)?;
    }
    let acc = sum_out(acc, &output)?;
    Ok(arrange(&acc, &output))
}

/// The sum of products over the last `axes` axes of `a` and the first `axes` of `b` (NumPy's
/// `tensordot(a, b, axes=n)`).
pub fn tensordot(a: &Array, b: &Array, axes: usize) -> Result<Array> {
    if axes > a.ndim() || axes > b.ndim() {
        return Err(invalid(
            "tensordot",
            format!("{axes} axes to contract, but the operands are {:?} and {:?}", a.shape(), b.shape()),
        ));
    }
    let pa: Vec<isize> = (a.ndim().saturating_sub(axes)..a.ndim()).map(|i| i as isize).collect();
    let pb: Vec<isize> = (0..axes.min(b.ndim())).map(|i| i as isize).collect();
    tensordot_axes(a, b, &pa, &pb)
}

/// The sum of products over axes `a_axes` of `a` paired with `b_axes` of `b` (NumPy's
/// `tensordot(a, b, axes=(a_axes, b_axes))`): `a`'s other axes, then `b`'s.
pub fn tensordot_axes(a: &Array, b: &Array, a_axes: &[isize], b_axes: &[isize]) -> Result<Array> {
    check_ok(&[a, b])?;
    if a_axes.len() != b_axes.len() || a_axes.len() > a.ndim() || b_axes.len() > b.ndim() {
        return Err(invalid(
            "tensordot",
            format!("axes {a_axes:?} of {:?} and {b_axes:?} of {:?} do not pair up", a.shape(), b.shape()),
        ));
    }
    let ca = a_axes.iter().map(|&x| norm_axis("tensordot", x, a.ndim())).collect::<Result<Vec<_>>>()?;
    let cb = b_axes.iter().map(|&x| norm_axis("tensordot", x, b.ndim())).collect::<Result<Vec<_>>>()?;
    let repeats = |c: &[usize]| c.iter().enumerate().any(|(i, x)| c[..i].contains(x));
    if repeats(&ca) || repeats(&cb) {
        return Err(invalid("tensordot", format!("axes {a_axes:?} and {b_axes:?} must not repeat an axis")));
    }
    for (&i, &j) in ca.iter().zip(&cb) {
        if a.shape()[i] != b.shape()[j] {
            return Err(invalid(
                "tensordot",
                format!("axis {i} of {:?} and axis {j} of {:?} differ in size", a.shape(), b.shape()),
            ));
        }
    }
    let fa: Vec<usize> = (0..a.ndim()).filter(|i| !ca.contains(i)).collect();
    let fb: Vec<usize> = (0..b.ndim()).filter(|i| !cb.contains(i)).collect();
    let k: usize = ca.iter().map(|&i| a.shape()[i]).product();
    let m: usize = fa.iter().map(|&i| a.shape()[i]).product();
    let n: usize = fb.iter().map(|&i| b.shape()[i]).product();
    let am = reshape_to(&permute(a, [&fa[..], &ca].concat()), &[m, k]);
    let bm = reshape_to(&permute(b, [&cb[..], &fb].concat()), &[k, n]);
    let t = result_type(a.dtype(), b.dtype());
    let out: Vec<usize> = fa.iter().map(|&i| a.shape()[i]).chain(fb.iter().map(|&i| b.shape()[i])).collect();
    Ok(reshape_to(&matmul(&am.astype(t)?, &bm.astype(t)?)?, &out))
}
