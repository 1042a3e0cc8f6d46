//! The write buffer budget (`--write-buffer-budget`): the bytes all chunks in flight hold between
//! the socket and the disk. A server with the smallest budget still takes many chunks at once,
//! byte-identical; a client that stalls mid-chunk cannot sit on the budget (nor open its file
//! for a few bytes); a bad value is
//! refused at start-up with a message that names the option.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http::Pending;
use common::*;

/// The smallest budget the server accepts: one 64 KiB batch for the whole process.
const TINY: &str = "65536";

#[test]
fn the_smallest_budget_takes_many_chunks_at_once_byte_identical() {
    let server = Server::start(&[
        "--write-buffer-budget",
        TINY,
        "--max-chunks-in-flight",
        "32",
    ]);
    let hash = server.open_request();
    let chunk = MIB;
    let size = 32 * chunk - 5;
    let data = pseudo_random(31, size);
    let id = id_of(&server.open(&hash, "tiny-budget.bin", size));
    let rss_before = server.rss_kib();

    // Every chunk sends half its body, so all 32 are inside the server, sharing 64 KiB.
    let mut held: Vec<Pending> = (0..32)
        .map(|i| {
            let start = i * chunk;
            let end = (start + chunk).min(size) - 1;
            server
                .chunk_req(&hash, &id, &data, start, end)
                .header("X-Chunk-Sha256", sha256_hex(&data[start..=end]))
                .start((end + 1 - start) / 2)
                .expect("send half a chunk")
        })
        .collect();
    server.wait_counters(&id, "32 chunks in flight", |c| c["in_flight"] == 32);

    let answers = Pending::finish_all(&mut held);
    assert_eq!(
        answers.iter().filter(|a| a["complete"] == true).count(),
        1,
        "exactly one chunk completes the file"
    );
    assert_eq!(
        sha256_hex(&server.stored_file("tiny-budget.bin")),
        sha256_hex(&data)
    );
    eprintln!(
        "figure: server RSS {rss_before} KiB idle, peak (VmHWM) {} KiB after 32 x 1 MiB chunks at once under a 64 KiB budget",
        server.peak_rss_kib()
    );
}

#[test]
fn a_client_stalled_mid_chunk_does_not_hold_the_budget_from_others() {
    // The body timeout is long, so only the server giving the budget back lets the others pass.
    let server = Server::start(&[
        "--write-buffer-budget",
        TINY,
        "--body-read-timeout-secs",
        "600",
        "--min-body-rate",
        "0",
    ]);
    let hash = server.open_request();
    let stalled_data = pseudo_random(41, 2 * MIB);
    let stalled_id = id_of(&server.open(&hash, "stalled.bin", stalled_data.len()));
    // Half of a chunk, then silence: the server has read some of it under the budget.
    let mut stalled = server
        .chunk_req(&hash, &stalled_id, &stalled_data, 0, 2 * MIB - 1)
        .start(MIB + 1000)
        .expect("send half a chunk");
    server.wait_counters(&stalled_id, "the stalled chunk in flight", |c| {
        c["in_flight"] == 1
    });
    // And a body that sends a few bytes and goes quiet: it keeps them aside, without a buffer
    // and without opening its file (a trickle holds no file handle).
    let trickle_data = pseudo_random(42, MIB);
    let trickle_id = id_of(&server.open(&hash, "trickle.bin", trickle_data.len()));
    let mut trickle = server
        .chunk_req(&hash, &trickle_id, &trickle_data, 0, MIB - 1)
        .start(1000)
        .expect("send a few bytes");
    server.wait_counters(&trickle_id, "the trickle in flight", |c| {
        c["in_flight"] == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let open_on = |id: &str| {
        let part = server.part_path(id);
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .expect("fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == part)
            .count()
    };
    assert_eq!(open_on(&trickle_id), 0, "the trickle opened its file");
    assert_eq!(open_on(&stalled_id), 1, "the stalled chunk's file is open");

    // Other uploads go through meanwhile, whole chunks of several batches each.
    let started = Instant::now();
    for i in 0..3u64 {
        let data = pseudo_random(50 + i, 3 * MIB + 17);
        let name = format!("passing-{i}.bin");
        let done = server.upload(&hash, &name, &data, 2 * MIB);
        assert_eq!(done["complete"], true, "{done}");
        assert_eq!(sha256_hex(&server.stored_file(&name)), sha256_hex(&data));
    }
    eprintln!(
        "figure: 3 uploads of 3 MiB took {:?} beside a stalled chunk",
        started.elapsed()
    );

    // The stalled chunks resume and land whole, the bytes set aside included.
    let answer = stalled.finish().expect("finish").ok_json(200);
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(
        sha256_hex(&server.stored_file("stalled.bin")),
        sha256_hex(&stalled_data)
    );
    let answer = trickle.finish().expect("finish").ok_json(200);
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(
        sha256_hex(&server.stored_file("trickle.bin")),
        sha256_hex(&trickle_data)
    );
}

#[test]
fn a_bad_budget_is_refused_at_start_with_the_option_named() {
    let dir = tempfile::Builder::new()
        .prefix("cpu-budget-")
        .tempdir()
        .expect("dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("path");
    for (flag, env, expected) in [
        (
            Some("1000"),
            None,
            "--write-buffer-budget must be at least 65536 bytes",
        ),
        (Some("0"), None, "--write-buffer-budget must be at least"),
        (Some("lots"), None, "invalid value 'lots'"),
        (
            None,
            Some("65535"),
            "--write-buffer-budget must be at least 65536 bytes",
        ),
    ] {
        let mut cmd = droppr_command();
        cmd.args(["serve", "--data-dir", data, "--bind", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(flag) = flag {
            cmd.args(["--write-buffer-budget", flag]);
        }
        if let Some(env) = env {
            cmd.env("DROPPR_WRITE_BUFFER_BUDGET", env);
        }
        let out = exit_within(cmd, Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag:?} {env:?} was accepted");
        assert!(text.contains(expected), "{flag:?} {env:?}: {text}");
    }
    // A refused start leaves no database behind.
    assert!(!std::path::Path::new(data).join("droppr.db").exists());
}

/// Runs `cmd` to its end; kills it (and fails) if it is still running after `limit`.
fn exit_within(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = cmd.spawn().expect("run droppr-server");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("droppr-server did not exit: the bad budget was accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}
