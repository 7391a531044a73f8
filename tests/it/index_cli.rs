//! `export-fetcher index` end to end on generated Braze data.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------------

/// Braze's own documented example key.
const API_ZIP_KEY: &str = "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2019-04-25/d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807/114f0226319130e1a4770f2602b5639a.zip";
const API_GZ_KEY: &str = "segment-export/5e9f1c2a-7b3d-4e8f-9a0b-1c2d3e4f5a6b/2024-01-03/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0-1704189600/9b2e4f6a8c0d1e3f5a7b9c1d3e5f7a9b.gz";
const API_GZ_PART: &str = "9b2e4f6a8c0d1e3f5a7b9c1d3e5f7a9b";
const DASH_KEY: &str =
    "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2024-01-02/users-8f3kq2lz7x.zip";
const CURRENTS_KEY: &str = "currents-export/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro";
const CURRENTS_PART: &str =
    "dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro";

fn api_zip_braze() -> Value {
    json!({
        "segment_id": "abc56c0c-rd4a-pb0a-870pdf4db07q",
        "date": "2019-04-25",
        "export_id": "d9696570-dfb7-45ae-baa2-25e302r2da27",
        "object_prefix": "d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807",
        "requested_at": "2019-04-23T18:40:07Z",
    })
}

fn api_gz_braze() -> Value {
    json!({
        "segment_id": "5e9f1c2a-7b3d-4e8f-9a0b-1c2d3e4f5a6b",
        "date": "2024-01-03",
        "export_id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        "object_prefix": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0-1704189600",
        "requested_at": "2024-01-02T10:00:00Z",
    })
}

fn braze_of(run: &Run) -> Value {
    run.m().get("braze").cloned().unwrap_or_else(|| json!({}))
}

fn manifest_key(key: &str) -> String {
    format!("export-fetcher/manifests/{key}.manifest.json")
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Runs `index` on `bytes` as the object `key`; the manifest must be `complete`.
fn index_complete(bytes: &[u8], key: &str, env: &[(&str, &str)]) -> Run {
    let run = index_bytes(bytes, key, env);
    run.assert_status("complete");
    run
}

/// Checks the manifest's `kind`, then its `compression` (each message starts with `ctx`).
#[track_caller]
fn assert_kind_and_compression(run: &Run, kind: &str, compression: &str, ctx: &str) {
    assert_eq!(run.m()["kind"], kind, "{ctx}{}", run.describe());
    assert_eq!(
        run.m()["compression"],
        compression,
        "{ctx}{}",
        run.describe()
    );
}

/// Whether a top-level error of the run names the part `name`.
fn errors_name(run: &Run, name: &str) -> bool {
    run.errors().iter().any(|e| e["part"] == name)
}

/// No part file under `out` (the message is `what` and every file there).
#[track_caller]
fn assert_no_parts_written(out: &Path, what: &str) {
    assert!(
        walk_files(&out.join("export-fetcher/parts")).is_empty(),
        "{what}{:?}",
        walk_files(out)
    );
}

/// Checks a text part against what was generated.
fn assert_text_part(run: &Run, name: &str, exp: &TextPart, format: &str, compressed: u64) {
    let p = run.part(name);
    let ctx = run.describe();
    assert_eq!(p["format"], format, "part {name} format; {ctx}");
    assert_eq!(
        p["records"],
        exp.good_records() as u64,
        "part {name} records; {ctx}"
    );
    assert_eq!(
        p["bytes"],
        exp.bytes.len() as u64,
        "part {name} bytes; {ctx}"
    );
    assert_eq!(
        p["sha256"],
        sha256_hex(&exp.bytes),
        "part {name} sha256; {ctx}"
    );
    assert_eq!(
        p["compressed_bytes"], compressed,
        "part {name} compressed_bytes; {ctx}"
    );
    if format == "jsonl" || format == "csv" {
        assert_eq!(
            str_vec(&p["columns"]),
            exp.columns,
            "part {name} columns; {ctx}"
        );
    }
}

fn assert_source(run: &Run, key: &str, size: usize) {
    let m = run.m();
    assert_eq!(m["source"]["key"], key, "source.key; {}", run.describe());
    assert_eq!(
        m["source"]["size"],
        size as u64,
        "source.size; {}",
        run.describe()
    );
    assert_eq!(
        m["manifest_key"],
        manifest_key(key),
        "manifest_key; {}",
        run.describe()
    );
}

fn members_ref(members: &[(String, TextPart)]) -> Vec<(&str, &[u8])> {
    members
        .iter()
        .map(|(n, p)| (n.as_str(), p.bytes.as_slice()))
        .collect()
}

fn api_members(seed: u64, sizes: &[usize]) -> Vec<(String, TextPart)> {
    let mut rng = Rng::new(seed);
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            (
                format!("{}.txt", rng.hex(32)),
                users_jsonl(seed * 100 + k as u64, n),
            )
        })
        .collect()
}

/// API-export members of `sizes` records (generated from `seed`), zipped by `zip`.
fn api_zip(
    seed: u64,
    sizes: &[usize],
    zip: impl FnOnce(&[(&str, &[u8])]) -> Vec<u8>,
) -> (Vec<(String, TextPart)>, Vec<u8>) {
    let members = api_members(seed, sizes);
    let bytes = zip(&members_ref(&members));
    (members, bytes)
}

/// An API-export zip of two members (from `seed`), member `bad` spoiled by `spoil`, must be
/// `failed` with a top-level error naming that member (the message quotes the errors when
/// `quote_errors`).
#[track_caller]
fn assert_spoiled_api_zip_fails(
    seed: u64,
    bad: usize,
    method: zip::CompressionMethod,
    quote_errors: bool,
    spoil: impl FnOnce(Vec<u8>, &str) -> Vec<u8>,
) {
    let members = api_members(seed, &[10, 12]);
    let bad = members[bad].0.clone();
    let zip = spoil(zip_of(&members_ref(&members), method, false), &bad);
    let run = index_bytes(&zip, API_ZIP_KEY, &[]);
    let text = run.assert_failed();
    let quoted = if quote_errors {
        format!("{text}; ")
    } else {
        String::new()
    };
    assert!(
        errors_name(&run, &bad),
        "error names {bad}; {quoted}{}",
        run.describe()
    );
}

/// Checks an API-export zip end to end (kind, braze, compression, every member).
fn check_api_zip(zip: &[u8], members: &[(String, TextPart)]) -> Run {
    let run = index_complete(zip, API_ZIP_KEY, &[]);
    let m = run.m();
    assert_kind_and_compression(&run, "api_user_export", "zip", "");
    assert_eq!(braze_of(&run), api_zip_braze(), "braze; {}", run.describe());
    assert_source(&run, API_ZIP_KEY, zip.len());
    let sizes = zip_compressed_sizes(zip);
    assert_eq!(
        run.parts().len(),
        members.len(),
        "one part per member; {}",
        run.describe()
    );
    let names: Vec<String> = run
        .parts()
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .collect();
    let expected_names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names,
        expected_names,
        "part names in archive order; {}",
        run.describe()
    );
    for (name, exp) in members {
        let csize = sizes.iter().find(|(n, _, _)| n == name).unwrap().1;
        assert_text_part(&run, name, exp, "jsonl", csize);
        assert_eq!(
            offsets(run.part(name)),
            vec![(0, 0)],
            "default OFFSET_INTERVAL offsets; {}",
            run.describe()
        );
        assert!(
            run.part(name).get("output").is_none(),
            "no output without --out; {}",
            run.describe()
        );
    }
    let total: usize = members.iter().map(|(_, p)| p.good_records()).sum();
    assert_eq!(m["totals"]["records"], total as u64, "{}", run.describe());
    run
}

// ---------------------------------------------------------------------------------------------
// API user exports
// ---------------------------------------------------------------------------------------------

#[test]
fn api_export_zip_deflated_members_are_indexed() {
    let (members, zip) = api_zip(1, &[40, 25, 33], |m| zip_of(m, DEFLATED, false));
    check_api_zip(&zip, &members);
}

#[test]
fn api_export_zip_stored_members_are_indexed() {
    let (members, zip) = api_zip(2, &[12, 30], |m| zip_of(m, STORED, false));
    check_api_zip(&zip, &members);
}

#[test]
fn api_export_zip_streaming_data_descriptors_are_indexed() {
    let (members, zip) = api_zip(3, &[20, 21, 22], zip_streaming);
    assert_ne!(
        zip[6] & 0x08,
        0,
        "fixture self-check: first member must use a data descriptor"
    );
    check_api_zip(&zip, &members);
}

#[test]
fn api_export_zip64_members_are_indexed() {
    let (members, zip) = api_zip(4, &[15, 16], |m| zip_of(m, DEFLATED, true));
    check_api_zip(&zip, &members);
}

#[test]
fn zip_directory_entries_are_skipped() {
    let members = vec![
        ("exports/2024/a.txt".to_string(), users_jsonl(50, 10)),
        ("exports/2024/b.txt".to_string(), users_jsonl(51, 11)),
    ];
    let zip = zip_with_dirs(&members_ref(&members));
    assert_eq!(
        zip_compressed_sizes(&zip).iter().filter(|e| e.2).count(),
        3,
        "fixture self-check: 3 directory entries"
    );
    check_api_zip(&zip, &members);
}

#[test]
fn empty_zip_is_complete_with_no_parts() {
    let zip = empty_zip();
    let run = index_complete(&zip, API_ZIP_KEY, &[]);
    assert_eq!(run.m()["compression"], "zip", "{}", run.describe());
    assert_eq!(run.m()["kind"], "api_user_export", "{}", run.describe());
    assert!(run.parts().is_empty(), "{}", run.describe());
    assert_eq!(
        run.m()["totals"],
        json!({"parts": 0, "records": 0, "bytes": 0, "compressed_bytes": 0}),
        "{}",
        run.describe()
    );
    assert_source(&run, API_ZIP_KEY, 22);
}

#[test]
fn api_export_gzip_is_one_part_named_without_suffix() {
    let part = users_jsonl(5, 57);
    let gz = gzip(&part.bytes);
    let run = index_complete(&gz, API_GZ_KEY, &[]);
    assert_kind_and_compression(&run, "api_user_export", "gzip", "");
    assert_eq!(braze_of(&run), api_gz_braze(), "braze; {}", run.describe());
    assert_source(&run, API_GZ_KEY, gz.len());
    assert_eq!(run.parts().len(), 1, "{}", run.describe());
    assert_text_part(&run, API_GZ_PART, &part, "jsonl", gz.len() as u64);
}

#[test]
fn gzip_multi_member_counts_all_records() {
    let part = users_jsonl(6, 50);
    let split = part.starts[30];
    let gz = gzip_multi(&part.bytes[..split], &part.bytes[split..]);
    let run = index_complete(&gz, API_GZ_KEY, &[]);
    assert_eq!(run.m()["compression"], "gzip", "{}", run.describe());
    assert_text_part(&run, API_GZ_PART, &part, "jsonl", gz.len() as u64);
}

#[test]
fn zstd_multi_frame_counts_all_records() {
    let part = users_jsonl(7, 45);
    let (a, b) = (part.starts[10], part.starts[33]);
    let zst = zstd_multi(&[&part.bytes[..a], &part.bytes[a..b], &part.bytes[b..]]);
    let key = "exports/users-2024-01-02.jsonl.zst";
    let run = index_complete(&zst, key, &[]);
    assert_eq!(run.m()["compression"], "zstd", "{}", run.describe());
    assert_eq!(run.m()["kind"], "unknown", "{}", run.describe());
    assert_source(&run, key, zst.len());
    assert_text_part(
        &run,
        "users-2024-01-02.jsonl",
        &part,
        "jsonl",
        zst.len() as u64,
    );
}

#[test]
fn compression_suffixes_are_removed_from_part_names() {
    let part = prose_lines(9);
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("x/notes.txt.gz", gzip(&part.bytes), "notes.txt", "gzip"),
        ("x/notes.txt.gzip", gzip(&part.bytes), "notes.txt", "gzip"),
        (
            "x/notes.log.zst",
            zstd_frame(&part.bytes),
            "notes.log",
            "zstd",
        ),
        (
            "x/notes.log.zstd",
            zstd_frame(&part.bytes),
            "notes.log",
            "zstd",
        ),
        ("x/y/notes", gzip(&part.bytes), "notes", "gzip"),
    ];
    for (key, bytes, name, compression) in cases {
        let run = index_complete(&bytes, key, &[]);
        assert_eq!(
            run.m()["compression"],
            compression,
            "key {key}; {}",
            run.describe()
        );
        assert_text_part(&run, name, &part, "lines", bytes.len() as u64);
    }
}

#[test]
fn gz_key_holding_plain_text_is_compression_none() {
    let part = users_jsonl(8, 19);
    let run = index_complete(&part.bytes, API_GZ_KEY, &[]);
    assert_eq!(
        run.m()["compression"],
        "none",
        "bytes decide, not the extension; {}",
        run.describe()
    );
    assert_eq!(run.m()["kind"], "api_user_export", "{}", run.describe());
    assert_eq!(braze_of(&run), api_gz_braze(), "{}", run.describe());
    // The object is not compressed, so `.gz` is not a compression suffix here: the part keeps
    // the file's full name.
    let name = API_GZ_KEY.rsplit('/').next().unwrap();
    assert_text_part(&run, name, &part, "jsonl", part.bytes.len() as u64);
}

#[test]
fn jsonl_offsets_point_at_record_starts() {
    let part = users_jsonl(9, 350);
    let gz = gzip(&part.bytes);
    let run = index_complete(&gz, API_GZ_KEY, &[("OFFSET_INTERVAL", "100")]);
    let p = run.part(API_GZ_PART);
    let got = offsets(p);
    assert_eq!(
        got,
        part.expected_offsets(100),
        "jsonl offsets; {}",
        run.describe()
    );
    assert_eq!(got.len(), 4, "{}", run.describe());
    for (rec, off) in &got[1..] {
        let at = *off as usize;
        assert_eq!(
            part.bytes[at - 1],
            b'\n',
            "offset of record {rec} must follow a newline"
        );
        let line_end = at + part.bytes[at..].iter().position(|&b| b == b'\n').unwrap();
        let line: Value = serde_json::from_slice(&part.bytes[at..line_end]).unwrap();
        assert_eq!(
            line["external_id"],
            format!("user-{rec:06}"),
            "offset points at record {rec}"
        );
    }
}

#[test]
fn jsonl_bad_lines_make_partial_with_record_and_line() {
    let part = users_jsonl_with_bad_lines(10);
    let gz = gzip(&part.bytes);
    let run = index_bytes(&gz, API_GZ_KEY, &[]);
    run.assert_status("partial");
    assert!(!run.stderr.trim().is_empty(), "{}", run.describe());
    assert_text_part(&run, API_GZ_PART, &part, "jsonl", gz.len() as u64);
    let errors = run.part(API_GZ_PART)["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        errors.len(),
        2,
        "two bad records listed; {}",
        run.describe()
    );
    for (e, &ord) in errors.iter().zip(&part.bad) {
        assert_eq!(
            e["record"],
            ord as u64,
            "record ordinal counts bad records, not blank lines; {}",
            run.describe()
        );
        assert_eq!(
            e["line"],
            part.lines[ord] as u64,
            "1-based line number (blank line included); {}",
            run.describe()
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
            "{}",
            run.describe()
        );
    }
    assert_eq!(
        (part.bad.clone(), part.lines[7], part.lines[11]),
        (vec![7, 11], 9, 13),
        "fixture self-check"
    );
}

#[test]
fn jsonl_offsets_count_bad_records_and_skip_blank_lines() {
    let part = users_jsonl_with_bad_lines(12);
    let gz = gzip(&part.bytes);
    let run = index_bytes(&gz, API_GZ_KEY, &[("OFFSET_INTERVAL", "5")]);
    run.assert_status("partial");
    let expected = part.expected_offsets(5);
    assert_eq!(expected.len(), 4, "fixture self-check");
    assert_eq!(
        offsets(run.part(API_GZ_PART)),
        expected,
        "ordinals include bad records, blank lines are not records; {}",
        run.describe()
    );
}

#[test]
fn gzip_multi_member_offsets_cross_the_member_boundary() {
    let part = users_jsonl(13, 50);
    let split = part.starts[25];
    let gz = gzip_multi(&part.bytes[..split], &part.bytes[split..]);
    let run = index_complete(&gz, API_GZ_KEY, &[("OFFSET_INTERVAL", "10")]);
    assert_eq!(
        offsets(run.part(API_GZ_PART)),
        part.expected_offsets(10),
        "{}",
        run.describe()
    );
}

#[test]
fn last_record_without_trailing_newline_is_counted() {
    let mut jl = users_jsonl(14, 9).bytes;
    jl.pop();
    let run = index_complete(&jl, "misc/users.ndjson", &[]);
    assert_eq!(
        run.part("users.ndjson")["records"],
        9,
        "jsonl; {}",
        run.describe()
    );

    let mut csv = engagement_report(15, 9, b',').bytes;
    csv.pop();
    let run = index_complete(&csv, "reports/r.csv", &[]);
    assert_eq!(run.part("r.csv")["records"], 9, "csv; {}", run.describe());

    let mut lines = prose_lines(9).bytes;
    lines.pop();
    let run = index_complete(&lines, "logs/l.log", &[]);
    assert_eq!(run.part("l.log")["format"], "lines", "{}", run.describe());
    assert_eq!(run.part("l.log")["records"], 9, "lines; {}", run.describe());
}

#[test]
fn default_key_is_the_file_name() {
    let part = engagement_report(11, 8, b',');
    let inp = input("campaign-report.csv", &part.bytes);
    let run = index(&inp.path, Opts::default());
    run.assert_status("complete");
    assert_source(&run, "campaign-report.csv", part.bytes.len());
    assert_eq!(run.m()["kind"], "report", "{}", run.describe());
    assert_text_part(
        &run,
        "campaign-report.csv",
        &part,
        "csv",
        part.bytes.len() as u64,
    );
}

#[test]
fn plain_key_is_not_url_decoded() {
    let part = prose_lines(3);
    let key = "uploads/a+b%20c/été report.txt";
    let run = index_complete(&part.bytes, key, &[]);
    assert_source(&run, key, part.bytes.len());
    assert_text_part(
        &run,
        "été report.txt",
        &part,
        "lines",
        part.bytes.len() as u64,
    );
}

// ---------------------------------------------------------------------------------------------
// Dashboard CSV exports
// ---------------------------------------------------------------------------------------------

#[test]
fn dashboard_csv_export_zip_of_csvs_is_indexed() {
    let members = vec![
        (
            "users-8f3kq2lz7x-0.csv".to_string(),
            dashboard_csv(
                20,
                40,
                CsvOptions {
                    bom: false,
                    crlf: false,
                },
            ),
        ),
        (
            "users-8f3kq2lz7x-1.csv".to_string(),
            dashboard_csv(
                21,
                27,
                CsvOptions {
                    bom: false,
                    crlf: true,
                },
            ),
        ),
        (
            "users-8f3kq2lz7x-2.csv".to_string(),
            dashboard_csv(
                22,
                5,
                CsvOptions {
                    bom: false,
                    crlf: false,
                },
            ),
        ),
    ];
    let zip = zip_of(&members_ref(&members), DEFLATED, false);
    let run = index_complete(&zip, DASH_KEY, &[]);
    assert_kind_and_compression(&run, "dashboard_csv_export", "zip", "");
    assert_eq!(
        braze_of(&run),
        json!({"segment_id": "abc56c0c-rd4a-pb0a-870pdf4db07q", "date": "2024-01-02"}),
        "braze; {}",
        run.describe()
    );
    assert_source(&run, DASH_KEY, zip.len());
    let sizes = zip_compressed_sizes(&zip);
    assert_eq!(run.parts().len(), 3, "{}", run.describe());
    for ((name, exp), (_, csize, _)) in members.iter().zip(&sizes) {
        assert_text_part(&run, name, exp, "csv", *csize);
        assert_eq!(run.part(name)["delimiter"], ",", "{}", run.describe());
        assert_eq!(
            str_vec(&run.part(name)["columns"])[0],
            "Appboy ID",
            "{}",
            run.describe()
        );
        assert_eq!(offsets(run.part(name)), vec![(0, 0)], "{}", run.describe());
    }
    assert!(
        String::from_utf8_lossy(&members[0].1.bytes).contains(",'-1943,'=SUM(1),'@handle,"),
        "fixture self-check"
    );
}

#[test]
fn csv_bom_is_stripped_from_columns() {
    let part = dashboard_csv(
        23,
        12,
        CsvOptions {
            bom: true,
            crlf: false,
        },
    );
    let zip = zip_of(&[("users-bom-0.csv", &part.bytes)], DEFLATED, false);
    let run = index_complete(&zip, DASH_KEY, &[]);
    let csize = zip_compressed_sizes(&zip)[0].1;
    // bytes and sha256 include the BOM (they describe the decompressed bytes as they are).
    assert_text_part(&run, "users-bom-0.csv", &part, "csv", csize);
    assert_eq!(
        str_vec(&run.part("users-bom-0.csv")["columns"])[0],
        "Appboy ID",
        "BOM stripped; {}",
        run.describe()
    );
}

#[test]
fn csv_offsets_point_at_data_rows() {
    let part = dashboard_csv(
        24,
        350,
        CsvOptions {
            bom: false,
            crlf: false,
        },
    );
    let zip = zip_of(&[("users-big-0.csv", &part.bytes)], DEFLATED, false);
    let run = index_complete(&zip, DASH_KEY, &[("OFFSET_INTERVAL", "100")]);
    let p = run.part("users-big-0.csv");
    assert_eq!(
        p["records"],
        350,
        "quoted newlines do not split rows; {}",
        run.describe()
    );
    let got = offsets(p);
    assert_eq!(
        got,
        part.expected_offsets(100),
        "csv offsets (row starts, not line starts); {}",
        run.describe()
    );
    // the quoted multi-line cells make row starts differ from "every Nth line"
    assert!(
        part.lines[100] > 102,
        "fixture self-check: quoted newlines present"
    );
}

#[test]
fn csv_crlf_offsets_point_after_the_line_break() {
    let part = dashboard_csv(
        26,
        250,
        CsvOptions {
            bom: false,
            crlf: true,
        },
    );
    let zip = zip_of(&[("users-crlf-0.csv", &part.bytes)], DEFLATED, false);
    let run = index_complete(&zip, DASH_KEY, &[("OFFSET_INTERVAL", "100")]);
    let got = offsets(run.part("users-crlf-0.csv"));
    assert_eq!(
        got,
        part.expected_offsets(100),
        "row starts after CRLF; {}",
        run.describe()
    );
    for (_, off) in &got[1..] {
        assert_eq!(
            &part.bytes[*off as usize - 2..*off as usize],
            b"\r\n",
            "fixture self-check"
        );
    }
    assert_eq!(
        str_vec(&run.part("users-crlf-0.csv")["columns"])
            .last()
            .unwrap(),
        "favorite_quote",
        "no CR in the last column; {}",
        run.describe()
    );
}

#[test]
fn csv_wrong_field_count_rows_make_partial() {
    let part = dashboard_csv_with_bad_rows(25);
    let zip = zip_of(&[("users-bad-0.csv", &part.bytes)], DEFLATED, false);
    let run = index_bytes(&zip, DASH_KEY, &[]);
    run.assert_status("partial");
    let csize = zip_compressed_sizes(&zip)[0].1;
    assert_text_part(&run, "users-bad-0.csv", &part, "csv", csize);
    let errors = run.part("users-bad-0.csv")["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 2, "{}", run.describe());
    for (e, &ord) in errors.iter().zip(&part.bad) {
        assert_eq!(e["record"], ord as u64, "{}", run.describe());
        assert_eq!(
            e["line"],
            part.lines[ord] as u64,
            "line where the row starts; {}",
            run.describe()
        );
    }
}

#[test]
fn dashboard_single_column_csv_is_still_csv() {
    let body = b"user_id\n'-1943\nuser-2\n'+33612345678\n";
    let zip = zip_of(&[("users-emails-0.csv", body)], DEFLATED, false);
    let run = index_complete(&zip, DASH_KEY, &[]);
    let p = run.part("users-emails-0.csv");
    assert_eq!(
        p["format"],
        "csv",
        "dashboard exports are always csv; {}",
        run.describe()
    );
    assert_eq!(p["records"], 3, "{}", run.describe());
    assert_eq!(
        str_vec(&p["columns"]),
        vec!["user_id"],
        "{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// Engagement reports
// ---------------------------------------------------------------------------------------------

#[test]
fn engagement_report_each_delimiter_is_detected() {
    for (k, (delim, label)) in [
        (b',', "comma"),
        (b';', "semicolon"),
        (b':', "colon"),
        (b'|', "pipe"),
        (b'\t', "tab"),
    ]
    .into_iter()
    .enumerate()
    {
        let part = engagement_report(30 + k as u64, 25, delim);
        let key = format!("reports/engagement/campaigns-2024-01-02-{label}.csv");
        let run = index_complete(&part.bytes, &key, &[]);
        assert_kind_and_compression(&run, "report", "none", &format!("{label}; "));
        let name = format!("campaigns-2024-01-02-{label}.csv");
        assert_text_part(&run, &name, &part, "csv", part.bytes.len() as u64);
        assert_eq!(
            run.part(&name)["delimiter"],
            (delim as char).to_string(),
            "{label}; {}",
            run.describe()
        );
        let braze = braze_of(&run);
        assert!(
            braze.as_object().is_some_and(|o| o.is_empty()),
            "report carries no braze fields; {}",
            run.describe()
        );
    }
}

#[test]
fn engagement_report_gzip_and_zip_compression() {
    let semi = engagement_report(40, 30, b';');
    let gz = gzip(&semi.bytes);
    let key = "reports/engagement/canvas-2024-01-02.csv.gz";
    let run = index_complete(&gz, key, &[]);
    assert_kind_and_compression(&run, "report", "gzip", "");
    assert_text_part(&run, "canvas-2024-01-02.csv", &semi, "csv", gz.len() as u64);
    assert_eq!(
        run.part("canvas-2024-01-02.csv")["delimiter"],
        ";",
        "{}",
        run.describe()
    );

    let members = vec![
        ("campaigns.csv".to_string(), engagement_report(41, 22, b'|')),
        ("canvases.csv".to_string(), engagement_report(42, 9, b'|')),
    ];
    let zip = zip_of(&members_ref(&members), DEFLATED, false);
    let key = "reports/engagement/engagement-2024-01-02.zip";
    let run = index_complete(&zip, key, &[]);
    assert_kind_and_compression(&run, "report", "zip", "");
    let sizes = zip_compressed_sizes(&zip);
    for ((name, exp), (_, csize, _)) in members.iter().zip(&sizes) {
        assert_text_part(&run, name, exp, "csv", *csize);
        assert_eq!(run.part(name)["delimiter"], "|", "{}", run.describe());
    }
}

// ---------------------------------------------------------------------------------------------
// Currents
// ---------------------------------------------------------------------------------------------

fn assert_avro_part(run: &Run, name: &str, avro: &AvroFile) {
    let p = run.part(name);
    let ctx = run.describe();
    assert_eq!(p["format"], "avro", "{ctx}");
    assert_eq!(
        p["records"], avro.records as u64,
        "records = sum of block counts; {ctx}"
    );
    assert_eq!(p["bytes"], avro.bytes.len() as u64, "{ctx}");
    assert_eq!(p["compressed_bytes"], avro.bytes.len() as u64, "{ctx}");
    assert_eq!(p["sha256"], sha256_hex(&avro.bytes), "{ctx}");
    assert_eq!(
        str_vec(&p["columns"]),
        AVRO_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        "{ctx}"
    );
}

#[test]
fn currents_avro_each_codec_is_indexed() {
    for (k, codec) in ["null", "deflate", "snappy", "zstandard"]
        .into_iter()
        .enumerate()
    {
        let avro = currents_avro(60 + k as u64, codec, 130, 50);
        assert_eq!(avro.blocks.len(), 3, "fixture self-check");
        let run = index_complete(&avro.bytes, CURRENTS_KEY, &[]);
        assert_kind_and_compression(&run, "currents", "none", &format!("codec {codec}; "));
        assert_eq!(
            braze_of(&run),
            json!({"integration_id": "69cadaaed2d51b7c75b1a3e5", "cluster": "prod-01", "event_type": "users.messages.email.Send",
                   "date_hour": "2025-04-01-17", "currents_version": 6}),
            "codec {codec}; {}",
            run.describe()
        );
        assert_source(&run, CURRENTS_KEY, avro.bytes.len());
        assert_eq!(run.parts().len(), 1, "{}", run.describe());
        assert_avro_part(&run, CURRENTS_PART, &avro);
    }
}

#[test]
fn currents_avro_offsets_point_at_block_starts() {
    let avro = currents_avro(70, "deflate", 280, 40);
    let run = index_complete(&avro.bytes, CURRENTS_KEY, &[("OFFSET_INTERVAL", "100")]);
    let expected = avro.expected_offsets(100);
    assert_eq!(
        expected.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![0, 120, 200],
        "fixture self-check"
    );
    assert_eq!(
        offsets(run.part(CURRENTS_PART)),
        expected,
        "block-start offsets; {}",
        run.describe()
    );
}

#[test]
fn currents_older_key_layouts_are_recognised() {
    let avro = currents_avro(71, "null", 10, 10);
    let older = "currents/dataexport.prod-03.S3.integration.5d9f3b2a1c0e4f6a7b8c9d0e/event_type=users.behaviors.CustomEvent/date=2022-11-30-23/310/us-03/dataexport.prod-03.S3.integration.5d9f3b2a1c0e4f6a7b8c9d0e+1+0000012345.avro";
    let run = index_complete(&avro.bytes, older, &[]);
    assert_eq!(run.m()["kind"], "currents", "{}", run.describe());
    assert_eq!(
        braze_of(&run),
        json!({"integration_id": "5d9f3b2a1c0e4f6a7b8c9d0e", "cluster": "prod-03", "event_type": "users.behaviors.CustomEvent", "date_hour": "2022-11-30-23"}),
        "{}",
        run.describe()
    );
    assert_avro_part(
        &run,
        "dataexport.prod-03.S3.integration.5d9f3b2a1c0e4f6a7b8c9d0e+1+0000012345.avro",
        &avro,
    );

    let oldest = "currents/dataexport.S3.integration.58b7f1a2c3d4e5f6a7b8c9d0/event_type=users.messages.pushnotification.Open/date=2019-06-10-08/118/0/dataexport.S3.integration.58b7f1a2c3d4e5f6a7b8c9d0+2+0000035465.avro";
    let run = index_complete(&avro.bytes, oldest, &[]);
    assert_eq!(run.m()["kind"], "currents", "{}", run.describe());
    assert_eq!(
        braze_of(&run),
        json!({"integration_id": "58b7f1a2c3d4e5f6a7b8c9d0", "event_type": "users.messages.pushnotification.Open", "date_hour": "2019-06-10-08"}),
        "oldest layout has no cluster; {}",
        run.describe()
    );
}

#[test]
fn avro_part_is_written_as_is() {
    let avro = currents_avro(72, "snappy", 60, 25);
    let (run, out) = index_bytes_out(&avro.bytes, CURRENTS_KEY, &[]);
    run.assert_status("complete");
    let p = run.part(CURRENTS_PART);
    let key = format!("export-fetcher/parts/{CURRENTS_KEY}/{CURRENTS_PART}");
    assert_eq!(
        p["output"],
        json!({"bucket": out.path().display().to_string(), "key": key}),
        "{}",
        run.describe()
    );
    let written = std::fs::read(out.path().join(&key))
        .unwrap_or_else(|e| panic!("{key}: {e}; {}", run.describe()));
    assert!(
        written == avro.bytes,
        "Avro part must be the container bytes as-is"
    );
}

#[test]
fn avro_truncated_in_last_block_is_failed() {
    let avro = currents_avro(73, "null", 120, 40);
    let last = *avro.blocks.last().unwrap();
    let cut = &avro.bytes[..last.data_start + last.data_len / 2];
    let (run, out) = index_bytes_out(cut, CURRENTS_KEY, &[]);
    run.assert_failed();
    let p = run.part(CURRENTS_PART);
    assert!(
        p["errors"].as_array().is_some_and(|a| !a.is_empty()),
        "failed part lists its errors; {}",
        run.describe()
    );
    assert!(
        !out.path()
            .join(format!(
                "export-fetcher/parts/{CURRENTS_KEY}/{CURRENTS_PART}"
            ))
            .exists(),
        "failed part left on disk; {}",
        run.describe()
    );
}

#[test]
fn avro_corrupted_sync_marker_is_failed() {
    let mut avro = currents_avro(74, "deflate", 120, 40);
    let sync = avro.blocks[1].sync_start;
    avro.bytes[sync + 7] ^= 0xFF;
    let run = index_bytes(&avro.bytes, CURRENTS_KEY, &[]);
    run.assert_failed();
    assert!(
        run.part(CURRENTS_PART)["errors"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "failed part lists its errors; {}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// Message archives
// ---------------------------------------------------------------------------------------------

#[test]
fn message_archive_is_one_json_record() {
    let cases = [
        (
            "email",
            "5f8e9b3c2a1d4e6f7a8b9c0d",
            Some("4a2c8e10-9b7d-4f3e-a1c2-b3d4e5f6a7b8"),
            true,
        ),
        (
            "push",
            "6a1b2c3d4e5f6a7b8c9d0e1f",
            Some("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"),
            false,
        ),
        ("sms", "7c2d3e4f5a6b7c8d9e0f1a2b", None, false),
    ];
    for (k, (channel, dispatch, campaign, pretty)) in cases.into_iter().enumerate() {
        let json_bytes = message_archive_json(80 + k as u64, channel, dispatch, campaign, pretty);
        let gz = gzip(&json_bytes);
        let key = format!(
            "sent_messages/{channel}/0cc175b9c0f1b6a831c399e269772661/{}/{dispatch}.json.gz",
            campaign.unwrap_or("unassociated")
        );
        let run = index_complete(&gz, &key, &[]);
        assert_kind_and_compression(&run, "message_archive", "gzip", "");
        assert_eq!(
            braze_of(&run),
            json!({"channel": channel, "dispatch_id": dispatch}),
            "{}",
            run.describe()
        );
        assert_source(&run, &key, gz.len());
        let name = format!("{dispatch}.json");
        let p = run.part(&name);
        assert_eq!(p["format"], "json", "pretty={pretty}; {}", run.describe());
        assert_eq!(p["records"], 1, "{}", run.describe());
        assert_eq!(p["bytes"], json_bytes.len() as u64, "{}", run.describe());
        assert_eq!(p["sha256"], sha256_hex(&json_bytes), "{}", run.describe());
        assert_eq!(p["compressed_bytes"], gz.len() as u64, "{}", run.describe());
    }
}

// ---------------------------------------------------------------------------------------------
// Other content
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_text_is_lines() {
    let part = prose_lines(37);
    let key = "logs/braze-sync.log";
    let run = index_complete(&part.bytes, key, &[]);
    assert_kind_and_compression(&run, "unknown", "none", "");
    assert_text_part(
        &run,
        "braze-sync.log",
        &part,
        "lines",
        part.bytes.len() as u64,
    );
}

#[test]
fn non_utf8_bytes_are_binary() {
    let mut bytes = vec![0x00, 0x01, 0xFE, 0xFF];
    bytes.extend_from_slice(&Rng::new(90).bytes(1000));
    let key = "uploads/blob.bin";
    let run = index_complete(&bytes, key, &[]);
    assert_kind_and_compression(&run, "unknown", "none", "");
    let p = run.part("blob.bin");
    assert_eq!(p["format"], "binary", "{}", run.describe());
    assert_eq!(p["records"], 0, "{}", run.describe());
    assert_eq!(p["bytes"], bytes.len() as u64, "{}", run.describe());
    assert_eq!(p["sha256"], sha256_hex(&bytes), "{}", run.describe());
}

#[test]
fn pretty_json_object_under_unknown_key_is_json() {
    let bytes = message_archive_json(91, "email", "x", None, true);
    let run = index_complete(&bytes, "misc/settings.json", &[]);
    assert_eq!(run.m()["kind"], "unknown", "{}", run.describe());
    let p = run.part("settings.json");
    assert_eq!(p["format"], "json", "{}", run.describe());
    assert_eq!(p["records"], 1, "{}", run.describe());
}

#[test]
fn jsonl_under_unknown_key_is_unknown_kind() {
    let part = users_jsonl(92, 14);
    let run = index_complete(&part.bytes, "misc/users.ndjson", &[]);
    assert_eq!(run.m()["kind"], "unknown", "{}", run.describe());
    assert!(
        braze_of(&run).as_object().is_some_and(|o| o.is_empty()),
        "{}",
        run.describe()
    );
    assert_text_part(
        &run,
        "users.ndjson",
        &part,
        "jsonl",
        part.bytes.len() as u64,
    );
}

// ---------------------------------------------------------------------------------------------
// Broken streams and archives
// ---------------------------------------------------------------------------------------------

#[test]
fn gzip_truncated_is_failed() {
    let part = users_jsonl(100, 60);
    let gz = gzip(&part.bytes);
    let cut = &gz[..gz.len() / 2];
    let (run, out) = index_bytes_out(cut, API_GZ_KEY, &[]);
    run.assert_failed();
    assert_eq!(run.m()["compression"], "gzip", "{}", run.describe());
    assert!(
        !out.path()
            .join(format!("export-fetcher/parts/{API_GZ_KEY}/{API_GZ_PART}"))
            .exists(),
        "failed part left on disk; {}",
        run.describe()
    );
    assert_no_parts_written(out.path(), "no part files; ");
    // the failed manifest itself is still written
    let mkey = manifest_key(API_GZ_KEY);
    let text = std::fs::read_to_string(out.path().join(&mkey))
        .unwrap_or_else(|e| panic!("{mkey}: {e}; {}", run.describe()));
    assert_eq!(
        &serde_json::from_str::<Value>(&text).unwrap(),
        run.m(),
        "manifest on disk equals the one printed"
    );
}

#[test]
fn gzip_corrupted_crc_is_failed() {
    let part = users_jsonl(101, 30);
    let mut gz = gzip(&part.bytes);
    let n = gz.len();
    gz[n - 8] ^= 0x5A; // CRC-32 trailer
    let run = index_bytes(&gz, API_GZ_KEY, &[]);
    run.assert_failed();
}

#[test]
fn gzip_multi_member_with_truncated_second_member_is_failed() {
    let part = users_jsonl(102, 30);
    let split = part.starts[20];
    let first = gzip(&part.bytes[..split]);
    let mut gz = first.clone();
    let second = gzip(&part.bytes[split..]);
    gz.extend_from_slice(&second[..second.len() - 12]);
    let run = index_bytes(&gz, API_GZ_KEY, &[]);
    run.assert_failed();
}

#[test]
fn zstd_truncated_is_failed() {
    let part = users_jsonl(103, 60);
    let zst = zstd_frame(&part.bytes);
    let cut = &zst[..zst.len() - zst.len() / 3];
    let run = index_bytes(cut, "exports/users.jsonl.zst", &[]);
    run.assert_failed();
    assert_eq!(run.m()["compression"], "zstd", "{}", run.describe());
}

#[test]
fn zip_crc_mismatch_is_failed() {
    let members = api_members(110, &[10, 11, 12]);
    let bad = members[1].0.clone();
    let zip = zip_corrupt_member_data(zip_of(&members_ref(&members), STORED, false), &bad);
    let (run, out) = index_bytes_out(&zip, API_ZIP_KEY, &[]);
    run.assert_failed();
    assert!(
        errors_name(&run, &bad),
        "top-level error names the member {bad}; {}",
        run.describe()
    );
    // the good members are still listed, exact
    let sizes = zip_compressed_sizes(&zip);
    for (k, (name, exp)) in members.iter().enumerate() {
        if k == 1 {
            let p = run.part(name);
            assert!(
                p["errors"].as_array().is_some_and(|a| !a.is_empty()),
                "failed member lists errors; {}",
                run.describe()
            );
            assert!(
                !out.path()
                    .join(format!("export-fetcher/parts/{API_ZIP_KEY}/{name}"))
                    .exists(),
                "failed part left on disk; {}",
                run.describe()
            );
        } else {
            assert_text_part(&run, name, exp, "jsonl", sizes[k].1);
            let written = std::fs::read(
                out.path()
                    .join(format!("export-fetcher/parts/{API_ZIP_KEY}/{name}")),
            )
            .unwrap_or_else(|e| panic!("good member {name} not written: {e}; {}", run.describe()));
            assert!(
                written == exp.bytes,
                "good member {name} written byte-identical"
            );
        }
    }
}

#[test]
fn zip_declared_size_larger_than_data_is_failed() {
    assert_spoiled_api_zip_fails(111, 0, DEFLATED, true, |zip, bad| {
        zip_declare_uncompressed_size(zip, bad, 7)
    });
}

#[test]
fn zip_declared_size_smaller_than_data_is_failed() {
    assert_spoiled_api_zip_fails(112, 1, DEFLATED, false, |zip, bad| {
        zip_declare_uncompressed_size(zip, bad, -7)
    });
}

#[test]
fn zip_encrypted_member_is_failed() {
    assert_spoiled_api_zip_fails(113, 0, STORED, false, zip_mark_encrypted);
}

#[test]
fn pk_header_followed_by_garbage_is_failed() {
    let bytes = not_an_archive();
    let (run, out) = index_bytes_out(&bytes, API_ZIP_KEY, &[]);
    run.assert_failed();
    assert_eq!(run.m()["compression"], "zip", "{}", run.describe());
    assert_no_parts_written(out.path(), "");
}

/// Runs `index` on `bytes` (the file `file_name`) as `key`, with `--out` the folder `out_under`
/// of a fresh temporary directory; returns the run, that directory and the `--out` folder.
fn index_into_nested_out(
    file_name: &str,
    bytes: &[u8],
    key: &str,
    out_under: &str,
) -> (Run, tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join(out_under);
    std::fs::create_dir_all(&out).unwrap();
    let inp = input(file_name, bytes);
    let run = index(
        &inp.path,
        Opts {
            key: Some(key),
            out: Some(&out),
            env: &[],
        },
    );
    (run, root, out)
}

#[test]
fn zip_slip_member_names_stay_inside_out_dir() {
    let members: Vec<(&str, &[u8])> = vec![
        ("../../evil.txt", b"evil 1\n"),
        ("/abs/path.txt", b"evil 2\n"),
        ("C:\\win\\x.txt", b"evil 3\n"),
        ("a/../../b.txt", b"evil 4\n"),
        ("ok/normal.txt", b"fine\n"),
    ];
    let zip = zip_with_raw_names(&members);
    assert!(
        !Path::new("/abs/path.txt").exists(),
        "precondition: /abs/path.txt must not exist"
    );
    let key = "uploads/slip.zip";
    let (run, root, out) = index_into_nested_out("slip.zip", &zip, key, "deep/out");
    run.assert_status("complete");
    assert!(
        !Path::new("/abs/path.txt").exists(),
        "wrote to an absolute path; {}",
        run.describe()
    );
    let sanitized = [
        "evil.txt",
        "abs/path.txt",
        "win/x.txt",
        "a/b.txt",
        "ok/normal.txt",
    ];
    let mut expected_files = Vec::new();
    for ((name, data), clean) in members.iter().zip(sanitized) {
        let p = run.part(name);
        let okey = format!("export-fetcher/parts/{key}/{clean}");
        assert_eq!(
            p["output"],
            json!({"bucket": out.display().to_string(), "key": okey}),
            "member {name:?}; {}",
            run.describe()
        );
        let written = std::fs::read(out.join(&okey))
            .unwrap_or_else(|e| panic!("{okey}: {e}; {}", run.describe()));
        assert_eq!(written, *data, "member {name:?}");
        expected_files.push(Path::new(&okey).to_path_buf());
    }
    expected_files.push(Path::new(&manifest_key(key)).to_path_buf());
    expected_files.sort();
    assert_eq!(
        walk_files(&out),
        expected_files,
        "exactly the sanitized parts and the manifest under --out"
    );
    for f in walk_files(root.path()) {
        assert!(
            f.starts_with("deep/out"),
            "file written outside --out: {}",
            f.display()
        );
    }
}

#[test]
fn hostile_keys_never_write_outside_out_dir() {
    let part = prose_lines(4);
    for key in [
        "../../../outside/escape.txt",
        "/abs-export-fetcher-test/k.txt",
        "a/../../../../b.txt",
        "C:\\x\\..\\..\\y.txt",
    ] {
        let (run, root, _) = index_into_nested_out("object.txt", &part.bytes, key, "deep/er/out");
        assert!(
            run.code == 0 || run.code == 1,
            "key {key:?}; {}",
            run.describe()
        );
        assert!(
            !Path::new("/abs-export-fetcher-test").exists(),
            "wrote to an absolute path for key {key:?}; {}",
            run.describe()
        );
        let files = walk_files(root.path());
        assert!(
            !files.is_empty(),
            "something is written for key {key:?}; {}",
            run.describe()
        );
        for f in files {
            assert!(
                f.starts_with("deep/er/out"),
                "key {key:?} wrote outside --out: {}; {}",
                f.display(),
                run.describe()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

fn bomb() -> &'static [u8] {
    static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    B.get_or_init(|| zip_bomb(50))
}

/// Runs `index --out` on `bytes` as `key` with `env`: the manifest must be `failed`, a
/// top-level error naming `limit`.
fn index_over_limit(
    bytes: &[u8],
    key: &str,
    env: &[(&str, &str)],
    limit: &str,
) -> (Run, tempfile::TempDir) {
    let (run, out) = index_bytes_out(bytes, key, env);
    run.assert_failed();
    let top: String = run.errors().iter().map(|e| e.to_string()).collect();
    assert!(
        top.contains(limit),
        "error names the limit; {}",
        run.describe()
    );
    (run, out)
}

fn parts_bytes_on_disk(out: &Path) -> u64 {
    let parts = out.join("export-fetcher/parts");
    walk_files(&parts)
        .iter()
        .map(|f| std::fs::metadata(parts.join(f)).unwrap().len())
        .sum()
}

#[test]
fn zip_bomb_ratio_hits_max_expansion_ratio() {
    let zip = bomb();
    assert!(
        zip.len() < 200_000,
        "fixture self-check: bomb is small ({} bytes)",
        zip.len()
    );
    let (_, out) = index_over_limit(
        zip,
        "uploads/bomb.zip",
        &[("MAX_EXPANSION_RATIO", "100")],
        "MAX_EXPANSION_RATIO",
    );
    assert!(
        !out.path()
            .join("export-fetcher/parts/uploads/bomb.zip/zeros.txt")
            .exists(),
        "bomb member left on disk"
    );
    assert!(
        parts_bytes_on_disk(out.path()) < 1_000_000,
        "nothing big written: {:?}",
        walk_files(out.path())
    );
}

#[test]
fn max_expanded_bytes_limit_is_failed() {
    let env = [
        ("MAX_EXPANDED_BYTES", "1000000"),
        ("MAX_EXPANSION_RATIO", "1000000000"),
    ];
    // a zip bomb member
    let (_, out) = index_over_limit(bomb(), "uploads/bomb.zip", &env, "MAX_EXPANDED_BYTES");
    assert!(
        parts_bytes_on_disk(out.path()) <= 1_000_000,
        "nothing beyond the limit written: {:?}",
        walk_files(out.path())
    );
    assert!(
        !out.path()
            .join("export-fetcher/parts/uploads/bomb.zip/zeros.txt")
            .exists(),
        "failed member left on disk"
    );

    // a plain gzip stream
    let part = prose_lines(60_000);
    assert!(part.bytes.len() > 1_500_000, "fixture self-check");
    let gz = gzip(&part.bytes);
    let (_, out) = index_over_limit(&gz, "logs/big.log.gz", &env, "MAX_EXPANDED_BYTES");
    assert_no_parts_written(out.path(), "failed part left on disk: ");
}

#[test]
fn max_archive_entries_limit_is_failed() {
    let zip = zip_many_entries(60);
    let (_, out) = index_over_limit(
        &zip,
        "uploads/many.zip",
        &[("MAX_ARCHIVE_ENTRIES", "50")],
        "MAX_ARCHIVE_ENTRIES",
    );
    assert!(
        walk_files(&out.path().join("export-fetcher/parts")).len() <= 50,
        "{:?}",
        walk_files(out.path())
    );

    // exactly at the limit is fine
    let run = index_complete(&zip, "uploads/many.zip", &[("MAX_ARCHIVE_ENTRIES", "60")]);
    assert_eq!(run.parts().len(), 60, "{}", run.describe());
}

#[test]
fn max_object_bytes_limit_is_failed() {
    let part = users_jsonl(120, 20);
    let gz = gzip(&part.bytes);
    assert!(gz.len() > 1000, "fixture self-check");
    let (run, out) = index_over_limit(
        &gz,
        API_GZ_KEY,
        &[("MAX_OBJECT_BYTES", "1000")],
        "MAX_OBJECT_BYTES",
    );
    assert_no_parts_written(out.path(), "");
    assert_eq!(
        run.m()["source"]["size"],
        gz.len() as u64,
        "{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// --out
// ---------------------------------------------------------------------------------------------

#[test]
fn out_dir_parts_are_byte_identical_and_manifest_is_written() {
    let (members, zip) = api_zip(130, &[10, 20], |m| zip_of(m, DEFLATED, false));
    let (run, out) = index_bytes_out(&zip, API_ZIP_KEY, &[]);
    run.assert_status("complete");
    let bucket = out.path().display().to_string();
    let mut expected_files = Vec::new();
    for (name, exp) in &members {
        let key = format!("export-fetcher/parts/{API_ZIP_KEY}/{name}");
        assert_eq!(
            run.part(name)["output"],
            json!({"bucket": bucket, "key": key}),
            "{}",
            run.describe()
        );
        let written = std::fs::read(out.path().join(&key))
            .unwrap_or_else(|e| panic!("{key}: {e}; {}", run.describe()));
        assert!(
            written == exp.bytes,
            "part {name} byte-identical to the generated member"
        );
        expected_files.push(Path::new(&key).to_path_buf());
    }
    let mkey = manifest_key(API_ZIP_KEY);
    let text = std::fs::read_to_string(out.path().join(&mkey))
        .unwrap_or_else(|e| panic!("{mkey}: {e}; {}", run.describe()));
    let on_disk: Value = serde_json::from_str(&text).unwrap();
    validate_manifest(&on_disk, &text);
    assert_eq!(&on_disk, run.m(), "manifest on disk equals the one printed");
    expected_files.push(Path::new(&mkey).to_path_buf());
    expected_files.sort();
    assert_eq!(
        walk_files(out.path()),
        expected_files,
        "exactly the parts and the manifest"
    );
}

#[test]
fn output_prefix_env_changes_output_keys() {
    let part = users_jsonl(131, 7);
    let gz = gzip(&part.bytes);
    let (run, out) = index_bytes_out(&gz, API_GZ_KEY, &[("OUTPUT_PREFIX", "custom/prefix/")]);
    run.assert_status("complete");
    let pkey = format!("custom/prefix/parts/{API_GZ_KEY}/{API_GZ_PART}");
    let mkey = format!("custom/prefix/manifests/{API_GZ_KEY}.manifest.json");
    assert_eq!(run.m()["manifest_key"], mkey.as_str(), "{}", run.describe());
    assert_eq!(
        run.part(API_GZ_PART)["output"]["key"],
        pkey.as_str(),
        "{}",
        run.describe()
    );
    assert!(
        std::fs::read(out.path().join(&pkey)).is_ok_and(|b| b == part.bytes),
        "part at {pkey}"
    );
    assert!(out.path().join(&mkey).is_file(), "manifest at {mkey}");
}

// ---------------------------------------------------------------------------------------------
// Usage errors
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_file_is_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist.zip");
    let run = index(&missing, Opts::default());
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(!run.stderr.trim().is_empty(), "{}", run.describe());
}

#[test]
fn unknown_flag_is_usage_error() {
    let inp = input("a.txt", b"hello\n");
    let run = run_raw(
        &[
            "index".into(),
            inp.path.display().to_string(),
            "--frobnicate".into(),
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.describe());
    let run = run_raw(&["index".into()], &[]);
    assert_eq!(run.code, 2, "missing FILE; {}", run.describe());
}
