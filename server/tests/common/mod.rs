//! Harness shared by the server's integration tests: the real `droppr-server` binary as a child
//! process on a fresh data directory, the CLI to create upload requests, a tiny HTTP client
//! ([`http`]), deterministic file contents ([`data`]), and views of the stored state (part files,
//! finished files, the SQLite metadata: [`state`]) to check that refused input changes nothing.

// Each test binary uses its own share of the harness.
#![allow(dead_code)]

pub mod data;
pub mod http;
pub mod receiver;
pub mod state;
pub mod tus;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

// Each test binary uses its own share of these.
#[allow(unused_imports)]
pub use data::*;
pub use http::{percent_encode, Req, Response};
#[allow(unused_imports)]
pub use state::Snapshot;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

const BIN: &str = env!("CARGO_BIN_EXE_droppr-server");

/// The binary under test: this build's, or `DROPPR_TEST_SERVER_BIN` (to show that a test fails
/// against an older server, or with a defence removed).
fn server_bin() -> String {
    std::env::var("DROPPR_TEST_SERVER_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// The folder every test request uploads into (under `DATA/files/`).
pub const FOLDER: &str = "inbox";

/// A running `droppr-server serve` on 127.0.0.1 with its own data directory.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    data: tempfile::TempDir,
    flags: Vec<String>,
    /// Environment changes after the defaults: a value to set, or none to remove the variable.
    env: Vec<(String, Option<String>)>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `serve --test-hooks` with the given extra flags.
    pub fn start(flags: &[&str]) -> Server {
        Self::start_in_with_env(&std::env::temp_dir(), flags, &[])
    }

    /// [`Server::start`] with environment changes applied after the defaults (`RUST_LOG=info`,
    /// `NO_COLOR=1`): `Some(value)` sets a variable, `None` removes it.
    pub fn start_with_env(flags: &[&str], env: &[(&str, Option<&str>)]) -> Server {
        Self::start_in_with_env(&std::env::temp_dir(), flags, env)
    }

    /// Like [`Server::start`], with the data directory inside `parent` (e.g. a small filesystem).
    pub fn start_in(parent: &Path, flags: &[&str]) -> Server {
        Self::start_in_with_env(parent, flags, &[])
    }

    fn start_in_with_env(parent: &Path, flags: &[&str], env: &[(&str, Option<&str>)]) -> Server {
        let data = tempfile::Builder::new()
            .prefix("droppr-test-")
            .tempdir_in(parent)
            .expect("temporary data directory");
        let mut server = Server {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
            log: Arc::default(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = droppr_command();
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["--bind", "127.0.0.1:0", "--test-hooks"])
            .args(&self.flags)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (name, value) in &self.env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start droppr-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        // Learn the port from the log, then keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                log.lock().expect("log lock").push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => self.addr = addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start:\n{}", self.log_text());
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the server");
            child.wait().expect("reap the server");
        }
    }

    /// SIGTERM, then waits (at most `limit`) for the process to exit; returns how long that took
    /// and whether it exited successfully. Panics if it is still running after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> (Duration, bool) {
        let mut child = self.child.take().expect("server running");
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM failed");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return (sent.elapsed(), status.success());
            }
            if sent.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server was still running {limit:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new server process on the same data directory (killing the old one first if needed).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Peak resident memory of the server process (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    // ---- the CLI -------------------------------------------------------------------------------

    /// Runs the binary with `args` and `--data-dir DATA`; returns stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = droppr_command()
            .args(args)
            .arg("--data-dir")
            .arg(self.data.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run droppr-server");
        assert!(
            out.status.success(),
            "droppr-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// `request create --folder inbox ARGS...`; returns the printed request.
    pub fn create_request(&self, args: &[&str]) -> Value {
        let mut all = vec!["request", "create", "--folder", FOLDER];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_str(out.trim()).expect("request create prints JSON")
    }

    /// A request that takes any file type; returns its hash.
    pub fn open_request(&self) -> String {
        hash_of(&self.create_request(&["--extensions", "*"]))
    }

    // ---- HTTP ----------------------------------------------------------------------------------

    pub fn req(&self, method: &str, target: &str) -> Req {
        Req::new(self.addr, method, target)
    }

    pub fn get(&self, target: &str) -> Response {
        self.req("GET", target).send()
    }

    /// Opens a session for `name` of `size` bytes; asserts 201 and returns the status JSON.
    pub fn open(&self, hash: &str, name: &str, size: usize) -> Value {
        self.open_req(hash, name, size).send().ok_json(201)
    }

    pub fn open_req(&self, hash: &str, name: &str, size: usize) -> Req {
        self.req("POST", &upload_url(hash))
            .header("X-Upload-Length", size)
            .header("X-Upload-Name", percent_encode(name))
    }

    /// A chunk carrying `data[start..=end]` with `Content-Range`.
    pub fn chunk_req(&self, hash: &str, id: &str, data: &[u8], start: usize, end: usize) -> Req {
        self.req("PUT", &upload_url(hash))
            .header("X-Upload-Id", id)
            .header(
                "Content-Range",
                format!("bytes {start}-{end}/{}", data.len()),
            )
            .body(&data[start..=end])
    }

    pub fn chunk(&self, hash: &str, id: &str, data: &[u8], start: usize, end: usize) -> Response {
        self.chunk_req(hash, id, data, start, end).send()
    }

    pub fn status(&self, hash: &str, id: &str) -> Response {
        self.req("GET", &upload_url(hash))
            .header("X-Upload-Id", id)
            .send()
    }

    /// The status JSON of a session that must exist.
    pub fn status_json(&self, hash: &str, id: &str) -> Value {
        self.status(hash, id).ok_json(200)
    }

    /// Opens and sends `data` in `chunk`-sized pieces, in order; returns the completing answer.
    pub fn upload(&self, hash: &str, name: &str, data: &[u8], chunk: usize) -> Value {
        let id = id_of(&self.open(hash, name, data.len()));
        let mut last = Value::Null;
        for start in (0..data.len()).step_by(chunk) {
            let end = (start + chunk).min(data.len()) - 1;
            last = self.chunk(hash, &id, data, start, end).ok_json(200);
        }
        assert_eq!(last["complete"], true, "{last}");
        last
    }

    /// The server's per-upload counters (`--test-hooks`).
    pub fn counters(&self, id: &str) -> Value {
        self.get(&format!("/__test/uploads/{id}")).ok_json(200)
    }

    /// Polls the counters until `cond` holds (panics after 30 s).
    pub fn wait_counters(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        wait_until(what, || {
            last = self.counters(id);
            cond(&last)
        });
        last
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- server log (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The binary with none of the caller's `DROPPR_*` settings: only the test's flags count.
pub fn droppr_command() -> Command {
    let mut command = Command::new(server_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DROPPR_") {
            command.env_remove(name);
        }
    }
    command
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

// ---- small helpers -----------------------------------------------------------------------------

pub fn upload_url(hash: &str) -> String {
    format!("/api/droppr/requests/{hash}/upload-chunk")
}

pub fn hash_of(request: &Value) -> String {
    request["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no hash in {request}"))
        .to_owned()
}

pub fn id_of(status: &Value) -> String {
    status["upload_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no upload_id in {status}"))
        .to_owned()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).expect("time fits"))
        .expect("clock after 1970")
}

/// Polls `cond` every few milliseconds until it holds; panics after 30 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
