//! Content indexers, one module per format. Pure over bytes: they read a `BufRead` of one
//! decompressed part and count records, collect columns and offsets, and list bad records.

pub mod avro;
pub mod csv;
pub mod json;
pub mod jsonl;
mod jsonscan;
pub mod lines;

use std::io::{self, BufRead};

use thiserror::Error;

use crate::decode::Budget;
use crate::detect::{AVRO_MAGIC, binary_magic};
use crate::manifest::{Format, Kind, MAX_LISTED_ERRORS, RecordError};

/// How many leading bytes of a part are looked at to decide its format.
pub const SNIFF_LEN: usize = 64 * 1024;

/// At most this many names are listed in a part's `columns` (CSV header fields, JSON lines
/// top-level keys); the part gets an error saying the list is cut.
pub const MAX_COLUMNS: usize = 1000;
/// A longer column name is cut (at a character boundary) in `columns`, with an error.
pub const MAX_COLUMN_NAME_BYTES: usize = 1024;
/// The names listed in one part's `columns` total at most this many bytes.
pub const MAX_COLUMNS_BYTES: usize = 64 * 1024;
/// A listed error message is cut to this many bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;

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
    /// Avro: lowercase hex SHA-256 of the writer schema's Parsing Canonical Form.
    pub schema_fingerprint: Option<String>,
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
    /// Counts a bad record and lists it while fewer than [`MAX_LISTED_ERRORS`] are; its message
    /// is cut to [`MAX_ERROR_MESSAGE_BYTES`].
    pub fn push(&mut self, record: Option<u64>, line: Option<u64>, mut message: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ERRORS {
            if message.len() > MAX_ERROR_MESSAGE_BYTES {
                let keep = cut(&message, MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8()).len();
                message.truncate(keep);
                message.push('…');
            }
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

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A part's `columns`, bounded: at most [`MAX_COLUMNS`] names of at most
/// [`MAX_COLUMN_NAME_BYTES`] each, [`MAX_COLUMNS_BYTES`] in all.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    names: Vec<String>,
    bytes: usize,
    /// A name did not fit: the list stops before it.
    full: bool,
    /// A listed name was cut.
    cut: bool,
}

impl Columns {
    /// Lists `name` (cut to [`MAX_COLUMN_NAME_BYTES`]) unless the list is full; returns whether
    /// it was listed. Once a name does not fit, no later one is listed, so that listed names keep
    /// their positions.
    pub fn push(&mut self, name: &str) -> bool {
        let kept = cut(name, MAX_COLUMN_NAME_BYTES);
        if self.full
            || self.names.len() >= MAX_COLUMNS
            || self.bytes + kept.len() > MAX_COLUMNS_BYTES
        {
            self.full = true;
            return false;
        }
        self.cut |= kept.len() < name.len();
        self.bytes += kept.len();
        self.names.push(kept.to_string());
        true
    }

    /// Marks the list as cut short: some names were not offered.
    pub fn set_full(&mut self) {
        self.full = true;
    }

    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The names; an error for each way the list falls short of the content (`what` names the
    /// names, e.g. "header fields").
    pub fn finish(self, errors: &mut ErrorList, line: Option<u64>, what: &str) -> Vec<String> {
        if self.full {
            errors.push(
                None,
                line,
                format!(
                    "more {what} than `columns` lists: it holds the first {} (at most \
                     {MAX_COLUMNS} names, {MAX_COLUMNS_BYTES} bytes in all)",
                    self.names.len()
                ),
            );
        }
        if self.cut {
            errors.push(
                None,
                line,
                format!("{what} longer than {MAX_COLUMN_NAME_BYTES} bytes are cut in `columns`"),
            );
        }
        self.names
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
///
/// In order: Avro magic → `avro`; another binary magic (a nested archive, an image, …) →
/// `binary`; API user exports → `jsonl` and dashboard exports → `csv` whatever the bytes, so that
/// broken content shows as bad records; NUL-heavy bytes → `binary`; message archives starting
/// with `{` → `json`; JSON lines when at least half of the first lines are JSON values, `json`
/// when it starts with `{` or `[` otherwise; CSV when a delimiter splits most of the first rows
/// like the header; other UTF-8 text → `lines`; anything else → `binary`.
pub fn sniff(sample: &[u8], whole: bool, kind: Option<Kind>) -> (Format, Option<u8>) {
    if sample.starts_with(AVRO_MAGIC) {
        return (Format::Avro, None);
    }
    if binary_magic(sample).is_some() {
        return (Format::Binary, None);
    }
    let text = sample.strip_prefix(BOM).unwrap_or(sample);
    match kind {
        Some(Kind::ApiUserExport) => return (Format::Jsonl, None),
        Some(Kind::DashboardCsvExport) => {
            let d = csv::sniff_delimiter(text, whole).unwrap_or(b',');
            return (Format::Csv, Some(d));
        }
        _ => {}
    }
    if text.is_empty() {
        return (Format::Lines, None);
    }
    if nul_heavy(text) {
        return (Format::Binary, None);
    }
    let first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
    let starts_json = matches!(first, Some(b'{') | Some(b'['));
    if starts_json && kind == Some(Kind::MessageArchive) {
        return (Format::Json, None);
    }
    if mostly_json_lines(text, whole) {
        return (Format::Jsonl, None);
    }
    if starts_json {
        return (Format::Json, None);
    }
    if let Some(d) = csv::sniff_delimiter(text, whole) {
        return (Format::Csv, Some(d));
    }
    if looks_like_text(text, whole) {
        (Format::Lines, None)
    } else {
        (Format::Binary, None)
    }
}

/// Lines looked at to decide JSON lines.
const SNIFF_LINES: usize = 20;

/// More than one byte in 1024 is NUL: UTF-16, images, zero-filled blocks. Text formats hold
/// no NUL.
fn nul_heavy(sample: &[u8]) -> bool {
    let nuls = memchr::memchr_iter(0, sample).count();
    nuls > sample.len() / 1024
}

/// At least half of the first non-blank lines (up to [`SNIFF_LINES`]) are a JSON object or
/// array, so that one corrupt line, the first one included, does not decide. A cut sample's last
/// line is not looked at; a sample with no line end that starts a JSON value is one long line.
fn mostly_json_lines(sample: &[u8], whole: bool) -> bool {
    let mut lines = 0usize;
    let mut json = 0usize;
    let mut start = 0usize;
    while lines < SNIFF_LINES && start < sample.len() {
        let end = memchr::memchr(b'\n', &sample[start..]).map(|i| start + i);
        if end.is_none() && !whole {
            break;
        }
        let stop = end.unwrap_or(sample.len());
        let line = sample[start..stop].trim_ascii();
        start = stop + 1;
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if matches!(line[0], b'{' | b'[')
            && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
        {
            json += 1;
        }
    }
    if lines == 0 {
        let first = sample.iter().copied().find(|b| !b.is_ascii_whitespace());
        return !whole && matches!(first, Some(b'{') | Some(b'['));
    }
    json > 0 && json * 2 >= lines
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
            // Known binary magic numbers are never CSV or text, whatever the kind: a nested gzip
            // in an API export zip is `binary`.
            (b"\x1f\x8b\x08\0,a,b\n", true, None, Format::Binary, None),
            (
                b"\x1f\x8b\x08\0{\"a\":1}\n",
                true,
                Some(Kind::ApiUserExport),
                Format::Binary,
                None,
            ),
            (
                b"PK\x03\x04a,b\n1,2\n",
                true,
                Some(Kind::DashboardCsvExport),
                Format::Binary,
                None,
            ),
            (
                b"\x50\x2a\x4d\x18a,b\n1,2\n",
                true,
                None,
                Format::Binary,
                None,
            ),
            (
                b"\x89PNG\r\n\x1a\n,,\n,,\n",
                true,
                None,
                Format::Binary,
                None,
            ),
            (
                b"\xFF\xD8\xFF\xE0,a\n,b\n",
                true,
                None,
                Format::Binary,
                None,
            ),
            (b"%PDF-1.4\na,b\n1,2\n", true, None, Format::Binary, None),
            // NUL-heavy bytes that a delimiter would split evenly (UTF-16 CSV).
            (
                b"a\x00,\x00b\x00\n\x001\x00,\x002\x00\n",
                true,
                None,
                Format::Binary,
                None,
            ),
            // JSON lines whose first line is corrupt: the majority decides.
            (
                b"{\"a\":1,\"b\n{\"a\":2}\n{\"a\":3}\n",
                true,
                None,
                Format::Jsonl,
                None,
            ),
            (
                b"garbage, here\n{\"a\":2}\n",
                true,
                None,
                Format::Jsonl,
                None,
            ),
            // API user exports are JSON lines whatever the first bytes.
            (
                b"not json at all\n",
                true,
                Some(Kind::ApiUserExport),
                Format::Jsonl,
                None,
            ),
            (b"\xEF\xBB\xBF{\"a\":1}\n", true, None, Format::Jsonl, None),
            // A ragged row or a stray line among the first rows: still CSV.
            (
                b"a,b,c\n1,2,3\n1,2\n4,5,6\n",
                true,
                None,
                Format::Csv,
                Some(b','),
            ),
            (b"a,b\n1,2\n \n3,4\n", true, None, Format::Csv, Some(b',')),
            // CR-only line ends.
            (b"a;b\r1;2\r3;4\r", true, None, Format::Csv, Some(b';')),
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
    fn error_messages_are_cut_at_a_character_boundary() {
        let mut errors = ErrorList::default();
        errors.push(Some(0), Some(1), "é".repeat(10_000));
        errors.push(Some(1), Some(2), "short".to_string());
        let listed = errors.into_listed();
        assert!(listed[0].message.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(listed[0].message.ends_with("é…"), "{}", listed[0].message);
        assert_eq!(listed[1].message, "short");
    }

    #[test]
    fn columns_are_bounded_in_count_name_length_and_bytes() {
        let mut errors = ErrorList::default();
        let mut c = Columns::default();
        for i in 0..MAX_COLUMNS + 5 {
            c.push(&format!("c{i}"));
        }
        let names = c.finish(&mut errors, Some(1), "header fields");
        assert_eq!(names.len(), MAX_COLUMNS);
        assert_eq!(errors.total, 1);

        let mut errors = ErrorList::default();
        let mut c = Columns::default();
        assert!(c.push(&"x".repeat(5000)));
        assert!(c.push("b"));
        let names = c.finish(&mut errors, None, "keys");
        assert_eq!(names[0].len(), MAX_COLUMN_NAME_BYTES);
        assert_eq!(names[1], "b");
        assert_eq!(errors.total, 1);

        let mut errors = ErrorList::default();
        let mut c = Columns::default();
        let mut listed = 0;
        while c.push(&"y".repeat(MAX_COLUMN_NAME_BYTES)) {
            listed += 1;
        }
        assert_eq!(listed, MAX_COLUMNS_BYTES / MAX_COLUMN_NAME_BYTES);
        assert!(!c.push("z"), "no name is listed after the list is full");
        c.finish(&mut errors, None, "keys");
        assert_eq!(errors.total, 1);
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
