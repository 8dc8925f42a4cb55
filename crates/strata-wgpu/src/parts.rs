//! Parts of operands larger than the device binds at once (see `elementwise::windowed` and
//! `reduce::windowed`): a layout's elements as a window of its buffer, which is what a kernel
//! binds, and a layout cut along one axis.

use strata_core::kernel::Layout;
use strata_core::{DType, Result};

use crate::{Wgpu, WgpuBuffer, wgsl};

/// The bytes of a buffer that a layout's elements lie in, as a window a kernel can bind, and the
/// layout rebased to it. The window starts on the device's storage offset alignment and ends on
/// 32 bytes (the vector path reads up to two 16-byte vectors from a thread's first element),
/// within the buffer.
pub(crate) struct Part {
    start: u64,
    end: u64,
    pub(crate) layout: Layout,
}

impl Part {
    /// `l`'s elements (of type `t`, at least one) in `b`.
    pub(crate) fn of(gpu: &Wgpu, l: &Layout, t: DType, b: &WgpuBuffer) -> Result<Part> {
        let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
        let bytes = u64::from(wgsl::bits(t) / 8);
        let (lo, hi) = l.span().expect("a part has elements");
        let start = lo as u64 * bytes / align * align;
        let end = ((hi as u64 + 1) * bytes).next_multiple_of(32).min(b.bound_bytes());
        let layout = Layout::new(l.shape(), l.strides(), l.offset() - (start / bytes) as usize)?;
        Ok(Part { start, end, layout })
    }

    /// Bytes the window binds.
    pub(crate) fn bytes(&self) -> u64 {
        self.end - self.start
    }

    /// The window of `b` (the buffer the part was taken of).
    pub(crate) fn view(&self, b: &WgpuBuffer) -> WgpuBuffer {
        b.window(self.start, self.bytes() as usize)
    }
}

/// `l` restricted to indices `a..b` along axis `ax`.
pub(crate) fn slice(l: &Layout, ax: usize, a: usize, b: usize) -> Result<Layout> {
    let mut shape = l.shape().to_vec();
    shape[ax] = b - a;
    Layout::new(&shape, l.strides(), (l.offset() as isize + a as isize * l.strides()[ax]) as usize)
}

/// How far `l` reaches in memory along axis `ax`, in elements.
pub(crate) fn reach(l: &Layout, ax: usize) -> usize {
    l.strides()[ax].unsigned_abs() * (l.shape()[ax] - 1)
}

/// The axis to halve a part along: the one along which `widest` (the operand whose window is
/// largest) reaches furthest, or, when the output is 8- or 16-bit (`narrow`), its first long
/// axis, so that the output's parts stay contiguous. Only axes longer than one count; `None`
/// when none is.
pub(crate) fn cut_axis(widest: &Layout, narrow: bool) -> Option<usize> {
    let long = (0..widest.ndim()).filter(|&ax| widest.shape()[ax] > 1);
    if narrow { long.min() } else { long.max_by_key(|&ax| reach(widest, ax)) }
}

/// Bytes an input of a part takes bound: the window its elements lie in, or their dense copy
/// where that is smaller (a part cut across an interleaved axis, such as the channels of a
/// channels-last image, has a window reaching across the other parts' elements); 0 without
/// elements.
pub(crate) fn input_bytes(gpu: &Wgpu, l: &Layout, t: DType, b: &WgpuBuffer) -> Result<u64> {
    if l.numel() == 0 {
        return Ok(0);
    }
    let dense = (l.numel() * wgsl::bits(t) as usize / 8) as u64;
    Ok(Part::of(gpu, l, t, b)?.bytes().min(dense))
}

/// An input of a part as a kernel binds it: a window of `b` if it fits the device's binding cap,
/// else its elements copied densely (see [`input_bytes`]); a placeholder without elements
/// (nothing reads it). Returns the buffer and the layout to read it by.
pub(crate) fn bind_input(gpu: &Wgpu, l: &Layout, t: DType, b: &WgpuBuffer) -> Result<(WgpuBuffer, Layout)> {
    use strata_core::kernel::{Backend, TensorMut, TensorRef};
    if l.numel() == 0 {
        return Ok((gpu.take(16)?, Layout::contiguous(l.shape())));
    }
    let part = Part::of(gpu, l, t, b)?;
    if part.bytes() <= gpu.binding_cap {
        return Ok((part.view(b), part.layout));
    }
    let dense = Layout::contiguous(l.shape());
    let mut copy = gpu.take(l.numel() * wgsl::bits(t) as usize / 8)?;
    gpu.copy(TensorRef::new(t, b, l), TensorMut::new(t, &mut copy, &dense))?;
    Ok((copy, dense))
}
