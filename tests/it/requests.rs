//! S3 requests per object, counted by the store's own interceptor (every attempt, as S3 bills
//! them) against moto: the count README's "S3 requests per object" documents, held here so
//! that a change that adds a request is seen.

use std::collections::BTreeMap;

use export_fetcher::config::Config;
use export_fetcher::handler;
use export_fetcher::store::requests::since;
use serde_json::{Value, json};

use crate::aws::{Moto, REGION, env_with_sinks, queue};
use crate::fixtures::{gzip, users_jsonl};
use crate::lambda_s3::{BUCKET, make_bucket, moto_with_bucket, put, versioned_bucket};

fn notification(key: &str, size: usize) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2026-12-02T07:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": BUCKET},
               "object": {"key": key, "size": size}}
    }]})
}

fn batch_task(key: &str) -> Value {
    json!({"invocationSchemaVersion": "2.0", "invocationId": "i", "job": {"id": "j"},
           "tasks": [{"taskId": "t", "s3Bucket": BUCKET, "s3Key": key, "s3VersionId": null}]})
}

/// The requests one invocation makes, by operation.
async fn requests_of(
    env: &std::sync::Arc<export_fetcher::pipeline::Env>,
    event: Value,
) -> BTreeMap<String, u64> {
    let before = env.s3.requests().snapshot();
    handler::handle(env.clone(), event, None).await.unwrap();
    since(&before, &env.s3.requests().snapshot())
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_object_costs_the_documented_requests() {
    for versioned in [false, true] {
        let moto = Moto::start();
        let s3 = moto.s3();
        if versioned {
            versioned_bucket(&s3, BUCKET).await;
        } else {
            make_bucket(&s3, BUCKET).await;
        }
        let url = queue(&moto, "manifests").await;
        let with_sink = env_with_sinks(
            &moto,
            Config {
                sqs_queue_url: Some(url),
                ..Config::default()
            },
        );
        let no_sink = env_with_sinks(&moto, Config::default());
        let body = gzip(&users_jsonl(1, 10).bytes);
        let key = "segment-export/seg/2024-05-01/p-1714550400/small.json.gz";
        put(&s3, BUCKET, key, body.clone()).await;
        let first = requests_of(&with_sink, notification(key, body.len())).await;
        let duplicate = requests_of(&with_sink, notification(key, body.len())).await;
        let key2 = "segment-export/seg/2024-05-01/p-1714550400/small-2.json.gz";
        put(&s3, BUCKET, key2, body.clone()).await;
        let unsunk = requests_of(&no_sink, notification(key2, body.len())).await;
        let key3 = "segment-export/seg/2024-05-01/p-1714550400/small-3.json.gz";
        put(&s3, BUCKET, key3, body.clone()).await;
        let task = requests_of(&no_sink, batch_task(key3)).await;
        println!(
            "versioned={versioned}\n  new object, one sink: {first:?}\n  duplicate: {duplicate:?}\n  no sink: {unsunk:?}\n  batch task, no sink: {task:?}"
        );
        // New object, no sink: GET of the (absent) manifest, one ranged GET of the whole object
        // (its headers stand for a HEAD), the part, the manifest; an unversioned source's part
        // also costs a HEAD of its key (the condition it is written on).
        let base = if versioned { 4 } else { 5 };
        // An API export's file then keeps its export's open record: GET of the export
        // manifest (absent while open) and of the open record, plus the record's PUT for the
        // export's first file.
        let (rollup_first, rollup) = (3, 2);
        assert_eq!(total(&unsunk), base + rollup, "no sink: {unsunk:?}");
        assert_eq!(unsunk.get("GetObject"), Some(&4), "{unsunk:?}");
        assert_eq!(total(&task), base + rollup, "batch task: {task:?}");
        // Each sink: the delivery claim and its record.
        assert_eq!(
            total(&first),
            base + 2 + rollup_first,
            "one sink: {first:?}"
        );
        // A duplicate: the manifest, a HEAD of the object, the delivery record.
        assert_eq!(total(&duplicate), 3 + rollup, "duplicate: {duplicate:?}");
    }
}

/// A Currents file's roll-up step: the partition manifest and the open record are read, and
/// the record written for the hour's first file; once the hour is closed, only its manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_currents_file_costs_its_partitions_requests() {
    let (moto, s3) = moto_with_bucket().await;
    let env = env_with_sinks(
        &moto,
        Config {
            currents_grace_minutes: 0,
            source_bucket: Some(BUCKET.into()),
            ..Config::default()
        },
    );
    let file = crate::fixtures::currents_avro(3, "deflate", 20, 10).bytes;
    let key = |n: u32| {
        format!(
            "currents/dataexport.prod-01.S3.integration.69cad1b2aa/event_type=users.messages.email.Send/date=2024-05-01-13/version=6/us-01/dataexport.prod-01.S3.integration.69cad1b2aa+0+{n:06}.avro"
        )
    };
    for n in 1..=3 {
        put(&s3, BUCKET, &key(n), file.clone()).await;
    }
    // As S3 sends it: the key form-URL-encoded (`+` is `%2B`).
    let notification = |n: u32| notification(&key(n).replace('+', "%2B"), file.len());
    let base = 5; // as any new object of an unversioned bucket (see above)
    let first = requests_of(&env, notification(1)).await;
    assert_eq!(total(&first), base + 3, "the hour's first file: {first:?}");
    let second = requests_of(&env, notification(2)).await;
    assert_eq!(total(&second), base + 2, "a later file: {second:?}");
    // Closed by a sweep (which indexes the third file), then the third's notification: a
    // duplicate (the manifest, a HEAD, nothing to deliver) and the partition manifest.
    let sweep = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    handler::handle(env.clone(), sweep, None).await.unwrap();
    let late = requests_of(&env, notification(3)).await;
    assert_eq!(
        total(&late),
        2 + 1,
        "a file the closed hour lists: {late:?}"
    );
}
