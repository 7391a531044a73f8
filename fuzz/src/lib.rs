//! Shared pieces of the fuzz targets: an in-memory object source and part writer, and the
//! invariants every indexer and every manifest must satisfy whatever the input.

use std::collections::HashMap;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::sync::Mutex;

use export_fetcher::config::{Config, Limits};
use export_fetcher::index::{Indexed, Options};
use export_fetcher::manifest::{Format, Manifest, Status};
use export_fetcher::store::{ObjectSource, PartUpload, PartWriter, Pending};
use sha2::{Digest, Sha256};

/// An object held in memory, read by ranges like S3.
pub struct MemSource(pub Vec<u8>);

impl ObjectSource for MemSource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        let len = self.0.len() as u64;
        let (s, e) = (start.min(len) as usize, end.min(len) as usize);
        Ok(Box::new(Cursor::new(&self.0[s..e.max(s)])))
    }
}

/// Parts written to memory: only finished uploads become visible, like S3 multipart uploads.
#[derive(Default)]
pub struct MemWriter {
    pub finished: Mutex<HashMap<String, Vec<u8>>>,
}

struct MemUpload<'a> {
    key: String,
    buf: Vec<u8>,
    writer: &'a MemWriter,
}

impl Write for MemUpload<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartUpload for MemUpload<'_> {
    fn finish(self: Box<Self>) -> io::Result<Pending> {
        let mut done = self.writer.finished.lock().unwrap();
        assert!(
            !done.contains_key(&self.key),
            "two parts of one object were written to the same key {:?}",
            self.key
        );
        done.insert(self.key, self.buf);
        Ok(Pending::done())
    }
    fn abort(self: Box<Self>) {}
}

impl PartWriter for MemWriter {
    fn bucket(&self) -> &str {
        "fuzz-out"
    }
    fn create(&self, key: &str) -> io::Result<Box<dyn PartUpload + '_>> {
        Ok(Box::new(MemUpload {
            key: key.to_string(),
            buf: Vec::new(),
            writer: self,
        }))
    }
    fn put(&self, key: &str, body: &[u8]) -> io::Result<()> {
        self.finished
            .lock()
            .unwrap()
            .insert(key.to_string(), body.to_vec());
        Ok(())
    }
}

/// Small limits, so that every limit is reachable by the fuzzer and executions stay fast.
pub fn fuzz_config() -> Config {
    Config {
        limits: Limits {
            max_object_bytes: 1 << 20,
            max_expanded_bytes: 4 << 20,
            max_expansion_ratio: 250,
            max_archive_entries: 64,
            max_record_bytes: 4096,
        },
        offset_interval: 3,
        ..Config::default()
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// What one indexer run says, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub bad: u64,
    pub listed: Vec<(Option<u64>, Option<u64>, String)>,
    pub columns: Option<Vec<String>>,
    pub delimiter: Option<u8>,
    pub offsets: Vec<[u64; 2]>,
    pub fatal: Option<String>,
}

/// Runs `index::run` over `data` read through a `BufReader` of `capacity` bytes.
pub fn index_with(
    format: Format,
    delimiter: Option<u8>,
    data: &[u8],
    capacity: usize,
    opts: &Options,
) -> Summary {
    let mut r = BufReader::with_capacity(capacity.max(1), data);
    let out = export_fetcher::index::run(format, delimiter, &mut r, opts);
    let s = summarise(out);
    check_index_invariants(&s, data.len() as u64);
    s
}

fn summarise(out: Indexed) -> Summary {
    Summary {
        records: out.records,
        bad: out.errors.total,
        listed: out
            .errors
            .listed
            .iter()
            .map(|e| (e.record, e.line, e.message.clone()))
            .collect(),
        columns: out.columns,
        delimiter: out.delimiter,
        offsets: out.offsets,
        fatal: out.fatal.map(|e| e.to_string()),
    }
}

/// Offsets start at `[0, 0]`, grow strictly by record and never by byte backwards, and never
/// point past the data; listed errors never exceed the counted ones.
pub fn check_index_invariants(s: &Summary, len: u64) {
    assert_eq!(s.offsets.first(), Some(&[0, 0]), "offsets start at [0, 0]");
    for w in s.offsets.windows(2) {
        assert!(
            w[0][0] < w[1][0],
            "offset records increase: {:?}",
            s.offsets
        );
        assert!(
            w[0][1] <= w[1][1],
            "offset bytes never go back: {:?}",
            s.offsets
        );
    }
    let last = s.offsets.last().unwrap();
    assert!(last[1] <= len, "offset {last:?} past the end ({len} bytes)");
    assert!(
        last[0] <= s.records + s.bad,
        "offset {last:?} names a record that was not counted ({} good, {} bad)",
        s.records,
        s.bad
    );
    assert!(s.listed.len() as u64 <= s.bad.max(1) + 1);
}

/// Indexes `data` with two different read chunkings: the result must not depend on how the
/// stream happens to be split into reads.
pub fn index_twice(
    format: Format,
    delimiter: Option<u8>,
    data: &[u8],
    small: usize,
    opts: &Options,
) -> Summary {
    let a = index_with(format, delimiter, data, 64 * 1024, opts);
    let b = index_with(format, delimiter, data, small, opts);
    if a.fatal.is_some() && b.fatal.is_some() {
        // Where a streaming decompressor notices corruption inside a block depends on how its
        // input arrives; that the part failed, and its schema, do not.
        assert_eq!(a.columns, b.columns, "columns depend on read boundaries");
    } else {
        assert_eq!(
            a, b,
            "the result depends on read boundaries (capacity {small})"
        );
    }
    a
}

/// Checks a manifest against what the pipeline promises, whatever the input:
/// totals are the sums of the parts, `complete` carries no error, every written part holds
/// exactly the hashed bytes, and a failed or cut part is never written.
pub fn check_manifest(m: &Manifest, written: &HashMap<String, Vec<u8>>, cfg: &Config) {
    assert_eq!(m.totals.parts, m.parts.len() as u64, "totals.parts");
    let sum = |f: fn(&export_fetcher::manifest::Part) -> u64| m.parts.iter().map(f).sum::<u64>();
    assert_eq!(m.totals.records, sum(|p| p.records), "totals.records");
    assert_eq!(m.totals.bytes, sum(|p| p.bytes), "totals.bytes");
    assert_eq!(
        m.totals.compressed_bytes,
        sum(|p| p.compressed_bytes),
        "totals.compressed_bytes"
    );
    assert!(
        m.totals.bytes <= cfg.limits.max_expanded_bytes,
        "{} bytes indexed past MAX_EXPANDED_BYTES",
        m.totals.bytes
    );
    match m.status {
        Status::Complete => {
            assert!(m.errors.is_empty(), "complete with errors: {:?}", m.errors);
            assert!(m.parts.iter().all(|p| p.errors.is_empty()));
        }
        Status::Partial => {
            assert!(m.parts.iter().any(|p| !p.errors.is_empty()));
        }
        Status::Failed => assert!(!m.errors.is_empty(), "failed without a reason"),
        Status::Skipped => panic!("index_object never skips"),
    }
    let mut outputs = 0;
    for p in &m.parts {
        assert_eq!(
            p.offsets.first(),
            Some(&[0, 0]),
            "part offsets start at [0, 0]"
        );
        match &p.output {
            Some(o) => {
                outputs += 1;
                let body = written
                    .get(&o.key)
                    .unwrap_or_else(|| panic!("part {:?} names an output never finished", p.name));
                assert_eq!(body.len() as u64, p.bytes, "written size of {:?}", p.name);
                assert_eq!(sha256_hex(body), p.sha256, "written bytes of {:?}", p.name);
                let unique = m.parts.iter().filter(|q| q.name == p.name).count() == 1;
                let fatal = p.errors.iter().any(|e| {
                    e.record.is_none()
                        && m.errors
                            .iter()
                            .any(|o| o.part.as_deref() == Some(&p.name) && o.message == e.message)
                });
                assert!(
                    !(unique && fatal),
                    "a part stopped by a fatal error was written: {:?}",
                    p.name
                );
            }
            None => {
                if m.status != Status::Failed {
                    panic!(
                        "part {:?} of a {:?} manifest was not written",
                        p.name, m.status
                    );
                }
            }
        }
    }
    assert_eq!(
        outputs,
        written.len(),
        "objects were written that no part names"
    );
}

/// Whether `data` read through `r` ends cleanly, and what it holds.
pub fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

/// Picks a read-buffer capacity from a byte.
pub fn capacity_from(b: u8) -> usize {
    1 + (b as usize % 61)
}
