//! The Lambda handler against a real S3-compatible server (moto_server on loopback), driven by
//! the notifications that server itself emits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, NotificationConfiguration, QueueConfiguration,
    VersioningConfiguration,
};
use export_fetcher::config::Config;
use export_fetcher::handler;
use serde_json::{Value, json};

use crate::aws::{self, ACCOUNT, CuttingProxy, Moto, REGION, env_at, queue};
use crate::fixtures::{self, DEFLATED, gzip, sha256_hex};
use crate::support::{self, validate_manifest};

pub const BUCKET: &str = "braze-exports";

pub async fn make_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
}

/// A running `moto_server` with [`BUCKET`] made in it, and its S3 client.
pub async fn moto_with_bucket() -> (Moto, aws_sdk_s3::Client) {
    let moto = Moto::start();
    let s3 = moto.s3();
    make_bucket(&s3, BUCKET).await;
    (moto, s3)
}

/// Creates `bucket` with versioning enabled.
pub async fn versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    make_bucket(s3, bucket).await;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Creates `bucket` with S3 → SQS notifications for every created object; returns the queue URL.
pub async fn bucket_with_queue(moto: &Moto, bucket: &str, queue: &str) -> String {
    let s3 = moto.s3();
    make_bucket(&s3, bucket).await;
    let url = aws::queue(moto, queue).await;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"))
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    url
}

/// Receives messages until `want` messages that are not `s3:TestEvent`s arrived (or 20 s).
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    want: usize,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut got = Vec::new();
    let started = Instant::now();
    while got
        .iter()
        .filter(|m: &&aws_sdk_sqs::types::Message| !m.body().unwrap_or("").contains("s3:TestEvent"))
        .count()
        < want
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} messages arrived",
            got.len()
        );
        got.extend(aws::receive_batch(sqs, url).await);
    }
    got
}

/// The Lambda SQS event for these messages, as Lambda builds it.
pub fn sqs_event(queue: &str, msgs: &[aws_sdk_sqs::types::Message]) -> Value {
    json!({"Records": msgs.iter().map(|m| json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1714550400000"},
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
        "awsRegion": REGION,
    })).collect::<Vec<_>>()})
}

pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

/// HeadObject of `key`, which must exist.
pub async fn head(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
}

/// Deletes `key`.
pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
}

pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(_) => None,
    }
}

pub async fn manifest(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Value> {
    let body = get(
        s3,
        bucket,
        &format!("export-fetcher/manifests/{key}.manifest.json"),
    )
    .await?;
    let m: Value = serde_json::from_slice(&body).unwrap();
    validate_manifest(&m, key);
    Some(m)
}

/// An SQS event whose messages have these ids and bodies.
pub fn sqs_event_from_bodies(msgs: &[(&str, String)]) -> Value {
    json!({"Records": msgs.iter().map(|(id, body)| json!({
        "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:exports"), "awsRegion": REGION,
    })).collect::<Vec<_>>()})
}

/// Runs `export-fetcher invoke` on an event against the server; returns the response JSON.
pub fn invoke(moto_endpoint: &str, event: &Value, extra_env: &[(&str, &str)]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, serde_json::to_vec(event).unwrap()).unwrap();
    let mut cmd = std::process::Command::new(support::BIN);
    cmd.arg("invoke").arg(&path);
    for (k, v) in crate::aws::env_for(moto_endpoint) {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let response = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "invoke printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), response)
}

/// A direct S3 notification for one object, shaped like S3's (key form-URL-encoded).
pub fn s3_event(bucket: &str, key: &str) -> Value {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2026-11-24T08:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "exports",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded, "sequencer": "0055AED6DCD90281E5"}}
    }]})
}

struct Sample {
    key: &'static str,
    body: Vec<u8>,
    /// Expected parts: name → decompressed bytes.
    parts: BTreeMap<String, Vec<u8>>,
    status: &'static str,
    kind: &'static str,
}

fn samples() -> Vec<Sample> {
    let users_a = fixtures::users_jsonl(1, 40).bytes;
    let users_b = fixtures::users_jsonl(2, 25).bytes;
    let csv_a = fixtures::dashboard_csv(
        3,
        30,
        fixtures::CsvOptions {
            bom: false,
            crlf: false,
        },
    )
    .bytes;
    let csv_b = fixtures::dashboard_csv(
        4,
        12,
        fixtures::CsvOptions {
            bom: false,
            crlf: false,
        },
    )
    .bytes;
    let report = fixtures::engagement_report(5, 20, b';').bytes;
    let avro = fixtures::currents_avro(6, "deflate", 300, 100).bytes;
    let archive = fixtures::message_archive_json(7, "email", "d_9f8e7d", Some("c_1"), true);
    let truncated = {
        let g = gzip(&users_a);
        g[..g.len() / 2].to_vec()
    };
    let one = |name: &str, b: &[u8]| BTreeMap::from([(name.to_string(), b.to_vec())]);
    vec![
        Sample {
            key: "segment-export/seg 1/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/114f0226319130e1a4770f2602b5639a.zip",
            body: fixtures::zip_of(
                &[("a1.txt", &users_a), ("b2.txt", &users_b)],
                DEFLATED,
                false,
            ),
            parts: BTreeMap::from([
                ("a1.txt".into(), users_a.clone()),
                ("b2.txt".into(), users_b.clone()),
            ]),
            status: "complete",
            kind: "api_user_export",
        },
        Sample {
            key: "segment-export/seg 1/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/9f86d081884c7d659a2feaa0c55ad015.gz",
            body: gzip(&users_b),
            parts: one("9f86d081884c7d659a2feaa0c55ad015", &users_b),
            status: "complete",
            kind: "api_user_export",
        },
        Sample {
            key: "segment-export/5e1b3c0a9d2f4a0012345678/2024-05-01/users-x7Kp2QvL9m.zip",
            body: fixtures::zip_of(
                &[("users-1.csv", &csv_a), ("users-2.csv", &csv_b)],
                DEFLATED,
                false,
            ),
            parts: BTreeMap::from([
                ("users-1.csv".into(), csv_a.clone()),
                ("users-2.csv".into(), csv_b.clone()),
            ]),
            status: "complete",
            kind: "dashboard_csv_export",
        },
        Sample {
            key: "reports/engagement/Campaigns é+1 2024.csv",
            body: report.clone(),
            parts: one("Campaigns é+1 2024.csv", &report),
            status: "complete",
            kind: "report",
        },
        Sample {
            key: "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro",
            body: avro.clone(),
            parts: one(
                "dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro",
                &avro,
            ),
            status: "complete",
            kind: "currents",
        },
        Sample {
            key: "sent_messages/email/6b9f1f5e0c1d2e3f4a5b6c7d8e9f0a1b/c_1/d_9f8e7d.json.gz",
            body: gzip(&archive),
            parts: one("d_9f8e7d.json", &archive),
            status: "complete",
            kind: "message_archive",
        },
        Sample {
            key: "segment-export/seg 1/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/ffffffffffffffffffffffffffffffff.gz",
            body: truncated,
            parts: BTreeMap::new(),
            status: "failed",
            kind: "api_user_export",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_from_the_server_drive_every_kind_end_to_end() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let sqs = moto.sqs();
    let url = bucket_with_queue(&moto, BUCKET, "exports").await;
    let samples = samples();
    for s in &samples {
        put(&s3, BUCKET, s.key, s.body.clone()).await;
    }
    let msgs = receive(&sqs, &url, samples.len()).await;
    let event = sqs_event("exports", &msgs);
    let (code, response) = invoke(&moto.endpoint, &event, &[]);
    assert_eq!(code, 0, "{response}");
    assert_eq!(response, json!({"batchItemFailures": []}));

    for s in &samples {
        let m = manifest(&s3, BUCKET, s.key)
            .await
            .unwrap_or_else(|| panic!("no manifest for {}", s.key));
        assert_eq!(m["status"], s.status, "{}: {m:#}", s.key);
        assert_eq!(m["kind"], s.kind, "{}", s.key);
        assert_eq!(m["source"]["bucket"], BUCKET);
        assert_eq!(m["source"]["key"], s.key);
        assert_eq!(m["source"]["size"], s.body.len() as u64);
        assert_eq!(
            m["source"]["etag"],
            format!("{:x}", md5_hex(&s.body)),
            "{}",
            s.key
        );
        assert!(
            m["source"]["event_name"]
                .as_str()
                .unwrap()
                .starts_with("ObjectCreated:")
        );
        for (name, bytes) in &s.parts {
            let part = m["parts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{}: no part {name}: {m:#}", s.key));
            assert_eq!(part["sha256"], sha256_hex(bytes), "{}/{name}", s.key);
            assert_eq!(part["bytes"], bytes.len() as u64);
            let out_key = part["output"]["key"].as_str().unwrap();
            assert_eq!(out_key, format!("export-fetcher/parts/{}/{name}", s.key));
            assert_eq!(part["output"]["bucket"], BUCKET);
            let written = get(&s3, BUCKET, out_key)
                .await
                .unwrap_or_else(|| panic!("part {out_key} missing"));
            assert!(written == *bytes, "{out_key} is not byte-exact");
        }
        if s.status == "failed" {
            assert!(
                m["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("truncated"),
                "{m:#}"
            );
            assert!(
                m["parts"][0]["output"].is_null(),
                "a failed part is not written: {m:#}"
            );
        }
    }

    // Our own outputs were notified too (same bucket): the loop guard skips every one of them.
    let written = samples.iter().map(|s| s.parts.len() + 1).sum::<usize>();
    let echoes = receive(&sqs, &url, written).await;
    assert!(
        echoes
            .iter()
            .all(|m| m.body().unwrap_or("").contains("export-fetcher"))
    );
    let (code, response) = invoke(&moto.endpoint, &sqs_event("exports", &echoes), &[]);
    assert_eq!((code, &response), (0, &json!({"batchItemFailures": []})));
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("export-fetcher/manifests/export-fetcher/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "outputs were processed again");

    // The same notifications again: nothing is rewritten.
    let before = manifest_etags(&s3).await;
    let (code, response) = invoke(&moto.endpoint, &event, &[]);
    assert_eq!((code, &response), (0, &json!({"batchItemFailures": []})));
    assert_eq!(
        manifest_etags(&s3).await,
        before,
        "a duplicate notification rewrote a manifest"
    );
    let again = receive_quick(&sqs, &url).await;
    assert!(
        again.is_empty(),
        "a duplicate notification wrote objects: {:?}",
        again.iter().map(|m| m.body()).collect::<Vec<_>>()
    );
}

async fn receive_quick(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

async fn manifest_etags(s3: &aws_sdk_s3::Client) -> BTreeMap<String, String> {
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("export-fetcher/manifests/")
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap().to_string(),
                format!("{:?}{:?}", o.e_tag(), o.last_modified()),
            )
        })
        .collect()
}

fn md5_hex(data: &[u8]) -> Md5Hex {
    Md5Hex(md5_digest(data))
}

struct Md5Hex([u8; 16]);

impl std::fmt::LowerHex for Md5Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// MD5 (RFC 1321), for checking S3 ETags of single-part uploads.
fn md5_digest(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i {
                0..=15 => ((b & c) | (!b & d), i),
                16..=31 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                32..=47 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_a_batch_item_failure_and_the_rest_is_processed() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let sqs = moto.sqs();
    let url = bucket_with_queue(&moto, BUCKET, "exports").await;
    let key = "reports/daily.csv";
    put(&s3, BUCKET, key, b"a,b\n1,2\n".to_vec()).await;
    let msgs = receive(&sqs, &url, 1).await;
    let mut event = sqs_event("exports", &msgs);
    event["Records"].as_array_mut().unwrap().push(json!({
        "messageId": "poison-1", "receiptHandle": "x", "body": "this is not JSON {",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:exports", "awsRegion": REGION
    }));
    let (code, response) = invoke(&moto.endpoint, &event, &[]);
    assert_eq!(code, 1, "a batch item failure is exit status 1: {response}");
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "poison-1"}]})
    );
    assert_eq!(
        manifest(&s3, BUCKET, key).await.unwrap()["status"],
        "complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_gets_a_failed_manifest_naming_nosuchkey() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/gone.zip";
    let (code, response) = invoke(&moto.endpoint, &s3_event(BUCKET, key), &[]);
    assert_eq!(
        code, 0,
        "a missing object is permanent, not retried: {response}"
    );
    let m = manifest(&s3, BUCKET, key).await.expect("a failed manifest");
    assert_eq!(m["status"], "failed");
    assert_eq!(m["kind"], "api_user_export");
    assert!(
        m["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NoSuchKey"),
        "{m:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_exhaustion_is_retryable_and_leaves_no_manifest() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/big.gz";
    put(
        &s3,
        BUCKET,
        key,
        gzip(&fixtures::users_jsonl(9, 2000).bytes),
    )
    .await;
    let env = env_at(&moto.endpoint, Config::default());
    let err = handler::handle(env, s3_event(BUCKET, key), Some(Instant::now()))
        .await
        .expect_err("past the deadline the invocation fails for a retry");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(
        manifest(&s3, BUCKET, key).await.is_none(),
        "no manifest may claim anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_produce_one_manifest() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/dup.gz";
    put(
        &s3,
        BUCKET,
        key,
        gzip(&fixtures::users_jsonl(10, 500).bytes),
    )
    .await;
    let env = env_at(&moto.endpoint, Config::default());
    // moto sometimes answers 500 to concurrent PUTs of one key (real S3 does not); a duplicate
    // that hits it is retried, as SQS would redeliver it. Over all rounds: one `done`, the rest
    // `duplicate`, never a second manifest.
    let mut outcomes = Vec::new();
    let mut pending = 6;
    for _round in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..pending {
            let env = env.clone();
            tasks.push(tokio::spawn(async move {
                handler::handle(env, s3_event(BUCKET, key), None).await
            }));
        }
        pending = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => outcomes.push(r["results"][0]["outcome"].as_str().unwrap().to_string()),
                Err(e) => {
                    assert!(
                        e.to_string().contains("HTTP 500"),
                        "only moto's 500 is tolerated: {e}"
                    );
                    pending += 1;
                }
            }
        }
        if pending == 0 {
            break;
        }
    }
    assert_eq!(pending, 0, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| *o == "done").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        manifest(&s3, BUCKET, key).await.unwrap()["status"],
        "complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_mid_object_resumes_from_the_last_byte() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/cut.zip";
    let users = fixtures::users_jsonl(11, 3000).bytes;
    let body = fixtures::zip_of(&[("u.txt", &users)], fixtures::STORED, false);
    assert!(body.len() > 1 << 20);
    put(&s3, BUCKET, key, body).await;
    let proxy = CuttingProxy::start(&moto.endpoint, 400 * 1024, 2);
    let env = env_at(&proxy.endpoint, Config::default());
    let r = handler::handle(env, s3_event(BUCKET, key), None)
        .await
        .unwrap();
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    assert!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy cut the object's read"
    );
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete", "{m:#}");
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&users));
    assert_eq!(m["parts"][0]["records"], 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_bucket_prefix_filters_and_sse_are_honoured() {
    let (moto, s3) = moto_with_bucket().await;
    make_bucket(&s3, "braze-indexed").await;
    let kept = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/keep.gz";
    let dropped = "tmp/ignored.csv";
    put(&s3, BUCKET, kept, gzip(b"{\"external_id\":\"u1\"}\n")).await;
    put(&s3, BUCKET, dropped, b"a,b\n1,2\n".to_vec()).await;
    let mut event = s3_event(BUCKET, kept);
    let other = s3_event(BUCKET, dropped)["Records"][0].clone();
    event["Records"].as_array_mut().unwrap().push(other);
    let (code, response) = invoke(
        &moto.endpoint,
        &event,
        &[
            ("OUTPUT_BUCKET", "braze-indexed"),
            ("OUTPUT_PREFIX", "indexed"),
            ("EXCLUDE_KEYS", "tmp/**"),
            ("OUTPUT_SSE", "AES256"),
        ],
    );
    assert_eq!(code, 0, "{response}");
    let mkey = format!("indexed/manifests/{kept}.manifest.json");
    let manifest_head = head(&s3, "braze-indexed", &mkey).await;
    assert_eq!(
        manifest_head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    let part = head(&s3, "braze-indexed", &format!("indexed/parts/{kept}/keep")).await;
    assert_eq!(
        part.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    assert!(
        get(
            &s3,
            "braze-indexed",
            &format!("indexed/manifests/{dropped}.manifest.json")
        )
        .await
        .is_none()
    );
    assert!(
        get(
            &s3,
            BUCKET,
            &format!("export-fetcher/manifests/{kept}.manifest.json")
        )
        .await
        .is_none()
    );
}

/// The body of the first message in `msgs` whose body mentions `needle`.
fn body_with<'a>(
    msgs: &'a [aws_sdk_sqs::types::Message],
    needle: &str,
) -> &'a aws_sdk_sqs::types::Message {
    msgs.iter()
        .find(|m| m.body().unwrap_or("").contains(needle))
        .unwrap_or_else(|| panic!("no message mentions {needle}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_envelope_works_with_the_servers_own_notifications() {
    use aws_sdk_s3::types::{EventBridgeConfiguration, TopicConfiguration};
    let moto = Moto::start();
    let s3 = moto.s3();
    let sqs = moto.sqs();
    make_bucket(&s3, BUCKET).await;
    let direct_q = queue(&moto, "direct").await;
    let sns_q = queue(&moto, "via-sns").await;
    let eb_q = queue(&moto, "via-eventbridge").await;
    let topic = moto
        .sns()
        .create_topic()
        .name("exports")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    moto.sns()
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:via-sns"))
        .send()
        .await
        .unwrap();
    let eb = moto.eventbridge();
    eb.put_rule()
        .name("exports-created")
        .event_pattern(r#"{"source":["aws.s3"],"detail-type":["Object Created"]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("exports-created")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:via-eventbridge"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(BUCKET)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:direct"))
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .topic_configurations(
                    TopicConfiguration::builder()
                        .topic_arn(&topic)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    // One object per envelope, with awkward keys (space, '+', '=', unicode).
    let names = [
        "direct s3",
        "sqs+s3",
        "sns=s3",
        "sqs-sns-é",
        "eventbridge ü",
        "sqs+eventbridge",
    ];
    let keys: Vec<String> = names
        .iter()
        .map(|n| format!("reports/{n}/report {n}.csv"))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        put(
            &s3,
            BUCKET,
            key,
            format!("campaign,sent\nc{i},1\n").into_bytes(),
        )
        .await;
    }
    let direct = receive(&sqs, &direct_q, keys.len()).await;
    let via_sns = receive(&sqs, &sns_q, keys.len()).await;
    let via_eb = receive(&sqs, &eb_q, keys.len()).await;
    // The encoded form S3 puts in notifications ("report+direct+s3.csv") finds the message.
    let enc = |k: &str| {
        k.rsplit('/')
            .next()
            .unwrap()
            .replace(' ', "+")
            .replace('é', "%C3%A9")
            .replace('=', "%3D")
    };
    let direct_body: Value =
        serde_json::from_str(body_with(&direct, &enc(&keys[0])).body().unwrap()).unwrap();
    let sns_wrapper: Value =
        serde_json::from_str(body_with(&via_sns, "sns%3Ds3").body().unwrap()).unwrap();
    let eb_event: Value =
        serde_json::from_str(body_with(&via_eb, "reports/eventbridge ").body().unwrap()).unwrap();
    let events: Vec<(usize, Value)> = vec![
        (0, direct_body),
        (
            1,
            sqs_event(
                "direct",
                std::slice::from_ref(body_with(&direct, "sqs%2Bs3")),
            ),
        ),
        (
            2,
            json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
              "EventSubscriptionArn": format!("{topic}:sub"), "Sns": sns_wrapper}]}),
        ),
        (
            3,
            sqs_event(
                "via-sns",
                std::slice::from_ref(body_with(&via_sns, "sqs-sns-%C3%A9")),
            ),
        ),
        (4, eb_event),
        (
            5,
            sqs_event(
                "via-eventbridge",
                std::slice::from_ref(body_with(&via_eb, "sqs+eventbridge")),
            ),
        ),
    ];
    for (i, event) in events {
        let (code, response) = invoke(&moto.endpoint, &event, &[]);
        assert_eq!(code, 0, "{}: {response}", names[i]);
        let m = manifest(&s3, BUCKET, &keys[i])
            .await
            .unwrap_or_else(|| panic!("{}: no manifest for {:?}", names[i], keys[i]));
        assert_eq!(m["status"], "complete", "{}", names[i]);
        assert_eq!(m["kind"], "report", "{}", names[i]);
        assert_eq!(m["source"]["key"], keys[i].as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_part_is_written_by_a_checksummed_multipart_upload() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/large.gz";
    let mut users = Vec::new();
    while users.len() < 20 << 20 {
        users.extend_from_slice(&fixtures::users_jsonl(users.len() as u64, 2000).bytes);
    }
    put(&s3, BUCKET, key, gzip(&users)).await;
    let env = env_at(&moto.endpoint, Config::default());
    let r = handler::handle(env, s3_event(BUCKET, key), None)
        .await
        .unwrap();
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    let part_key = format!("export-fetcher/parts/{key}/large");
    let head = s3
        .head_object()
        .bucket(BUCKET)
        .key(&part_key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let etag = head.e_tag().unwrap().trim_matches('"').to_string();
    let parts: usize = etag
        .rsplit_once('-')
        .map(|(_, n)| n.parse().unwrap())
        .unwrap_or(1);
    assert_eq!(
        parts,
        users.len().div_ceil(8 << 20),
        "8 MiB parts: ETag {etag}"
    );
    assert!(
        head.checksum_crc32_c().is_some(),
        "S3 holds a CRC-32C for the upload"
    );
    assert!(
        get(&s3, BUCKET, &part_key).await.unwrap() == users,
        "byte-exact"
    );
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&users));
}
