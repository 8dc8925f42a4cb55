//! The per-thread event buffer: a fixed single-producer, single-consumer ring.
//!
//! The owning thread is the only producer and the flusher the only consumer, so a push is two
//! relaxed/acquire loads, a copy and a release store: no lock, no allocation, never a wait.
//! When the flusher falls behind the ring fills and further events are counted as dropped
//! rather than growing memory or blocking the program.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What a raw event is; the payload words `a` and `b` mean different things for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawKind {
    /// `ts` = start, `a` = duration.
    Span,
    Instant,
    /// `a` = f64 bits.
    Counter,
    /// `ts` = end of the frame, `a` = CPU ns, `b` = GPU ns + 1 (0 = unknown).
    Frame,
    /// `ts` = start on the GPU, `a` = duration.
    Gpu,
}

/// One event as the hot path writes it: fixed size, no owned data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Raw {
    pub kind: RawKind,
    pub name: &'static str,
    pub ts: u64,
    pub a: u64,
    pub b: u64,
}

pub(crate) struct Ring {
    slots: Box<[UnsafeCell<MaybeUninit<Raw>>]>,
    mask: usize,
    head: AtomicUsize,
    tail: AtomicUsize,
    dropped: AtomicU64,
    closed: AtomicBool,
    pub tid: u64,
    pub thread_name: String,
}

// SAFETY: slots in [tail, head) are only read by the consumer and slots outside it only written
// by the producer; the head/tail release/acquire pairs order those accesses.
unsafe impl Sync for Ring {}

impl Ring {
    pub fn new(capacity: usize, tid: u64, thread_name: String) -> Ring {
        let capacity = capacity.max(2).next_power_of_two();
        Ring {
            slots: (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect(),
            mask: capacity - 1,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            tid,
            thread_name,
        }
    }

    /// Appends an event.
    ///
    /// # Safety
    /// Only one thread (the ring's owner) may ever push.
    #[inline]
    pub unsafe fn push(&self, raw: Raw) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) > self.mask {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // SAFETY: the slot is outside [tail, head), so the consumer does not touch it.
        unsafe { (*self.slots[head & self.mask].get()).write(raw) };
        self.head.store(head.wrapping_add(1), Ordering::Release);
    }

    /// Moves every published event into `out`.
    ///
    /// # Safety
    /// Only one thread at a time may drain (the recorder drains under its rings lock).
    pub unsafe fn drain(&self, out: &mut Vec<(u64, Raw)>) {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let mut i = tail;
        while i != head {
            // SAFETY: [tail, head) was published by the producer's release store.
            out.push((self.tid, unsafe { (*self.slots[i & self.mask].get()).assume_init() }));
            i = i.wrapping_add(1);
        }
        self.tail.store(head, Ordering::Release);
    }

    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ts: u64) -> Raw {
        Raw { kind: RawKind::Instant, name: "x", ts, a: 0, b: 0 }
    }

    #[test]
    fn full_ring_drops_and_counts() {
        let ring = Ring::new(4, 1, "t".into());
        let mut out = Vec::new();
        // SAFETY (all calls below): this test thread is the only producer and consumer.
        unsafe {
            for ts in 0..6 {
                ring.push(raw(ts));
            }
            ring.drain(&mut out);
        }
        assert_eq!(out.iter().map(|(_, r)| r.ts).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(ring.take_dropped(), 2);
        out.clear();
        unsafe {
            ring.push(raw(9));
            ring.drain(&mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.ts, 9);
    }

    #[test]
    fn producer_and_consumer_on_two_threads_lose_nothing_they_do_not_count() {
        let ring = std::sync::Arc::new(Ring::new(64, 1, "t".into()));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for ts in 0..100_000 {
                    // SAFETY: this thread is the only producer.
                    unsafe { ring.push(raw(ts)) };
                }
            })
        };
        let mut seen = Vec::new();
        // SAFETY: this thread is the only consumer.
        while !producer.is_finished() {
            unsafe { ring.drain(&mut seen) };
        }
        producer.join().unwrap();
        unsafe { ring.drain(&mut seen) };
        let dropped = ring.take_dropped();
        assert_eq!(seen.len() as u64 + dropped, 100_000);
        assert!(seen.windows(2).all(|w| w[0].1.ts < w[1].1.ts), "events arrive in order");
    }
}
