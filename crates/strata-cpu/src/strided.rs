//! Walking a strided layout: gathering a view into a dense vector and scattering one back.

use bytemuck::Pod;
use strata_core::kernel::Layout;

/// Calls `f(i, position)` for every element of `layout` in row-major order: `i` counts
/// elements, `position` is the element's index in the buffer.
pub(crate) fn for_each_position(layout: &Layout, mut f: impl FnMut(usize, usize)) {
    let n = layout.numel();
    if n == 0 {
        return;
    }
    let shape = layout.shape();
    let strides = layout.strides();
    if layout.ndim() == 0 {
        f(0, layout.offset());
        return;
    }
    let last = layout.ndim() - 1;
    let (inner, inner_stride) = (shape[last], strides[last]);
    let mut index = vec![0usize; last];
    let mut base = layout.offset() as isize;
    let mut i = 0;
    loop {
        for j in 0..inner {
            f(i, (base + j as isize * inner_stride) as usize);
            i += 1;
        }
        // Advance the outer index like an odometer, keeping `base` in step.
        let mut ax = last;
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            index[ax] += 1;
            base += strides[ax];
            if index[ax] < shape[ax] {
                break;
            }
            base -= strides[ax] * shape[ax] as isize;
            index[ax] = 0;
        }
    }
}

/// The elements of a view, row-major, converted by `f`.
pub(crate) fn gather<T: Pod, U>(data: &[T], layout: &Layout, f: impl Fn(T) -> U) -> Vec<U> {
    if layout.is_contiguous() {
        let o = layout.offset();
        return data[o..o + layout.numel()].iter().map(|&v| f(v)).collect();
    }
    let mut out = Vec::with_capacity(layout.numel());
    for_each_position(layout, |_, p| out.push(f(data[p])));
    out
}

/// Writes dense row-major `values` into a view, converting with `f`.
pub(crate) fn scatter<T: Pod, U: Copy>(values: &[U], data: &mut [T], layout: &Layout, f: impl Fn(U) -> T) {
    if layout.is_contiguous() {
        let o = layout.offset();
        for (d, &v) in data[o..o + layout.numel()].iter_mut().zip(values) {
            *d = f(v);
        }
        return;
    }
    for_each_position(layout, |i, p| data[p] = f(values[i]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_any_layout() {
        let data: Vec<i32> = (0..24).collect();
        let l = Layout::contiguous(&[2, 3, 4]).swap_axes(0, 2);
        let g = gather(&data, &l, |v| v);
        assert_eq!(&g[..6], &[0, 12, 4, 16, 8, 20]);
        let flipped = Layout::new(&[3, 2], &[-2, 1], 4).unwrap();
        assert_eq!(gather(&data, &flipped, |v| v), [4, 5, 2, 3, 0, 1]);
        let bcast = Layout::new(&[2, 3], &[0, 1], 1).unwrap();
        assert_eq!(gather(&data, &bcast, |v| v), [1, 2, 3, 1, 2, 3]);
        let scalar = Layout::new(&[], &[], 5).unwrap();
        assert_eq!(gather(&data, &scalar, |v| v), [5]);
        let mut out = vec![0i32; 24];
        scatter(&g, &mut out, &l, |v| v);
        assert_eq!(out, data);
    }
}
