//! A single JSON document (message archives): one record when it parses, streamed without
//! building values.

use std::io::{self, BufRead};

use serde::de::DeserializeSeed;

use super::jsonl::{KeySet, TopLevel};
use super::{Indexed, Options};

pub fn index<R: BufRead>(r: &mut R, _opts: &Options) -> Indexed {
    let mut out = Indexed {
        offsets: vec![[0, 0]],
        ..Indexed::default()
    };
    let mut keys = KeySet::default();
    let mut de = serde_json::Deserializer::from_reader(&mut *r);
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
            if let Err(e) = super::drain(r) {
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
}
