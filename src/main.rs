//! Thin: parse the command line, set up logging, load the configuration (for the commands
//! that use it), run.

use clap::Parser;
use export_fetcher::cli::{self, Cli, Command, EXIT_USAGE};
use export_fetcher::config::Config;

fn init_tracing(command: Option<&Command>) {
    use tracing_subscriber::EnvFilter;
    // Lambda's log controls first, then RUST_LOG; quiet by default on a terminal. `index` says
    // what went wrong in its own summary line, so by default its warnings (the same failures,
    // part by part) are not printed too.
    let default = match command {
        Some(Command::Index { .. }) => "error",
        _ => "warn",
    };
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never in CloudWatch or a captured log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() {
    // Inside Lambda the binary serves the runtime API; anywhere else it is a command line tool.
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let command = if in_lambda {
        None
    } else {
        Some(Cli::parse().command)
    };
    init_tracing(command.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("export-fetcher: cannot start the async runtime: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    std::process::exit(runtime.block_on(run(command)));
}

/// Runs the command (`None`: the Lambda runtime); returns the exit status.
async fn run(command: Option<Command>) -> i32 {
    match command {
        Some(Command::BrazePolicy {
            bucket, currents, ..
        }) => cli::braze_policy(&bucket, currents),
        Some(Command::S3Server { root, port, puts }) => cli::s3_server(root, port, puts).await,
        // The others run the pipeline: only they read the configuration, so that a bad value
        // (a `MAX_*` typo) never blocks `braze-policy` or `s3-server`.
        pipeline => {
            let cfg = match Config::from_env() {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("export-fetcher: {e}");
                    return EXIT_USAGE;
                }
            };
            match pipeline {
                None => match cli::serve_lambda(cfg).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("export-fetcher: the Lambda runtime stopped: {e}");
                        1
                    }
                },
                Some(Command::Index { file, key, out }) => cli::index(file, key, out, cfg).await,
                Some(Command::Invoke { event }) => cli::invoke(event, cfg).await,
                #[cfg(feature = "backfill")]
                Some(Command::Backfill(args)) => cli::backfill(*args, cfg).await,
                Some(Command::Demo) => cli::demo(cfg).await,
                Some(Command::CloseExport { folder }) => cli::close_export(&folder, cfg).await,
                Some(Command::BrazePolicy { .. } | Command::S3Server { .. }) => {
                    unreachable!("matched above")
                }
            }
        }
    }
}
