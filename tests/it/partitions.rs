//! One manifest per Currents partition (moto_server on loopback): the sweep closes an hour once
//! it and `CURRENTS_GRACE_MINUTES` have passed, with every file listed (stragglers indexed),
//! each writer schema once, and a Redshift COPY manifest of its Avro files; a late file amends
//! it; each generation is forwarded once. Every partition manifest read here is validated
//! against `schema/partition-manifest.v1.schema.json`. The Avro files come from the tests' own
//! generator.

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::types::{Record, Value as AV};
use export_fetcher::config::Config;
use export_fetcher::handler;
use export_fetcher::pipeline::Env;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::aws::{Moto, drain, env_with_sinks};
use crate::fixtures::currents_schema;
use crate::lambda_s3::{BUCKET, get, head, manifest, moto_with_bucket, put, s3_event};

const CONNECTOR: &str = "dataexport.prod-01.S3.integration.69cad1b2aa7e5f0c";
const EVENT_TYPE: &str = "users.messages.email.Send";
const OUT: &str = "export-fetcher/";

fn prefix(hour: &str) -> String {
    format!("currents/{CONNECTOR}/event_type={EVENT_TYPE}/date={hour}/")
}

fn key(hour: &str, n: u32) -> String {
    format!("{}version=6/us-01/{CONNECTOR}+0+{n:010}.avro", prefix(hour))
}

/// The Currents email-send schema; `evolved` adds a field, as a new writer schema does.
fn schema(evolved: bool) -> Schema {
    schema_with(if evolved { &["machine_id"] } else { &[] })
}

/// The Currents email-send schema with these (nullable string) fields added.
fn schema_with(extra: &[&str]) -> Schema {
    let base = currents_schema("Send", "dataexport.S3.inner.users.messages.email");
    let mut json = serde_json::to_value(&base).unwrap();
    for name in extra {
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": name, "type": ["null", "string"], "default": null}));
    }
    Schema::parse_str(&json.to_string()).unwrap()
}

fn fingerprint(schema: &Schema) -> String {
    format!("{:x}", Sha256::digest(schema.canonical_form().as_bytes()))
}

fn columns(schema: &Schema) -> Vec<String> {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        _ => unreachable!(),
    }
}

/// An Avro file of `n` records in `schema` (deflate).
fn avro(schema: &Schema, n: usize) -> Vec<u8> {
    let mut w = apache_avro::Writer::with_codec(
        schema,
        Vec::new(),
        apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
    )
    .unwrap();
    let Schema::Record(record) = schema else {
        unreachable!()
    };
    for i in 0..n {
        let mut r = Record::new(schema).unwrap();
        for f in &record.fields {
            let v = match &f.schema {
                Schema::String => AV::String(format!("{}-{i}", f.name)),
                Schema::Int => AV::Int(1_714_568_400 + i as i32),
                Schema::Union(_) => AV::Union(0, Box::new(AV::Null)),
                other => panic!("no value for {other:?}"),
            };
            r.put(&f.name, v);
        }
        w.append_value(r).unwrap();
    }
    w.into_inner().unwrap()
}

async fn partition_manifest(s3: &aws_sdk_s3::Client, hour: &str) -> Option<Value> {
    let key = format!("{OUT}currents/{}partition.manifest.json", prefix(hour));
    let m: Value = serde_json::from_slice(&get(s3, BUCKET, &key).await?).unwrap();
    crate::support::assert_matches_schema(&m, "schema/partition-manifest.v1.schema.json");
    Some(m)
}

async fn redshift_manifest(s3: &aws_sdk_s3::Client, hour: &str) -> Value {
    let key = format!("{OUT}currents/{}redshift.manifest.json", prefix(hour));
    serde_json::from_slice(&get(s3, BUCKET, &key).await.expect("written")).unwrap()
}

async fn notify(env: &Arc<Env>, key: &str) -> String {
    let response = handler::handle(env.clone(), s3_event(BUCKET, key), None)
        .await
        .unwrap();
    response["results"][0]["outcome"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Puts `body` at `key` and runs its notification; returns the outcome.
async fn put_and_notify(
    s3: &aws_sdk_s3::Client,
    env: &Arc<Env>,
    key: &str,
    body: Vec<u8>,
) -> String {
    put(s3, BUCKET, key, body).await;
    notify(env, key).await
}

async fn sweep(env: &Arc<Env>) -> Value {
    let event = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                       "account": "123456789012", "time": "2024-05-01T15:00:00Z",
                       "region": "us-east-1", "resources": [], "detail": {}});
    handler::handle(env.clone(), event, None).await.unwrap()
}

/// The Redshift manifest lists exactly these objects, with their lengths.
async fn assert_redshift_lists(s3: &aws_sdk_s3::Client, hour: &str, keys: &[String]) {
    let mut want = Vec::new();
    let mut sorted = keys.to_vec();
    sorted.sort();
    for key in &sorted {
        let length = head(s3, BUCKET, key).await.content_length().unwrap();
        want.push(
            json!({"url": format!("s3://{BUCKET}/{key}"), "mandatory": true,
                         "meta": {"content_length": length}}),
        );
    }
    assert_eq!(
        redshift_manifest(s3, hour).await,
        json!({ "entries": want })
    );
}

struct Setup {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    env: Arc<Env>,
    manifests: String,
    eb_out: String,
}

async fn setup(grace: u64) -> Setup {
    let (moto, s3) = moto_with_bucket().await;
    let d = crate::sinks::downstream(&moto, false).await;
    let env = env_with_sinks(
        &moto,
        Config {
            sqs_queue_url: Some(d.manifests.clone()),
            event_bus_name: Some("exports-bus".into()),
            source_bucket: Some(BUCKET.into()),
            currents_grace_minutes: grace,
            ..Config::default()
        },
    );
    Setup {
        moto,
        s3,
        env,
        manifests: d.manifests,
        eb_out: d.eb_out,
    }
}

/// The partition messages the SQS sink got, by generation.
async fn partition_messages(w: &Setup) -> Vec<Value> {
    let msgs = drain(&w.moto.sqs(), &w.manifests).await;
    let mut out: Vec<Value> = msgs
        .iter()
        .filter(|m| {
            m.message_attributes().unwrap()["message_type"].string_value() == Some("partition")
        })
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    out.sort_by_key(|m| m["generation"].as_u64());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_closes_with_every_file_each_writer_schema_once_and_a_redshift_manifest() {
    let w = setup(0).await;
    let hour = "2024-05-01-13";
    let (old, new) = (schema(false), schema(true));
    let files = [(1, &old, 40), (2, &new, 25), (3, &old, 10)];
    let mut keys = Vec::new();
    for (n, schema, records) in files {
        let k = key(hour, n);
        put(&w.s3, BUCKET, &k, avro(schema, records)).await;
        keys.push(k);
    }
    // Two files announced; the third's notification never came.
    assert_eq!(notify(&w.env, &keys[0]).await, "done");
    assert_eq!(notify(&w.env, &keys[1]).await, "done");
    let record = format!("{OUT}open/partitions/{}open.json", prefix(hour));
    assert!(
        get(&w.s3, BUCKET, &record).await.is_some(),
        "the partition is open"
    );

    let report = sweep(&w.env).await;
    assert_eq!(
        report["partitions_closed"][0]["prefix"],
        prefix(hour),
        "{report}"
    );
    assert_eq!(report["open_partitions"], 0, "{report}");
    let m = partition_manifest(&w.s3, hour).await.expect("closed");
    assert_eq!(m["status"], "complete");
    assert_eq!(m["generation"], 1);
    assert_eq!(m["closed_by"], "grace_period");
    assert_eq!(m["braze"]["event_type"], EVENT_TYPE);
    assert_eq!(m["braze"]["date_hour"], hour);
    assert_eq!(m["braze"]["integration_id"], "69cad1b2aa7e5f0c");
    assert_eq!(m["braze"]["currents_version"], 6);
    assert_eq!(m["totals"]["files"], 3);
    assert_eq!(m["totals"]["records"], 75);
    let listed: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, keys.iter().map(String::as_str).collect::<Vec<_>>());
    for (f, (_, schema, records)) in m["files"].as_array().unwrap().iter().zip(files) {
        assert_eq!(f["writer_schema_fingerprint"], fingerprint(schema));
        assert_eq!(f["records"], records);
    }
    assert_eq!(
        m["schemas"],
        json!([
            {"fingerprint": fingerprint(&old), "columns": columns(&old)},
            {"fingerprint": fingerprint(&new), "columns": columns(&new)},
        ])
    );
    let straggler = manifest(&w.s3, BUCKET, &keys[2]).await.unwrap();
    assert_eq!(straggler["source"]["event_name"], "PartitionClose:Listed");
    assert_eq!(
        straggler["parts"][0]["schema_fingerprint"],
        fingerprint(&old)
    );
    assert_redshift_lists(&w.s3, hour, &keys).await;
    assert!(
        get(&w.s3, BUCKET, &record).await.is_none(),
        "the record is removed"
    );
    // The straggler's own notification comes at last: a duplicate, nothing amended.
    assert_eq!(notify(&w.env, &keys[2]).await, "duplicate");
    assert_eq!(partition_manifest(&w.s3, hour).await.unwrap(), m);

    let messages = partition_messages(&w).await;
    assert_eq!(messages, vec![m.clone()], "forwarded once");
    let events = drain(&w.moto.sqs(), &w.eb_out).await;
    let closed: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(e.body().unwrap()).unwrap())
        .filter(|e| e["detail-type"] == "Braze Currents Partition Closed")
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["detail"], m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_file_amends_the_partition_and_its_redshift_manifest() {
    let w = setup(0).await;
    let hour = "2024-05-01-14";
    let mut keys = vec![key(hour, 1), key(hour, 2)];
    for k in &keys {
        put_and_notify(&w.s3, &w.env, k, avro(&schema(false), 12)).await;
    }
    sweep(&w.env).await;
    let first = partition_manifest(&w.s3, hour).await.unwrap();
    assert_redshift_lists(&w.s3, hour, &keys).await;

    let late = key(hour, 3);
    keys.push(late.clone());
    assert_eq!(
        put_and_notify(&w.s3, &w.env, &late, avro(&schema(true), 5)).await,
        "done"
    );
    let second = partition_manifest(&w.s3, hour).await.unwrap();
    assert_eq!(second["generation"], 2, "{second:#}");
    assert_eq!(second["closed_by"], "late_file");
    assert_eq!(second["totals"]["files"], 3);
    assert_eq!(second["schemas"].as_array().unwrap().len(), 2);
    assert_redshift_lists(&w.s3, hour, &keys).await;
    // Again, and swept: no third generation.
    assert_eq!(notify(&w.env, &late).await, "duplicate");
    let report = sweep(&w.env).await;
    assert_eq!(report["partitions_closed"], json!([]), "{report}");
    assert_eq!(partition_manifest(&w.s3, hour).await.unwrap(), second);
    assert_eq!(partition_messages(&w).await, vec![first, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_not_over_stays_open() {
    let w = setup(60).await;
    let now = time::OffsetDateTime::now_utc();
    let hour = format!(
        "{:04}-{:02}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour()
    );
    let k = key(&hour, 1);
    put_and_notify(&w.s3, &w.env, &k, avro(&schema(false), 3)).await;
    let report = sweep(&w.env).await;
    assert_eq!(report["open_partitions"], 1, "{report}");
    assert_eq!(report["partitions_closed"], json!([]));
    assert!(partition_manifest(&w.s3, &hour).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweeps_write_one_generation_and_a_broken_file_stays_out_of_redshift() {
    let w = setup(0).await;
    let hour = "2024-05-01-15";
    let good: Vec<String> = (1..=3).map(|n| key(hour, n)).collect();
    for k in &good {
        put(&w.s3, BUCKET, k, avro(&schema(false), 8)).await;
    }
    // A file cut short: its manifest is failed, the partition partial, and Redshift (which
    // would refuse the whole COPY) is not given it.
    let broken = key(hour, 4);
    let mut bytes = avro(&schema(false), 200);
    bytes.truncate(bytes.len() / 2);
    put(&w.s3, BUCKET, &broken, bytes).await;
    notify(&w.env, &good[0]).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let env = w.env.clone();
        let straggler = good[2].clone();
        tasks.push(tokio::spawn(async move {
            if i == 3 {
                notify(&env, &straggler).await;
            } else {
                sweep(&env).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    sweep(&w.env).await;
    let m = partition_manifest(&w.s3, hour).await.expect("closed");
    assert_eq!(m["generation"], 1, "{m:#}");
    assert_eq!(m["status"], "partial");
    assert_eq!(m["totals"]["files"], 4);
    assert_eq!(m["files"][3]["status"], "failed");
    assert_redshift_lists(&w.s3, hour, &good).await;
    assert_eq!(partition_messages(&w).await, vec![m]);
}

/// The environment keeping Currents tables in `database` of moto's Glue.
fn glue_env(moto: &Moto, database: &str) -> Arc<Env> {
    let cfg = Config {
        glue_database: Some(database.into()),
        ..Config::default()
    };
    Arc::new(
        handler::env_with_clients(cfg, crate::aws::s3_client(&moto.endpoint))
            .unwrap()
            .with_glue(moto.glue()),
    )
}

/// moto with the bucket and a Glue database, and the environment keeping tables in it.
async fn with_glue() -> (Moto, aws_sdk_s3::Client, Arc<Env>) {
    let (moto, s3) = moto_with_bucket().await;
    moto.glue()
        .create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name("braze_currents")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let env = glue_env(&moto, "braze_currents");
    (moto, s3, env)
}

const TABLE: &str = "users_messages_email_send_69cad1b2";

async fn table(moto: &Moto) -> aws_sdk_glue::types::Table {
    moto.glue()
        .get_table()
        .database_name("braze_currents")
        .name(TABLE)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
}

fn column_names(t: &aws_sdk_glue::types::Table) -> Vec<String> {
    t.storage_descriptor()
        .unwrap()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect()
}

/// The partitions of the Currents table.
async fn partitions(moto: &Moto) -> aws_sdk_glue::operation::get_partitions::GetPartitionsOutput {
    moto.glue()
        .get_partitions()
        .database_name("braze_currents")
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
}

async fn partition_values(moto: &Moto) -> Vec<String> {
    let mut values: Vec<String> = partitions(moto)
        .await
        .partitions()
        .iter()
        .flat_map(|p| p.values().to_vec())
        .collect();
    values.sort();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_files_create_one_table_and_one_partition_per_hour() {
    let (moto, s3, env) = with_glue().await;
    let keys: Vec<String> = (1..=4).map(|n| key("2024-05-01-16", n)).collect();
    for k in &keys {
        put(&s3, BUCKET, k, avro(&schema(false), 5)).await;
    }
    let tasks: Vec<_> = keys
        .iter()
        .map(|k| {
            let (env, k) = (env.clone(), k.clone());
            tokio::spawn(async move { notify(&env, &k).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "done");
    }
    let t = table(&moto).await;
    assert_eq!(column_names(&t), columns(&schema(false)));
    let sd = t.storage_descriptor().unwrap();
    assert_eq!(
        sd.serde_info().unwrap().serialization_library(),
        Some("org.apache.hadoop.hive.serde2.avro.AvroSerDe")
    );
    assert_eq!(
        sd.location(),
        Some(format!("s3://{BUCKET}/currents/{CONNECTOR}/event_type={EVENT_TYPE}/").as_str())
    );
    let types: Vec<(&str, &str)> = sd
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap_or("")))
        .collect();
    assert!(
        types.contains(&("time", "int")) && types.contains(&("tags", "array<string>")),
        "{types:?}"
    );
    let keys_of_table: Vec<&str> = t.partition_keys().iter().map(|c| c.name()).collect();
    assert_eq!(keys_of_table, ["date"]);
    let literal: Value =
        serde_json::from_str(&t.parameters().unwrap()["avro.schema.literal"]).unwrap();
    assert_eq!(
        literal["fields"].as_array().unwrap().len(),
        columns(&schema(false)).len()
    );
    assert_eq!(partition_values(&moto).await, ["2024-05-01-16"]);
    // The partition is described as the table is (its columns and SerDe).
    let parts = partitions(&moto).await;
    let psd = parts.partitions()[0].storage_descriptor().unwrap();
    let pcols: Vec<&str> = psd.columns().iter().map(|c| c.name()).collect();
    assert_eq!(pcols, column_names(&t));
    assert_eq!(
        psd.location(),
        Some(
            format!(
                "s3://{BUCKET}/currents/{CONNECTOR}/event_type={EVENT_TYPE}/date=2024-05-01-16/"
            )
            .as_str()
        )
    );

    // Another hour: one more partition. The same file again: nothing new.
    let next = key("2024-05-01-17", 1);
    put_and_notify(&s3, &env, &next, avro(&schema(false), 5)).await;
    notify(&env, &next).await;
    assert_eq!(
        partition_values(&moto).await,
        ["2024-05-01-16", "2024-05-01-17"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_writer_schema_adds_its_fields_and_an_older_one_drops_none() {
    let (moto, s3, env) = with_glue().await;
    let hour = "2024-05-01-18";
    let first = key(hour, 1);
    put_and_notify(&s3, &env, &first, avro(&schema(false), 5)).await;
    let evolved = key(hour, 2);
    put_and_notify(&s3, &env, &evolved, avro(&schema(true), 5)).await;
    let t = table(&moto).await;
    let names = column_names(&t);
    assert_eq!(names, columns(&schema(true)), "machine_id appended");
    let older = key(hour, 3);
    put_and_notify(&s3, &env, &older, avro(&schema(false), 5)).await;
    assert_eq!(column_names(&table(&moto).await), names, "never dropped");
    let literal: Value =
        serde_json::from_str(&table(&moto).await.parameters().unwrap()["avro.schema.literal"])
            .unwrap();
    let last = literal["fields"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["name"], "machine_id");
    assert_eq!(last["type"], json!(["null", "string"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glue_failure_retries_the_object_and_its_manifest_stands() {
    let (moto, s3) = moto_with_bucket().await;
    // The database does not exist: Glue refuses the table.
    let env = glue_env(&moto, "no_such_database");
    let k = key("2024-05-01-19", 1);
    put(&s3, BUCKET, &k, avro(&schema(false), 5)).await;
    let err = handler::handle(env.clone(), s3_event(BUCKET, &k), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("EntityNotFoundException"), "{err}");
    assert!(err.len() < 400, "one readable line: {err}");
    let m = manifest(&s3, BUCKET, &k)
        .await
        .expect("the manifest stands");
    assert_eq!(m["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_no_avro_header_is_left_out_of_glue_not_retried() {
    let (moto, s3, env) = with_glue().await;
    let k = key("2024-05-01-20", 1);
    assert_eq!(
        put_and_notify(&s3, &env, &k, b"Obj\x01 cut short".to_vec()).await,
        "done"
    );
    assert_eq!(manifest(&s3, BUCKET, &k).await.unwrap()["status"], "failed");
    let tables = moto
        .glue()
        .get_tables()
        .database_name("braze_currents")
        .send()
        .await
        .unwrap();
    assert!(
        tables.table_list().is_empty(),
        "no table from a broken file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_new_writer_schemas_each_keep_their_fields() {
    let (moto, s3, env) = with_glue().await;
    let hour = "2024-05-01-21";
    let first = key(hour, 1);
    put_and_notify(&s3, &env, &first, avro(&schema(false), 3)).await;
    // Two files whose writer schemas each add a different field, at once.
    let extras = ["machine_id", "ip_country", "sdk_version"];
    let mut tasks = Vec::new();
    for (i, extra) in extras.iter().enumerate() {
        let k = key(hour, 2 + i as u32);
        put(&s3, BUCKET, &k, avro(&schema_with(&[extra]), 3)).await;
        let env = env.clone();
        tasks.push(tokio::spawn(async move { notify(&env, &k).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "done");
    }
    // Glue's UpdateTable takes the VersionId read, so a concurrent update fails and the loser
    // merges again; moto ignores VersionId, so here an update can be lost in the race. Every
    // later file of that writer schema (here: each file's notification again) puts the field
    // back: the table converges and never drops a column.
    for i in 0..extras.len() {
        assert_eq!(notify(&env, &key(hour, 2 + i as u32)).await, "duplicate");
    }
    let names = column_names(&table(&moto).await);
    for extra in extras {
        assert!(names.iter().any(|n| n == extra), "{extra} kept: {names:?}");
    }
    assert!(names.iter().any(|n| n == "email_address"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_whose_table_name_is_taken_is_left_out_not_mixed_in() {
    let (moto, s3, env) = with_glue().await;
    let first = key("2024-05-01-22", 1);
    put_and_notify(&s3, &env, &first, avro(&schema(false), 3)).await;
    // Another integration, the same first 8 characters of its id: the same table name.
    let other = first.replace("69cad1b2aa7e5f0c", "69cad1b2ffffffff");
    assert_eq!(
        put_and_notify(&s3, &env, &other, avro(&schema(false), 3)).await,
        "done"
    );
    let t = table(&moto).await;
    assert_eq!(
        t.storage_descriptor().unwrap().location(),
        Some(format!("s3://{BUCKET}/currents/{CONNECTOR}/event_type={EVENT_TYPE}/").as_str())
    );
    assert_eq!(partition_values(&moto).await, ["2024-05-01-22"]);
}
