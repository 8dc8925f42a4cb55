//! Kernel times on the GPU's clock through timestamp queries, handed to the flight recorder
//! ([`strata_trace::gpu_kernel`]). Each compute pass writes a timestamp at its start and end
//! into the query set of the batch being recorded; when the encoder is submitted the batch is
//! resolved and copied to a mapped buffer, which is read at the next wait (a download,
//! `synchronize`). The GPU clock is placed on the recorder's clock at that wait: the last kernel
//! read ended just before the wait returned.
//!
//! Off by default (a query set per batch and a read-back per wait), and only where the adapter
//! has `TIMESTAMP_QUERY`: `STRATA_TRACE_GPU=on` or
//! [`Wgpu::set_kernel_timing`](crate::Wgpu::set_kernel_timing) turns it on (the recorder must be
//! on too). The dispatch spans on the host clock are always recorded.

use std::time::Duration;

/// Passes one batch can time: the encoder is submitted every `PASSES_PER_SUBMIT` passes.
const PER_BATCH: u32 = crate::PASSES_PER_SUBMIT;

struct Batch {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    names: Vec<&'static str>,
}

#[derive(Default)]
pub(crate) struct Timing {
    open: Option<Batch>,
    in_flight: Vec<Batch>,
}

/// Whether `STRATA_TRACE_GPU` asks for kernel times.
pub(crate) fn asked_by_env() -> bool {
    std::env::var("STRATA_TRACE_GPU").is_ok_and(|v| v == "on" || v == "1")
}

impl Timing {
    /// The timestamp writes for the next pass, named `name`.
    pub(crate) fn writes(
        &mut self,
        device: &wgpu::Device,
        name: &'static str,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let batch = self.open.get_or_insert_with(|| {
            let bytes = u64::from(PER_BATCH) * 2 * 8;
            Batch {
                set: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("strata kernel times"),
                    ty: wgpu::QueryType::Timestamp,
                    count: PER_BATCH * 2,
                }),
                resolve: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("strata kernel times"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                read: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("strata kernel times"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                names: Vec::new(),
            }
        });
        let i = batch.names.len() as u32;
        if i >= PER_BATCH {
            return None;
        }
        batch.names.push(name);
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &batch.set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }

    /// Before the encoder is submitted: resolve the open batch and copy it where it can be read.
    pub(crate) fn close(&mut self, enc: &mut wgpu::CommandEncoder) {
        if let Some(batch) = self.open.take() {
            let n = batch.names.len() as u32;
            if n > 0 {
                enc.resolve_query_set(&batch.set, 0..2 * n, &batch.resolve, 0);
                enc.copy_buffer_to_buffer(&batch.resolve, 0, &batch.read, 0, u64::from(n) * 16);
                self.in_flight.push(batch);
            }
        }
    }

    /// After a wait: reads every submitted batch and records its kernels, the last one ending
    /// now. `period` is the queue's nanoseconds per tick.
    pub(crate) fn collect(&mut self, device: &wgpu::Device, period: f32) {
        let batches = std::mem::take(&mut self.in_flight);
        if batches.is_empty() {
            return;
        }
        let mut kernels: Vec<(&'static str, u64, u64)> = Vec::new();
        for b in &batches {
            let bytes = b.names.len() as u64 * 16;
            b.read.slice(..bytes).map_async(wgpu::MapMode::Read, |_| {});
        }
        if device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
            return;
        }
        for b in &batches {
            let bytes = b.names.len() as u64 * 16;
            let Ok(view) = b.read.slice(..bytes).get_mapped_range() else { continue };
            for (i, &name) in b.names.iter().enumerate() {
                let at = |k: usize| u64::from_le_bytes(view[k * 8..k * 8 + 8].try_into().unwrap_or_default());
                let (s, e) = (at(2 * i), at(2 * i + 1));
                let ns = |t: u64| (t as f64 * f64::from(period)) as u64;
                kernels.push((name, ns(s), ns(e.max(s))));
            }
            drop(view);
            b.read.unmap();
        }
        let Some(last) = kernels.iter().map(|k| k.2).max() else { return };
        let offset = strata_trace::now_ns() as i128 - i128::from(last);
        for (name, s, e) in kernels {
            let start = (i128::from(s) + offset).max(0) as u64;
            strata_trace::gpu_kernel(name, start, Duration::from_nanos(e - s));
        }
    }
}
