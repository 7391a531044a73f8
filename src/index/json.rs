//! A single JSON document (message archives): one record.
//!
//! A document within `MAX_RECORD_BYTES` (nearly all: a message is kilobytes) is held and
//! checked by the validator of JSON lines (`jsonl::check_line`: UTF-8 of every string, skipped
//! ones too, and lone surrogate escapes in keys accepted, as JSON allows). A larger one is
//! streamed through serde_json without being held, which decodes keys strictly and does not
//! check the UTF-8 of the strings it skips.

use std::io::{self, BufRead, Read};

use serde::de::DeserializeSeed;

use super::jsonl::{KeySet, TopLevel, check_line};
use super::jsonscan::Scanner;
use super::{Indexed, Options};

pub fn index<R: BufRead>(r: &mut R, opts: &Options) -> Indexed {
    let mut out = Indexed {
        offsets: vec![[0, 0]],
        ..Indexed::default()
    };
    let mut keys = KeySet::default();
    // At most one byte past the limit is read before the document is known to be larger.
    let limit = opts.max_record_bytes.saturating_add(1);
    let mut doc = Vec::new();
    if let Err(e) = r.by_ref().take(limit).read_to_end(&mut doc) {
        out.fatal = Some(e);
        return out;
    }
    if (doc.len() as u64) < limit {
        match check_line(&doc, &mut keys, &mut Scanner::default()) {
            Ok(()) => out.records = 1,
            Err(bad) => out.errors.push(Some(0), bad.line, bad.message),
        }
        return out;
    }
    let mut whole = io::Cursor::new(doc).chain(r);
    let mut de = serde_json::Deserializer::from_reader(&mut whole);
    let result = TopLevel(&mut keys)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match result {
        Ok(()) => out.records = 1,
        Err(e) if e.is_io() => out.fatal = Some(io::Error::from(e)),
        Err(e) => {
            let line = e.line() as u64;
            out.errors.push(
                Some(0),
                (line > 0).then_some(line),
                format!("invalid JSON: {e}"),
            );
            // The rest of the part is still read, so that it is hashed and written whole.
            if let Err(e) = super::drain(&mut whole) {
                out.fatal = Some(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_is_one_record() {
        let opts = Options {
            offset_interval: 10,
            max_record_bytes: 1 << 20,
            budget: crate::decode::Budget::default(),
        };
        let out = index(
            &mut &b"{\n  \"to\": \"a@b.c\",\n  \"subject\": \"Hi\"\n}\n"[..],
            &opts,
        );
        assert_eq!((out.records, out.errors.total), (1, 0));
        let out = index(
            &mut &b"{\n  \"to\": \"a@b.c\",\n  \"subject\": \n"[..],
            &opts,
        );
        assert_eq!((out.records, out.errors.total), (0, 1));
        let out = index(&mut &b"{\"a\":1} trailing"[..], &opts);
        assert_eq!((out.records, out.errors.total), (0, 1));
    }

    fn opts(max_record_bytes: u64) -> Options {
        Options {
            offset_interval: 10,
            max_record_bytes,
            budget: crate::decode::Budget::default(),
        }
    }

    /// The verdicts of the JSON lines' validator, with the line serde_json names in the error;
    /// a document larger than `MAX_RECORD_BYTES` is still judged, streamed.
    #[test]
    fn a_document_is_judged_as_a_json_line_is() {
        // Valid JSON: a lone surrogate escape in a top-level key (serde_json refuses to decode
        // it as a key, but skips it in a value).
        let doc = b"{\n  \"a\\udeee\": {\"b\": \"\\ud800\"}\n}\n";
        let out = index(&mut &doc[..], &opts(1 << 20));
        assert_eq!((out.records, out.errors.total), (1, 0), "{:?}", out.errors);
        // Invalid UTF-8 in a nested string serde_json would skip unchecked.
        let doc = b"{\n  \"a\": {\"b\": \"\xff\"}\n}\n";
        let out = index(&mut &doc[..], &opts(1 << 20));
        assert_eq!((out.records, out.errors.total), (0, 1));
        assert!(out.errors.listed[0].message.contains("UTF-8"));
        // The line of a syntax error is the document's.
        let doc = b"{\n  \"a\": 1,\n  \"b\": \n}\n";
        let out = index(&mut &doc[..], &opts(1 << 20));
        assert_eq!((out.records, out.errors.total), (0, 1));
        assert_eq!(out.errors.listed[0].line, Some(4));
        // Larger than the limit: streamed, good and bad alike, and read to its end.
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(300));
        let out = index(&mut big.as_bytes(), &opts(100));
        assert_eq!((out.records, out.errors.total), (1, 0));
        let bad = format!(
            "{{\"a\": \"{}\"}} trailing {}",
            "x".repeat(300),
            "y".repeat(300)
        );
        let mut rest = bad.as_bytes();
        let out = index(&mut rest, &opts(100));
        assert_eq!((out.records, out.errors.total), (0, 1));
        assert!(out.fatal.is_none() && rest.is_empty());
        // Exactly at the limit: held.
        let exact = format!("{{\"a\\udeee\": \"{}\"}}", "x".repeat(80));
        let out = index(&mut exact.as_bytes(), &opts(exact.len() as u64));
        assert_eq!((out.records, out.errors.total), (1, 0));
    }
}
