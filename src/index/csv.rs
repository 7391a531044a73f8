//! CSV with a header (dashboard exports, engagement reports): delimiter detection, quoted fields
//! with delimiters and newlines, UTF-8 BOM. Braze's `'`-prefixed cells are ordinary data.

use std::io::BufRead;

use super::{BOM, FormatError, Indexed, Offsets, Options};

/// Delimiters Braze writes, in order of preference when several fit equally.
pub const CANDIDATES: [u8; 5] = [b',', b';', b'\t', b'|', b':'];

/// Records looked at to decide a delimiter.
const SNIFF_RECORDS: usize = 20;

/// The first delimiter (in [`CANDIDATES`] order) that splits the header into at least two fields
/// and every following sampled row into as many; `None` when no candidate fits. The last row of
/// a cut sample is ignored. Preference order, not field count, breaks ties, so that times such
/// as `10:00:00` in every row do not make `:` win over `,`.
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
        counts
            .first()
            .is_some_and(|&header| header >= 2 && counts.iter().all(|&c| c == header))
    })
}

pub fn index<R: BufRead>(r: &mut R, delimiter: u8, opts: &Options) -> Indexed {
    let mut out = Indexed::default();
    let mut offsets = Offsets::new(opts.offset_interval);
    // Rows end at `\n` only, so that a row's position is its first byte even after `\r\n`
    // (csv-core places a row that follows `\r\n` at the `\n`). A `\r` left at the end of the
    // last field changes no field count; it is trimmed from the header's names.
    let mut rdr = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(::csv::Terminator::Any(b'\n'))
        .buffer_capacity(64 * 1024)
        .from_reader(&mut *r);
    let mut rec = ::csv::ByteRecord::new();
    out.delimiter = Some(delimiter);
    let max = opts.max_record_bytes as usize;
    let mut header_len = None;
    let mut ordinal = 0u64;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.fatal = Some(match e.into_kind() {
                    ::csv::ErrorKind::Io(e) => e,
                    other => FormatError::io(format!("CSV cannot be read: {other:?}")),
                });
                break;
            }
        }
        let pos = rec.position().cloned().unwrap_or_else(::csv::Position::new);
        if rec.len() == 1 && matches!(&rec[0], b"" | b"\r") {
            continue; // an empty line of a CRLF file
        }
        let Some(expected) = header_len else {
            let last = rec.len().saturating_sub(1);
            let columns = rec
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let f = if i == 0 {
                        f.strip_prefix(BOM).unwrap_or(f)
                    } else {
                        f
                    };
                    let f = if i == last {
                        f.strip_suffix(b"\r").unwrap_or(f)
                    } else {
                        f
                    };
                    String::from_utf8_lossy(f).into_owned()
                })
                .collect();
            if simdutf8::basic::from_utf8(rec.as_slice()).is_err() {
                out.errors.push(
                    None,
                    Some(pos.line()),
                    "header is not valid UTF-8".to_string(),
                );
            }
            out.columns = Some(columns);
            header_len = Some(rec.len());
            continue;
        };
        let record = ordinal;
        ordinal += 1;
        offsets.record_at(record, pos.byte());
        let verdict = if rec.as_slice().len() > max {
            Err(format!("row is longer than MAX_RECORD_BYTES ({max} bytes)"))
        } else if rec.len() != expected {
            Err(format!(
                "expected {expected} fields (as in the header), found {}",
                rec.len()
            ))
        } else if let Err(e) = simdutf8::compat::from_utf8(rec.as_slice()) {
            Err(format!(
                "invalid UTF-8 at byte {} of the row's fields",
                e.valid_up_to()
            ))
        } else {
            Ok(())
        };
        match verdict {
            Ok(()) => out.records += 1,
            Err(message) => out.errors.push(Some(record), Some(pos.line()), message),
        }
    }
    drop(rdr);
    if out.columns.is_none() {
        out.columns = Some(Vec::new());
    }
    out.offsets = offsets.into_vec();
    if out.fatal.is_none()
        && let Err(e) = super::drain(r)
    {
        out.fatal = Some(e);
    }
    out
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
}
