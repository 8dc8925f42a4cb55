//! State reporting: orthogonal domains, each a state machine the program moves through.
//!
//! A program says *what it is doing* ("scene: loading level 3", "network: downloading") and the
//! recorder attributes frame rate and GPU time to those states. Each domain has a label and two
//! kinds of metadata: *stable* metadata identifies the state (entering the same label with the
//! same stable metadata again changes nothing), *volatile* metadata may change while the state
//! lasts (progress, bytes so far).
//!
//! A token bucket per domain keeps transitions at user-action pace: a change that arrives
//! while the bucket is empty waits as *pending*, a later change replaces it (the replaced one is
//! counted as dropped), and the pending change is written, with its own time stamp, as soon as a
//! token frees. So the recorded state is never wrong for long, and the cost stays bounded.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};

use crate::clock::{Clock, SystemClock};
use crate::error::TraceError;
use crate::model::{Fields, Name, Record, RecordKind, StateChange, Value};

/// Metadata attached to a state: a fixed list of named values. Implement it by hand or declare
/// the struct with [`metadata!`](crate::metadata).
pub trait Metadata: Send + Sync + 'static {
    /// The named values, in a fixed order.
    fn fields(&self) -> Vec<(&'static str, Value)>;
}

impl Metadata for () {
    fn fields(&self) -> Vec<(&'static str, Value)> {
        Vec::new()
    }
}

/// Declares a metadata struct and implements [`Metadata`] for it. Field types are anything that
/// converts into a [`Value`] (integers, floats, strings, `bool`, `SystemTime`).
///
/// ```
/// strata_trace::metadata! {
///     /// Which level is loaded.
///     #[derive(Clone)]
///     pub struct Level { pub index: u32, pub name: String }
/// }
/// use strata_trace::Metadata;
/// let fields = Level { index: 3, name: "caves".into() }.fields();
/// assert_eq!(fields[0].0, "index");
/// ```
#[macro_export]
macro_rules! metadata {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])* $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }
        impl $crate::Metadata for $name {
            fn fields(&self) -> ::std::vec::Vec<(&'static str, $crate::Value)> {
                ::std::vec![$((
                    ::std::stringify!($field),
                    $crate::Value::from(::std::clone::Clone::clone(&self.$field)),
                )),*]
            }
        }
    };
}

/// What a state-reporting call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The change was recorded.
    Recorded,
    /// The domain was already in that state; nothing was recorded.
    Unchanged,
    /// The throttle held the change back; it is recorded when a token frees unless a later
    /// change replaces it first.
    Throttled,
}

/// How a domain throttles and what clock it reads.
#[derive(Clone)]
pub struct DomainOptions {
    /// Changes that may come back to back.
    pub burst: u32,
    /// Sustained changes per second.
    pub per_second: f64,
    /// The time source (a [`ManualClock`](crate::ManualClock) in tests).
    pub clock: Arc<dyn Clock>,
}

impl Default for DomainOptions {
    fn default() -> Self {
        DomainOptions { burst: 8, per_second: 4.0, clock: Arc::new(SystemClock) }
    }
}

struct TokenBucket {
    capacity: f64,
    per_ns: f64,
    tokens: f64,
    last: u64,
}

impl TokenBucket {
    fn take(&mut self, now: u64) -> bool {
        let dt = now.saturating_sub(self.last) as f64;
        self.tokens = (self.tokens + dt * self.per_ns).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

type Schema = Vec<(&'static str, &'static str)>;

struct DomainState {
    /// The latest accepted (recorded or pending) label and stable metadata.
    current: Option<(Name, Fields)>,
    stable_schema: Option<Schema>,
    volatile_schema: Option<Schema>,
    bucket: TokenBucket,
    pending: Option<Record>,
    unreported_drops: u64,
    drops: u64,
}

struct DomainInner {
    name: Name,
    clock: Arc<dyn Clock>,
    state: Mutex<DomainState>,
}

/// A state domain with stable metadata `S` and volatile metadata `V`. Clones share the domain.
pub struct StateDomain<S: Metadata, V: Metadata> {
    inner: Arc<DomainInner>,
    _types: PhantomData<fn(S, V)>,
}

impl<S: Metadata, V: Metadata> Clone for StateDomain<S, V> {
    fn clone(&self) -> Self {
        StateDomain { inner: self.inner.clone(), _types: PhantomData }
    }
}

struct Registered {
    name: Name,
    types: (TypeId, TypeId),
    inner: Weak<DomainInner>,
}

static DOMAINS: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// The domain `name` with default throttling (bursts of 8, 4 changes a second). Asking again
/// for a live domain returns the same domain; asking with other metadata types is an `Err`.
///
/// ```
/// strata_trace::metadata! { pub struct Download { pub url: String } }
/// strata_trace::metadata! { pub struct Progress { pub bytes: u64 } }
/// let net = strata_trace::state_domain::<Download, Progress>("doc.network")?;
/// net.transition("downloading", Download { url: "https://x".into() }, Progress { bytes: 0 })?;
/// net.update_volatile(Progress { bytes: 4096 })?;
/// net.clear()?;
/// assert!(strata_trace::state_domain::<(), ()>("doc.network").is_err());
/// # Ok::<(), strata_trace::TraceError>(())
/// ```
pub fn state_domain<S: Metadata, V: Metadata>(name: &str) -> Result<StateDomain<S, V>, TraceError> {
    state_domain_with(name, DomainOptions::default())
}

/// [`state_domain`] with explicit throttling and clock (used only when the domain is created).
pub fn state_domain_with<S: Metadata, V: Metadata>(
    name: &str,
    options: DomainOptions,
) -> Result<StateDomain<S, V>, TraceError> {
    let err = |what: String| TraceError::State { domain: name.to_owned(), what };
    if name.is_empty() {
        return Err(err("a domain needs a name".into()));
    }
    if options.burst == 0 || options.per_second.is_nan() || options.per_second <= 0.0 {
        return Err(err(format!(
            "throttle needs burst >= 1 and a positive rate (got burst {}, {} per second)",
            options.burst, options.per_second
        )));
    }
    let types = (TypeId::of::<S>(), TypeId::of::<V>());
    let mut domains = DOMAINS.lock().unwrap_or_else(|e| e.into_inner());
    domains.retain(|d| d.inner.strong_count() > 0);
    if let Some(d) = domains.iter().find(|d| &*d.name == name) {
        if d.types != types {
            return Err(err(format!(
                "already exists with other metadata types ({}, {})",
                std::any::type_name::<S>(),
                std::any::type_name::<V>()
            )));
        }
        let inner = d.inner.upgrade().expect("dead domains were just removed");
        return Ok(StateDomain { inner, _types: PhantomData });
    }
    let now = options.clock.now_ns();
    let inner = Arc::new(DomainInner {
        name: Name::from(name),
        clock: options.clock,
        state: Mutex::new(DomainState {
            current: None,
            stable_schema: None,
            volatile_schema: None,
            bucket: TokenBucket {
                capacity: f64::from(options.burst),
                per_ns: options.per_second / 1e9,
                tokens: f64::from(options.burst),
                last: now,
            },
            pending: None,
            unreported_drops: 0,
            drops: 0,
        }),
    });
    domains.push(Registered { name: inner.name.clone(), types, inner: Arc::downgrade(&inner) });
    Ok(StateDomain { inner, _types: PhantomData })
}

fn to_fields(
    domain: &str,
    which: &str,
    fields: Vec<(&'static str, Value)>,
    schema: &mut Option<Schema>,
) -> Result<Fields, TraceError> {
    let shape: Schema = fields.iter().map(|(k, v)| (*k, v.kind())).collect();
    match schema {
        Some(s) if *s != shape => {
            return Err(TraceError::State {
                domain: domain.to_owned(),
                what: format!("{which} metadata changed shape: was {s:?}, now {shape:?}"),
            });
        }
        Some(_) => {}
        None => *schema = Some(shape),
    }
    Ok(fields.into_iter().map(|(k, v)| (Name::from(k), v)).collect())
}

impl<S: Metadata, V: Metadata> StateDomain<S, V> {
    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Enters state `label`. Entering the current label with equal stable metadata is a no-op.
    pub fn transition(&self, label: &str, stable: S, volatile: V) -> Result<Outcome, TraceError> {
        let inner = &*self.inner;
        if label.is_empty() {
            return Err(TraceError::State {
                domain: inner.name.to_string(),
                what: "a state needs a non-empty label".into(),
            });
        }
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let stable = to_fields(&inner.name, "stable", stable.fields(), &mut st.stable_schema)?;
        let volatile = to_fields(&inner.name, "volatile", volatile.fields(), &mut st.volatile_schema)?;
        if st.current.as_ref().is_some_and(|(l, s)| &**l == label && *s == stable) {
            return Ok(Outcome::Unchanged);
        }
        let label = Name::from(label);
        st.current = Some((label.clone(), stable.clone()));
        let kind = RecordKind::State {
            domain: inner.name.clone(),
            label: Some(label),
            stable,
            volatile,
            change: StateChange::Enter,
        };
        Ok(submit(inner, &mut st, kind))
    }

    /// Replaces the current state's volatile metadata; an `Err` when no state is current.
    pub fn update_volatile(&self, volatile: V) -> Result<Outcome, TraceError> {
        let inner = &*self.inner;
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let volatile = to_fields(&inner.name, "volatile", volatile.fields(), &mut st.volatile_schema)?;
        let Some((label, _)) = st.current.clone() else {
            return Err(TraceError::State {
                domain: inner.name.to_string(),
                what: "update_volatile with no current state (call transition first)".into(),
            });
        };
        // A pending entry keeps its place and takes the new values, so it is not lost.
        if let Some(Record { kind: RecordKind::State { volatile: v, .. }, .. }) = &mut st.pending {
            *v = volatile;
            return Ok(Outcome::Throttled);
        }
        let kind = RecordKind::State {
            domain: inner.name.clone(),
            label: Some(label),
            stable: Vec::new(),
            volatile,
            change: StateChange::Volatile,
        };
        Ok(submit(inner, &mut st, kind))
    }

    /// Leaves every state of this domain.
    pub fn clear(&self) -> Result<Outcome, TraceError> {
        let inner = &*self.inner;
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.current.take().is_none() {
            return Ok(Outcome::Unchanged);
        }
        let kind = RecordKind::State {
            domain: inner.name.clone(),
            label: None,
            stable: Vec::new(),
            volatile: Vec::new(),
            change: StateChange::Enter,
        };
        Ok(submit(inner, &mut st, kind))
    }

    /// The current label (including one the throttle still holds back).
    pub fn current(&self) -> Option<String> {
        let st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.current.as_ref().map(|(l, _)| l.to_string())
    }

    /// How many changes the throttle dropped so far (replaced while pending).
    pub fn dropped(&self) -> u64 {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).drops
    }

    /// Writes a held-back change if a token has freed; the recorder calls this on every flush.
    /// Returns whether something was written.
    pub fn poll(&self) -> bool {
        poll(&self.inner, false)
    }
}

fn submit(inner: &DomainInner, st: &mut DomainState, kind: RecordKind) -> Outcome {
    let now = inner.clock.now_ns();
    let record = Record { ts: now, thread: 0, kind };
    if st.bucket.take(now) {
        if st.pending.take().is_some() {
            st.drops += 1;
            st.unreported_drops += 1;
        }
        crate::recorder::submit_state(record);
        Outcome::Recorded
    } else {
        if st.pending.replace(record).is_some() {
            st.drops += 1;
            st.unreported_drops += 1;
        }
        Outcome::Throttled
    }
}

/// `force`: write a held-back change even without a token (an explicit flush may be the
/// program's last chance).
fn poll(inner: &DomainInner, force: bool) -> bool {
    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    let now = inner.clock.now_ns();
    let mut wrote = false;
    if st.pending.is_some() && (st.bucket.take(now) || force) {
        crate::recorder::submit_state(st.pending.take().unwrap());
        wrote = true;
    }
    if st.unreported_drops > 0 {
        let count = std::mem::take(&mut st.unreported_drops);
        let kind = RecordKind::Throttled { domain: inner.name.clone(), count };
        crate::recorder::submit_state(Record { ts: now, thread: 0, kind });
    }
    wrote
}

/// Writes every domain's held-back change whose token has freed, or every one with `force`
/// (called by the flusher).
pub(crate) fn poll_all(force: bool) {
    let live: Vec<_> = {
        let domains = DOMAINS.lock().unwrap_or_else(|e| e.into_inner());
        domains.iter().filter_map(|d| d.inner.upgrade()).collect()
    };
    for d in live {
        poll(&d, force);
    }
}
