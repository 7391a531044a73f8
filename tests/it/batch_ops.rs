//! The function as an S3 Batch Operations target: the real handler on invocation schema 1.0 and
//! 2.0 events against moto_server, every result code, `reprocess` generations and their
//! forwarding, and concurrent duplicates inside one invocation.

use std::sync::Arc;

use export_fetcher::config::{Config, Limits};
use export_fetcher::handler;
use export_fetcher::pipeline::Env;
use serde_json::{Value, json};

use crate::aws::{Moto, drain_json, env_with_sinks, queue};
use crate::fixtures::{gzip, users_jsonl};
use crate::lambda_s3::{BUCKET, make_bucket, manifest, put};
use crate::support::validate_manifest;

const API_KEY: &str = "segment-export/seg-9/2024-05-01/7d1e2c3a-1714550400/users 1+2 été.json.gz";

/// Percent-encodes a key as a Batch Operations CSV manifest holds it: unreserved bytes and `/`
/// kept, everything else `%XX` (space `%20`, `+` `%2B`).
fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A schema 2.0 invocation of `keys` (one task each) by `job`, with `reprocess` in its user
/// arguments.
fn invocation_2(keys: &[&str], reprocess: bool, job: &str) -> Value {
    let tasks: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({"taskId": format!("task-{i}"), "s3Bucket": BUCKET, "s3Key": encode(k),
                   "s3VersionId": null})
        })
        .collect();
    json!({
        "invocationSchemaVersion": "2.0",
        "invocationId": "aW52b2NhdGlvbi0y",
        "job": {"id": job, "userArguments": {"reprocess": if reprocess { "true" } else { "false" }}},
        "tasks": tasks,
    })
}

/// A schema 1.0 invocation of one key.
fn invocation_1(key: &str) -> Value {
    json!({
        "invocationSchemaVersion": "1.0",
        "invocationId": "aW52b2NhdGlvbi0x",
        "job": {"id": "job-1"},
        "tasks": [{"taskId": "dGFzay0x", "s3Key": encode(key), "s3VersionId": null,
                   "s3BucketArn": format!("arn:aws:s3:::{BUCKET}")}],
    })
}

async fn setup(limits: Option<Limits>) -> (Moto, Arc<Env>, String) {
    let moto = Moto::start();
    make_bucket(&moto.s3(), BUCKET).await;
    let url = queue(&moto, "manifests").await;
    let mut cfg = Config {
        sqs_queue_url: Some(url.clone()),
        ..Config::default()
    };
    if let Some(l) = limits {
        cfg.limits = l;
    }
    let env = env_with_sinks(&moto, cfg);
    (moto, env, url)
}

async fn invoke(env: &Arc<Env>, event: Value) -> Value {
    handler::handle(env.clone(), event, None)
        .await
        .expect("a Batch Operations invocation is always answered")
}

fn codes(response: &Value) -> Vec<(String, String)> {
    response["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resultCode"].as_str().unwrap().to_string(),
                r["resultString"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_1_0_and_2_0_tasks_are_indexed_and_answered_exactly_as_batch_operations_reads() {
    let (moto, env, url) = setup(None).await;
    let s3 = moto.s3();
    put(&s3, BUCKET, API_KEY, gzip(&users_jsonl(3, 40).bytes)).await;

    let event = invocation_1(API_KEY);
    let response = invoke(&env, event.clone()).await;
    let mut keys: Vec<&str> = response
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "invocationId",
            "invocationSchemaVersion",
            "results",
            "treatMissingKeysAs"
        ],
        "exactly the fields Batch Operations reads"
    );
    assert_eq!(response["invocationSchemaVersion"], "1.0");
    assert_eq!(response["invocationId"], event["invocationId"]);
    assert_eq!(response["treatMissingKeysAs"], "PermanentFailure");
    assert_eq!(response["results"][0]["taskId"], "dGFzay0x");
    let m = manifest(&s3, BUCKET, API_KEY)
        .await
        .expect("manifest written");
    validate_manifest(&m, "batch 1.0");
    assert_eq!(m["status"], "complete");
    assert_eq!(m["generation"], 1);
    assert_eq!(m["source"]["event_name"], "BatchOperations:LambdaInvoke");
    assert_eq!(
        codes(&response),
        [(
            "Succeeded".to_string(),
            m["manifest_key"].as_str().unwrap().to_string()
        )]
    );
    assert_eq!(drain_json(&moto.sqs(), &url).await.len(), 1);

    // The same object again, now through schema 2.0 without `reprocess`: a duplicate, no work,
    // nothing forwarded.
    let response = invoke(&env, invocation_2(&[API_KEY], false, "job-a")).await;
    assert_eq!(response["invocationSchemaVersion"], "2.0");
    assert_eq!(codes(&response)[0].0, "Succeeded");
    assert_eq!(codes(&response)[0].1, m["manifest_key"].as_str().unwrap());
    let again = manifest(&s3, BUCKET, API_KEY).await.unwrap();
    assert_eq!(again["processed_at"], m["processed_at"], "not rewritten");
    assert!(drain_json(&moto.sqs(), &url).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_code_follows_the_cause_of_the_outcome() {
    // A tiny expansion limit makes the big object an environment failure (a limit crossed).
    let limits = Limits {
        max_expanded_bytes: 64 << 10,
        ..Limits::default()
    };
    let (moto, env, _url) = setup(Some(limits)).await;
    let s3 = moto.s3();
    let good = "reports/campaign/2024-05-01/report.csv";
    let corrupt = "segment-export/seg-9/2024-05-01/p-1714550400/corrupt.json.gz";
    let big = "segment-export/seg-9/2024-05-01/p-1714550400/big.json.gz";
    let missing = "segment-export/seg-9/2024-05-01/p-1714550400/gone.json.gz";
    let output = "export-fetcher/manifests/x.manifest.json";
    put(&s3, BUCKET, good, b"a,b\n1,2\n".to_vec()).await;
    let mut truncated = gzip(&users_jsonl(5, 20).bytes);
    truncated.truncate(truncated.len() / 2);
    put(&s3, BUCKET, corrupt, truncated).await;
    put(&s3, BUCKET, big, gzip(&users_jsonl(6, 2000).bytes)).await;
    put(&s3, BUCKET, output, b"{}".to_vec()).await;
    let mut event = invocation_2(&[good, corrupt, big, missing, output], false, "job-a");
    // A task whose key cannot be decoded fails alone.
    event["tasks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"taskId": "bad-key", "s3Bucket": BUCKET, "s3Key": "a%zz"}));
    let response = invoke(&env, event).await;
    let results = codes(&response);
    let ids: Vec<&str> = response["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["task-0", "task-1", "task-2", "task-3", "task-4", "bad-key"],
        "one result per task, in task order"
    );
    assert_eq!(results[0].0, "Succeeded", "{results:?}");
    assert!(results[0].1.ends_with("report.csv.manifest.json"));
    assert_eq!(results[1].0, "PermanentFailure", "corrupt: {results:?}");
    assert!(results[1].1.contains("failed (object)"), "{}", results[1].1);
    assert_eq!(results[2].0, "TemporaryFailure", "limit: {results:?}");
    assert!(
        results[2].1.contains("failed (environment)"),
        "{}",
        results[2].1
    );
    assert_eq!(results[3].0, "PermanentFailure", "missing: {results:?}");
    assert!(
        results[3].1.contains("failed (missing)"),
        "{}",
        results[3].1
    );
    assert_eq!(results[4].0, "Succeeded", "output: {results:?}");
    assert!(
        results[4].1.starts_with("skipped: loop guard"),
        "{}",
        results[4].1
    );
    assert_eq!(results[5].0, "PermanentFailure");
    assert!(results[5].1.contains("a%zz"), "{}", results[5].1);
    for key in [good, corrupt, big, missing] {
        let m = manifest(&s3, BUCKET, key).await.expect(key);
        validate_manifest(&m, key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_is_a_temporary_failure_and_nothing_is_written() {
    let (moto, _env, _url) = setup(None).await;
    let s3 = moto.s3();
    put(&s3, BUCKET, API_KEY, gzip(&users_jsonl(3, 40).bytes)).await;
    // Outputs go to a bucket that does not exist: every write fails.
    let cfg = Config {
        output_bucket: Some("no-such-output-bucket".into()),
        ..Config::default()
    };
    let env = crate::aws::env_at(&moto.endpoint, cfg);
    let response = invoke(&env, invocation_2(&[API_KEY], false, "job-a")).await;
    let results = codes(&response);
    assert_eq!(results[0].0, "TemporaryFailure", "{results:?}");
    assert!(manifest(&s3, BUCKET, API_KEY).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocess_writes_one_generation_higher_and_forwards_each_generation_once() {
    let (moto, env, url) = setup(None).await;
    let s3 = moto.s3();
    let sqs = moto.sqs();
    put(&s3, BUCKET, API_KEY, gzip(&users_jsonl(4, 30).bytes)).await;
    invoke(&env, invocation_2(&[API_KEY], false, "job-a")).await;
    let first = manifest(&s3, BUCKET, API_KEY).await.unwrap();
    assert_eq!(first["generation"], 1);
    assert_eq!(drain_json(&sqs, &url).await.len(), 1);

    for generation in 2..=3 {
        let job = format!("reprocess-{generation}");
        let response = invoke(&env, invocation_2(&[API_KEY], true, &job)).await;
        assert_eq!(codes(&response)[0].0, "Succeeded", "{response}");
        let m = manifest(&s3, BUCKET, API_KEY).await.unwrap();
        validate_manifest(&m, "reprocessed");
        assert_eq!(m["generation"], generation);
        assert_eq!(m["status"], "complete");
        assert_eq!(
            m["totals"], first["totals"],
            "the same bytes, the same index"
        );
        let forwarded = drain_json(&sqs, &url).await;
        assert_eq!(forwarded.len(), 1, "generation {generation}: {forwarded:?}");
        assert_eq!(forwarded[0]["generation"], generation);
        assert_eq!(m["source"]["batch_job_id"], job.as_str());
        // The same job's task again (a redrive) finds its own generation: a duplicate. So does
        // a job without `reprocess`. Neither rewrites nor resends.
        for again in [
            invocation_2(&[API_KEY], true, &job),
            invocation_2(&[API_KEY], false, "job-b"),
        ] {
            let response = invoke(&env, again).await;
            assert_eq!(codes(&response)[0].0, "Succeeded");
            let still = manifest(&s3, BUCKET, API_KEY).await.unwrap();
            assert_eq!(still["processed_at"], m["processed_at"]);
            assert!(drain_json(&sqs, &url).await.is_empty());
        }
    }
}

/// Every task Succeeded, or TemporaryFailure because a concurrent task of the same invocation
/// held the delivery claim at that moment (or moto answered 500 to a concurrent PUT of the
/// same key, one of its quirks); such a task is redriven (as Batch Operations does) and then
/// Succeeded.
async fn settled(env: &Arc<Env>, response: &Value, keys: &[&str], reprocess: bool, job: &str) {
    for (code, text) in codes(response) {
        if code == "TemporaryFailure" {
            assert!(
                text.contains("another invocation is delivering") || text.contains("HTTP 500"),
                "{text}"
            );
            let redriven = invoke(env, invocation_2(&keys[..1], reprocess, job)).await;
            assert_eq!(codes(&redriven)[0].0, "Succeeded", "{redriven}");
        } else {
            assert_eq!(code, "Succeeded", "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_in_one_invocation_write_and_forward_once() {
    let (moto, env, url) = setup(None).await;
    let s3 = moto.s3();
    let sqs = moto.sqs();
    put(&s3, BUCKET, API_KEY, gzip(&users_jsonl(8, 300).bytes)).await;
    // Six tasks of one new object, run at once.
    let response = invoke(&env, invocation_2(&[API_KEY; 6], false, "job-a")).await;
    settled(&env, &response, &[API_KEY; 6], false, "job-a").await;
    let m = manifest(&s3, BUCKET, API_KEY).await.unwrap();
    assert_eq!(m["generation"], 1);
    assert_eq!(
        drain_json(&sqs, &url).await.len(),
        1,
        "one message for one version"
    );

    // Six reprocess tasks of it in one job, at once: one new generation, forwarded once, every
    // task answered Succeeded (the losers of the race, and the tasks that start after the
    // winner, find the generation their job wrote).
    let response = invoke(&env, invocation_2(&[API_KEY; 6], true, "job-r")).await;
    settled(&env, &response, &[API_KEY; 6], true, "job-r").await;
    let results = codes(&response);
    let m = manifest(&s3, BUCKET, API_KEY).await.unwrap();
    assert_eq!(m["generation"], 2, "{results:?}");
    let forwarded = drain_json(&sqs, &url).await;
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0]["generation"], 2);
}

/// `invoke` on a Batch Operations job exits 1 when a task did not succeed, 0 when all did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_exits_non_zero_when_a_task_did_not_succeed() {
    let moto = Moto::start();
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/batch-operations-2.0.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // No bucket: the task fails.
    let (code, response) = crate::lambda_s3::invoke(&moto.endpoint, &event, &[]);
    assert_ne!(
        response["results"][0]["resultCode"], "Succeeded",
        "{response}"
    );
    assert_eq!(code, 1, "{response}");
    // The object there: the task succeeds.
    let s3 = moto.s3();
    make_bucket(&s3, BUCKET).await;
    let key = "currents/dataexport.prod-01.S3.integration.69cad1b2/event_type=users.messages.email.Send/date=2024-05-01-13/0_0_0.avro";
    put(
        &s3,
        BUCKET,
        key,
        b"not avro, but a result all the same".to_vec(),
    )
    .await;
    let (code, response) = crate::lambda_s3::invoke(&moto.endpoint, &event, &[]);
    assert_eq!(
        response["results"][0]["resultCode"], "Succeeded",
        "{response}"
    );
    assert_eq!(code, 0, "{response}");
}
