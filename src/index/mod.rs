//! Content indexers, one module per format. Pure over bytes: they read a `BufRead` of one
//! decompressed part and count records, collect columns and offsets, and list bad records.

pub mod avro;
pub mod csv;
pub mod json;
pub mod jsonl;
pub mod lines;

use std::io::{self, BufRead};

use thiserror::Error;

use crate::decode::Budget;
use crate::detect::AVRO_MAGIC;
use crate::manifest::{Format, Kind, MAX_LISTED_ERRORS, RecordError};

/// How many leading bytes of a part are looked at to decide its format.
pub const SNIFF_LEN: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Settings every indexer needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `OFFSET_INTERVAL`.
    pub offset_interval: u64,
    /// `MAX_RECORD_BYTES`.
    pub max_record_bytes: u64,
    /// The expansion budget of the object the part belongs to: what an indexer decompresses
    /// itself (Avro blocks) is charged to it.
    pub budget: Budget,
}

/// A problem with the content's own structure (as opposed to the stream it arrives on) that
/// stops the indexer: a broken Avro header, a wrong sync marker, a record that cannot be decoded.
/// Travels inside `io::Error` so the pipeline can tell it from decoder and source errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct FormatError(pub String);

impl FormatError {
    pub fn io(message: impl Into<String>) -> io::Error {
        io::Error::other(FormatError(message.into()))
    }
}

/// What indexing one part found.
#[derive(Debug, Default)]
pub struct Indexed {
    /// Good records.
    pub records: u64,
    pub columns: Option<Vec<String>>,
    pub delimiter: Option<u8>,
    pub offsets: Vec<[u64; 2]>,
    pub errors: ErrorList,
    /// Set when the part could not be read to its end: the stream failed or the content's
    /// structure is broken. Records counted before it are kept.
    pub fatal: Option<io::Error>,
}

/// Bad records, listed up to [`MAX_LISTED_ERRORS`] and counted beyond.
#[derive(Debug, Default)]
pub struct ErrorList {
    pub listed: Vec<RecordError>,
    pub total: u64,
}

impl ErrorList {
    pub fn push(&mut self, record: Option<u64>, line: Option<u64>, message: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(RecordError {
                record,
                line,
                message,
            });
        }
    }

    /// The listed errors, with a last entry saying how many more were not listed.
    pub fn into_listed(mut self) -> Vec<RecordError> {
        let unlisted = self.total - self.listed.len() as u64;
        if unlisted > 0 {
            self.listed.push(RecordError {
                record: None,
                line: None,
                message: format!("{unlisted} more bad records not listed"),
            });
        }
        self.listed
    }
}

/// `[record, byte]` pairs every `interval` records, starting with `[0, 0]`.
#[derive(Debug)]
pub struct Offsets {
    interval: u64,
    next: u64,
    list: Vec<[u64; 2]>,
}

impl Offsets {
    pub fn new(interval: u64) -> Self {
        let interval = interval.max(1);
        Offsets {
            interval,
            next: interval,
            list: vec![[0, 0]],
        }
    }

    /// Notes that record `record` starts at `byte`.
    #[inline]
    pub fn record_at(&mut self, record: u64, byte: u64) {
        if record >= self.next {
            self.list.push([record, byte]);
            self.next = (record / self.interval + 1) * self.interval;
        }
    }

    pub fn into_vec(self) -> Vec<[u64; 2]> {
        self.list
    }
}

/// Decides the format of a part from its first bytes (`whole` when `sample` is the entire part)
/// and the Braze kind of the object. For CSV also returns the delimiter.
pub fn sniff(sample: &[u8], whole: bool, kind: Option<Kind>) -> (Format, Option<u8>) {
    if sample.starts_with(AVRO_MAGIC) {
        return (Format::Avro, None);
    }
    let text = sample.strip_prefix(BOM).unwrap_or(sample);
    if text.is_empty() {
        let format = match kind {
            Some(Kind::ApiUserExport) => Format::Jsonl,
            Some(Kind::DashboardCsvExport) => Format::Csv,
            _ => Format::Lines,
        };
        return (format, (format == Format::Csv).then_some(b','));
    }
    let first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        let format = match kind {
            Some(Kind::MessageArchive) => Format::Json,
            Some(Kind::ApiUserExport) => Format::Jsonl,
            _ => {
                let line_end = memchr::memchr(b'\n', text);
                let first_line = &text[..line_end.unwrap_or(text.len())];
                let parses =
                    serde_json::from_slice::<serde::de::IgnoredAny>(first_line.trim_ascii())
                        .is_ok();
                if parses || (line_end.is_none() && !whole) {
                    Format::Jsonl
                } else {
                    Format::Json
                }
            }
        };
        return (format, None);
    }
    if let Some(d) = csv::sniff_delimiter(text, whole) {
        return (Format::Csv, Some(d));
    }
    if kind == Some(Kind::DashboardCsvExport) {
        return (Format::Csv, Some(b','));
    }
    if looks_like_text(text, whole) {
        (Format::Lines, None)
    } else {
        (Format::Binary, None)
    }
}

fn looks_like_text(sample: &[u8], whole: bool) -> bool {
    if memchr::memchr(0, sample).is_some() {
        return false;
    }
    match std::str::from_utf8(sample) {
        Ok(_) => true,
        // A sample may end inside a multi-byte character.
        Err(e) => !whole && e.error_len().is_none() && e.valid_up_to() + 4 > sample.len(),
    }
}

/// Runs the indexer of `format` over a part.
pub fn run<R: BufRead>(
    format: Format,
    delimiter: Option<u8>,
    r: &mut R,
    opts: &Options,
) -> Indexed {
    match format {
        Format::Jsonl => jsonl::index(r, opts),
        Format::Csv => csv::index(r, delimiter.unwrap_or(b','), opts),
        Format::Avro => avro::index(r, opts),
        Format::Json => json::index(r, opts),
        Format::Lines => lines::index(r, opts),
        Format::Binary => binary(r),
    }
}

/// Opaque bytes: no records; the stream is still read to its end (hashed, written).
fn binary<R: BufRead>(r: &mut R) -> Indexed {
    let mut out = Indexed {
        offsets: vec![[0, 0]],
        ..Indexed::default()
    };
    if let Err(e) = drain(r) {
        out.fatal = Some(e);
    }
    out
}

/// Reads a stream to its end, discarding the bytes.
pub fn drain<R: BufRead>(r: &mut R) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.fill_buf() {
            Ok(buf) => buf.len(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(total);
        }
        r.consume(n);
        total += n as u64;
    }
}

/// Splits a `BufRead` into lines with `memchr`, without copying lines that fit in the buffer.
/// Lines longer than `max_line` are reported as oversized instead of being held in memory.
pub(crate) struct LineFramer {
    carry: Vec<u8>,
    carry_len: usize,
    carry_start: u64,
    pending: bool,
    oversize: bool,
    pos: u64,
    max_line: usize,
    keep_content: bool,
}

/// One line: its bytes (without `\n`; empty when oversized or when content is not kept), its
/// byte offset, and whether it was too long to keep.
pub(crate) struct Line<'a> {
    pub bytes: &'a [u8],
    pub start: u64,
    pub oversize: bool,
}

impl LineFramer {
    pub fn new(max_line: u64, keep_content: bool) -> Self {
        LineFramer {
            carry: Vec::new(),
            carry_len: 0,
            carry_start: 0,
            pending: false,
            oversize: false,
            pos: 0,
            max_line: usize::try_from(max_line).unwrap_or(usize::MAX),
            keep_content,
        }
    }

    /// Calls `f` for every line until the end of `r`; returns the stream's error if it fails.
    pub fn run<R: BufRead>(&mut self, r: &mut R, mut f: impl FnMut(Line<'_>)) -> io::Result<()> {
        loop {
            let buf = match r.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if self.pending {
                    self.emit_carry(&mut f);
                }
                return Ok(());
            }
            let mut start = 0usize;
            for nl in memchr::memchr_iter(b'\n', buf) {
                let piece = &buf[start..nl];
                if self.pending {
                    self.append(piece);
                    self.emit_carry(&mut f);
                } else {
                    let oversize = piece.len() > self.max_line;
                    f(Line {
                        bytes: if oversize || !self.keep_content {
                            &[]
                        } else {
                            piece
                        },
                        start: self.pos + start as u64,
                        oversize,
                    });
                }
                start = nl + 1;
            }
            if start < buf.len() {
                if !self.pending {
                    self.pending = true;
                    self.carry_start = self.pos + start as u64;
                }
                let rest = &buf[start..];
                self.append(rest);
            }
            let len = buf.len();
            r.consume(len);
            self.pos += len as u64;
        }
    }

    fn emit_carry(&mut self, f: &mut impl FnMut(Line<'_>)) {
        f(Line {
            bytes: &self.carry,
            start: self.carry_start,
            oversize: self.oversize,
        });
        self.carry.clear();
        self.carry_len = 0;
        self.pending = false;
        self.oversize = false;
    }

    fn append(&mut self, piece: &[u8]) {
        self.carry_len += piece.len();
        if self.carry_len > self.max_line {
            if !self.oversize {
                self.oversize = true;
                self.carry = Vec::new();
            }
        } else if self.keep_content {
            self.carry.extend_from_slice(piece);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (sample, sample is the whole part, kind, expected format, expected delimiter)
    type SniffCase = (&'static [u8], bool, Option<Kind>, Format, Option<u8>);

    #[test]
    fn sniff_case_table() {
        let cases: &[SniffCase] = &[
            (b"Obj\x01rest", false, None, Format::Avro, None),
            (b"{\"a\":1}\n{\"a\":2}\n", true, None, Format::Jsonl, None),
            (b"{\n  \"a\": 1\n}\n", true, None, Format::Json, None),
            (
                b"{\"to\":\"x\"}",
                true,
                Some(Kind::MessageArchive),
                Format::Json,
                None,
            ),
            (b"[1,2]", true, None, Format::Jsonl, None),
            (b"a,b,c\n1,2,3\n", true, None, Format::Csv, Some(b',')),
            (
                b"\xEF\xBB\xBFa;b\n1;2\n",
                true,
                None,
                Format::Csv,
                Some(b';'),
            ),
            (b"a|b\n1|2\n", true, None, Format::Csv, Some(b'|')),
            (b"a\tb\n1\t2\n", true, None, Format::Csv, Some(b'\t')),
            (b"a:b\n1:2\n", true, None, Format::Csv, Some(b':')),
            (
                b"name,time\nx,2024-01-01 10:00:00\n",
                true,
                None,
                Format::Csv,
                Some(b','),
            ),
            (
                b"email\na@b.c\n",
                true,
                Some(Kind::DashboardCsvExport),
                Format::Csv,
                Some(b','),
            ),
            (
                b"hello world\nsecond line\n",
                true,
                None,
                Format::Lines,
                None,
            ),
            (b"\x00\x01\x02binary", true, None, Format::Binary, None),
            (b"\xff\xfe\xfd", true, None, Format::Binary, None),
            (b"", true, None, Format::Lines, None),
            (b"", true, Some(Kind::ApiUserExport), Format::Jsonl, None),
        ];
        for (sample, whole, kind, format, delim) in cases {
            assert_eq!(
                sniff(sample, *whole, *kind),
                (*format, *delim),
                "sniff({:?}, whole={whole}, {kind:?})",
                String::from_utf8_lossy(sample)
            );
        }
    }

    #[test]
    fn offsets_every_interval() {
        let mut o = Offsets::new(2);
        for (r, b) in [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)] {
            o.record_at(r, b);
        }
        assert_eq!(o.into_vec(), vec![[0, 0], [2, 20], [4, 40]]);
        let mut o = Offsets::new(10);
        o.record_at(0, 0);
        o.record_at(25, 7);
        o.record_at(27, 9);
        o.record_at(30, 11);
        assert_eq!(o.into_vec(), vec![[0, 0], [25, 7], [30, 11]]);
    }

    #[test]
    fn line_framer_handles_lines_across_buffers_and_oversize() {
        let data = b"short\nthis line is long\n\nlast".to_vec();
        let mut r = io::BufReader::with_capacity(4, &data[..]);
        let mut seen = Vec::new();
        LineFramer::new(10, true)
            .run(&mut r, |l| {
                seen.push((
                    String::from_utf8_lossy(l.bytes).to_string(),
                    l.start,
                    l.oversize,
                ))
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![
                ("short".to_string(), 0, false),
                ("".to_string(), 6, true),
                ("".to_string(), 24, false),
                ("last".to_string(), 25, false),
            ]
        );
    }
}
