//! How an n-d tensor sits in a flat buffer: shape, strides (in elements, possibly zero for a
//! broadcast axis or negative for a reversed one) and the offset of element `[0, …, 0]`.

use crate::error::{Error, Result};

/// Shape, strides and offset of a tensor view over a buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<isize>,
    offset: usize,
}

impl Layout {
    /// Row-major (C order) layout of `shape` at offset 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        let mut strides = vec![0isize; shape.len()];
        let mut s = 1isize;
        for (st, &d) in strides.iter_mut().zip(shape).rev() {
            *st = s;
            s *= d.max(1) as isize;
        }
        Layout { shape: shape.to_vec(), strides, offset: 0 }
    }

    /// A layout from its parts; `shape` and `strides` must have the same length.
    pub fn new(shape: &[usize], strides: &[isize], offset: usize) -> Result<Layout> {
        if shape.len() != strides.len() {
            return Err(Error::InvalidArgument {
                op: "Layout::new",
                message: format!(
                    "shape {shape:?} has {} axes but strides {strides:?} have {}",
                    shape.len(),
                    strides.len()
                ),
            });
        }
        Ok(Layout { shape: shape.to_vec(), strides: strides.to_vec(), offset })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Strides in elements.
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    /// Offset of the first element, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the elements are consecutive in row-major order (strides of size-1 axes are
    /// ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d as isize;
        }
        true
    }

    /// The buffer positions of the lowest and highest element, or `None` for an empty tensor.
    pub fn span(&self) -> Option<(isize, isize)> {
        if self.numel() == 0 {
            return None;
        }
        let (mut lo, mut hi) = (self.offset as isize, self.offset as isize);
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            let reach = (d as isize - 1) * s;
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
        }
        Some((lo, hi))
    }

    /// Where each row along the last axis starts (the positions of the elements whose last
    /// index is 0), in row-major order: one per row of a `[..batch, m, cols]` operand.
    pub fn row_starts(&self) -> impl Iterator<Item = isize> + '_ {
        let nd = self.ndim().max(1) - 1;
        let (shape, strides) = (&self.shape[..nd], &self.strides[..nd]);
        (0..shape.iter().product::<usize>()).map(move |r| {
            let (mut rem, mut pos) = (r, self.offset as isize);
            for (&d, &s) in shape.iter().zip(strides).rev() {
                pos += (rem % d) as isize * s;
                rem /= d;
            }
            pos
        })
    }

    /// Errors unless every element lies inside a buffer of `len` elements.
    pub fn check_fits(&self, op: &'static str, what: &str, len: usize) -> Result<()> {
        match self.span() {
            Some((lo, hi)) if lo < 0 || hi >= len as isize => Err(Error::InvalidArgument {
                op,
                message: format!(
                    "{what} (shape {:?}, strides {:?}, offset {}) reaches elements {lo}..={hi}, outside its buffer of {len}",
                    self.shape, self.strides, self.offset
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Whether distinct elements occupy distinct buffer positions (what an output needs).
    /// Checked by sorting the axes by stride: each stride must step over everything the
    /// smaller-stride axes span.
    pub fn is_non_overlapping(&self) -> bool {
        let mut axes: Vec<(usize, usize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(d, _)| **d > 1)
            .map(|(&d, &s)| (s.unsigned_abs(), d))
            .collect();
        if self.numel() == 0 {
            return true;
        }
        axes.sort_unstable();
        let mut span = 1;
        for (stride, d) in axes {
            if stride < span {
                return false;
            }
            span += stride * (d - 1);
        }
        true
    }

    /// The same view with axes `a` and `b` swapped.
    pub fn swap_axes(&self, a: usize, b: usize) -> Layout {
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        l
    }

    /// Buffer position of the element at `index` (which must be in bounds).
    pub fn position(&self, index: &[usize]) -> isize {
        debug_assert_eq!(index.len(), self.shape.len());
        self.offset as isize + index.iter().zip(&self.strides).map(|(&i, &s)| i as isize * s).sum::<isize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_and_spans() {
        let l = Layout::contiguous(&[2, 3, 4]);
        assert_eq!(l.strides(), [12, 4, 1]);
        assert!(l.is_contiguous());
        assert_eq!(l.span(), Some((0, 23)));
        let t = l.swap_axes(1, 2);
        assert!(!t.is_contiguous());
        assert_eq!(t.position(&[1, 3, 2]), 12 + 8 + 3);
        let flipped = Layout::new(&[4], &[-1], 3).unwrap();
        assert_eq!(flipped.span(), Some((0, 3)));
        assert!(flipped.check_fits("t", "x", 4).is_ok());
        let err = Layout::new(&[4], &[-1], 2).unwrap().check_fits("t", "x", 4).unwrap_err().to_string();
        assert!(err.contains("-1..=2"), "{err}");
        assert!(Layout::contiguous(&[2, 0, 3]).span().is_none());
        assert!(Layout::contiguous(&[2, 3, 4]).swap_axes(0, 2).is_non_overlapping());
        let rows = |l: &Layout| l.row_starts().collect::<Vec<_>>();
        assert_eq!(rows(&Layout::contiguous(&[2, 3, 4])), [0, 4, 8, 12, 16, 20]);
        assert_eq!(rows(&Layout::contiguous(&[3, 2]).swap_axes(0, 1)), [0, 1]);
        assert_eq!(rows(&Layout::new(&[2, 2], &[-2, 1], 2).unwrap()), [2, 0]);
        assert_eq!(rows(&Layout::contiguous(&[5])), [0]);
        assert!(!Layout::new(&[2, 3], &[0, 1], 0).unwrap().is_non_overlapping());
        assert!(!Layout::new(&[2, 3], &[2, 1], 0).unwrap().is_non_overlapping());
        assert!(Layout::new(&[2, 3], &[-3, 1], 3).unwrap().is_non_overlapping());
        assert!(Layout::new(&[2], &[1, 1], 0).is_err());
    }
}
