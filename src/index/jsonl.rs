//! JSON lines: one JSON value per non-empty line (Braze API user exports).
//!
//! Lines are validated without building values; the top-level keys of objects are collected in
//! first-seen order.

use std::collections::HashSet;
use std::fmt;
use std::io::BufRead;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::jsonscan::Scanner;
use super::{
    BOM, Columns, ErrorList, Indexed, LineFramer, MAX_COLUMN_NAME_BYTES, MAX_COLUMNS, Offsets,
    Options, cut,
};

/// Top-level keys of good records in first-seen order, bounded as [`Columns`] is.
///
/// Records of one export mostly list the same keys in the same order, so the key at position
/// `i` of a record is first compared with the key at position `i` of the previous record; only a
/// different key is looked up in the set. A key not seen before waits in `pending` until its
/// record is known to be good ([`KeySet::commit`]); a bad record's keys are dropped
/// ([`KeySet::discard`]). Memory is bounded whatever the input: the set holds only listed keys,
/// and `pending` and the position cache at most [`MAX_COLUMNS`] keys of at most
/// [`MAX_COLUMN_NAME_BYTES`] each.
#[derive(Default)]
pub(crate) struct KeySet {
    seen: HashSet<Box<str>>,
    columns: Columns,
    /// Listed keys by their position in the previous records (no gaps).
    previous: Vec<Box<str>>,
    position: usize,
    pending: Vec<Box<str>>,
    /// The current record has more new keys than could be listed.
    pending_overflow: bool,
}

impl KeySet {
    /// Starts a new record.
    pub(crate) fn start(&mut self) {
        self.position = 0;
        self.discard();
    }

    pub(crate) fn note(&mut self, key: &str) {
        let i = self.position;
        self.position += 1;
        if self.previous.get(i).is_some_and(|p| **p == *key) {
            return;
        }
        if self.seen.contains(key) {
            if i < self.previous.len() {
                self.previous[i] = key.into();
            } else if i == self.previous.len() && i < MAX_COLUMNS {
                self.previous.push(key.into());
            }
        } else if self.columns.is_full() {
            // Nothing more can be listed; an unlisted key is not remembered.
            self.pending_overflow = true;
        } else if self.pending.len() < MAX_COLUMNS {
            self.pending.push(cut(key, MAX_COLUMN_NAME_BYTES).into());
        } else {
            self.pending_overflow = true;
        }
    }

    /// The current record is good: its new keys are listed.
    pub fn commit(&mut self) {
        for key in self.pending.drain(..) {
            if !self.seen.contains(&key) && self.columns.push(&key) {
                self.seen.insert(key);
            }
        }
        if self.pending_overflow {
            self.columns.set_full();
            self.pending_overflow = false;
        }
    }

    /// The current record is bad: its new keys are forgotten.
    pub fn discard(&mut self) {
        self.pending.clear();
        self.pending_overflow = false;
    }

    /// The listed keys; errors saying how the list falls short go to `errors`.
    pub fn finish(self, errors: &mut ErrorList) -> Vec<String> {
        self.columns.finish(errors, None, "top-level keys")
    }
}

/// Validates one JSON value, noting the keys of a top-level object.
pub(crate) struct TopLevel<'a>(pub &'a mut KeySet);

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.start();
        while let Some(()) = map.next_key_seed(KeyName(&mut *self.0))? {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

struct KeyName<'a>(&'a mut KeySet);

impl<'de> DeserializeSeed<'de> for KeyName<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyName<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.0.note(key);
        Ok(())
    }
}

/// Why a record is bad: the message, and the line of the text where serde_json found the
/// error (a JSON document spans lines; for a JSON line it is 1).
#[derive(Debug)]
pub(crate) struct Bad {
    pub message: String,
    pub line: Option<u64>,
}

/// Validates one record (a JSON line, or a whole JSON document held in memory); says why a bad
/// one is bad.
///
/// UTF-8 is checked first and separately (SIMD, `simdutf8`): serde_json skips the strings of
/// ignored values without validating them (found by fuzzing). The line is then checked by the
/// [`Scanner`]; only a line it does not accept is parsed by serde_json, which gives the verdict
/// and the message (and reads the checked `str`, so it does not check the UTF-8 again).
pub(crate) fn check_line(line: &[u8], keys: &mut KeySet, scanner: &mut Scanner) -> Result<(), Bad> {
    let text = match simdutf8::compat::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            keys.discard();
            return Err(Bad {
                message: format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                line: None,
            });
        }
    };
    if scanner.valid(text, keys) {
        keys.commit();
        return Ok(());
    }
    keys.discard();
    let mut de = serde_json::Deserializer::from_str(text);
    // Only the scanner's rejects come here, for the message (and a verdict of serde_json's own).
    // Only objects have keys to note. Other values are skipped with `RawValue`, the way values
    // nested in objects are skipped (numbers by their grammar only: `1e400` is valid).
    let is_object = line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let checked = if is_object {
        TopLevel(keys).deserialize(&mut de)
    } else {
        <&serde_json::value::RawValue as serde::Deserialize>::deserialize(&mut de).map(|_| ())
    };
    let verdict = checked.and_then(|()| de.end()).map_err(|e| Bad {
        message: format!("invalid JSON: {e}"),
        line: (e.line() > 0).then_some(e.line() as u64),
    });
    match verdict {
        Ok(()) => keys.commit(),
        Err(_) => keys.discard(),
    }
    verdict
}

pub fn index<R: BufRead>(r: &mut R, opts: &Options) -> Indexed {
    let mut out = Indexed::default();
    let mut keys = KeySet::default();
    let mut scanner = Scanner::default();
    let mut offsets = Offsets::new(opts.offset_interval);
    let mut ordinal = 0u64;
    let mut line_no = 0u64;
    let max = opts.max_record_bytes;
    let result = LineFramer::new(max, true).run(r, |line| {
        line_no += 1;
        let mut bytes = line.bytes.strip_suffix(b"\r").unwrap_or(line.bytes);
        if line.start == 0 {
            // A UTF-8 byte order mark before the first record is not part of it.
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        if !line.oversize && bytes.trim_ascii().is_empty() {
            return;
        }
        let record = ordinal;
        ordinal += 1;
        offsets.record_at(record, line.start);
        let verdict = if line.oversize {
            Err(format!(
                "record is longer than MAX_RECORD_BYTES ({max} bytes)"
            ))
        } else {
            check_line(bytes, &mut keys, &mut scanner).map_err(|bad| bad.message)
        };
        match verdict {
            Ok(()) => out.records += 1,
            Err(message) => out.errors.push(Some(record), Some(line_no), message),
        }
    });
    out.fatal = result.err();
    out.columns = Some(keys.finish(&mut out.errors));
    out.offsets = offsets.into_vec();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            offset_interval: 2,
            max_record_bytes: 1 << 20,
            budget: crate::decode::Budget::default(),
        }
    }

    #[test]
    fn counts_good_lists_bad_and_collects_keys() {
        let data = b"{\"external_id\":\"u1\",\"email\":\"a@b\"}\n\n{\"external_id\":\"u2\",\"country\":\"FR\",\"custom_attributes\":{\"nested\":1}}\r\n{broken\n\xff\xfe\n{\"z\":null}";
        let out = index(&mut &data[..], &opts());
        assert!(out.fatal.is_none());
        assert_eq!(out.records, 3);
        assert_eq!(
            out.columns.unwrap(),
            vec!["external_id", "email", "country", "custom_attributes", "z"]
        );
        let errs = out.errors.into_listed();
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].record, errs[0].line), (Some(2), Some(4)));
        assert!(
            errs[0].message.starts_with("invalid JSON"),
            "{}",
            errs[0].message
        );
        assert_eq!((errs[1].record, errs[1].line), (Some(3), Some(5)));
        assert!(errs[1].message.contains("UTF-8"), "{}", errs[1].message);
        // Records 0, 2, 4 start at these byte offsets.
        let o2 = data.windows(7).position(|w| w == b"{broken").unwrap() as u64;
        let o4 = data.windows(4).position(|w| w == b"{\"z\"").unwrap() as u64;
        assert_eq!(out.offsets, vec![[0, 0], [2, o2], [4, o4]]);
    }

    #[test]
    fn invalid_utf8_inside_an_ignored_nested_value_is_a_bad_record() {
        // Found by fuzzing: serde_json does not check the strings of values it skips.
        let data = b"{\"a\":{\"\xdfn\":1}}\n{\"a\":[\"\xff\"]}\n{\"a\":1}\n";
        let out = index(&mut &data[..], &opts());
        assert_eq!((out.records, out.errors.total), (1, 2));
    }

    #[test]
    fn oversized_line_is_a_bad_record_not_a_memory_spike() {
        let mut data = b"{\"a\":1}\n{\"big\":\"".to_vec();
        data.extend(std::iter::repeat_n(b'x', 5000));
        data.extend_from_slice(b"\"}\n{\"b\":2}\n");
        let out = index(
            &mut std::io::BufReader::with_capacity(64, &data[..]),
            &Options {
                offset_interval: 100,
                max_record_bytes: 1000,
                budget: crate::decode::Budget::default(),
            },
        );
        assert_eq!(out.records, 2);
        let errs = out.errors.into_listed();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("MAX_RECORD_BYTES"));
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn bom_before_the_first_record_is_not_a_bad_record() {
        let data = b"\xEF\xBB\xBF{\"a\":1}\n{\"b\":2}\n";
        let out = index(&mut &data[..], &opts());
        assert_eq!((out.records, out.errors.total), (2, 0));
        assert_eq!(out.columns.unwrap(), vec!["a", "b"]);
        // Only before the first record.
        let data = b"{\"a\":1}\n\xEF\xBB\xBF{\"b\":2}\n";
        let out = index(&mut &data[..], &opts());
        assert_eq!((out.records, out.errors.total), (1, 1));
    }

    #[test]
    fn keys_of_bad_records_are_not_columns() {
        let data = b"{\"evil\":1,\"a\":\n{\"a\":1}\n{\"nope\":\"\xff\"}\n{\"a\":2,\"b\":3}\n";
        let out = index(&mut &data[..], &opts());
        assert_eq!((out.records, out.errors.total), (2, 2));
        assert_eq!(out.columns.unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let mut data = Vec::new();
        for i in 0..5000 {
            data.extend_from_slice(format!("{{\"k{i}\":1,\"common\":2}}\n").as_bytes());
        }
        // One record with many keys.
        data.push(b'{');
        for i in 0..5000 {
            data.extend_from_slice(format!("\"w{i}\":1,").as_bytes());
        }
        data.extend_from_slice(b"\"end\":1}\n");
        let out = index(&mut &data[..], &opts());
        assert_eq!(out.records, 5001);
        let columns = out.columns.unwrap();
        assert_eq!(columns.len(), MAX_COLUMNS);
        assert_eq!(&columns[..3], &["k0", "common", "k1"]);
        let errs = out.errors.into_listed();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("top-level keys"),
            "{}",
            errs[0].message
        );
    }
}
