//! The demo's S3 endpoint: `s3s-fs` serving a local folder over the real S3 protocol (signed
//! requests, ranged reads, multipart uploads, conditional writes) on a loopback port.
//!
//! `s3s-fs` keeps each object's attributes in a file named after the base64 of its bucket and
//! key, in one folder: keys longer than about 150 bytes exceed the 255-byte file name limit and
//! fail with `InternalError`. Real Braze keys (Currents ones run past 200 bytes) and the
//! fetcher's output keys under them are that long, so `ShortKeys` sits in front of the file
//! system and stores such objects under `.long-keys/<sha-256 of the key>` instead. Clients never
//! see it: requests and responses carry the real keys.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteObjectInput,
    DeleteObjectOutput, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput,
    HeadObjectInput, HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output, PutObjectInput,
    PutObjectOutput, UploadPartInput, UploadPartOutput,
};
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// A running server; [`Server::stop`] shuts it down (dropping it stops accepting, too).
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `root` with `s3s-fs` on `127.0.0.1:<free port>`, accepting requests signed with
    /// this key pair.
    pub async fn start(root: &Path, access_key: &str, secret_key: &str) -> Result<Server, String> {
        Server::start_at(root, access_key, secret_key, 0).await
    }

    /// [`Server::start`] on `127.0.0.1:<port>` (`0`: a free port).
    pub async fn start_at(
        root: &Path,
        access_key: &str,
        secret_key: &str,
        port: u16,
    ) -> Result<Server, String> {
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| format!("cannot serve {}: {e:?}", root.display()))?;
        let store = ShortKeys {
            fs,
            long_keys: Mutex::new(HashMap::new()),
        };
        Server::serve_at(store, access_key, secret_key, port).await
    }

    /// Serves any `s3s` backend on `127.0.0.1:<free port>` (the benchmark's plain-file one,
    /// `tools/s3-server`), accepting requests signed with this key pair.
    pub async fn serve(
        store: impl S3,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Server, String> {
        Server::serve_at(store, access_key, secret_key, 0).await
    }

    /// [`Server::serve`] on `127.0.0.1:<port>` (`0`: a free port).
    pub async fn serve_at(
        store: impl S3,
        access_key: &str,
        secret_key: &str,
        port: u16,
    ) -> Result<Server, String> {
        let mut builder = S3ServiceBuilder::new(store);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        // Responses go out in several writes: without this, Nagle's algorithm
                        // and delayed ACKs add 40 ms to each request.
                        let _ = socket.set_nodelay(true);
                        let conn = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        connections.spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    // Reap finished connections so the set stays small.
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    _ = &mut stop_rx => break,
                }
            }
            // Every request has been answered by now; what is left are idle keep-alive
            // connections of the client. Close them.
            connections.shutdown().await;
        });
        Ok(Server {
            addr,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes the connections and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// An S3 client for a local server (path-style, `us-east-1`), signing with this key pair.
pub fn local_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Builder, Credentials, Region};
    let credentials = Credentials::new(access_key, secret_key, None, None, "local");
    aws_sdk_s3::Client::from_conf(
        Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}

/// One `--put BUCKET/KEY=FILE` of the local servers' command lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub bucket: String,
    pub key: String,
    pub file: String,
}

impl Put {
    /// Reads `BUCKET/KEY=FILE`. Keys hold `=` (Currents' `event_type=…/date=…`): the file is
    /// after the last one.
    pub fn parse(put: &str) -> Result<Put, String> {
        let parsed = put
            .rsplit_once('=')
            .and_then(|(target, file)| Some((target.split_once('/')?, file)));
        match parsed {
            Some(((bucket, key), file)) if !bucket.is_empty() && !key.is_empty() => Ok(Put {
                bucket: bucket.into(),
                key: key.into(),
                file: file.into(),
            }),
            _ => Err(format!("--put takes BUCKET/KEY=FILE, not {put:?}")),
        }
    }
}

/// Reads every `--put`; the first that is not `BUCKET/KEY=FILE` is the error.
pub fn parse_puts(puts: &[String]) -> Result<Vec<Put>, String> {
    puts.iter().map(|p| Put::parse(p)).collect()
}

/// Why uploading the `--put` files failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// A file cannot be read (a usage error).
    #[error("{0}")]
    Unreadable(String),
    /// The server did not take it.
    #[error("{0}")]
    Upload(String),
}

impl PutError {
    /// The servers' exit status: 2 for a file that cannot be read, 1 for a failed upload.
    pub fn exit_code(&self) -> i32 {
        match self {
            PutError::Unreadable(_) => 2,
            PutError::Upload(_) => 1,
        }
    }
}

/// Uploads each file to its key (creating the bucket first), in order.
pub async fn put_files(client: &aws_sdk_s3::Client, puts: &[Put]) -> Result<(), PutError> {
    for put in puts {
        let _ = client.create_bucket().bucket(&put.bucket).send().await;
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&put.file)
            .await
            .map_err(|e| PutError::Unreadable(format!("cannot read {}: {e}", put.file)))?;
        let sent = client.put_object().bucket(&put.bucket).key(&put.key);
        sent.body(body)
            .send()
            .await
            .map_err(|e| PutError::Upload(format!("uploading {} failed: {e:?}", put.file)))?;
    }
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What `s3s` expects of an `async_trait` method, spelled out (this crate does not depend on
/// the `async-trait` macro).
pub type Reply<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// `s3s-fs` with long keys stored under short names (see the module documentation). Only the
/// operations the fetcher and the demo use are served; the others answer `NotImplemented`.
struct ShortKeys {
    fs: s3s_fs::FileSystem,
    /// Storage name → real key, for the keys that were shortened.
    long_keys: Mutex<HashMap<String, String>>,
}

/// Where shortened keys are stored.
const LONG_KEYS: &str = ".long-keys/";

/// Length of unpadded base64 of `n` bytes.
fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Whether `s3s-fs`'s longest attribute file name for this object fits in 255 bytes:
/// `.bucket-B.object-K.upload-<uuid>.metadata.json`.
fn fits(bucket: &str, key: &str) -> bool {
    const FIXED: usize =
        ".bucket-".len() + ".object-".len() + ".upload-".len() + 36 + ".metadata.json".len();
    FIXED + base64_len(bucket.len()) + base64_len(key.len()) <= 255
}

impl ShortKeys {
    /// The key the object is stored under.
    fn storage_key(&self, bucket: &str, key: &str) -> String {
        if fits(bucket, key) && !key.starts_with(LONG_KEYS) {
            return key.to_string();
        }
        let digest = Sha256::digest(key.as_bytes());
        let mut name = String::from(LONG_KEYS);
        for b in digest {
            name.push_str(&format!("{b:02x}"));
        }
        if let Ok(mut map) = self.long_keys.lock() {
            map.insert(name.clone(), key.to_string());
        }
        name
    }

    /// The real key of a storage key.
    fn real_key(&self, storage: String) -> String {
        self.long_keys
            .lock()
            .ok()
            .and_then(|map| map.get(&storage).cloned())
            .unwrap_or(storage)
    }
}

/// An `s3s-fs` method wrapped: `$this` is the server, `$req` the request, `$body` the answer.
macro_rules! wrapped {
    ($method:ident, $input:ty, $output:ty, |$this:ident, $req:ident| $body:expr) => {
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            #[allow(unused_mut)] mut $req: S3Request<$input>,
        ) -> Reply<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let $this = self;
            Box::pin(async move { $body })
        }
    };
}

/// A method that only needs the key of its input translated.
macro_rules! keyed {
    ($method:ident, $input:ty, $output:ty) => {
        wrapped!($method, $input, $output, |this, req| {
            req.input.key = this.storage_key(&req.input.bucket, &req.input.key);
            this.fs.$method(req).await
        });
    };
}

/// A method whose output names the key again.
macro_rules! keyed_out {
    ($method:ident, $input:ty, $output:ty) => {
        wrapped!($method, $input, $output, |this, req| {
            req.input.key = this.storage_key(&req.input.bucket, &req.input.key);
            let mut resp = this.fs.$method(req).await?;
            resp.output.key = resp.output.key.take().map(|k| this.real_key(k));
            Ok(resp)
        });
    };
}

impl S3 for ShortKeys {
    wrapped!(
        create_bucket,
        CreateBucketInput,
        CreateBucketOutput,
        |this, req| this.fs.create_bucket(req).await
    );
    wrapped!(
        head_bucket,
        HeadBucketInput,
        HeadBucketOutput,
        |this, req| this.fs.head_bucket(req).await
    );

    /// Listed as `s3s-fs` lists them, with the shortened keys listed under their real keys
    /// (prefix and delimiter applied to the real key), added to the listing's last page.
    fn list_objects_v2<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<ListObjectsV2Input>,
    ) -> Reply<'async_trait, ListObjectsV2Output>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let prefix = req.input.prefix.clone().unwrap_or_default();
            let delimiter = req.input.delimiter.clone().filter(|d| !d.is_empty());
            let mut long = req.clone();
            long.input.prefix = Some(LONG_KEYS.to_string());
            long.input.delimiter = None;
            long.input.start_after = None;
            long.input.continuation_token = None;
            let mut resp = self.fs.list_objects_v2(req).await?;
            let out = &mut resp.output;
            let mut contents = out.contents.take().unwrap_or_default();
            contents.retain(|o| !o.key.as_deref().unwrap_or("").starts_with(LONG_KEYS));
            let mut prefixes: std::collections::BTreeSet<String> = out
                .common_prefixes
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.prefix)
                .filter(|p| !p.starts_with(LONG_KEYS))
                .collect();
            if out.is_truncated != Some(true) {
                loop {
                    let page = self.fs.list_objects_v2(long.clone()).await?.output;
                    for mut object in page.contents.unwrap_or_default() {
                        let real = self.real_key(object.key.take().unwrap_or_default());
                        let Some(rest) = real.strip_prefix(prefix.as_str()) else {
                            continue;
                        };
                        if let Some(d) = &delimiter
                            && let Some(at) = rest.find(d.as_str())
                        {
                            prefixes.insert(format!("{prefix}{}", &rest[..at + d.len()]));
                            continue;
                        }
                        object.key = Some(real);
                        contents.push(object);
                    }
                    match page.next_continuation_token {
                        Some(token) if page.is_truncated == Some(true) => {
                            long.input.continuation_token = Some(token);
                        }
                        _ => break,
                    }
                }
            }
            contents.sort_by(|a, b| a.key.cmp(&b.key));
            out.key_count = Some((contents.len() + prefixes.len()) as i32);
            out.contents = (!contents.is_empty()).then_some(contents);
            out.common_prefixes = (!prefixes.is_empty()).then(|| {
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect()
            });
            Ok(resp)
        })
    }

    keyed!(put_object, PutObjectInput, PutObjectOutput);
    keyed!(get_object, GetObjectInput, GetObjectOutput);
    keyed!(head_object, HeadObjectInput, HeadObjectOutput);
    keyed!(delete_object, DeleteObjectInput, DeleteObjectOutput);
    keyed!(upload_part, UploadPartInput, UploadPartOutput);
    keyed!(
        abort_multipart_upload,
        AbortMultipartUploadInput,
        AbortMultipartUploadOutput
    );
    keyed_out!(
        create_multipart_upload,
        CreateMultipartUploadInput,
        CreateMultipartUploadOutput
    );
    keyed_out!(
        complete_multipart_upload,
        CompleteMultipartUploadInput,
        CompleteMultipartUploadOutput
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_keys_are_detected_before_the_file_name_limit() {
        assert!(super::fits("acme-braze-exports", &"k".repeat(100)));
        assert!(!super::fits("acme-braze-exports", &"k".repeat(130)));
        // The limit itself: the longest name s3s-fs builds stays within 255 bytes.
        let bucket = "acme-braze-exports";
        let longest = (0..400)
            .rev()
            .find(|n| super::fits(bucket, &"k".repeat(*n)))
            .unwrap();
        let name_len =
            8 + super::base64_len(bucket.len()) + 8 + super::base64_len(longest) + 8 + 36 + 14;
        assert!(name_len <= 255 && name_len > 250, "{longest} {name_len}");
    }
}
