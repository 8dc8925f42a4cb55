//! The on-disk encoding shared by segments, rollups and collected trace files.
//!
//! A file is the magic `STRTRC01` followed by chunks. A chunk is `len: u32 LE`, `crc32: u32 LE`
//! and `len` bytes of a deflate-compressed body. A body starts with its kind (open or data), an
//! open body names the process, then come the strings first used in this chunk, then records
//! with varint fields and time stamps as deltas. An open chunk starts a new stream and resets
//! the string table, so a segment (one open chunk, then data chunks) reads on its own, and a
//! collected file is several streams one after the other.
//!
//! A chunk is written whole by one `write` call and fsync is not awaited; a crash can leave a
//! torn last chunk, which the reader detects by its length or checksum and skips with a
//! warning, keeping everything before it.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use crate::model::{Fields, Name, ProcessInfo, ProcessTrace, Record, RecordKind, Rollup, StateChange, TimeNs, Value};

/// Every trace file starts with these bytes.
pub const MAGIC: &[u8; 8] = b"STRTRC01";
const OPEN: u8 = 1;
const DATA: u8 = 2;
/// Refuse chunk bodies that inflate past this (a corrupt length must not exhaust memory).
const MAX_BODY: u64 = 256 << 20;

/// Appends `v` as a LEB128 varint (the encoding protobuf uses too).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn u(&mut self, v: u64) {
        put_varint(&mut self.0, v);
    }
    fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
    fn f(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// A multiplicative hasher for the flusher's small keys (pointers, short names): SipHash's
/// flood resistance buys nothing here and cost a tenth of the flusher's time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHash>>;

/// Encodes the chunks of one stream, remembering which strings the stream already carries.
pub(crate) struct Encoder {
    ids: FastMap<Name, u64>,
    /// Most names are the same `Arc` over and over (the writer shares one per `&'static str`);
    /// looking them up by address skips hashing the text. The map holds a clone, so an address
    /// cannot be freed and reused by another string while it is here.
    by_ptr: FastMap<usize, (Name, u64)>,
    fresh: Vec<Name>,
    /// Kept across chunks: a deflate state is ~300 KB to allocate and clear.
    z: flate2::Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            ids: FastMap::default(),
            by_ptr: FastMap::default(),
            fresh: Vec::new(),
            z: flate2::Compress::new(flate2::Compression::fast(), false),
        }
    }
}

impl Encoder {
    /// A chunk holding `records`; with `open`, the first chunk of a new stream.
    pub fn chunk(&mut self, open: Option<&ProcessInfo>, records: &[Record]) -> Vec<u8> {
        if open.is_some() {
            self.ids.clear();
            self.by_ptr.clear();
        }
        let base = records.first().map_or(0, |r| r.ts);
        let mut recs = Buf::default();
        let mut prev = base;
        for r in records {
            self.record(&mut recs, r, &mut prev);
        }
        let mut body = Buf::default();
        match open {
            Some(p) => {
                body.0.push(OPEN);
                body.u(u64::from(p.pid));
                body.bytes(p.name.as_bytes());
                body.u(p.start_ns);
            }
            None => body.0.push(DATA),
        }
        body.u(base);
        body.u(self.fresh.len() as u64);
        for s in self.fresh.drain(..) {
            body.bytes(s.as_bytes());
        }
        body.u(records.len() as u64);
        body.0.extend_from_slice(&recs.0);

        self.z.reset();
        let mut payload = Vec::with_capacity(body.0.len() / 2 + 64);
        loop {
            let consumed = self.z.total_in() as usize;
            let status = self
                .z
                .compress_vec(&body.0[consumed..], &mut payload, flate2::FlushCompress::Finish)
                .expect("deflate into a Vec cannot fail");
            if status == flate2::Status::StreamEnd {
                break;
            }
            payload.reserve(payload.capacity().max(64));
        }
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn name(&mut self, b: &mut Buf, s: &Name) {
        let ptr = Name::as_ptr(s) as *const u8 as usize;
        if let Some((_, id)) = self.by_ptr.get(&ptr) {
            b.u(*id);
            return;
        }
        let next = self.ids.len() as u64;
        let id = *self.ids.entry(s.clone()).or_insert_with(|| {
            self.fresh.push(s.clone());
            next
        });
        if self.by_ptr.len() < 1 << 16 {
            self.by_ptr.insert(ptr, (s.clone(), id));
        }
        b.u(id);
    }

    fn fields(&mut self, b: &mut Buf, fields: &Fields) {
        b.u(fields.len() as u64);
        for (k, v) in fields {
            self.name(b, k);
            match v {
                Value::Int(x) => {
                    b.0.push(0);
                    b.i(*x);
                }
                Value::Float(x) => {
                    b.0.push(1);
                    b.f(*x);
                }
                Value::Str(x) => {
                    b.0.push(2);
                    self.name(b, &Name::from(x.as_str()));
                }
                Value::Time(t) => {
                    b.0.push(3);
                    b.u(t.unix_ns);
                }
                Value::Bool(x) => {
                    b.0.push(4);
                    b.0.push(u8::from(*x));
                }
            }
        }
    }

    fn record(&mut self, b: &mut Buf, r: &Record, prev: &mut u64) {
        let tag = match &r.kind {
            RecordKind::Span { .. } => 1,
            RecordKind::Instant { .. } => 2,
            RecordKind::Counter { .. } => 3,
            RecordKind::Frame { .. } => 4,
            RecordKind::Gpu { .. } => 5,
            RecordKind::State { .. } => 6,
            RecordKind::Dropped { .. } => 7,
            RecordKind::Throttled { .. } => 8,
            RecordKind::ThreadName { .. } => 9,
            RecordKind::Rollup(_) => 10,
        };
        b.0.push(tag);
        b.i(r.ts.wrapping_sub(*prev) as i64);
        *prev = r.ts;
        b.u(r.thread);
        match &r.kind {
            RecordKind::Span { name, dur } | RecordKind::Gpu { name, dur } => {
                self.name(b, name);
                b.u(*dur);
            }
            RecordKind::Instant { name } | RecordKind::ThreadName { name } => self.name(b, name),
            RecordKind::Counter { name, value } => {
                self.name(b, name);
                b.f(*value);
            }
            RecordKind::Frame { cpu, gpu } => {
                b.u(*cpu);
                b.u(gpu.map_or(0, |g| g + 1));
            }
            RecordKind::State { domain, label, stable, volatile, change } => {
                self.name(b, domain);
                match label {
                    Some(l) => {
                        b.0.push(1);
                        self.name(b, l);
                    }
                    None => b.0.push(0),
                }
                b.0.push(match change {
                    StateChange::Enter => 0,
                    StateChange::Volatile => 1,
                    StateChange::Snapshot => 2,
                });
                self.fields(b, stable);
                self.fields(b, volatile);
            }
            RecordKind::Dropped { count } => b.u(*count),
            RecordKind::Throttled { domain, count } => {
                self.name(b, domain);
                b.u(*count);
            }
            RecordKind::Rollup(r) => {
                b.u(r.second);
                b.u(r.states.len() as u64);
                for (d, l) in &r.states {
                    self.name(b, d);
                    self.name(b, l);
                }
                b.u(r.frames);
                b.u(r.frame_hist.len() as u64);
                for &(bucket, n) in &r.frame_hist {
                    b.u(u64::from(bucket));
                    b.u(n);
                }
                b.u(r.gpu_ns);
                b.u(r.cpu_ns);
            }
        }
    }
}

/// A file header followed by nothing: what every trace file starts with.
pub(crate) fn header() -> Vec<u8> {
    MAGIC.to_vec()
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

type Res<T> = Result<T, String>;

impl Cursor<'_> {
    fn byte(&mut self) -> Res<u8> {
        let v = *self.b.get(self.pos).ok_or("record runs past the end of its chunk")?;
        self.pos += 1;
        Ok(v)
    }
    fn u(&mut self) -> Res<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }
    fn i(&mut self) -> Res<i64> {
        let v = self.u()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    fn f(&mut self) -> Res<f64> {
        let end = self.pos + 8;
        let s = self.b.get(self.pos..end).ok_or("float runs past the end of its chunk")?;
        self.pos = end;
        Ok(f64::from_le_bytes(s.try_into().unwrap()))
    }
    fn bytes(&mut self) -> Res<&[u8]> {
        let n = self.u()? as usize;
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self.b.get(self.pos..end).ok_or("string runs past the end of its chunk")?;
        self.pos = end;
        Ok(s)
    }
}

#[derive(Default)]
struct Decoder {
    strings: Vec<Name>,
}

impl Decoder {
    fn name(&self, c: &mut Cursor) -> Res<Name> {
        let id = c.u()? as usize;
        self.strings.get(id).cloned().ok_or_else(|| format!("string id {id} was never defined"))
    }
    fn fields(&self, c: &mut Cursor) -> Res<Fields> {
        let n = c.u()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let k = self.name(c)?;
            let v = match c.byte()? {
                0 => Value::Int(c.i()?),
                1 => Value::Float(c.f()?),
                2 => Value::Str(self.name(c)?.to_string()),
                3 => Value::Time(TimeNs { unix_ns: c.u()? }),
                4 => Value::Bool(c.byte()? != 0),
                t => return Err(format!("unknown value tag {t}")),
            };
            out.push((k, v));
        }
        Ok(out)
    }

    fn body(&mut self, body: &[u8], streams: &mut Vec<ProcessTrace>) -> Res<()> {
        let mut c = Cursor { b: body, pos: 0 };
        match c.byte()? {
            OPEN => {
                let pid = c.u()? as u32;
                let name = String::from_utf8_lossy(c.bytes()?).into_owned();
                let start_ns = c.u()?;
                self.strings.clear();
                streams.push(ProcessTrace { info: Some(ProcessInfo { pid, name, start_ns }), records: Vec::new() });
            }
            DATA if !streams.is_empty() => {}
            DATA => return Err("data chunk before any stream was opened".into()),
            k => return Err(format!("unknown chunk kind {k}")),
        }
        let mut prev = c.u()?;
        for _ in 0..c.u()? {
            let s = String::from_utf8_lossy(c.bytes()?);
            self.strings.push(Arc::from(s.as_ref()));
        }
        let n = c.u()?;
        let out = &mut streams.last_mut().unwrap().records;
        for _ in 0..n {
            let tag = c.byte()?;
            let ts = prev.wrapping_add(c.i()? as u64);
            prev = ts;
            let thread = c.u()?;
            let kind = match tag {
                1 => RecordKind::Span { name: self.name(&mut c)?, dur: c.u()? },
                2 => RecordKind::Instant { name: self.name(&mut c)? },
                3 => RecordKind::Counter { name: self.name(&mut c)?, value: c.f()? },
                4 => RecordKind::Frame { cpu: c.u()?, gpu: c.u()?.checked_sub(1) },
                5 => RecordKind::Gpu { name: self.name(&mut c)?, dur: c.u()? },
                6 => {
                    let domain = self.name(&mut c)?;
                    let label = if c.byte()? != 0 { Some(self.name(&mut c)?) } else { None };
                    let change = match c.byte()? {
                        0 => StateChange::Enter,
                        1 => StateChange::Volatile,
                        2 => StateChange::Snapshot,
                        k => return Err(format!("unknown state change {k}")),
                    };
                    let stable = self.fields(&mut c)?;
                    let volatile = self.fields(&mut c)?;
                    RecordKind::State { domain, label, stable, volatile, change }
                }
                7 => RecordKind::Dropped { count: c.u()? },
                8 => RecordKind::Throttled { domain: self.name(&mut c)?, count: c.u()? },
                9 => RecordKind::ThreadName { name: self.name(&mut c)? },
                10 => {
                    let second = c.u()?;
                    let mut states = Vec::new();
                    for _ in 0..c.u()? {
                        states.push((self.name(&mut c)?, self.name(&mut c)?));
                    }
                    let frames = c.u()?;
                    let mut frame_hist = Vec::new();
                    for _ in 0..c.u()? {
                        frame_hist.push((c.u()? as u32, c.u()?));
                    }
                    let (gpu_ns, cpu_ns) = (c.u()?, c.u()?);
                    RecordKind::Rollup(Box::new(Rollup { second, states, frames, frame_hist, gpu_ns, cpu_ns }))
                }
                t => return Err(format!("unknown record tag {t}")),
            };
            out.push(Record { ts, thread, kind });
        }
        if c.pos != body.len() {
            return Err(format!("{} stray bytes after the records", body.len() - c.pos));
        }
        Ok(())
    }
}

/// Decodes a whole trace file. A file that does not start with the magic is an `Err`; a torn or
/// corrupt chunk ends the reading with a warning, keeping the chunks before it.
pub(crate) fn decode(bytes: &[u8], warn: &mut dyn FnMut(String)) -> Result<Vec<ProcessTrace>, String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a Strata trace file (bad magic)".into());
    }
    let mut streams = Vec::new();
    let mut dec = Decoder::default();
    let mut pos = MAGIC.len();
    let mut chunk = 0;
    while pos < bytes.len() {
        let problem = (|| -> Res<usize> {
            let head = bytes.get(pos..pos + 8).ok_or("torn chunk header")?;
            let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
            let payload = bytes
                .get(pos + 8..pos + 8 + len)
                .ok_or_else(|| format!("torn chunk ({len} bytes announced, {} present)", bytes.len() - pos - 8))?;
            if crc32fast::hash(payload) != crc {
                return Err("checksum mismatch".into());
            }
            let mut body = Vec::new();
            flate2::read::DeflateDecoder::new(payload)
                .take(MAX_BODY)
                .read_to_end(&mut body)
                .map_err(|e| format!("cannot inflate: {e}"))?;
            dec.body(&body, &mut streams)?;
            Ok(pos + 8 + len)
        })();
        match problem {
            Ok(next) => pos = next,
            Err(e) => {
                warn(format!("chunk {chunk} at byte {pos}: {e}; kept the {chunk} chunks before it"));
                break;
            }
        }
        chunk += 1;
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        let n = |s: &str| Name::from(s);
        vec![
            Record { ts: 1_000, thread: 1, kind: RecordKind::Span { name: n("eval"), dur: 50 } },
            Record { ts: 990, thread: 2, kind: RecordKind::Counter { name: n("mem"), value: -1.5 } },
            Record { ts: 2_000, thread: 0, kind: RecordKind::Frame { cpu: 7, gpu: None } },
            Record { ts: 2_001, thread: 0, kind: RecordKind::Frame { cpu: 7, gpu: Some(0) } },
            Record {
                ts: 3_000,
                thread: 0,
                kind: RecordKind::State {
                    domain: n("scene"),
                    label: Some(n("menu")),
                    stable: vec![(n("level"), Value::Int(-3)), (n("name"), Value::Str("x".into()))],
                    volatile: vec![(n("t"), Value::Time(TimeNs { unix_ns: 5 })), (n("ok"), Value::Bool(true))],
                    change: StateChange::Enter,
                },
            },
            Record {
                ts: 3_001,
                thread: 0,
                kind: RecordKind::Rollup(Box::new(Rollup {
                    second: 3,
                    states: vec![(n("scene"), n("menu"))],
                    frames: 2,
                    frame_hist: vec![(4, 2)],
                    gpu_ns: 0,
                    cpu_ns: 14,
                })),
            },
        ]
    }

    #[test]
    fn streams_round_trip_and_strings_are_sent_once_per_stream() {
        let p = ProcessInfo { pid: 7, name: "demo".into(), start_ns: 11 };
        let mut enc = Encoder::default();
        let mut file = header();
        let recs = sample();
        file.extend(enc.chunk(Some(&p), &recs[..2]));
        file.extend(enc.chunk(None, &recs[2..]));
        let again = enc.chunk(None, &recs[..1]);
        file.extend(&again);
        file.extend(enc.chunk(Some(&p), &recs));
        let streams = decode(&file, &mut |w| panic!("{w}")).unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].info.as_ref(), Some(&p));
        let mut expect = recs.clone();
        expect.push(recs[0].clone());
        assert_eq!(streams[0].records, expect);
        assert_eq!(streams[1].records, recs);
    }

    #[test]
    fn torn_and_corrupt_chunks_keep_what_came_before() {
        let p = ProcessInfo { pid: 7, name: "demo".into(), start_ns: 11 };
        let mut enc = Encoder::default();
        let mut file = header();
        file.extend(enc.chunk(Some(&p), &sample()));
        let good = file.len();
        file.extend(enc.chunk(None, &sample()));
        for cut in [good + 3, good + 9, file.len() - 1] {
            let mut warnings = Vec::new();
            let s = decode(&file[..cut], &mut |w| warnings.push(w)).unwrap();
            assert_eq!(s[0].records.len(), sample().len(), "cut at {cut}");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
        }
        let mut flipped = file.clone();
        flipped[good + 12] ^= 0x40;
        let mut warnings = Vec::new();
        decode(&flipped, &mut |w| warnings.push(w)).unwrap();
        assert!(warnings[0].contains("checksum"), "{warnings:?}");
        assert!(decode(b"garbage!", &mut |_| {}).unwrap_err().contains("magic"));
    }
}
