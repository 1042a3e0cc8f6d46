//! Logs of the real server: JSON lines with a request id on every line of a request (the same id
//! the answer carries in X-Request-Id), no colour codes when stderr is not a terminal, levels from
//! --log-level, and never an upload id (only its tag).

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn tag(upload_id: &str) -> String {
    Sha256::digest(upload_id.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The request id in a JSON log line's spans, if the line belongs to a request.
fn request_id(line: &Value) -> Option<&str> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "request")?["id"]
        .as_str()
}

fn parsed_log(server: &Server) -> Vec<Value> {
    server
        .log_text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
        })
        .collect()
}

#[test]
fn json_lines_carry_the_request_id_of_the_answer_and_no_upload_id() {
    // Not NO_COLOR: stderr being a pipe must be enough to leave colours out.
    let server = Server::start_with_env(&["--log-format", "json"], &[("NO_COLOR", None)]);
    let hash = server.open_request();
    let data = pseudo_random(7, 300 * KIB);
    let opened = server.open_req(&hash, "report.bin", data.len()).send();
    let id = id_of(&opened.ok_json(201));
    let mut answers = vec![opened];
    for (start, end) in [(0, 100 * KIB - 1), (100 * KIB, data.len() - 1)] {
        answers.push(server.chunk_req(&hash, &id, &data, start, end).send());
    }
    // The upload id in a query string must not reach the access log either.
    answers.push(server.get(&format!("{}?upload_id={id}", upload_url(&hash))));
    let aborted = id_of(&server.open(&hash, "gone.bin", 10));
    answers.push(
        server
            .req("DELETE", &upload_url(&hash))
            .header("X-Upload-Id", &aborted)
            .send(),
    );
    answers.push(server.get("/no/such/path"));

    let ids: Vec<String> = answers
        .iter()
        .map(|a| {
            a.header("x-request-id")
                .unwrap_or_else(|| panic!("no X-Request-Id in {:?}", a.headers))
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "ids repeat: {ids:?}"
    );
    // Each request's access line is written before its answer; wait for the reader thread.
    wait_until("access lines of every request", || {
        let log = parsed_log(&server);
        ids.iter().all(|rid| {
            log.iter()
                .any(|l| request_id(l) == Some(rid) && l["message"] == "answered")
        })
    });

    let text = server.log_text();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a piped log:\n{text}"
    );
    for upload in [&id, &aborted] {
        assert!(
            !text.contains(upload.as_str()),
            "upload id {upload} logged:\n{text}"
        );
    }
    let log = parsed_log(&server);
    for line in &log {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    let of =
        |rid: &str| -> Vec<&Value> { log.iter().filter(|l| request_id(l) == Some(rid)).collect() };
    // The opening request: its "upload opened" line has its id and names the upload by tag.
    let opening = of(&ids[0]);
    let opened_line = opening
        .iter()
        .find(|l| l["message"] == "upload opened")
        .unwrap_or_else(|| {
            panic!(
                "no 'upload opened' line for request {}: {opening:?}",
                ids[0]
            )
        });
    assert_eq!(opened_line["upload"], tag(&id), "{opened_line}");
    // The completing chunk: its "upload complete" line too.
    assert!(
        of(&ids[2])
            .iter()
            .any(|l| l["message"] == "upload complete" && l["upload"] == tag(&id)),
        "no tagged 'upload complete' line in request {}",
        ids[2]
    );
    // Access lines: status and the route pattern, never the query.
    let status_line = of(&ids[3])
        .into_iter()
        .find(|l| l["message"] == "answered")
        .expect("access line");
    assert_eq!(status_line["status"], 200);
    assert_eq!(status_line["method"], "GET");
    assert_eq!(
        status_line["route"],
        "/api/droppr/requests/{hash}/upload-chunk"
    );
    let missing = of(&ids[5])
        .into_iter()
        .find(|l| l["message"] == "answered")
        .expect("404 line");
    assert_eq!(
        (missing["status"].as_u64(), missing["code"].as_str()),
        (Some(404), Some("not-found"))
    );
    // Lines outside requests (start-up) have no request id.
    assert!(log.iter().any(|l| request_id(l).is_none()
        && l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on"))));
}

#[test]
fn text_logs_have_no_colours_off_a_terminal_and_follow_the_level() {
    let quiet = Server::start_with_env(
        &["--log-level", "warn,droppr_server=info"],
        &[("NO_COLOR", None), ("RUST_LOG", Some("debug"))],
    );
    let loud = Server::start_with_env(&[], &[("NO_COLOR", None)]);
    for server in [&quiet, &loud] {
        let answer = server.get("/healthz");
        assert_eq!(answer.status, 200);
    }
    wait_until("the access line of the loud server", || {
        !loud.log_lines("answered").is_empty()
    });
    let text = loud.log_text();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a piped log:\n{text}"
    );
    assert!(text.contains(" INFO "), "{text}");
    // --log-level beats RUST_LOG: no access lines (info, droppr::http), no debug lines.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let quiet_text = quiet.log_text();
    assert!(quiet.log_lines("answered").is_empty(), "{quiet_text}");
    assert!(!quiet_text.contains("DEBUG"), "{quiet_text}");
    assert!(quiet_text.contains("listening on"), "{quiet_text}");
}
