//! `export-fetcher backfill`: the function over objects already in the bucket (notifications only
//! cover new writes), and again over what failed once a permission is fixed or a limit raised.
//!
//! One selection pass ([`plan`]) lists the objects under `s3://BUCKET/PREFIX` (or reads an S3
//! Inventory report), leaves out outputs, filtered keys and objects that already have a current
//! manifest, then either:
//!
//! - writes the Batch Operations CSV manifest under `<OUTPUT_PREFIX>backfill/<job>/` and creates
//!   an S3 Batch Operations job that invokes the function on every object (`--dry-run`: prints
//!   the exact CreateJob request instead), or
//! - with `--local`, processes the objects on this machine through the same pipeline.
//!
//! ## Layout
//!
//! - [`location`]: `s3://` arguments and ARNs.
//! - [`select`]: which objects are picked; pure decisions with case tables.
//! - [`list`]: ListObjectsV2 of objects and manifests.
//! - [`inventory`]: S3 Inventory reports (manifest.json, CSV and CSV.gz data files).
//! - [`plan`]: the selection pass, fetching what the decisions need.
//! - [`csv_manifest`]: the Batch Operations CSV manifest and its key encoding.
//! - [`job`]: the job's id, the CreateJob request (as the SDK's input and as JSON), sending it.
//! - [`stack`]: a CloudFormation stack's outputs for `--stack`.
//! - [`local`]: processing on this machine (`--local`).
//! - [`summary`]: the table `--local` ends with.
//! - [`progress`]: progress on a terminal.

pub mod csv_manifest;
pub mod inventory;
pub mod job;
pub mod list;
pub mod local;
pub mod location;
pub mod plan;
pub mod progress;
pub mod select;
pub mod stack;
pub mod summary;

use std::sync::Arc;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::DateTime;
use thiserror::Error;

use crate::config::{Config, KeyFilter};
use crate::handler;
use crate::store::StoreError;
use location::S3Url;
use plan::Origin;
use select::{Mode, Scope};

/// Exit status: 0 done (or nothing to do), 1 an object failed or the job could not be created,
/// 2 a usage error.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// What went wrong, with the bucket and key it happened on.
#[derive(Debug, Error)]
pub enum BackfillError {
    /// The arguments or the configuration (exit status 2).
    #[error("{0}")]
    Usage(String),
    #[error("{op} s3://{bucket}/{key}: {message}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("inventory data file s3://{bucket}/{key}: {message}")]
    Inventory {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Job(String),
    #[error("{0}")]
    Internal(String),
}

impl BackfillError {
    pub fn s3(op: &'static str, bucket: &str, key: &str, e: StoreError) -> BackfillError {
        BackfillError::S3 {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    pub fn s3_sdk<E, R>(
        op: &'static str,
        bucket: &str,
        key: &str,
        e: SdkError<E, R>,
    ) -> BackfillError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let message = match e.as_service_error().and_then(|s| s.code()) {
            Some(code) => format!(
                "{code}: {}",
                e.as_service_error().and_then(|s| s.message()).unwrap_or("")
            ),
            None => DisplayErrorContext(&e).to_string(),
        };
        BackfillError::S3 {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            BackfillError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

/// The objects and how to choose among them.
#[derive(Debug, Clone)]
pub struct Options {
    pub origin: Origin,
    /// `--include` / `--exclude` globs on the key.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub since: Option<DateTime>,
    pub mode: Mode,
    pub run: Run,
}

/// What to do with the objects picked.
#[derive(Debug, Clone)]
pub enum Run {
    /// Process them here (`--local`), this many at a time.
    Local { concurrency: usize },
    /// An S3 Batch Operations job.
    Job(job::JobArgs),
}

/// Runs `export-fetcher backfill`; returns the exit status.
pub async fn run(opts: Options, cfg: Config) -> i32 {
    match try_run(opts, cfg).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("export-fetcher: backfill: {e}");
            e.exit_code()
        }
    }
}

async fn try_run(opts: Options, mut cfg: Config) -> Result<i32, BackfillError> {
    let prefix = match &opts.origin {
        Origin::Listing(url) => url.key.clone(),
        Origin::Inventory { within, .. } => {
            within.as_ref().map(|u| u.key.clone()).unwrap_or_default()
        }
    };
    let keys = KeyFilter::new(&opts.include, &opts.exclude).map_err(|e| {
        BackfillError::Usage(format!("--include/--exclude {:?}: {}", e.value, e.reason))
    })?;
    let configured = KeyFilter::new(&cfg.include_keys, &cfg.exclude_keys)
        .map_err(|e| BackfillError::Usage(e.to_string()))?;
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // The job's ARNs first (and the stack's outputs), so that a missing one stops the command
    // before any listing.
    let job = match &opts.run {
        Run::Job(args) => {
            let resolved = job::resolve(args, &shared, &mut cfg).await?;
            Some((args.clone(), resolved))
        }
        Run::Local { .. } => None,
    };
    let scope = Scope {
        prefix,
        keys,
        configured,
        since: opts.since,
        output_bucket: cfg.output_bucket.clone(),
        output_prefix: cfg.output_prefix.clone(),
    };
    let env = Arc::new(
        handler::build_env(cfg.clone())
            .await
            .map_err(|e| BackfillError::Usage(e.to_string()))?,
    );
    let plan = plan::plan(&env.s3, &cfg, &opts.origin, &scope, opts.mode).await?;
    let shown = match &opts.origin {
        Origin::Listing(url) => url.to_string(),
        Origin::Inventory { manifest, .. } => format!("inventory {manifest}"),
    };
    eprint!("{}", plan.tally.render(&shown));
    if plan.objects.is_empty() {
        eprintln!("export-fetcher: backfill: nothing to do");
        return Ok(EXIT_OK);
    }
    match (&opts.run, job) {
        (Run::Local { concurrency }, _) => {
            let (summary, elapsed) =
                local::run(env.clone(), plan.objects, *concurrency, opts.mode.reprocess).await;
            print!("{}", summary.render(elapsed));
            Ok(if summary.failed() > 0 {
                EXIT_FAILED
            } else {
                EXIT_OK
            })
        }
        (Run::Job(_), Some((args, resolved))) => {
            job::create(
                &env, &cfg, &plan, &shown, opts.mode, &args, &resolved, &shared,
            )
            .await
        }
        (Run::Job(_), None) => Err(BackfillError::Internal("job arguments not resolved".into())),
    }
}

/// Parses `s3://BUCKET[/PREFIX]` for the command line.
pub fn parse_s3_url(s: &str) -> Result<S3Url, String> {
    s.parse()
}
