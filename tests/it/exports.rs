//! One manifest per API export (moto_server on loopback): Braze's callback before, during and
//! after the files are indexed, a wrong token, concurrent closers, the quiet-period sweep, a
//! late file's amendment, `close-export`, and the messages each generation forwards. Every
//! export manifest read here is validated against `schema/export-manifest.v1.schema.json`.

use std::path::Path;
use std::sync::Arc;

use export_fetcher::config::Config;
use export_fetcher::handler;
use export_fetcher::pipeline::Env;
use serde_json::{Value, json};

use crate::aws::{Moto, drain, env_at, env_with_sinks};
use crate::fixtures::{self, gzip};
use crate::lambda_s3::{BUCKET, get, head, manifest, moto_with_bucket, put, s3_event};
use crate::sinks::{Receiver, request_verifies};
use crate::support;

const TOKEN: &str = "cb-token-0123456789abcdefXYZ";
const SEGMENT: &str = "abc56c0c-rd4a-pb0a-870pdf4db07q";
const OUT: &str = "export-fetcher/";

/// `segment-export/<segment>/<date>/<uuid>-<requested>/`
fn folder(segment: &str, date: &str, uuid: &str, requested: i64) -> String {
    format!("segment-export/{segment}/{date}/{uuid}-{requested}/")
}

fn export_key(folder: &str) -> String {
    format!("{OUT}exports/{folder}export.manifest.json")
}

fn record_key(folder: &str) -> String {
    format!("{OUT}open/exports/{folder}open.json")
}

fn cfg() -> Config {
    Config {
        source_bucket: Some(BUCKET.to_string()),
        callback_token: Some(TOKEN.to_string()),
        ..Config::default()
    }
}

/// A Function URL request (payload v2), as Lambda hands it over.
fn request(method: &str, path: &str, query: &str, body: &str) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": "application/json", "user-agent": "Braze"},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                     "sourceIp": "203.0.113.7", "userAgent": "Braze"},
                           "domainName": "abc.lambda-url.us-east-1.on.aws", "requestId": "r-1",
                           "timeEpoch": 1_714_550_400_000_i64},
        "body": body, "isBase64Encoded": false,
    })
}

fn callback(query: &str) -> Value {
    request(
        "POST",
        &format!("/braze/export-callback/{TOKEN}"),
        query,
        r#"{"success": true}"#,
    )
}

/// Invokes the handler on `event`; returns the HTTP answer's status and its JSON body.
async fn http(env: &Arc<Env>, event: Value) -> (u64, Value) {
    let answer = handler::handle(env.clone(), event, None).await.unwrap();
    let status = answer["statusCode"].as_u64().unwrap();
    let body = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    (status, body)
}

/// moto with the source bucket, and the environment of [`cfg`] on it.
async fn start() -> (Moto, aws_sdk_s3::Client, Arc<Env>) {
    let (moto, s3) = moto_with_bucket().await;
    let env = env_at(&moto.endpoint, cfg());
    (moto, s3, env)
}

/// Runs each file's notification, in order.
async fn notify_all(env: &Arc<Env>, keys: &[String]) {
    for key in keys {
        assert_eq!(notify(env, key).await, "done", "{key}");
    }
}

/// Runs one object's notification through the handler; returns its outcome.
async fn notify(env: &Arc<Env>, key: &str) -> String {
    let response = handler::handle(env.clone(), s3_event(BUCKET, key), None)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    response["results"][0]["outcome"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_string()
}

async fn sweep(env: &Arc<Env>) -> Value {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("events/schedule.json"),
        )
        .unwrap(),
    )
    .unwrap();
    handler::handle(env.clone(), event, None).await.unwrap()
}

fn validate_export(m: &Value) {
    support::assert_matches_schema(m, "schema/export-manifest.v1.schema.json");
}

/// The export manifest of `folder`, validated, if written.
async fn export_manifest(s3: &aws_sdk_s3::Client, folder: &str) -> Option<Value> {
    let body = get(s3, BUCKET, &export_key(folder)).await?;
    let m: Value = serde_json::from_slice(&body).unwrap();
    validate_export(&m);
    Some(m)
}

/// Puts `n` gzip files of realistic user lines into `folder`; returns their keys.
async fn put_files(s3: &aws_sdk_s3::Client, folder: &str, seed: u64, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("{folder}{:032x}.gz", seed * 1000 + i as u64);
        let lines = fixtures::users_jsonl(seed + i as u64, 20 + 7 * i);
        put(s3, BUCKET, &key, gzip(&lines.bytes)).await;
        keys.push(key);
    }
    keys
}

/// Checks an export manifest against the folder's objects and their own manifests.
async fn assert_lists_exactly(s3: &aws_sdk_s3::Client, m: &Value, keys: &[String]) {
    let files = m["files"].as_array().unwrap();
    let listed: Vec<&str> = files.iter().map(|f| f["key"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(listed, want, "{m:#}");
    let (mut records, mut bytes, mut compressed) = (0, 0, 0);
    for f in files {
        let key = f["key"].as_str().unwrap();
        let object = head(s3, BUCKET, key).await;
        assert_eq!(f["size"], object.content_length().unwrap(), "{key}");
        assert_eq!(
            f["etag"].as_str().unwrap(),
            object.e_tag().unwrap().trim_matches('"'),
            "etags are written without quotes"
        );
        let own = manifest(s3, BUCKET, key)
            .await
            .expect("every listed file is indexed");
        assert_eq!(
            f["manifest_key"],
            format!("{OUT}manifests/{key}.manifest.json")
        );
        assert_eq!(f["status"], own["status"], "{key}");
        assert_eq!(f["records"], own["totals"]["records"], "{key}");
        assert_eq!(f["bytes"], own["totals"]["bytes"], "{key}");
        records += own["totals"]["records"].as_u64().unwrap();
        bytes += own["totals"]["bytes"].as_u64().unwrap();
        compressed += object.content_length().unwrap() as u64;
    }
    assert_eq!(m["totals"]["files"], keys.len());
    assert_eq!(m["totals"]["records"], records);
    assert_eq!(m["totals"]["bytes"], bytes);
    assert_eq!(m["totals"]["compressed_bytes"], compressed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_after_every_file_closes_the_export_once() {
    let (_moto, s3, env) = start().await;
    // An older export of the same segment, already closed, must not be picked.
    let old = folder(
        SEGMENT,
        "2024-04-30",
        "1f3e5d7c-0a2b-4c6d-8e0f-1a2b3c4d5e6f",
        1714460000,
    );
    let old_keys = put_files(&s3, &old, 1, 1).await;
    assert_eq!(notify(&env, &old_keys[0]).await, "done");
    let (status, body) = http(&env, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("closed")),
        "{body}"
    );

    let dir = folder(
        SEGMENT,
        "2024-05-01",
        "d9696570-dfb7-45ae-baa2-25e302a2da27",
        1714550400,
    );
    let keys = put_files(&s3, &dir, 2, 3).await;
    for key in &keys {
        assert_eq!(notify(&env, key).await, "done");
    }
    assert!(
        get(&s3, BUCKET, &record_key(&dir)).await.is_some(),
        "an indexed file keeps its export's open record"
    );
    assert!(export_manifest(&s3, &dir).await.is_none());

    let (status, body) = http(&env, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "closed");
    assert_eq!(body["folder"], dir);
    assert_eq!(body["generation"], 1);
    let m = export_manifest(&s3, &dir).await.expect("written");
    assert_eq!(m["export_manifest_version"], 1);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["kind"], "api_user_export");
    assert_eq!(m["closed_by"], "callback");
    assert_eq!(m["generation"], 1);
    assert_eq!(m["manifest_key"], export_key(&dir));
    assert_eq!(m["braze"]["segment_id"], SEGMENT);
    assert_eq!(m["braze"]["date"], "2024-05-01");
    assert_eq!(
        m["braze"]["object_prefix"],
        "d9696570-dfb7-45ae-baa2-25e302a2da27-1714550400"
    );
    assert_lists_exactly(&s3, &m, &keys).await;
    assert!(
        get(&s3, BUCKET, &record_key(&dir)).await.is_none(),
        "a closed export leaves no open record"
    );

    // Braze retries a callback it thinks failed: no new generation.
    let (status, body) = http(&env, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("already_closed")),
        "{body}"
    );
    assert_eq!(export_manifest(&s3, &dir).await.unwrap()["generation"], 1);
    // A file's notification delivered again changes nothing either.
    assert_eq!(notify(&env, &keys[1]).await, "duplicate");
    assert_eq!(export_manifest(&s3, &dir).await.unwrap(), m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_methods_and_unknown_segments_are_refused_and_change_nothing() {
    let (moto, s3, env) = start().await;
    let dir = folder(
        SEGMENT,
        "2024-05-01",
        "0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f",
        1714550400,
    );
    let keys = put_files(&s3, &dir, 3, 2).await;
    notify_all(&env, &keys).await;
    let query = format!("segment_id={SEGMENT}");
    let mut wrong = TOKEN.to_string();
    wrong.replace_range(5..6, "X");
    for (event, want) in [
        // Same length, one character off; shorter; longer; empty.
        (
            request(
                "POST",
                &format!("/braze/export-callback/{wrong}"),
                &query,
                "{}",
            ),
            404,
        ),
        (
            request(
                "POST",
                &format!("/braze/export-callback/{}", &TOKEN[..20]),
                &query,
                "{}",
            ),
            404,
        ),
        (
            request(
                "POST",
                &format!("/braze/export-callback/{TOKEN}x"),
                &query,
                "{}",
            ),
            404,
        ),
        (
            request("POST", "/braze/export-callback/", &query, "{}"),
            404,
        ),
        (
            request("POST", &format!("/other/{TOKEN}"), &query, "{}"),
            404,
        ),
        (
            request(
                "GET",
                &format!("/braze/export-callback/{TOKEN}"),
                &query,
                "",
            ),
            405,
        ),
        (
            request("POST", &format!("/braze/export-callback/{TOKEN}"), "", "{}"),
            400,
        ),
        (callback("segment_id=no-such-segment"), 404),
    ] {
        let (status, body) = http(&env, event.clone()).await;
        assert_eq!(status, want, "{event}: {body}");
        assert!(
            !body.to_string().contains(TOKEN),
            "the answer names no token: {body}"
        );
    }
    assert!(export_manifest(&s3, &dir).await.is_none(), "nothing closed");
    // Without CALLBACK_TOKEN no path is the callback's.
    let unset = env_at(
        &moto.endpoint,
        Config {
            callback_token: None,
            ..cfg()
        },
    );
    let (status, _) = http(&unset, callback(&query)).await;
    assert_eq!(status, 404);
    assert!(export_manifest(&s3, &dir).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_before_or_during_indexing_waits_and_the_last_file_completes_it() {
    let (_moto, s3, env) = start().await;

    // During: one file of three is indexed when Braze calls back.
    let dir = folder(
        SEGMENT,
        "2024-05-02",
        "7d2c9a10-5b3e-4f60-9c1d-2e4f6a8b0c1d",
        1714640000,
    );
    let keys = put_files(&s3, &dir, 4, 3).await;
    assert_eq!(notify(&env, &keys[0]).await, "done");
    let (status, body) = http(&env, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["result"], "waiting");
    assert_eq!(body["waiting_for"], 2);
    assert!(
        export_manifest(&s3, &dir).await.is_none(),
        "never a manifest listing unindexed files"
    );
    assert_eq!(notify(&env, &keys[1]).await, "done");
    assert!(
        export_manifest(&s3, &dir).await.is_none(),
        "one file is still missing"
    );
    assert_eq!(notify(&env, &keys[2]).await, "done");
    let m = export_manifest(&s3, &dir)
        .await
        .expect("the last file's run closes it");
    assert_eq!(m["closed_by"], "callback");
    assert_eq!(m["generation"], 1);
    assert_eq!(m["status"], "complete");
    assert_lists_exactly(&s3, &m, &keys).await;
    assert!(get(&s3, BUCKET, &record_key(&dir)).await.is_none());

    // Before: no notification processed yet (the listing is the truth).
    let other = "5e1f0c2b-seg";
    let dir = folder(
        other,
        "2024-05-02",
        "aa11bb22-cc33-4d44-8e55-66ff77889900",
        1714641000,
    );
    let keys = put_files(&s3, &dir, 5, 2).await;
    let (status, body) = http(&env, callback(&format!("segment_id={other}"))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["waiting_for"], 2);
    // A repeated callback while waiting still waits and records nothing new.
    let (status, _) = http(&env, callback(&format!("segment_id={other}"))).await;
    assert_eq!(status, 202);
    for key in &keys {
        assert_eq!(notify(&env, key).await, "done");
    }
    let m = export_manifest(&s3, &dir)
        .await
        .expect("closed by the files' runs");
    assert_eq!(m["closed_by"], "callback");
    assert_lists_exactly(&s3, &m, &keys).await;
    let (status, body) = http(&env, callback(&format!("segment_id={other}"))).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("already_closed")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braze_reporting_failure_closes_the_export_as_failed() {
    let (_moto, s3, env) = start().await;
    let dir = folder(
        SEGMENT,
        "2024-05-03",
        "c0ffee00-1111-4222-8333-444455556666",
        1714700000,
    );
    let keys = put_files(&s3, &dir, 6, 1).await;
    notify(&env, &keys[0]).await;
    let event = request(
        "POST",
        &format!("/braze/export-callback/{TOKEN}"),
        &format!("segment_id={SEGMENT}"),
        r#"{"success": false}"#,
    );
    let (status, body) = http(&env, event).await;
    assert_eq!(status, 200, "{body}");
    let m = export_manifest(&s3, &dir).await.unwrap();
    assert_ne!(
        m["status"], "complete",
        "Braze said the export failed: {m:#}"
    );
}

const WEBHOOK_SECRET: &str = "whsec-exports-7c1d";

/// SQS `manifests`, EventBridge → SQS `eb-out` (as the sinks tests build them) and a signed
/// webhook.
async fn sinks(moto: &Moto) -> (Config, String, String, Receiver) {
    let d = crate::sinks::downstream(moto, false).await;
    let hook = Receiver::start(vec![200]);
    let cfg = Config {
        sqs_queue_url: Some(d.manifests.clone()),
        event_bus_name: Some("exports-bus".to_string()),
        webhook_url: Some(hook.url.clone()),
        webhook_secret: Some(WEBHOOK_SECRET.to_string()),
        ..cfg()
    };
    (cfg, d.manifests, d.eb_out, hook)
}

/// The export messages among `msgs` (SQS `message_type` attribute), as (generation, body).
fn export_messages(msgs: &[aws_sdk_sqs::types::Message]) -> Vec<(u64, Value)> {
    msgs.iter()
        .filter(|m| {
            let t = m.message_attributes().unwrap()["message_type"].string_value();
            assert!(matches!(t, Some("object" | "export")), "{m:?}");
            t == Some("export")
        })
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            (body["generation"].as_u64().unwrap(), body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_file_amends_the_export_and_each_generation_is_forwarded_once() {
    let (moto, s3, _) = start().await;
    let (cfg, manifests, eb_out, hook) = sinks(&moto).await;
    let env = env_with_sinks(&moto, cfg);
    let dir = folder(
        SEGMENT,
        "2024-05-04",
        "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        1714800000,
    );
    let mut keys = put_files(&s3, &dir, 7, 2).await;
    notify_all(&env, &keys).await;
    let (status, _) = http(&env, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(status, 200);
    let first = export_manifest(&s3, &dir).await.unwrap();
    assert_eq!(first["generation"], 1);

    let late = put_files(&s3, &dir, 8, 1).await.remove(0);
    keys.push(late.clone());
    assert_eq!(notify(&env, &late).await, "done");
    let second = export_manifest(&s3, &dir).await.unwrap();
    assert_eq!(second["generation"], 2, "{second:#}");
    assert_eq!(second["closed_by"], "late_file");
    assert_lists_exactly(&s3, &second, &keys).await;
    // Delivered again, retried, swept: no third generation, no second message.
    assert_eq!(notify(&env, &late).await, "duplicate");
    let swept = sweep(&env).await;
    assert_eq!(swept["closed"], json!([]), "{swept}");
    assert_eq!(export_manifest(&s3, &dir).await.unwrap(), second);

    let sqs = moto.sqs();
    let msgs = drain(&sqs, &manifests).await;
    let exports = export_messages(&msgs);
    assert_eq!(msgs.len() - exports.len(), 3, "one object message per file");
    let gens: Vec<u64> = exports.iter().map(|(g, _)| *g).collect();
    assert_eq!(gens, vec![1, 2], "each generation once");
    assert_eq!(exports[0].1, first);
    assert_eq!(exports[1].1, second);
    let events = drain(&sqs, &eb_out).await;
    let mut types: Vec<String> = events
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            body["detail-type"].as_str().unwrap().to_string()
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec![
            "Braze API Export Closed",
            "Braze API Export Closed",
            "Braze Export Indexed",
            "Braze Export Indexed",
            "Braze Export Indexed"
        ]
    );
    // The webhook: the same bodies, signed the same way, told apart by a header.
    let hooks: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.header("X-Export-Fetcher-Message-Type") == Some("export"))
        .collect();
    assert_eq!(hooks.len(), 2, "one webhook delivery per generation");
    for (r, want) in hooks.iter().zip([&first, &second]) {
        assert!(
            request_verifies(WEBHOOK_SECRET, r),
            "the signature verifies"
        );
        assert_eq!(&serde_json::from_slice::<Value>(&r.body).unwrap(), want);
    }
    assert_ne!(
        hooks[0].header("Idempotency-Key"),
        hooks[1].header("Idempotency-Key"),
        "each generation has its own idempotency key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callbacks_and_sweeps_write_one_generation_and_one_message() {
    let (moto, s3, _) = start().await;
    let (cfg, manifests, _, _hook) = sinks(&moto).await;
    let env = env_with_sinks(
        &moto,
        Config {
            export_quiet_minutes: 0,
            ..cfg
        },
    );
    let dir = folder(
        SEGMENT,
        "2024-05-05",
        "12345678-9abc-4def-8123-456789abcdef",
        1714900000,
    );
    let keys = put_files(&s3, &dir, 9, 3).await;
    // Two files indexed by their notifications, the third by whichever closer gets there.
    notify_all(&env, &keys[..2]).await;
    let query = format!("segment_id={SEGMENT}");
    let mut tasks = Vec::new();
    for i in 0..4 {
        let env = env.clone();
        let query = query.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let (status, body) = http(&env, callback(&query)).await;
                assert!(matches!(status, 200 | 202), "{body}");
                body
            } else {
                sweep(&env).await
            }
        }));
    }
    tasks.push({
        let env = env.clone();
        let key = keys[2].clone();
        tokio::spawn(async move { json!({"outcome": notify(&env, &key).await}) })
    });
    for t in tasks {
        t.await.unwrap();
    }
    // Whatever is left open, the next sweep finishes.
    sweep(&env).await;
    let m = export_manifest(&s3, &dir).await.expect("closed");
    assert_eq!(m["generation"], 1, "{m:#}");
    assert_lists_exactly(&s3, &m, &keys).await;
    let msgs = drain(&moto.sqs(), &manifests).await;
    let exports = export_messages(&msgs);
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert_eq!(exports[0].1, m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_closes_quiet_exports_and_indexes_files_no_notification_announced() {
    let (moto, s3, env) = start().await;
    let dir = folder(
        SEGMENT,
        "2024-05-06",
        "fedcba98-7654-4321-8fed-cba987654321",
        1715000000,
    );
    let mut keys = put_files(&s3, &dir, 10, 2).await;
    // A damaged file: its manifest is failed, so the export is partial.
    let bad = format!("{dir}{:032x}.gz", 999);
    let mut damaged = gzip(&fixtures::users_jsonl(77, 40).bytes);
    let cut = damaged.len() / 2;
    damaged.truncate(cut);
    put(&s3, BUCKET, &bad, damaged).await;
    keys.push(bad.clone());
    notify(&env, &keys[0]).await;

    // Within the quiet period nothing closes.
    let report = sweep(&env).await;
    assert_eq!(
        (&report["closed"], &report["open"]),
        (&json!([]), &json!(1)),
        "{report}"
    );
    assert!(export_manifest(&s3, &dir).await.is_none());

    let quiet = env_at(
        &moto.endpoint,
        Config {
            export_quiet_minutes: 0,
            ..cfg()
        },
    );
    let report = sweep(&quiet).await;
    assert_eq!(report["closed"][0]["folder"], dir, "{report}");
    assert_eq!(report["closed"][0]["closed_by"], "quiet_period", "{report}");
    assert_eq!(report["open"], 0, "{report}");
    let m = export_manifest(&s3, &dir)
        .await
        .expect("closed by the quiet period");
    assert_eq!(m["closed_by"], "quiet_period");
    assert_eq!(m["status"], "partial", "one file is damaged: {m:#}");
    assert_lists_exactly(&s3, &m, &keys).await;
    let straggler = manifest(&s3, BUCKET, &keys[1]).await.unwrap();
    assert_eq!(straggler["source"]["event_name"], "ExportClose:Listed");
    // The stragglers' own notifications arrive later: duplicates, not late files.
    for key in &keys[1..] {
        assert_eq!(notify(&quiet, key).await, "duplicate");
    }
    assert_eq!(export_manifest(&s3, &dir).await.unwrap(), m);
    let report = sweep(&quiet).await;
    assert_eq!(
        (&report["closed"], &report["open"]),
        (&json!([]), &json!(0)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_control_group_callback_closes_the_newest_open_export() {
    let (_moto, s3, env) = start().await;
    let older = folder(
        "gcg-1",
        "2024-05-07",
        "00000000-1111-4222-8333-444444444444",
        1715100000,
    );
    let newer = folder(
        "gcg-1",
        "2024-05-07",
        "55555555-6666-4777-8888-999999999999",
        1715100500,
    );
    for (dir, seed) in [(&older, 11), (&newer, 12)] {
        for key in put_files(&s3, dir, seed, 1).await {
            notify(&env, &key).await;
        }
    }
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("events/function-url-export-callback-global-control-group.json"),
        )
        .unwrap()
        .replace("REPLACE-WITH-CALLBACK-TOKEN", TOKEN),
    )
    .unwrap();
    let (status, body) = http(&env, event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["folder"], newer);
    assert!(export_manifest(&s3, &newer).await.is_some());
    assert!(
        export_manifest(&s3, &older).await.is_none(),
        "the older one stays open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_export_closes_now_and_prints_the_manifest() {
    let (moto, s3, _) = start().await;
    let dir = folder(
        SEGMENT,
        "2024-05-08",
        "abcdefab-cdef-4abc-8def-abcdefabcdef",
        1715200000,
    );
    let keys = put_files(&s3, &dir, 13, 3).await;
    let run = |arg: String| {
        let mut cmd = std::process::Command::new(support::BIN);
        cmd.arg("close-export").arg(arg);
        for (k, v) in crate::aws::env_for(&moto.endpoint) {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (out.status.code().unwrap(), out.stdout, stderr)
    };
    // Nothing was indexed: the command indexes every file, then closes.
    let (code, stdout, stderr) = run(format!("s3://{BUCKET}/{dir}"));
    assert_eq!(code, 0, "{stderr}");
    let printed: Value = serde_json::from_slice(&stdout).unwrap();
    validate_export(&printed);
    assert_eq!(printed["closed_by"], "command");
    assert_eq!(printed, export_manifest(&s3, &dir).await.unwrap());
    assert_lists_exactly(&s3, &printed, &keys).await;
    // Again: already closed with these files, the same generation.
    let (code, stdout, stderr) = run(format!("s3://{BUCKET}/{}", dir.trim_end_matches('/')));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("already closed"), "{stderr}");
    assert_eq!(
        serde_json::from_slice::<Value>(&stdout).unwrap()["generation"],
        1
    );
    // Not an export folder; an empty one.
    let (code, _, stderr) = run(format!("s3://{BUCKET}/dashboard/x/"));
    assert_eq!(code, 2, "{stderr}");
    let empty = folder(
        SEGMENT,
        "2024-05-08",
        "99999999-8888-4777-8666-555555555555",
        1715200100,
    );
    let (code, _, stderr) = run(format!("s3://{BUCKET}/{empty}"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("holds no object"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_whose_forwarding_failed_is_forwarded_by_the_next_sweep_once() {
    let (moto, s3, _) = start().await;
    let plain = env_at(&moto.endpoint, cfg());
    let dir = folder(
        SEGMENT,
        "2024-05-09",
        "f00dfeed-0000-4111-8222-333344445555",
        1715300000,
    );
    let keys = put_files(&s3, &dir, 14, 2).await;
    notify_all(&plain, &keys).await;
    // The queue does not exist yet: forwarding the export manifest fails.
    let url = format!("{}/123456789012/late-queue", moto.endpoint);
    let sunk = env_with_sinks(
        &moto,
        Config {
            sqs_queue_url: Some(url.clone()),
            ..cfg()
        },
    );
    let (status, body) = http(&sunk, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(status, 200, "the manifest is written: {body}");
    let m = export_manifest(&s3, &dir).await.unwrap();
    assert!(
        get(&s3, BUCKET, &record_key(&dir)).await.is_some(),
        "the open record stays until the generation is forwarded"
    );
    let report = sweep(&sunk).await;
    assert_eq!(report["errors"].as_array().unwrap().len(), 1, "{report}");
    // The queue appears; the next sweep forwards the generation, the one after has nothing.
    let created = crate::aws::queue(&moto, "late-queue").await;
    let report = sweep(&sunk).await;
    assert_eq!(report["errors"], json!([]), "{report}");
    let report = sweep(&sunk).await;
    assert_eq!(
        (&report["closed"], &report["open"]),
        (&json!([]), &json!(0)),
        "{report}"
    );
    assert!(get(&s3, BUCKET, &record_key(&dir)).await.is_none());
    let msgs = drain(&moto.sqs(), &created).await;
    let exports = export_messages(&msgs);
    assert_eq!(exports.len(), 1, "{msgs:?}");
    assert_eq!(exports[0].1, m);
    assert_eq!(
        export_manifest(&s3, &dir).await.unwrap(),
        m,
        "no new generation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_indexed_again_with_a_new_result_amends_the_export() {
    let (moto, s3, env) = start().await;
    // A limit too small for the files: their manifests are failed, and so is the export.
    let small = env_at(
        &moto.endpoint,
        Config {
            limits: export_fetcher::config::Limits {
                max_expanded_bytes: 2000,
                ..Default::default()
            },
            ..cfg()
        },
    );
    let dir = folder(
        SEGMENT,
        "2024-05-10",
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        1715400000,
    );
    let keys = put_files(&s3, &dir, 15, 2).await;
    notify_all(&small, &keys).await;
    let (status, body) = http(&small, callback(&format!("segment_id={SEGMENT}"))).await;
    assert_eq!(status, 200, "{body}");
    let first = export_manifest(&s3, &dir).await.unwrap();
    assert_eq!(first["status"], "failed", "{first:#}");
    // The limit raised, a Batch Operations job indexes the first file again (`reprocess`): the
    // export is amended with its new result.
    let job = json!({
        "invocationSchemaVersion": "2.0", "invocationId": "aW52b2NhdGlvbi0z",
        "job": {"id": "reprocess-1", "userArguments": {"reprocess": "true"}},
        "tasks": [{"taskId": "t-0", "s3Bucket": BUCKET, "s3Key": keys[0], "s3VersionId": null}],
    });
    let response = handler::handle(env.clone(), job, None).await.unwrap();
    assert_eq!(
        response["results"][0]["resultCode"], "Succeeded",
        "{response}"
    );
    let second = export_manifest(&s3, &dir).await.unwrap();
    assert_eq!(second["generation"], 2, "{second:#}");
    assert_eq!(second["files"][0]["status"], "complete");
    assert_eq!(second["files"][1]["status"], "failed");
    assert_eq!(second["status"], "partial");
    assert_lists_exactly(&s3, &second, &keys).await;
}
