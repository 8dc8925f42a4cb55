//! `CpuBuffer`: the CPU backend's storage, a 64-byte aligned byte buffer.

use std::alloc::{self, Layout as AllocLayout};
use std::ptr::NonNull;

use bytemuck::Pod;
use strata_core::{Error, Result};

const ALIGN: usize = 64;
/// Blocks of at least this size start on a huge-page boundary and ask for huge pages: a
/// kernel streaming through megabytes then takes one TLB entry per 2 MiB, not per 4 KiB
/// (measured: the cold first pass of a fused element-wise kernel over 4 MiB got faster).
const HUGE: usize = 2 << 20;

fn align(len: usize) -> usize {
    if len >= HUGE { HUGE } else { ALIGN }
}

/// Advises the kernel to back `[ptr, ptr + len)` with transparent huge pages (Linux with THP
/// in `madvise` mode; elsewhere, or if refused, the pages stay small: only speed differs).
fn huge_pages(ptr: NonNull<u8>, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: madvise only advises on a range this buffer owns; it cannot change its contents.
    unsafe {
        libc::madvise(ptr.as_ptr().cast(), len / HUGE * HUGE, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

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
        if let Some(ptr) = cache::take(len) {
            // SAFETY: a cached block of exactly `len` bytes that nothing else holds.
            unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
            return Ok(CpuBuffer { ptr, len });
        }
        let layout = AllocLayout::from_size_align(len, align(len)).map_err(|_| oom(len))?;
        if layout.align() == ALIGN {
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { alloc::alloc_zeroed(layout) };
            return NonNull::new(ptr).map(|ptr| CpuBuffer { ptr, len }).ok_or_else(|| oom(len));
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) }).ok_or_else(|| oom(len))?;
        huge_pages(ptr, len);
        // SAFETY: `ptr` is valid for `len` bytes; clearing them after the advice is what
        // faults the pages in, as huge pages where the kernel has them.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Ok(CpuBuffer { ptr, len })
    }

    /// `len` bytes for a kernel to overwrite entirely: a reused block keeps its old bytes
    /// (initialized, but meaningless), which saves clearing it; a fresh one is zero.
    pub fn for_output(len: usize) -> Result<CpuBuffer> {
        match cache::take(len) {
            Some(ptr) => Ok(CpuBuffer { ptr, len }),
            None => CpuBuffer::zeros(len),
        }
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
        if self.len == 0 || cache::give(self.ptr, self.len) {
            return;
        }
        // SAFETY: allocated in `zeros` with this size and alignment.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), AllocLayout::from_size_align_unchecked(self.len, align(self.len))) };
    }
}

/// A cache of freed large blocks, reused by size: a loop that makes and drops arrays of the
/// same sizes (every training step) then stops paying for fresh pages (page faults and the
/// kernel's zeroing) and only clears reused blocks.
mod cache {
    use std::collections::HashMap;
    use std::ptr::NonNull;
    use std::sync::Mutex;

    /// Blocks smaller than this come from the allocator directly (fast enough there).
    const MIN: usize = 64 << 10;
    /// Bytes the cache may hold.
    const CAP: usize = 512 << 20;

    struct Cache {
        blocks: HashMap<usize, Vec<usize>>,
        bytes: usize,
    }

    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

    /// A cached block of exactly `len` bytes.
    pub(super) fn take(len: usize) -> Option<NonNull<u8>> {
        if len < MIN {
            return None;
        }
        let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let c = c.as_mut()?;
        let addr = c.blocks.get_mut(&len)?.pop()?;
        c.bytes -= len;
        NonNull::new(addr as *mut u8)
    }

    /// Keeps a block for reuse; false if the cache will not take it (then free it).
    pub(super) fn give(ptr: NonNull<u8>, len: usize) -> bool {
        if len < MIN {
            return false;
        }
        let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let c = c.get_or_insert_with(|| Cache { blocks: HashMap::new(), bytes: 0 });
        if c.bytes + len > CAP {
            return false;
        }
        c.bytes += len;
        c.blocks.entry(len).or_default().push(ptr.as_ptr() as usize);
        true
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

#[cfg(test)]
mod tests {
    use super::CpuBuffer;

    #[test]
    fn reused_blocks_come_back_zeroed() {
        for _ in 0..3 {
            let mut b = CpuBuffer::zeros(1 << 20).unwrap();
            assert!(b.as_bytes().iter().all(|&v| v == 0));
            assert_eq!(b.as_bytes().as_ptr() as usize % 64, 0);
            b.as_bytes_mut().fill(0xAB);
        }
        let small = CpuBuffer::from_slice(&[1u8, 2, 3]).unwrap();
        assert_eq!(small.as_bytes(), [1, 2, 3]);
    }
}
