//! JSON-lines indexing against an independent oracle: every non-blank line is one record, good
//! when it is valid UTF-8 and one JSON value no longer than MAX_RECORD_BYTES, bad otherwise.
//! Also no panic, sound offsets, and the same result however reads are chunked.
#![no_main]

use export_fetcher::index::Options;
use export_fetcher::manifest::Format;
use fuzz_support::{capacity_from, index_twice};
use libfuzzer_sys::fuzz_target;

const MAX: u64 = 128;

fuzz_target!(|data: &[u8]| {
    let Some((&b, body)) = data.split_first() else {
        return;
    };
    let opts = Options {
        offset_interval: 2,
        max_record_bytes: MAX,
        budget: export_fetcher::decode::Budget::default(),
    };
    let s = index_twice(Format::Jsonl, None, body, capacity_from(b), &opts);
    assert!(
        s.fatal.is_none(),
        "an in-memory stream failed: {:?}",
        s.fatal
    );

    // `ambiguous`: a line that is a bare top-level number out of f64's range (`1e400`). JSON's
    // grammar accepts it, and so does the indexer, as it does nested (see
    // `reliability::fuzz_regression_jsonl_top_level_number_out_of_range`). Either verdict passes.
    let (mut good, mut bad, mut ambiguous) = (0u64, 0u64, 0u64);
    let mut lines: Vec<&[u8]> = body.split(|&c| c == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (i, raw) in lines.into_iter().enumerate() {
        let oversize = raw.len() as u64 > MAX;
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if i == 0 {
            // A UTF-8 byte order mark before the first line is not part of it.
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if !oversize && line.trim_ascii().is_empty() {
            continue;
        }
        let ok = !oversize
            && std::str::from_utf8(line).is_ok()
            && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
        let bare_number = line
            .trim_ascii()
            .first()
            .is_some_and(|c| c.is_ascii_digit() || *c == b'-');
        if ok && bare_number && serde_json::from_slice::<serde_json::Value>(line).is_err() {
            ambiguous += 1;
        } else if ok {
            good += 1;
        } else {
            bad += 1;
        }
    }
    assert_eq!(
        s.records + s.bad,
        good + bad + ambiguous,
        "every non-blank line is one record"
    );
    assert!(
        (good..=good + ambiguous).contains(&s.records),
        "good records: indexer {} vs oracle {good} (+{ambiguous} ambiguous)",
        s.records
    );
});
