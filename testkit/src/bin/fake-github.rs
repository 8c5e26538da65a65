//! `fake-github`: the testkit's `FakeGithub` as a process, for scripts
//! that need a GitHub on loopback (the ship checks in
//! `scripts/check-ship.sh`).
//!
//! ```text
//! fake-github [--addr 127.0.0.1:0] [--no-recordings] [--json PATH JSON]...
//! ```
//!
//! `--json PATH JSON` serves `JSON` at `PATH` as GitHub serves JSON (200,
//! an ETag, rate-limit headers); `PATH` may be a pattern such as
//! `/repos/*/*/pulls`. Once it serves, it prints `PORT=NNNN` and then
//! `URL=http://127.0.0.1:NNNN` on stdout, and serves until it is killed.
//! Scripts read what it saw from `GET /__requests`, and switch faults on
//! and off while it serves with `POST /__faults` (a JSON body such as
//! `{"fault": "status", "status": 502}`) and `DELETE /__faults` (see the
//! crate's `github` module; `bench/soak.sh` uses both).

use std::io::Write;
use std::net::SocketAddr;

use chimney_testkit::github::{FakeGithub, Options};
use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "A fake GitHub REST API on loopback, serving recorded and given responses")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Leave out the recorded octokit responses.
    #[arg(long)]
    no_recordings: bool,
    /// Serve JSON at a path (or pattern); repeatable.
    #[arg(long, num_args = 2, value_names = ["PATH", "JSON"])]
    json: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut bodies = Vec::new();
    for pair in args.json.chunks_exact(2) {
        let body: serde_json::Value = serde_json::from_str(&pair[1])
            .map_err(|e| format!("--json {}: not JSON: {e}", pair[0]))?;
        bodies.push((pair[0].clone(), body));
    }
    let github = FakeGithub::start_with(Options {
        addr: args.addr,
        recordings: !args.no_recordings,
    })
    .await?;
    for (path, body) in &bodies {
        github.set_json(path, body);
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "PORT={}", github.addr().port())?;
    writeln!(stdout, "URL={}", github.origin())?;
    stdout.flush()?;
    // The fake serves from a task of this runtime, until the process is
    // killed.
    std::future::pending().await
}
