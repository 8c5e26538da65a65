//! Runs every cargo-fuzz target's check (fuzz/src/lib.rs) over its seed
//! corpus in fuzz/corpus/<target>, on stable, so the targets' code is
//! compiled and exercised by the ordinary test command and cannot rot.
//! Fuzzing itself needs nightly: see README, Testing.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::path::Path;

fn each_seed(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        check(&std::fs::read(&path).expect("a readable seed"));
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {}", dir.display());
}

#[test]
fn path_seeds() {
    each_seed("path", fuzz_checks::path);
}

#[test]
fn query_seeds() {
    each_seed("query", fuzz_checks::query);
}

#[test]
fn etag_seeds() {
    each_seed("etag", fuzz_checks::etag);
}

#[test]
fn link_seeds() {
    each_seed("link", fuzz_checks::link);
}

#[test]
fn deploy_event_seeds() {
    each_seed("deploy_event", fuzz_checks::deploy_event);
}

#[test]
fn ttl_seeds() {
    each_seed("ttl", fuzz_checks::ttl);
}
