//! Avro object container reading (header, schema, codecs null/deflate/snappy/zstandard, blocks,
//! sync markers): no panic, sound offsets, and the same result however reads are chunked.
#![no_main]

use export_fetcher::index::Options;
use export_fetcher::manifest::Format;
use fuzz_support::{capacity_from, index_twice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&b, body)) = data.split_first() else {
        return;
    };
    let opts = Options {
        offset_interval: 2,
        max_record_bytes: 64 * 1024,
        budget: export_fetcher::decode::Budget::default(),
    };
    let s = index_twice(Format::Avro, None, body, capacity_from(b), &opts);
    if s.fatal.is_none() {
        // A container that was read to its end has a schema with named top-level fields.
        assert!(s.columns.is_some(), "Avro read to its end without columns");
    }
});
