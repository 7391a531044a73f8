//! Every command the README gives, run as written, in a folder that holds what a fresh clone
//! holds for them (`events/`), with the built `export-fetcher` first on `PATH` (what `cargo
//! install --path .` gives a reader).
//!
//! Commands are the lines of the README's ```` ```sh ```` blocks (a trailing `\` joins lines)
//! and the inline `` `cargo …` ``, `` `sam …` ``, `` `scripts/…` `` and `` `export-fetcher …` ``
//! spans of its prose. Each one is run, or listed in [`NOT_RUN`] with the reason; an entry
//! there that the README no longer has fails the test, so the list stays true. A command that
//! serves until stopped (`export-fetcher s3-server`, which the README runs "in one terminal")
//! is started in the background, waited for until it prints `ready`, and stopped at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::cli_edges::events_dir;
use crate::fixtures::{DEFLATED, users_jsonl, zip_of};
use crate::support::BIN;

/// Commands that are not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run --release -- demo",
        "a release build (about 6 minutes on 2 cores); `export-fetcher demo`, run here from the \
         test build, is the same code",
    ),
    (
        "cargo install --path .",
        "a release build into ~/.cargo/bin; the test build's binary is put first on PATH instead",
    ),
    (
        "./scripts/test.sh",
        "the test suite this test is part of (.ci/run runs it)",
    ),
    ("cargo test", "the test suite this test is part of"),
    (
        "cargo test --features failpoints",
        "what scripts/test.sh runs: the suite this test is part of",
    ),
    (
        "cargo lambda build --release --arm64",
        "docs/DEPLOY.md's build: needs cargo-lambda, zig and the aarch64 Rust target, which CI \
         machines do not have",
    ),
    (
        "sam build && sam deploy --guided",
        "deploys a stack into an AWS account; nothing here may call AWS",
    ),
    (
        "scripts/lint-template.sh",
        ".ci/run runs it (cfn-lint and checkov installed into .venv/)",
    ),
    ("scripts/fuzz.sh", ".ci/run runs it (FUZZ_SECONDS=10)"),
    (
        "scripts/bench.sh",
        "the benchmark: many minutes of load (BENCHMARKS.md)",
    ),
    (
        "cargo bench --bench throughput",
        "the decoders' benchmark: minutes of load (BENCHMARKS.md)",
    ),
    (
        "export-fetcher s3-server",
        "named in prose; run with its flags by the `invoke` recipe",
    ),
    (
        "export-fetcher backfill",
        "named in prose; it needs a bucket (the section's synopsis, docs/DEPLOY.md's walkthrough); \
         tests/it/backfill.rs runs it against moto",
    ),
    (
        "./scripts/sam-build.sh",
        "installs aws-sam-cli, cargo-lambda and ziglang and makes two release builds: about 6.5 \
         minutes cold, so not in CI; run by hand",
    ),
    (
        "cargo lambda build --release",
        "what scripts/sam-build.sh runs (see there)",
    ),
    ("sam build", "what scripts/sam-build.sh runs (see there)"),
    (
        "cargo build --release --example s3-server",
        "a release build of the benchmark's servers; scripts/bench.sh builds and runs it",
    ),
    (
        "URL=$(aws cloudformation describe-stacks --stack-name export-fetcher   --query \"Stacks[0].Outputs[?OutputKey=='ExportCallbackUrl'].OutputValue\" --output text)",
        "reads a deployed stack's outputs: needs an AWS account",
    ),
    (
        "SECRET=$(aws cloudformation describe-stacks --stack-name export-fetcher   --query \"Stacks[0].Outputs[?OutputKey=='ExportCallbackTokenSecretArn'].OutputValue\" --output text)",
        "reads a deployed stack's outputs: needs an AWS account",
    ),
    (
        "TOKEN=$(aws secretsmanager get-secret-value --secret-id \"$SECRET\" --query SecretString --output text)",
        "reads the deployed stack's secret: needs an AWS account",
    ),
    (
        "curl -sS -X POST https://rest.iad-01.braze.com/users/export/segment   -H \"Authorization: Bearer $BRAZE_API_KEY\" -H 'Content-Type: application/json' --data \"$BODY\"",
        "calls Braze's REST API: needs a Braze workspace and API key; tests/it/exports.rs sends \
         the callback Braze then makes",
    ),
    (
        "curl -sS -X POST https://rest.iad-01.braze.com/users/export/global_control_group   -H \"Authorization: Bearer $BRAZE_API_KEY\" -H 'Content-Type: application/json' --data \"$BODY\"",
        "calls Braze's REST API: needs a Braze workspace and API key",
    ),
];

/// Exit statuses other than 0 that the README says a command ends with.
const EXPECTED_EXIT: &[(&str, i32)] = &[(
    "AWS_ENDPOINT_URL=http://127.0.0.1:9000 export-fetcher invoke events/sqs-mixed-with-poison.json",
    1,
)];

/// The commands of the README, in order: `(command, from a sh block)`.
fn readme_commands(readme: &str) -> Vec<(String, bool)> {
    let mut commands = Vec::new();
    let mut fence: Option<String> = None;
    let mut pending = String::new();
    for line in readme.lines() {
        if let Some(info) = line.strip_prefix("```") {
            fence = match fence {
                None => Some(info.trim().to_string()),
                Some(_) => None,
            };
            continue;
        }
        match &fence {
            Some(lang) if lang == "sh" => {
                let code = strip_comment(line);
                if let Some(head) = code.strip_suffix('\\') {
                    pending.push_str(head);
                    continue;
                }
                pending.push_str(&code);
                let command = std::mem::take(&mut pending);
                if !command.trim().is_empty() {
                    commands.push((command.trim().to_string(), true));
                }
            }
            Some(_) => {}
            None => {
                for span in line.split('`').skip(1).step_by(2) {
                    let is_command = [
                        "cargo ",
                        "sam ",
                        "./scripts/",
                        "scripts/",
                        "export-fetcher ",
                    ]
                    .iter()
                    .any(|p| span.starts_with(p));
                    if is_command {
                        commands.push((span.to_string(), false));
                    }
                }
            }
        }
    }
    commands
}

/// The line without a trailing `# comment` (not inside quotes).
fn strip_comment(line: &str) -> String {
    let (mut single, mut double) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (i == 0 || line[..i].ends_with(' ')) => {
                return line[..i].trim_end().to_string();
            }
            _ => {}
        }
    }
    line.trim_end().to_string()
}

/// A shell running `command` in `dir` with the built binary first on `PATH` and nothing of the
/// developer's configuration.
fn shell(dir: &Path, command: &str) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("TMPDIR", dir);
    cmd
}

/// Starts a command that serves until stopped; returns once it printed its `ready` line.
fn start_server(dir: &Path, command: &str) -> Child {
    let mut child = shell(dir, &format!("exec {command}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("ready "),
        "`{command}` did not start (is its port free?): printed {line:?}"
    );
    child
}

/// What a reader has at hand that a clone does not: the export the `index` example names.
fn user_files(dir: &Path) {
    let part = users_jsonl(7, 20);
    let zip = zip_of(&[("users-0.txt", part.bytes.as_slice())], DEFLATED, false);
    std::fs::write(dir.join("export.zip"), zip).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn every_readme_command_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&events_dir(), &dir.path().join("events"));
    user_files(dir.path());

    let mut servers: Vec<Child> = Vec::new();
    let mut ran = Vec::new();
    let run = |command: &str, servers: &mut Vec<Child>| {
        if command.starts_with("export-fetcher s3-server ") {
            servers.push(start_server(dir.path(), command));
            return;
        }
        let out = shell(dir.path(), command).output().unwrap();
        let want = EXPECTED_EXIT
            .iter()
            .find(|(c, _)| *c == command)
            .map_or(0, |(_, code)| *code);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "`{command}`: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(want),
            "`{command}` as the README writes it:\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    for (command, fenced) in &commands {
        if NOT_RUN.iter().any(|(c, _)| c == command) {
            continue;
        }
        if !fenced && commands.iter().any(|(c, f)| *f && c == command) {
            continue; // the same command as a block's: run there
        }
        // The binary's own commands in prose are run too; other tools' must be listed.
        assert!(
            *fenced || command.starts_with("export-fetcher "),
            "the README names `{command}` in its prose: run it here or list it in NOT_RUN \
             with the reason"
        );
        run(command, &mut servers);
        ran.push(command.clone());
    }
    for server in &mut servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    for (command, why) in NOT_RUN {
        assert!(
            commands.iter().any(|(c, _)| c == command),
            "NOT_RUN lists `{command}`, which the README no longer has"
        );
        eprintln!("not run: `{command}`: {why}");
    }
    for command in &ran {
        eprintln!("ran: `{command}`");
    }
    assert!(
        ran.iter()
            .any(|c| c.contains("export-fetcher invoke events/")),
        "the README's invoke recipe ran: {ran:?}"
    );
}

#[test]
fn readme_commands_are_read_as_a_shell_reads_them() {
    let readme = "intro `cargo test` and `pipeline::x`\n```sh\na \\\n  --b 'c # d'  # note\n\n# only a comment\n```\n```text\nnot a command\n```\n";
    assert_eq!(
        readme_commands(readme),
        vec![
            ("cargo test".to_string(), false),
            ("a   --b 'c # d'".to_string(), true)
        ]
    );
}
