//! `export-fetcher demo` (being written).

use crate::config::Config;

/// Runs the demo; returns the exit status.
pub async fn run(_cfg: Config) -> i32 {
    eprintln!("export-fetcher: demo is not built yet");
    1
}
