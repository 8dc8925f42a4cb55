//! Transformer layers as MLX has them (`nn.TransformerEncoderLayer`, `nn.TransformerEncoder`,
//! `nn.TransformerDecoderLayer`, `nn.TransformerDecoder`): the same parameter names, the same
//! pre- or post-norm arithmetic, so MLX weights load by name and outputs agree.

use strata_core::Result;

use super::{Activation, Dropout, LayerNorm, Linear, Module, MultiHeadAttention, update_children, update_layers};
use crate::fast::Mask;
use crate::graph::Array;
use crate::ops::add;
use crate::tree::Tree;

/// The feed-forward block `linear2(dropout(activation(linear1(x))))`.
fn mlp(x: &Array, linear1: &Linear, activation: Activation, dropout: &Dropout, linear2: &Linear) -> Result<Array> {
    linear2.forward(&dropout.forward(&activation.forward(&linear1.forward(x)?)?)?)
}

/// One encoder block: self-attention and a feed-forward network, each with a residual
/// connection and a layer norm, before (`norm_first`, MLX's default) or after the residual.
#[derive(Clone, Debug)]
pub struct TransformerEncoderLayer {
    #[allow(missing_docs)]
    pub attention: MultiHeadAttention,
    #[allow(missing_docs)]
    pub ln1: LayerNorm,
    #[allow(missing_docs)]
    pub ln2: LayerNorm,
    #[allow(missing_docs)]
    pub linear1: Linear,
    #[allow(missing_docs)]
    pub linear2: Linear,
    #[allow(missing_docs)]
    pub dropout1: Dropout,
    #[allow(missing_docs)]
    pub dropout2: Dropout,
    #[allow(missing_docs)]
    pub activation: Activation,
    #[allow(missing_docs)]
    pub norm_first: bool,
}

impl TransformerEncoderLayer {
    /// `dims` wide with `heads` heads and a hidden layer of `mlp_dims` (MLX: `4·dims` when
    /// not given), ReLU, dropout `p` after the attention and in the feed-forward block.
    pub fn new(dims: usize, heads: usize, mlp_dims: Option<usize>, p: f64, norm_first: bool) -> Result<Self> {
        let hidden = mlp_dims.unwrap_or(4 * dims);
        Ok(TransformerEncoderLayer {
            attention: MultiHeadAttention::new(dims, heads, false)?,
            ln1: LayerNorm::new(dims, 1e-5, true)?,
            ln2: LayerNorm::new(dims, 1e-5, true)?,
            linear1: Linear::new(dims, hidden, true)?,
            linear2: Linear::new(hidden, dims, true)?,
            dropout1: Dropout::new(p)?,
            dropout2: Dropout::new(p)?,
            activation: Activation::Relu,
            norm_first,
        })
    }

    /// `x [batch, L, dims]` with an attention mask.
    pub fn forward_masked(&self, x: &Array, mask: Mask<'_>) -> Result<Array> {
        let ff = |y: &Array| mlp(y, &self.linear1, self.activation, &self.dropout2, &self.linear2);
        if self.norm_first {
            let y = self.ln1.forward(x)?;
            let x = add(x, &self.dropout1.forward(&self.attention.attend(&y, &y, &y, mask)?)?)?;
            add(&x, &ff(&self.ln2.forward(&x)?)?)
        } else {
            let y = self.dropout1.forward(&self.attention.attend(x, x, x, mask)?)?;
            let x = self.ln1.forward(&add(x, &y)?)?;
            self.ln2.forward(&add(&x, &ff(&x)?)?)
        }
    }
}

impl Module for TransformerEncoderLayer {
    fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_masked(x, Mask::None)
    }
    fn parameters(&self) -> Tree {
        self.tree(|m| m.parameters())
    }
    fn trainable_parameters(&self) -> Tree {
        self.tree(|m| m.trainable_parameters())
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        update_children(
            p,
            vec![
                ("attention", &mut self.attention),
                ("ln1", &mut self.ln1),
                ("ln2", &mut self.ln2),
                ("linear1", &mut self.linear1),
                ("linear2", &mut self.linear2),
            ],
        )
    }
    fn set_training(&mut self, training: bool) {
        self.dropout1.set_training(training);
        self.dropout2.set_training(training);
    }
}

impl TransformerEncoderLayer {
    fn tree(&self, f: impl Fn(&dyn Module) -> Tree) -> Tree {
        Tree::map([
            ("attention", f(&self.attention)),
            ("ln1", f(&self.ln1)),
            ("ln2", f(&self.ln2)),
            ("linear1", f(&self.linear1)),
            ("linear2", f(&self.linear2)),
        ])
    }
}

/// A stack of encoder layers and a final layer norm (`layers`, `ln`).
#[derive(Clone, Debug)]
pub struct TransformerEncoder {
    #[allow(missing_docs)]
    pub layers: Vec<TransformerEncoderLayer>,
    #[allow(missing_docs)]
    pub ln: LayerNorm,
}

impl TransformerEncoder {
    /// `num_layers` layers as [`TransformerEncoderLayer::new`] makes them.
    pub fn new(
        num_layers: usize,
        dims: usize,
        heads: usize,
        mlp_dims: Option<usize>,
        p: f64,
        norm_first: bool,
    ) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|_| TransformerEncoderLayer::new(dims, heads, mlp_dims, p, norm_first))
            .collect::<Result<_>>()?;
        Ok(TransformerEncoder { layers, ln: LayerNorm::new(dims, 1e-5, true)? })
    }

    /// `x [batch, L, dims]` through every layer with one mask, then the final norm.
    pub fn forward_masked(&self, x: &Array, mask: Mask<'_>) -> Result<Array> {
        let h = self.layers.iter().try_fold(x.clone(), |h, l| l.forward_masked(&h, mask))?;
        self.ln.forward(&h)
    }
}

/// The parameter tree of a stack: `layers` (a list) and the final norm `ln`.
fn stack_tree<M: Module>(layers: &[M], ln: &LayerNorm, f: impl Fn(&dyn Module) -> Tree) -> Tree {
    Tree::map([("layers", Tree::List(layers.iter().map(|l| f(l)).collect())), ("ln", f(ln))])
}

fn update_stack<M: Module>(p: &Tree, layers: &mut [M], ln: &mut LayerNorm) -> Result<()> {
    update_layers(p, layers.iter_mut().map(|l| l as &mut dyn Module))?;
    update_children(p, vec![("ln", ln)])
}

impl Module for TransformerEncoder {
    fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_masked(x, Mask::None)
    }
    fn parameters(&self) -> Tree {
        stack_tree(&self.layers, &self.ln, |m| m.parameters())
    }
    fn trainable_parameters(&self) -> Tree {
        stack_tree(&self.layers, &self.ln, |m| m.trainable_parameters())
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        update_stack(p, &mut self.layers, &mut self.ln)
    }
    fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|l| l.set_training(training));
    }
}

/// One decoder block: masked self-attention, attention over the encoder's output (`memory`)
/// and a feed-forward network, each with a residual connection and a layer norm.
#[derive(Clone, Debug)]
pub struct TransformerDecoderLayer {
    #[allow(missing_docs)]
    pub self_attention: MultiHeadAttention,
    #[allow(missing_docs)]
    pub cross_attention: MultiHeadAttention,
    #[allow(missing_docs)]
    pub ln1: LayerNorm,
    #[allow(missing_docs)]
    pub ln2: LayerNorm,
    #[allow(missing_docs)]
    pub ln3: LayerNorm,
    #[allow(missing_docs)]
    pub linear1: Linear,
    #[allow(missing_docs)]
    pub linear2: Linear,
    #[allow(missing_docs)]
    pub dropout1: Dropout,
    #[allow(missing_docs)]
    pub dropout2: Dropout,
    #[allow(missing_docs)]
    pub dropout3: Dropout,
    #[allow(missing_docs)]
    pub activation: Activation,
    #[allow(missing_docs)]
    pub norm_first: bool,
}

impl TransformerDecoderLayer {
    /// As [`TransformerEncoderLayer::new`].
    pub fn new(dims: usize, heads: usize, mlp_dims: Option<usize>, p: f64, norm_first: bool) -> Result<Self> {
        let hidden = mlp_dims.unwrap_or(4 * dims);
        Ok(TransformerDecoderLayer {
            self_attention: MultiHeadAttention::new(dims, heads, false)?,
            cross_attention: MultiHeadAttention::new(dims, heads, false)?,
            ln1: LayerNorm::new(dims, 1e-5, true)?,
            ln2: LayerNorm::new(dims, 1e-5, true)?,
            ln3: LayerNorm::new(dims, 1e-5, true)?,
            linear1: Linear::new(dims, hidden, true)?,
            linear2: Linear::new(hidden, dims, true)?,
            dropout1: Dropout::new(p)?,
            dropout2: Dropout::new(p)?,
            dropout3: Dropout::new(p)?,
            activation: Activation::Relu,
            norm_first,
        })
    }

    /// `x [batch, L, dims]` attending to itself under `x_mask` and to `memory [batch, S,
    /// dims]` under `memory_mask`.
    pub fn forward_with(&self, x: &Array, memory: &Array, x_mask: Mask<'_>, memory_mask: Mask<'_>) -> Result<Array> {
        let ff = |y: &Array| mlp(y, &self.linear1, self.activation, &self.dropout3, &self.linear2);
        if self.norm_first {
            let y = self.ln1.forward(x)?;
            let x = add(x, &self.dropout1.forward(&self.self_attention.attend(&y, &y, &y, x_mask)?)?)?;
            let y = self.ln2.forward(&x)?;
            let x = add(&x, &self.dropout2.forward(&self.cross_attention.attend(&y, memory, memory, memory_mask)?)?)?;
            add(&x, &ff(&self.ln3.forward(&x)?)?)
        } else {
            let y = self.dropout1.forward(&self.self_attention.attend(x, x, x, x_mask)?)?;
            let x = self.ln1.forward(&add(x, &y)?)?;
            let y = self.dropout2.forward(&self.cross_attention.attend(&x, memory, memory, memory_mask)?)?;
            let x = self.ln2.forward(&add(&x, &y)?)?;
            self.ln3.forward(&add(&x, &ff(&x)?)?)
        }
    }

    fn tree(&self, f: impl Fn(&dyn Module) -> Tree) -> Tree {
        Tree::map([
            ("self_attention", f(&self.self_attention)),
            ("cross_attention", f(&self.cross_attention)),
            ("ln1", f(&self.ln1)),
            ("ln2", f(&self.ln2)),
            ("ln3", f(&self.ln3)),
            ("linear1", f(&self.linear1)),
            ("linear2", f(&self.linear2)),
        ])
    }
}

impl Module for TransformerDecoderLayer {
    /// Self-attention only would not be a decoder: `forward` attends to `x` as its own memory,
    /// causally masked; use [`TransformerDecoderLayer::forward_with`] for an encoder's output.
    fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_with(x, x, Mask::Causal, Mask::None)
    }
    fn parameters(&self) -> Tree {
        self.tree(|m| m.parameters())
    }
    fn trainable_parameters(&self) -> Tree {
        self.tree(|m| m.trainable_parameters())
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        update_children(
            p,
            vec![
                ("self_attention", &mut self.self_attention),
                ("cross_attention", &mut self.cross_attention),
                ("ln1", &mut self.ln1),
                ("ln2", &mut self.ln2),
                ("ln3", &mut self.ln3),
                ("linear1", &mut self.linear1),
                ("linear2", &mut self.linear2),
            ],
        )
    }
    fn set_training(&mut self, training: bool) {
        for d in [&mut self.dropout1, &mut self.dropout2, &mut self.dropout3] {
            d.set_training(training);
        }
    }
}

/// A stack of decoder layers and a final layer norm (`layers`, `ln`).
#[derive(Clone, Debug)]
pub struct TransformerDecoder {
    #[allow(missing_docs)]
    pub layers: Vec<TransformerDecoderLayer>,
    #[allow(missing_docs)]
    pub ln: LayerNorm,
}

impl TransformerDecoder {
    /// `num_layers` layers as [`TransformerDecoderLayer::new`] makes them.
    pub fn new(
        num_layers: usize,
        dims: usize,
        heads: usize,
        mlp_dims: Option<usize>,
        p: f64,
        norm_first: bool,
    ) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|_| TransformerDecoderLayer::new(dims, heads, mlp_dims, p, norm_first))
            .collect::<Result<_>>()?;
        Ok(TransformerDecoder { layers, ln: LayerNorm::new(dims, 1e-5, true)? })
    }

    /// Every layer's [`TransformerDecoderLayer::forward_with`], then the final norm.
    pub fn forward_with(&self, x: &Array, memory: &Array, x_mask: Mask<'_>, memory_mask: Mask<'_>) -> Result<Array> {
        let h = self.layers.iter().try_fold(x.clone(), |h, l| l.forward_with(&h, memory, x_mask, memory_mask))?;
        self.ln.forward(&h)
    }
}

impl Module for TransformerDecoder {
    /// As [`TransformerDecoderLayer`]'s `forward`: `x` is its own memory, causally masked.
    fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_with(x, x, Mask::Causal, Mask::None)
    }
    fn parameters(&self) -> Tree {
        stack_tree(&self.layers, &self.ln, |m| m.parameters())
    }
    fn trainable_parameters(&self) -> Tree {
        stack_tree(&self.layers, &self.ln, |m| m.trainable_parameters())
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        update_stack(p, &mut self.layers, &mut self.ln)
    }
    fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|l| l.set_training(training));
    }
}
