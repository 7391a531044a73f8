//! Exactly once under deadlines (RELIABILITY.md, "Deadlines, aborts and the loop guard"): every
//! S3 request ends by the invocation deadline, abandoned multipart uploads are aborted, a
//! delivery claim never outlives its invocation, outputs are recognised by their metadata, and
//! configurations S3 would refuse are refused at start-up.
//!
//! Against moto_server on loopback with the real SDK clients; a [`StallProxy`] in front of it
//! holds chosen requests unanswered, as a stuck connection does.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use export_fetcher::config::{Config, Limits, MAX_OUTPUT_PREFIX_BYTES, S3_MAX_PARTS};
use export_fetcher::handler::{self, DEADLINE_MARGIN, env_with_clients, sinks_from_config};
use export_fetcher::manifest::Manifest;
use export_fetcher::pipeline::Env;
use export_fetcher::store::s3::{LONGEST_WAIT, OUTPUT_METADATA};
use serde_json::{Value, json};

use crate::aws::{
    Moto, REGION, drain, env_at, open_uploads, queue, read_request_head, s3_client, serve_proxy,
    stop_proxy,
};
use crate::fixtures::{gzip, sha256_hex};
use crate::lambda_s3::{BUCKET, get, head, make_bucket, manifest, moto_with_bucket, put, s3_event};
use crate::support::{input, run_raw};

/// What a [`StallProxy`] does with a request its rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Never forwarded, never answered.
    Request,
    /// Forwarded, and the server's answer thrown away: the client never hears of it.
    Answer,
}

type StallRule = Box<dyn Fn(&str, &str) -> Option<Stall> + Send + Sync>;

/// An HTTP-aware loopback proxy that forwards requests unchanged, except those its rule matches
/// while armed: those are held (see [`Stall`]) until the client gives up on the connection.
struct StallProxy {
    endpoint: String,
    stalled: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl StallProxy {
    fn start(upstream: &str, rule: StallRule) -> StallProxy {
        let stalled = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let rule = Arc::new(rule);
        let (stalled2, armed2) = (stalled.clone(), armed.clone());
        let (endpoint, stop) = serve_proxy(upstream, move |client, server, upstream| {
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(s2, c2));
            let (rule, stalled, armed) = (rule.clone(), stalled2.clone(), armed2.clone());
            let upstream = upstream.to_string();
            std::thread::spawn(move || forward(client, server, &upstream, &rule, &stalled, &armed));
        });
        StallProxy {
            endpoint,
            stalled,
            armed,
            stop,
        }
    }

    fn stalled(&self) -> u64 {
        self.stalled.load(Ordering::SeqCst)
    }

    /// From now on, forwards every request.
    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

/// Stalls (`how`) every `method` request whose target contains `target_has`.
fn stall_on(method: &'static str, target_has: &'static str, how: Stall) -> StallRule {
    Box::new(move |m: &str, target: &str| {
        (m == method && target.contains(target_has)).then_some(how)
    })
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        stop_proxy(&self.stop, &self.endpoint);
    }
}

/// Server → client, as is.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Client → server, one request at a time (the SDKs never pipeline).
fn forward(
    client: TcpStream,
    mut server: TcpStream,
    upstream: &str,
    rule: &StallRule,
    stalled: &AtomicU64,
    armed: &AtomicBool,
) {
    let mut reader = BufReader::new(client);
    loop {
        let Some(req) = read_request_head(&mut reader) else {
            let _ = server.shutdown(Shutdown::Both);
            return;
        };
        let mut body = Vec::new();
        if req.copy_body(&mut reader, &mut body).is_err() {
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        let stall = if armed.load(Ordering::SeqCst) {
            rule(&req.method, &req.target)
        } else {
            None
        };
        match stall {
            None => {
                if server.write_all(&req.head).is_err() || server.write_all(&body).is_err() {
                    return;
                }
            }
            Some(how) => {
                stalled.fetch_add(1, Ordering::SeqCst);
                if how == Stall::Answer
                    && let Ok(mut other) = TcpStream::connect(upstream)
                {
                    // Sent on a connection of its own, whose answer nobody reads on.
                    let _ = other.write_all(&req.head);
                    let _ = other.write_all(&body);
                    let _ = other.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = other.read(&mut [0u8; 4096]);
                }
                // Hold the client until it gives up on the connection.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// The request target's path, without its query.
fn path(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// A JSON-lines object a little over 10 MiB: two parts of 8 MiB.
fn ten_mib_jsonl() -> Vec<u8> {
    let mut body = Vec::with_capacity(11 << 20);
    let mut i = 0u64;
    while body.len() < (10 << 20) + 4321 {
        body.extend_from_slice(
            format!("{{\"external_id\":\"user-{i:09}\",\"n\":{i},\"pad\":\"yyyyyyyyyyyyyyyy\"}}\n")
                .as_bytes(),
        );
        i += 1;
    }
    body
}

fn small_jsonl() -> Vec<u8> {
    (0..50)
        .map(|i| format!("{{\"external_id\":\"u{i}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

async fn output_marker(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let out = head(s3, bucket, key).await;
    out.metadata().and_then(|m| m.get(OUTPUT_METADATA)).cloned()
}

/// Runs the handler, failing the test if it outlives `limit` (a request that nothing bounds).
async fn handle_within(
    env: Arc<Env>,
    event: Value,
    deadline: Option<Instant>,
    limit: Duration,
) -> Result<Value, handler::HandlerError> {
    tokio::time::timeout(limit, handler::handle(env, event, deadline))
        .await
        .unwrap_or_else(|_| panic!("the invocation did not return within {limit:?}"))
}

/// The retry of `key`'s notification once `proxy` forwards everything again, with 20 s to go.
async fn retry_healthy(
    proxy: &StallProxy,
    env: Arc<Env>,
    key: &str,
) -> Result<Value, handler::HandlerError> {
    proxy.disarm();
    handle_within(
        env,
        s3_event(BUCKET, key),
        Some(Instant::now() + Duration::from_secs(20)),
        Duration::from_secs(40),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------------

#[test]
fn deadline_margin_is_longer_than_the_longest_single_wait() {
    assert!(
        DEADLINE_MARGIN > LONGEST_WAIT,
        "margin {DEADLINE_MARGIN:?}, longest wait {LONGEST_WAIT:?}"
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // A 15-minute invocation stops work the whole margin before Lambda's deadline.
    let work = handler::work_deadline(now_ms + 15 * 60 * 1000).unwrap();
    let left = work.saturating_duration_since(Instant::now());
    let margin = Duration::from_secs(15 * 60) - left;
    assert!(
        margin >= DEADLINE_MARGIN && margin < DEADLINE_MARGIN + Duration::from_secs(1),
        "{margin:?}"
    );
    // A short one keeps half its time for the margin.
    let work = handler::work_deadline(now_ms + 20_000).unwrap();
    let left = work.saturating_duration_since(Instant::now());
    assert!(
        left <= Duration::from_secs(10) && left > Duration::from_secs(9),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_attempt_timeout_is_bounded_by_the_time_left() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "exports/stalled-get.jsonl.gz";
    put(&s3, BUCKET, key, gzip(&small_jsonl())).await;
    // Every GET of the object hangs; its HEAD and the manifest's GET go through.
    let object_path = format!("/{BUCKET}/{key}");
    let proxy = StallProxy::start(
        &moto.endpoint,
        Box::new(move |method: &str, target: &str| {
            (method == "GET" && path(target) == object_path).then_some(Stall::Request)
        }),
    );
    let env = env_at(&proxy.endpoint, Config::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3);
    let r = handle_within(
        env.clone(),
        s3_event(BUCKET, key),
        Some(deadline),
        Duration::from_secs(40),
    )
    .await;
    let took = started.elapsed();
    let err = r.expect_err("a read that cannot finish makes the object retryable");
    eprintln!("stalled GET: {err} after {took:?}");
    assert!(proxy.stalled() >= 1, "the GET was stalled");
    assert!(
        took < Duration::from_millis(3_000 + 1_500),
        "the invocation returned {took:?} after it started, past its 3 s deadline"
    );
    assert!(
        err.to_string().contains("deadline"),
        "the error says the deadline stopped it: {err}"
    );
    assert!(manifest(&s3, BUCKET, key).await.is_none());

    // The retry, with the connection healthy again, completes.
    let r = retry_healthy(&proxy, env, key)
        .await
        .expect("the retry succeeds");
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    assert_eq!(
        manifest(&s3, BUCKET, key).await.unwrap()["status"],
        "complete"
    );
}

/// Stalls one multipart step until the deadline: the invocation returns retryably before its
/// deadline is long past, no upload is left open, nothing is visible; the retry completes.
async fn stalled_multipart_step_is_aborted(key: &str, rule: StallRule) {
    let (moto, s3) = moto_with_bucket().await;
    let body = ten_mib_jsonl();
    put(&s3, BUCKET, key, body.clone()).await;
    let proxy = StallProxy::start(&moto.endpoint, rule);
    let env = env_at(&proxy.endpoint, Config::default());
    let part_key = format!(
        "export-fetcher/parts/{key}/{}",
        key.rsplit('/').next().unwrap()
    );
    let started = Instant::now();
    let r = handle_within(
        env.clone(),
        s3_event(BUCKET, key),
        Some(started + Duration::from_secs(4)),
        Duration::from_secs(60),
    )
    .await;
    let took = started.elapsed();
    let err = r.expect_err("a stalled upload makes the object retryable");
    eprintln!("{key}: {err} after {took:?}");
    assert!(proxy.stalled() >= 1, "a multipart step was stalled");
    assert!(
        took < Duration::from_secs(4) + LONGEST_WAIT,
        "cleanup after the deadline took {took:?}"
    );
    assert_eq!(
        open_uploads(&s3, BUCKET).await,
        Vec::<String>::new(),
        "every multipart upload was aborted"
    );
    assert!(manifest(&s3, BUCKET, key).await.is_none());
    assert!(get(&s3, BUCKET, &part_key).await.is_none());

    proxy.disarm();
    let r = handle_within(env, s3_event(BUCKET, key), None, Duration::from_secs(60))
        .await
        .expect("the retry succeeds");
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&body));
    assert!(get(&s3, BUCKET, &part_key).await.unwrap() == body);
    // A part written in several parts is marked as an output too.
    assert_eq!(
        output_marker(&s3, BUCKET, &part_key).await.as_deref(),
        Some("part")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_multipart_upload_is_aborted_on_deadline() {
    stalled_multipart_step_is_aborted(
        "exports/stalled-part.jsonl",
        stall_on("PUT", "partNumber=2", Stall::Request),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_complete_multipart_upload_is_aborted_on_deadline() {
    stalled_multipart_step_is_aborted(
        "exports/stalled-complete.jsonl",
        stall_on("POST", "uploadId=", Stall::Request),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_create_multipart_upload_is_found_and_aborted() {
    // S3 creates the upload, the answer is lost: its id is known only by listing.
    stalled_multipart_step_is_aborted(
        "exports/unanswered-create.jsonl",
        stall_on("POST", "uploads", Stall::Answer),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_left_by_a_killed_invocation_is_aborted_by_the_retry() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "exports/killed-mid-upload.jsonl";
    let body = ten_mib_jsonl();
    put(&s3, BUCKET, key, body.clone()).await;
    // An invocation that Lambda killed mid-upload left its multipart upload open.
    let part_key = format!("export-fetcher/parts/{key}/killed-mid-upload.jsonl");
    s3.create_multipart_upload()
        .bucket(BUCKET)
        .key(&part_key)
        .send()
        .await
        .unwrap();
    assert_eq!(open_uploads(&s3, BUCKET).await.len(), 1);
    let env = env_at(&moto.endpoint, Config::default());
    let r = handle_within(env, s3_event(BUCKET, key), None, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    assert!(get(&s3, BUCKET, &part_key).await.unwrap() == body);
    assert_eq!(open_uploads(&s3, BUCKET).await, Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Delivery claims
// ---------------------------------------------------------------------------------------------

/// The environment forwarding to `queue_url` through `sqs_endpoint`.
fn env_with_sqs(moto: &Moto, queue_url: &str, sqs_endpoint: &str) -> Arc<Env> {
    let cfg = Config {
        sqs_queue_url: Some(queue_url.to_string()),
        ..Config::default()
    };
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .endpoint_url(sqs_endpoint)
            .build(),
    );
    let sinks = sinks_from_config(&cfg, moto.sns(), sqs, moto.eventbridge()).unwrap();
    Arc::new(
        env_with_clients(cfg, s3_client(&moto.endpoint))
            .unwrap()
            .with_sinks(sinks),
    )
}

async fn delivery_record(s3: &aws_sdk_s3::Client, key: &str) -> Value {
    let body = get(
        s3,
        BUCKET,
        &format!("export-fetcher/deliveries/{key}/sqs.json"),
    )
    .await
    .expect("a delivery record");
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_after_claim_does_not_block_the_retry_delivery() {
    let (moto, s3) = moto_with_bucket().await;
    let url = queue(&moto, "claims").await;
    let key = "exports/claimed-then-timed-out.jsonl";
    put(&s3, BUCKET, key, small_jsonl()).await;
    // The sink's SendMessage hangs: the invocation times out after claiming the delivery.
    let proxy = StallProxy::start(&moto.endpoint, stall_on("POST", "", Stall::Request));
    let env = env_with_sqs(&moto, &url, &proxy.endpoint);
    let started = Instant::now();
    let r = handle_within(
        env.clone(),
        s3_event(BUCKET, key),
        Some(started + Duration::from_secs(3)),
        Duration::from_secs(40),
    )
    .await;
    let took = started.elapsed();
    let err = r.expect_err("a send cut by the deadline is retried");
    eprintln!("claimed, then timed out: {err} after {took:?}");
    assert!(proxy.stalled() >= 1, "the send was stalled");
    assert!(took < Duration::from_secs(3) + LONGEST_WAIT, "{took:?}");
    // The claim was released: the record says the send failed, and it is an output.
    let record = delivery_record(&s3, key).await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(
        output_marker(
            &s3,
            BUCKET,
            &format!("export-fetcher/deliveries/{key}/sqs.json")
        )
        .await
        .as_deref(),
        Some("delivery")
    );
    assert!(manifest(&s3, BUCKET, key).await.is_some());

    // The retry (SQS redelivers within the visibility timeout) delivers at once.
    let r = retry_healthy(&proxy, env, key)
        .await
        .expect("the retry delivers");
    let result = &r["results"][0];
    assert_eq!(result["outcome"], "duplicate", "{r}");
    assert_eq!(result["deliveries"][0]["outcome"], "delivered", "{r}");
    assert_eq!(delivery_record(&s3, key).await["state"], "delivered");
    let bodies = drain(&moto.sqs(), &url).await;
    assert_eq!(bodies.len(), 1, "delivered once: {bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_of_an_invocation_killed_at_its_deadline_expires_then() {
    let (moto, s3) = moto_with_bucket().await;
    let url = queue(&moto, "killed").await;
    let key = "exports/claimed-then-killed.jsonl";
    put(&s3, BUCKET, key, small_jsonl()).await;
    // The object is processed once, with no sink: the manifest exists.
    let plain = env_at(&moto.endpoint, Config::default());
    handle_within(plain, s3_event(BUCKET, key), None, Duration::from_secs(40))
        .await
        .unwrap();
    let m: Manifest = serde_json::from_value(manifest(&s3, BUCKET, key).await.unwrap()).unwrap();
    let idempotency_key = export_fetcher::sink::idempotency_key(&m);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A `sending` claim left by an invocation that Lambda killed: it holds until that
    // invocation's deadline, recorded in it, and not a minute longer.
    let claim = |expires: u64| {
        json!({"idempotency_key": idempotency_key, "sink": "sqs", "state": "sending",
               "unix": now - 5, "expires": expires})
        .to_string()
        .into_bytes()
    };
    let record_key = format!("export-fetcher/deliveries/{key}/sqs.json");
    let env = env_with_sqs(&moto, &url, &moto.endpoint);

    put(&s3, BUCKET, &record_key, claim(now + 600)).await;
    let r = handle_within(
        env.clone(),
        s3_event(BUCKET, key),
        None,
        Duration::from_secs(40),
    )
    .await;
    assert!(r.is_err(), "a live claim makes the object wait: {r:?}");
    assert!(drain(&moto.sqs(), &url).await.is_empty());

    put(&s3, BUCKET, &record_key, claim(now - 1)).await;
    let r = handle_within(env, s3_event(BUCKET, key), None, Duration::from_secs(40))
        .await
        .expect("an expired claim is taken over");
    assert_eq!(
        r["results"][0]["deliveries"][0]["outcome"], "delivered",
        "{r}"
    );
    assert_eq!(drain(&moto.sqs(), &url).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Loop guard by metadata
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_outputs_under_a_changed_output_prefix_are_skipped_by_metadata() {
    let (moto, s3) = moto_with_bucket().await;
    make_bucket(&s3, "outputs-a").await;
    make_bucket(&s3, "outputs-b").await;
    let key = "exports/users.jsonl";
    put(&s3, BUCKET, key, small_jsonl()).await;
    let r = handle_within(
        env_at(&moto.endpoint, Config::default()),
        s3_event(BUCKET, key),
        None,
        Duration::from_secs(40),
    )
    .await
    .unwrap();
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    let manifest_key = format!("export-fetcher/manifests/{key}.manifest.json");
    let part_key = format!("export-fetcher/parts/{key}/users.jsonl");
    assert_eq!(
        output_marker(&s3, BUCKET, &manifest_key).await.as_deref(),
        Some("manifest")
    );
    assert_eq!(
        output_marker(&s3, BUCKET, &part_key).await.as_deref(),
        Some("part")
    );

    // OUTPUT_PREFIX changed: the old outputs are no longer under it, and are still skipped.
    let moved = env_at(
        &moto.endpoint,
        Config {
            output_prefix: "v2/".into(),
            ..Config::default()
        },
    );
    for old in [&manifest_key, &part_key] {
        let r = handle_within(
            moved.clone(),
            s3_event(BUCKET, old),
            None,
            Duration::from_secs(40),
        )
        .await
        .unwrap();
        let result = &r["results"][0];
        assert_eq!(result["outcome"], "skipped", "{old}: {r}");
        assert!(
            result["reason"].as_str().unwrap().contains(OUTPUT_METADATA),
            "{old}: {r}"
        );
    }
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("v2/")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty(), "{:?}", listed.contents());

    // OUTPUT_BUCKET changed: outputs in the old output bucket are skipped too.
    let to_a = env_at(
        &moto.endpoint,
        Config {
            output_bucket: Some("outputs-a".into()),
            ..Config::default()
        },
    );
    handle_within(to_a, s3_event(BUCKET, key), None, Duration::from_secs(40))
        .await
        .unwrap();
    let to_b = env_at(
        &moto.endpoint,
        Config {
            output_bucket: Some("outputs-b".into()),
            ..Config::default()
        },
    );
    let r = handle_within(
        to_b,
        s3_event("outputs-a", &part_key),
        None,
        Duration::from_secs(40),
    )
    .await
    .unwrap();
    assert_eq!(r["results"][0]["outcome"], "skipped", "{r}");
    let listed = s3
        .list_objects_v2()
        .bucket("outputs-b")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty(), "{:?}", listed.contents());
}

// ---------------------------------------------------------------------------------------------
// Configuration S3 would refuse
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_size_grows_to_fit_max_expanded_bytes_in_10000_parts() {
    let (moto, s3) = moto_with_bucket().await;
    let body = ten_mib_jsonl();
    let vars = |max: &str| {
        [("MAX_EXPANDED_BYTES".to_string(), max.to_string())]
            .into_iter()
            .collect()
    };
    // (MAX_EXPANDED_BYTES, whether a 10 MiB part still takes several parts)
    for (max, multipart) in [("64G", true), ("100G", false)] {
        let cfg = Config::from_vars(&vars(max)).unwrap();
        let part_size = cfg.limits.part_size();
        assert!(
            part_size * S3_MAX_PARTS >= cfg.limits.max_expanded_bytes,
            "{max}: parts of {part_size} bytes"
        );
        let key = format!("exports/part-size-{max}.jsonl");
        put(&s3, BUCKET, &key, body.clone()).await;
        let r = handle_within(
            env_at(&moto.endpoint, cfg),
            s3_event(BUCKET, &key),
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(r["results"][0]["outcome"], "done", "{r}");
        let part_key = format!("export-fetcher/parts/{key}/part-size-{max}.jsonl");
        let etag = head(&s3, BUCKET, &part_key)
            .await
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        // A multipart object's ETag ends in `-<number of parts>`.
        assert_eq!(
            etag.contains('-'),
            multipart,
            "{max}: parts of {} MiB, ETag {etag}",
            part_size >> 20
        );
        assert!(get(&s3, BUCKET, &part_key).await.unwrap() == body);
    }
    // Past 5 GiB parts (S3's largest), the combination is refused at start-up.
    let err = Config::from_vars(&vars("60T")).unwrap_err();
    assert_eq!(err.name, "MAX_EXPANDED_BYTES", "{err}");
    let default = Limits::default();
    assert!(default.part_size() * S3_MAX_PARTS >= default.max_expanded_bytes);
}

#[test]
fn output_prefix_too_long_is_refused_at_start_up() {
    let file = input("users.jsonl", &small_jsonl());
    let args = vec!["index".to_string(), file.path.display().to_string()];
    let too_long = format!("{}/", "p".repeat(MAX_OUTPUT_PREFIX_BYTES));
    let run = run_raw(&args, &[("OUTPUT_PREFIX", &too_long)]);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stderr.contains("OUTPUT_PREFIX"), "{}", run.describe());
    assert!(run.stdout.trim().is_empty(), "{}", run.describe());
    // The longest accepted prefix still works.
    let longest = format!("{}/", "p".repeat(MAX_OUTPUT_PREFIX_BYTES - 1));
    let run = run_raw(&args, &[("OUTPUT_PREFIX", &longest)]);
    assert_eq!(run.code, 0, "{}", run.describe());
}
