//! Time stamps: nanoseconds since the Unix epoch, read cheaply from the monotonic clock.
//!
//! Records from several processes are merged on one time line, so every time stamp is wall-clock
//! time. Reading the wall clock on every event would be slower and could step backwards under
//! NTP, so the process anchors the monotonic clock to the wall clock once and adds offsets.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    at: Instant,
    mono: u64,
    wall: u64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Anchor { at: Instant::now(), mono: monotonic_ns(), wall }
    })
}

/// The monotonic clock in ns, read directly: `Instant::elapsed` adds a `Duration` round trip
/// that was a visible part of an event's cost.
#[cfg(unix)]
#[inline]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(unix))]
#[inline]
fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Nanoseconds since the Unix epoch, monotonic within this process.
#[inline]
pub fn now_ns() -> u64 {
    let a = anchor();
    a.wall + monotonic_ns().saturating_sub(a.mono)
}

/// Converts an [`Instant`] of this process into the recorder's time line.
pub fn instant_ns(t: Instant) -> u64 {
    let Anchor { at, wall, .. } = anchor();
    match t.checked_duration_since(*at) {
        Some(d) => wall + d.as_nanos() as u64,
        None => wall.saturating_sub(at.duration_since(t).as_nanos() as u64),
    }
}

/// A source of time, so that throttling and retention can be tested with a clock the test
/// moves by hand.
pub trait Clock: Send + Sync {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The process clock ([`now_ns`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

/// A clock that only moves when told to; clones share one time.
///
/// ```
/// use strata_trace::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance(std::time::Duration::from_micros(1));
/// assert_eq!(clock.now_ns(), 2_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `ns` nanoseconds since the Unix epoch.
    pub fn new(ns: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(ns)))
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
    /// Sets the clock.
    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
