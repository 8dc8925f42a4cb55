//! Neural-network layers, losses and initializers, in the manner of `mlx.nn`.
//!
//! A [`Module`] holds its parameters as a [`Tree`] and computes with them; training takes the
//! gradient of a loss with respect to that tree ([`value_and_grad`]), and an optimizer
//! ([`crate::optim`]) returns the updated tree, which [`Module::update`] puts back. Frozen
//! modules (a layer's `frozen` flag, or in a [`Sequential`] by index with
//! [`Sequential::freeze`] or by path prefix with [`Sequential::freeze_path`]) are left out of
//! the trainable tree; a layer freezes as a whole, not parameter by parameter.
//!
//! ```
//! use strata::{Array, DType, nn::{self, Module}, optim::{self, Optimizer}};
//! let mut model = nn::Sequential::new()
//!     .push(nn::Linear::new(2, 16, true)?)
//!     .push(nn::Activation::Relu)
//!     .push(nn::Linear::new(16, 1, true)?);
//! let x = strata::random::normal(&[32, 2], DType::F32, 0.0, 1.0, None)?;
//! let y = strata::sum(&x, Some(&[1]), true)?; // learn the sum of the inputs
//! let step = nn::value_and_grad(|m: &nn::Sequential, a: &[Array]| nn::losses::mse(&m.forward(&a[0])?, &a[1]));
//! let mut opt = optim::Adam::new(1e-2);
//! let first = step(&model, &[x.clone(), y.clone()])?.0.item::<f32>()?;
//! for _ in 0..200 {
//!     let (_, g) = step(&model, &[x.clone(), y.clone()])?;
//!     let p = opt.update(&model.trainable_parameters(), &g)?;
//!     model.update(&p)?;
//! }
//! let last = step(&model, &[x, y])?.0.item::<f32>()?;
//! assert!(last < first / 10.0);
//! # Ok::<(), strata::Error>(())
//! ```

mod init;
mod layers;
pub mod losses;
mod transformer;

pub use init::{Init, glorot_normal, glorot_uniform, he_normal, he_uniform};
pub use layers::{
    Activation, BatchNorm, Bilinear, BoxedModule, Conv1d, Conv2d, Conv3d, ConvNd, Dropout, Embedding, GroupNorm,
    LayerNorm, Linear, MultiHeadAttention, PRelu, Pool, RmsNorm, Rope, Sequential,
};
pub use transformer::{TransformerDecoder, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer};

use std::collections::BTreeMap;

use strata_core::{Error, Result};

use crate::graph::Array;
use crate::tree::Tree;

/// A layer or a model: parameters as a tree, and a forward pass.
pub trait Module {
    /// The output for input `x`.
    fn forward(&self, x: &Array) -> Result<Array>;

    /// Every parameter, as a map tree (children's under their names).
    fn parameters(&self) -> Tree;

    /// Puts back parameters: `params` has this module's structure, or part of it (paths it
    /// lacks are left as they are). A leaf of another shape is an error naming its path.
    fn update(&mut self, params: &Tree) -> Result<()>;

    /// The parameters gradients should flow to: all, less frozen ones.
    fn trainable_parameters(&self) -> Tree {
        self.parameters()
    }

    /// Switches training behaviour (dropout) on or off; on by default.
    fn set_training(&mut self, _training: bool) {}

    /// The number of parameter values.
    fn num_parameters(&self) -> usize {
        self.parameters().leaves().iter().map(|a| a.size()).sum()
    }
}

/// `f(model, args)`'s value and its gradient with respect to the model's trainable
/// parameters, as a tree (MLX's `nn.value_and_grad`). `f` returns a scalar loss.
pub fn value_and_grad<M, F>(f: F) -> impl Fn(&M, &[Array]) -> Result<(Array, Tree)>
where
    M: Module + Clone,
    F: Fn(&M, &[Array]) -> Result<Array>,
{
    move |model: &M, args: &[Array]| {
        let trainable = model.trainable_parameters();
        crate::tree::value_and_grad_tree(|t: &Tree| {
            let mut m = model.clone();
            m.update(t)?;
            f(&m, args)
        })(&trainable)
    }
}

/// Replaces the leaf `current` with `new` from an update tree, checking the shape.
pub(crate) fn set_leaf(path: &str, current: &mut Array, new: Option<&Tree>) -> Result<()> {
    match new {
        None => Ok(()),
        Some(Tree::Array(a)) if a.shape() == current.shape() => {
            *current = a.astype(current.dtype())?;
            Ok(())
        }
        Some(Tree::Array(a)) => Err(Error::InvalidArgument {
            op: "Module::update",
            message: format!("{path} has shape {:?}; the update gives {:?}", current.shape(), a.shape()),
        }),
        Some(_) => Err(Error::InvalidArgument { op: "Module::update", message: format!("{path} must be an array") }),
    }
}

/// `e` with `name.` before its message, for an error in a child module.
pub(crate) fn prefixed(name: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument { op, message } => Error::InvalidArgument { op, message: format!("{name}.{message}") },
        e => e,
    }
}

/// Updates named children from `p`, prefixing an error with the child's name.
pub(crate) fn update_children(p: &Tree, children: Vec<(&str, &mut dyn Module)>) -> Result<()> {
    for (name, m) in children {
        if let Some(t) = child(p, name) {
            m.update(t).map_err(|e| prefixed(name, e))?;
        }
    }
    Ok(())
}

/// Puts back the list under `layers` of `p` into `layers`, one entry per layer; errors name
/// `layers.i`.
pub(crate) fn update_layers<'a>(p: &Tree, layers: impl ExactSizeIterator<Item = &'a mut dyn Module>) -> Result<()> {
    let Some(Tree::List(items)) = child(p, "layers") else { return Ok(()) };
    if items.len() != layers.len() {
        return Err(Error::InvalidArgument {
            op: "Module::update",
            message: format!("layers: {} entries for {} layers", items.len(), layers.len()),
        });
    }
    for (i, (l, t)) in layers.zip(items).enumerate() {
        l.update(t).map_err(|e| prefixed(&format!("layers.{i}"), e))?;
    }
    Ok(())
}

/// The child `key` of a map tree, if `t` is a map.
pub(crate) fn child<'a>(t: &'a Tree, key: &str) -> Option<&'a Tree> {
    match t {
        Tree::Map(m) => m.get(key),
        _ => None,
    }
}

/// A map tree from named leaves, leaving out the `None`s.
pub(crate) fn map_of(items: Vec<(&str, Option<&Array>)>) -> Tree {
    Tree::Map(items.into_iter().filter_map(|(k, v)| v.map(|a| (k.to_string(), Tree::Array(a.clone())))).collect())
}

/// A map tree with nothing in it.
pub(crate) fn empty() -> Tree {
    Tree::Map(BTreeMap::new())
}
