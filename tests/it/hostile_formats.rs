//! Hostile and unusual content formats through `export-fetcher index`: bytes that must never be
//! sniffed as text, JSON lines and CSV that are damaged or unusual in the ways real files are,
//! and inputs built to make a huge manifest or a huge buffer. Each test is named after the class
//! of input it breaks on purpose; `complete` must only ever mean every record was read and good.

use std::io::Write;

use serde_json::Value;

use crate::fixtures::*;
use crate::support::*;

/// An API user export (always JSON lines), gzip layout.
const API_GZ_KEY: &str = "segment-export/5e9f1c2a-7b3d-4e8f-9a0b-1c2d3e4f5a6b/2024-01-03/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0-1704189600/9b2e4f6a8c0d1e3f5a7b9c1d3e5f7a9b.gz";
const API_GZ_PART: &str = "9b2e4f6a8c0d1e3f5a7b9c1d3e5f7a9b";
/// An API user export, zip layout.
const API_ZIP_KEY: &str = "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2019-04-25/d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807/114f0226319130e1a4770f2602b5639a.zip";
/// A dashboard CSV export.
const DASH_KEY: &str =
    "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2024-01-02/users-8f3kq2lz7x.zip";

/// A row-major dump of a part's errors, for assertion messages.
fn part_errors(p: &Value) -> Vec<Value> {
    p.get("errors")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default()
}

/// The manifest printed on stdout, in bytes.
fn manifest_len(run: &Run) -> usize {
    run.stdout.trim().len()
}

#[test]
fn sniff_never_calls_png_or_nul_heavy_bytes_text() {
    // Every sample is built so that, without its magic, a delimiter would split it evenly into
    // rows (the CSV sniffer's bait) and it is valid UTF-8 after the magic.
    let rows = b"a,b,c\n1,2,3\n4,5,6\n7,8,9\n".repeat(20);
    let with = |magic: &[u8]| -> Vec<u8> { [magic, &rows[..]].concat() };
    let png = with(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    let jpeg = with(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0");
    let pdf = with(b"%PDF-1.7\n");
    // UTF-16LE CSV: every other byte is NUL.
    let utf16: Vec<u8> = rows.iter().flat_map(|&b| [b, 0]).collect();
    for (name, bytes) in [
        ("image.png", &png),
        ("photo.jpg", &jpeg),
        ("doc.pdf", &pdf),
        ("utf16.csv", &utf16),
    ] {
        let run = index_bytes(bytes, &format!("uploads/{name}"), &[]);
        let p = run.part(name);
        assert_eq!(p["format"], "binary", "{name}; {}", run.describe());
        assert_eq!(p["records"], 0, "{name}; {}", run.describe());
        assert_eq!(p["sha256"], sha256_hex(bytes), "{name}; {}", run.describe());
        assert!(p.get("delimiter").is_none_or(Value::is_null), "{name}");
        assert_eq!(
            run.m()["kind"],
            "unknown",
            "not a report: {}",
            run.describe()
        );
    }

    // A nested gzip inside an API export zip is `binary` (nested archives are not expanded),
    // even though API exports are otherwise always JSON lines; the same under a dashboard key.
    let users = users_jsonl(301, 12);
    let nested = gzip(&users.bytes);
    let zip = zip_of(
        &[("inner.txt.gz", &nested), ("users.txt", &users.bytes)],
        STORED,
        false,
    );
    let run = index_bytes(&zip, API_ZIP_KEY, &[]);
    run.assert_status("complete");
    assert_eq!(
        run.part("inner.txt.gz")["format"],
        "binary",
        "{}",
        run.describe()
    );
    assert_eq!(
        run.part("users.txt")["format"],
        "jsonl",
        "{}",
        run.describe()
    );
    assert_eq!(run.part("users.txt")["records"], 12, "{}", run.describe());
    let run = index_bytes(&zip_of(&[("x.png", &png)], STORED, false), DASH_KEY, &[]);
    assert_eq!(run.part("x.png")["format"], "binary", "{}", run.describe());

    // A PNG that is itself gzipped: the decompressed part is binary.
    let run = index_bytes(&gzip(&png), "uploads/image.png.gz", &[]);
    assert_eq!(run.m()["compression"], "gzip", "{}", run.describe());
    assert_eq!(
        run.part("image.png")["format"],
        "binary",
        "{}",
        run.describe()
    );
}

#[test]
fn jsonl_with_corrupt_first_line_is_jsonl_partial() {
    let good = users_jsonl(302, 30);
    // A truncated first record (what a writer killed mid-line leaves), and a first line of
    // garbage that is not JSON at all and that a CSV sniffer would take for a header.
    let truncated: &[u8] = b"{\"external_id\":\"broken\",\"leaked_key\":\"x";
    let garbage: &[u8] = b"\xff\xfe garbage, not: json; at all";
    for (what, first) in [("truncated", truncated), ("garbage", garbage)] {
        let mut bytes = first.to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(&good.bytes);
        for (key, part_name) in [
            ("misc/users.ndjson", "users.ndjson"),
            (API_GZ_KEY, API_GZ_PART),
        ] {
            let object = if key == API_GZ_KEY {
                gzip(&bytes)
            } else {
                bytes.clone()
            };
            let run = index_bytes(&object, key, &[]);
            run.assert_status("partial");
            let p = run.part(part_name);
            let ctx = format!("{what} first line under {key}; {}", run.describe());
            assert_eq!(p["format"], "jsonl", "{ctx}");
            assert_eq!(p["records"], 30, "every good record counts; {ctx}");
            let errs = part_errors(p);
            assert_eq!(errs.len(), 1, "{ctx}");
            assert_eq!(
                (&errs[0]["record"], &errs[0]["line"]),
                (&0.into(), &1.into())
            );
            assert_eq!(
                str_vec(&p["columns"]),
                good.columns,
                "columns come from good records only; {ctx}"
            );
        }
    }
    // Under an API export key, content that is not JSON at all is still JSON lines, every
    // record bad: never `lines` and `complete`.
    let run = index_bytes(&gzip(&prose_lines(9).bytes), API_GZ_KEY, &[]);
    run.assert_status("partial");
    let p = run.part(API_GZ_PART);
    assert_eq!(p["format"], "jsonl", "{}", run.describe());
    assert_eq!(p["records"], 0, "{}", run.describe());
}

#[test]
fn jsonl_with_bom_is_complete() {
    let part = users_jsonl(303, 25);
    let bytes = [&b"\xEF\xBB\xBF"[..], &part.bytes].concat();
    for (object, key, name) in [
        (bytes.clone(), "misc/users.jsonl", "users.jsonl"),
        (gzip(&bytes), API_GZ_KEY, API_GZ_PART),
    ] {
        let run = index_bytes(&object, key, &[]);
        run.assert_status("complete");
        let p = run.part(name);
        assert_eq!(p["format"], "jsonl", "{}", run.describe());
        assert_eq!(p["records"], 25, "{}", run.describe());
        assert_eq!(
            p["bytes"],
            bytes.len() as u64,
            "the BOM is kept in the part"
        );
        assert_eq!(str_vec(&p["columns"]), part.columns, "{}", run.describe());
    }
}

#[test]
fn csv_cr_only_line_endings_are_rows() {
    let report = engagement_report(304, 40, b',');
    let cr: Vec<u8> = report
        .bytes
        .iter()
        .map(|&b| if b == b'\n' { b'\r' } else { b })
        .collect();
    let run = index_bytes(
        &cr,
        "reports/engagement-mac.csv",
        &[("OFFSET_INTERVAL", "10")],
    );
    run.assert_status("complete");
    assert_eq!(run.m()["kind"], "report", "{}", run.describe());
    let p = run.part("engagement-mac.csv");
    assert_eq!(p["format"], "csv", "{}", run.describe());
    assert_eq!(p["delimiter"], ",", "{}", run.describe());
    assert_eq!(p["records"], 40, "{}", run.describe());
    assert_eq!(str_vec(&p["columns"]), report.columns, "{}", run.describe());
    let want: Vec<(u64, u64)> = std::iter::once((0, 0))
        .chain(
            (10..40)
                .step_by(10)
                .map(|i| (i as u64, report.starts[i] as u64)),
        )
        .collect();
    assert_eq!(
        offsets(p),
        want,
        "offsets point at rows; {}",
        run.describe()
    );
}

#[test]
fn csv_unclosed_quote_at_end_is_a_bad_record() {
    let report = engagement_report(305, 15, b';');
    for tail in [
        &b"x;\"never closed\n"[..],
        b"x;\"never closed;\"\"1\"\"",
        b"\"\n",
    ] {
        let mut bytes = report.bytes.clone();
        bytes.extend_from_slice(tail);
        let run = index_bytes(&bytes, "reports/cut.csv", &[]);
        let ctx = format!(
            "tail {:?}; {}",
            String::from_utf8_lossy(tail),
            run.describe()
        );
        run.assert_status("partial");
        let p = run.part("cut.csv");
        assert_eq!(p["format"], "csv", "{ctx}");
        assert_eq!(p["records"], 15, "{ctx}");
        let errs = part_errors(p);
        assert_eq!(errs.len(), 1, "{ctx}");
        assert_eq!(errs[0]["record"], 15, "{ctx}");
        assert_eq!(errs[0]["line"], 17, "{ctx}");
        assert!(
            errs[0]["message"].as_str().unwrap().contains("not closed"),
            "{ctx}"
        );
    }
    // The same file with the quote closed at the very end (no line end) is complete.
    let mut bytes = report.bytes.clone();
    bytes.extend_from_slice(b"x;\"closed \"\"at last\"\"\";1;2;3;4;5;6;7;8");
    let run = index_bytes(&bytes, "reports/closed.csv", &[]);
    run.assert_status("complete");
    assert_eq!(run.part("closed.csv")["records"], 16, "{}", run.describe());
}

#[test]
fn csv_ragged_row_among_first_rows_is_partial_csv() {
    let report = engagement_report(306, 30, b',');
    let header_end = report.starts[0];
    // A ragged row as the second data row, and a line holding only a space after it.
    for insert in [&b"only,three,cells\n"[..], b" \n", b"a lone field\n"] {
        let at = report.starts[1];
        let bytes = [&report.bytes[..at], insert, &report.bytes[at..]].concat();
        let run = index_bytes(&bytes, "reports/weekly.csv", &[]);
        let ctx = format!(
            "inserted {:?}; {}",
            String::from_utf8_lossy(insert),
            run.describe()
        );
        run.assert_status("partial");
        assert_eq!(run.m()["kind"], "report", "{ctx}");
        let p = run.part("weekly.csv");
        assert_eq!(p["format"], "csv", "{ctx}");
        assert_eq!(p["records"], 30, "{ctx}");
        assert_eq!(str_vec(&p["columns"]), report.columns, "{ctx}");
        let errs = part_errors(p);
        assert_eq!(errs.len(), 1, "{ctx}");
        assert_eq!(
            (&errs[0]["record"], &errs[0]["line"]),
            (&1.into(), &3.into()),
            "{ctx}"
        );
    }
    // Several ragged rows among the first twenty, still a minority.
    let mut bytes = report.bytes[..header_end].to_vec();
    for (i, &start) in report.starts.iter().enumerate() {
        let end = report
            .starts
            .get(i + 1)
            .copied()
            .unwrap_or(report.bytes.len());
        if i % 4 == 1 {
            bytes.extend_from_slice(b"ragged,row\n");
        }
        bytes.extend_from_slice(&report.bytes[start..end]);
    }
    let run = index_bytes(&bytes, "reports/weekly.csv", &[]);
    run.assert_status("partial");
    let p = run.part("weekly.csv");
    assert_eq!(p["format"], "csv", "{}", run.describe());
    assert_eq!(p["records"], 30, "{}", run.describe());
    assert_eq!(part_errors(p).len(), 8, "{}", run.describe());
}

/// A zstd skippable frame: magic `0x184D2A5?` little-endian, a u32 LE length, that many bytes.
fn skippable_frame(nibble: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x50 | nibble, 0x2a, 0x4d, 0x18];
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn zstd_with_leading_skippable_frame_is_zstd() {
    let part = users_jsonl(307, 40);
    let half = part.starts[20];
    for nibble in [0x0, 0xA, 0xF] {
        // What pzstd writes: a skippable frame (holding the next frame's size) before each frame.
        let first = zstd_frame(&part.bytes[..half]);
        let second = zstd_frame(&part.bytes[half..]);
        let mut object = skippable_frame(nibble, &(first.len() as u32).to_le_bytes());
        object.extend_from_slice(&first);
        object.extend_from_slice(&skippable_frame(
            nibble,
            &(second.len() as u32).to_le_bytes(),
        ));
        object.extend_from_slice(&second);
        let run = index_bytes(&object, API_GZ_KEY.replace(".gz", ".zst").as_str(), &[]);
        run.assert_status("complete");
        assert_eq!(run.m()["compression"], "zstd", "{}", run.describe());
        let p = run.part(API_GZ_PART);
        assert_eq!(p["format"], "jsonl", "{}", run.describe());
        assert_eq!(p["records"], 40, "{}", run.describe());
        assert_eq!(p["bytes"], part.bytes.len() as u64, "{}", run.describe());
        assert_eq!(p["sha256"], sha256_hex(&part.bytes), "{}", run.describe());
    }
    // A skippable frame followed by a truncated frame is still zstd, and `failed`.
    let frame = zstd_frame(&part.bytes);
    let mut object = skippable_frame(0, b"pzstd");
    object.extend_from_slice(&frame[..frame.len() / 2]);
    let run = index_bytes(&object, "exports/users.zst", &[]);
    assert_eq!(run.m()["compression"], "zstd", "{}", run.describe());
    run.assert_failed();
}

#[test]
fn csv_unclosed_quote_then_600mb_is_bounded() {
    // The shape of the attack at a small scale: an unclosed quote followed by many megabytes,
    // gzipped to a few kilobytes. With MAX_RECORD_BYTES = 64 KiB the row is reported at that
    // limit and the rest of the part is read without being held.
    const LIMIT: usize = 64 * 1024;
    let env = [
        ("MAX_RECORD_BYTES", "64K"),
        ("MAX_EXPANSION_RATIO", "100000"),
    ];
    let mut plain = b"name,value\nfirst,1\nopen,\"".to_vec();
    plain.extend(std::iter::repeat_n(b'x', 8 << 20));
    plain.extend_from_slice(b"\n,,,\n");
    let object = gzip(&plain);
    assert!(object.len() < 64 * 1024, "the attack is cheap to send");
    let run = index_bytes(&object, "reports/attack.csv.gz", &env);
    run.assert_status("partial");
    let p = run.part("attack.csv");
    assert_eq!(p["format"], "csv", "{}", run.describe());
    assert_eq!(p["records"], 1, "{}", run.describe());
    assert_eq!(
        p["bytes"],
        plain.len() as u64,
        "read to its end; {}",
        run.describe()
    );
    let errs = part_errors(p);
    assert_eq!(errs.len(), 1, "{}", run.describe());
    let msg = errs[0]["message"].as_str().unwrap();
    assert!(msg.contains("not closed"), "{msg}");
    assert!(
        msg.contains(&format!("MAX_RECORD_BYTES ({LIMIT} bytes)")),
        "{msg}"
    );

    // The limit is exact: a row of LIMIT field bytes is good, one byte more is a bad record,
    // and the rows after it still count.
    let row = |n: usize| format!("v,\"{}\"\n", "y".repeat(n - 1));
    let text = format!("h1,h2\n{}{}after,1\n", row(LIMIT - 1 + 1), row(LIMIT + 1));
    let run = index_bytes(text.as_bytes(), "reports/limit.csv", &env);
    run.assert_status("partial");
    let p = run.part("limit.csv");
    assert_eq!(p["records"], 2, "{}", run.describe());
    let errs = part_errors(p);
    assert_eq!(errs.len(), 1, "{}", run.describe());
    assert_eq!(errs[0]["record"], 1, "{}", run.describe());
    assert!(
        errs[0]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_RECORD_BYTES"),
        "{}",
        run.describe()
    );
}

#[test]
fn huge_csv_header_makes_a_bounded_manifest() {
    // 100,000 columns with 100-byte names: a 10 MB header, and one data row that fits it.
    let names: Vec<String> = (0..100_000).map(|i| format!("{i:0>100}")).collect();
    let mut bytes = names.join(",").into_bytes();
    bytes.push(b'\n');
    bytes.extend_from_slice(vec!["1"; 100_000].join(",").as_bytes());
    bytes.push(b'\n');
    let run = index_bytes(&bytes, "reports/wide.csv", &[]);
    run.assert_status("partial");
    let p = run.part("wide.csv");
    assert_eq!(p["format"], "csv", "{}", run.describe());
    assert_eq!(
        p["records"], 1,
        "the row is checked against all 100,000 fields"
    );
    let columns = str_vec(&p["columns"]);
    assert!(
        !columns.is_empty() && columns.len() <= 1000,
        "{}",
        columns.len()
    );
    assert_eq!(
        columns[..],
        names[..columns.len()],
        "listed names keep their positions"
    );
    let errs = part_errors(p);
    assert_eq!(errs.len(), 1, "{}", run.describe());
    assert!(
        errs[0]["message"]
            .as_str()
            .unwrap()
            .contains("100000 in all"),
        "{}",
        run.describe()
    );
    assert!(
        manifest_len(&run) < 128 * 1024,
        "manifest of {} bytes for a 10 MB header",
        manifest_len(&run)
    );

    // A 60 KB column name, and a 10 MB one in a dashboard export: cut to 1 KiB in `columns`.
    let long = |n: usize| {
        let mut bytes = "n".repeat(n).into_bytes();
        bytes.extend_from_slice(b",b\n1,2\n");
        bytes
    };
    let sixty = long(60_000);
    let ten_mb = zip_of(&[("users.csv", &long(10 << 20))], STORED, false);
    for (object, key, name) in [
        (&sixty, "reports/long-name.csv", "long-name.csv"),
        (&ten_mb, DASH_KEY, "users.csv"),
    ] {
        let run = index_bytes(object, key, &[]);
        run.assert_status("partial");
        let p = run.part(name);
        assert_eq!(p["format"], "csv", "{}", run.describe());
        let columns = str_vec(&p["columns"]);
        assert_eq!(columns.len(), 2, "{}", run.describe());
        assert_eq!(columns[0].len(), 1024);
        assert_eq!(columns[1], "b");
        assert_eq!(p["records"], 1);
        assert!(manifest_len(&run) < 16 * 1024, "{}", manifest_len(&run));
    }

    // A header longer than MAX_RECORD_BYTES gives no names at all, and an error.
    let mut bytes = "h,".repeat(200_000).into_bytes();
    bytes.extend_from_slice(b"h\n");
    let run = index_bytes(
        &bytes,
        "reports/too-long.csv",
        &[("MAX_RECORD_BYTES", "64K")],
    );
    run.assert_status("partial");
    let p = run.part("too-long.csv");
    assert_eq!(str_vec(&p["columns"]), Vec::<String>::new());
    assert!(
        part_errors(p)[0]["message"]
            .as_str()
            .unwrap()
            .contains("header is longer")
    );
}

#[test]
fn jsonl_with_a_million_keys_makes_a_bounded_manifest() {
    // One million records, each with a key of its own, and one record with 200,000 keys.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..1_000_000u32 {
            writeln!(f, "{{\"key_{i}\":{i}}}").unwrap();
        }
        write!(f, "{{").unwrap();
        for i in 0..200_000u32 {
            write!(f, "\"wide_{i}\":0,").unwrap();
        }
        writeln!(f, "\"end\":0}}").unwrap();
    }
    let run = index(&path, Opts::default());
    run.assert_status("partial");
    let p = run.part("keys.jsonl");
    assert_eq!(p["format"], "jsonl", "{}", run.describe());
    assert_eq!(p["records"], 1_000_001, "every record is good and counted");
    let columns = str_vec(&p["columns"]);
    assert_eq!(columns.len(), 1000, "the first thousand keys are listed");
    assert_eq!(columns[0], "key_0");
    assert_eq!(columns[999], "key_999");
    let errs = part_errors(p);
    assert_eq!(errs.len(), 1, "{}", run.describe());
    assert_eq!(errs[0].get("record"), None, "not a record's error");
    assert!(
        errs[0]["message"]
            .as_str()
            .unwrap()
            .contains("top-level keys"),
        "{}",
        run.describe()
    );
    assert!(
        manifest_len(&run) < 64 * 1024,
        "manifest of {} bytes",
        manifest_len(&run)
    );
}
