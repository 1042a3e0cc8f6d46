//! The real server binary under an HTTP fuzzer (droppr-proof): random methods, targets, headers
//! and bodies; chunks with lying lengths, cut bodies and odd range syntax for sessions whose
//! bytes the fuzzer knows; opens with hostile names. No 5xx but 507, no panic, no range recorded
//! that was not fully received, nothing written outside the data directory. Bounded in cases and
//! time. Also: names percent-encoded as the page does come back as the path validator cleans them.

use std::path::Path;
use std::time::Duration;

use droppr_client::http::percent_encode;
use droppr_proof::fuzz::{self, files_outside, FuzzConfig};
use droppr_proof::server::ServerProcess;
use droppr_proof::wire::request;
use droppr_server::validate::{check_name, RelPath};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const BIN: &str = env!("CARGO_BIN_EXE_droppr-server");

/// This build's server, or `DROPPR_TEST_SERVER_BIN` (to show a test failing with a defence removed).
fn server_bin() -> std::path::PathBuf {
    std::env::var_os("DROPPR_TEST_SERVER_BIN").map_or_else(|| BIN.into(), Into::into)
}

#[test]
fn the_server_survives_random_and_hostile_requests_and_keeps_its_promises() {
    let root = tempfile::Builder::new()
        .prefix("proofnet-fuzz")
        .tempdir()
        .expect("tempdir");
    let data = root.path().join("data");
    let canary = root.path().join("canary");
    std::fs::create_dir_all(&canary).expect("canary dir");
    // Opens ask for real space: a cap keeps hostile sizes from filling the disk.
    let mut server =
        ServerProcess::new(&server_bin(), &data, &["--max-file-size", "16777216"]).expect("server");
    let hash = server.create_link("fuzz", &[]).expect("link");
    server.start().expect("start");
    let config = FuzzConfig {
        seed: std::env::var("DROPPR_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_261_128),
        cases: 3000,
        time_limit: Duration::from_secs(25),
        hash,
        tracked_sessions: 4,
        max_file: 128 * 1024,
        canaries: vec![
            canary.clone(),
            Path::new("/tmp/proofnet-fuzz-canary").to_owned(),
        ],
    };
    let report = fuzz::run(server.addr(), &config, &data.join("files/fuzz")).expect("fuzz run");
    println!(
        "# http fuzz (seed {}): {} cases, statuses {:?}, {} without answer, {} tracked sessions complete, {} tracked bytes received",
        config.seed,
        report.cases,
        report.by_status,
        report.no_answer,
        report.tracked_complete,
        report.tracked_bytes_received
    );
    assert!(report.cases >= 300, "too few cases ran: {}", report.cases);
    assert!(
        report.tracked_bytes_received > 0,
        "no tracked chunk was ever accepted: the range check proves nothing"
    );
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(server.panics().is_empty(), "{:?}", server.panics());
    assert!(server.running(), "the server died");
    let outside = files_outside(root.path(), &[&data, server.log_path()]).expect("walk");
    assert!(
        outside.is_empty(),
        "written outside the data directory: {outside:?}"
    );
    assert!(!Path::new("/tmp/proofnet-fuzz-canary").exists());
    let stored = files_outside(&data.join("files"), &[&data.join("files/fuzz")]).expect("walk");
    assert!(
        stored.is_empty(),
        "files outside the link's folder: {stored:?}"
    );
}

fn server_with_link() -> (tempfile::TempDir, ServerProcess, String) {
    let root = tempfile::Builder::new()
        .prefix("proofnet-names")
        .tempdir()
        .expect("tempdir");
    let mut server =
        ServerProcess::new(&server_bin(), &root.path().join("data"), &[]).expect("server");
    let hash = server.create_link("names", &[]).expect("link");
    server.start().expect("start");
    (root, server, hash)
}

/// A zero-byte file completes when opened, so its stored path shows how the name was decoded.
#[test]
fn percent_encoded_names_decode_to_what_the_path_validator_makes_of_them() {
    let (_root, server, hash) = server_with_link();
    let target = format!("/api/droppr/requests/{hash}/upload-chunk");
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let names = "[a-zA-Z0-9 ._/\\\\%:\u{e9}\u{4e2d}\u{1f600}\u{7}-]{1,40}";
    runner
        .run(&names, |name| {
            let r = request(
                server.addr(),
                "POST",
                &target,
                &[
                    ("X-Upload-Length", "0".into()),
                    ("X-Upload-Path", percent_encode(&name)),
                ],
                &[],
            )
            .expect("an answer");
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            if name.trim().is_empty() {
                // Blank: as if no name was sent at all.
                prop_assert_eq!(r.head.status(), 400);
                prop_assert_eq!(body["code"].as_str(), Some("missing-name"));
                return Ok(());
            }
            // What the server accepts: a clean path whose names are portable.
            let accepted = RelPath::parse(&name).and_then(|p| check_name(&p, false).map(|()| p));
            match accepted {
                Ok(clean) => {
                    if r.head.status() == 409 {
                        // An earlier name left a file where this one's folder would be.
                        prop_assert_eq!(body["code"].as_str(), Some("path-conflict"));
                        prop_assert!(clean.parent().is_some());
                        return Ok(());
                    }
                    prop_assert_eq!(r.head.status(), 201, "{}", body);
                    // An existing name gets a " (n)" suffix.
                    let path = body["path"].as_str().unwrap_or_default();
                    let stem = clean
                        .as_str()
                        .rsplit_once('.')
                        .map_or(clean.as_str(), |(s, _)| s);
                    prop_assert!(
                        path == clean.as_str() || path.starts_with(&format!("{stem} (")),
                        "{} stored as {}",
                        clean.as_str(),
                        path
                    );
                }
                Err(_) => {
                    prop_assert_eq!(r.head.status(), 400);
                    prop_assert_eq!(body["code"].as_str(), Some("bad-path"));
                }
            }
            Ok(())
        })
        .expect("names round-trip");
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}

/// Found by the name round trip above: a file `_`, then a file `_/A`, whose folder is in the way
/// of the first file. Either answer is fine but a 500.
#[test]
fn a_folder_where_a_file_already_is_is_no_server_error() {
    let (_root, server, hash) = server_with_link();
    let target = format!("/api/droppr/requests/{hash}/upload-chunk");
    for name in ["_", "_/A", "B/c", "B"] {
        let r = request(
            server.addr(),
            "POST",
            &target,
            &[
                ("X-Upload-Length", "0".into()),
                ("X-Upload-Path", percent_encode(name)),
            ],
            &[],
        )
        .expect("an answer");
        println!(
            "# {name}: HTTP {} {}",
            r.head.status(),
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.head.status() < 500,
            "{name}: HTTP {} {}",
            r.head.status(),
            String::from_utf8_lossy(&r.body)
        );
    }
}
