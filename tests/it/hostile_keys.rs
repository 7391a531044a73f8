//! Keys and messages: output keys fit S3's limit for any key S3 accepts, an empty key is a
//! usage error, and the stderr summary escapes control characters.

use crate::fixtures::*;
use crate::support::*;

#[test]
fn output_keys_of_a_1024_byte_source_key_fit_s3s_limit() {
    let part = users_jsonl(70, 20);
    for unit in ["a", "é", "😀"] {
        let file = unit.repeat((1024 - 20) / unit.len());
        let key = format!("uploads/{file}.txt.gz");
        assert!(key.len() <= 1024);
        // Without --out: a local file system limits each path component to 255 bytes, which
        // S3 does not (part keys are checked by `manifest::tests`).
        let run = index_bytes(&gzip(&part.bytes), &key, &[]);
        run.assert_status("complete");
        assert_eq!(
            run.m()["source"]["key"],
            key.as_str(),
            "the real key is kept"
        );
        let manifest_key = run.m()["manifest_key"].as_str().unwrap();
        assert!(manifest_key.len() <= 1024, "{}", manifest_key.len());
        assert!(manifest_key.starts_with("export-fetcher/manifests/uploads/"));
        assert!(manifest_key.ends_with(".manifest.json"));
    }
}

#[test]
fn empty_key_is_a_usage_error() {
    let inp = input("x.csv", b"a,b\n1,2\n");
    let run = index(
        &inp.path,
        Opts {
            key: Some(""),
            out: None,
            env: &[],
        },
    );
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stderr.contains("--key"), "{}", run.describe());
}

#[test]
fn stderr_summary_escapes_control_characters() {
    let body = b"{\"a\":1}\n{broken\n".to_vec();
    let key = "segment-export/s/2024-01-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/evil\u{1b}[31m\nname.gz";
    let run = index_bytes(&gzip(&body), key, &[]);
    run.assert_status("partial");
    let summary = run
        .stderr
        .lines()
        .find(|l| l.starts_with("export-fetcher: partial"))
        .unwrap_or_else(|| panic!("no summary; {}", run.describe()));
    assert!(!summary.contains('\u{1b}'), "{summary:?}");
    assert!(summary.contains("\\u{1b}[31m\\nname"), "{summary:?}");
    assert!(
        summary.contains("1 bad record (first at line 2"),
        "{summary:?}"
    );
}
