//! The caching device allocator: freed blocks wait in size classes for reuse, so a training
//! loop allocates from the driver only in its first step. Plain device allocations (never
//! managed memory). An allocation that fails for lack of memory empties the cache and tries
//! once more before it becomes an `Err`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaStream, DriverError, sys::cudaError_enum};
use strata_core::{Error, Result};

pub(crate) struct Pool {
    stream: Arc<CudaStream>,
    device: String,
    cap: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: BTreeMap<usize, Vec<CudaSlice<u8>>>,
    cached: usize,
    in_use: usize,
}

/// Rounds up to a size class: 512-byte steps up to 64 KiB, then a quarter of the power of two.
fn class(bytes: usize) -> usize {
    let b = bytes.max(1);
    if b <= 64 << 10 {
        return b.div_ceil(512) * 512;
    }
    let step = (1usize << (usize::BITS - 1 - b.leading_zeros())) / 4;
    b.div_ceil(step) * step
}

fn is_oom(e: &DriverError) -> bool {
    e.0 == cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY
}

impl Pool {
    pub fn new(stream: Arc<CudaStream>, device: String, cap: usize) -> Pool {
        Pool { stream, device, cap, state: Mutex::default() }
    }

    pub fn take(&self, bytes: usize) -> Result<CudaSlice<u8>> {
        let size = class(bytes);
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = st.free.get_mut(&size).and_then(Vec::pop) {
                st.cached -= size;
                st.in_use += size;
                strata_trace::memory("memory.cuda", st.in_use as u64);
                return Ok(s);
            }
        }
        // SAFETY: the block's contents are unspecified until a kernel or copy writes them,
        // which is what callers of `alloc_output` ask for.
        let first = unsafe { self.stream.alloc::<u8>(size) };
        let slice = match first {
            Ok(s) => s,
            Err(e) if is_oom(&e) => {
                self.release();
                let _ = self.stream.synchronize();
                // SAFETY: as above.
                unsafe { self.stream.alloc::<u8>(size) }.map_err(|e| {
                    if is_oom(&e) {
                        Error::OutOfMemory { device: self.device.clone(), bytes }
                    } else {
                        Error::InvalidArgument { op: "cuda alloc", message: format!("{e:?}") }
                    }
                })?
            }
            Err(e) => return Err(Error::InvalidArgument { op: "cuda alloc", message: format!("{e:?}") }),
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.in_use += size;
        strata_trace::memory("memory.cuda", st.in_use as u64);
        Ok(slice)
    }

    pub fn give_back(&self, s: CudaSlice<u8>) {
        let size = s.len();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.in_use = st.in_use.saturating_sub(size);
        if st.cached + size <= self.cap {
            st.cached += size;
            st.free.entry(size).or_default().push(s);
        }
        strata_trace::memory("memory.cuda", st.in_use as u64);
    }

    /// Frees every cached block.
    pub fn release(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.free.clear();
        st.cached = 0;
    }

    pub fn usage(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.cached, st.in_use)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        for b in [1, 511, 512, 513, 65_536, 65_537, 1 << 20, (1 << 20) + 1, 3 << 28] {
            let c = super::class(b);
            assert!(c >= b && (c - b) as f64 <= b.max(512) as f64 * 0.25 + 512.0, "{b} -> {c}");
        }
    }
}
