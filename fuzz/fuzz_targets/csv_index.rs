//! CSV indexing with each delimiter: no panic, sound offsets, and the same result however reads
//! are chunked (quoted newlines, CRLF, BOM, ragged rows, oversized rows).
#![no_main]

use export_fetcher::index::{Options, sniff};
use export_fetcher::manifest::Format;
use fuzz_support::{capacity_from, index_twice};
use libfuzzer_sys::fuzz_target;

const DELIMITERS: &[u8] = b",;\t|:";

fuzz_target!(|data: &[u8]| {
    let Some((&b, body)) = data.split_first() else {
        return;
    };
    let delimiter = DELIMITERS[b as usize % DELIMITERS.len()];
    let opts = Options {
        offset_interval: 2,
        max_record_bytes: 256,
        budget: export_fetcher::decode::Budget::default(),
    };
    let s = index_twice(
        Format::Csv,
        Some(delimiter),
        body,
        capacity_from(b / 5),
        &opts,
    );
    assert!(
        s.records + s.bad <= body.len() as u64,
        "more rows than bytes"
    );
    let (format, d) = sniff(body, true, None);
    if format == Format::Csv {
        assert!(DELIMITERS.contains(&d.expect("CSV has a delimiter")));
    }
});
