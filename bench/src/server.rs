//! The real release server as a child process: started on a free loopback port (learned from its
//! `listening on http://ADDR` line), watched through `/proc`, stopped by its PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{BenchError, Result};

#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// Creates an upload link that takes any file; returns its hash.
pub fn create_link(bin: &Path, data_dir: &Path, folder: &str) -> Result<String> {
    create_link_with(bin, data_dir, folder, &[])
}

/// [`create_link`] with more `request create` flags (e.g. `--database URL`).
pub fn create_link_with(
    bin: &Path,
    data_dir: &Path,
    folder: &str,
    extra: &[&str],
) -> Result<String> {
    let out = Command::new(bin)
        .args(["request", "create", "--folder", folder, "--extensions", "*"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(BenchError::Server(format!(
            "request create failed: {}",
            out.status
        )));
    }
    let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    created["hash"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Server("request create printed no hash".into()))
}

impl ServerProcess {
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| BenchError::Server("no stderr pipe".into()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, addr_rx) = mpsc::channel();
        let lines = log.clone();
        // Drains the log for the server's whole life (a full pipe would stall it).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(addr) = line
                    .split("listening on http://")
                    .nth(1)
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                {
                    let _ = found.send(addr);
                }
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok(Self { child, addr, log }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(BenchError::Server(format!(
                    "{} did not say where it listens within 30 s",
                    bin.display()
                )))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|k| k * 1024)
    }

    /// User + system CPU seconds so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(self.pid())
    }

    /// The `micros=` of every `upload complete` line logged so far.
    pub fn completion_micros(&self) -> Vec<u64> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|l| l.contains("upload complete"))
            .filter_map(|l| {
                l.split("micros=")
                    .nth(1)?
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Waits up to `timeout` for `count` completions in the log.
    pub fn wait_completions(&self, count: usize, timeout: Duration) -> Vec<u64> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let seen = self.completion_micros();
            if seen.len() >= count || std::time::Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log[log.len().saturating_sub(n)..].to_vec()
    }

    /// Stops the server (this child, by its PID) and waits for it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// User + system CPU seconds of process `pid` so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A fresh directory for one scenario, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(parent: &Path, name: &str) -> Result<Self> {
        let dir = parent.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening"),
            "2026  INFO listening"
        );
    }
}
