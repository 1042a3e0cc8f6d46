//! Configuration of the real binary: a TOML config file under DROPPR_* variables under flags,
//! per-subcommand help, start-up errors that name what failed, and --shutdown-timeout.

mod common;

use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;

/// Runs the binary to completion (it must exit by itself within a minute).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = droppr_command()
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run droppr-server");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("droppr-server {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_file_is_under_variables_which_are_under_flags() {
    let dir = tempfile::Builder::new()
        .prefix("ops-config-")
        .tempdir()
        .expect("dir");
    let file = dir.path().join("droppr.toml");
    std::fs::write(
        &file,
        "# every serve option by its long name\nchunk-size = 131072\nmax_file_size = 1000\nmax-chunk-size = 262144\n",
    )
    .expect("write config");
    let file = file.to_str().expect("UTF-8 path");
    // Flag beats file (chunk size), variable beats file (max file size), file beats default.
    let server = Server::start_with_env(
        &["--config", file, "--chunk-size", "65536"],
        &[("DROPPR_MAX_FILE_SIZE", Some("2000"))],
    );
    let hash = server.open_request();
    let status = server.open(&hash, "fits.bin", 1500);
    assert_eq!(status["chunk_size"], 65536);
    assert_eq!(status["max_chunk_size"], 262_144);
    server
        .open_req(&hash, "too-big.bin", 2500)
        .send()
        .assert_error(413, "file-too-large");

    // One file serves every subcommand: request create skips the serve-only keys.
    let data = dir.path().join("data");
    let out = run(
        &[
            "request",
            "create",
            "--folder",
            "f",
            "--config",
            file,
            "--data-dir",
            data.to_str().expect("path"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A typo in the file is an error that names the file and the key.
    std::fs::write(dir.path().join("typo.toml"), "chunk-sise = 5\n").expect("write");
    let typo = dir.path().join("typo.toml");
    let out = run(&["serve", "--config", typo.to_str().expect("path")], &[]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("typo.toml") && text.contains("'chunk-sise' is not an option"),
        "{text}"
    );
}

#[test]
fn each_subcommand_shows_only_its_own_flags() {
    let help = |args: &[&str]| {
        let out = run(args, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let create = help(&["request", "create", "--help"]);
    for own in [
        "--folder",
        "--password",
        "--data-dir",
        "--config",
        "--public-url",
        "--log-format",
    ] {
        assert!(
            create.contains(own),
            "{own} missing from request create --help:\n{create}"
        );
    }
    for serve_only in [
        "--cors-origins",
        "--workers",
        "--webhook-url",
        "--shutdown-timeout",
        "--max-chunk-size",
        "--sweep-secs",
    ] {
        assert!(
            !create.contains(serve_only),
            "{serve_only} leaks into request create --help:\n{create}"
        );
    }
    let cleanup = help(&["cleanup", "--help"]);
    assert!(
        cleanup.contains("--session-ttl-hours") && !cleanup.contains("--bind"),
        "{cleanup}"
    );
    let serve = help(&["serve", "--help"]);
    for flag in [
        "--shutdown-timeout",
        "--webhook-url",
        "--hook-command",
        "--log-level",
        "--min-free-space",
        "--config",
    ] {
        assert!(
            serve.contains(flag),
            "{flag} missing from serve --help:\n{serve}"
        );
    }
    // A serve flag given to another subcommand is refused, not silently taken.
    let out = run(&["request", "list", "--workers", "2"], &[]);
    assert!(!out.status.success());
}

#[test]
fn start_up_errors_name_what_failed() {
    let dir = tempfile::Builder::new()
        .prefix("ops-start-")
        .tempdir()
        .expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path");

    let busy = TcpListener::bind("127.0.0.1:0").expect("occupy a port");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = run(&["serve", "--data-dir", data_arg, "--bind", &addr], &[]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
    assert!(!text.contains("storage:"), "{text}");
    drop(busy);

    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let out = run(
        &[
            "serve",
            "--data-dir",
            not_a_dir.to_str().expect("path"),
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("data directory") && text.contains("plain-file"),
        "{text}"
    );

    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).expect("dir");
    std::fs::write(broken.join("droppr.db"), vec![0x5a; 8192]).expect("garbage database");
    let out = run(
        &[
            "serve",
            "--data-dir",
            broken.to_str().expect("path"),
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("metadata database") && text.contains("droppr.db"),
        "{text}"
    );
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_requests_in_flight() {
    let mut server = Server::start(&["--shutdown-timeout", "1"]);
    let hash = server.open_request();
    let data = pseudo_random(5, 64 * KIB);
    let id = id_of(&server.open(&hash, "slow.bin", data.len()));
    // A chunk whose body stops half way keeps a request in flight.
    let stuck = server
        .chunk_req(&hash, &id, &data, 0, data.len() - 1)
        .start(1000)
        .expect("send half a chunk");
    server.wait_counters(&id, "the chunk in flight", |c| c["in_flight"] == 1);
    let (took, _) = server.terminate(Duration::from_secs(20));
    // The default grace is 30 s; the flag's 1 s (plus shutting down) must bound it.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the request in flight: {took:?}"
    );
    drop(stuck);
}
