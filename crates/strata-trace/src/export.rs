//! Export to the formats other tools read: Perfetto's protobuf trace and Chrome's JSON trace.
//!
//! Each process becomes a process track; each recording thread a thread track with its spans
//! and instants; each counter a counter track; GPU kernels and frames get a track of their own;
//! each state domain becomes a track whose slices are its states, with the metadata as
//! arguments. The protobuf is written by hand (a few fields of `perfetto_trace.proto`, numbers
//! cited below) rather than through a code generator: the schema is stable and small here.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::analysis::state_intervals;
use crate::model::{ProcessTrace, RecordKind, Trace, Value};

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Perfetto's `Trace` protobuf (open at ui.perfetto.dev).
    Perfetto,
    /// Chrome's JSON trace-event format (chrome://tracing, Perfetto, speedscope).
    ChromeJson,
}

impl std::str::FromStr for Format {
    type Err = crate::TraceError;
    fn from_str(s: &str) -> Result<Format, Self::Err> {
        match s {
            "perfetto" => Ok(Format::Perfetto),
            "chrome-json" | "json" => Ok(Format::ChromeJson),
            _ => Err(crate::TraceError::Usage(format!("unknown export format '{s}' (perfetto or chrome-json)"))),
        }
    }
}

/// Writes `trace` in `format`.
pub fn export(trace: &Trace, format: Format) -> Vec<u8> {
    match format {
        Format::Perfetto => perfetto(trace),
        Format::ChromeJson => serde_json::to_vec(&chrome(trace)).expect("JSON of plain values"),
    }
}

// --- protobuf wire format ---------------------------------------------------------------------

#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, v: u64) {
        crate::wire::put_varint(&mut self.0, v);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }
    fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }
    fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn msg(&mut self, field: u32, m: Pb) -> &mut Self {
        self.bytes(field, &m.0)
    }
    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
}

// Field numbers from perfetto_trace.proto.
const TRACE_PACKET: u32 = 1; // Trace.packet
const PKT_TIMESTAMP: u32 = 8;
const PKT_SEQ_ID: u32 = 10; // trusted_packet_sequence_id
const PKT_TRACK_EVENT: u32 = 11;
const PKT_SEQ_FLAGS: u32 = 13;
const PKT_TRACK_DESCRIPTOR: u32 = 60;
const TD_UUID: u32 = 1;
const TD_NAME: u32 = 2;
const TD_PROCESS: u32 = 3;
const TD_THREAD: u32 = 4;
const TD_PARENT: u32 = 5;
const TD_COUNTER: u32 = 8;
const PD_PID: u32 = 1;
const PD_NAME: u32 = 6;
const THD_PID: u32 = 1;
const THD_TID: u32 = 2;
const THD_NAME: u32 = 5;
const TE_ANNOTATIONS: u32 = 4;
const TE_TYPE: u32 = 9;
const TE_TRACK: u32 = 11;
const TE_NAME: u32 = 23;
const TE_DOUBLE_COUNTER: u32 = 44;
const DA_BOOL: u32 = 2;
const DA_INT: u32 = 4;
const DA_DOUBLE: u32 = 5;
const DA_STRING: u32 = 6;
const DA_NAME: u32 = 10;
const SLICE_BEGIN: u64 = 1;
const SLICE_END: u64 = 2;
const INSTANT: u64 = 3;
const COUNTER: u64 = 4;
const SEQ_ID: u64 = 7;

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in *p {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    h >> 1 // keep uuids positive for tools that read them as int64
}

fn annotation(name: &str, v: &Value) -> Pb {
    let mut a = Pb::default();
    a.str(DA_NAME, name);
    match v {
        Value::Int(x) => a.uint(DA_INT, *x as u64),
        Value::Float(x) => a.double(DA_DOUBLE, *x),
        Value::Str(s) => a.str(DA_STRING, s),
        Value::Time(t) => a.str(DA_STRING, &crate::time::format_utc(t.unix_ns)),
        Value::Bool(b) => a.uint(DA_BOOL, u64::from(*b)),
    };
    a
}

struct Events {
    /// (ts, order, packet): ends sort before begins at one time, outer begins before inner.
    packets: Vec<(u64, u8, u64, Vec<u8>)>,
}

impl Events {
    fn event(
        &mut self,
        ts: u64,
        order: (u8, u64),
        track: u64,
        kind: u64,
        name: Option<&str>,
        extra: impl FnOnce(&mut Pb),
    ) {
        let mut te = Pb::default();
        te.uint(TE_TYPE, kind).uint(TE_TRACK, track);
        if let Some(n) = name {
            te.str(TE_NAME, n);
        }
        extra(&mut te);
        let mut pkt = Pb::default();
        pkt.uint(PKT_TIMESTAMP, ts).uint(PKT_SEQ_ID, SEQ_ID).msg(PKT_TRACK_EVENT, te);
        self.packets.push((ts, order.0, order.1, pkt.0));
    }
    fn slice(&mut self, track: u64, start: u64, dur: u64, name: &str, args: &[(&str, Value)]) {
        self.event(start, (1, u64::MAX - dur), track, SLICE_BEGIN, Some(name), |te| {
            for (k, v) in args {
                te.msg(TE_ANNOTATIONS, annotation(k, v));
            }
        });
        // An empty slice ends right after its own begin (the sort is stable); others end before
        // anything that begins at the same time.
        let order = if dur == 0 { (1, u64::MAX) } else { (0, u64::MAX - start) };
        self.event(start.saturating_add(dur), order, track, SLICE_END, None, |_| {});
    }
}

fn descriptor(out: &mut Pb, uuid: u64, parent: Option<u64>, build: impl FnOnce(&mut Pb)) {
    let mut td = Pb::default();
    td.uint(TD_UUID, uuid);
    if let Some(p) = parent {
        td.uint(TD_PARENT, p);
    }
    build(&mut td);
    let mut pkt = Pb::default();
    pkt.uint(PKT_SEQ_ID, SEQ_ID).msg(PKT_TRACK_DESCRIPTOR, td);
    out.msg(TRACE_PACKET, pkt);
}

fn thread_names(p: &ProcessTrace) -> BTreeMap<u64, String> {
    let mut names = BTreeMap::new();
    for r in &p.records {
        match &r.kind {
            RecordKind::ThreadName { name } => {
                names.insert(r.thread, name.to_string());
            }
            RecordKind::Span { .. } | RecordKind::Instant { .. } => {
                names.entry(r.thread).or_insert_with(|| format!("thread {}", r.thread));
            }
            _ => {}
        }
    }
    names
}

/// Where a slice goes: a thread's own track, or a named track of the process.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SliceTrack {
    Thread(u64),
    Named(String),
}

struct SliceRec {
    start: u64,
    dur: u64,
    name: String,
    args: Vec<(String, Value)>,
}

/// Spreads slices (sorted by start, longest first) over lanes so that the slices of each lane
/// nest properly, as Perfetto's begin/end events require: a slice joins the first lane where
/// it starts after the open slices end or fits inside the innermost one.
fn lanes(slices: &[SliceRec]) -> Vec<usize> {
    let mut open: Vec<Vec<u64>> = Vec::new();
    slices
        .iter()
        .map(|s| {
            let end = s.start.saturating_add(s.dur);
            for (l, stack) in open.iter_mut().enumerate() {
                while stack.last().is_some_and(|&e| e <= s.start) {
                    stack.pop();
                }
                if stack.last().is_none_or(|&e| end <= e) {
                    stack.push(end);
                    return l;
                }
            }
            open.push(vec![end]);
            open.len() - 1
        })
        .collect()
}

fn perfetto(trace: &Trace) -> Vec<u8> {
    let mut out = Pb::default();
    let mut first = Pb::default();
    first.uint(PKT_SEQ_ID, SEQ_ID).uint(PKT_SEQ_FLAGS, 1); // SEQ_INCREMENTAL_STATE_CLEARED
    out.msg(TRACE_PACKET, first);
    let mut ev = Events { packets: Vec::new() };
    for p in &trace.processes {
        let info = p.info();
        let pu = fnv(&[b"process", &info.pid.to_le_bytes(), &info.start_ns.to_le_bytes()]);
        descriptor(&mut out, pu, None, |td| {
            let mut pd = Pb::default();
            pd.uint(PD_PID, u64::from(info.pid)).str(PD_NAME, &info.name);
            td.msg(TD_PROCESS, pd);
        });
        let track = |what: &str, name: &str| fnv(&[&pu.to_le_bytes(), what.as_bytes(), name.as_bytes()]);
        for (tid, name) in thread_names(p) {
            descriptor(&mut out, track("thread", &tid.to_string()), Some(pu), |td| {
                let mut thd = Pb::default();
                thd.uint(THD_PID, u64::from(info.pid)).uint(THD_TID, tid).str(THD_NAME, &name);
                td.msg(TD_THREAD, thd);
            });
        }
        // Slices per logical track; overlapping ones are spread over lanes below.
        let mut slices: BTreeMap<SliceTrack, Vec<SliceRec>> = BTreeMap::new();
        let mut counters = BTreeMap::new();
        let mut add = |key: SliceTrack, start: u64, dur: u64, name: &str, args: Vec<(String, Value)>| {
            slices.entry(key).or_default().push(SliceRec { start, dur, name: name.to_owned(), args });
        };
        for r in &p.records {
            match &r.kind {
                RecordKind::Span { name, dur } => add(SliceTrack::Thread(r.thread), r.ts, *dur, name, Vec::new()),
                RecordKind::Instant { name } => {
                    ev.event(r.ts, (1, u64::MAX), track("thread", &r.thread.to_string()), INSTANT, Some(name), |_| {})
                }
                RecordKind::Counter { name, value } => {
                    let t = *counters.entry(name.to_string()).or_insert_with(|| track("counter", name));
                    ev.event(r.ts, (1, 0), t, COUNTER, None, |te| {
                        te.double(TE_DOUBLE_COUNTER, *value);
                    });
                }
                RecordKind::Gpu { name, dur } => add(SliceTrack::Named("GPU".into()), r.ts, *dur, name, Vec::new()),
                RecordKind::Frame { cpu, gpu } => {
                    let mut args = vec![("cpu_ms".to_owned(), Value::Float(*cpu as f64 / 1e6))];
                    if let Some(g) = gpu {
                        args.push(("gpu_ms".to_owned(), Value::Float(*g as f64 / 1e6)));
                    }
                    add(SliceTrack::Named("frames".into()), r.ts.saturating_sub(*cpu), *cpu, "frame", args);
                }
                _ => {}
            }
        }
        for s in state_intervals(p) {
            let args = s.stable.iter().chain(&s.volatile).map(|(k, v)| (k.clone(), v.clone())).collect();
            add(
                SliceTrack::Named(format!("state: {}", s.domain)),
                s.start_ns,
                s.end_ns.saturating_sub(s.start_ns),
                &s.label,
                args,
            );
        }
        let threads = thread_names(p);
        for (key, mut list) in slices {
            list.sort_by_key(|s| (s.start, u64::MAX - s.dur));
            let lanes = lanes(&list);
            // Thread tracks were described above; named tracks are described here.
            let (base, display) = match &key {
                SliceTrack::Thread(tid) => (track("thread", &tid.to_string()), threads[tid].clone()),
                SliceTrack::Named(name) => {
                    let uuid = track("named", name);
                    descriptor(&mut out, uuid, Some(pu), |td| {
                        td.str(TD_NAME, name);
                    });
                    (uuid, name.clone())
                }
            };
            let count = lanes.iter().max().map_or(0, |m| m + 1);
            let lane_uuid = |l: usize| if l == 0 { base } else { track("lane", &format!("{key:?}/{l}")) };
            for l in 1..count {
                descriptor(&mut out, lane_uuid(l), Some(pu), |td| {
                    td.str(TD_NAME, &format!("{display} ({})", l + 1));
                });
            }
            for (s, l) in list.iter().zip(lanes) {
                let args: Vec<(&str, Value)> = s.args.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                ev.slice(lane_uuid(l), s.start, s.dur, &s.name, &args);
            }
        }
        for (name, uuid) in &counters {
            descriptor(&mut out, *uuid, Some(pu), |td| {
                td.str(TD_NAME, name).msg(TD_COUNTER, Pb::default());
            });
        }
    }
    ev.packets.sort_by_key(|(ts, o, k, _)| (*ts, *o, *k));
    for (_, _, _, pkt) in ev.packets {
        out.bytes(TRACE_PACKET, &pkt);
    }
    out.0
}

// --- Chrome JSON ------------------------------------------------------------------------------

fn json_value(v: &Value) -> Json {
    match v {
        Value::Int(x) => json!(x),
        Value::Float(x) => json!(x),
        Value::Str(s) => json!(s),
        Value::Time(t) => json!(crate::time::format_utc(t.unix_ns)),
        Value::Bool(b) => json!(b),
    }
}

const GPU_TID: u64 = 1 << 40;
const FRAMES_TID: u64 = GPU_TID + 1;
const STATE_TID: u64 = GPU_TID + 2;

fn chrome(trace: &Trace) -> Json {
    let us = |ns: u64| ns as f64 / 1e3;
    let mut events = Vec::new();
    for p in &trace.processes {
        let info = p.info();
        let pid = info.pid;
        let meta = |name: &str, tid: u64, value: &str| json!({"ph": "M", "name": name, "pid": pid, "tid": tid, "args": {"name": value}});
        events.push(meta("process_name", 0, &info.name));
        for (tid, name) in thread_names(p) {
            events.push(meta("thread_name", tid, &name));
        }
        let (mut gpu, mut frames) = (false, false);
        for r in &p.records {
            let e = match &r.kind {
                RecordKind::Span { name, dur } => {
                    json!({"ph": "X", "name": &**name, "pid": pid, "tid": r.thread, "ts": us(r.ts), "dur": us(*dur)})
                }
                RecordKind::Instant { name } => {
                    json!({"ph": "i", "s": "t", "name": &**name, "pid": pid, "tid": r.thread, "ts": us(r.ts)})
                }
                RecordKind::Counter { name, value } => {
                    json!({"ph": "C", "name": &**name, "pid": pid, "tid": 0, "ts": us(r.ts), "args": {"value": value}})
                }
                RecordKind::Gpu { name, dur } => {
                    gpu = true;
                    json!({"ph": "X", "name": &**name, "pid": pid, "tid": GPU_TID, "ts": us(r.ts), "dur": us(*dur)})
                }
                RecordKind::Frame { cpu, gpu: g } => {
                    frames = true;
                    let mut args = json!({"cpu_ms": *cpu as f64 / 1e6});
                    if let Some(g) = g {
                        args["gpu_ms"] = json!(*g as f64 / 1e6);
                    }
                    json!({"ph": "X", "name": "frame", "pid": pid, "tid": FRAMES_TID, "ts": us(r.ts.saturating_sub(*cpu)), "dur": us(*cpu), "args": args})
                }
                _ => continue,
            };
            events.push(e);
        }
        if gpu {
            events.push(meta("thread_name", GPU_TID, "GPU"));
        }
        if frames {
            events.push(meta("thread_name", FRAMES_TID, "frames"));
        }
        let mut domains: BTreeMap<String, u64> = BTreeMap::new();
        for s in state_intervals(p) {
            let n = domains.len() as u64;
            let tid = *domains.entry(s.domain.clone()).or_insert(STATE_TID + n);
            let args: serde_json::Map<String, Json> =
                s.stable.iter().chain(&s.volatile).map(|(k, v)| (k.clone(), json_value(v))).collect();
            events.push(json!({"ph": "X", "name": s.label, "pid": pid, "tid": tid, "ts": us(s.start_ns), "dur": us(s.end_ns - s.start_ns), "args": args}));
        }
        for (d, tid) in domains {
            events.push(meta("thread_name", tid, &format!("state: {d}")));
        }
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}

/// What an export should contain, computed from the trace (the export tests compare a parse
/// of the file by another program against this): slice counts per track and name, counter
/// sample counts and sums, and the labels of each state track in order.
pub fn expected_summary(trace: &Trace) -> Json {
    let mut slices: BTreeMap<String, u64> = BTreeMap::new();
    let mut counters: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut states: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut instants = 0u64;
    for p in &trace.processes {
        let threads = thread_names(p);
        for r in &p.records {
            match &r.kind {
                RecordKind::Span { name, .. } => {
                    *slices.entry(format!("{}/{name}", threads[&r.thread])).or_default() += 1
                }
                RecordKind::Gpu { name, .. } => *slices.entry(format!("GPU/{name}")).or_default() += 1,
                RecordKind::Frame { .. } => *slices.entry("frames/frame".into()).or_default() += 1,
                RecordKind::Instant { .. } => instants += 1,
                RecordKind::Counter { name, value } => {
                    let c = counters.entry(name.to_string()).or_default();
                    c.0 += 1;
                    c.1 += value;
                }
                _ => {}
            }
        }
        for s in state_intervals(p) {
            states.entry(format!("state: {}", s.domain)).or_default().push(s.label);
        }
    }
    json!({
        "slices": slices,
        "instants": instants,
        "counters": counters.into_iter().map(|(k, (n, sum))| (k, json!({"count": n, "sum": sum}))).collect::<serde_json::Map<_, _>>(),
        "states": states,
    })
}
