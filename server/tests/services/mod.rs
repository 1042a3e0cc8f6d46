//! Real PostgreSQL and SeaweedFS for the scale-out tests, started by `scripts/services.sh` (which
//! `scripts/bootstrap.sh services` installs) in a temporary folder, on free loopback ports, and
//! stopped when the [`Services`] value is dropped (even when the test panics).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

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

    /// A `--store` URL for the test bucket, with everything under `prefix`.
    pub fn store_url(&self, prefix: &str) -> String {
        format!(
            "s3://{}?endpoint={}&prefix={prefix}",
            self.var("DROPPR_TEST_S3_BUCKET"),
            self.var("DROPPR_TEST_S3_ENDPOINT")
        )
    }

    /// The credentials a server process needs for the test bucket.
    pub fn aws_env(&self) -> Vec<(&'static str, Option<&str>)> {
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
            .into_iter()
            .map(|name| (name, Some(self.var(name))))
            .collect()
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

/// Reads objects and multipart uploads straight from the store, to check what it holds.
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    pub fn new(services: &Services) -> Bucket {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(services.var("DROPPR_TEST_S3_ENDPOINT"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                services.var("AWS_ACCESS_KEY_ID"),
                services.var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "test",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Bucket {
            client: aws_sdk_s3::Client::from_conf(config),
            name: services.var("DROPPR_TEST_S3_BUCKET").to_owned(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
        }
    }

    pub fn object(&self, key: &str) -> Vec<u8> {
        self.runtime.block_on(async {
            let got = self
                .client
                .get_object()
                .bucket(&self.name)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"));
            got.body
                .collect()
                .await
                .expect("body")
                .into_bytes()
                .to_vec()
        })
    }

    /// The part numbers of every open multipart upload.
    pub fn part_numbers(&self) -> Vec<i32> {
        let mut numbers = Vec::new();
        for upload in self.open_multipart_uploads() {
            self.runtime.block_on(async {
                let parts = self
                    .client
                    .list_parts()
                    .bucket(&self.name)
                    .key(&upload.0)
                    .upload_id(&upload.1)
                    .send()
                    .await
                    .expect("ListParts");
                numbers.extend(parts.parts().iter().filter_map(|p| p.part_number()));
            });
        }
        numbers.sort_unstable();
        numbers
    }

    /// (key, upload id) of every open multipart upload.
    fn open_multipart_uploads(&self) -> Vec<(String, String)> {
        self.runtime.block_on(async {
            let listed = self
                .client
                .list_multipart_uploads()
                .bucket(&self.name)
                .send()
                .await
                .expect("ListMultipartUploads");
            listed
                .uploads()
                .iter()
                .filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned())))
                .collect()
        })
    }

    pub fn open_multipart_keys(&self) -> Vec<String> {
        self.open_multipart_uploads()
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }
}

impl Bucket {
    /// The keys of every object under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.runtime.block_on(async {
            let listed = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .prefix(prefix)
                .send()
                .await
                .expect("ListObjectsV2");
            listed
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect()
        })
    }
}

impl Bucket {
    /// The full-object CRC64NVME the store keeps for `key` (HeadObject with checksum mode).
    pub fn crc64nvme(&self, key: &str) -> Option<u64> {
        use base64::Engine;
        self.runtime.block_on(async {
            let head = self
                .client
                .head_object()
                .bucket(&self.name)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .unwrap_or_else(|e| panic!("HeadObject {key}: {e:?}"));
            let text = head.checksum_crc64_nvme()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64");
            Some(u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
        })
    }

    /// Puts other bytes (with their own correct CRC64NVME) in place of part `number` of the open
    /// multipart upload whose key starts with `prefix`: a part changed in the store behind the
    /// server's back.
    pub fn replace_part(&self, prefix: &str, number: i32, bytes: Vec<u8>) {
        use base64::Engine;
        let (key, id) = self
            .open_multipart_uploads()
            .into_iter()
            .find(|(key, _)| key.starts_with(prefix))
            .unwrap_or_else(|| panic!("no multipart upload under {prefix}"));
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &bytes);
        self.runtime.block_on(async {
            self.client
                .upload_part()
                .bucket(&self.name)
                .key(&key)
                .upload_id(&id)
                .part_number(number)
                .checksum_crc64_nvme(
                    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()),
                )
                .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
                .send()
                .await
                .expect("UploadPart");
        });
    }
}

/// The CRC64NVME of `data` (what S3 keeps as a full-object checksum).
pub fn crc64nvme(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data)
}
