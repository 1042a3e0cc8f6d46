//! Real PostgreSQL and SeaweedFS for the scale-out tests, started by `scripts/services.sh` (which
//! `scripts/bootstrap.sh services` installs) in a temporary folder, on free loopback ports, and
//! stopped when the [`Services`] value is dropped (even when the test panics).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// Which services a test needs.
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    Postgres,
    S3,
    Both,
}

/// Services running for one test; stopped on drop.
#[derive(Debug)]
pub struct Services {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Services {
    pub fn start(needs: Needs) -> Services {
        let dir = tempfile::Builder::new()
            .prefix("scaleout-services-")
            .tempdir()
            .expect("temporary services folder");
        let what = match needs {
            Needs::Postgres => "pg",
            Needs::S3 => "s3",
            Needs::Both => "all",
        };
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .arg(what)
            .output()
            .expect("run scripts/services.sh");
        // Built before the check, so that a failed start is still stopped by Drop.
        let services = Services {
            env: parse_exports(&String::from_utf8_lossy(&out.stdout)),
            dir,
        };
        assert!(
            out.status.success(),
            "scripts/services.sh start {what} failed (run scripts/bootstrap.sh services first):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        services
    }

    /// A variable `start` printed.
    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("services.sh printed no {name}: {:?}", self.env))
    }

    /// The URL of the test database (`postgres://...`).
    pub fn database(&self) -> &str {
        self.var("DROPPR_TEST_DATABASE")
    }

    /// A new, empty database on the same server; returns its URL.
    pub fn fresh_database(&self, name: &str) -> String {
        let mut client = postgres::Client::connect(self.database(), postgres::NoTls)
            .expect("connect to the test database");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        let base = self.database();
        let cut = base.rfind('/').expect("database URL has a path");
        format!("{}/{name}", &base[..cut])
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn parse_exports(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
