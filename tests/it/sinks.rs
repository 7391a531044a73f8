//! Forwarding manifests: SNS, SQS, EventBridge (moto_server on loopback, read back through
//! queues) and a signed webhook (a receiver on loopback that verifies the signature).

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::aws::{ACCOUNT, Moto, REGION, drain, read_request_head};
use crate::fixtures;
use crate::lambda_s3::{BUCKET, invoke, manifest, moto_with_bucket, put, s3_event};

const SECRET: &str = "whsec-test-3f9a";

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback answering with `statuses` in turn (the last one repeats).
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(statuses: Vec<u16>) -> Receiver {
        Receiver::start_with(statuses.into_iter().map(|s| (s, String::new())).collect())
    }

    /// Like [`Receiver::start`], each response with extra header lines (`"Name: value\r\n"`).
    pub fn start_with(responses: Vec<(u16, String)>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/braze", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let got2 = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let got = got2.clone();
                let responses = responses.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    while let Some(request) = read_request_head(&mut reader) {
                        let headers = request.headers();
                        let body = request.read_body(&mut reader);
                        let n = {
                            let mut g = got.lock().unwrap();
                            g.push(Received { headers, body });
                            g.len()
                        };
                        let (status, extra) = &responses[(n - 1).min(responses.len() - 1)];
                        let resp =
                            format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\n\r\n");
                        if conn.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { url, got }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// The receiver's side of the documented scheme:
/// `t=<t>,v2=<hex HMAC-SHA256(secret, "<t>.<Idempotency-Key>.<body>")>`, with the timestamp
/// within five minutes.
pub fn verify_signature(secret: &str, header: &str, idempotency_key: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v2 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v2", v)) => v2 = Some(v.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v2)) = (t, v2) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t.parse::<u64>().unwrap_or(0)) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{idempotency_key}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v2
}

/// [`verify_signature`] on a received request, with the request's own `Idempotency-Key`.
pub fn request_verifies(secret: &str, r: &Received) -> bool {
    match (
        r.header("X-Export-Fetcher-Signature"),
        r.header("Idempotency-Key"),
    ) {
        (Some(sig), Some(key)) => verify_signature(secret, sig, key, &r.body),
        _ => false,
    }
}

/// SNS topic → SQS `sns-out`, SQS `manifests`, EventBridge bus → rule → SQS `eb-out`.
pub struct Downstream {
    pub topic: String,
    pub sns_out: String,
    pub manifests: String,
    pub eb_out: String,
}

pub async fn downstream(moto: &Moto, fifo: bool) -> Downstream {
    let sqs = moto.sqs();
    let q = |name: &str| {
        let sqs = sqs.clone();
        let name = name.to_string();
        async move {
            let mut req = sqs.create_queue().queue_name(&name);
            if name.ends_with(".fifo") {
                req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
            }
            req.send().await.unwrap().queue_url.unwrap()
        }
    };
    let suffix = if fifo { ".fifo" } else { "" };
    let sns_out = q("sns-out").await;
    let manifests = q(&format!("manifests{suffix}")).await;
    let eb_out = q("eb-out").await;
    let sns = moto.sns();
    let mut topic_req = sns.create_topic().name(format!("manifests{suffix}"));
    if fifo {
        topic_req = topic_req.attributes("FifoTopic", "true");
    }
    let topic = topic_req.send().await.unwrap().topic_arn.unwrap();
    if !fifo {
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:sns-out"))
            .send()
            .await
            .unwrap();
    }
    let eb = moto.eventbridge();
    eb.create_event_bus()
        .name("exports-bus")
        .send()
        .await
        .unwrap();
    eb.put_rule()
        .name("indexed")
        .event_bus_name("exports-bus")
        .event_pattern(r#"{"source":["export-fetcher"]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("indexed")
        .event_bus_name("exports-bus")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:eb-out"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    Downstream {
        topic,
        sns_out,
        manifests,
        eb_out,
    }
}

fn sink_env<'a>(d: &'a Downstream, webhook: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SNS_TOPIC_ARN", d.topic.as_str()),
        ("SQS_QUEUE_URL", d.manifests.as_str()),
        ("EVENT_BUS_NAME", "exports-bus"),
        ("WEBHOOK_URL", webhook),
        ("WEBHOOK_SECRET", SECRET),
    ]
}

const KEY: &str = "segment-export/seg-7/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/114f0226319130e1a4770f2602b5639a.gz";

/// moto with the bucket, holding a users export at [`KEY`] (`n` users generated from `seed`).
async fn moto_with_users(seed: u64, n: usize) -> (Moto, aws_sdk_s3::Client) {
    let (moto, s3) = moto_with_bucket().await;
    put(
        &s3,
        BUCKET,
        KEY,
        fixtures::gzip(&fixtures::users_jsonl(seed, n).bytes),
    )
    .await;
    (moto, s3)
}

/// Every sink up: the [`downstream`] resources, and a webhook receiver answering 200.
async fn sinks_up(moto: &Moto, fifo: bool) -> (Downstream, Receiver) {
    (downstream(moto, fifo).await, Receiver::start(vec![200]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_twice_is_exactly_one_message_per_sink_and_the_signature_verifies() {
    let (moto, s3) = moto_with_users(21, 50).await;
    let (d, hook) = sinks_up(&moto, false).await;
    let env = sink_env(&d, &hook.url);
    for round in 0..2 {
        let (code, response) = invoke(&moto.endpoint, &s3_event(BUCKET, KEY), &env);
        assert_eq!(code, 0, "round {round}: {response}");
        let want = if round == 0 { "done" } else { "duplicate" };
        assert_eq!(response["results"][0]["outcome"], want, "{response}");
        let deliveries = response["results"][0]["deliveries"].as_array().unwrap();
        let outcomes: Vec<&str> = deliveries
            .iter()
            .map(|d| d["outcome"].as_str().unwrap())
            .collect();
        let want = if round == 0 {
            "delivered"
        } else {
            "already_delivered"
        };
        assert_eq!(outcomes, vec![want; 4], "{response}");
    }
    let sqs = moto.sqs();
    let m = manifest(&s3, BUCKET, KEY).await.unwrap();
    for (name, url) in [
        ("sns", &d.sns_out),
        ("sqs", &d.manifests),
        ("eventbridge", &d.eb_out),
    ] {
        let msgs = drain(&sqs, url).await;
        assert_eq!(msgs.len(), 1, "{name}: {msgs:?}");
        let body: Value = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
        let carried = match name {
            "sns" => {
                let attrs = &body["MessageAttributes"];
                assert_eq!(attrs["kind"]["Value"], "api_user_export", "{body}");
                assert_eq!(attrs["message_type"]["Value"], "object", "{body}");
                assert_eq!(attrs["status"]["Value"], "complete");
                assert_eq!(attrs["segment_id"]["Value"], "seg-7");
                serde_json::from_str::<Value>(body["Message"].as_str().unwrap()).unwrap()
            }
            "eventbridge" => {
                assert_eq!(body["source"], "export-fetcher");
                assert_eq!(body["detail-type"], "Braze Export Indexed");
                body["detail"].clone()
            }
            _ => {
                let attrs = msgs[0].message_attributes().unwrap();
                assert_eq!(attrs["status"].string_value(), Some("complete"));
                assert_eq!(attrs["message_type"].string_value(), Some("object"));
                body
            }
        };
        assert_eq!(carried["source"]["key"], KEY, "{name}");
        assert_eq!(carried, m, "{name} carries the manifest as written");
    }
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "one webhook delivery");
    let r = &reqs[0];
    let sig = r.header("X-Export-Fetcher-Signature").expect("signed");
    assert!(request_verifies(SECRET, r), "signature {sig} verifies");
    assert!(!request_verifies("wrong", r));
    assert_eq!(r.header("X-Export-Fetcher-Message-Type"), Some("object"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["source"]["key"], KEY);
    let idem = r.header("Idempotency-Key").unwrap();
    assert_eq!(idem.len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_ids_are_deterministic_and_match_the_idempotency_key() {
    let (moto, s3) = moto_with_users(22, 5).await;
    let (d, hook) = sinks_up(&moto, true).await;
    let env = sink_env(&d, &hook.url);
    let (code, response) = invoke(&moto.endpoint, &s3_event(BUCKET, KEY), &env);
    assert_eq!(code, 0, "{response}");
    let m = manifest(&s3, BUCKET, KEY).await.unwrap();
    let manifest: export_fetcher::manifest::Manifest = serde_json::from_value(m).unwrap();
    let idem = export_fetcher::sink::idempotency_key(&manifest);
    // Independently: SHA-256 of bucket, key and ETag, each followed by a NUL byte.
    let mut raw = Vec::new();
    for f in [BUCKET, KEY, manifest.source.etag.as_deref().unwrap()] {
        raw.extend_from_slice(f.as_bytes());
        raw.push(0);
    }
    assert_eq!(idem, fixtures::sha256_hex(&raw));
    let msgs = drain(&moto.sqs(), &d.manifests).await;
    assert_eq!(msgs.len(), 1);
    let attrs = msgs[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    assert_eq!(
        attrs.get(&A::MessageDeduplicationId).map(String::as_str),
        Some(idem.as_str())
    );
    // The key fits SQS's rules for a group id (≤ 128 printable ASCII characters): it is the group.
    assert!(KEY.len() <= 128);
    assert_eq!(attrs.get(&A::MessageGroupId).map(String::as_str), Some(KEY));
    assert_eq!(
        hook.requests()[0].header("Idempotency-Key"),
        Some(idem.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_manifest_is_sent_as_a_pointer() {
    let (moto, s3) = moto_with_bucket().await;
    let key =
        "segment-export/seg-7/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/many.zip";
    let members: Vec<(String, Vec<u8>)> = (0..700)
        .map(|i| {
            (
                format!("member-{i:04}-with-a-longish-name.txt"),
                format!("{{\"external_id\":\"u{i}\"}}\n").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    put(
        &s3,
        BUCKET,
        key,
        fixtures::zip_of(&refs, fixtures::DEFLATED, false),
    )
    .await;
    let (d, hook) = sinks_up(&moto, false).await;
    let (code, response) = invoke(
        &moto.endpoint,
        &s3_event(BUCKET, key),
        &sink_env(&d, &hook.url),
    );
    assert_eq!(code, 0, "{response}");
    let full = crate::lambda_s3::get(
        &s3,
        BUCKET,
        &format!("export-fetcher/manifests/{key}.manifest.json"),
    )
    .await
    .unwrap();
    assert!(
        full.len() > 256 * 1024,
        "the manifest is large: {} bytes",
        full.len()
    );
    let msgs = drain(&moto.sqs(), &d.manifests).await;
    assert_eq!(msgs.len(), 1);
    let body: Value = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    assert_eq!(body["pointer"], true, "{body}");
    assert_eq!(body["manifest"]["bucket"], BUCKET);
    assert_eq!(
        body["manifest"]["key"],
        format!("export-fetcher/manifests/{key}.manifest.json")
    );
    assert_eq!(body["status"], "complete");
    assert_eq!(body["totals"]["parts"], 700);
    assert_eq!(body["source"]["key"], key);
    let eb = drain(&moto.sqs(), &d.eb_out).await;
    assert_eq!(eb.len(), 1);
    let ev: Value = serde_json::from_str(eb[0].body().unwrap()).unwrap();
    assert_eq!(ev["detail"]["pointer"], true);
    // The webhook has no size limit: it gets the whole manifest.
    let sent: Value = serde_json::from_slice(&hook.requests()[0].body).unwrap();
    let written: Value = serde_json::from_slice(&full).unwrap();
    assert!(
        sent == written,
        "the webhook body is the manifest as written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_down_is_retryable_and_later_delivered_once() {
    let (moto, s3) = moto_with_users(23, 5).await;
    let (d, hook) = sinks_up(&moto, false).await;
    // The SQS sink points at a queue that does not exist yet: the sink is down.
    let missing = format!("{}/{ACCOUNT}/late-queue", moto.endpoint);
    let mut env = sink_env(&d, &hook.url);
    env[1] = ("SQS_QUEUE_URL", missing.as_str());
    let event = crate::lambda_s3::sqs_event_from_bodies(&[(
        "m-1",
        crate::lambda_s3::s3_event(BUCKET, KEY).to_string(),
    )]);
    let (code, response) = invoke(&moto.endpoint, &event, &env);
    assert_eq!(code, 1, "a batch item failure is exit status 1");
    assert_eq!(
        response["batchItemFailures"][0]["itemIdentifier"], "m-1",
        "{response}"
    );
    assert!(
        manifest(&s3, BUCKET, KEY).await.is_some(),
        "the manifest is written before forwarding"
    );
    assert_eq!(hook.requests().len(), 1);
    // The queue comes up; the retried message is delivered to it, and only to it.
    moto.sqs()
        .create_queue()
        .queue_name("late-queue")
        .send()
        .await
        .unwrap();
    let (code, response) = invoke(&moto.endpoint, &event, &env);
    assert_eq!(
        (code, &response["batchItemFailures"]),
        (0, &serde_json::json!([])),
        "{response}"
    );
    assert_eq!(
        drain(&moto.sqs(), &missing).await.len(),
        1,
        "delivered once to the late queue"
    );
    assert_eq!(
        drain(&moto.sqs(), &d.sns_out).await.len(),
        1,
        "SNS was not sent it again"
    );
    assert_eq!(
        drain(&moto.sqs(), &d.eb_out).await.len(),
        1,
        "EventBridge was not sent it again"
    );
    assert_eq!(hook.requests().len(), 1, "the webhook was not called again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_5xx_but_not_4xx() {
    let (moto, s3) = moto_with_users(24, 5).await;
    let flaky = Receiver::start(vec![500, 503, 200]);
    let (code, response) = invoke(
        &moto.endpoint,
        &s3_event(BUCKET, KEY),
        &[
            ("WEBHOOK_URL", flaky.url.as_str()),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    assert_eq!(code, 0, "{response}");
    let reqs = flaky.requests();
    assert_eq!(reqs.len(), 3, "500, 503, then 200");
    let keys: Vec<_> = reqs
        .iter()
        .map(|r| r.header("Idempotency-Key").unwrap().to_string())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "same idempotency key on every attempt"
    );
    assert!(reqs.iter().all(|r| request_verifies(SECRET, r)));

    let key2 = "reports/refused.csv";
    put(&s3, BUCKET, key2, b"a,b\n1,2\n".to_vec()).await;
    let refusing = Receiver::start(vec![400]);
    let (code, response) = invoke(
        &moto.endpoint,
        &s3_event(BUCKET, key2),
        &[
            ("WEBHOOK_URL", refusing.url.as_str()),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    assert_eq!(
        code, 1,
        "the invocation fails so that the object is retried: {response}"
    );
    assert_eq!(
        refusing.requests().len(),
        1,
        "a 400 is not retried within the delivery"
    );
    let logs_safe = response.to_string();
    assert!(
        !logs_safe.contains(SECRET),
        "the secret never appears in responses"
    );
}
