//! The decoded form of a trace: processes, their records, and metadata values.
//!
//! The recorder writes these records, the segment reader returns them, and the overview,
//! aggregation and exporters read them; one vocabulary for all of them.

use std::sync::Arc;

use serde::Serialize;

/// A shared string (event, counter, domain and label names repeat a lot).
pub type Name = Arc<str>;

/// A metadata value attached to a state.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A signed integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A point in time, nanoseconds since the Unix epoch.
    Time(TimeNs),
    /// A flag.
    Bool(bool),
}

/// A time stamp in metadata (kept apart from integers so that a reader can show it as a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TimeNs {
    /// Nanoseconds since the Unix epoch.
    pub unix_ns: u64,
}

impl Value {
    /// The kind of value, for checking that a domain's metadata keeps its types.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Time(_) => "timestamp",
            Value::Bool(_) => "bool",
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident($conv:expr)),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                let f: fn($t) -> _ = $conv;
                Value::$v(f(x))
            }
        }
    )*};
}
value_from!(
    i64 => Int(|x| x), i32 => Int(i64::from), i16 => Int(i64::from), i8 => Int(i64::from),
    u32 => Int(i64::from), u16 => Int(i64::from), u8 => Int(i64::from),
    u64 => Int(|x| x as i64), usize => Int(|x| x as i64), isize => Int(|x| x as i64),
    f64 => Float(|x| x), f32 => Float(f64::from),
    String => Str(|x| x), &str => Str(str::to_owned),
    bool => Bool(|x| x),
    TimeNs => Time(|x| x),
);

impl From<std::time::SystemTime> for Value {
    fn from(t: std::time::SystemTime) -> Value {
        let unix_ns = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Value::Time(TimeNs { unix_ns })
    }
}

/// Named metadata values.
pub type Fields = Vec<(Name, Value)>;

/// How a state record changes its domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// The domain entered the label (or left every state when the label is `None`).
    Enter,
    /// The current state's volatile metadata changed.
    Volatile,
    /// The state that was current when a segment opened (written so a segment reads alone).
    Snapshot,
}

/// What a record says.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordKind {
    /// A timed region of one thread, starting at the record's time.
    Span {
        /// What ran.
        name: Name,
        /// Nanoseconds.
        dur: u64,
    },
    /// A point event.
    Instant {
        /// What happened.
        name: Name,
    },
    /// A sampled value.
    Counter {
        /// The series.
        name: Name,
        /// Its value at the record's time.
        value: f64,
    },
    /// The end of a frame (or training step) at the record's time.
    Frame {
        /// CPU time the frame took, ns.
        cpu: u64,
        /// GPU time, ns, when known.
        gpu: Option<u64>,
    },
    /// A GPU kernel starting at the record's time.
    Gpu {
        /// The kernel.
        name: Name,
        /// Nanoseconds on the GPU.
        dur: u64,
    },
    /// A state domain changed.
    State {
        /// The domain.
        domain: Name,
        /// The state entered; `None` when the domain was cleared.
        label: Option<Name>,
        /// Metadata that identifies the state.
        stable: Fields,
        /// Metadata that may change while the state lasts.
        volatile: Fields,
        /// What kind of change.
        change: StateChange,
    },
    /// Events lost because a thread's buffer was full.
    Dropped {
        /// How many.
        count: u64,
    },
    /// State changes dropped (coalesced) by a domain's throttle.
    Throttled {
        /// The domain.
        domain: Name,
        /// How many.
        count: u64,
    },
    /// A thread's name (once per segment and thread).
    ThreadName {
        /// The name.
        name: Name,
    },
    /// One second of one process under one set of active states (kept longer than details).
    Rollup(Box<Rollup>),
}

/// One record: a time, the thread it came from (0 for the process), and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch.
    pub ts: u64,
    /// The recording thread's id within its process (0 = the process itself).
    pub thread: u64,
    /// The content.
    pub kind: RecordKind,
}

/// Frame-time histogram buckets: bucket `i` holds frames of at most `bucket_upper_ns(i)`.
pub const FRAME_BUCKETS: usize = 40;

/// The upper edge of frame-time bucket `i`: 62.5 µs × √2^i (the last bucket is open).
pub fn bucket_upper_ns(i: usize) -> u64 {
    (62_500.0 * std::f64::consts::SQRT_2.powi(i as i32)) as u64
}

/// The bucket of a frame time.
pub fn bucket_of(ns: u64) -> usize {
    (0..FRAME_BUCKETS - 1).find(|&i| ns <= bucket_upper_ns(i)).unwrap_or(FRAME_BUCKETS - 1)
}

/// Per-second aggregate of one process under one set of active states.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Rollup {
    /// The second (Unix seconds).
    pub second: u64,
    /// The active states, `(domain, label)`, sorted by domain.
    pub states: Vec<(Name, Name)>,
    /// Frames that ended in this second under these states.
    pub frames: u64,
    /// Frame-interval histogram (see [`bucket_upper_ns`]), sparse: `(bucket, count)`.
    pub frame_hist: Vec<(u32, u64)>,
    /// GPU time of those frames and of GPU kernels, ns.
    pub gpu_ns: u64,
    /// CPU time of those frames, ns.
    pub cpu_ns: u64,
}

/// Who recorded a stream of records.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessInfo {
    /// Operating-system process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
    /// When the recorder started in that process (tells apart processes that reused a pid).
    pub start_ns: u64,
}

/// The records of one process, in time order.
#[derive(Clone, Debug, Default)]
pub struct ProcessTrace {
    /// The process.
    pub info: Option<ProcessInfo>,
    /// Its records, sorted by time.
    pub records: Vec<Record>,
}

/// Records of several processes over one window of time.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// One entry per process, ordered by process start.
    pub processes: Vec<ProcessTrace>,
    /// The window asked for, ns since the Unix epoch (`None` = everything found).
    pub window: Option<(u64, u64)>,
}

impl ProcessTrace {
    /// The process info (every stream has one; an empty default otherwise).
    pub fn info(&self) -> ProcessInfo {
        self.info.clone().unwrap_or(ProcessInfo { pid: 0, name: String::new(), start_ns: 0 })
    }
}
