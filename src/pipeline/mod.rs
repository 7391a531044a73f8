//! The pipeline, in the order data flows: `event` decides what one object-created event needs
//! (version rules, existing manifests, the conditional manifest write), `object` indexes the
//! object (decode, index, write parts; the failure policy), and `forward` sends the written
//! manifest to the sinks exactly once. `event` calls the other two; they call nothing back.
//! The types they share (the environment, the outcome of one event) live here.

use std::sync::Arc;

use crate::config::{Config, KeyFilter};
use crate::manifest::Manifest;
use crate::sink::Sinks;
use crate::store::s3::S3Store;

mod event;
mod forward;
mod object;
mod stage;

pub use event::{Job, process_event, process_event_with, process_task};
pub use forward::{Delivery, forward_message};
pub use object::{Outcome, index_object, run};

/// What happened to one object event in the Lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectOutcome {
    /// Processed: the manifest was written and forwarded to every configured sink.
    Done {
        manifest: Box<Manifest>,
        deliveries: Vec<Delivery>,
    },
    /// A manifest for this very version already exists: nothing was rewritten, and only sinks
    /// that had not accepted it yet (after an earlier failure) were sent it.
    Duplicate {
        manifest_key: String,
        deliveries: Vec<Delivery>,
    },
    /// Not processed by design (loop guard, key filters).
    Skipped { reason: String },
    /// A transient failure: the work must be retried (nothing final was written).
    Retry { error: String },
    /// The notification is older than what the key holds now (a later version or overwrite,
    /// processed or on its way): acknowledged as done, not retried; nothing written or
    /// forwarded.
    Superseded { reason: String },
}

impl ObjectOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ObjectOutcome::Done { .. } => "done",
            ObjectOutcome::Duplicate { .. } => "duplicate",
            ObjectOutcome::Skipped { .. } => "skipped",
            ObjectOutcome::Retry { .. } => "retry",
            ObjectOutcome::Superseded { .. } => "superseded",
        }
    }
}

/// Everything the Lambda builds once per cold start.
pub struct Env {
    pub cfg: Arc<Config>,
    pub filter: KeyFilter,
    pub s3: S3Store,
    pub sinks: Sinks,
    /// The Glue Data Catalog client, when `GLUE_DATABASE` is set.
    pub glue: Option<aws_sdk_glue::Client>,
}

impl Env {
    /// The same environment, forwarding manifests to `sinks`.
    pub fn with_sinks(mut self, sinks: Sinks) -> Env {
        self.sinks = sinks;
        self
    }

    /// The same environment, with Currents tables kept in Glue through `glue`.
    pub fn with_glue(mut self, glue: aws_sdk_glue::Client) -> Env {
        self.glue = Some(glue);
        self
    }

    /// The bucket outputs go to for an object of `source_bucket`.
    pub fn output_bucket<'a>(&'a self, source_bucket: &'a str) -> &'a str {
        self.cfg.output_bucket.as_deref().unwrap_or(source_bucket)
    }
}
