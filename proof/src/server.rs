//! The real `droppr-server` binary as a child process on a loopback port of its own: links
//! created through its command line, SIGKILL and restart on the same data directory and port,
//! and its log kept for inspection (panics).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wire;

/// A server process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    bin: PathBuf,
    data_dir: PathBuf,
    addr: SocketAddr,
    extra: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ServerProcess {
    /// Prepares a server on `data_dir` and a free loopback port; it is not running yet (create
    /// links first, then [`Self::start`]). `extra` are more `serve` options.
    pub fn new(bin: &Path, data_dir: &Path, extra: &[&str]) -> io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        // Absolute: the server runs in the data directory's parent.
        Ok(Self {
            bin: std::fs::canonicalize(bin)?,
            data_dir: std::fs::canonicalize(data_dir)?,
            addr: free_port()?,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            log: data_dir.with_extension("log"),
            child: None,
            starts: 0,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The upload URL of link `hash`.
    pub fn upload_url(&self, hash: &str) -> String {
        format!(
            "http://{}/api/droppr/requests/{hash}/upload-chunk",
            self.addr
        )
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// `droppr-server request create --folder FOLDER --extensions '*'` plus `options`; the hash.
    pub fn create_link(&self, folder: &str, options: &[&str]) -> io::Result<String> {
        let out = self
            .command(&["request", "create"])
            .args(["--folder", folder, "--extensions", "*"])
            .args(options)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("request create: {}", out.status)));
        }
        let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        created["hash"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other("request create printed no hash"))
    }

    /// `droppr-server cleanup` with `options` (e.g. a short `--session-ttl-hours`); its report.
    pub fn cleanup(&self, options: &[&str]) -> io::Result<serde_json::Value> {
        let out = self
            .command(&["cleanup"])
            .args(options)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("cleanup: {}", out.status)));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// `droppr-server SUBCOMMAND --data-dir DIR [--bind ADDR]` (options follow the subcommand;
    /// `cleanup` takes no address).
    fn command(&self, subcommand: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(subcommand)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null());
        if subcommand != ["cleanup"] {
            command.arg("--bind").arg(self.addr.to_string());
        }
        // Relative paths the server might follow by mistake land beside the data directory,
        // where a test can look for them.
        if let Some(parent) = self.data_dir.parent() {
            command.current_dir(parent);
        }
        command
    }

    /// Starts the server and waits until `/healthz` answers.
    pub fn start(&mut self) -> io::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = self
            .command(&["serve"])
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        self.wait_healthy(Duration::from_secs(20))
    }

    fn wait_healthy(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = wire::request(self.addr, "GET", "/healthz", &[], &[]) {
                if r.head.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!("the server exited: {status}")));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("the server did not come up"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush; waits until the process is gone.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log that tell of a panic.
    pub fn panics(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("panicked"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A loopback port nobody listens on right now (the OS picks it).
pub fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Resident memory (kB) and open file descriptors of a process, from `/proc`.
pub fn rss_and_fds(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}
