//! The Lambda artifact as users build it, run under the Runtime API double on one real event.
//!
//! `scripts/sam-build.sh` builds `bootstrap` twice, with `cargo lambda build --release` and with
//! `sam build` on `template.yaml` (x86_64), and runs this test once per artifact with
//! `EXPORT_FETCHER_BOOTSTRAP` naming it. Without that variable there is no artifact to check: the
//! test says so and passes (the test-profile binary is checked by
//! `runtime_api::binary_serves_the_lambda_runtime_api`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use export_fetcher::trigger::decode_s3_key;
use serde_json::Value;

use crate::fixtures::{
    DEFLATED, currents_avro, engagement_report, gzip, message_archive_json, zip_of,
};
use crate::lambda_s3::{BUCKET, head, manifest, moto_with_bucket, put};
use crate::runtime_api::{Posted, run_under_runtime_api};

/// The event: an SQS batch of two S3 notifications naming three objects, as the template's
/// queue delivers them.
const EVENT: &str = "events/sqs-s3.json";

/// The S3 notifications inside an SQS batch, each with its decoded key.
fn notifications(batch: &mut Value) -> Vec<(String, &mut Value)> {
    let mut found = Vec::new();
    for message in batch["Records"].as_array_mut().expect("an SQS batch") {
        let body: Value = serde_json::from_str(message["body"].as_str().unwrap()).unwrap();
        message["body"] = body;
        for record in message["body"]["Records"].as_array_mut().unwrap() {
            assert_eq!(record["s3"]["bucket"]["name"], BUCKET, "{record}");
            let key = decode_s3_key(record["s3"]["object"]["key"].as_str().unwrap()).unwrap();
            found.push((key, record));
        }
    }
    found
}

/// The batch as SQS delivers it again: every message body a JSON string.
fn with_string_bodies(mut batch: Value) -> Value {
    for message in batch["Records"].as_array_mut().unwrap() {
        message["body"] = Value::String(message["body"].to_string());
    }
    batch
}

/// What Braze writes at such a key.
fn object_for(key: &str) -> Vec<u8> {
    if key.ends_with(".zip") {
        let report = engagement_report(7, 40, b',');
        zip_of(&[("report.csv", report.bytes.as_slice())], DEFLATED, false)
    } else if key.ends_with(".json.gz") {
        gzip(&message_archive_json(
            7,
            "email",
            "dispatch-1",
            Some("campaign-1"),
            false,
        ))
    } else if key.ends_with(".avro") {
        currents_avro(7, "deflate", 50, 20).bytes
    } else {
        panic!("no sample object for {key}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_artifact_serves_a_real_sqs_batch() {
    let Some(bootstrap) = std::env::var_os("EXPORT_FETCHER_BOOTSTRAP").map(PathBuf::from) else {
        eprintln!(
            "deploy_artifact: skipped, EXPORT_FETCHER_BOOTSTRAP is not set \
             (scripts/sam-build.sh builds the Lambda artifacts and sets it)"
        );
        return;
    };
    assert!(
        bootstrap.is_file(),
        "no artifact at {}",
        bootstrap.display()
    );

    // The Lambda build carries no demo: the command answers that it is not there.
    let demo = Command::new(&bootstrap).arg("demo").output().unwrap();
    let stderr = String::from_utf8_lossy(&demo.stderr);
    assert_eq!(demo.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("this build has no demo"), "{stderr}");

    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(EVENT)).unwrap(),
    )
    .unwrap();
    let (moto, s3) = moto_with_bucket().await;
    // The objects the event names, uploaded; the notifications then carry their ETags and sizes,
    // as S3 would have sent them (the function skips a notification older than its object).
    let mut keys = Vec::new();
    for (key, record) in notifications(&mut event) {
        put(&s3, BUCKET, &key, object_for(&key)).await;
        let stored = head(&s3, BUCKET, &key).await;
        let object = &mut record["s3"]["object"];
        object["eTag"] = stored.e_tag().unwrap().trim_matches('"').into();
        object["size"] = stored.content_length().unwrap().into();
        keys.push(key);
    }
    assert_eq!(keys.len(), 3, "{keys:?}");
    let event = with_string_bodies(event);

    let (posted, out) =
        run_under_runtime_api(&bootstrap, &moto.endpoint, event, "1024", Stdio::null());
    let logs = String::from_utf8_lossy(&out.stderr);
    match posted {
        Ok(Posted::Response(r)) => {
            assert_eq!(r, serde_json::json!({"batchItemFailures": []}), "{logs}");
        }
        other => panic!(
            "no response from {}: {other:?}\n{logs}",
            bootstrap.display()
        ),
    }
    for key in &keys {
        let m = manifest(&s3, BUCKET, key)
            .await
            .unwrap_or_else(|| panic!("no manifest for {key}\n{logs}"));
        assert_eq!(m["status"], "complete", "{key}: {m}");
    }
}
