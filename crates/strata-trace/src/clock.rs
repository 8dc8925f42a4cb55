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

static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();

fn anchor() -> &'static (Instant, u64) {
    ANCHOR.get_or_init(|| {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        (Instant::now(), wall)
    })
}

/// Nanoseconds since the Unix epoch, monotonic within this process.
#[inline]
pub fn now_ns() -> u64 {
    let (at, wall) = anchor();
    wall + at.elapsed().as_nanos() as u64
}

/// Converts an [`Instant`] of this process into the recorder's time line.
pub fn instant_ns(t: Instant) -> u64 {
    let (at, wall) = anchor();
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
