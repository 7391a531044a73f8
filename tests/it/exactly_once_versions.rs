//! Exactly once across versions, overwrites, 404s and denials (RELIABILITY.md, "Exactly once:
//! versions, 404s and failure causes"): the real handler against moto_server on loopback, real
//! SDK clients over real HTTP. Races are made deterministic with a proxy whose rule runs the
//! competing step (a delete, an overwrite, a newer version and its whole run) at the exact
//! request where it hurts, before forwarding that request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use export_fetcher::config::Config;
use export_fetcher::handler;
use export_fetcher::pipeline::Env;
use serde_json::{Value, json};

use crate::aws::{
    FaultProxy, FaultRule, Moto, REGION, drain_json, env_at, env_with_sinks, queue, s3_client,
};
use crate::fixtures::{gzip, sha256_hex};
use crate::lambda_s3::{
    BUCKET, delete, get, head, make_bucket, manifest, moto_with_bucket, put, s3_event,
    sqs_event_from_bodies, versioned_bucket,
};

/// Puts `body`; returns its version id (`None` in an unversioned bucket) and ETag.
async fn put_object(s3: &aws_sdk_s3::Client, key: &str, body: Vec<u8>) -> (Option<String>, String) {
    let out = s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
    (
        out.version_id().map(String::from),
        out.e_tag().unwrap().trim_matches('"').to_string(),
    )
}

/// An S3 notification for one object, with what S3 puts in it: version id, sequencer, ETag,
/// size (each only when given).
fn event(
    key: &str,
    version_id: Option<&str>,
    sequencer: Option<&str>,
    etag: Option<&str>,
    size: Option<usize>,
) -> Value {
    let mut object = json!({"key": key});
    if let Some(v) = version_id {
        object["versionId"] = json!(v);
    }
    if let Some(s) = sequencer {
        object["sequencer"] = json!(s);
    }
    if let Some(e) = etag {
        object["eTag"] = json!(e);
    }
    if let Some(n) = size {
        object["size"] = json!(n);
    }
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2026-12-02T07:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "exports",
               "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
               "object": object}
    }]})
}

/// The outcome of the only object of a direct invocation (`retry` when the handler failed).
async fn outcome(env: &Arc<Env>, ev: Value) -> String {
    match handler::handle(env.clone(), ev, None).await {
        Ok(v) => v["results"][0]["outcome"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        Err(_) => "retry".to_string(),
    }
}

async fn raw_manifest(s3: &aws_sdk_s3::Client, key: &str) -> Option<Vec<u8>> {
    get(
        s3,
        BUCKET,
        &format!("export-fetcher/manifests/{key}.manifest.json"),
    )
    .await
}

/// Runs `step` on a runtime of its own, from the proxy's thread, while the request that
/// triggered it waits (SDK clients are built inside: they belong to that runtime).
fn on_the_side<T>(step: impl AsyncFnOnce() -> T) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(step())
}

/// A proxy rule that never fails a request: it runs `step` once, before forwarding the first
/// request that `at` matches.
fn hook(
    at: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    step: impl Fn() + Send + Sync + 'static,
) -> FaultRule {
    let fired = AtomicBool::new(false);
    Box::new(move |method: &str, target: &str| {
        if at(method, target) && !fired.swap(true, Ordering::SeqCst) {
            step();
        }
        false
    })
}

fn is_part_write(method: &str, target: &str) -> bool {
    method == "PUT" && target.contains("/export-fetcher/parts/")
}

// ---------------------------------------------------------------------------------------------
// 404s
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_404_never_replaces_a_complete_manifest() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "exports/removed-after.jsonl";
    put(&s3, BUCKET, key, b"{\"external_id\":\"1\"}\n".to_vec()).await;
    let env = env_at(&moto.endpoint, Config::default());
    assert_eq!(outcome(&env, s3_event(BUCKET, key)).await, "done");
    let before = raw_manifest(&s3, key).await.unwrap();

    // Braze removes the export; the notification comes again, and a later one too.
    delete(&s3, BUCKET, key).await;
    assert_eq!(outcome(&env, s3_event(BUCKET, key)).await, "duplicate");
    let later = event(key, None, Some("0055AED6DCD90281F0"), None, None);
    assert_eq!(outcome(&env, later).await, "duplicate");

    assert_eq!(
        raw_manifest(&s3, key).await.unwrap(),
        before,
        "the complete manifest is untouched"
    );
    assert_eq!(
        manifest(&s3, BUCKET, key).await.unwrap()["status"],
        "complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_run_never_wins_the_manifest_race_against_the_real_run() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "exports/race-with-404.jsonl";
    let body = b"{\"external_id\":\"1\"}\n{\"external_id\":\"2\"}\n".to_vec();
    put(&s3, BUCKET, key, body.clone()).await;

    // The real run has read every byte and writes its part: the object is removed then, and the
    // redelivered notification's run meets a 404 and writes its manifest first.
    let upstream = moto.endpoint.clone();
    let side: Arc<Mutex<Option<(String, Value)>>> = Arc::default();
    let side2 = side.clone();
    let rule = hook(is_part_write, move || {
        let upstream = upstream.clone();
        let got = on_the_side(async move || {
            let s3 = s3_client(&upstream);
            delete(&s3, BUCKET, key).await;
            let env = env_at(&upstream, Config::default());
            let o = outcome(&env, s3_event(BUCKET, key)).await;
            (o, manifest(&s3, BUCKET, key).await.unwrap())
        });
        *side2.lock().unwrap() = Some(got);
    });
    let proxy = FaultProxy::start(&moto.endpoint, rule);
    let env = env_at(&proxy.endpoint, Config::default());
    let real = outcome(&env, s3_event(BUCKET, key)).await;

    let (missing_outcome, missing) = side.lock().unwrap().take().expect("the 404 run ran");
    assert_eq!(
        missing_outcome, "done",
        "the 404 run wrote its manifest first"
    );
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["failure"]["cause"], "missing");
    assert_eq!(real, "done", "the real run replaces the 404's manifest");
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete", "{m}");
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&body));
    assert!(m.get("failure").is_none(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notfound_manifest_does_not_make_a_later_upload_look_done() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "exports/uploaded-again.jsonl";
    let body = b"{\"external_id\":\"7\"}\n".to_vec();
    let (_, etag) = put_object(&s3, key, body.clone()).await;
    delete(&s3, BUCKET, key).await;
    let env = env_at(&moto.endpoint, Config::default());

    // The notification names the ETag and size of bytes that are gone by the time it is read.
    let first = event(key, None, Some("0A"), Some(&etag), Some(body.len()));
    assert_eq!(outcome(&env, first.clone()).await, "done");
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failure"]["cause"], "missing");
    assert_eq!(m["source"]["etag"], etag.as_str());

    // The same bytes are uploaded again: same ETag, same size. Neither the old notification
    // redelivered nor the new one may take the `missing` manifest for the result.
    put(&s3, BUCKET, key, body.clone()).await;
    assert_eq!(
        outcome(&env, first).await,
        "done",
        "processed, not a duplicate"
    );
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete", "{m}");
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&body));
    let output = m["parts"][0]["output"]["key"].as_str().unwrap();
    assert_eq!(get(&s3, BUCKET, output).await.unwrap(), body);
    let second = event(key, None, Some("0B"), Some(&etag), Some(body.len()));
    assert_eq!(outcome(&env, second).await, "duplicate");
}

// ---------------------------------------------------------------------------------------------
// Versions and overwrites
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_version_notification_after_newer_is_superseded_and_not_forwarded() {
    let moto = Moto::start();
    let s3 = moto.s3();
    versioned_bucket(&s3, BUCKET).await;
    let url = queue(&moto, "manifests").await;
    let key = "exports/versions.jsonl";
    let (v1, e1) = put_object(&s3, key, b"{\"v\":1}\n".to_vec()).await;
    let (v2, e2) = put_object(&s3, key, b"{\"v\":2}\n{\"v\":2}\n".to_vec()).await;
    let (v1, v2) = (v1.expect("versioned"), v2.expect("versioned"));
    let env = env_with_sinks(
        &moto,
        Config {
            sqs_queue_url: Some(url.clone()),
            ..Config::default()
        },
    );
    let newer = event(key, Some(&v2), Some("0200"), Some(&e2), None);
    assert_eq!(outcome(&env, newer).await, "done");
    let before = raw_manifest(&s3, key).await.unwrap();

    // The older version's notification arrives late, through SQS: by sequencer, and (when it
    // carries none) because its version is no longer the current one.
    let older = event(key, Some(&v1), Some("01FF"), Some(&e1), None);
    let older_unsequenced = event(key, Some(&v1), None, Some(&e1), None);
    for (id, ev) in [("late-1", older), ("late-2", older_unsequenced)] {
        let sqs_event = sqs_event_from_bodies(&[(id, ev.to_string())]);
        let r = handler::handle(env.clone(), sqs_event, None).await.unwrap();
        assert_eq!(
            r["batchItemFailures"],
            json!([]),
            "{id}: acknowledged, no retry"
        );
        assert_eq!(
            outcome(&env, ev).await,
            "superseded",
            "{id}: superseded, not processed"
        );
    }
    assert_eq!(
        raw_manifest(&s3, key).await.unwrap(),
        before,
        "the newer manifest stands"
    );
    let sent = drain_json(&moto.sqs(), &url).await;
    assert_eq!(
        sent.len(),
        1,
        "only the newer version is forwarded: {sent:?}"
    );
    assert_eq!(sent[0]["source"]["version_id"], v2.as_str());
    assert_eq!(sent[0]["totals"]["records"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_an_older_version_never_overwrite_the_newer() {
    let moto = Moto::start();
    let s3 = moto.s3();
    versioned_bucket(&s3, BUCKET).await;
    let key = "exports/two-versions.jsonl";
    let old = b"{\"v\":\"old\"}\n".to_vec();
    let new = b"{\"v\":\"new\"}\n{\"v\":\"new\"}\n".to_vec();
    let (v1, _) = put_object(&s3, key, old.clone()).await;
    let v1 = v1.expect("versioned");

    // The older version's run is about to write its part when the newer version is uploaded
    // and processed from start to end.
    let upstream = moto.endpoint.clone();
    let newer: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let newer2 = newer.clone();
    let new2 = new.clone();
    let rule = hook(is_part_write, move || {
        let (upstream, new) = (upstream.clone(), new2.clone());
        let got = on_the_side(async move || {
            let s3 = s3_client(&upstream);
            let (v2, e2) = put_object(&s3, key, new).await;
            let v2 = v2.unwrap();
            let env = env_at(&upstream, Config::default());
            let o = outcome(&env, event(key, Some(&v2), Some("02"), Some(&e2), None)).await;
            (v2, o)
        });
        *newer2.lock().unwrap() = Some(got);
    });
    let proxy = FaultProxy::start(&moto.endpoint, rule);
    let env = env_at(&proxy.endpoint, Config::default());
    let older = outcome(&env, event(key, Some(&v1), Some("01"), None, None)).await;

    let (v2, newer_outcome) = newer.lock().unwrap().take().expect("the newer run ran");
    assert_eq!(newer_outcome, "done");
    assert_eq!(
        older, "superseded",
        "the older run loses to the later notification"
    );
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["source"]["version_id"], v2.as_str());
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&new));
    let output = m["parts"][0]["output"]["key"].as_str().unwrap();
    assert_eq!(
        output,
        format!("export-fetcher/parts/{key}/@{v2}/two-versions.jsonl"),
        "the part key carries the version"
    );
    assert_eq!(
        get(&s3, BUCKET, output).await.unwrap(),
        new,
        "the newer version's part holds the newer bytes"
    );
    // The older run's part went to its own version's folder, referenced by no manifest.
    let orphan = format!("export-fetcher/parts/{key}/@{v1}/two-versions.jsonl");
    assert_eq!(get(&s3, BUCKET, &orphan).await.unwrap(), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unversioned_overwrite_mid_run_never_certifies_wrong_bytes() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "exports/overwritten.jsonl.gz";
    // Larger than an object read whole at once (1 MiB compressed), so that it is read by
    // ranges: random ids keep it from compressing away.
    let mut rng = crate::fixtures::Rng::new(7);
    let first: Vec<u8> = (0..60_000)
        .flat_map(|i| {
            format!("{{\"external_id\":\"a{i}\",\"r\":\"{}\"}}\n", rng.hex(24)).into_bytes()
        })
        .collect();
    let second: Vec<u8> = (0..3000)
        .flat_map(|i| format!("{{\"external_id\":\"b{i}\"}}\n").into_bytes())
        .collect();
    put(&s3, BUCKET, key, gzip(&first)).await;

    // The run has read the first bytes (format detection) when the object is overwritten: its
    // next ranged read is pinned to the ETag it started with.
    let upstream = moto.endpoint.clone();
    let gets = Arc::new(AtomicU64::new(0));
    let second2 = second.clone();
    let path = format!("/{BUCKET}/{key}");
    let rule = hook(
        move |method: &str, target: &str| {
            method == "GET" && target.starts_with(&path) && gets.fetch_add(1, Ordering::SeqCst) == 1
        },
        move || {
            let (upstream, body) = (upstream.clone(), gzip(&second2));
            on_the_side(async move || put(&s3_client(&upstream), BUCKET, key, body).await);
        },
    );
    let proxy = FaultProxy::start(&moto.endpoint, rule);
    let env = env_at(&proxy.endpoint, Config::default());
    let r = handler::handle(env.clone(), s3_event(BUCKET, key), None).await;
    let err = r.expect_err("an overwrite mid-run fails the read: retried");
    assert!(err.to_string().contains("changed"), "{err}");
    assert!(manifest(&s3, BUCKET, key).await.is_none(), "no manifest");
    let part = "export-fetcher/parts/exports/overwritten.jsonl.gz/overwritten.jsonl";
    assert!(get(&s3, BUCKET, part).await.is_none(), "no part");

    // The retry reads the new bytes only.
    assert_eq!(outcome(&env, s3_event(BUCKET, key)).await, "done");
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["parts"][0]["records"], 3000);
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&second));
    assert_eq!(get(&s3, BUCKET, part).await.unwrap(), second);
}

// ---------------------------------------------------------------------------------------------
// Failure causes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_source_read_is_retryable_with_no_manifest() {
    let (moto, s3) = moto_with_bucket().await;
    // What S3 answers a GET of an SSE-KMS object without `kms:Decrypt`, and of one whose key is
    // disabled.
    for (n, answer) in [(403, "AccessDenied"), (400, "KMS.DisabledException")]
        .into_iter()
        .enumerate()
    {
        let key = format!("exports/denied-{n}.jsonl");
        let body = b"{\"external_id\":\"1\"}\n".to_vec();
        put(&s3, BUCKET, &key, body.clone()).await;
        let path = format!("/{BUCKET}/{key}");
        let rule: FaultRule = Box::new(move |method: &str, target: &str| {
            method == "GET" && target.starts_with(&path)
        });
        let proxy = FaultProxy::start_answering(&moto.endpoint, rule, answer);
        let env = env_at(&proxy.endpoint, Config::default());
        let ev = sqs_event_from_bodies(&[("m-1", s3_event(BUCKET, &key).to_string())]);

        let r = handler::handle(env.clone(), ev.clone(), None)
            .await
            .unwrap();
        assert_eq!(
            r["batchItemFailures"],
            json!([{"itemIdentifier": "m-1"}]),
            "{answer:?}: retried (and in the end sent to the DLQ)"
        );
        assert!(proxy.failed.load(Ordering::SeqCst) >= 1);
        assert!(
            manifest(&s3, BUCKET, &key).await.is_none(),
            "{answer:?}: no failed manifest blocks the redrive"
        );

        // The permission is fixed; the redriven message is processed in full.
        proxy.armed.store(false, Ordering::SeqCst);
        let r = handler::handle(env, ev, None).await.unwrap();
        assert_eq!(r["batchItemFailures"], json!([]), "{answer:?}");
        let m = manifest(&s3, BUCKET, &key).await.unwrap();
        assert_eq!(m["status"], "complete", "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_failure_is_reprocessed_on_redelivery() {
    let (moto, s3) = moto_with_bucket().await;
    let url = queue(&moto, "manifests").await;
    let key = "exports/limit-too-low.jsonl.gz";
    let users: Vec<u8> = (0..500)
        .flat_map(|i| format!("{{\"external_id\":\"u{i}\"}}\n").into_bytes())
        .collect();
    put(&s3, BUCKET, key, gzip(&users)).await;
    let corrupt_key = "exports/corrupt.jsonl.gz";
    let mut corrupt = gzip(&users);
    let n = corrupt.len();
    corrupt[n / 2] ^= 0xff;
    corrupt.truncate(n - 4);
    put(&s3, BUCKET, corrupt_key, corrupt).await;
    let cfg = |max_expanded_bytes: Option<u64>| {
        let mut cfg = Config {
            sqs_queue_url: Some(url.clone()),
            ..Config::default()
        };
        if let Some(max) = max_expanded_bytes {
            cfg.limits.max_expanded_bytes = max;
        }
        cfg
    };

    // A limit set too low: failed, and the environment is at fault.
    let low = env_with_sinks(&moto, cfg(Some(1000)));
    assert_eq!(outcome(&low, s3_event(BUCKET, key)).await, "done");
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failure"]["cause"], "environment", "{m}");

    // The limit is raised; the notification comes again.
    let fixed = env_with_sinks(&moto, cfg(None));
    assert_eq!(
        outcome(&fixed, s3_event(BUCKET, key)).await,
        "done",
        "processed again, not a duplicate"
    );
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete", "{m}");
    assert_eq!(m["totals"]["records"], 500);
    assert!(m.get("failure").is_none());

    // Bytes that are corrupt: the object is at fault, and a redelivery leaves it alone.
    assert_eq!(outcome(&fixed, s3_event(BUCKET, corrupt_key)).await, "done");
    let c = manifest(&s3, BUCKET, corrupt_key).await.unwrap();
    assert_eq!(c["status"], "failed");
    assert_eq!(c["failure"]["cause"], "object", "{c}");
    assert_eq!(
        outcome(&fixed, s3_event(BUCKET, corrupt_key)).await,
        "duplicate",
        "an object failure is the object's result"
    );

    // Downstream heard of the failure, then of the complete manifest that replaced it.
    let sent: Vec<Value> = drain_json(&moto.sqs(), &url)
        .await
        .into_iter()
        .filter(|m| m["source"]["key"] == key)
        .collect();
    let statuses: Vec<&str> = sent.iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "complete"], "{sent:?}");
}

/// Writes `body` to `key` as a part from source version `tag`: the upload starts (and looks up
/// the key) at once; it is finished after `before_finish` has run.
fn write_part(
    store: &export_fetcher::store::s3::S3Store,
    tag: &str,
    key: &str,
    body: &[u8],
    before_finish: impl FnOnce(),
) -> std::io::Result<()> {
    use export_fetcher::store::PartWriter;
    use std::io::Write;
    let writer = store
        .writer(BUCKET, tokio::runtime::Handle::current())
        .with_source_tag(tag);
    let mut upload = writer.create(key)?;
    upload.write_all(body)?;
    // Let the lookup of the key's state finish before anything else happens.
    std::thread::sleep(std::time::Duration::from_millis(300));
    before_finish();
    upload.finish()?.wait()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unversioned_late_part_of_an_older_run_never_overwrites_the_newer_part() {
    let moto = Moto::start();
    let s3 = s3_client(&moto.endpoint);
    make_bucket(&s3, BUCKET).await;
    let store =
        export_fetcher::store::s3::S3Store::new(s3.clone(), export_fetcher::config::Sse::None);
    let key = "export-fetcher/parts/exports/a.jsonl.gz/a.jsonl";
    let (s, k) = (store.clone(), key.to_string());
    let results = tokio::task::spawn_blocking(move || {
        // The run of the old bytes starts its part; the run of the new bytes writes the same
        // part key (and would write its manifest) before the old run finishes.
        let mut newer = None;
        let older = write_part(&s, "etag-old", &k, b"{\"old\":1}\n", || {
            newer = Some(write_part(&s, "etag-new", &k, b"{\"new\":1}\n", || {}));
        });
        // A concurrent run of the same new bytes: it loses the race to an identical part, and
        // that is no failure.
        let k2 = format!("{k}.twin");
        let twin = write_part(&s, "etag-new", &k2, b"{\"new\":1}\n", || {
            write_part(&s, "etag-new", &k2, b"{\"new\":1}\n", || {}).unwrap();
        });
        (older, newer.unwrap(), twin)
    })
    .await
    .unwrap();
    let (older, newer, twin) = results;
    newer.expect("the newer run writes its part");
    let err = older.expect_err("the older run's late part must not land");
    assert!(
        err.to_string().contains("another version of the source"),
        "{err}"
    );
    twin.expect("a twin of the same version is no failure");
    assert_eq!(
        get(&s3, BUCKET, &format!("{key}.twin")).await.unwrap(),
        b"{\"new\":1}\n"
    );
    assert_eq!(
        get(&s3, BUCKET, key).await.unwrap(),
        b"{\"new\":1}\n",
        "the part holds the newer bytes"
    );
    assert_eq!(
        head(&s3, BUCKET, key)
            .await
            .metadata()
            .and_then(|m| m.get("export-fetcher-source"))
            .map(String::as_str),
        Some("etag-new")
    );
}
