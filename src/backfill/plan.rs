//! The selection pass: list the objects (or read an inventory report), and decide for each one
//! whether the backfill picks it ([`select`](super::select) decides; this module only fetches
//! what the decisions need).
//!
//! Requests: the manifests prefix is listed once (`<OUTPUT_PREFIX>manifests/<prefix>`, 1,000
//! keys a page), then the objects, page by page. A manifest is read (one GET) only for an
//! object whose manifest was written after it, and for every object that has one with
//! `--failed-only`; those GETs run [`MANIFEST_READS`] at a time. With `--reprocess` alone no
//! manifest is listed or read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::BackfillError;
use super::inventory::{self, Row};
use super::list::{self, Lister};
use super::location::S3Url;
use super::progress::{self, Progress};
use super::select::{FirstLook, Listed, ManifestEntry, Mode, Scope, Skip, first_look, second_look};
use crate::config::Config;
use crate::manifest::{Manifest, manifest_key};
use crate::store::s3::S3Store;

/// Manifest GETs in flight at once while selecting.
pub const MANIFEST_READS: usize = 32;

/// Where the objects come from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// ListObjectsV2 under `s3://BUCKET/PREFIX`.
    Listing(S3Url),
    /// An S3 Inventory report's `manifest.json`, optionally narrowed to `s3://BUCKET/PREFIX`.
    Inventory {
        manifest: S3Url,
        within: Option<S3Url>,
    },
}

/// What the selection pass found.
#[derive(Debug, Default)]
pub struct Plan {
    /// The source bucket.
    pub bucket: String,
    /// The objects picked, in key order.
    pub objects: Vec<Listed>,
    pub tally: Tally,
}

/// Counts of the selection pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub seen: u64,
    pub seen_bytes: u64,
    pub picked: u64,
    pub picked_bytes: u64,
    pub skipped: BTreeMap<Skip, u64>,
    /// Manifests found by the listing of the manifests prefix.
    pub manifests_listed: usize,
    /// Manifests read one by one (GET).
    pub manifests_read: u64,
}

impl Tally {
    /// The lines printed after the selection pass.
    pub fn render(&self, origin: &str) -> String {
        let mut out = format!(
            "{origin}: {} objects ({}), {} picked ({})\n",
            self.seen,
            progress::bytes(self.seen_bytes),
            self.picked,
            progress::bytes(self.picked_bytes),
        );
        for skip in Skip::ALL {
            if let Some(n) = self.skipped.get(&skip).filter(|n| **n > 0) {
                out.push_str(&format!("  skipped {n:>8}  {}\n", skip.describe()));
            }
        }
        out.push_str(&format!(
            "  manifests: {} listed, {} read\n",
            self.manifests_listed, self.manifests_read
        ));
        out
    }

    fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }

    fn pick(&mut self, obj: &Listed) {
        self.picked += 1;
        self.picked_bytes += obj.size;
    }
}

/// Runs the selection pass.
pub async fn plan(
    store: &S3Store,
    cfg: &Config,
    origin: &Origin,
    scope: &Scope,
    mode: Mode,
) -> Result<Plan, BackfillError> {
    let (bucket, inventory) = match origin {
        Origin::Listing(url) => (url.bucket.clone(), None),
        Origin::Inventory { manifest, within } => {
            let (report, cols) = inventory::open(store, manifest).await?;
            if scope.since.is_some() && cols.last_modified.is_none() {
                return Err(BackfillError::Usage(format!(
                    "--since: the inventory at {manifest} has no LastModifiedDate field (add it to \
                     the inventory's optional fields, or leave out --since)"
                )));
            }
            if let Some(within) = within
                && within.bucket != report.source_bucket
            {
                return Err(BackfillError::Usage(format!(
                    "the inventory at {manifest} lists bucket {:?}, not {:?}",
                    report.source_bucket, within.bucket
                )));
            }
            (report.source_bucket.clone(), Some((report, cols)))
        }
    };
    let out_bucket = cfg.output_bucket.clone().unwrap_or_else(|| bucket.clone());
    let shown = match origin {
        Origin::Listing(url) => url.to_string(),
        Origin::Inventory { manifest, .. } => format!("inventory {manifest}"),
    };
    let progress = Progress::spinner(format!("listing the manifests of {shown}"));
    let needs_manifests = !mode.reprocess || mode.failed_only;
    let manifests = if needs_manifests {
        let prefix = format!("{}manifests/{}", cfg.output_prefix, scope.prefix);
        list::manifests(store.client(), &out_bucket, &prefix, |n| {
            progress.message(|| format!("listing the manifests of {shown}: {n}"))
        })
        .await?
    } else {
        HashMap::new()
    };
    let mut selector = Selector {
        store: store.clone(),
        out_bucket,
        output_prefix: cfg.output_prefix.clone(),
        scope: scope.clone(),
        mode,
        tally: Tally {
            manifests_listed: manifests.len(),
            ..Tally::default()
        },
        manifests,
        picked: Vec::new(),
        pending: Vec::new(),
    };
    let report = |s: &Selector| {
        progress.message(|| {
            format!(
                "{shown}: {} objects seen, {} picked, {} manifests read",
                s.tally.seen, s.tally.picked, s.tally.manifests_read
            )
        })
    };
    match inventory {
        None => {
            let mut lister = Lister::new(store.client(), &bucket, &scope.prefix);
            while let Some(page) = lister.next_page().await {
                for obj in page? {
                    selector.offer(obj);
                }
                selector.settle().await?;
                report(&selector);
            }
        }
        Some((report_manifest, cols)) => {
            let data_bucket = report_manifest
                .destination()
                .map_err(BackfillError::Usage)?
                .to_string();
            for file in &report_manifest.files {
                let (tx, mut rx) = inventory::row_channel();
                let reading =
                    inventory::read_data_file(store, &data_bucket, &file.key, cols, cfg.limits, tx);
                let selecting = async {
                    let mut since_settled = 0usize;
                    while let Some(row) = rx.recv().await {
                        match row {
                            Row::Object(obj) if obj.bucket == bucket => selector.offer(obj),
                            Row::Object(obj) => {
                                selector.tally.seen += 1;
                                selector.tally.seen_bytes += obj.size;
                                selector.tally.skip(Skip::Filtered);
                            }
                            Row::NotLatest => {
                                selector.tally.seen += 1;
                                selector.tally.skip(Skip::NotLatest);
                            }
                        }
                        since_settled += 1;
                        if since_settled == 1000 {
                            selector.settle().await?;
                            report(&selector);
                            since_settled = 0;
                        }
                    }
                    selector.settle().await
                };
                let (read, selected) = tokio::join!(reading, selecting);
                read?;
                selected?;
                report(&selector);
            }
        }
    }
    progress.finish();
    let mut objects = selector.picked;
    objects.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
    Ok(Plan {
        bucket,
        objects,
        tally: selector.tally,
    })
}

/// The decisions of the selection pass, object by object.
struct Selector {
    store: S3Store,
    out_bucket: String,
    output_prefix: String,
    scope: Scope,
    mode: Mode,
    manifests: HashMap<String, ManifestEntry>,
    tally: Tally,
    picked: Vec<Listed>,
    /// Objects whose manifest must be read: (object, manifest key).
    pending: Vec<(Listed, String)>,
}

impl Selector {
    /// Decides what the listings allow; the rest waits for [`Selector::settle`].
    fn offer(&mut self, obj: Listed) {
        self.tally.seen += 1;
        self.tally.seen_bytes += obj.size;
        if let Err(why) = self.scope.check(&obj) {
            return self.tally.skip(why);
        }
        let mkey = manifest_key(&self.output_prefix, &obj.key);
        match first_look(&obj, self.manifests.get(&mkey), self.mode) {
            FirstLook::Pick => {
                self.tally.pick(&obj);
                self.picked.push(obj);
            }
            FirstLook::Skip(why) => self.tally.skip(why),
            FirstLook::ReadManifest => self.pending.push((obj, mkey)),
        }
    }

    /// Reads the manifests the pending objects need, [`MANIFEST_READS`] at a time, and decides.
    async fn settle(&mut self) -> Result<(), BackfillError> {
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        let bucket: Arc<str> = Arc::from(self.out_bucket.as_str());
        let mut reads = JoinSet::new();
        loop {
            while reads.len() < MANIFEST_READS
                && let Some((obj, mkey)) = pending.next()
            {
                let (store, bucket) = (self.store.clone(), bucket.clone());
                reads.spawn(async move {
                    let got = store.get_small(&bucket, &mkey).await;
                    (obj, mkey, got)
                });
            }
            let Some(done) = reads.join_next().await else {
                return Ok(());
            };
            let (obj, mkey, got) = done.map_err(|e| BackfillError::Internal(e.to_string()))?;
            self.tally.manifests_read += 1;
            let body = match got {
                Ok(found) => found.map(|(body, _)| body),
                Err(e) => return Err(BackfillError::s3("GetObject", &self.out_bucket, &mkey, e)),
            };
            // Not a manifest (unreadable JSON): nothing certifies the object as done.
            let manifest = body.and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
            match second_look(&obj, manifest.as_ref(), self.mode) {
                Ok(()) => {
                    self.tally.pick(&obj);
                    self.picked.push(obj);
                }
                Err(why) => self.tally.skip(why),
            }
        }
    }
}
