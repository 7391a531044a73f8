//! ListObjectsV2, page by page: the objects to backfill, and the manifests already written.

use std::collections::HashMap;

use aws_sdk_s3::Client;

use super::BackfillError;
use super::select::{Listed, ManifestEntry};

/// The objects under a prefix, one page (up to 1,000) at a time.
pub struct Lister {
    client: Client,
    bucket: String,
    prefix: String,
    token: Option<String>,
    done: bool,
}

impl Lister {
    pub fn new(client: &Client, bucket: &str, prefix: &str) -> Lister {
        Lister {
            client: client.clone(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            token: None,
            done: false,
        }
    }

    /// The next page; `None` after the last one.
    pub async fn next_page(&mut self) -> Option<Result<Vec<Listed>, BackfillError>> {
        if self.done {
            return None;
        }
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .set_continuation_token(self.token.take())
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                self.done = true;
                return Some(Err(BackfillError::s3_sdk(
                    "ListObjectsV2",
                    &self.bucket,
                    &self.prefix,
                    e,
                )));
            }
        };
        self.token = out.next_continuation_token().map(String::from);
        self.done = out.is_truncated() != Some(true) || self.token.is_none();
        let page = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    bucket: self.bucket.clone(),
                    key: o.key()?.to_string(),
                    version_id: None,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                    last_modified: o.last_modified().copied(),
                })
            })
            .collect();
        Some(Ok(page))
    }
}

/// Every manifest under `prefix` of `bucket` (`<OUTPUT_PREFIX>manifests/<source prefix>`), by
/// key, listed once: whether an object has a manifest, and when it was written, without a
/// request per object. `on_page` is told how many were listed so far.
pub async fn manifests(
    client: &Client,
    bucket: &str,
    prefix: &str,
    mut on_page: impl FnMut(usize),
) -> Result<HashMap<String, ManifestEntry>, BackfillError> {
    let mut found = HashMap::new();
    let mut lister = Lister::new(client, bucket, prefix);
    while let Some(page) = lister.next_page().await {
        for m in page? {
            found.insert(
                m.key,
                ManifestEntry {
                    last_modified: m.last_modified,
                },
            );
        }
        on_page(found.len());
    }
    Ok(found)
}
