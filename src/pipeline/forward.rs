//! Forwarding a written manifest to every configured sink at most once per object version,
//! through delivery records claimed with conditional writes.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::manifest::Manifest;
use crate::sink::{self};
use crate::store::s3::{self, OutputKind};
use crate::store::{Condition, StoreError};

use super::Env;

/// One sink's part in forwarding a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub sink: &'static str,
    /// `delivered`, `already_delivered`, `failed` or `in_progress` (another invocation is
    /// delivering it right now).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time from the start of forwarding until the sink accepted the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// A delivery record: `<OUTPUT_PREFIX>deliveries/<source key>/<sink>.json`. Claimed (`sending`)
/// with a conditional write before the message is sent, `delivered` once the sink accepted it,
/// `failed` when it did not (or did not in time), so that a retry sends only to the sinks that
/// did not accept it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct DeliveryRecord {
    idempotency_key: String,
    sink: String,
    state: String,
    unix: u64,
    /// For a `sending` claim: the unix second from which it no longer holds, the deadline of
    /// the invocation that made it (its send is cut there). Absent in older records: then
    /// `unix + STALE_CLAIM_SECS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    /// Which manifest of the version was delivered ([`manifest_stamp`]): a manifest that
    /// replaces a delivered one for the same version (an environment failure reprocessed, a
    /// `missing` object uploaded again) is delivered too. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
}

/// Tells apart two manifests written for one object version: their status and time of writing.
fn manifest_stamp(manifest: &Manifest) -> String {
    format!("{} {}", manifest.status.as_str(), manifest.processed_at)
}

impl DeliveryRecord {
    /// Whether this is a claim that another invocation may still be sending under.
    fn is_live_claim(&self) -> bool {
        self.state == "sending" && unix_now() < self.expires.unwrap_or(self.unix + STALE_CLAIM_SECS)
    }
}

/// A `sending` claim made without a deadline (not in Lambda) holds this long, the longest
/// Lambda invocation.
const STALE_CLAIM_SECS: u64 = 15 * 60;
/// No delivery is claimed with less time than this left before the deadline: the send could
/// not finish.
const MIN_SEND_TIME: Duration = Duration::from_secs(1);

/// The unix second at which a claim made now stops holding: just after `deadline`, when the
/// send it covers has been cut.
fn claim_expiry(deadline: Option<Instant>) -> u64 {
    unix_now()
        + deadline.map_or(STALE_CLAIM_SECS, |d| {
            d.saturating_duration_since(Instant::now()).as_secs() + 1
        })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sends the manifest to every configured sink that has not accepted it for this object version.
/// `Err` when a sink failed (the object is retried; the next attempt sends only to that sink).
/// `fresh`: the manifest was just written where none was, so its delivery records are most
/// likely absent and are claimed without being read first (one request less per sink).
pub(super) async fn forward(
    env: &Env,
    out_bucket: &str,
    manifest: &Manifest,
    deadline: Option<Instant>,
    fresh: bool,
) -> Result<Vec<Delivery>, String> {
    if env.sinks.names().is_empty() {
        return Ok(Vec::new());
    }
    let msg = sink::outgoing(manifest, out_bucket, deadline);
    let records = format!(
        "{}deliveries/{}/",
        env.cfg.output_prefix, manifest.source.key
    );
    forward_message(
        env,
        out_bucket,
        &records,
        &manifest_stamp(manifest),
        &msg,
        fresh,
    )
    .await
}

/// Sends `msg` to every configured sink that has not accepted it, at most once each: one
/// delivery record per sink at `<records><sink>.json` (shortened by `fit_key` when long),
/// `stamp` telling apart two messages with one idempotency key (see `manifest_stamp`). Used
/// for per-object manifests and for roll-ups (export and partition manifests, whose
/// idempotency key names their generation).
pub async fn forward_message(
    env: &Env,
    out_bucket: &str,
    records: &str,
    stamp: &str,
    msg: &sink::Outgoing,
    fresh: bool,
) -> Result<Vec<Delivery>, String> {
    let names = env.sinks.names();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for name in names {
        let record = Record {
            key: crate::manifest::fit_key(format!("{records}{name}.json"), ".json"),
            stamp: stamp.to_string(),
            fresh,
        };
        let delivery = deliver_once(env, out_bucket, &record, name, msg, started).await;
        match &delivery.error {
            None => {
                info!(sink = name, message_type = msg.message_type.as_str(), outcome = delivery.outcome, latency_ms = ?delivery.latency_ms, "manifest forwarded")
            }
            Some(e) => {
                warn!(sink = name, message_type = msg.message_type.as_str(), outcome = delivery.outcome, error = %e, "manifest not forwarded")
            }
        }
        deliveries.push(delivery);
    }
    let failed: Vec<String> = deliveries
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.sink)))
        .collect();
    if failed.is_empty() {
        Ok(deliveries)
    } else {
        Err(format!("forwarding failed: {}", failed.join("; ")))
    }
}

/// Where one sink's delivery of one manifest is recorded.
struct Record {
    /// The delivery record's key (`<records><sink>.json`).
    key: String,
    /// Which manifest of the version is delivered ([`manifest_stamp`]).
    stamp: String,
    /// The manifest was just written where none was: the record is claimed without being read.
    fresh: bool,
}

/// Sends `msg` to one sink at most once per object version, through the delivery record at
/// `record.key`. The claim holds until the deadline (recorded in it); the send is cut at the
/// deadline, and a send that fails or is cut releases the claim (`failed`), so that the retry
/// sends it.
async fn deliver_once(
    env: &Env,
    out_bucket: &str,
    record_at: &Record,
    name: &'static str,
    msg: &sink::Outgoing,
    started: Instant,
) -> Delivery {
    let (key, stamp, fresh) = (
        record_at.key.as_str(),
        record_at.stamp.as_str(),
        record_at.fresh,
    );
    let deadline = msg.deadline;
    let record = |state: &str, expires: Option<u64>| {
        serde_json::to_vec(&DeliveryRecord {
            idempotency_key: msg.idempotency_key.clone(),
            sink: name.to_string(),
            state: state.to_string(),
            unix: unix_now(),
            expires,
            manifest: Some(stamp.to_string()),
        })
        .expect("record serialises")
    };
    let fail = |outcome: &'static str, error: String| Delivery {
        sink: name,
        outcome,
        error: Some(error),
        latency_ms: None,
    };
    if deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()) < MIN_SEND_TIME) {
        return fail(
            "failed",
            "the invocation deadline is near: not sent, so that the retry sends it".into(),
        );
    }
    // Claim the delivery, so that concurrent duplicates never send twice. A manifest written
    // where none was is claimed blind (`If-None-Match: *`): its record cannot exist yet unless
    // a concurrent duplicate made it, and then the record is read as below. Any other manifest
    // reads the record first.
    let mut blind = fresh;
    let claim_etag = loop {
        let condition = if blind {
            Condition::IfNoneMatch
        } else {
            match env.s3.get_small(out_bucket, key).await {
                Err(e) => return fail("failed", e.to_string()),
                Ok(None) => Condition::IfNoneMatch,
                Ok(Some((body, etag))) => {
                    let existing = serde_json::from_slice::<DeliveryRecord>(&body).ok();
                    match existing {
                        Some(r)
                            if r.idempotency_key == msg.idempotency_key
                                && r.state == "delivered"
                                && r.manifest.as_deref().is_none_or(|m| m == stamp) =>
                        {
                            return Delivery {
                                sink: name,
                                outcome: "already_delivered",
                                error: None,
                                latency_ms: None,
                            };
                        }
                        Some(r)
                            if r.idempotency_key == msg.idempotency_key && r.is_live_claim() =>
                        {
                            return fail(
                                "in_progress",
                                "another invocation is delivering this manifest".into(),
                            );
                        }
                        _ => Condition::IfMatch(etag),
                    }
                }
            }
        };
        let claim = env
            .s3
            .put_output(
                OutputKind::Delivery,
                out_bucket,
                key,
                record("sending", Some(claim_expiry(deadline))),
                "application/json",
                condition,
            )
            .await;
        match claim {
            Ok(etag) => break etag,
            Err(StoreError::PreconditionFailed) if blind => blind = false,
            Err(StoreError::PreconditionFailed) => {
                return fail(
                    "in_progress",
                    "another invocation is delivering this manifest".into(),
                );
            }
            Err(e) => return fail("failed", e.to_string()),
        }
    };
    let send = env.sinks.send(name, msg);
    let sent = match deadline {
        None => send.await,
        Some(d) => tokio::time::timeout_at(d.into(), send)
            .await
            .unwrap_or_else(|_| {
                // It may have been accepted all the same: the retry sends it again with the
                // same idempotency key (duplicates over loss).
                Err(sink::SinkError {
                    sink: name,
                    message: "not accepted before the invocation deadline".into(),
                })
            }),
    };
    let state = if sent.is_ok() { "delivered" } else { "failed" };
    // After the deadline too (bound by the cleanup timeout), and only over our own claim: one
    // that expired may have been taken over meanwhile.
    let recorded = s3::as_cleanup(env.s3.put_output(
        OutputKind::Delivery,
        out_bucket,
        key,
        record(state, None),
        "application/json",
        claim_etag.map_or(Condition::None, Condition::IfMatch),
    ))
    .await;
    match (sent, recorded) {
        (Ok(()), Ok(_)) => Delivery {
            sink: name,
            outcome: "delivered",
            error: None,
            latency_ms: Some(started.elapsed().as_millis() as u64),
        },
        // Delivered, but not recorded: a retry sends it again with the same idempotency key
        // (duplicates over loss); the receiver deduplicates on it.
        (Ok(()), Err(e)) => fail("failed", format!("delivered, but the record failed: {e}")),
        (Err(e), _) => fail("failed", e.message),
    }
}
