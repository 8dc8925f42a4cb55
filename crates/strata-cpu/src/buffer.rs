//! `CpuBuffer`: the CPU backend's storage, a 64-byte aligned byte buffer.

use std::alloc::{self, Layout as AllocLayout};
use std::ptr::NonNull;

use bytemuck::Pod;
use strata_core::{Error, Result};

const ALIGN: usize = 64;

/// A zero-initialized, 64-byte aligned block of bytes, viewable as a slice of any plain
/// element type.
pub struct CpuBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: CpuBuffer owns its allocation like a Vec<u8>.
unsafe impl Send for CpuBuffer {}
unsafe impl Sync for CpuBuffer {}

impl CpuBuffer {
    /// `len` zero bytes. Failing to allocate is an error, not an abort.
    pub fn zeros(len: usize) -> Result<CpuBuffer> {
        if len == 0 {
            // A dangling pointer that is still 64-byte aligned, so empty typed views are valid.
            let ptr = NonNull::new(std::ptr::without_provenance_mut::<u8>(ALIGN)).expect("non-null");
            return Ok(CpuBuffer { ptr, len: 0 });
        }
        let layout = AllocLayout::from_size_align(len, ALIGN).map_err(|_| oom(len))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| CpuBuffer { ptr, len }).ok_or_else(|| oom(len))
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice<T: Pod>(data: &[T]) -> Result<CpuBuffer> {
        let mut b = CpuBuffer::zeros(std::mem::size_of_val(data))?;
        b.as_bytes_mut().copy_from_slice(bytemuck::cast_slice(data));
        Ok(b)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialized bytes (or dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The buffer as a slice of `T` (the trailing bytes that do not make a whole `T` are
    /// left out). The alignment always suffices: it is 64.
    pub fn typed<T: Pod>(&self) -> &[T] {
        let n = self.len / std::mem::size_of::<T>();
        bytemuck::cast_slice(&self.as_bytes()[..n * std::mem::size_of::<T>()])
    }

    /// The buffer as a mutable slice of `T`.
    pub fn typed_mut<T: Pod>(&mut self) -> &mut [T] {
        let n = self.len / std::mem::size_of::<T>();
        bytemuck::cast_slice_mut(&mut self.as_bytes_mut()[..n * std::mem::size_of::<T>()])
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `zeros` with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), AllocLayout::from_size_align_unchecked(self.len, ALIGN)) };
        }
    }
}

impl Clone for CpuBuffer {
    fn clone(&self) -> Self {
        let mut b = CpuBuffer::zeros(self.len).expect("out of memory cloning a CpuBuffer");
        b.as_bytes_mut().copy_from_slice(self.as_bytes());
        b
    }
}

impl std::fmt::Debug for CpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuBuffer({} bytes)", self.len)
    }
}

fn oom(len: usize) -> Error {
    Error::OutOfMemory { device: "cpu".into(), bytes: len }
}
