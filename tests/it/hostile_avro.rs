//! Hostile and unusual Avro object container files through `export-fetcher index`: block codecs
//! count against the object's expansion budget, forged record counts cost no time, big blocks are
//! streamed, and values that do not fit their logical type are data like any other.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixtures::*;
use crate::support::*;

const KEY: &str = "currents-export/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro";
const PART: &str = "dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro";
const SYNC: [u8; 16] = *b"hostile-avro-syn";

/// A schema of records holding one `bytes` field.
const BYTES_RECORD: &str =
    r#"{"type":"record","name":"Blob","fields":[{"name":"data","type":"bytes"}]}"#;
/// A schema of one-byte records.
const BOOL_RECORD: &str =
    r#"{"type":"record","name":"Flag","fields":[{"name":"on","type":"boolean"}]}"#;

fn zz(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The header of an object container with `schema` and `codec`.
fn header(schema: &str, codec: &str) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    zz(2, &mut out);
    for (k, v) in [("avro.schema", schema), ("avro.codec", codec)] {
        zz(k.len() as i64, &mut out);
        out.extend_from_slice(k.as_bytes());
        zz(v.len() as i64, &mut out);
        out.extend_from_slice(v.as_bytes());
    }
    zz(0, &mut out);
    out.extend_from_slice(&SYNC);
    out
}

/// Appends one block: `count` records, `packed` its data as the codec wrote it.
fn block(out: &mut Vec<u8>, count: i64, packed: &[u8]) {
    zz(count, out);
    zz(packed.len() as i64, out);
    out.extend_from_slice(packed);
    out.extend_from_slice(&SYNC);
}

fn deflate(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn snappy(data: &[u8]) -> Vec<u8> {
    let mut p = snap::raw::Encoder::new().compress_vec(data).unwrap();
    p.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    p
}

/// `n` records of a `bytes` field of `len` zeros.
fn zero_blobs(n: usize, len: usize) -> Vec<u8> {
    let mut one = Vec::new();
    zz(len as i64, &mut one);
    one.resize(one.len() + len, 0);
    one.repeat(n)
}

/// The run failed fast because `variable` was crossed, and says so.
fn assert_limit(run: &Run, variable: &str, started: Instant) {
    run.assert_failed();
    let text = run.all_error_text();
    assert!(
        text.contains(variable),
        "the errors name {variable}; {}",
        run.describe()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}; {}",
        started.elapsed(),
        run.describe()
    );
}

#[test]
fn avro_deflate_bomb_fails_at_the_expansion_limit_fast() {
    // 16 deflate blocks, each 24 MiB of records that compress to ~24 KB: a file of under 400 KB
    // that expands to 384 MiB. Each block alone was under the old per-block cap; together they
    // cross 250x the object's size after ~100 MiB.
    let blob = zero_blobs(24, 1 << 20);
    let packed = deflate(&blob, flate2::Compression::best());
    let mut file = header(BYTES_RECORD, "deflate");
    for _ in 0..16 {
        block(&mut file, 24, &packed);
    }
    assert!(file.len() < 400_000, "{}", file.len());
    let started = Instant::now();
    let run = index_bytes(&file, KEY, &[]);
    assert_limit(&run, "MAX_EXPANSION_RATIO", started);
    let records = run.part(PART)["records"].as_u64().unwrap();
    assert!(records < 16 * 24, "{}", run.describe());
}

#[test]
fn avro_zstd_bomb_fails_at_the_expansion_limit_fast() {
    // zstd compresses zeros far better than deflate: 64 blocks of 24 MiB in a few KB.
    let blob = zero_blobs(24, 1 << 20);
    let packed = zstd::encode_all(&blob[..], 19).unwrap();
    let mut file = header(BYTES_RECORD, "zstandard");
    for _ in 0..64 {
        block(&mut file, 24, &packed);
    }
    assert!(file.len() < 100_000, "{}", file.len());
    let started = Instant::now();
    let run = index_bytes(&file, KEY, &[]);
    // The ratio cap of a file this small is the 1 MiB floor.
    assert_limit(&run, "MAX_EXPANSION_RATIO", started);
    assert_eq!(run.part(PART)["records"], 0, "{}", run.describe());
}

#[test]
fn avro_snappy_bomb_fails_at_the_expansion_limit_fast() {
    // Snappy blocks are decompressed whole, so their size is announced first: blocks that claim
    // 30 MiB each in a few bytes are charged (and refused) before anything is allocated.
    let mut forged = Vec::new();
    let mut len = 30u64 << 20;
    while len >= 0x80 {
        forged.push((len as u8) | 0x80);
        len >>= 7;
    }
    forged.push(len as u8);
    forged.extend_from_slice(&[0u8; 8]);
    let mut file = header(BYTES_RECORD, "snappy");
    for _ in 0..1000 {
        block(&mut file, 30, &forged);
    }
    let started = Instant::now();
    let run = index_bytes(&file, KEY, &[]);
    assert_limit(&run, "MAX_EXPANSION_RATIO", started);
    // Real snappy blocks (about 21x at most) count against MAX_EXPANDED_BYTES like any stream.
    let blob = zero_blobs(4, 1 << 20);
    let packed = snappy(&blob);
    let mut file = header(BYTES_RECORD, "snappy");
    for _ in 0..8 {
        block(&mut file, 4, &packed);
    }
    let started = Instant::now();
    let run = index_bytes(&file, KEY, &[("MAX_EXPANDED_BYTES", "10M")]);
    assert_limit(&run, "MAX_EXPANDED_BYTES", started);
    assert_eq!(run.part(PART)["records"], 8, "{}", run.describe());
}

#[test]
fn avro_huge_record_count_in_a_small_block_fails_fast() {
    // A block of 1,000 one-byte records that claims a trillion: decoding stops where the data
    // ends, whatever the codec.
    for (codec, packed) in [
        ("null", vec![1u8; 1000]),
        (
            "deflate",
            deflate(&[1u8; 1000], flate2::Compression::default()),
        ),
    ] {
        let mut file = header(BOOL_RECORD, codec);
        block(&mut file, 1_000_000_000_000, &packed);
        let started = Instant::now();
        let run = index_bytes(&file, KEY, &[]);
        run.assert_failed();
        assert!(
            run.all_error_text().contains("record 1000 of the block"),
            "{codec}: {}",
            run.describe()
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{codec}");
    }
    // Records of an empty record take no bytes: they are counted without being decoded, and a
    // block may claim at most 2^24 of them.
    let empty = r#"{"type":"record","name":"Nothing","fields":[]}"#;
    let mut file = header(empty, "null");
    block(&mut file, 1_000_000_000_000, &[]);
    let started = Instant::now();
    let run = index_bytes(&file, KEY, &[]);
    run.assert_failed();
    assert!(
        run.all_error_text().contains("takes no bytes"),
        "{}",
        run.describe()
    );
    let mut file = header(empty, "null");
    for _ in 0..10_000 {
        block(&mut file, 1 << 24, &[]);
    }
    let run = index_bytes(&file, KEY, &[]);
    run.assert_status("complete");
    assert_eq!(run.part(PART)["records"], 10_000u64 << 24);
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Runs `index` under `/usr/bin/time`; the run and the peak RSS in KiB.
fn index_with_peak_rss(bytes: &[u8]) -> Option<(i32, String, u64)> {
    if !std::path::Path::new("/usr/bin/time").exists() {
        return None;
    }
    let inp = input("object.avro", bytes);
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib=%M", BIN, "index"])
        .arg(&inp.path)
        .args(["--key", KEY])
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in {stderr}"));
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        rss,
    ))
}

#[test]
fn avro_64mib_block_indexes_in_bounded_memory() {
    // One deflate block of 80 MiB of Currents-like records (stored deflate blocks keep the test
    // fast; the decoder reads them like any other), as fastavro writes with a 64 MiB
    // `sync_interval`: the block is streamed, never held.
    let mut data = Vec::with_capacity(81 << 20);
    let mut records = 0u64;
    let mut rng = Rng::new(5);
    while data.len() < 80 << 20 {
        let mut r = Vec::new();
        for s in [rng.uuid(), rng.hex(24)] {
            zz(s.len() as i64, &mut r);
            r.extend_from_slice(s.as_bytes());
        }
        let props = json!({"source": "api", "n": records, "note": "x".repeat(600)}).to_string();
        zz(props.len() as i64, &mut r);
        r.extend_from_slice(props.as_bytes());
        data.extend_from_slice(&r);
        records += 1;
    }
    let schema = r#"{"type":"record","name":"Send","fields":[{"name":"id","type":"string"},
        {"name":"user_id","type":"string"},{"name":"properties","type":"string"}]}"#;
    let mut file = header(schema, "deflate");
    block(
        &mut file,
        records as i64,
        &deflate(&data, flate2::Compression::none()),
    );
    drop(data);
    let run = index_bytes(&file, KEY, &[]);
    run.assert_status("complete");
    let p = run.part(PART);
    assert_eq!(p["records"], records, "{}", run.describe());
    assert_eq!(p["columns"], json!(["id", "user_id", "properties"]));
    if let Some((code, stdout, rss)) = index_with_peak_rss(&file) {
        assert_eq!(code, 0, "{stdout}");
        assert!(
            rss < 48 << 10,
            "peak RSS {rss} KiB for an 80 MiB block: it must be streamed"
        );
    }
}

#[test]
fn avro_uuid_logical_type_with_non_uuid_value_is_complete() {
    // Values that do not fit their logical type are read as the underlying type: a `uuid` string
    // that is not a UUID, a `decimal` wider than its precision, a negative `timestamp-millis`, a
    // `duration` of any bytes.
    let schema = r#"{"type":"record","name":"Send","fields":[
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":3,"scale":2}},
        {"name":"time","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"wait","type":{"type":"fixed","name":"Wait","size":12,"logicalType":"duration"}},
        {"name":"day","type":["null",{"type":"int","logicalType":"date"}]}]}"#;
    let mut record = Vec::new();
    zz(10, &mut record);
    record.extend_from_slice(b"not-a-uuid");
    zz(12, &mut record);
    record.extend_from_slice(&[0x7f; 12]);
    zz(i64::MIN, &mut record);
    record.extend_from_slice(&[0xff; 12]);
    zz(1, &mut record);
    zz(i32::MIN as i64, &mut record);
    let mut file = header(schema, "deflate");
    block(
        &mut file,
        3,
        &deflate(&record.repeat(3), flate2::Compression::default()),
    );
    let run = index_bytes(&file, KEY, &[]);
    run.assert_status("complete");
    let p = run.part(PART);
    assert_eq!(p["records"], 3, "{}", run.describe());
    assert_eq!(p["columns"], json!(["id", "amount", "time", "wait", "day"]));
    // The same file with a broken record is still refused: only the logical types are lenient.
    let mut broken = record.repeat(3);
    broken[0] = 0x7f; // a string length of -64
    let mut file = header(schema, "deflate");
    block(
        &mut file,
        3,
        &deflate(&broken, flate2::Compression::default()),
    );
    index_bytes(&file, KEY, &[]).assert_failed();
}
