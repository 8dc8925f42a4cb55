//! Copies between host memory and the device through page-locked staging.
//!
//! The driver copies pageable memory through its own staging and returns only when the copy
//! is done. Here a ring of page-locked slots (four of 32 MiB by default, allocated on the first
//! large copy and kept) takes the bytes instead: an upload copies each chunk into a free slot
//! and queues its DMA, so it returns while the last slots are still in flight, and a download
//! queues the DMA of the next slots while the host copies out of the one that has landed.
//! Each slot's event says when its last DMA finished, which is all a slot's reuse waits for:
//! the stream orders the DMAs themselves.
//!
//! The host's side of each chunk is copied by several threads (one core cannot keep up with
//! the link). Copies below [`SMALL`] go straight to the driver (which puts small uploads in the command
//! stream itself). Where page-locked memory cannot be had (a locked-memory limit, say), copies
//! take the driver's pageable path and the flight recorder gets a
//! `cuda.transfer.pageable_fallback` instant, once.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, DevicePtr, DevicePtrMut, result};
use strata_core::Result;

use crate::{CudaBuffer, driver_err};

/// Copies of fewer bytes take the driver's path.
pub(crate) const SMALL: usize = 64 << 10;

/// The default ring: four slots of 32 MiB (on an H200, 44 GB/s up and 43 down through it,
/// against 26 and 28 with slots of 8 MiB and the link's 55; BENCHMARKS.md).
pub(crate) const CHUNK: usize = 32 << 20;
pub(crate) const SLOTS: usize = 4;

struct Slot {
    ptr: *mut u8,
    /// Recorded after the last DMA that reads or writes this slot.
    done: CudaEvent,
}

/// The ring of page-locked slots of one device (shared by its clones; one copy at a time).
pub(crate) struct Staging {
    ctx: Arc<CudaContext>,
    chunk: usize,
    want: usize,
    slots: Vec<Slot>,
    next: usize,
    /// Page-locked memory was refused, or a staged copy failed midway: every copy takes the
    /// pageable path.
    refused: bool,
}

// SAFETY: the slots' host memory is owned by the ring and only touched under its mutex.
unsafe impl Send for Staging {}

impl Staging {
    pub(crate) fn new(ctx: Arc<CudaContext>, chunk: usize, slots: usize) -> Staging {
        Staging { ctx, chunk: chunk.max(1), want: slots.max(1), slots: Vec::new(), next: 0, refused: false }
    }

    /// Allocates the slots on first use; `false` when page-locked memory is refused.
    fn ready(&mut self) -> bool {
        if self.refused || self.slots.len() == self.want {
            return !self.refused;
        }
        let made = (|| -> std::result::Result<(), cudarc::driver::DriverError> {
            self.ctx.bind_to_thread()?;
            while self.slots.len() < self.want {
                // Plain (cached) page-locked memory: downloads read it back on the host, which
                // write-combined memory would make slow.
                // SAFETY: a fresh allocation, freed in `drop`.
                let ptr = unsafe { result::malloc_host(self.chunk, 0)? }.cast::<u8>();
                let done = match self.ctx.new_event(None) {
                    Ok(e) => e,
                    Err(e) => {
                        // SAFETY: just allocated above and not shared.
                        unsafe { result::free_host(ptr.cast()) }?;
                        return Err(e);
                    }
                };
                self.slots.push(Slot { ptr, done });
            }
            Ok(())
        })();
        if made.is_err() {
            self.release();
            self.refused = true;
            strata_trace::instant("cuda.transfer.pageable_fallback");
        }
        !self.refused
    }

    fn release(&mut self) {
        for s in self.slots.drain(..) {
            let _ = s.done.synchronize();
            // SAFETY: allocated by `malloc_host`; its last DMA has finished.
            let _ = unsafe { result::free_host(s.ptr.cast()) };
        }
    }

    /// The next slot in ring order, once its last DMA has finished.
    fn take(&mut self) -> Result<usize> {
        let i = self.next;
        self.next = (i + 1) % self.slots.len();
        self.slots[i].done.synchronize().map_err(|e| driver_err("waiting for a staging slot", e))?;
        Ok(i)
    }

    /// Queues the copy of `bytes` into the start of `dst`; returns once every chunk is staged.
    pub(crate) fn upload(&mut self, stream: &Arc<CudaStream>, bytes: &[u8], dst: &mut CudaBuffer) -> Result<()> {
        let err = |e| driver_err("copying to the device", e);
        if bytes.len() < SMALL || !self.ready() {
            let mut view = dst.slice_mut().slice_mut(0..bytes.len());
            return stream.memcpy_htod(bytes, &mut view).map_err(err);
        }
        // The raw copies below need the context current on this thread.
        self.ctx.bind_to_thread().map_err(err)?;
        let (base, _write) = dst.slice_mut().device_ptr_mut(stream);
        // Until the loop ends, a failure may leave a slot whose event predates its last DMA:
        // the ring is then given up (copies take the pageable path; `drop` still waits).
        self.refused = true;
        for (c, piece) in bytes.chunks(self.chunk).enumerate() {
            let i = self.take()?;
            let slot = &self.slots[i];
            // SAFETY: the slot holds `chunk` bytes and no DMA uses it (`take` waited).
            let staged = unsafe { std::slice::from_raw_parts_mut(slot.ptr, piece.len()) };
            copy(staged, piece);
            let at = base + (c * self.chunk) as u64;
            // SAFETY: `at..at + piece.len()` lies in `dst` (the caller sized it); the slot is
            // not touched again before its event says this DMA is done.
            unsafe { result::memcpy_htod_async(at, staged, stream.cu_stream()) }.map_err(err)?;
            slot.done.record(stream).map_err(err)?;
        }
        self.refused = false;
        Ok(())
    }

    /// Copies the first `out.len()` bytes of `src` into `out`; returns when they are there.
    pub(crate) fn download(&mut self, stream: &Arc<CudaStream>, src: &CudaBuffer, out: &mut [u8]) -> Result<()> {
        let err = |e| driver_err("copying from the device", e);
        if out.len() < SMALL || !self.ready() {
            let view = src.slice().slice(0..out.len());
            return stream.memcpy_dtoh(&view, out).map_err(err);
        }
        self.ctx.bind_to_thread().map_err(err)?;
        let (base, _read) = src.slice().device_ptr(stream);
        let (chunk, total) = (self.chunk, out.len());
        let chunks = total.div_ceil(chunk);
        let len = |c: usize| chunk.min(total - c * chunk);
        // Slot of chunk c: the ring starts where it stands, so chunk c sits in `order[c % n]`.
        let n = self.slots.len();
        let mut order = Vec::with_capacity(n);
        let queue = |this: &Staging, slot: usize, c: usize| -> Result<()> {
            let s = &this.slots[slot];
            // SAFETY: the slot holds `chunk` bytes; the host reads it only after its event.
            let staged = unsafe { std::slice::from_raw_parts_mut(s.ptr, len(c)) };
            let at = base + (c * chunk) as u64;
            // SAFETY: `at..at + len(c)` lies in `src` (the caller checked `out.len()`).
            unsafe { result::memcpy_dtoh_async(staged, at, stream.cu_stream()) }.map_err(err)?;
            s.done.record(stream).map_err(err)
        };
        self.refused = true; // as in `upload`, until the copy is through
        for c in 0..chunks.min(n) {
            let slot = self.take()?;
            order.push(slot);
            queue(self, slot, c)?;
        }
        for (c, piece) in out.chunks_mut(chunk).enumerate() {
            let s = &self.slots[order[c % n]];
            s.done.synchronize().map_err(err)?;
            // SAFETY: the DMA into this slot has finished and nothing else writes it.
            copy(piece, unsafe { std::slice::from_raw_parts(s.ptr, piece.len()) });
            if c + n < chunks {
                queue(self, order[c % n], c + n)?;
            }
        }
        self.refused = false;
        Ok(())
    }
}

/// `src` into `dst` on the rayon pool, a MiB a task: one core moves about 10 GB/s and the link
/// about 55 (H200, PCIe 5), so a single-threaded copy into the slots would be slower than the
/// driver's own pageable path (measured: 9.5 up and 8.2 down against its 9.3 and 16.0 GB/s).
///
/// On a rayon worker (an upload from a `par_iter`, say) it copies on the calling thread: the
/// ring's lock is held, and a worker waiting for its tasks could take another upload's task,
/// which would wait for that lock forever.
fn copy(dst: &mut [u8], src: &[u8]) {
    use rayon::prelude::*;
    const PART: usize = 1 << 20;
    if src.len() <= PART || rayon::current_thread_index().is_some() {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(PART).zip(src.par_chunks(PART)).for_each(|(d, s)| d.copy_from_slice(s));
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        self.release();
    }
}
