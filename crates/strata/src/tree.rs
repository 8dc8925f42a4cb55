//! Parameter trees: nested maps and lists of arrays (a model's parameters, an optimizer's
//! state), and the transforms over them — [`value_and_grad_tree`] gives the gradient as a tree
//! of the same structure, as MLX's `value_and_grad` does over nested dicts.

use std::collections::BTreeMap;

use strata_core::{Error, Result};

use crate::graph::Array;

/// A tree of arrays: leaves, lists and string-keyed maps (kept sorted by key, so two trees
/// with the same keys flatten in the same order).
///
/// ```
/// use strata::{Array, Tree};
/// let params = Tree::map([
///     ("w", Tree::from(strata::ones(&[2, 2], strata::DType::F32)?)),
///     ("layers", Tree::List(vec![Tree::from(strata::zeros(&[3], strata::DType::F32)?)])),
/// ]);
/// let names: Vec<String> = params.flatten().into_iter().map(|(k, _)| k).collect();
/// assert_eq!(names, ["layers.0", "w"]);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum Tree {
    /// One array.
    Array(Array),
    /// An ordered list.
    List(Vec<Tree>),
    /// Named children.
    Map(BTreeMap<String, Tree>),
}

impl From<Array> for Tree {
    fn from(a: Array) -> Tree {
        Tree::Array(a)
    }
}

impl Tree {
    /// A map from `(name, child)` pairs.
    pub fn map<K: Into<String>>(children: impl IntoIterator<Item = (K, Tree)>) -> Tree {
        Tree::Map(children.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The leaves in order (lists by index, maps by key).
    pub fn leaves(&self) -> Vec<&Array> {
        let mut out = Vec::new();
        self.visit(&mut |a| out.push(a));
        out
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Array)) {
        match self {
            Tree::Array(a) => f(a),
            Tree::List(v) => v.iter().for_each(|t| t.visit(f)),
            Tree::Map(m) => m.values().for_each(|t| t.visit(f)),
        }
    }

    /// The leaves with dotted paths (`"layers.0.weight"`), as in a safetensors file.
    pub fn flatten(&self) -> Vec<(String, Array)> {
        fn go(t: &Tree, prefix: &str, out: &mut Vec<(String, Array)>) {
            let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
            match t {
                Tree::Array(a) => out.push((prefix.to_string(), a.clone())),
                Tree::List(v) => v.iter().enumerate().for_each(|(i, c)| go(c, &join(&i.to_string()), out)),
                Tree::Map(m) => m.iter().for_each(|(k, c)| go(c, &join(k), out)),
            }
        }
        let mut out = Vec::new();
        go(self, "", &mut out);
        out
    }

    /// The leaf at a dotted path, if there is one.
    pub fn get(&self, path: &str) -> Option<&Array> {
        let mut t = self;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            t = match t {
                Tree::List(v) => v.get(part.parse::<usize>().ok()?)?,
                Tree::Map(m) => m.get(part)?,
                Tree::Array(_) => return None,
            };
        }
        match t {
            Tree::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The same structure with `f` applied to every leaf.
    pub fn map_leaves(&self, f: &mut impl FnMut(&Array) -> Result<Array>) -> Result<Tree> {
        Ok(match self {
            Tree::Array(a) => Tree::Array(f(a)?),
            Tree::List(v) => Tree::List(v.iter().map(|t| t.map_leaves(f)).collect::<Result<_>>()?),
            Tree::Map(m) => Tree::Map(m.iter().map(|(k, t)| Ok((k.clone(), t.map_leaves(f)?))).collect::<Result<_>>()?),
        })
    }

    /// The same structure with `f` applied to this tree's and `other`'s leaves pairwise (an
    /// optimizer step: parameters and gradients). The structures must match.
    pub fn zip_map(&self, other: &Tree, f: &mut impl FnMut(&Array, &Array) -> Result<Array>) -> Result<Tree> {
        let mismatch = || Error::InvalidArgument {
            op: "Tree::zip_map",
            message: "the two trees have different structures".into(),
        };
        Ok(match (self, other) {
            (Tree::Array(a), Tree::Array(b)) => Tree::Array(f(a, b)?),
            (Tree::List(a), Tree::List(b)) if a.len() == b.len() => {
                Tree::List(a.iter().zip(b).map(|(x, y)| x.zip_map(y, f)).collect::<Result<_>>()?)
            }
            (Tree::Map(a), Tree::Map(b)) if a.keys().eq(b.keys()) => Tree::Map(
                a.iter().zip(b.values()).map(|((k, x), y)| Ok((k.clone(), x.zip_map(y, f)?))).collect::<Result<_>>()?,
            ),
            _ => return Err(mismatch()),
        })
    }

    /// This structure with its leaves replaced, in order, by `leaves`.
    pub fn with_leaves(&self, leaves: &[Array]) -> Result<Tree> {
        let mut it = leaves.iter();
        let t = self.map_leaves(&mut |_| {
            it.next().cloned().ok_or_else(|| Error::InvalidArgument {
                op: "Tree::with_leaves",
                message: format!("{} leaves given for a tree of more", leaves.len()),
            })
        })?;
        if it.next().is_some() {
            return Err(Error::InvalidArgument {
                op: "Tree::with_leaves",
                message: format!("{} leaves given for a tree of fewer", leaves.len()),
            });
        }
        Ok(t)
    }
}

/// `f`'s value and its gradient with respect to every leaf of the tree, as a tree of the same
/// structure. `f` returns a scalar.
///
/// ```
/// use strata::{Array, Tree, value_and_grad_tree};
/// let p = Tree::map([("a", Tree::from(Array::from_slice(&[3.0f32], &[1])?)),
///                    ("b", Tree::from(Array::from_slice(&[2.0f32], &[1])?))]);
/// // f = a² · b
/// let f = |t: &Tree| (t.get("a").unwrap() * t.get("a").unwrap() * t.get("b").unwrap()).sum(None, false);
/// let (v, g) = value_and_grad_tree(f)(&p)?;
/// assert_eq!(v.item::<f32>()?, 18.0);
/// assert_eq!(g.get("a").unwrap().item::<f32>()?, 12.0);
/// assert_eq!(g.get("b").unwrap().item::<f32>()?, 9.0);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn value_and_grad_tree<F>(f: F) -> impl Fn(&Tree) -> Result<(Array, Tree)>
where
    F: Fn(&Tree) -> Result<Array>,
{
    move |tree: &Tree| {
        let leaves: Vec<Array> = tree.leaves().into_iter().cloned().collect();
        let structure = tree.clone();
        let flat = |xs: &[Array]| f(&structure.with_leaves(xs)?);
        let (v, grads) = crate::autodiff::value_and_grad(flat, &[])(&leaves)?;
        Ok((v, tree.with_leaves(&grads)?))
    }
}
