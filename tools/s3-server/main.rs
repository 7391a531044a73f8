//! `s3-server`: the benchmark's local S3 endpoints (`scripts/bench.sh`). A development tool, built
//! as a Cargo example so that no build users ship carries it:
//!
//! ```text
//! cargo build --release --example s3-server
//! target/release/examples/s3-server --root DIR [--put BUCKET/KEY=FILE]... [--plain]
//! ```
//!
//! It serves DIR over the S3 protocol on a loopback port, after uploading the given files, prints
//! `ready <endpoint>` and serves until the process is stopped. Requests must be signed with
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (default `local` / `local-secret`). Without
//! `--plain` the backend is s3s-fs, as in `export-fetcher demo`; with it, the lean plain-file
//! backend of [`plain`] (BENCHMARKS.md, "The S3 path", says why the benchmark needs it).
//!
//! Exit status: 1 when the server cannot start or an upload fails, 2 for bad arguments.

mod plain;

use std::path::PathBuf;

use clap::Parser;
use export_fetcher::demo::server::{Server, local_client, parse_puts, put_files};

use plain::PlainStore;

#[derive(Debug, Parser)]
#[command(
    name = "s3-server",
    about = "Serve a folder as a local S3 endpoint (the benchmark's servers)"
)]
struct Args {
    /// The folder that holds the buckets.
    #[arg(long)]
    root: PathBuf,
    /// Upload FILE as BUCKET/KEY first (the bucket is created); repeatable.
    #[arg(long = "put", value_name = "BUCKET/KEY=FILE")]
    puts: Vec<String>,
    /// Serve with the lean plain-file backend instead of s3s-fs (opaque ETags, no MD5, multipart
    /// objects kept as their part files; state in memory).
    #[arg(long)]
    plain: bool,
}

#[tokio::main]
async fn main() {
    std::process::exit(run(Args::parse()).await);
}

/// Serves until the process is stopped; returns only on an error, with the exit status.
async fn run(args: Args) -> i32 {
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "local".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "local-secret".into());
    let puts = match parse_puts(&args.puts) {
        Ok(puts) => puts,
        Err(e) => {
            eprintln!("s3-server: {e}");
            return 2;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.root) {
        eprintln!("s3-server: cannot create {}: {e}", args.root.display());
        return 2;
    }
    let started = if args.plain {
        match PlainStore::new(&args.root) {
            Ok(store) => Server::serve(store, &key, &secret).await,
            Err(e) => Err(format!("cannot serve {}: {e}", args.root.display())),
        }
    } else {
        Server::start(&args.root, &key, &secret).await
    };
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("s3-server: {e}");
            return 1;
        }
    };
    if let Err(e) = put_files(&local_client(&server.endpoint(), &key, &secret), &puts).await {
        eprintln!("s3-server: {e}");
        return e.exit_code();
    }
    println!("ready {}", server.endpoint());
    std::future::pending::<()>().await;
    server.stop().await;
    0
}

#[cfg(test)]
mod tests {
    use export_fetcher::config::Config;
    use export_fetcher::demo;

    use super::*;

    /// `export-fetcher demo`'s checks against the plain-file backend: every sample gets the status
    /// it should, duplicates are recognised, and every manifest and part downloads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn demo_runs_end_to_end_on_the_plain_backend() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("plain");
        std::fs::create_dir_all(&root).unwrap();
        let store = PlainStore::new(&root).unwrap();
        let server = Server::serve(store, demo::ACCESS_KEY, demo::SECRET_KEY)
            .await
            .unwrap();
        let ok = demo::against(
            Config::default(),
            &server,
            "plain files",
            &root,
            dir.path(),
            false,
        )
        .await;
        server.stop().await;
        assert_eq!(ok, Ok(true), "a sample did not get the status it should");
    }

    /// A `--put` that is not BUCKET/KEY=FILE is a usage error, found before anything is created.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_put_arguments_are_refused_before_serving() {
        let dir = tempfile::tempdir().unwrap();
        for put in ["no-equals-sign", "no-slash=file"] {
            let args = Args {
                root: dir.path().join("root"),
                puts: vec![put.into()],
                plain: true,
            };
            assert_eq!(run(args).await, 2, "{put}");
        }
        assert!(!dir.path().join("root").exists(), "refused before any work");
    }
}
