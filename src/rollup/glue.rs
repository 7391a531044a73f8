//! The Glue Data Catalog for Currents, so that Athena can query an hour within minutes of its
//! files landing (`GLUE_DATABASE` set).
//!
//! One table per (integration, event type): the event type lowercased with every character
//! other than a letter or digit as `_`, then `_` and the integration id's first 8 characters
//! (`users_messages_email_send_69cad1b2`). Avro SerDe, columns mapped from the writer schema,
//! `avro.schema.literal`, partition key `date` (a string: the `YYYY-MM-DD-HH` of the key),
//! location the event type's prefix. Each Currents file, as it is indexed:
//!
//! - creates the table when there is none (a concurrent creator's `AlreadyExists` is taken as
//!   done);
//! - updates it when its writer schema has fields the table lacks: the new fields are appended
//!   (to the columns and to `avro.schema.literal`, nullable), never dropped; the update is
//!   checked by reading the table again, so concurrent updaters converge;
//! - adds its hour's partition (`BatchCreatePartition`; `AlreadyExists` is taken as done).
//!
//! A Glue failure makes the object retried: its manifest stands, so the retry is a duplicate that
//! takes this step again.

use aws_sdk_glue::types::{Column, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::pipeline::Env;

use super::partition::Partition;

/// The Avro header is read from the object's first bytes: schemas longer than this are refused.
const HEADER_BYTES: i64 = 1 << 20;
const SERDE: &str = "org.apache.hadoop.hive.serde2.avro.AvroSerDe";
const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat";
/// Rounds of update-then-check before the step gives up (and the object is retried).
const ATTEMPTS: usize = 4;

/// The table of an event type of an integration.
pub fn table_name(event_type: &str, integration_id: &str) -> String {
    let mut name: String = event_type
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.push('_');
    name.extend(
        integration_id
            .chars()
            .take(8)
            .map(|c| c.to_ascii_lowercase()),
    );
    name
}

/// The Hive type of an Avro schema (JSON form), as the Avro SerDe maps it.
pub fn hive_type(schema: &Value) -> String {
    match schema {
        Value::String(t) => primitive(t).to_string(),
        Value::Array(branches) => {
            // A union: ["null", T] is T; anything else has no Hive type but a string.
            let non_null: Vec<&Value> = branches.iter().filter(|b| *b != "null").collect();
            match non_null.as_slice() {
                [one] => hive_type(one),
                _ => "string".to_string(),
            }
        }
        Value::Object(o) => {
            if let Some(logical) = o.get("logicalType").and_then(Value::as_str) {
                match logical {
                    "timestamp-millis" | "timestamp-micros" => return "timestamp".into(),
                    "date" => return "date".into(),
                    _ => {}
                }
            }
            match o.get("type") {
                Some(Value::String(t)) if t == "array" => {
                    format!(
                        "array<{}>",
                        hive_type(o.get("items").unwrap_or(&Value::Null))
                    )
                }
                Some(Value::String(t)) if t == "map" => {
                    format!(
                        "map<string,{}>",
                        hive_type(o.get("values").unwrap_or(&Value::Null))
                    )
                }
                Some(Value::String(t)) if t == "record" => {
                    let fields: Vec<String> = o
                        .get("fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|f| {
                            format!(
                                "{}:{}",
                                f["name"].as_str().unwrap_or_default(),
                                hive_type(&f["type"])
                            )
                        })
                        .collect();
                    format!("struct<{}>", fields.join(","))
                }
                Some(Value::String(t)) if t == "enum" => "string".into(),
                Some(Value::String(t)) if t == "fixed" => "binary".into(),
                Some(inner) => hive_type(inner),
                None => "string".into(),
            }
        }
        _ => "string".into(),
    }
}

fn primitive(t: &str) -> &'static str {
    match t {
        "boolean" => "boolean",
        "int" => "int",
        "long" => "bigint",
        "float" => "float",
        "double" => "double",
        "bytes" => "binary",
        _ => "string",
    }
}

/// The columns of a record schema (JSON form).
fn columns(schema: &Value) -> Vec<Column> {
    schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Column::builder()
                .name(f["name"].as_str()?.to_ascii_lowercase())
                .r#type(hive_type(&f["type"]))
                .build()
                .ok()
        })
        .collect()
}

/// The writer schema from the Avro header at the start of the object. `Ok(None)` when there is
/// none to read (the object is gone, or is no Avro file with a record schema): its manifest
/// says what is wrong, and retrying would not change it. `Err` for a read that may succeed
/// later.
async fn writer_schema(
    env: &Env,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
) -> Result<Option<Value>, String> {
    // Pinned to the version indexed: a newer one is cataloged by its own notification.
    let pinned = etag.map(|e| format!("\"{}\"", e.trim_matches('"')));
    let out = match env
        .s3
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=0-{}", HEADER_BYTES - 1))
        .set_if_match(pinned)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
            return Ok(None);
        }
        Err(e) => {
            return Err(format!(
                "reading the Avro header of {key:?}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ));
        }
    };
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| format!("reading the Avro header of {key:?}: {e}"))?
        .into_bytes();
    Ok(schema_from_header(&bytes)
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .filter(|schema| schema["type"] == "record" && schema["fields"].is_array()))
}

/// `avro.schema` from an Avro object container header.
pub fn schema_from_header(b: &[u8]) -> Option<String> {
    fn long(b: &[u8], at: &mut usize) -> Option<i64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    }
    fn bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
        let n = usize::try_from(long(b, at)?).ok()?;
        let s = b.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    }
    if b.get(..4)? != b"Obj\x01" {
        return None;
    }
    let mut at = 4;
    loop {
        let mut count = long(b, &mut at)?;
        if count == 0 {
            return None;
        }
        if count < 0 {
            count = -count;
            long(b, &mut at)?; // the block's size in bytes
        }
        for _ in 0..count {
            let k = bytes(b, &mut at)?;
            let v = bytes(b, &mut at)?;
            if k == b"avro.schema" {
                return String::from_utf8(v.to_vec()).ok();
            }
        }
    }
}

/// An SDK error in a line: the service's code and message, or what went wrong on the way.
fn glue_error<E, R>(e: aws_sdk_glue::error::SdkError<E, R>) -> String
where
    E: aws_sdk_glue::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("(no message)")
        ),
        None => aws_sdk_glue::error::DisplayErrorContext(&e).to_string(),
    }
}

fn not_found(
    e: &aws_sdk_glue::error::SdkError<aws_sdk_glue::operation::get_table::GetTableError>,
) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_entity_not_found_exception())
}

/// The Glue step for one Currents file (see the module documentation).
pub async fn catalog(env: &Env, bucket: &str, key: &str, etag: Option<&str>) -> Result<(), String> {
    let (Some(glue), Some(database)) = (env.glue.as_ref(), env.cfg.glue_database.as_deref()) else {
        return Ok(());
    };
    let Some(p) = Partition::of_key(bucket, key) else {
        return Ok(());
    };
    let (Some(event_type), Some(date_hour)) =
        (p.braze.event_type.as_deref(), p.braze.date_hour.as_deref())
    else {
        return Ok(());
    };
    let integration = p.braze.integration_id.as_deref().unwrap_or("unknown");
    let table = table_name(event_type, integration);
    // The event type's prefix: the partition prefix without its `date=…/`.
    let location = format!(
        "s3://{bucket}/{}",
        p.prefix
            .strip_suffix(&format!("date={date_hour}/"))
            .unwrap_or(&p.prefix)
    );
    let Some(schema) = writer_schema(env, bucket, key, etag).await? else {
        warn!(key = %crate::sanitize_for_log(key), "no Avro record schema to catalog: the file is left out of Glue");
        return Ok(());
    };
    let mut settled = None;
    for _ in 0..ATTEMPTS {
        let current = match glue
            .get_table()
            .database_name(database)
            .name(&table)
            .send()
            .await
        {
            Ok(out) => out.table,
            Err(e) if not_found(&e) => None,
            Err(e) => {
                return Err(format!(
                    "Glue GetTable {database}.{table}: {}",
                    glue_error(e)
                ));
            }
        };
        let input = match &current {
            None => table_input(&table, &location, &schema),
            Some(t) if t.storage_descriptor().and_then(|sd| sd.location()) != Some(&location) => {
                // Two integrations whose ids share their first 8 characters name the same table:
                // the one cataloged first keeps it, the other is left out (never mixed in).
                warn!(
                    table = %table,
                    location = %location,
                    "the Glue table belongs to another folder (an integration id with the same first 8 characters?): this file is left out of Glue"
                );
                return Ok(());
            }
            Some(t) => {
                let literal: Option<Value> = t
                    .parameters()
                    .and_then(|p| p.get("avro.schema.literal"))
                    .and_then(|l| serde_json::from_str(l).ok());
                let Some(merged) = literal.as_ref().and_then(|l| merge(l, &schema)) else {
                    settled = Some(t.clone()); // the table holds every field of this writer schema
                    break;
                };
                table_input(&table, &location, &merged)
            }
        };
        let written = if current.is_none() {
            match glue
                .create_table()
                .database_name(database)
                .table_input(input)
                .send()
                .await
            {
                Ok(_) => {
                    info!(database, table = %table, "Glue table created");
                    Ok(())
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(format!(
                    "Glue CreateTable {database}.{table}: {}",
                    glue_error(e)
                )),
            }
        } else {
            // Against the version read: a concurrent update makes this one fail, and the next
            // round merges into what that one wrote.
            let version = current
                .as_ref()
                .and_then(|t| t.version_id())
                .map(String::from);
            match glue
                .update_table()
                .database_name(database)
                .table_input(input)
                .set_version_id(version)
                .send()
                .await
            {
                Ok(_) => {
                    info!(database, table = %table, "Glue table given the writer schema's new fields");
                    Ok(())
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_concurrent_modification_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(format!(
                    "Glue UpdateTable {database}.{table}: {}",
                    glue_error(e)
                )),
            }
        };
        written?;
        // Read again: done when the table holds every field of this writer schema.
    }
    let Some(table_now) = settled else {
        return Err(format!(
            "the Glue table {database}.{table} kept changing: retried"
        ));
    };
    add_partition(glue, database, &table_now, date_hour).await
}

/// The record schema `literal` with the fields of `writer` it lacks appended (as nullable with a
/// `null` default), or `None` when it lacks none.
pub fn merge(literal: &Value, writer: &Value) -> Option<Value> {
    let known: Vec<String> = literal["fields"]
        .as_array()?
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_ascii_lowercase))
        .collect();
    let new: Vec<Value> = writer["fields"]
        .as_array()?
        .iter()
        .filter(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| !known.contains(&n.to_ascii_lowercase()))
        })
        .map(|f| {
            let mut f = f.clone();
            // Nullable with a `null` default: files written before the field have none. A
            // union gets `null` as its first branch (unions do not nest).
            f["type"] = match f["type"].take() {
                Value::Array(branches) => {
                    let mut rest: Vec<Value> =
                        branches.into_iter().filter(|b| *b != "null").collect();
                    rest.insert(0, json!("null"));
                    Value::Array(rest)
                }
                other => json!(["null", other]),
            };
            f["default"] = Value::Null;
            f
        })
        .collect();
    if new.is_empty() {
        return None;
    }
    let mut merged = literal.clone();
    merged["fields"].as_array_mut()?.extend(new);
    Some(merged)
}

fn table_input(name: &str, location: &str, schema: &Value) -> TableInput {
    let sd = StorageDescriptor::builder()
        .set_columns(Some(columns(schema)))
        .location(location)
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(SERDE)
                .parameters("avro.schema.literal", schema.to_string())
                .build(),
        )
        .build();
    TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .parameters("classification", "avro")
        .parameters("avro.schema.literal", schema.to_string())
        .parameters("EXTERNAL", "TRUE")
        .storage_descriptor(sd)
        .partition_keys(
            Column::builder()
                .name("date")
                .r#type("string")
                .build()
                .expect("name given"),
        )
        .build()
        .expect("name given")
}

/// Adds the hour's partition, described as the table is now (its columns and SerDe, so that a
/// reader that takes a partition's own schema sees the table's).
async fn add_partition(
    glue: &aws_sdk_glue::Client,
    database: &str,
    table_now: &aws_sdk_glue::types::Table,
    date_hour: &str,
) -> Result<(), String> {
    let table = table_now.name();
    let table_sd = table_now.storage_descriptor();
    let location = table_sd.and_then(|sd| sd.location()).unwrap_or_default();
    let sd = StorageDescriptor::builder()
        .set_columns(table_sd.map(|sd| sd.columns().to_vec()))
        .location(format!("{location}date={date_hour}/"))
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .set_serde_info(table_sd.and_then(|sd| sd.serde_info()).cloned())
        .build();
    let out = glue
        .batch_create_partition()
        .database_name(database)
        .table_name(table)
        .partition_input_list(
            PartitionInput::builder()
                .values(date_hour)
                .storage_descriptor(sd)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            format!(
                "Glue BatchCreatePartition {database}.{table} date={date_hour}: {}",
                glue_error(e)
            )
        })?;
    for e in out.errors() {
        let code = e.error_detail().and_then(|d| d.error_code()).unwrap_or("");
        if code != "AlreadyExistsException" {
            return Err(format!(
                "Glue BatchCreatePartition {database}.{table} date={date_hour}: {code}: {}",
                e.error_detail()
                    .and_then(|d| d.error_message())
                    .unwrap_or("")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_event_type_and_integration() {
        assert_eq!(
            table_name("users.messages.email.Send", "69cad1b2aa7e5f0c"),
            "users_messages_email_send_69cad1b2"
        );
        assert_eq!(
            table_name("users.behaviors.CustomEvent", "ab"),
            "users_behaviors_customevent_ab"
        );
    }

    #[test]
    fn avro_types_map_to_hive_types() {
        let cases = [
            (json!("string"), "string"),
            (json!("long"), "bigint"),
            (json!(["null", "int"]), "int"),
            (
                json!(["null", {"type": "array", "items": "string"}]),
                "array<string>",
            ),
            (
                json!({"type": "map", "values": "double"}),
                "map<string,double>",
            ),
            (
                json!({"type": "record", "name": "r", "fields": [{"name": "a", "type": "boolean"}]}),
                "struct<a:boolean>",
            ),
            (
                json!({"type": "long", "logicalType": "timestamp-millis"}),
                "timestamp",
            ),
            (json!(["null", "int", "string"]), "string"),
            (
                json!({"type": "enum", "name": "e", "symbols": ["A"]}),
                "string",
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(hive_type(&schema), want, "{schema}");
        }
    }

    #[test]
    fn merging_appends_new_fields_as_nullable_and_never_drops() {
        let old = json!({"type": "record", "name": "r", "fields": [
            {"name": "id", "type": "string"}, {"name": "gone", "type": "int"}]});
        let new = json!({"type": "record", "name": "r", "fields": [
            {"name": "id", "type": "string"}, {"name": "extra", "type": "long"}]});
        let merged = merge(&old, &new).unwrap();
        let names: Vec<&str> = merged["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "gone", "extra"]);
        assert_eq!(merged["fields"][2]["type"], json!(["null", "long"]));
        let union_last = json!({"type": "record", "name": "r", "fields": [
            {"name": "u", "type": ["string", "null"], "default": "x"}]});
        let merged = merge(&old, &union_last).unwrap();
        assert_eq!(
            merged["fields"][2]["type"],
            json!(["null", "string"]),
            "no nested union"
        );
        assert!(merge(&merged, &old).is_none(), "nothing new");
    }

    #[test]
    fn the_schema_is_read_from_the_header() {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type": "record", "name": "r", "fields": [{"name": "id", "type": "string"}]}"#,
        )
        .unwrap();
        let mut w = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
        let mut r = apache_avro::types::Record::new(&schema).unwrap();
        r.put("id", "x");
        w.append_value(r).unwrap();
        let bytes = w.into_inner().unwrap();
        let text = schema_from_header(&bytes).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["fields"][0]["name"], "id");
        assert!(schema_from_header(b"Obj\x01\x02").is_none());
        assert!(schema_from_header(b"PK\x03\x04").is_none());
    }
}
