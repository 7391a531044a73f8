//! CSV with a header (dashboard exports, engagement reports): delimiter detection, quoted fields
//! with delimiters and newlines, UTF-8 BOM, `\n`, `\r\n` or `\r` line ends. Braze's
//! `'`-prefixed cells are ordinary data.
//!
//! Records are framed here with `csv-core`, so that memory stays bounded whatever the input: a
//! record's bytes are kept up to `MAX_RECORD_BYTES` and its field ends up to `MAX_ENDS`; past
//! that the record is still read to its end, counted and reported, but not held.

use std::io::{self, BufRead};

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use super::{BOM, Columns, Indexed, Offsets, Options};

/// Delimiters Braze writes, in order of preference when several fit equally.
pub const CANDIDATES: [u8; 5] = [b',', b';', b'\t', b'|', b':'];

/// Records looked at to decide a delimiter.
const SNIFF_RECORDS: usize = 20;

/// Field ends kept per record: the header's names need them (up to [`super::MAX_COLUMNS`]); data
/// rows only need their field count, which is counted past this.
const MAX_ENDS: usize = super::MAX_COLUMNS + 1;

/// The first delimiter (in [`CANDIDATES`] order) that splits the header into at least two fields
/// and most (at least half) of the following sampled rows into as many; `None` when no candidate
/// fits. A ragged row or a stray line among the first rows is then a bad record, not a reason to
/// read the part as `lines`. The last row of a cut sample is ignored. Preference order, not field
/// count, breaks ties, so that times such as `10:00:00` in every row do not make `:` win over
/// `,`.
pub fn sniff_delimiter(sample: &[u8], whole: bool) -> Option<u8> {
    CANDIDATES.into_iter().find(|&d| {
        let mut rdr = ::csv::ReaderBuilder::new()
            .delimiter(d)
            .has_headers(false)
            .flexible(true)
            .from_reader(sample);
        let mut counts = Vec::new();
        let mut rec = ::csv::ByteRecord::new();
        while counts.len() <= SNIFF_RECORDS {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => counts.push(rec.len()),
                _ => break,
            }
        }
        if !whole && counts.len() > 1 && counts.len() <= SNIFF_RECORDS {
            counts.pop();
        }
        let Some((&header, rows)) = counts.split_first() else {
            return false;
        };
        let fitting = rows.iter().filter(|&&c| c == header).count();
        header >= 2 && fitting * 2 >= rows.len()
    })
}

/// Counts `\r` line ends that are not part of a `\r\n` (old Mac files), across chunks.
#[derive(Debug, Default)]
struct LoneCr {
    count: u64,
    /// The last byte fed was `\r`.
    pending: bool,
}

impl LoneCr {
    fn feed(&mut self, chunk: &[u8]) {
        let Some(&first) = chunk.first() else { return };
        if self.pending {
            self.count += u64::from(first != b'\n');
            self.pending = false;
        }
        for i in memchr::memchr_iter(b'\r', chunk) {
            match chunk.get(i + 1) {
                Some(b'\n') => {}
                Some(_) => self.count += 1,
                None => self.pending = true,
            }
        }
    }

    /// Lone `\r`s so far, a pending one included (called before the next record's first byte,
    /// which is not a line end).
    fn lone(&self) -> u64 {
        self.count + u64::from(self.pending)
    }
}

/// One record as framed by [`Records`].
struct Record {
    /// Byte offset of its first byte.
    start: u64,
    /// 1-based line of its first byte.
    line: u64,
    /// Number of fields (counted even past [`MAX_ENDS`]).
    fields: usize,
    /// Longer than `MAX_RECORD_BYTES`: its bytes were not kept.
    oversize: bool,
    /// A quoted field was still open at the end of the part.
    unclosed: bool,
}

/// Frames records from a `BufRead`. A row ends at `\n`, `\r\n` or `\r` (outside quotes); line
/// ends before a record (blank lines, the `\n` of a `\r\n`) are skipped here, so that a record's
/// position is its first byte and its line counts every line end before it. At most `max` bytes
/// of one record are kept (its buffer holds one byte more, to tell a record of `max` bytes from a
/// longer one).
struct Records {
    core: Reader,
    /// `\n` skipped outside `core` (which counts the ones it reads).
    skipped_newlines: u64,
    lone_cr: LoneCr,
    /// Whether the start of the part was looked at for a byte order mark.
    started: bool,
    /// The bytes of [`BOM`] read at the start of the part that turned out not to be one: data
    /// to give `core` first.
    carry: std::ops::Range<usize>,
    /// The record's field bytes (valid up to `len`).
    buf: Vec<u8>,
    len: usize,
    ends: Vec<usize>,
    scratch: [usize; 64],
    max: usize,
    pos: u64,
}

impl Records {
    fn new(delimiter: u8, max: usize) -> Self {
        let mut core = ReaderBuilder::new()
            .delimiter(delimiter)
            .terminator(Terminator::CRLF)
            .build();
        // csv-core strips a BOM from its first input only when that input holds all of it, and
        // takes a first input that is exactly a BOM for the end of the data: the BOM is skipped
        // here instead ([`Records::skip_bom`]), and csv-core's own check is spent on a call that
        // reads nothing (with no room for output it returns at once, its state untouched).
        let (res, nin, _, _) = core.read_record(b"x", &mut [], &mut [0]);
        debug_assert_eq!((res, nin), (ReadRecordResult::OutputFull, 0));
        Records {
            core,
            started: false,
            carry: 0..0,
            skipped_newlines: 0,
            lone_cr: LoneCr::default(),
            // One byte more than the limit: a record that fills it is longer than the limit.
            buf: vec![0; max.saturating_add(1).clamp(2, 64 * 1024)],
            len: 0,
            ends: vec![0; MAX_ENDS],
            scratch: [0; 64],
            max,
            pos: 0,
        }
    }

    /// The field bytes of the last record (empty when it was oversize).
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The kept field ends of the last record (at most [`MAX_ENDS`]).
    fn ends(&self, rec: &Record) -> &[usize] {
        &self.ends[..rec.fields.min(MAX_ENDS)]
    }

    /// Skips a UTF-8 byte order mark at the start of the part, however reads are chunked.
    fn skip_bom<R: BufRead>(&mut self, r: &mut R) -> io::Result<()> {
        let mut matched = 0;
        while matched < BOM.len() {
            let buf = match r.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let want = &BOM[matched..];
            let n = buf.iter().zip(want).take_while(|(a, b)| a == b).count();
            let mismatch = n < want.len() && n < buf.len();
            r.consume(n);
            self.pos += n as u64;
            matched += n;
            if n == 0 || mismatch {
                break;
            }
        }
        if matched < BOM.len() {
            self.carry = 0..matched;
        }
        Ok(())
    }

    /// The next record, `None` at the end of the part.
    fn next<R: BufRead>(&mut self, r: &mut R) -> io::Result<Option<Record>> {
        if !self.started {
            self.started = true;
            self.skip_bom(r)?;
        }
        while self.carry.is_empty() {
            let buf = match r.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let skip = buf
                .iter()
                .position(|&b| b != b'\n' && b != b'\r')
                .unwrap_or(buf.len());
            if skip == 0 {
                break;
            }
            let skipped = &buf[..skip];
            self.skipped_newlines += memchr::memchr_iter(b'\n', skipped).count() as u64;
            self.lone_cr.feed(skipped);
            r.consume(skip);
            self.pos += skip as u64;
        }
        let mut rec = Record {
            start: self.pos - self.carry.len() as u64,
            line: self.core.line() + self.skipped_newlines + self.lone_cr.lone(),
            fields: 0,
            oversize: false,
            unclosed: false,
        };
        self.len = 0;
        let term = [b'\n'];
        let mut probed = false;
        loop {
            let buf = match r.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // At the end of the part, a record that has begun is first given a line end: if it
            // is taken as field data, a quoted field was left open.
            let (input, real) = if !self.carry.is_empty() {
                (&BOM[self.carry.clone()], false)
            } else if !buf.is_empty() {
                (buf, true)
            } else if self.pos > rec.start && !probed {
                (&term[..], false)
            } else {
                (&[][..], true)
            };
            let ends: &mut [usize] = if rec.fields < MAX_ENDS {
                &mut self.ends[rec.fields..]
            } else {
                &mut self.scratch
            };
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.buf[self.len..], ends);
            if real {
                self.lone_cr.feed(&input[..nin]);
                r.consume(nin);
                self.pos += nin as u64;
            } else if !self.carry.is_empty() {
                self.carry.start += nin;
            } else if nin == 1 {
                probed = true;
                rec.unclosed = nout == 1;
            }
            rec.fields += nend;
            self.len += nout;
            match res {
                ReadRecordResult::InputEmpty | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::OutputFull => {
                    let cap = self.max.saturating_add(1);
                    if self.buf.len() < cap {
                        let grown = self.buf.len().saturating_mul(2).min(cap);
                        self.buf.resize(grown, 0);
                    } else {
                        // Past MAX_RECORD_BYTES: the rest of the record is read and dropped.
                        rec.oversize = true;
                        self.len = 0;
                    }
                }
                ReadRecordResult::Record => {
                    if rec.oversize || self.len > self.max {
                        rec.oversize = true;
                        self.len = 0;
                    }
                    return Ok(Some(rec));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

pub fn index<R: BufRead>(r: &mut R, delimiter: u8, opts: &Options) -> Indexed {
    let mut out = Indexed {
        delimiter: Some(delimiter),
        ..Indexed::default()
    };
    let mut offsets = Offsets::new(opts.offset_interval);
    let max = usize::try_from(opts.max_record_bytes).unwrap_or(usize::MAX);
    let mut records = Records::new(delimiter, max);
    let mut header_len = None;
    let mut ordinal = 0u64;
    loop {
        let rec = match records.next(r) {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => {
                out.fatal = Some(e);
                break;
            }
        };
        let Some(expected) = header_len else {
            header_len = Some(rec.fields);
            out.columns = Some(header(&records, &rec, max, &mut out));
            continue;
        };
        let record = ordinal;
        ordinal += 1;
        offsets.record_at(record, rec.start);
        let verdict = if rec.unclosed {
            let past = if rec.oversize {
                format!(", past MAX_RECORD_BYTES ({max} bytes)")
            } else {
                String::new()
            };
            Err(format!(
                "a quoted field is not closed: the row runs to the end of the part{past}"
            ))
        } else if rec.oversize {
            Err(format!("row is longer than MAX_RECORD_BYTES ({max} bytes)"))
        } else if rec.fields != expected {
            Err(format!(
                "expected {expected} fields (as in the header), found {}",
                rec.fields
            ))
        } else if let Err(e) = simdutf8::compat::from_utf8(records.bytes()) {
            Err(format!(
                "invalid UTF-8 at byte {} of the row's fields",
                e.valid_up_to()
            ))
        } else if let Some(at) = memchr::memchr(0, records.bytes()) {
            Err(format!(
                "NUL byte at byte {at} of the row's fields: not text"
            ))
        } else {
            Ok(())
        };
        match verdict {
            Ok(()) => out.records += 1,
            Err(message) => out.errors.push(Some(record), Some(rec.line), message),
        }
    }
    if out.columns.is_none() {
        out.columns = Some(Vec::new());
    }
    out.offsets = offsets.into_vec();
    out
}

/// The header's names, from a good header only: a header that is not closed, too long, not UTF-8
/// or holds NUL is an error and gives no names. At most [`super::MAX_COLUMNS`] names are listed
/// (see [`Columns`]).
fn header(records: &Records, rec: &Record, max: usize, out: &mut Indexed) -> Vec<String> {
    let line = Some(rec.line);
    let bytes = records.bytes();
    let problem = if rec.unclosed {
        Some("a quoted field of the header is not closed".to_string())
    } else if rec.oversize {
        Some(format!(
            "header is longer than MAX_RECORD_BYTES ({max} bytes)"
        ))
    } else if simdutf8::basic::from_utf8(bytes).is_err() {
        Some("header is not valid UTF-8".to_string())
    } else if memchr::memchr(0, bytes).is_some() {
        Some("header holds a NUL byte: not text".to_string())
    } else {
        None
    };
    if let Some(message) = problem {
        out.errors.push(None, line, message);
        return Vec::new();
    }
    let ends = records.ends(rec);
    let mut columns = Columns::default();
    let mut from = 0;
    for (i, &to) in ends.iter().enumerate() {
        let mut f = &bytes[from..to];
        from = to;
        if i == 0 {
            f = f.strip_prefix(BOM).unwrap_or(f);
        }
        // Checked as UTF-8 above, and fields end at character boundaries (delimiters are ASCII).
        let name = std::str::from_utf8(f).unwrap_or_default();
        if !columns.push(name) {
            break;
        }
    }
    if ends.len() < rec.fields {
        columns.set_full();
    }
    let what = format!("header fields ({} in all)", rec.fields);
    columns.finish(&mut out.errors, line, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(interval: u64) -> Options {
        Options {
            offset_interval: interval,
            max_record_bytes: 1 << 20,
            budget: crate::decode::Budget::default(),
        }
    }

    #[test]
    fn quoted_fields_bom_and_braze_quotes() {
        let data = "\u{feff}Appboy ID,user_id,first_name,phone_number\n\
                    5f1,u1,\"Smith, Jr.\",'+33 6 12\n\
                    5f2,u2,\"multi\nline\",'-1943\n\
                    5f3,u3,'=SUM(A1),'@handle\n";
        let out = index(&mut data.as_bytes(), b',', &opts(2));
        assert!(out.fatal.is_none());
        assert_eq!(out.records, 3);
        assert_eq!(
            out.columns.unwrap(),
            vec!["Appboy ID", "user_id", "first_name", "phone_number"]
        );
        assert_eq!(out.errors.total, 0);
        let row2 = data.find("5f3").unwrap() as u64;
        assert_eq!(out.offsets, vec![[0, 0], [2, row2]]);
    }

    #[test]
    fn crlf_rows_start_after_the_line_break() {
        let data = b"a,b\r\n1,2\r\n\r\n3,\"x\r\ny\"\r\n5,6\r\n";
        let out = index(&mut &data[..], b',', &opts(1));
        assert_eq!(out.columns.unwrap(), vec!["a", "b"]);
        assert_eq!(out.records, 3);
        assert_eq!(out.errors.total, 0);
        let starts: Vec<u64> = out.offsets.iter().map(|o| o[1]).collect();
        // `[0,0]`, then rows 1 and 2: `3,"x\r\ny"` at 12 and `5,6` at 22.
        assert_eq!(starts, vec![0, 12, 22]);
    }

    #[test]
    fn wrong_field_counts_are_listed_with_line_numbers() {
        let data = b"a;b;c\n1;2;3\n1;2\n\"x\ny\";2;3\n1;2;3;4\n";
        let out = index(&mut &data[..], b';', &opts(100));
        assert_eq!(out.records, 2);
        let errs = out.errors.into_listed();
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].record, errs[0].line), (Some(1), Some(3)));
        assert_eq!((errs[1].record, errs[1].line), (Some(3), Some(6)));
    }

    #[test]
    fn delimiter_case_table() {
        let cases: &[(&[u8], bool, Option<u8>)] = &[
            (b"a,b\n1,2\n", true, Some(b',')),
            (b"a;b;c\n1;2,5;3\n", true, Some(b';')),
            (b"campaign|sent|opens\nx|1|2\n", true, Some(b'|')),
            (b"campaign:sent\nx:1\n", true, Some(b':')),
            (b"a\tb\n1\t2\n", true, Some(b'\t')),
            (
                b"at,2024-01-01 10:00:00\nb,2024-01-01 11:00:00\n",
                true,
                Some(b','),
            ),
            (b"just one column\nvalue\n", true, None),
            (b"a,b\n1,2\n3,", false, Some(b',')),
            (b"a,b\n1,2,3\n", true, None),
            // The majority of rows decides: one ragged row or a blank-looking line is a bad
            // record, not a reason to read the part as lines.
            (b"a,b,c\n1,2,3\n1,2\n4,5,6\n", true, Some(b',')),
            (b"a,b\n\r\n1,2\n", true, Some(b',')),
            (b"a,b\n1\n2,3\n3,4\n", true, Some(b',')),
            (b"a,b\n1\n2\n3\n4,5\n", true, None),
            (b"a;b\r1;2\r3;4\r", true, Some(b';')),
        ];
        for (sample, whole, want) in cases {
            assert_eq!(
                sniff_delimiter(sample, *whole),
                *want,
                "sniff_delimiter({:?}, whole={whole})",
                String::from_utf8_lossy(sample)
            );
        }
    }

    fn listed(out: Indexed) -> Vec<(Option<u64>, Option<u64>, String)> {
        out.errors
            .into_listed()
            .into_iter()
            .map(|e| (e.record, e.line, e.message))
            .collect()
    }

    #[test]
    fn cr_only_line_endings_are_rows() {
        let data = b"a,b\r1,2\r\"x\ry\",3\r\r5,6\r";
        let out = index(
            &mut std::io::BufReader::with_capacity(3, &data[..]),
            b',',
            &opts(1),
        );
        assert_eq!(out.columns.clone().unwrap(), vec!["a", "b"]);
        assert_eq!((out.records, out.errors.total), (3, 0));
        let starts: Vec<u64> = out.offsets.iter().map(|o| o[1]).collect();
        assert_eq!(starts, vec![0, 8, 17]);
        // Line numbers count `\r` line ends (one inside the quoted field), across buffers.
        let data = b"a,b\r1,2\r\"x\ry\",3\r\r5\r";
        let out = index(
            &mut std::io::BufReader::with_capacity(2, &data[..]),
            b',',
            &opts(1),
        );
        let errs = listed(out);
        assert_eq!((errs[0].0, errs[0].1), (Some(2), Some(6)), "{errs:?}");
    }

    #[test]
    fn unclosed_quote_at_the_end_is_a_bad_record() {
        for data in [
            &b"a,b\n1,2\n3,\"open\n"[..],
            &b"a,b\n1,2\n3,\"open"[..],
            &b"a,b\n1,2\n3,\"open\"\"\n"[..],
        ] {
            let out = index(&mut &data[..], b',', &opts(100));
            assert!(out.fatal.is_none());
            assert_eq!(out.records, 1, "{:?}", String::from_utf8_lossy(data));
            let errs = listed(out);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!((errs[0].0, errs[0].1), (Some(1), Some(3)));
            assert!(errs[0].2.contains("not closed"), "{errs:?}");
        }
        // Closed quotes at the very end, with and without a line end, and blank lines after the
        // last row, are good.
        for data in [
            &b"a,b\n1,\"x\"\n"[..],
            &b"a,b\n1,\"x\""[..],
            &b"a,b\n1,\"x\"\"\""[..],
            &b"a,b\n1,2\n\n\n"[..],
            &b"a,b\r\n1,2\r\n\r\n"[..],
            &b"a,b\n1,2"[..],
        ] {
            let out = index(&mut &data[..], b',', &opts(100));
            assert_eq!(
                (out.records, out.errors.total),
                (1, 0),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn oversize_row_is_read_to_its_end_without_being_held() {
        let max = 1000;
        let mut data = b"a,b\n1,2\n3,\"".to_vec();
        data.extend(std::iter::repeat_n(b'x', 100_000));
        data.extend_from_slice(b"\"\n5,6\n");
        let mut r = std::io::BufReader::with_capacity(256, &data[..]);
        let mut records = Records::new(b',', max);
        let mut seen = Vec::new();
        while let Some(rec) = records.next(&mut r).unwrap() {
            assert!(
                records.buf.len() <= max + 1,
                "buffer grew to {}",
                records.buf.len()
            );
            seen.push((rec.start, rec.fields, rec.oversize));
        }
        assert_eq!(
            seen,
            vec![
                (0, 2, false),
                (4, 2, false),
                (8, 2, true),
                (data.len() as u64 - 4, 2, false)
            ]
        );
        let out = index(
            &mut &data[..],
            b',',
            &Options {
                offset_interval: 100,
                max_record_bytes: max as u64,
                budget: crate::decode::Budget::default(),
            },
        );
        assert_eq!(out.records, 2);
        let errs = listed(out);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].2.contains("MAX_RECORD_BYTES"), "{errs:?}");
    }

    #[test]
    fn many_fields_keep_a_bounded_list_of_ends() {
        let mut data = b"a,b\n".to_vec();
        data.extend(std::iter::repeat_n(b',', 50_000));
        data.extend_from_slice(b"\n1,2\n");
        let mut records = Records::new(b',', 1 << 20);
        let mut r = &data[..];
        records.next(&mut r).unwrap().unwrap();
        let wide = records.next(&mut r).unwrap().unwrap();
        assert_eq!(wide.fields, 50_001);
        assert_eq!(records.ends.len(), MAX_ENDS);
        let out = index(&mut &data[..], b',', &opts(100));
        assert_eq!((out.records, out.errors.total), (1, 1));
    }

    #[test]
    fn header_names_are_bounded_and_come_from_a_good_header() {
        let names: Vec<String> = (0..1500).map(|i| format!("c{i}")).collect();
        let mut data = names.join(",").into_bytes();
        data.extend_from_slice(b"\n");
        let row: Vec<&str> = vec!["1"; 1500];
        data.extend_from_slice(row.join(",").as_bytes());
        data.extend_from_slice(b"\n");
        let out = index(&mut &data[..], b',', &opts(100));
        let columns = out.columns.clone().unwrap();
        assert_eq!(columns.len(), super::super::MAX_COLUMNS);
        assert_eq!(columns[999], "c999");
        assert_eq!(
            out.records, 1,
            "rows are still checked against all 1500 fields"
        );
        let errs = listed(out);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].2.contains("1500 in all"), "{errs:?}");

        let long = "n".repeat(3000);
        let data = format!("{long},b\n1,2\n");
        let out = index(&mut data.as_bytes(), b',', &opts(100));
        let columns = out.columns.clone().unwrap();
        assert_eq!(columns[0].len(), super::super::MAX_COLUMN_NAME_BYTES);
        assert_eq!(columns[1], "b");
        assert_eq!(listed(out).len(), 1);

        // A header that is not UTF-8 gives no names.
        let out = index(&mut &b"a,\xff\n1,2\n"[..], b',', &opts(100));
        assert_eq!(out.columns.clone().unwrap(), Vec::<String>::new());
        assert_eq!((out.records, out.errors.total), (1, 1));
    }

    #[test]
    fn nul_in_a_row_is_a_bad_record() {
        let out = index(&mut &b"a,b\n1,2\n3,\x004\n"[..], b',', &opts(100));
        assert_eq!((out.records, out.errors.total), (1, 1));
    }

    #[test]
    fn results_do_not_depend_on_how_reads_are_chunked() {
        let summary = |out: Indexed| {
            (
                out.records,
                out.columns.clone(),
                out.offsets.clone(),
                listed(out),
            )
        };
        let cases: &[(&[u8], u64, &[&str])] = &[
            (
                b"\xEF\xBB\xBFa,b\r\n1,2\r\n\r\n\"x\r\ny\",3\r4,5\n\n6\r\n7,\"\"\"8\"\r,,\n9,\"open\r\n",
                4,
                &["a", "b"],
            ),
            (b"\xEF\xBB\xBF\"a\",\"b\"\n1,2\n", 1, &["a", "b"]),
            (b"\xEF\xBB\xBF\xEF\xBB\xBFa,b\n1,2\n", 1, &["a", "b"]),
            (b"\xEF\xBBa,b\n1,2\n", 1, &[]),
            (b"\xEFa,b\n1,2\n", 1, &[]),
            (b"\xEF\xBB\xBF", 0, &[]),
            (b"\xEF\xBB", 0, &[]),
        ];
        for (data, records, columns) in cases {
            let want = summary(index(&mut &data[..], b',', &opts(1)));
            assert_eq!(want.0, *records, "{want:?}");
            assert_eq!(want.1.clone().unwrap(), *columns, "{want:?}");
            for capacity in 1..16 {
                let got = summary(index(
                    &mut std::io::BufReader::with_capacity(capacity, *data),
                    b',',
                    &opts(1),
                ));
                assert_eq!(
                    got,
                    want,
                    "capacity {capacity}, {:?}",
                    String::from_utf8_lossy(data)
                );
            }
        }
    }
}
