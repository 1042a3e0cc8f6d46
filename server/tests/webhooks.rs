//! Upload events reach a real webhook receiver on loopback, signed, once; they survive a receiver
//! that is down and a server that is killed meanwhile (the outbox is in the metadata database);
//! the hook command gets them on its standard input.

mod common;

use std::time::Duration;

use common::receiver::{Delivery, Receiver};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "test-webhook-secret-0123";

fn webhook_flags(url: &str) -> Vec<String> {
    [
        "--webhook-url",
        url,
        "--webhook-secret",
        SECRET,
        "--hook-retry-secs",
        "0.2",
        "--hook-retry-max-secs",
        "0.5",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(flags: &[String]) -> Server {
    Server::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Asserts the signature is the HMAC-SHA256 of the body under the secret, and the headers agree
/// with the body; returns the event.
fn verified(d: &Delivery) -> Value {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&d.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        d.header("x-droppr-signature"),
        Some(format!("sha256={expected}").as_str())
    );
    assert_eq!(d.path, "/hook");
    assert_eq!(d.header("content-type"), Some("application/json"));
    let event = d.json();
    assert_eq!(d.header("x-droppr-event"), event["type"].as_str());
    assert_eq!(d.header("x-droppr-event-id"), event["id"].as_str());
    event
}

fn wait_deliveries(receiver: &Receiver, n: usize) -> Vec<Delivery> {
    wait_until(&format!("{n} deliveries"), || {
        receiver.deliveries().len() >= n
    });
    receiver.deliveries()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events:?}"))
}

#[test]
fn completed_failed_and_aborted_uploads_are_posted_signed() {
    let receiver = Receiver::start();
    let server = start(&webhook_flags(&receiver.url()));
    let hash = server.open_request();
    let data = pseudo_random(11, 200 * KIB);
    let done = server.upload(&hash, "report.bin", &data, 64 * KIB);
    let done_id = done["upload_id"].as_str().expect("id").to_owned();
    let gone = id_of(&server.open(&hash, "gone.bin", 50));
    assert_eq!(
        server
            .req("DELETE", &upload_url(&hash))
            .header("X-Upload-Id", &gone)
            .send()
            .status,
        204
    );
    let videos = hash_of(&server.create_request(&["--extensions", "mp4"]));
    let fake = pseudo_random(12, 1000);
    let fake_id = id_of(&server.open(&videos, "clip.mp4", fake.len()));
    server
        .chunk(&videos, &fake_id, &fake, 0, fake.len() - 1)
        .assert_error(415, "content-mismatch");

    let events: Vec<Value> = wait_deliveries(&receiver, 3).iter().map(verified).collect();
    let completed = of_type(&events, "upload.completed");
    assert_eq!(completed["request"], hash.as_str());
    assert_eq!(completed["folder"], FOLDER);
    assert_eq!(completed["path"], "report.bin");
    assert_eq!(completed["size"], data.len());
    assert_eq!(completed["received_bytes"], data.len());
    assert_eq!(completed["upload_id"], done_id.as_str());
    // The whole-file composite over the four 64 KiB-sized parts, computed here from the file.
    let parts: Vec<(usize, usize)> = (0..data.len())
        .step_by(64 * KIB)
        .map(|s| (s, (s + 64 * KIB).min(data.len()) - 1))
        .collect();
    assert_eq!(completed["checksum"], composite(&data, &parts).as_str());
    assert_eq!(completed["checksum"], done["checksum"]);
    assert!(
        completed["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{completed}"
    );
    let stored = std::fs::read(
        server
            .data_dir()
            .join("files")
            .join(FOLDER)
            .join("report.bin"),
    )
    .expect("the file the event names");
    assert_eq!(stored, data);
    let aborted = of_type(&events, "upload.aborted");
    assert_eq!(
        (aborted["upload_id"].as_str(), aborted["size"].as_u64()),
        (Some(gone.as_str()), Some(50))
    );
    let failed = of_type(&events, "upload.failed");
    assert_eq!(failed["upload_id"], fake_id.as_str());
    assert_eq!(
        failed["checksum"],
        Value::Null,
        "a failed upload has no checksum"
    );
    assert_eq!(failed["path"], "clip.mp4");
    assert!(
        failed["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    // Once each.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        receiver.deliveries().len(),
        3,
        "{:?}",
        receiver.deliveries()
    );
}

#[test]
fn an_idle_upload_that_expires_is_posted() {
    let receiver = Receiver::start();
    let mut flags = webhook_flags(&receiver.url());
    flags.extend(["--session-ttl-hours", "0.0003", "--sweep-secs", "1"].map(str::to_owned));
    let server = start(&flags);
    let hash = server.open_request();
    let id = id_of(&server.open(&hash, "idle.bin", 4096));
    let event = verified(&wait_deliveries(&receiver, 1)[0]);
    assert_eq!(event["type"], "upload.expired");
    assert_eq!(event["upload_id"], id.as_str());
    assert_eq!(event["received_bytes"], 0);
}

#[test]
fn events_wait_out_a_receiver_outage_and_server_restarts() {
    let mut receiver = Receiver::down();
    let mut server = start(&webhook_flags(&receiver.url()));
    let hash = server.open_request();
    let data = pseudo_random(21, 100 * KIB);
    let done = id_of(&server.upload(&hash, "during-outage.bin", &data, 40 * KIB));
    let gone = id_of(&server.open(&hash, "aborted-during-outage.bin", 10));
    assert_eq!(
        server
            .req("DELETE", &upload_url(&hash))
            .header("X-Upload-Id", &gone)
            .send()
            .status,
        204
    );
    let failures = |s: &Server| s.log_lines("hook delivery failed").len();
    wait_until("retries against the receiver that is down", || {
        failures(&server) >= 4
    });
    // Killed while the events are still undelivered; the new process takes them up.
    server.restart();
    let before = failures(&server);
    wait_until("retries after the restart", || failures(&server) > before);
    receiver.resume();
    let events: Vec<Value> = wait_deliveries(&receiver, 2).iter().map(verified).collect();
    assert_eq!(
        of_type(&events, "upload.completed")["upload_id"],
        done.as_str()
    );
    assert_eq!(
        of_type(&events, "upload.aborted")["upload_id"],
        gone.as_str()
    );
    // Delivered once: not again later, nor after another restart.
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        receiver.deliveries().len(),
        2,
        "{:?}",
        receiver.deliveries()
    );
}

#[test]
fn the_hook_command_reads_the_event_and_is_retried_until_it_succeeds() {
    let dir = tempfile::Builder::new()
        .prefix("ops-hook-")
        .tempdir()
        .expect("temp dir");
    let d = dir.path().display();
    let script = format!(
        "test -e {d}/ok || {{ echo not yet >&2; exit 3; }}; cat >> {d}/events.jsonl; \
         echo \"$DROPPR_EVENT ${{DROPPR_ADMIN_TOKEN:-no-secrets}}\" >> {d}/env.txt"
    );
    let server = Server::start_with_env(
        &[
            "--hook-command",
            &script,
            "--hook-retry-secs",
            "0.2",
            "--hook-retry-max-secs",
            "0.4",
        ],
        &[("DROPPR_ADMIN_TOKEN", Some("admin-token-not-for-hooks"))],
    );
    let hash = server.open_request();
    let data = pseudo_random(31, 10 * KIB);
    let id = id_of(&server.upload(&hash, "by-command.bin", &data, 4 * KIB));
    wait_until("a failed attempt", || {
        server
            .log_lines("hook delivery failed")
            .iter()
            .any(|l| l.contains("not yet"))
    });
    std::fs::write(dir.path().join("ok"), b"").expect("let the command succeed");
    let events_file = dir.path().join("events.jsonl");
    wait_until("the event on the command's stdin", || events_file.exists());
    std::thread::sleep(Duration::from_millis(800));
    let lines: Vec<Value> = std::fs::read_to_string(&events_file)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "upload.completed");
    assert_eq!(lines[0]["upload_id"], id.as_str());
    assert_eq!(lines[0]["size"], data.len());
    let parts = [
        (0, 4 * KIB - 1),
        (4 * KIB, 8 * KIB - 1),
        (8 * KIB, data.len() - 1),
    ];
    assert_eq!(lines[0]["checksum"], composite(&data, &parts).as_str());
    let env = std::fs::read_to_string(dir.path().join("env.txt")).expect("env");
    assert_eq!(env.trim(), "upload.completed no-secrets");
}
