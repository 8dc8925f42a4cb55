//! The caching buffer pool: buffers are kept by size class when dropped and handed out again,
//! since creating a wgpu buffer costs a driver allocation. A buffer dropped while recorded work
//! still uses it can be handed out at once: wgpu keeps it alive, and the encoder orders the new
//! user's passes after the old ones.

use std::collections::HashMap;
use std::sync::Mutex;

use strata_core::{Error, Result};

pub(crate) struct Pool {
    device: wgpu::Device,
    name: String,
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    cached: usize,
    live: usize,
}

/// The size a request is rounded up to: 256 bytes below 64 KiB, then an eighth of the power
/// of two above, so reuse is likely and waste is at most 12.5%.
fn class(bytes: usize) -> u64 {
    let b = bytes.max(4) as u64;
    if b <= 64 << 10 {
        return b.next_multiple_of(256);
    }
    let step = b.next_power_of_two() / 16;
    b.next_multiple_of(step)
}

impl Pool {
    pub(crate) fn new(device: wgpu::Device, name: String, limit: usize) -> Pool {
        Pool { device, name, limit, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn take(&self, bytes: usize) -> Result<wgpu::Buffer> {
        let size = class(bytes);
        {
            let mut s = self.lock();
            if let Some(b) = s.free.get_mut(&size).and_then(Vec::pop) {
                s.cached -= size as usize;
                s.live += size as usize;
                return Ok(b);
            }
        }
        let b = match self.create(size) {
            Some(b) => b,
            None => {
                // Out of memory: give the cached blocks back to the driver and try once more.
                let freed: Vec<wgpu::Buffer> = {
                    let mut s = self.lock();
                    s.cached = 0;
                    s.free.drain().flat_map(|(_, v)| v).collect()
                };
                freed.iter().for_each(wgpu::Buffer::destroy);
                drop(freed);
                self.create(size).ok_or_else(|| Error::OutOfMemory { device: self.name.clone(), bytes })?
            }
        };
        self.lock().live += size as usize;
        strata_trace::memory("wgpu", self.usage().1 as u64);
        Ok(b)
    }

    fn create(&self, size: u64) -> Option<wgpu::Buffer> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("strata"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        match pollster::block_on(scope.pop()) {
            Some(_) => None,
            None => Some(b),
        }
    }

    pub(crate) fn give_back(&self, b: wgpu::Buffer) {
        let size = b.size();
        let mut s = self.lock();
        s.live = s.live.saturating_sub(size as usize);
        if s.cached + size as usize <= self.limit {
            s.cached += size as usize;
            s.free.entry(size).or_default().push(b);
        }
    }

    /// Bytes cached for reuse and bytes in live buffers.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let s = self.lock();
        (s.cached, s.live)
    }
}

#[cfg(test)]
mod tests {
    use super::class;

    #[test]
    fn classes_round_up_by_at_most_an_eighth() {
        assert_eq!(class(0), 256);
        assert_eq!(class(1000), 1024);
        assert_eq!(class(65 << 10), 72 << 10);
        for b in [70_000usize, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = class(b) as usize;
            assert!(c >= b && c - b <= b / 8 + 1, "{b} -> {c}");
        }
    }
}
