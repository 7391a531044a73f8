//! `export-fetcher demo`: the main job end to end, with no AWS account and nothing installed.
//!
//! 1. An embedded, real S3-protocol server ([`server`]: `s3s` + `s3s-fs`) serves a new folder
//!    under the system temp dir on a loopback port; requests are signed and checked.
//! 2. Sample Braze files (`samples`) are uploaded with `aws-sdk-s3`, exactly as Braze writes them.
//! 3. Their S3 event notifications, built as S3 builds them (form-URL-encoded keys), are handed
//!    to the real Lambda handler as one SQS batch, through the same `aws-sdk-s3` code path as in
//!    Lambda (only the endpoint differs).
//! 4. The manifests are read back from the server and summarised; every sample must have the
//!    status it should (the truncated file `failed`, every other one `complete`).
//! 5. The same notifications are delivered again: every object must be a `duplicate`, and no
//!    manifest may change.
//!
//! The folder is kept so the manifests and parts can be opened; its path is printed.

mod samples;
pub mod server;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::handler;
use crate::manifest::{FailureCause, Manifest, Status, manifest_key};

use samples::Sample;
use server::Server;

/// The bucket Braze was connected to, in the demo.
const BUCKET: &str = "acme-braze-exports";
/// Credentials the embedded server accepts (it checks every request's signature).
pub const ACCESS_KEY: &str = "demo";
pub const SECRET_KEY: &str = "demo-secret";
const REGION: &str = "us-east-1";
/// The server's own folder inside the demo folder.
const SERVER_DIR: &str = "s3s-fs";
/// Width of the shortened keys in the summary table.
const OBJECT_WIDTH: usize = 56;

/// Runs the demo; returns the exit status (0 when every sample got the status it should).
pub async fn run(cfg: Config) -> i32 {
    // Unit tests leave nothing behind; a person running the demo gets the folder to look at.
    let keep = !cfg!(test);
    let dir = match demo_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("export-fetcher demo: cannot create a working folder: {e}");
            return 1;
        }
    };
    let code = match demo(cfg, &dir, keep).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("export-fetcher demo: {e}");
            1
        }
    };
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

/// A new, empty folder under the system temp dir.
fn demo_dir() -> std::io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "export-fetcher-demo-{}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One uploaded sample and what became of it.
struct Row {
    sample: Sample,
    etag: String,
    sequencer: String,
    manifest: Option<Manifest>,
    manifest_etag: Option<String>,
    /// Why the manifest could not be read, when it could not.
    read_error: Option<String>,
}

/// Starts the server, runs the demo against it, stops it. `Ok(true)` when every check passed.
async fn demo(cfg: Config, dir: &Path, keep: bool) -> Result<bool, String> {
    let root = dir.join(SERVER_DIR);
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let server = Server::start(&root, ACCESS_KEY, SECRET_KEY).await?;
    let result = against(cfg, &server, "s3s-fs", &root, dir, keep).await;
    server.stop().await;
    result
}

/// The S3 client, configured as in Lambda except for the endpoint and the credentials.
fn client(endpoint: &str) -> Client {
    server::local_client(endpoint, ACCESS_KEY, SECRET_KEY)
}

/// The demo against a running S3 server that accepts [`ACCESS_KEY`] / [`SECRET_KEY`]: `label`
/// names its backend and `root` where it stores, for the summary; the parts and manifests are
/// downloaded under `dir`. The benchmark's plain-file server (`tools/s3-server`) is checked this
/// way too. `Ok(true)` when every sample got the status it should.
pub async fn against(
    mut cfg: Config,
    server: &Server,
    label: &str,
    root: &Path,
    dir: &Path,
    keep: bool,
) -> Result<bool, String> {
    let started = Instant::now();
    let samples = samples::all().map_err(|e| format!("cannot generate the samples: {e}"))?;
    let s3 = client(&server.endpoint());
    let out_bucket = cfg.output_bucket.clone().unwrap_or_else(|| BUCKET.into());
    let prefix = cfg.output_prefix.clone();
    let write_parts = cfg.write_parts;
    // Braze's export callback is simulated below: it needs the bucket and a token.
    cfg.source_bucket.get_or_insert_with(|| BUCKET.to_string());
    cfg.callback_token
        .get_or_insert_with(|| DEMO_CALLBACK_TOKEN.to_string());
    println!(
        "export-fetcher demo: an S3 server ({label}) on {}, storing in {}",
        server.endpoint(),
        root.display()
    );
    for note in config_notes(&cfg) {
        println!("  note: {note}");
    }

    create_bucket(&s3, BUCKET).await?;
    if out_bucket != BUCKET {
        create_bucket(&s3, &out_bucket).await?;
    }

    // Upload what Braze would write.
    let mut rows = Vec::with_capacity(samples.len());
    let mut uploaded = 0u64;
    let base = sequencer_base();
    for (i, sample) in samples.into_iter().enumerate() {
        let out = s3
            .put_object()
            .bucket(BUCKET)
            .key(&sample.key)
            .body(sample.bytes.clone().into())
            .send()
            .await
            .map_err(|e| format!("uploading {} failed: {}", sample.key, sdk_error(&e)))?;
        uploaded += sample.bytes.len() as u64;
        rows.push(Row {
            etag: out
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            sequencer: format!("00{:016X}", base + i as u64),
            sample,
            manifest: None,
            manifest_etag: None,
            read_error: None,
        });
    }
    println!(
        "Uploaded {} sample objects ({}) to s3://{BUCKET}/, as Braze writes them.",
        rows.len(),
        human_bytes(uploaded)
    );

    // Their notifications, as S3 → SQS delivers them: one message per object, one batch.
    let event_time = event_time();
    let records: Vec<Value> = rows.iter().map(|r| s3_record(r, &event_time)).collect();
    let batch = sqs_batch(&records);
    let env = Arc::new(
        handler::env_with_clients(cfg, s3.clone()).map_err(|e| format!("configuration: {e}"))?,
    );
    let t = Instant::now();
    let response = handler::handle(env.clone(), batch, None)
        .await
        .map_err(|e| format!("the handler failed: {e}"))?;
    let handler_ms = t.elapsed().as_millis();
    let failures = response["batchItemFailures"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(usize::MAX);
    println!(
        "Fed {} S3 notifications to the handler as one SQS batch: {} in {handler_ms} ms.",
        records.len(),
        match failures {
            0 => "no batch item failures".to_string(),
            usize::MAX => format!("unexpected response {response}"),
            n => format!("{n} batch item failure(s)"),
        }
    );
    let mut problems = Vec::new();
    if failures != 0 {
        problems.push(format!(
            "the handler asked for messages to be retried: {response}"
        ));
    }

    // Read every manifest back from the server.
    for row in &mut rows {
        let key = manifest_key(&prefix, &row.sample.key);
        match get(&s3, &out_bucket, &key).await {
            Ok((body, etag)) => match serde_json::from_slice::<Manifest>(&body) {
                Ok(m) => {
                    row.manifest = Some(m);
                    row.manifest_etag = etag;
                }
                Err(e) => row.read_error = Some(format!("unreadable manifest {key}: {e}")),
            },
            Err(e) => row.read_error = Some(format!("no manifest at {key}: {e}")),
        }
    }
    println!();
    print!("{}", table(&rows));
    println!();
    for row in &rows {
        problems.extend(check(row));
        if let Some(m) = &row.manifest
            && row.sample.expect.status == Status::Failed
            && failed_for_its_bytes(m)
        {
            let why = m
                .errors
                .first()
                .map(|e| e.message.as_str())
                .unwrap_or("(no error given)");
            println!(
                "The corrupt sample ({}) failed, as it should: {why}",
                row.sample.label
            );
        }
    }

    // At-least-once delivery: the same notifications again, this time straight from S3.
    let again = handler::handle(env.clone(), json!({ "Records": records }), None).await;
    let mut duplicates = 0;
    let mut rewritten = 0;
    match again {
        Ok(response) => {
            let results = response["results"].as_array().cloned().unwrap_or_default();
            duplicates = results
                .iter()
                .filter(|r| r["outcome"] == "duplicate")
                .count();
            for r in results.iter().filter(|r| r["outcome"] != "duplicate") {
                problems.push(format!("second delivery: {r}"));
            }
        }
        Err(e) => problems.push(format!("second delivery: the handler failed: {e}")),
    }
    for row in &rows {
        let key = manifest_key(&prefix, &row.sample.key);
        if let Ok((_, etag)) = get(&s3, &out_bucket, &key).await
            && row.manifest.is_some()
            && etag != row.manifest_etag
        {
            rewritten += 1;
            problems.push(format!("second delivery rewrote {key}"));
        }
    }
    println!(
        "Delivered the same {} notifications again: {duplicates} duplicate, {rewritten} manifest(s) rewritten.",
        records.len()
    );
    if duplicates != rows.len() {
        problems.push(format!(
            "second delivery: {duplicates} of {} objects were recognised as duplicates",
            rows.len()
        ));
    }

    // Braze's callback for the export of three objects: one export manifest for all of them.
    match close_by_callback(&env, &s3, &out_bucket, &prefix, &rows).await {
        Ok(line) => println!("{line}"),
        Err(e) => problems.push(e),
    }

    if let Err(e) = download_all(&s3, dir, &out_bucket, &prefix, &rows).await {
        problems.push(e);
    }
    println!();
    print!(
        "{}",
        locations(dir, &out_bucket, &prefix, write_parts, &rows, keep)
    );
    println!();
    if problems.is_empty() {
        println!(
            "Demo OK: every sample got the status it should ({} ms in all).",
            started.elapsed().as_millis()
        );
        Ok(true)
    } else {
        println!("Demo FAILED:");
        for p in &problems {
            println!("  - {p}");
        }
        Ok(false)
    }
}

/// The callback token the demo uses when `CALLBACK_TOKEN` is not set.
const DEMO_CALLBACK_TOKEN: &str = "demo-callback-token-0000";

/// Sends Braze's callback for the demo's export of three objects (as the Function URL hands it
/// to the function), reads the export manifest back and checks it; returns the summary line.
async fn close_by_callback(
    env: &Arc<crate::pipeline::Env>,
    s3: &Client,
    out_bucket: &str,
    prefix: &str,
    rows: &[Row],
) -> Result<String, String> {
    use crate::rollup::callback::CALLBACK_PATH;
    use crate::rollup::export::{ClosedBy, ExportManifest, Folder, export_manifest_key};
    let files: Vec<&Row> = rows
        .iter()
        .filter(|r| r.sample.label == samples::CALLBACK_EXPORT)
        .collect();
    let folder = files
        .first()
        .and_then(|r| Folder::of_key(BUCKET, &r.sample.key))
        .ok_or("the demo's samples hold no API export to close")?;
    let segment = folder.braze.segment_id.clone().unwrap_or_default();
    let token = env.cfg.callback_token.clone().unwrap_or_default();
    let request = json!({
        "version": "2.0", "routeKey": "$default",
        "rawPath": format!("{CALLBACK_PATH}{token}"),
        "rawQueryString": format!("segment_id={segment}"),
        "headers": {"content-type": "application/json", "user-agent": "Braze"},
        "requestContext": {"http": {"method": "POST", "path": format!("{CALLBACK_PATH}{token}")}},
        "body": r#"{"success":true}"#, "isBase64Encoded": false,
    });
    let answer = handler::handle(env.clone(), request, None)
        .await
        .map_err(|e| format!("Braze's callback: the handler failed: {e}"))?;
    if answer["statusCode"] != 200 {
        return Err(format!("Braze's callback was answered {answer}"));
    }
    let key = export_manifest_key(prefix, &folder.prefix);
    let (body, _) = get(s3, out_bucket, &key)
        .await
        .map_err(|e| format!("no export manifest after Braze's callback: {e}"))?;
    let m: ExportManifest = serde_json::from_slice(&body)
        .map_err(|e| format!("unreadable export manifest {key}: {e}"))?;
    let records: u64 = files.iter().map(|r| r.sample.expect.records).sum();
    if m.status != Status::Complete
        || m.closed_by != ClosedBy::Callback
        || m.files.len() != files.len()
        || m.totals.records != records
    {
        return Err(format!(
            "the export manifest {key} should list {} complete files and {records} records, \
             closed by the callback: {}",
            files.len(),
            m.to_json_pretty()
        ));
    }
    Ok(format!(
        "Braze's callback closed the API export {}: {} files, {} records, {} \
         (export manifest s3://{out_bucket}/{key}).",
        folder.braze.object_prefix.as_deref().unwrap_or_default(),
        m.files.len(),
        thousands(m.totals.records),
        m.status.as_str()
    ))
}

/// Settings from the environment that the demo does not use as they would be in Lambda.
fn config_notes(cfg: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let sinks = [
        ("SNS_TOPIC_ARN", cfg.sns_topic_arn.is_some()),
        ("SQS_QUEUE_URL", cfg.sqs_queue_url.is_some()),
        ("EVENT_BUS_NAME", cfg.event_bus_name.is_some()),
        ("WEBHOOK_URL", cfg.webhook_url.is_some()),
    ];
    let set: Vec<&str> = sinks.iter().filter(|s| s.1).map(|s| s.0).collect();
    if !set.is_empty() {
        notes.push(format!(
            "{} ignored: the demo writes manifests to its S3 server only",
            set.join(", ")
        ));
    }
    if !cfg.include_keys.is_empty() || !cfg.exclude_keys.is_empty() {
        notes.push("INCLUDE_KEYS / EXCLUDE_KEYS apply: filtered samples get no manifest".into());
    }
    notes
}

async fn create_bucket(s3: &Client, bucket: &str) -> Result<(), String> {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create the bucket {bucket}: {}", sdk_error(&e)))
}

/// An SDK error in a line: the S3 error code and message when the server sent one.
fn sdk_error<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    }
}

/// Body and ETag of a small object.
async fn get(s3: &Client, bucket: &str, key: &str) -> Result<(Vec<u8>, Option<String>), String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| sdk_error(&e))?;
    let etag = out.e_tag().map(String::from);
    let body = out.body.collect().await.map_err(|e| e.to_string())?;
    Ok((body.into_bytes().to_vec(), etag))
}

/// A sequencer base that grows between runs (S3's are hex strings that only grow per key).
fn sequencer_base() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
        << 4
}

fn event_time() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// A key as S3 writes it into notifications: form-URL-encoded (space → `+`, others `%XX`).
fn form_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Lowercase hex of the SHA-256 of `s`, cut to `n` characters (stable ids).
fn hex_id(s: &str, n: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex.truncate(n);
    hex
}

/// A UUID-shaped id derived from `s`.
fn uuid_from(s: &str) -> String {
    let h = hex_id(s, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The S3 event notification record S3 writes for a `PutObject`.
fn s3_record(row: &Row, event_time: &str) -> Value {
    let key = &row.sample.key;
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": event_time,
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AROAEXAMPLEBRAZE:braze-export"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": hex_id(&format!("request {key}"), 16).to_uppercase(),
            "x-amz-id-2": hex_id(&format!("id-2 {key}"), 64),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "export-fetcher-object-created",
            "bucket": {
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": format!("arn:aws:s3:::{BUCKET}"),
            },
            "object": {
                "key": form_encode_key(key),
                "size": row.sample.bytes.len(),
                "eTag": row.etag,
                "sequencer": row.sequencer,
            },
        },
    })
}

/// S3 → SQS: one message per notification, delivered to the function as one batch.
fn sqs_batch(records: &[Value]) -> Value {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string();
    let messages: Vec<Value> = records
        .iter()
        .map(|record| {
            let body = json!({ "Records": [record] }).to_string();
            json!({
                "messageId": uuid_from(&body),
                "receiptHandle": format!("AQEB{}", hex_id(&format!("receipt {body}"), 40)),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AROAEXAMPLES3NOTIFY:S3-PROD-END",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:123456789012:braze-export-notifications"),
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": messages })
}

/// What is wrong with one row, if anything.
fn check(row: &Row) -> Vec<String> {
    let s = &row.sample;
    let name = format!("{} ({})", s.label, s.key);
    let Some(m) = &row.manifest else {
        return vec![format!(
            "{name}: {}",
            row.read_error.as_deref().unwrap_or("no manifest")
        )];
    };
    let mut problems = Vec::new();
    if m.status != s.expect.status {
        let why = m
            .errors
            .first()
            .map(|e| format!(": {}", e.message))
            .unwrap_or_default();
        problems.push(format!(
            "{name}: status {}, expected {}{why}",
            m.status.as_str(),
            s.expect.status.as_str()
        ));
    }
    if m.kind != s.expect.kind {
        problems.push(format!(
            "{name}: kind {}, expected {}",
            m.kind.as_str(),
            s.expect.kind.as_str()
        ));
    }
    match s.expect.status {
        Status::Complete
            if m.totals.parts != s.expect.parts || m.totals.records != s.expect.records =>
        {
            problems.push(format!(
                "{name}: {} parts and {} records, expected {} and {}",
                m.totals.parts, m.totals.records, s.expect.parts, s.expect.records
            ));
        }
        Status::Failed if m.errors.is_empty() => {
            problems.push(format!("{name}: failed without saying why"));
        }
        // The sample that must fail is corrupt: failing for another reason (a limit crossed
        // first, with `MAX_OBJECT_BYTES` set low) is not the failure it should show.
        Status::Failed if m.status == Status::Failed && !failed_for_its_bytes(m) => {
            let cause = m.failure.map_or("none", |f| f.cause.as_str());
            let why = m.errors.first().map_or("", |e| e.message.as_str());
            problems.push(format!(
                "{name}: failed with cause {cause} ({why}), not for its own corrupt bytes \
                 (cause object): something else stopped it first"
            ));
        }
        _ => {}
    }
    problems
}

/// Whether a `failed` manifest blames the object's own bytes (cause `object`).
fn failed_for_its_bytes(m: &Manifest) -> bool {
    m.status == Status::Failed && m.failure.is_some_and(|f| f.cause == FailureCause::Object)
}

/// The summary table, aligned.
fn table(rows: &[Row]) -> String {
    let header = [
        "object", "kind", "status", "parts", "records", "bytes", "ms",
    ];
    let mut lines: Vec<[String; 7]> = Vec::new();
    for row in rows {
        let object = shorten(&row.sample.key, OBJECT_WIDTH);
        lines.push(match &row.manifest {
            Some(m) => [
                object,
                m.kind.as_str().to_string(),
                m.status.as_str().to_string(),
                m.totals.parts.to_string(),
                thousands(m.totals.records),
                human_bytes(m.totals.bytes),
                m.duration_ms.to_string(),
            ],
            None => [
                object,
                "-".into(),
                "(no manifest)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        });
    }
    let mut widths = header.map(|h| h.chars().count());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers are right-aligned.
    let right = [false, false, false, true, true, true, true];
    let render = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let w = widths[i];
            if right[i] {
                let _ = write!(s, "{cell:>w$}");
            } else {
                let _ = write!(s, "{cell:<w$}");
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = render(&header.map(String::from));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&render(&rule));
    for line in &lines {
        out.push_str(&render(line));
    }
    let total_records: u64 = rows
        .iter()
        .filter_map(|r| r.manifest.as_ref())
        .map(|m| m.totals.records)
        .sum();
    let total_bytes: u64 = rows
        .iter()
        .filter_map(|r| r.manifest.as_ref())
        .map(|m| m.totals.bytes)
        .sum();
    let total_parts: u64 = rows
        .iter()
        .filter_map(|r| r.manifest.as_ref())
        .map(|m| m.totals.parts)
        .sum();
    out.push_str(&render(&rule));
    out.push_str(&render(&[
        format!("{} objects", rows.len()),
        String::new(),
        String::new(),
        total_parts.to_string(),
        thousands(total_records),
        human_bytes(total_bytes),
        String::new(),
    ]));
    out
}

/// Downloads every object the demo knows of (the samples, their manifests and parts) through
/// S3 into `dir/<bucket>/<key>`, as `aws s3 sync` would: the server's own folder stores long
/// keys under hashed names. Returns the number of files written.
async fn download_all(
    s3: &Client,
    dir: &Path,
    out_bucket: &str,
    prefix: &str,
    rows: &[Row],
) -> Result<usize, String> {
    let mut objects: Vec<(String, String)> = Vec::new();
    for row in rows {
        objects.push((BUCKET.to_string(), row.sample.key.clone()));
        if let Some(m) = &row.manifest {
            objects.push((
                out_bucket.to_string(),
                manifest_key(prefix, &row.sample.key),
            ));
            for part in &m.parts {
                if let Some(o) = &part.output {
                    objects.push((o.bucket.clone(), o.key.clone()));
                }
            }
        }
    }
    let mut written = 0;
    for (bucket, key) in objects {
        // Our own keys, but never write outside `dir` whatever a key holds.
        let safe = !key.starts_with('/')
            && key
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        if !safe {
            continue;
        }
        let (body, _) = get(s3, &bucket, &key)
            .await
            .map_err(|e| format!("cannot download s3://{bucket}/{key}: {e}"))?;
        let path = dir.join(&bucket).join(&key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, body).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written += 1;
    }
    Ok(written)
}

/// Where to look: the layout, the folder and one example.
fn locations(
    dir: &Path,
    out_bucket: &str,
    prefix: &str,
    write_parts: bool,
    rows: &[Row],
    keep: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Manifests: s3://{out_bucket}/{prefix}manifests/<source key>.manifest.json"
    );
    if write_parts {
        let _ = writeln!(
            s,
            "Parts:     s3://{out_bucket}/{prefix}parts/<source key>/<part name>"
        );
    } else {
        let _ = writeln!(s, "Parts:     none written (WRITE_PARTS=false)");
    }
    if !keep {
        let _ = writeln!(
            s,
            "(The folder {} is deleted when the demo ends.)",
            dir.display()
        );
        return s;
    }
    // A complete manifest with several parts shows the most; any manifest will do.
    let example = rows
        .iter()
        .find(|r| {
            r.manifest
                .as_ref()
                .is_some_and(|m| m.status == Status::Complete && m.parts.len() > 1)
        })
        .or_else(|| rows.iter().find(|r| r.manifest.is_some()));
    match example.and_then(|row| row.manifest.as_ref().map(|m| (row, m))) {
        Some((row, m)) => {
            let _ = writeln!(
                s,
                "Downloaded, with the samples, to {}/<bucket>/<key>; for example:",
                dir.display()
            );
            let manifest = dir
                .join(out_bucket)
                .join(manifest_key(prefix, &row.sample.key));
            let _ = writeln!(s, "  {}", manifest.display());
            for output in m.parts.iter().filter_map(|p| p.output.as_ref()) {
                let _ = writeln!(
                    s,
                    "  {}",
                    dir.join(&output.bucket).join(&output.key).display()
                );
            }
        }
        None => {
            let _ = writeln!(
                s,
                "Downloaded the samples to {}/<bucket>/<key> (no manifest was written).",
                dir.display()
            );
        }
    }
    let _ = writeln!(
        s,
        "(The S3 server stored them in {}/{SERVER_DIR}/.) Remove the folder when done: rm -rf {}",
        dir.display(),
        dir.display()
    );
    s
}

/// `segment-export/…/d9696570…-1556044807/114f0226319130e1a4770f2602b5639a.zip` style: the first
/// and the last segments, the last one cut in its middle if it is still too long.
fn shorten(key: &str, width: usize) -> String {
    if key.chars().count() <= width {
        return key.to_string();
    }
    let first = key.split('/').next().unwrap_or("");
    let last = key.rsplit('/').next().unwrap_or(key);
    let head = format!("{first}/…/");
    let room = width.saturating_sub(head.chars().count());
    let last_len = last.chars().count();
    if last_len <= room {
        return format!("{head}{last}");
    }
    let keep_end = room * 2 / 3;
    let keep_start = room.saturating_sub(keep_end + 1);
    let start: String = last.chars().take(keep_start).collect();
    let end: String = last.chars().skip(last_len - keep_end).collect();
    format!("{head}{start}…{end}")
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_form_url_encoded_as_s3_does() {
        assert_eq!(form_encode_key("red flower.jpg"), "red+flower.jpg");
        assert_eq!(
            form_encode_key("a/event_type=x/b+0+12.avro"),
            "a/event_type%3Dx/b%2B0%2B12.avro"
        );
        assert_eq!(form_encode_key("été"), "%C3%A9t%C3%A9");
        let key = "currents/x/event_type=users.messages.email.Send/date=2024-05-02-14/a b+0+1.avro";
        assert_eq!(
            crate::trigger::decode_s3_key(&form_encode_key(key))
                .ok()
                .as_deref(),
            Some(key)
        );
    }

    #[test]
    fn table_helpers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        let key = "currents/dataexport.prod-03.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2024-05-02-14/version=6/us-03/dataexport.prod-03.S3.integration.69cadaaed2d51b7c75b1a3e5+0+0000012345.avro";
        let short = shorten(key, 56);
        assert_eq!(short.chars().count(), 56, "{short}");
        assert!(short.starts_with("currents/…/dataexport."), "{short}");
        assert!(short.ends_with("+0+0000012345.avro"), "{short}");
        assert_eq!(shorten("a/b.zip", 52), "a/b.zip");
    }

    /// The whole demo, end to end, in a folder under the temp dir that is removed afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn demo_runs_end_to_end() {
        assert_eq!(run(Config::default()).await, 0);
    }
}
