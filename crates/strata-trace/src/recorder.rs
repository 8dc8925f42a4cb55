//! The process-wide recorder: per-thread rings, the state queue, and the background flusher.
//!
//! The recorder starts on the first event (or an explicit [`init`]) unless `STRATA_TRACE=off`;
//! when off, every entry point costs one relaxed load and a branch. Threads write into their own
//! ring; every flush interval a background thread drains the rings, samples the process's CPU
//! time and memory, and hands the batch to the [`Sink`](crate::writer::Sink), which appends one
//! compressed chunk to the current segment and updates the per-second rollups.

use std::cell::OnceCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::clock::now_ns;
use crate::error::TraceError;
use crate::model::{Name, ProcessInfo, Record, RecordKind};
use crate::ring::{Raw, RawKind, Ring};
use crate::writer::Sink;

/// How long detail and rollups are kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    /// Detail segments older than this are deleted (default 24 h).
    pub detail_age: Duration,
    /// Oldest detail segments are deleted while all of them together exceed this (default 1 GiB).
    pub detail_bytes: u64,
    /// Rollup files older than this are deleted (default 7 days).
    pub rollup_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            detail_age: Duration::from_secs(24 * 3600),
            detail_bytes: 1 << 30,
            rollup_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Where and how the recorder writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The data directory (`$STRATA_TRACE_DIR`, default [`default_dir`]).
    pub dir: PathBuf,
    /// How often the flusher writes (`$STRATA_TRACE_FLUSH_MS`, default 250 ms). A crash loses
    /// at most this much.
    pub flush_interval: Duration,
    /// A segment is closed and a new one opened after this long (default 10 min)...
    pub segment_span: Duration,
    /// ...or once it holds this many bytes (default 32 MiB).
    pub segment_bytes: u64,
    /// What the store keeps.
    pub retention: Retention,
    /// Events each thread can hold between flushes before it drops (default 16,384).
    pub ring_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: default_dir(),
            flush_interval: Duration::from_millis(250),
            segment_span: Duration::from_secs(600),
            segment_bytes: 32 << 20,
            retention: Retention::default(),
            ring_capacity: 1 << 14,
        }
    }
}

impl Config {
    /// The defaults, with `STRATA_TRACE_DIR` and `STRATA_TRACE_FLUSH_MS` applied.
    pub fn from_env() -> Config {
        let mut c = Config::default();
        if let Some(dir) = std::env::var_os("STRATA_TRACE_DIR").filter(|d| !d.is_empty()) {
            c.dir = PathBuf::from(dir);
        }
        if let Some(ms) = std::env::var("STRATA_TRACE_FLUSH_MS").ok().and_then(|v| v.parse().ok()) {
            c.flush_interval = Duration::from_millis(ms).max(Duration::from_millis(1));
        }
        c
    }
}

/// The default data directory: `$XDG_DATA_HOME/strata/trace`, `~/.local/share/strata/trace`,
/// `~/Library/Application Support/strata/trace` on macOS, `%LOCALAPPDATA%\strata\trace` on
/// Windows; the temporary directory when none of these is known.
pub fn default_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(target_os = "windows") {
        env("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Application Support"))
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))
    };
    base.unwrap_or_else(std::env::temp_dir).join("strata").join("trace")
}

/// Whether tracing is switched off by the environment (`STRATA_TRACE=off`, `0` or `false`).
pub fn off_by_env() -> bool {
    matches!(std::env::var("STRATA_TRACE").as_deref(), Ok("off" | "0" | "false" | "OFF"))
}

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(UNSET);
static RECORDER: OnceLock<Option<Recorder>> = OnceLock::new();

pub(crate) struct Recorder {
    config: Config,
    rings: Mutex<Vec<Arc<Ring>>>,
    next_tid: AtomicU64,
    states: Mutex<Vec<Record>>,
    sink: Mutex<Sink>,
}

/// Whether the recorder is on; starts it on first use.
#[inline]
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        // The recorder may be published before MODE is: whether it exists is the answer.
        _ => start(None).is_ok() && recorder().is_some(),
    }
}

/// Starts the recorder with `config` (instead of [`Config::from_env`]). An `Err` if it already
/// started (the first event starts it) or its directory cannot be made. `STRATA_TRACE=off`
/// still wins: then this succeeds and records nothing.
pub fn init(config: Config) -> Result<(), TraceError> {
    if RECORDER.get().is_some() {
        return Err(TraceError::Usage("the trace recorder has already started".into()));
    }
    start(Some(config))
}

#[cold]
fn start(config: Option<Config>) -> Result<(), TraceError> {
    let mut failure = None;
    let mut ours = false;
    RECORDER.get_or_init(|| {
        ours = true;
        if off_by_env() {
            return None;
        }
        let config = config.clone().unwrap_or_else(Config::from_env);
        let info = ProcessInfo { pid: std::process::id(), name: process_name(), start_ns: now_ns() };
        match Sink::new(config.clone(), info) {
            Ok(sink) => Some(Recorder {
                config,
                rings: Mutex::new(Vec::new()),
                next_tid: AtomicU64::new(1),
                states: Mutex::new(Vec::new()),
                sink: Mutex::new(sink),
            }),
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    let on = matches!(RECORDER.get(), Some(Some(_)));
    if ours {
        if on {
            let interval = RECORDER.get().unwrap().as_ref().unwrap().config.flush_interval;
            let spawned = std::thread::Builder::new().name("strata-trace".into()).spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let _ = flush_with(false);
                }
            });
            if spawned.is_err() {
                eprintln!("strata-trace: could not start the flusher thread; tracing is off");
                MODE.store(OFF, Ordering::Relaxed);
                return Ok(());
            }
        }
        MODE.store(if on { ON } else { OFF }, Ordering::Relaxed);
        if let Some(e) = &failure {
            eprintln!("strata-trace: tracing is off: {e}");
        }
    }
    match failure {
        Some(e) if config.is_some() => Err(e),
        _ if config.is_some() && !ours => {
            Err(TraceError::Usage("the trace recorder had already started (another thread's first event)".into()))
        }
        _ => Ok(()),
    }
}

fn recorder() -> Option<&'static Recorder> {
    RECORDER.get().and_then(Option::as_ref)
}

fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

struct Local {
    ring: OnceCell<Arc<Ring>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.get() {
            ring.close();
        }
    }
}

thread_local! {
    static LOCAL: Local = const { Local { ring: OnceCell::new() } };
}

fn register() -> Arc<Ring> {
    let rec = recorder().expect("events are only pushed while the recorder is on");
    let tid = rec.next_tid.fetch_add(1, Ordering::Relaxed);
    let thread = std::thread::current();
    let name = thread.name().map_or_else(|| format!("thread {tid}"), str::to_owned);
    let ring = Arc::new(Ring::new(rec.config.ring_capacity, tid, name));
    rec.rings.lock().unwrap_or_else(|e| e.into_inner()).push(ring.clone());
    ring
}

#[inline]
pub(crate) fn push(kind: RawKind, name: &'static str, ts: u64, a: u64, b: u64) {
    // `try_with` fails only while the thread is being torn down; the event is then lost.
    // SAFETY: the ring is this thread's own (thread-local), so this thread is its only producer.
    let _ = LOCAL.try_with(|l| unsafe { l.ring.get_or_init(register).push(Raw { kind, name, ts, a, b }) });
}

pub(crate) fn submit_state(record: Record) {
    if enabled() {
        let rec = recorder().unwrap();
        rec.states.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    }
}

/// Writes everything recorded so far to the current segment now (the flusher does this every
/// flush interval; call it before a program exits so its last events are kept).
pub fn flush() -> Result<(), TraceError> {
    flush_with(true)
}

/// `final_rollups`: also write the per-second rollups of the second still under way (an
/// explicit flush may be the program's last); the periodic flush waits until a second is over.
fn flush_with(final_rollups: bool) -> Result<(), TraceError> {
    let Some(rec) = recorder() else { return Ok(()) };
    let mut sink = rec.sink.lock().unwrap_or_else(|e| e.into_inner());
    let started = thread_cpu_ns();
    crate::state::poll_all(final_rollups);
    let result = flush_locked(rec, &mut sink, final_rollups);
    let mut stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
    stats.flushes += 1;
    stats.flush_time += Duration::from_nanos(thread_cpu_ns().saturating_sub(started));
    stats.bytes_written = sink.bytes_written();
    result
}

/// What the recorder has done in this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Flushes run (periodic and explicit).
    pub flushes: u64,
    /// CPU time spent flushing (draining, encoding, compressing, writing): the recorder's cost
    /// off the hot path (wall time where the platform has no per-thread CPU clock).
    pub flush_time: Duration,
    /// Records written.
    pub records_written: u64,
    /// Events dropped because a thread's ring was full.
    pub dropped: u64,
    /// Bytes written to segment and rollup files.
    pub bytes_written: u64,
}

static STATS: Mutex<Stats> =
    Mutex::new(Stats { flushes: 0, flush_time: Duration::ZERO, records_written: 0, dropped: 0, bytes_written: 0 });

/// The recorder's counters for this process.
pub fn stats() -> Stats {
    *STATS.lock().unwrap_or_else(|e| e.into_inner())
}

fn flush_locked(rec: &Recorder, sink: &mut Sink, final_rollups: bool) -> Result<(), TraceError> {
    let mut raws = sink.take_raw_buffer();
    let mut dropped = 0;
    let mut fresh_threads = Vec::new();
    {
        let mut rings = rec.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.retain(|ring| {
            let closed = ring.is_closed();
            // SAFETY: draining happens only here, under the rings lock (and the sink lock).
            unsafe { ring.drain(&mut raws) };
            dropped += ring.take_dropped();
            if !sink.knows_thread(ring.tid) {
                fresh_threads.push((ring.tid, ring.thread_name.clone()));
            }
            !closed
        });
    }
    let now = now_ns();
    let mut records = sink.take_record_buffer();
    for (tid, name) in fresh_threads {
        sink.add_thread(tid, Name::from(name.as_str()));
        records.push(Record { ts: now, thread: tid, kind: RecordKind::ThreadName { name: name.into() } });
    }
    for &(thread, raw) in &raws {
        records.push(sink.convert(thread, raw));
    }
    sink.return_raw_buffer(raws);
    records.append(&mut rec.states.lock().unwrap_or_else(|e| e.into_inner()));
    if dropped > 0 {
        records.push(Record { ts: now, thread: 0, kind: RecordKind::Dropped { count: dropped } });
    }
    let (cpu_ns, rss) = process_usage();
    let counter = |name: &str, value: f64| Record {
        ts: now,
        thread: 0,
        kind: RecordKind::Counter { name: Name::from(name), value },
    };
    records.push(counter("process.cpu_ns", cpu_ns as f64));
    if let Some(rss) = rss {
        records.push(counter("process.rss_bytes", rss as f64));
    }
    records.sort_by_key(|r| r.ts);
    {
        let mut stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
        stats.records_written += records.len() as u64;
        stats.dropped += dropped;
    }
    sink.write(records, now, final_rollups)
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec we pass.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        }
    }
    now_ns()
}

/// CPU time of the process (user + system, ns) and its resident memory in bytes, where known.
pub(crate) fn process_usage() -> (u64, Option<u64>) {
    #[cfg(unix)]
    {
        // SAFETY: getrusage fills the struct we pass and reads nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let cpu = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
            tv(usage.ru_utime) + tv(usage.ru_stime)
        } else {
            0
        };
        let rss = std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| {
            let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
            // SAFETY: sysconf has no preconditions.
            Some(pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64)
        });
        (cpu, rss)
    }
    #[cfg(not(unix))]
    {
        (0, None)
    }
}

/// The configuration the recorder runs with, or `None` when tracing is off.
pub fn config() -> Option<Config> {
    enabled();
    recorder().map(|r| r.config.clone())
}
