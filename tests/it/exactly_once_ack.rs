//! Exactly once, for real: nothing is acknowledged (an SQS message deleted, an invocation
//! succeeding, a delivery recorded) that did not happen.
//!
//! Panics are injected with failpoints (`--features failpoints`, which `scripts/test.sh` passes;
//! without it these tests are ignored). Failpoint state is process-global, so each such test holds
//! a `fail::FailScenario` (one at a time) and aims its failpoint at its own objects with a marker
//! in their keys: the failpoints here panic only when their argument occurs in the key, so the
//! other tests of this binary, running alongside, never meet them.
//!
//! The webhook tests use a receiver on loopback (`sinks::Receiver`) and moto_server for S3.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use export_fetcher::config::Config;
use export_fetcher::handler::{self, HandlerError};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::aws::{ACCOUNT, Moto, REGION, env_at, env_with_sinks};
use crate::fixtures::{self, sha256_hex};
use crate::lambda_s3::{
    BUCKET, bucket_with_queue, get, manifest, moto_with_bucket, put, receive, s3_event, sqs_event,
    sqs_event_from_bodies,
};
use crate::sinks::{Receiver, request_verifies, verify_signature};

const SECRET: &str = "whsec-exactly-once-41b7";

/// Failpoints configured for one test; cleared (and the next test let in) when dropped.
#[cfg(feature = "failpoints")]
struct Scenario(#[allow(dead_code)] fail::FailScenario<'static>);

#[cfg(feature = "failpoints")]
impl Scenario {
    /// Arms each failpoint to panic for keys containing `marker`.
    fn panic_for(points: &[&str], marker: &str) -> Scenario {
        let scenario = fail::FailScenario::setup();
        for name in points {
            fail::cfg(*name, &format!("return({marker})")).unwrap();
        }
        Scenario(scenario)
    }

    fn disarm(&self, name: &str) {
        fail::remove(name);
    }
}

#[cfg(not(feature = "failpoints"))]
struct Scenario;

#[cfg(not(feature = "failpoints"))]
impl Scenario {
    fn panic_for(_: &[&str], _: &str) -> Scenario {
        unreachable!("failpoint tests are ignored without --features failpoints")
    }

    fn disarm(&self, _: &str) {}
}

/// The failpoints of the product (see `src/handler.rs` and `src/pipeline/stage.rs`).
const MESSAGE_TASK: &str = "handler::message_task";
const HASH_WRITE: &str = "stage::hash_write";

/// A runtime for a test that holds a scenario (a lock) while it awaits.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn webhook_config(url: &str) -> Config {
    Config {
        webhook_url: Some(url.to_string()),
        webhook_secret: Some(SECRET.to_string()),
        ..Config::default()
    }
}

/// Every key under `prefix` in the bucket.
async fn keys_under(s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let out = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

/// The webhook's delivery record for `key`, if any.
async fn webhook_record(s3: &aws_sdk_s3::Client, key: &str) -> Option<Value> {
    let body = get(
        s3,
        BUCKET,
        &format!("export-fetcher/deliveries/{key}/webhook.json"),
    )
    .await?;
    Some(serde_json::from_slice(&body).unwrap())
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs --features failpoints (scripts/test.sh passes it)"
)]
fn panicking_message_task_is_a_batch_item_failure_by_its_message_id() {
    const MARKER: &str = "fp-msg-task-3e1d";
    let scenario = Scenario::panic_for(&[MESSAGE_TASK], MARKER);
    runtime().block_on(async {
        let moto = Moto::start();
        let s3 = moto.s3();
        let queue_url = bucket_with_queue(&moto, BUCKET, "exports").await;
        let good = "reports/acked-normally.csv";
        let bad = format!("reports/{MARKER}.csv");
        put(&s3, BUCKET, good, b"a,b\n1,2\n".to_vec()).await;
        put(&s3, BUCKET, &bad, b"a,b\n3,4\n".to_vec()).await;
        // The notifications moto itself sent, as Lambda would hand them over in one batch.
        let msgs = receive(&moto.sqs(), &queue_url, 2).await;
        let bad_id = msgs
            .iter()
            .find(|m| m.body().unwrap_or("").contains(MARKER))
            .and_then(|m| m.message_id())
            .expect("a notification for the panicking object")
            .to_string();
        let env = env_at(&moto.endpoint, Config::default());

        let response = handler::handle(env.clone(), sqs_event("exports", &msgs), None)
            .await
            .expect("an SQS batch reports per message");
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": bad_id}]}),
            "exactly the panicking message is reported, by its own id"
        );
        assert!(
            manifest(&s3, BUCKET, good).await.is_some(),
            "the other message was done"
        );
        assert!(
            manifest(&s3, BUCKET, &bad).await.is_none(),
            "nothing was written for the message whose task panicked"
        );

        // The message stayed visible; its redelivery, once the fault is gone, is done.
        scenario.disarm(MESSAGE_TASK);
        let retry: Vec<_> = msgs
            .iter()
            .filter(|m| m.message_id() == Some(bad_id.as_str()))
            .cloned()
            .collect();
        let response = handler::handle(env, sqs_event("exports", &retry), None)
            .await
            .unwrap();
        assert_eq!(response, json!({"batchItemFailures": []}));
        assert_eq!(
            manifest(&s3, BUCKET, &bad).await.unwrap()["status"],
            "complete"
        );
    });
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs --features failpoints (scripts/test.sh passes it)"
)]
fn panicking_task_fails_a_direct_invocation() {
    const MARKER: &str = "fp-direct-9b20";
    let _scenario = Scenario::panic_for(&[MESSAGE_TASK], MARKER);
    runtime().block_on(async {
        let (moto, s3) = moto_with_bucket().await;
        let key = format!("reports/{MARKER}.csv");
        put(&s3, BUCKET, &key, b"a,b\n1,2\n".to_vec()).await;
        let env = env_at(&moto.endpoint, Config::default());
        // A direct S3 notification, the same wrapped in SNS, and an EventBridge event.
        let direct = s3_event(BUCKET, &key);
        let sns = json!({"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": format!("arn:aws:sns:{REGION}:{ACCOUNT}:exports:1"),
            "Sns": {"Type": "Notification", "MessageId": "sns-1",
                    "TopicArn": format!("arn:aws:sns:{REGION}:{ACCOUNT}:exports"),
                    "Subject": "Amazon S3 Notification", "Message": direct.to_string(),
                    "Timestamp": "2026-11-24T08:00:00.000Z"}
        }]});
        let eventbridge = json!({
            "version": "0", "id": "eb-1", "detail-type": "Object Created", "source": "aws.s3",
            "account": ACCOUNT, "time": "2026-11-24T08:00:00Z", "region": REGION,
            "resources": [format!("arn:aws:s3:::{BUCKET}")],
            "detail": {"version": "0", "bucket": {"name": BUCKET},
                       "object": {"key": key, "size": 8, "sequencer": "0055AED6DCD90281E5"},
                       "reason": "PutObject"}
        });
        for (name, event) in [("s3", direct), ("sns", sns), ("eventbridge", eventbridge)] {
            let err = handler::handle(env.clone(), event, None)
                .await
                .expect_err("a panicked task fails the invocation");
            match &err {
                HandlerError::Retryable { failed, first, .. } => {
                    assert_eq!(*failed, 1, "{name}: {err}");
                    assert!(first.contains("panicked"), "{name}: {err}");
                    assert!(first.contains(MARKER), "{name}: the panic is named: {err}");
                }
                other => panic!("{name}: expected a retryable failure, got {other}"),
            }
        }
        assert!(
            manifest(&s3, BUCKET, &key).await.is_none(),
            "nothing was written"
        );
    });
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs --features failpoints (scripts/test.sh passes it)"
)]
fn panic_in_the_hash_write_stage_fails_the_part_retryably_and_writes_no_manifest() {
    const MARKER: &str = "fp-hash-write-c4a8";
    let scenario = Scenario::panic_for(&[HASH_WRITE], MARKER);
    runtime().block_on(async {
        let (moto, s3) = moto_with_bucket().await;
        // Several chunks (512 KiB each), so that the part goes out as a multipart upload.
        let body = fixtures::users_jsonl(31, 12_000).bytes;
        assert!(body.len() > 3 * 512 * 1024, "{} bytes", body.len());
        let records = body.iter().filter(|&&b| b == b'\n').count() as u64;
        let key = format!("exports/{MARKER}.jsonl");
        put(&s3, BUCKET, &key, body.clone()).await;
        let env = env_at(&moto.endpoint, Config::default());
        let parts_prefix = format!("export-fetcher/parts/{key}/");

        // Through SQS: the message is a batch item failure (it stays visible).
        let event = sqs_event_from_bodies(&[("m-hash", s3_event(BUCKET, &key).to_string())]);
        let response = handler::handle(env.clone(), event, None).await.unwrap();
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "m-hash"}]}),
            "the part failed as retryable"
        );
        // Directly: the invocation fails, and says why.
        let err = handler::handle(env.clone(), s3_event(BUCKET, &key), None)
            .await
            .expect_err("the part failed as retryable");
        assert!(
            err.to_string().contains("hash/write stage") && err.to_string().contains("panicked"),
            "{err}"
        );
        assert!(
            manifest(&s3, BUCKET, &key).await.is_none(),
            "no manifest certifies a part whose hash/write stage panicked"
        );
        assert_eq!(
            keys_under(&s3, &parts_prefix).await,
            Vec::<String>::new(),
            "no part output is visible"
        );
        let uploads = crate::aws::open_uploads(&s3, BUCKET).await;
        assert!(
            uploads.is_empty(),
            "the part's upload was aborted: {uploads:?}"
        );

        // The retry, once the fault is gone, is complete and byte-exact.
        scenario.disarm(HASH_WRITE);
        let r = handler::handle(env, s3_event(BUCKET, &key), None)
            .await
            .expect("the retry succeeds");
        assert_eq!(r["results"][0]["outcome"], "done", "{r}");
        let m = manifest(&s3, BUCKET, &key).await.unwrap();
        assert_eq!(m["status"], "complete");
        assert_eq!(m["parts"][0]["records"], records);
        assert_eq!(m["parts"][0]["sha256"], sha256_hex(&body));
        let out = m["parts"][0]["output"]["key"].as_str().unwrap();
        assert!(
            get(&s3, BUCKET, out).await.unwrap() == body,
            "the part is byte-exact"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_redirect_is_not_followed_and_not_delivered() {
    let (moto, s3) = moto_with_bucket().await;
    // Where the redirects point: it answers 200 to anything, so following would "deliver".
    let target = Receiver::start(vec![200]);
    for status in [301u16, 302, 303, 307, 308] {
        let key = format!("reports/redirected-{status}.csv");
        put(&s3, BUCKET, &key, b"a,b\n1,2\n".to_vec()).await;
        let redirecting =
            Receiver::start_with(vec![(status, format!("Location: {}\r\n", target.url))]);
        let env = env_with_sinks(&moto, webhook_config(&redirecting.url));

        let err = handler::handle(env.clone(), s3_event(BUCKET, &key), None)
            .await
            .expect_err("a redirect is not a delivery: the object stays retryable");
        assert!(err.to_string().contains("redirect"), "{status}: {err}");
        assert_eq!(
            redirecting.requests().len(),
            1,
            "{status}: not retried in place"
        );
        let record = webhook_record(&s3, &key).await.expect("a delivery record");
        assert_ne!(record["state"], "delivered", "{status}: {record}");

        // Redelivered through SQS, it is still not acknowledged.
        let event = sqs_event_from_bodies(&[("m-redirect", s3_event(BUCKET, &key).to_string())]);
        let response = handler::handle(env, event, None).await.unwrap();
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "m-redirect"}]}),
            "{status}: the message stays visible"
        );
        assert_ne!(
            webhook_record(&s3, &key).await.unwrap()["state"],
            "delivered",
            "{status}"
        );
    }
    assert!(
        target.requests().is_empty(),
        "no redirect was followed: {:?}",
        target.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_huge_retry_after_does_not_panic() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "reports/retry-after-forever.csv";
    put(&s3, BUCKET, key, b"a,b\n1,2\n".to_vec()).await;
    let busy = Receiver::start_with(vec![(503, format!("Retry-After: {}\r\n", u64::MAX))]);
    let env = env_with_sinks(&moto, webhook_config(&busy.url));
    let started = Instant::now();
    let err = handler::handle(env, s3_event(BUCKET, key), None)
        .await
        .expect_err("not delivered: the object stays retryable");
    let text = err.to_string();
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains("503") && text.contains("no time left"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the clamped wait does not outlast the delivery budget"
    );
    assert_eq!(
        busy.requests().len(),
        1,
        "a wait longer than the budget is not slept"
    );
    assert_ne!(
        webhook_record(&s3, key).await.unwrap()["state"],
        "delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signature_covers_timestamp_and_idempotency_key() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "reports/signed.csv";
    put(&s3, BUCKET, key, b"a,b\n1,2\n".to_vec()).await;
    let hook = Receiver::start(vec![200]);
    let env = env_with_sinks(&moto, webhook_config(&hook.url));
    let r = handler::handle(env, s3_event(BUCKET, key), None)
        .await
        .unwrap();
    assert_eq!(
        r["results"][0]["deliveries"][0]["outcome"], "delivered",
        "{r}"
    );
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    let header = req.header("X-Export-Fetcher-Signature").unwrap();
    let idem = req.header("Idempotency-Key").unwrap();
    assert!(request_verifies(SECRET, req), "{header}");

    // The signed string, exactly: "<t>.<Idempotency-Key>.<raw body>".
    let t = header
        .split(',')
        .find_map(|f| f.strip_prefix("t="))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{idem}.").as_bytes());
    mac.update(&req.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header, format!("t={t},v2={hex}"));

    // Another key, another timestamp or another body: the signature does not verify.
    let other_key = "0".repeat(64);
    assert!(!verify_signature(SECRET, header, &other_key, &req.body));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let moved = header.replace(&format!("t={t}"), &format!("t={}", now + 1));
    assert_ne!(moved, header);
    assert!(!verify_signature(SECRET, &moved, idem, &req.body));
    let mut body = req.body.clone();
    body.push(b' ');
    assert!(!verify_signature(SECRET, header, idem, &body));
}

#[test]
fn webhook_http_url_with_secret_is_refused_unless_loopback() {
    // An s3:TestEvent: an accepted configuration runs it and succeeds without calling anything.
    let event = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/s3-test-event.json");
    let run = |url: &str, secret: Option<&str>| {
        let mut cmd = std::process::Command::new(crate::support::BIN);
        cmd.arg("invoke").arg(&event);
        for (k, v) in crate::aws::env_for("http://127.0.0.1:1") {
            cmd.env(k, v);
        }
        cmd.env("WEBHOOK_URL", url).env_remove("WEBHOOK_SECRET");
        if let Some(s) = secret {
            cmd.env("WEBHOOK_SECRET", s);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Refused at start-up, with the reason and never the secret.
    for url in [
        "http://hooks.example.com/braze",
        "http://10.0.0.7:8080/braze",
        "http://localhost.example.com/braze",
    ] {
        let (code, stderr) = run(url, Some(SECRET));
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains("WEBHOOK_URL") && stderr.contains("https://"),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains(SECRET), "{url}: {stderr}");
    }
    // Loopback, https, or no secret: accepted.
    for (url, secret) in [
        ("http://127.0.0.1:9/hook", Some(SECRET)),
        ("http://localhost:9/hook", Some(SECRET)),
        ("http://[::1]:9/hook", Some(SECRET)),
        ("https://hooks.example.com/braze", Some(SECRET)),
        ("http://hooks.example.com/braze", None),
    ] {
        let (code, stderr) = run(url, secret);
        assert_eq!(code, Some(0), "{url}: {stderr}");
    }
}
