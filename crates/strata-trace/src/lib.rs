//! Strata's flight recorder: always on, cheap, and readable after the fact.
//!
//! A program (or Strata itself) records **spans**, **instants**, **counters**, **frames** (or
//! training steps) with their CPU and GPU time, **GPU kernel times**, and **states** of
//! app-defined domains. The recorder keeps them in per-thread rings, a background thread writes
//! them every 250 ms into compressed segment files under the data directory, and old files are
//! deleted by age and size (24 h / 1 GiB of detail, 7 days of per-second rollups by default).
//! Later, `strata trace collect --last 5h` gathers a window into one file, `strata trace
//! overview` summarises it (CPU, memory, frame-time percentiles, GPU time, states), `aggregate`
//! attributes frame rate and GPU time to states, and `export` writes Perfetto or Chrome JSON.
//!
//! ```
//! use std::time::Duration;
//! strata_trace::metadata! { pub struct Level { pub index: u32 } }
//!
//! let scene = strata_trace::state_domain::<Level, ()>("doc.scene")?;
//! scene.transition("playing", Level { index: 3 }, ())?;
//! for _ in 0..3 {
//!     let _frame = strata_trace::span("update");
//!     strata_trace::counter("enemies", 12.0);
//!     strata_trace::frame_end(Duration::from_millis(4), Some(Duration::from_millis(6)));
//! }
//! strata_trace::flush()?; // the background thread does this every flush interval
//! # Ok::<(), strata_trace::TraceError>(())
//! ```
//!
//! `STRATA_TRACE=off` turns recording off (each call then costs one load and a branch),
//! `STRATA_TRACE_DIR` moves the data directory, `STRATA_TRACE_FLUSH_MS` sets the flush interval.
//! Each process writes only its own files, so any number of processes record at once; a crash
//! loses at most the last flush interval, and a torn chunk is skipped with a warning.

mod analysis;
mod clock;
mod error;
pub mod export;
mod model;
mod recorder;
mod ring;
mod state;
mod store;
pub mod time;
mod wire;
mod writer;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

pub use analysis::{
    Aggregate, FrameStats, Overlap, Overview, ProcessAggregate, ProcessOverview, RollupRow, SCHEMA_VERSION, SpanStat,
    StateAggregate, StateInterval, Window, aggregate, overview, rollup_summary, state_intervals,
};
pub use clock::{Clock, ManualClock, SystemClock, instant_ns, now_ns};
pub use error::TraceError;
pub use model::{
    FRAME_BUCKETS, Fields, Name, ProcessInfo, ProcessTrace, Record, RecordKind, Rollup, StateChange, TimeNs, Trace,
    Value, bucket_of, bucket_upper_ns,
};
pub use recorder::{Config, Retention, Stats, config, default_dir, enabled, flush, init, off_by_env, stats};
pub use state::{DomainOptions, Metadata, Outcome, StateDomain, state_domain, state_domain_with};
pub use store::{ProcessFilter, PruneReport, SegmentFile, SegmentKind, Store, StoreStatus, read_file, write_file};

use ring::RawKind;

/// A timed region: recorded when dropped. Create with [`span`].
#[must_use = "a span measures until it is dropped; bind it to a variable (`let _s = ...`)"]
pub struct Span {
    name: &'static str,
    start: u64,
}

/// Starts a span that ends when the returned guard is dropped.
///
/// ```
/// {
///     let _s = strata_trace::span("load weights");
///     // ... the work ...
/// } // recorded here
/// ```
#[inline]
pub fn span(name: &'static str) -> Span {
    Span { name, start: if enabled() { now_ns() } else { 0 } }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        if self.start != 0 {
            let end = now_ns();
            recorder::push(RawKind::Span, self.name, self.start, end.saturating_sub(self.start), 0);
        }
    }
}

/// Records a span whose start and end the caller measured with [`now_ns`] (a loop that times
/// consecutive steps reads the clock once per step this way).
#[inline]
pub fn complete_span(name: &'static str, start_ns: u64, end_ns: u64) {
    if enabled() {
        recorder::push(RawKind::Span, name, start_ns, end_ns.saturating_sub(start_ns), 0);
    }
}

/// Records a point event.
#[inline]
pub fn instant(name: &'static str) {
    if enabled() {
        recorder::push(RawKind::Instant, name, now_ns(), 0, 0);
    }
}

/// Records the value of a counter.
#[inline]
pub fn counter(name: &'static str, value: f64) {
    if enabled() {
        recorder::push(RawKind::Counter, name, now_ns(), value.to_bits(), 0);
    }
}

/// Records the end of a frame (or a training step) with the CPU time it took and, when the
/// program knows it, the GPU time.
#[inline]
pub fn frame_end(cpu: Duration, gpu: Option<Duration>) {
    if enabled() {
        let gpu = gpu.map_or(0, |g| g.as_nanos() as u64 + 1);
        recorder::push(RawKind::Frame, "frame", now_ns(), cpu.as_nanos() as u64, gpu);
    }
}

/// Records a GPU kernel that started at `start_ns` (on this recorder's time line, see
/// [`instant_ns`]) and ran for `dur` on the device; backends call this with event or
/// timestamp-query times.
#[inline]
pub fn gpu_kernel(name: &'static str, start_ns: u64, dur: Duration) {
    if enabled() {
        recorder::push(RawKind::Gpu, name, start_ns, dur.as_nanos() as u64, 0);
    }
}

/// Records memory in use by an allocator, as a counter named `pool` (by convention
/// `memory.<allocator>`, e.g. `memory.cuda`).
#[inline]
pub fn memory(pool: &'static str, bytes: u64) {
    counter(pool, bytes as f64);
}

/// Turns a run-time string into a `&'static str` for the recording calls. Each distinct string
/// is kept once for the life of the process, so intern names (kernel names, model layers), not
/// unbounded data.
pub fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(&n) = names.get(s) {
        return n;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}
