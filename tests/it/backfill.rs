//! `export-fetcher backfill` against moto: which objects a listing or an inventory report
//! picks, the Batch Operations CSV manifest, the `--dry-run` CreateJob request checked against
//! the SDK's own builder, and `--local` end to end.
//!
//! moto does not serve S3 Control's CreateJob: every job here is a dry run, and the request it
//! prints is read back through the SDK's builders and compared field by field.

use std::collections::BTreeSet;
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3control::operation::create_job::CreateJobInput;
use aws_sdk_s3control::types::{
    JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
    JobOperation, JobReport, JobReportFormat, JobReportScope, LambdaInvokeOperation,
};
use export_fetcher::backfill::job;
use serde_json::Value;

use crate::aws::{self, Moto};
use crate::fixtures::{self, DEFLATED, gzip};
use crate::lambda_s3::{BUCKET, delete, get, make_bucket, moto_with_bucket, put};
use crate::support;

const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:export-fetcher";
const ROLE: &str = "arn:aws:iam::123456789012:role/export-fetcher-batch-operations";

/// Realistic Braze keys, as Braze documents them.
const API_ZIP: &str = "segment-export/6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/2025-04-01/d9696570-dfb7-45ae-baa2-25e302e2da27-1743465600/114f0226319130e1a4770f2602b5639a.zip";
const API_GZ: &str = "segment-export/6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/2025-04-01/d9696570-dfb7-45ae-baa2-25e302e2da27-1743465600/9f86d081884c7d659a2feaa0c55ad015.gz";
const DASHBOARD: &str = "segment-export/5e1b3c0a9d2f4a0012345678/2025-04-01/users-x7Kp2QvL9m.zip";
const CURRENTS: &str = "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro";
const ARCHIVE: &str = "sent_messages/email/8c7dd922ad47494fc02c388e12c00eac/5d9f7e1a2b3c4d5e6f708192/0f1e2d3c4b5a69788796a5b4c3d2e1f0.json.gz";
const REPORT: &str = "reports/engagement report+campaigns 2025-04-01.csv";

/// What a run of the binary printed.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "exit={}\nstderr:\n{}\nstdout:\n{}",
            self.code, self.stderr, self.stdout
        )
    }

    /// Asserts that stderr holds `text` (the whole output in the message).
    #[track_caller]
    fn assert_stderr_has(&self, text: &str) {
        assert!(self.stderr.contains(text), "{}", self.describe());
    }

    /// Asserts that stdout holds `text` (the whole output in the message).
    #[track_caller]
    fn assert_stdout_has(&self, text: &str) {
        assert!(self.stdout.contains(text), "{}", self.describe());
    }

    /// The dry run's CreateJob request.
    fn request(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not the request JSON ({e}); {}", self.describe()))
    }
}

/// Runs `export-fetcher backfill ARGS` against moto.
fn backfill(moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(support::BIN);
    cmd.arg("backfill").args(args);
    for v in [
        "OUTPUT_BUCKET",
        "OUTPUT_PREFIX",
        "INCLUDE_KEYS",
        "EXCLUDE_KEYS",
        "SNS_TOPIC_ARN",
        "SQS_QUEUE_URL",
        "EVENT_BUS_NAME",
        "WEBHOOK_URL",
        "AWS_LAMBDA_RUNTIME_API",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in aws::env_for(&moto.endpoint) {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn export-fetcher");
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    out
}

/// `export-fetcher backfill` with `before`, the function and role ARNs, `after`, then `--dry-run`.
fn backfill_dry_run(moto: &Moto, before: &[&str], after: &[&str], env: &[(&str, &str)]) -> Out {
    let mut args = before.to_vec();
    args.extend_from_slice(&["--function-arn", FUNCTION, "--role-arn", ROLE]);
    args.extend_from_slice(after);
    args.push("--dry-run");
    backfill(moto, &args, env)
}

/// `export-fetcher backfill s3://BUCKET --local` with `extra` arguments.
fn backfill_local(moto: &Moto, extra: &[&str]) -> Out {
    let target = format!("s3://{BUCKET}");
    let mut args = vec![target.as_str(), "--local"];
    args.extend_from_slice(extra);
    backfill(moto, &args, &[])
}

/// A dry run over `target` with `extra` arguments; returns its output and the keys of its CSV
/// manifest (decoded).
async fn dry_run(moto: &Moto, target: &str, extra: &[&str]) -> (Out, Vec<String>) {
    let out = backfill_dry_run(moto, &[target], extra, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    if out.stdout.trim().is_empty() {
        out.assert_stderr_has("nothing to do");
        return (out, Vec::new());
    }
    let lines = csv_lines(moto, &out.request()).await;
    let keys = lines
        .iter()
        .map(|l| decode(l.split(',').nth(1).unwrap()))
        .collect();
    (out, keys)
}

/// The lines of the CSV manifest a request names.
async fn csv_lines(moto: &Moto, request: &Value) -> Vec<String> {
    let arn = request["Manifest"]["Location"]["ObjectArn"]
        .as_str()
        .unwrap();
    let (bucket, key) = arn
        .strip_prefix("arn:aws:s3:::")
        .unwrap()
        .split_once('/')
        .unwrap();
    let body = get(&moto.s3(), bucket, key)
        .await
        .expect("the CSV manifest exists");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Percent-decoding (the manifest never holds `+` for a space).
fn decode(s: &str) -> String {
    assert!(!s.contains('+') && !s.contains(' '), "not encoded: {s:?}");
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// A row of the `--local` summary table, as it prints it.
fn row(label: &str, n: u64) -> String {
    format!("{label:<14}{n:>10}")
}

/// A status row under `done`.
fn status_row(status: &str, n: u64) -> String {
    format!("  {status:<12}{n:>10}")
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn sorted(keys: Vec<String>) -> BTreeSet<String> {
    keys.into_iter().collect()
}

/// One sample of each thing Braze writes, keyed as Braze keys them.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let users = fixtures::users_jsonl(1, 40).bytes;
    let dashboard = fixtures::dashboard_csv(
        2,
        30,
        fixtures::CsvOptions {
            bom: false,
            crlf: false,
        },
    )
    .bytes;
    vec![
        (
            API_ZIP,
            fixtures::zip_of(&[("users-0.txt", &users)], DEFLATED, false),
        ),
        (API_GZ, gzip(&fixtures::users_jsonl(3, 25).bytes)),
        (
            DASHBOARD,
            fixtures::zip_of(&[("users-1.csv", &dashboard)], DEFLATED, false),
        ),
        (
            CURRENTS,
            fixtures::currents_avro(4, "deflate", 50, 20).bytes,
        ),
        (
            ARCHIVE,
            gzip(&fixtures::message_archive_json(
                5,
                "email",
                "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                Some("5d9f7e1a2b3c4d5e6f708192"),
                false,
            )),
        ),
        (REPORT, fixtures::engagement_report(6, 20, b',').bytes),
    ]
}

async fn bucket_with_samples(moto: &Moto) -> aws_sdk_s3::Client {
    let s3 = moto.s3();
    make_bucket(&s3, BUCKET).await;
    for (key, body) in samples() {
        put(&s3, BUCKET, key, body).await;
    }
    s3
}

async fn manifest_of(s3: &aws_sdk_s3::Client, key: &str) -> Option<Value> {
    crate::lambda_s3::manifest(s3, BUCKET, key).await
}

/// Rewrites the manifest of `key` as a `failed` one with this cause (what an earlier run that
/// hit a permission problem, or a corrupt object, would have left).
async fn make_failed(s3: &aws_sdk_s3::Client, key: &str, cause: &str) {
    let mut m = manifest_of(s3, key).await.expect("a manifest to rewrite");
    m["status"] = "failed".into();
    m["failure"] = serde_json::json!({ "cause": cause });
    m["errors"] = serde_json::json!([{"message": "GetObject: AccessDenied"}]);
    s3.put_object()
        .bucket(BUCKET)
        .key(format!("export-fetcher/manifests/{key}.manifest.json"))
        .body(ByteStream::from(serde_json::to_vec_pretty(&m).unwrap()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_picks_by_prefix_include_exclude_and_since() {
    let moto = Moto::start();
    let s3 = bucket_with_samples(&moto).await;
    // An output of an earlier run and a console folder: never picked.
    put(
        &s3,
        BUCKET,
        "export-fetcher/manifests/x.zip.manifest.json",
        b"{}".to_vec(),
    )
    .await;
    put(&s3, BUCKET, "segment-export/", Vec::new()).await;

    let (out, all) = dry_run(&moto, &format!("s3://{BUCKET}"), &[]).await;
    assert_eq!(
        sorted(all),
        set(&[API_ZIP, API_GZ, DASHBOARD, CURRENTS, ARCHIVE, REPORT]),
        "{}",
        out.describe()
    );
    out.assert_stderr_has("8 objects");
    out.assert_stderr_has("outputs of export-fetcher");
    out.assert_stderr_has("folder placeholders");

    let (_, prefixed) = dry_run(&moto, &format!("s3://{BUCKET}/segment-export/"), &[]).await;
    assert_eq!(sorted(prefixed), set(&[API_ZIP, API_GZ, DASHBOARD]));

    let (_, filtered) = dry_run(
        &moto,
        &format!("s3://{BUCKET}"),
        &[
            "--include",
            "segment-export/**",
            "--include",
            "currents/**",
            "--exclude",
            "**/users-*.zip",
        ],
    )
    .await;
    assert_eq!(sorted(filtered), set(&[API_ZIP, API_GZ, CURRENTS]));

    // INCLUDE_KEYS / EXCLUDE_KEYS of the configuration leave out what the function would skip.
    let out = backfill_dry_run(
        &moto,
        &[&format!("s3://{BUCKET}")],
        &[],
        &[("EXCLUDE_KEYS", "sent_messages/**")],
    );
    let keys: BTreeSet<String> = csv_lines(&moto, &out.request())
        .await
        .iter()
        .map(|l| decode(l.split(',').nth(1).unwrap()))
        .collect();
    assert!(!keys.contains(ARCHIVE) && keys.len() == 5, "{keys:?}");

    // --since: moto stamps objects with the time they were written, to the second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let since = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let since = format!("{}Z", &since[..19]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = "segment-export/6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/2025-04-02/d9696570-dfb7-45ae-baa2-25e302e2da27-1743552000/0a1b2c3d4e5f60718293a4b5c6d7e8f9.gz";
    put(&s3, BUCKET, late, gzip(&fixtures::users_jsonl(7, 5).bytes)).await;
    let (out, recent) = dry_run(&moto, &format!("s3://{BUCKET}"), &["--since", &since]).await;
    assert_eq!(
        sorted(recent),
        set(&[late]),
        "--since {since}; {}",
        out.describe()
    );
    out.assert_stderr_has("before --since");
    let (_, none) = dry_run(&moto, &format!("s3://{BUCKET}"), &["--since", "2999-01-01"]).await;
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_with_a_current_manifest_are_skipped_others_picked() {
    let moto = Moto::start();
    let s3 = bucket_with_samples(&moto).await;
    let out = backfill_local(&moto, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    // Everything is done: nothing to pick, no job file written.
    let (out, none) = dry_run(&moto, &format!("s3://{BUCKET}"), &[]).await;
    assert!(none.is_empty(), "{}", out.describe());
    out.assert_stderr_has("already done");
    out.assert_stderr_has("6 read");

    // An object overwritten since its manifest; one whose manifest is an environment failure
    // (a permission since fixed); one whose object was missing; a new one.
    put(
        &s3,
        BUCKET,
        API_GZ,
        gzip(&fixtures::users_jsonl(9, 7).bytes),
    )
    .await;
    make_failed(&s3, CURRENTS, "environment").await;
    make_failed(&s3, ARCHIVE, "missing").await;
    // A failure caused by the object itself is its result: done.
    make_failed(&s3, REPORT, "object").await;
    let fresh = "segment-export/5e1b3c0a9d2f4a0012345678/2025-04-02/users-Q2w3E4r5T6.zip";
    put(
        &s3,
        BUCKET,
        fresh,
        fixtures::zip_of(&[("a.csv", b"user_id\n1\n")], DEFLATED, false),
    )
    .await;
    let (out, picked) = dry_run(&moto, &format!("s3://{BUCKET}"), &[]).await;
    assert_eq!(
        sorted(picked),
        set(&[API_GZ, CURRENTS, ARCHIVE, fresh]),
        "{}",
        out.describe()
    );
    // Only objects that have a manifest written after them were read: not the new one.
    out.assert_stderr_has("6 listed");
    let read: u64 = out
        .stderr
        .split(" read")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert!(
        (5..=6).contains(&read),
        "{read} manifests read; {}",
        out.describe()
    );

    // Outputs in a bucket of their own: the manifests are looked for there.
    let out_bucket = "braze-exports-outputs";
    make_bucket(&s3, out_bucket).await;
    let out = backfill_dry_run(
        &moto,
        &[&format!("s3://{BUCKET}/segment-export/")],
        &[],
        &[("OUTPUT_BUCKET", out_bucket)],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let request = out.request();
    assert_eq!(
        request["Report"]["Bucket"],
        "arn:aws:s3:::braze-exports-outputs",
        "{}",
        out.describe()
    );
    assert_eq!(
        csv_lines(&moto, &request).await.len(),
        4,
        "nothing is manifested there yet"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_only_picks_failed_manifests_and_reprocess_takes_everything() {
    let moto = Moto::start();
    let s3 = bucket_with_samples(&moto).await;
    // A truncated export: its manifest is failed, caused by the object.
    let mut corrupt = fixtures::zip_of(
        &[("users-0.txt", &fixtures::users_jsonl(8, 200).bytes)],
        DEFLATED,
        false,
    );
    corrupt.truncate(corrupt.len() / 2);
    let broken = "segment-export/6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/2025-04-01/d9696570-dfb7-45ae-baa2-25e302e2da27-1743465600/ffffffffffffffffffffffffffffffff.zip";
    put(&s3, BUCKET, broken, corrupt).await;
    let out = backfill_local(&moto, &[]);
    assert_eq!(out.code, 1, "the corrupt object fails; {}", out.describe());
    assert_eq!(
        manifest_of(&s3, broken).await.unwrap()["failure"]["cause"],
        "object"
    );
    make_failed(&s3, CURRENTS, "environment").await;

    let (out, failed) = dry_run(&moto, &format!("s3://{BUCKET}"), &["--failed-only"]).await;
    assert_eq!(sorted(failed), set(&[CURRENTS]), "{}", out.describe());
    out.assert_stderr_has("add --reprocess");
    out.assert_stderr_has("not failed (--failed-only)");

    let (out, failed) = dry_run(
        &moto,
        &format!("s3://{BUCKET}"),
        &["--failed-only", "--reprocess"],
    )
    .await;
    assert_eq!(
        sorted(failed),
        set(&[CURRENTS, broken]),
        "{}",
        out.describe()
    );
    assert_eq!(
        out.request()["Operation"]["LambdaInvoke"]["UserArguments"],
        serde_json::json!({"reprocess": "true"})
    );

    // --reprocess alone: every object, with no manifest listed or read.
    let (out, all) = dry_run(&moto, &format!("s3://{BUCKET}"), &["--reprocess"]).await;
    assert_eq!(all.len(), 7, "{}", out.describe());
    out.assert_stderr_has("0 listed, 0 read");
    // Without it, no UserArguments at all.
    let (out, _) = dry_run(&moto, &format!("s3://{BUCKET}"), &["--failed-only"]).await;
    assert!(
        out.request()["Operation"]["LambdaInvoke"]
            .get("UserArguments")
            .is_none()
    );
}

/// Writes an inventory report for `rows` (already URL-encoded keys) into `inventory`, as two
/// data files (one gzip-compressed, one not); returns the manifest.json URL.
async fn inventory_report(s3: &aws_sdk_s3::Client, rows: &[[&str; 6]]) -> String {
    let inventory = "braze-inventory";
    make_bucket(s3, inventory).await;
    let line = |r: &[&str; 6]| {
        let fields: Vec<String> = r.iter().map(|f| format!("\"{f}\"")).collect();
        format!("{}\n", fields.join(","))
    };
    let (first, second) = rows.split_at(rows.len() / 2);
    let gz_key = "inventory/braze-exports/daily/data/7dfc0bdc-f886-473e-956b-99d1ea278f89.csv.gz";
    let csv_key = "inventory/braze-exports/daily/data/1a2b3c4d-f886-473e-956b-99d1ea278f89.csv";
    let gz = gzip(first.iter().map(line).collect::<String>().as_bytes());
    let plain = second.iter().map(line).collect::<String>().into_bytes();
    let manifest = serde_json::json!({
        "sourceBucket": BUCKET,
        "destinationBucket": format!("arn:aws:s3:::{inventory}"),
        "version": "2016-11-30",
        "creationTimestamp": "1743465600000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size",
        "files": [
            {"key": gz_key, "size": gz.len(), "MD5checksum": "00"},
            {"key": csv_key, "size": plain.len(), "MD5checksum": "00"},
        ]
    });
    put(s3, inventory, gz_key, gz).await;
    put(s3, inventory, csv_key, plain).await;
    let manifest_key = "inventory/braze-exports/daily/2025-04-01T01-00Z/manifest.json";
    put(
        s3,
        inventory,
        manifest_key,
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    format!("s3://{inventory}/{manifest_key}")
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_reports_csv_and_csv_gz() {
    let (moto, s3) = moto_with_bucket().await;
    let url = inventory_report(
        &s3,
        &[
            [
                BUCKET,
                "segment-export/5e1b/2025-04-01/users-a1.zip",
                "3HL4kqtJlcpXroDTDmJ",
                "true",
                "false",
                "2048",
            ],
            [
                BUCKET,
                "reports/engagement+report%2B1.csv",
                "",
                "true",
                "false",
                "10",
            ],
            [
                BUCKET,
                "segment-export/5e1b/2025-04-01/users-old.zip",
                "v0",
                "false",
                "false",
                "5",
            ],
            [
                BUCKET,
                "segment-export/5e1b/2025-04-01/deleted.zip",
                "v9",
                "true",
                "true",
                "",
            ],
            [
                BUCKET,
                "export-fetcher/manifests/reports/x.csv.manifest.json",
                "v1",
                "true",
                "false",
                "9",
            ],
            [
                BUCKET,
                "currents/x/event_type%3Dusers.messages.email.Send/a%2B0%2B1.avro",
                "null",
                "true",
                "false",
                "7",
            ],
        ],
    )
    .await;
    let out = backfill_dry_run(&moto, &["--from-inventory", &url], &[], &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let request = out.request();
    assert_eq!(
        request["Manifest"]["Spec"]["Fields"],
        serde_json::json!(["Bucket", "Key", "VersionId"])
    );
    let lines: BTreeSet<String> = csv_lines(&moto, &request).await.into_iter().collect();
    let want: BTreeSet<String> = [
        "braze-exports,currents/x/event_type%3Dusers.messages.email.Send/a%2B0%2B1.avro,null",
        "braze-exports,reports/engagement%20report%2B1.csv,null",
        "braze-exports,segment-export/5e1b/2025-04-01/users-a1.zip,3HL4kqtJlcpXroDTDmJ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(lines, want, "{}", out.describe());
    out.assert_stderr_has("older versions and delete markers");

    // Narrowed to a prefix, and a report of another bucket is refused.
    let out = backfill_dry_run(
        &moto,
        &[&format!("s3://{BUCKET}/reports/"), "--from-inventory", &url],
        &[],
        &[],
    );
    assert_eq!(
        csv_lines(&moto, &out.request()).await.len(),
        1,
        "{}",
        out.describe()
    );
    let out = backfill_dry_run(
        &moto,
        &["s3://another-bucket", "--from-inventory", &url],
        &[],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.describe());
    out.assert_stderr_has("lists bucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_csv_manifest_percent_encodes_keys() {
    let (moto, s3) = moto_with_bucket().await;
    let keys = [
        (
            "reports/engagement report 2025.csv",
            "reports/engagement%20report%202025.csv",
        ),
        ("reports/C++ users+1.csv", "reports/C%2B%2B%20users%2B1.csv"),
        (
            "reports/Ünïcode/日本語.csv",
            "reports/%C3%9Cn%C3%AFcode/%E6%97%A5%E6%9C%AC%E8%AA%9E.csv",
        ),
        (
            CURRENTS,
            "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type%3Dusers.messages.email.Send/date%3D2025-04-01-17/version%3D6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5%2B0%2B123456.avro",
        ),
    ];
    for (key, _) in keys {
        put(&s3, BUCKET, key, b"user_id\n1\n".to_vec()).await;
    }
    let (out, decoded) = dry_run(&moto, &format!("s3://{BUCKET}"), &[]).await;
    let lines: BTreeSet<String> = csv_lines(&moto, &out.request()).await.into_iter().collect();
    let want: BTreeSet<String> = keys.iter().map(|(_, e)| format!("{BUCKET},{e}")).collect();
    assert_eq!(lines, want);
    assert_eq!(
        sorted(decoded),
        keys.iter().map(|(k, _)| k.to_string()).collect()
    );
    assert_eq!(
        out.request()["Manifest"]["Spec"]["Fields"],
        serde_json::json!(["Bucket", "Key"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_request_the_sdk_builder_makes() {
    let moto = Moto::start();
    bucket_with_samples(&moto).await;
    let out = backfill_dry_run(
        &moto,
        &[&format!("s3://{BUCKET}/segment-export/")],
        &["--priority", "42", "--confirmation-required", "--reprocess"],
        &[("OUTPUT_PREFIX", "fetched")],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let request = out.request();
    let job_id = request["ClientRequestToken"].as_str().unwrap().to_string();
    assert_eq!(job_id.len(), "20250401T171500Z-3fa2".len(), "{job_id}");
    let manifest_key = format!("fetched/backfill/{job_id}/manifest.csv");
    // The ETag of the object the job would read, as S3 gives it.
    let head = moto
        .s3()
        .head_object()
        .bucket(BUCKET)
        .key(&manifest_key)
        .send()
        .await
        .expect("the CSV manifest is written by the dry run");
    let description = request["Description"].as_str().unwrap();
    assert!(
        description.contains("3 objects") && description.contains("reprocess"),
        "{description}"
    );
    let expected = CreateJobInput::builder()
        .account_id("123456789012")
        .confirmation_required(true)
        .operation(
            JobOperation::builder()
                .lambda_invoke(
                    LambdaInvokeOperation::builder()
                        .function_arn(FUNCTION)
                        .invocation_schema_version("2.0")
                        .user_arguments("reprocess", "true")
                        .build(),
                )
                .build(),
        )
        .report(
            JobReport::builder()
                .bucket(format!("arn:aws:s3:::{BUCKET}"))
                .format(JobReportFormat::ReportCsv20180820)
                .enabled(true)
                .prefix(format!("fetched/backfill/{job_id}"))
                .report_scope(JobReportScope::AllTasks)
                .build(),
        )
        .client_request_token(&job_id)
        .manifest(
            JobManifest::builder()
                .spec(
                    JobManifestSpec::builder()
                        .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                        .fields(JobManifestFieldName::Bucket)
                        .fields(JobManifestFieldName::Key)
                        .build()
                        .unwrap(),
                )
                .location(
                    JobManifestLocation::builder()
                        .object_arn(format!("arn:aws:s3:::{BUCKET}/{manifest_key}"))
                        .e_tag(head.e_tag().unwrap())
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .description(description)
        .priority(42)
        .role_arn(ROLE)
        .build()
        .unwrap();
    let printed = job::from_json(&request).unwrap_or_else(|e| panic!("{e}; {}", out.describe()));
    assert_eq!(printed, expected, "{}", out.describe());
    // And the JSON has nothing the SDK input does not carry.
    assert_eq!(job::to_json(&expected), request);

    // Without ARNs (and without --local) the command stops before listing.
    let out = backfill(&moto, &[&format!("s3://{BUCKET}"), "--dry-run"], &[]);
    assert_eq!(out.code, 2, "{}", out.describe());
    out.assert_stderr_has("--function-arn");
    let out = backfill(
        &moto,
        &[
            &format!("s3://{BUCKET}"),
            "--function-arn",
            "export-fetcher",
            "--role-arn",
            ROLE,
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.describe());
    out.assert_stderr_has("not a Lambda function ARN");
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_outputs_fill_the_arns_and_the_output_location() {
    let moto = Moto::start();
    bucket_with_samples(&moto).await;
    let out_bucket = "braze-exports-outputs";
    make_bucket(&moto.s3(), out_bucket).await;
    // A stack whose outputs are those template.yaml declares.
    let template = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "FunctionArn": {"Value": FUNCTION},
            "BatchOperationsRoleArn": {"Value": ROLE},
            "ManifestsLocation": {"Value": format!("s3://{out_bucket}/fetched/manifests/")},
        }
    });
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::new()
            .behavior_version(aws_sdk_cloudformation::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudformation::config::Region::new(aws::REGION))
            .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .endpoint_url(&moto.endpoint)
            .build(),
    );
    cfn.create_stack()
        .stack_name("export-fetcher")
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let out = backfill(
        &moto,
        &[
            &format!("s3://{BUCKET}/segment-export/"),
            "--stack",
            "export-fetcher",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let request = out.request();
    assert_eq!(
        request["Operation"]["LambdaInvoke"]["FunctionArn"],
        FUNCTION
    );
    assert_eq!(request["RoleArn"], ROLE);
    assert_eq!(
        request["Report"]["Bucket"],
        format!("arn:aws:s3:::{out_bucket}")
    );
    assert!(
        request["Report"]["Prefix"]
            .as_str()
            .unwrap()
            .starts_with("fetched/backfill/"),
        "{request}"
    );
    // A flag wins over the stack's output.
    let other = "arn:aws:lambda:us-east-1:123456789012:function:other";
    let out = backfill(
        &moto,
        &[
            &format!("s3://{BUCKET}"),
            "--stack",
            "export-fetcher",
            "--function-arn",
            other,
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(
        out.request()["Operation"]["LambdaInvoke"]["FunctionArn"],
        other
    );
    // A configuration that disagrees with the stack is refused.
    let out = backfill(
        &moto,
        &[
            &format!("s3://{BUCKET}"),
            "--stack",
            "export-fetcher",
            "--dry-run",
        ],
        &[("OUTPUT_PREFIX", "elsewhere/")],
    );
    assert_eq!(out.code, 2, "{}", out.describe());
    let out = backfill(
        &moto,
        &[
            &format!("s3://{BUCKET}"),
            "--stack",
            "no-such-stack",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn local_indexes_every_object_and_a_rerun_does_no_work() {
    let moto = Moto::start();
    let s3 = bucket_with_samples(&moto).await;
    let out = backfill_local(&moto, &["--concurrency", "3"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    out.assert_stdout_has(&row("done", 6));
    out.assert_stdout_has(&status_row("complete", 6));
    out.assert_stdout_has("objects/s");
    let mut written = Vec::new();
    for (key, _) in samples() {
        let m = manifest_of(&s3, key)
            .await
            .unwrap_or_else(|| panic!("no manifest for {key}; {}", out.describe()));
        assert_eq!(m["status"], "complete", "{key}: {m}");
        assert_eq!(m["source"]["event_name"], "Backfill:Local", "{key}");
        written.push((key, m["processed_at"].clone()));
    }

    // A rerun: nothing picked, nothing rewritten.
    let out = backfill_local(&moto, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    out.assert_stderr_has("nothing to do");
    for (key, at) in &written {
        assert_eq!(
            &manifest_of(&s3, key).await.unwrap()["processed_at"],
            at,
            "{key}"
        );
    }

    // --reprocess: every object indexed again, once, as the next generation, recorded as this
    // run's.
    let out = backfill_local(&moto, &["--reprocess"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    out.assert_stdout_has(&row("done", 6));
    let run = out
        .stderr
        .split("run ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id; {}", out.describe()));
    assert!(run.starts_with("local-"), "{run}");
    for (key, at) in &written {
        let m = manifest_of(&s3, key).await.unwrap();
        assert_eq!(m["generation"], 2, "{key}: {m}");
        assert_eq!(m["source"]["batch_job_id"], run, "{key}");
        assert_ne!(&m["processed_at"], at, "{key}");
    }
    let out = backfill_local(&moto, &[]);
    out.assert_stderr_has("nothing to do");

    // A manifest lost (an interrupted run): only that object is processed again.
    delete(
        &s3,
        BUCKET,
        &format!("export-fetcher/manifests/{API_GZ}.manifest.json"),
    )
    .await;
    let out = backfill_local(&moto, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    out.assert_stdout_has(&row("total", 1));
    assert!(manifest_of(&s3, API_GZ).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn local_exits_1_when_an_object_fails() {
    let moto = Moto::start();
    let s3 = bucket_with_samples(&moto).await;
    let broken = "segment-export/6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/2025-04-01/d9696570-dfb7-45ae-baa2-25e302e2da27-1743465600/0000000000000000000000000000dead.gz";
    let mut gz = gzip(&fixtures::users_jsonl(10, 300).bytes);
    gz.truncate(gz.len() / 2);
    put(&s3, BUCKET, broken, gz).await;
    let out = backfill_local(&moto, &[]);
    assert_eq!(out.code, 1, "{}", out.describe());
    out.assert_stdout_has(&status_row("failed", 1));
    out.assert_stdout_has("failed: 1 objects");
    out.assert_stdout_has("0000000000000000000000000000dead.gz");
    let m = manifest_of(&s3, broken)
        .await
        .expect("the failure has a manifest");
    assert_eq!(m["status"], "failed");
    for (key, _) in samples() {
        assert_eq!(
            manifest_of(&s3, key).await.unwrap()["status"],
            "complete",
            "{key}"
        );
    }
}
