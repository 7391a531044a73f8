//! Every file in `events/` parsed with its exact expected outcome, then edge cases built by
//! changing one field of those files.

use super::*;
use serde_json::json;

const BUCKET: &str = "braze-exports";
const API_KEY: &str = "segment-export/legacy segment 42/2025-04-01/d9696570-dfb7-45ae-baa2-25e302r2da27-1743526800/114f0226319130e1a4770f2602b5639a.zip";
const EMAIL_KEY: &str = "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro";
const PUSH_KEY: &str = "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.pushnotification.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+1+98231.avro";
const EB_KEY: &str = "currents export/dataexport.prod-03.S3.integration.5f2a7c9e1b3d4a6c8e0f1a2b/event_type=users.behaviors.CustomEvent/date=2025-04-01-17/version=6/us-03/dataexport.prod-03.S3.integration.5f2a7c9e1b3d4a6c8e0f1a2b+2+0000035465.avro";
const CSV_KEY: &str =
    "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2025-04-01/users-8Hq2ZkT4wP.zip";

fn load(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An object event with only the required fields; tests fill in the rest.
fn object(envelope: Envelope, event_name: &str, key: &str) -> ObjectEvent {
    ObjectEvent {
        bucket: BUCKET.to_string(),
        key: key.to_string(),
        size: None,
        etag: None,
        version_id: None,
        sequencer: None,
        event_time: None,
        event_name: event_name.to_string(),
        envelope,
    }
}

/// Fills in size, ETag, sequencer and time, which every object event of `events/` has.
fn with(
    event: ObjectEvent,
    size: u64,
    etag: &str,
    sequencer: &str,
    event_time: &str,
) -> ObjectEvent {
    ObjectEvent {
        size: Some(size),
        etag: Some(etag.to_string()),
        sequencer: Some(sequencer.to_string()),
        event_time: Some(event_time.to_string()),
        ..event
    }
}

fn email_avro(envelope: Envelope) -> Item {
    Item::Object(with(
        object(envelope, "ObjectCreated:Put", EMAIL_KEY),
        1_833_061,
        "b1946ac92492d2347c6235b4d2611184",
        "0067EC1E18A0C5D7B3",
        "2025-04-01T17:05:13.002Z",
    ))
}

fn push_avro() -> Item {
    Item::Object(with(
        object(Envelope::Sqs, "ObjectCreated:Put", PUSH_KEY),
        734_002,
        "4a8a08f09d37b73795649038408b5f33",
        "0067EC1E2C77D1A002",
        "2025-04-01T17:06:03.118Z",
    ))
}

fn skipped(event_name: &str, key: &str) -> Item {
    Item::Skipped {
        event_name: event_name.to_string(),
        bucket: Some(BUCKET.to_string()),
        key: Some(key.to_string()),
    }
}

/// What a message must hold: its items, or an error whose message contains the text.
type Want = (Option<&'static str>, Result<Vec<Item>, &'static str>);

/// The expected outcome of every file in `events/`: (file, is_sqs, messages).
fn expectations() -> Vec<(&'static str, bool, Vec<Want>)> {
    vec![
        (
            "s3-put.json",
            false,
            vec![(
                None,
                Ok(vec![
                    Item::Object(with(
                        object(Envelope::S3, "ObjectCreated:Put", API_KEY),
                        48_211,
                        "6f1ed002ab5595859014ebf0951522d9",
                        "0067EC1E1851E3F2A1",
                        "2025-04-01T17:05:12.345Z",
                    )),
                    email_avro(Envelope::S3),
                ]),
            )],
        ),
        (
            "s3-multipart.json",
            false,
            vec![(
                None,
                Ok(vec![Item::Object(ObjectEvent {
                    version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".to_string()),
                    ..with(
                        object(
                            Envelope::S3,
                            "ObjectCreated:CompleteMultipartUpload",
                            "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2025-04-01/d9696570-dfb7-45ae-baa2-25e302r2da27-1743526800/9e107d9d372bb6826bd81d3542a419d6.zip",
                        ),
                        201_326_592,
                        "3858f62230ac3c915f300c664312c63f-12",
                        "0067EC1F0C2B9A4D11",
                        "2025-04-01T17:09:44.871Z",
                    )
                })]),
            )],
        ),
        (
            "s3-test-event.json",
            false,
            vec![(None, Ok(vec![Item::Test]))],
        ),
        (
            "s3-delete.json",
            false,
            vec![(None, Ok(vec![skipped("ObjectRemoved:Delete", API_KEY)]))],
        ),
        (
            "sqs-s3.json",
            true,
            vec![
                (
                    Some("3f1c9a52-7e4b-4d0a-9b8e-1c2d3e4f5a6b"),
                    Ok(vec![
                        Item::Object(with(
                            object(
                                Envelope::Sqs,
                                "ObjectCreated:Put",
                                "engagement-reports/2025-04-01/Campagne été 2025 – relance.zip",
                            ),
                            5120,
                            "0cc175b9c0f1b6a831c399e269772661",
                            "0067EC1E2B11C0FFEE",
                            "2025-04-01T17:06:01.500Z",
                        )),
                        Item::Object(with(
                            object(
                                Envelope::Sqs,
                                "ObjectCreated:Put",
                                "sent_messages/email/0cc175b9c0f1b6a831c399e269772661/6f0ba1c4-1a5b-4c2e-9d1e-2f7a3b8c9d01/c7c2a1b9e0f34d5a8b6e4f2d1c0b9a87.json.gz",
                            ),
                            2291,
                            "92eb5ffee6ae2fec3ad71c777531578f",
                            "0067EC1E2B11C0FFF0",
                            "2025-04-01T17:06:01.733Z",
                        )),
                    ]),
                ),
                (
                    Some("8d7e6f5a-4b3c-4d2e-8f1a-0b9c8d7e6f5a"),
                    Ok(vec![push_avro()]),
                ),
            ],
        ),
        (
            "sqs-sns-s3.json",
            true,
            vec![(
                Some("c4b6e2a0-9d1f-4e3b-a7c5-2f8e0d6b4a19"),
                Ok(vec![email_avro(Envelope::SqsSns)]),
            )],
        ),
        (
            "sns-s3.json",
            false,
            vec![(
                None,
                Ok(vec![Item::Object(with(
                    object(
                        Envelope::Sns,
                        "ObjectCreated:CompleteMultipartUpload",
                        API_KEY,
                    ),
                    98_566_144,
                    "e2fc714c4727ee9395f324cd2e7f331f-6",
                    "0067EC1E1851E3F2A1",
                    "2025-04-01T17:05:12.345Z",
                ))]),
            )],
        ),
        (
            "eventbridge-object-created.json",
            false,
            vec![(
                None,
                Ok(vec![Item::Object(ObjectEvent {
                    version_id: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".to_string()),
                    ..with(
                        object(Envelope::EventBridge, "ObjectCreated:Put", EB_KEY),
                        412_876,
                        "d41d8cd98f00b204e9800998ecf8427e",
                        "0067EC1F3A6B5C4D33",
                        "2025-04-01T17:10:00Z",
                    )
                })]),
            )],
        ),
        (
            "eventbridge-object-deleted.json",
            false,
            vec![(None, Ok(vec![skipped("Object Deleted", EB_KEY)]))],
        ),
        (
            "sqs-eventbridge.json",
            true,
            vec![
                (
                    Some("e1d2c3b4-a5f6-4e7d-8c9b-0a1f2e3d4c5b"),
                    Ok(vec![Item::Object(with(
                        object(
                            Envelope::SqsEventBridge,
                            "ObjectCreated:CompleteMultipartUpload",
                            CSV_KEY,
                        ),
                        73_400_320,
                        "a7f5d3c9e1b2a4c6d8e0f1a2b3c4d5e6-9",
                        "0067EC1FB2C4D6E8F0",
                        "2025-04-01T17:12:31Z",
                    ))]),
                ),
                (
                    Some("f2e3d4c5-b6a7-4f8e-9d0c-1b2a3f4e5d6c"),
                    Ok(vec![skipped("Object Tags Added", CSV_KEY)]),
                ),
            ],
        ),
        (
            "sqs-mixed-with-poison.json",
            true,
            vec![
                (
                    Some("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
                    Ok(vec![push_avro()]),
                ),
                (
                    Some("1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"),
                    Err("SQS message body is not JSON (expected value at line 1 column 1)"),
                ),
                (
                    Some("2c3d4e5f-6a7b-4c8d-0e9f-1a2b3c4d5e6f"),
                    Ok(vec![Item::Test]),
                ),
            ],
        ),
        (
            "sqs-s3-test-event.json",
            true,
            vec![(
                Some("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"),
                Ok(vec![Item::Test]),
            )],
        ),
    ]
}

fn assert_parsed(label: &str, parsed: &Parsed, is_sqs: bool, want: &[Want]) {
    assert_eq!(parsed.is_sqs, is_sqs, "{label}: is_sqs");
    assert_eq!(parsed.messages.len(), want.len(), "{label}: {parsed:#?}");
    for (i, (message, (want_id, want_items))) in parsed.messages.iter().zip(want).enumerate() {
        assert_eq!(
            message.message_id.as_deref(),
            *want_id,
            "{label}: message {i} id"
        );
        match (&message.items, want_items) {
            (Ok(items), Ok(want)) => assert_eq!(items, want, "{label}: message {i} items"),
            (Err(err), Err(want)) => {
                let msg = err.to_string();
                assert!(
                    msg.contains(want),
                    "{label}: message {i}: {msg:?} lacks {want:?}"
                );
            }
            (got, want) => panic!("{label}: message {i}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn every_event_file_parses_as_expected() {
    for (name, is_sqs, want) in expectations() {
        let parsed = parse(&load(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_parsed(name, &parsed, is_sqs, &want);
    }
}

#[test]
fn every_event_file_has_expectations() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        // Batch Operations invocations are not notifications: `batch::tests` reads them.
        .filter(|name| !name.starts_with("batch-operations-"))
        // Function URL requests and the schedule's event are not notifications either:
        // `trigger::http::tests` reads them.
        .filter(|name| !name.starts_with("function-url-") && name != "schedule.json")
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = expectations()
        .into_iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "events/ and the expectation table differ"
    );
}

/// The first item of the first message, which must be an object.
fn first_object(parsed: &Parsed) -> &ObjectEvent {
    match parsed.messages[0].items.as_ref().unwrap().first() {
        Some(Item::Object(object)) => object,
        other => panic!("not an object: {other:?}"),
    }
}

#[test]
fn unrecognised_events_are_errors() {
    let mixed = json!({"Records": [
        load("sqs-s3.json")["Records"][0].clone(),
        load("s3-put.json")["Records"][0].clone(),
    ]});
    let mut without_id = load("sqs-s3.json");
    without_id["Records"][1]
        .as_object_mut()
        .unwrap()
        .remove("messageId");
    let mut ec2 = load("eventbridge-object-created.json");
    ec2["source"] = json!("aws.ec2");
    let cases = [
        (json!({}), "neither `Records`"),
        (json!([]), "neither `Records`"),
        (json!("Records"), "neither `Records`"),
        (json!(null), "neither `Records`"),
        (json!({"Records": 5}), "`Records` is not an array"),
        (
            json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]}),
            "unknown source",
        ),
        (json!({"Records": [{"foo": 1}]}), "unknown source"),
        (mixed, "mixed sources"),
        (without_id, "without `messageId`"),
        (ec2, "not from aws.s3"),
    ];
    for (event, want) in cases {
        match parse(&event) {
            Ok(parsed) => panic!("parse({event}) = {parsed:?}, want an error"),
            Err(err) => {
                assert!(matches!(err, TriggerError::Unrecognised { .. }), "{err:?}");
                let msg = err.to_string();
                assert!(msg.contains(want), "parse({event}): {msg:?} lacks {want:?}");
            }
        }
    }
}

#[test]
fn error_messages_quote_at_most_200_characters() {
    let huge = "x".repeat(100_000);
    let err = parse(&json!({ "payload": huge })).unwrap_err();
    let msg = err.to_string();
    assert!(msg.len() < 400, "{} bytes", msg.len());
    assert!(msg.ends_with('…'), "{msg}");

    let mut event = load("sqs-s3.json");
    event["Records"][0]["body"] = json!(format!("<html>\n{huge}"));
    let parsed = parse(&event).unwrap();
    let msg = parsed.messages[0].items.as_ref().unwrap_err().to_string();
    assert!(msg.len() < 400, "{} bytes", msg.len());
    assert!(
        msg.contains("\"<html>\\nxxx"),
        "control characters escaped: {msg}"
    );
}

#[test]
fn empty_records_give_no_messages() {
    let parsed = parse(&json!({"Records": []})).unwrap();
    assert!(!parsed.is_sqs);
    assert!(parsed.messages.is_empty());
}

/// `sqs-s3.json` with the body of its first message replaced.
fn sqs_with_first_body(body: Value) -> Parsed {
    let mut event = load("sqs-s3.json");
    event["Records"][0]["body"] = json!(body.to_string());
    let parsed = parse(&event).unwrap();
    assert!(parsed.is_sqs);
    assert_eq!(parsed.messages.len(), 2);
    assert_eq!(
        parsed.messages[1].items.as_ref().unwrap(),
        &vec![push_avro()],
        "the other message is unaffected"
    );
    parsed
}

#[test]
fn a_bad_record_fails_only_its_sqs_message() {
    let good =
        serde_json::from_str::<Value>(load("sqs-s3.json")["Records"][0]["body"].as_str().unwrap())
            .unwrap();
    let mut no_key = good.clone();
    no_key["Records"][1]["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    let mut empty_bucket = good.clone();
    empty_bucket["Records"][0]["s3"]["bucket"]["name"] = json!("");
    let mut bad_key = good.clone();
    bad_key["Records"][0]["s3"]["object"]["key"] = json!("reports/100%.csv");
    let mut no_event_name = good.clone();
    no_event_name["Records"][0]
        .as_object_mut()
        .unwrap()
        .remove("eventName");
    let mut sns_not_json: Value = serde_json::from_str(
        load("sqs-sns-s3.json")["Records"][0]["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    sns_not_json["Message"] = json!("Amazon S3 Notification");
    let cases = [
        (
            no_key,
            "S3 notification record 1 (ObjectCreated:Put) lacks `s3.object.key`",
        ),
        (
            empty_bucket,
            "S3 notification record 0 (ObjectCreated:Put) lacks `s3.bucket.name`",
        ),
        (
            bad_key,
            "invalid URL-encoded S3 key \"reports/100%.csv\" in bucket \"braze-exports\": `%` at byte 11",
        ),
        (no_event_name, "S3 notification record 0 lacks `eventName`"),
        (sns_not_json, "SNS message is not JSON"),
        (
            json!({"hello": "world"}),
            "SQS message body holds no S3 notification, SNS notification or EventBridge event: {\"hello\":\"world\"}",
        ),
        (
            json!({"Records": [{"eventSource": "aws:sqs"}]}),
            "SQS message body holds no S3 notification",
        ),
        (
            json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "{\"detail-type\":\"Object Created\"}"}),
            "SNS message holds no S3 notification",
        ),
    ];
    for (body, want) in cases {
        let parsed = sqs_with_first_body(body.clone());
        let message = &parsed.messages[0];
        assert_eq!(
            message.message_id.as_deref(),
            Some("3f1c9a52-7e4b-4d0a-9b8e-1c2d3e4f5a6b")
        );
        match &message.items {
            Ok(items) => panic!("body {body}: got {items:?}, want an error"),
            Err(err) => {
                assert!(!err.is_transient());
                let msg = err.to_string();
                assert!(msg.contains(want), "body {body}: {msg:?} lacks {want:?}");
            }
        }
    }
}

#[test]
fn sqs_record_without_body_fails_only_that_message() {
    let mut event = load("sqs-s3.json");
    event["Records"][0].as_object_mut().unwrap().remove("body");
    let parsed = parse(&event).unwrap();
    let err = parsed.messages[0].items.as_ref().unwrap_err();
    assert_eq!(err.to_string(), "SQS message lacks `body`");
    assert!(parsed.messages[1].items.is_ok());
}

#[test]
fn a_bad_record_fails_a_direct_invocation() {
    let mut event = load("s3-put.json");
    event["Records"][1]["s3"]["object"]["key"] = json!("%FF.avro");
    let parsed = parse(&event).unwrap();
    assert!(!parsed.is_sqs);
    let err = parsed.messages[0].items.as_ref().unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

#[test]
fn minimal_s3_record_needs_only_event_name_bucket_and_key() {
    // As moto or a hand-written event may send it: no eventSource, userIdentity, size, ….
    let event = json!({"Records": [{
        "eventName": "ObjectCreated:Copy",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": "a+b%3Dc"}}
    }]});
    let parsed = parse(&event).unwrap();
    assert_eq!(
        first_object(&parsed),
        &object(Envelope::S3, "ObjectCreated:Copy", "a b=c")
    );
}

#[test]
fn object_fields_are_read_leniently() {
    let cases = [
        (json!({"eTag": "\"abc\""}), None, Some("abc")),
        (json!({"eTag": "abc"}), None, Some("abc")),
        (json!({"eTag": "\"\""}), None, None),
        (json!({"eTag": ""}), None, None),
        (json!({"eTag": null, "size": null}), None, None),
        (json!({"size": 0}), Some(0), None),
        (json!({"size": "1024"}), Some(1024), None),
        (json!({"size": -1}), None, None),
        (json!({"size": 1.5}), None, None),
        (json!({"size": u64::MAX}), Some(u64::MAX), None),
    ];
    for (fields, size, etag) in cases {
        let mut object = json!({"key": "k"});
        for (name, value) in fields.as_object().unwrap() {
            object[name] = value.clone();
        }
        let event = json!({"Records": [{
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET}, "object": object}
        }]});
        let parsed = parse(&event).unwrap();
        let got = first_object(&parsed);
        assert_eq!(got.size, size, "size from {fields}");
        assert_eq!(got.etag.as_deref(), etag, "etag from {fields}");
    }
}

#[test]
fn only_object_created_records_are_objects() {
    let cases = [
        ("ObjectCreated:Put", true),
        ("ObjectCreated:Post", true),
        ("ObjectCreated:Copy", true),
        ("ObjectCreated:CompleteMultipartUpload", true),
        ("ObjectRemoved:Delete", false),
        ("ObjectRemoved:DeleteMarkerCreated", false),
        ("ObjectRestore:Completed", false),
        ("LifecycleExpiration:Delete", false),
        ("ObjectTagging:Put", false),
        ("s3:ObjectCreated:Put", false),
        ("ObjectCreated", false),
    ];
    for (event_name, is_object) in cases {
        let mut event = load("s3-put.json");
        event["Records"][0]["eventName"] = json!(event_name);
        let parsed = parse(&event).unwrap();
        let items = parsed.messages[0].items.as_ref().unwrap();
        let want = if is_object {
            Item::Object(ObjectEvent {
                event_name: event_name.to_string(),
                ..with(
                    object(Envelope::S3, event_name, API_KEY),
                    48_211,
                    "6f1ed002ab5595859014ebf0951522d9",
                    "0067EC1E1851E3F2A1",
                    "2025-04-01T17:05:12.345Z",
                )
            })
        } else {
            skipped(event_name, API_KEY)
        };
        assert_eq!(items[0], want, "eventName {event_name}");
        assert_eq!(items[1], email_avro(Envelope::S3), "eventName {event_name}");
    }
}

#[test]
fn skipped_records_keep_an_undecodable_key_as_given() {
    let mut event = load("s3-delete.json");
    event["Records"][0]["s3"]["object"]["key"] = json!("100%");
    let parsed = parse(&event).unwrap();
    assert_eq!(
        parsed.messages[0].items.as_ref().unwrap(),
        &vec![skipped("ObjectRemoved:Delete", "100%")]
    );
}

#[test]
fn eventbridge_reason_maps_to_s3_event_name() {
    let cases = [
        (Some("PutObject"), "ObjectCreated:Put"),
        (Some("POST Object"), "ObjectCreated:Post"),
        (Some("CopyObject"), "ObjectCreated:Copy"),
        (
            Some("CompleteMultipartUpload"),
            "ObjectCreated:CompleteMultipartUpload",
        ),
        (Some("SomethingNew"), "ObjectCreated:SomethingNew"),
        (Some(""), "ObjectCreated:*"),
        (None, "ObjectCreated:*"),
    ];
    for (reason, want) in cases {
        let mut event = load("eventbridge-object-created.json");
        let detail = event["detail"].as_object_mut().unwrap();
        match reason {
            Some(reason) => detail.insert("reason".to_string(), json!(reason)),
            None => detail.remove("reason"),
        };
        let parsed = parse(&event).unwrap();
        assert_eq!(first_object(&parsed).event_name, want, "reason {reason:?}");
    }
}

#[test]
fn eventbridge_keys_are_not_decoded() {
    let mut event = load("eventbridge-object-created.json");
    event["detail"]["object"]["key"] = json!("a+b%2B%ZZ.avro");
    let parsed = parse(&event).unwrap();
    assert_eq!(first_object(&parsed).key, "a+b%2B%ZZ.avro");
}

#[test]
fn eventbridge_object_created_without_key_fails() {
    let mut event = load("eventbridge-object-created.json");
    event["detail"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    let parsed = parse(&event).unwrap();
    let err = parsed.messages[0].items.as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        "EventBridge \"Object Created\" event lacks `detail.object.key`"
    );
}

#[test]
fn sns_subscription_confirmation_in_sqs_is_skipped() {
    let parsed = sqs_with_first_body(json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:braze-exports-created",
        "Message": "You have chosen to subscribe to the topic …",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "Timestamp": "2025-04-01T16:59:00.000Z"
    }));
    assert_eq!(
        parsed.messages[0].items.as_ref().unwrap(),
        &vec![Item::Skipped {
            event_name: "sns:SubscriptionConfirmation".to_string(),
            bucket: None,
            key: None,
        }]
    );
}

#[test]
fn s3_test_event_is_recognised_in_every_envelope() {
    let test_event = load("s3-test-event.json");
    let mut via_sns = load("sqs-sns-s3.json");
    let mut sns: Value =
        serde_json::from_str(via_sns["Records"][0]["body"].as_str().unwrap()).unwrap();
    sns["Message"] = json!(test_event.to_string());
    via_sns["Records"][0]["body"] = json!(sns.to_string());
    let mut direct_sns = load("sns-s3.json");
    direct_sns["Records"][0]["Sns"]["Message"] = json!(test_event.to_string());
    for event in [test_event.clone(), via_sns, direct_sns] {
        let parsed = parse(&event).unwrap();
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(
            parsed.messages[0].items.as_ref().unwrap(),
            &vec![Item::Test],
            "{event}"
        );
    }
}

#[test]
fn sns_raw_delivery_into_sqs_reads_as_sqs() {
    // With raw message delivery on, the body is the S3 notification itself.
    let sns_body: Value = serde_json::from_str(
        load("sqs-sns-s3.json")["Records"][0]["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let raw: Value = serde_json::from_str(sns_body["Message"].as_str().unwrap()).unwrap();
    let parsed = sqs_with_first_body(raw);
    assert_eq!(
        parsed.messages[0].items.as_ref().unwrap(),
        &vec![email_avro(Envelope::Sqs)]
    );
}
