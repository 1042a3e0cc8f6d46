//! [`S3ByteStore`]: upload bytes in an S3-compatible object store (`--store s3://...`), shared by
//! several server instances, so that any instance can take any chunk of any upload.
//!
//! Each upload is one multipart upload under `PREFIX/uploads/ID`. The session's alignment unit
//! `U` ([`multipart::part_unit`]) is announced to clients; the routes refuse chunks off that grid
//! before any byte reaches S3, so every stretch of new bytes a chunk carries starts on a multiple
//! of `U` and is a multiple of `U` long (or ends the file): it becomes one part, numbered
//! `offset / U + 1` (S3 accepts ascending part numbers with gaps, and a part sent again replaces
//! itself with the same bytes). A chunk's bytes are held in memory until [`RangeWriter::sync`],
//! which uploads its parts: a range is recorded only once S3 holds it, as with the file store.
//!
//! Nothing about an upload is kept outside S3: the multipart upload is found again by its key
//! (ListMultipartUploads), its parts by ListParts, so an instance that never saw an upload can
//! finish it. Completion is CompleteMultipartUpload, then a server-side copy to the file's name
//! under `PREFIX/files/` (no byte passes through the server) and the staging object is deleted.
//! Discarding (abort, expiry, orphans) is AbortMultipartUpload.
//!
//! S3 cannot read a part back before completion, so the first bytes of a file (what content
//! sniffing reads) are also kept in a small object `PREFIX/heads/ID`.
//!
//! The SDK is async; every method here blocks on a small runtime of the store's own (methods run
//! off the server's executor, on blocking threads, as the trait requires).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use droppr_protocol::multipart;

use super::{ByteStore, ChunkLayout, RangeWriter};
use crate::beneath::Blocked;
use crate::validate::RelPath;

/// How many leading bytes are kept readable before completion (content sniffing needs 16).
const HEAD_LEN: usize = 4096;
/// Metadata key naming the upload a finished object came from (finalize finds its own result).
const UPLOAD_META: &str = "droppr-upload";

/// Where the store lives: `s3://BUCKET?endpoint=URL&region=NAME&prefix=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// None: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    /// Key prefix of everything the store writes (empty, or ending in `/`).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket?endpoint=...&region=...&prefix=...` (values percent-encoded).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or("--store must be an s3:// URL")?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let bucket = bucket.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err("--store names one bucket: s3://BUCKET?endpoint=...".into());
        }
        let mut location = S3Location {
            bucket: bucket.to_owned(),
            endpoint: None,
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            prefix: String::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("--store: {name} is not UTF-8"))?
                .into_owned();
            match name {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    location.endpoint = Some(value);
                }
                "endpoint" => return Err("--store: endpoint must be an http(s) URL".into()),
                "region" if !value.is_empty() => location.region = value,
                "prefix" => {
                    let trimmed = value.trim_matches('/');
                    location.prefix = if trimmed.is_empty() {
                        String::new()
                    } else {
                        format!("{trimmed}/")
                    };
                }
                other => return Err(format!("--store: unknown setting {other:?}")),
            }
        }
        Ok(location)
    }
}

/// Upload bytes in S3 multipart uploads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3ByteStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    bucket: String,
    prefix: String,
    /// The configured chunk sizes; each upload's are fitted to its unit ([`ByteStore::layout_for`]).
    layout: ChunkLayout,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3ByteStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async context forbids.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The parts that make up the file, in order: each starts where the previous one ended. A part
/// whose bytes reached S3 but whose range was never recorded (the server crashed in between) may
/// have been covered since by a longer part with a lower number: it starts inside that part and
/// is left out, or the object would hold its bytes twice.
fn file_parts(parts: Vec<(i32, String, u64, i64)>, size: u64) -> io::Result<Vec<CompletedPart>> {
    let unit = multipart::part_unit(size);
    let mut next = 0u64;
    let mut chain = Vec::new();
    for (number, tag, len, _) in parts {
        let start = u64::try_from(number - 1)
            .unwrap_or(u64::MAX)
            .saturating_mul(unit);
        if start == next && len > 0 {
            next = start.saturating_add(len);
            chain.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(tag)
                    .build(),
            );
        }
    }
    if next != size {
        return Err(io::Error::other(format!(
            "the parts in S3 cover {next} of {size} bytes"
        )));
    }
    Ok(chain)
}

/// An upload's open multipart upload.
#[derive(Debug)]
struct Staged {
    key: String,
    multipart_id: String,
    size: u64,
    /// When the multipart upload began (Unix seconds).
    initiated: i64,
}

fn s3_error<E>(op: &str, e: E) -> io::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    io::Error::other(format!("S3 {op}: {}", DisplayErrorContext(e)))
}

impl S3ByteStore {
    /// Connects with the credentials of `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`), and checks that the bucket answers.
    pub fn open(location: &S3Location, layout: ChunkLayout) -> io::Result<Self> {
        let key = |name: &str| {
            std::env::var(name).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--store s3 needs {name}"),
                )
            })
        };
        let credentials = Credentials::new(
            key("AWS_ACCESS_KEY_ID")?,
            key("AWS_SECRET_ACCESS_KEY")?,
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "environment",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(location.region.clone()))
            .credentials_provider(credentials)
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            );
        if let Some(endpoint) = &location.endpoint {
            // Self-hosted stores (SeaweedFS, MinIO, Garage) take path-style requests.
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("droppr-s3")
            .enable_all()
            .build()?;
        let store = Inner {
            client: Client::from_conf(config.build()),
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            layout,
            runtime: Some(runtime),
        };
        // From its own thread: the caller may be driving a runtime already.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    store
                        .block(store.client.head_bucket().bucket(&store.bucket).send())
                        .map(drop)
                        .map_err(|e| s3_error("HeadBucket", e))
                })
                .join()
                .map_err(|_| io::Error::other("checking the bucket panicked"))?
        })?;
        Ok(S3ByteStore {
            inner: Arc::new(store),
        })
    }
}

impl Inner {
    fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives until the store is dropped")
            .block_on(future)
    }

    /// The staging key names the file's size, so that any instance knows the upload's unit
    /// from the key alone.
    fn staging_key(&self, upload_id: &str, size: u64) -> String {
        format!("{}uploads/{upload_id}/{size}", self.prefix)
    }

    fn uploads_prefix(&self) -> String {
        format!("{}uploads/", self.prefix)
    }

    fn head_key(&self, upload_id: &str) -> String {
        format!("{}heads/{upload_id}", self.prefix)
    }

    /// The multipart upload of `upload_id`, if there is one.
    fn find(&self, upload_id: &str) -> io::Result<Option<Staged>> {
        let prefix = format!("{}{upload_id}/", self.uploads_prefix());
        let listed = self
            .block(
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&prefix)
                    .send(),
            )
            .map_err(|e| s3_error("ListMultipartUploads", e))?;
        Ok(listed.uploads().iter().find_map(|u| {
            let key = u.key()?;
            let size = key.strip_prefix(&prefix)?.parse().ok()?;
            Some(Staged {
                key: key.to_owned(),
                multipart_id: u.upload_id()?.to_owned(),
                size,
                initiated: u.initiated().map_or(0, |t| t.secs()),
            })
        }))
    }

    /// The staging object of a completed upload (a finalize that crashed before its copy).
    fn completed(&self, upload_id: &str) -> io::Result<Option<String>> {
        let prefix = format!("{}{upload_id}/", self.uploads_prefix());
        let listed = self
            .block(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&prefix)
                    .send(),
            )
            .map_err(|e| s3_error("ListObjectsV2", e))?;
        Ok(listed
            .contents()
            .iter()
            .find_map(|o| o.key().map(str::to_owned)))
    }

    /// Every part of a multipart upload: (number, ETag, size, last modified in Unix seconds).
    fn parts(&self, key: &str, multipart_id: &str) -> io::Result<Vec<(i32, String, u64, i64)>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        // At most 10,000 parts, 1,000 per page.
        for _ in 0..=multipart::MAX_PARTS / 1000 {
            let page = self
                .block(
                    self.client
                        .list_parts()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(multipart_id)
                        .set_part_number_marker(marker.clone())
                        .send(),
                )
                .map_err(|e| s3_error("ListParts", e))?;
            for p in page.parts() {
                if let (Some(n), Some(tag)) = (p.part_number(), p.e_tag()) {
                    let size = u64::try_from(p.size().unwrap_or(0)).unwrap_or(0);
                    let at = p.last_modified().map_or(0, |t| t.secs());
                    parts.push((n, tag.to_owned(), size, at));
                }
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            if !page.is_truncated().unwrap_or(false) || marker.is_none() {
                return Ok(parts);
            }
        }
        Ok(parts)
    }

    fn exists(&self, key: &str) -> io::Result<Option<std::collections::HashMap<String, String>>> {
        match self.block(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        ) {
            Ok(head) => Ok(Some(head.metadata().cloned().unwrap_or_default())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error("HeadObject", e)),
        }
    }

    /// Completes the multipart upload (if it is still open) into its staging object; returns
    /// that object's key.
    fn complete(&self, upload_id: &str) -> io::Result<String> {
        let Some(Staged {
            key,
            multipart_id,
            size,
            ..
        }) = self.find(upload_id)?
        else {
            // Completed by an earlier attempt (a crash before the copy), or gone.
            return self
                .completed(upload_id)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"));
        };
        let parts = file_parts(self.parts(&key, &multipart_id)?, size)?;
        let completed = self.block(
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&multipart_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send(),
        );
        match completed {
            Ok(_) => Ok(key),
            // Another instance completed it in the meantime (both recorded a last range).
            Err(e) if e.code() == Some("NoSuchUpload") => self
                .completed(upload_id)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload")),
            Err(e) => Err(s3_error("CompleteMultipartUpload", e)),
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        self.block(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        )
        .map_err(|e| s3_error("DeleteObject", e))?;
        Ok(())
    }
}

/// The parts of one chunk, held until [`RangeWriter::sync`] uploads them.
#[derive(Debug)]
struct PartWriter {
    store: Arc<Inner>,
    key: String,
    head_key: String,
    multipart_id: String,
    unit: u64,
    /// Contiguous runs of bytes by their first offset.
    runs: Mutex<BTreeMap<u64, Vec<u8>>>,
}

impl RangeWriter for PartWriter {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Pieces arrive in order within a chunk: extend the run that ends here, or start one.
        if let Some((start, run)) = runs.range_mut(..=offset).next_back() {
            if start + run.len() as u64 == offset {
                run.extend_from_slice(data);
                return Ok(());
            }
        }
        runs.insert(offset, data.to_vec());
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let runs = std::mem::take(
            &mut *self
                .runs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (start, bytes) in runs {
            let part = multipart::part_number(start, self.unit).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bytes at {start} are off the {}-byte part grid", self.unit),
                )
            })?;
            if start == 0 {
                let head = bytes[..bytes.len().min(HEAD_LEN)].to_vec();
                self.store
                    .block(
                        self.store
                            .client
                            .put_object()
                            .bucket(&self.store.bucket)
                            .key(&self.head_key)
                            .body(ByteStream::from(head))
                            .send(),
                    )
                    .map_err(|e| s3_error("PutObject", e))?;
            }
            self.store
                .block(
                    self.store
                        .client
                        .upload_part()
                        .bucket(&self.store.bucket)
                        .key(&self.key)
                        .upload_id(&self.multipart_id)
                        .part_number(i32::from(part))
                        .body(ByteStream::from(bytes))
                        .send(),
                )
                .map_err(|e| s3_error("UploadPart", e))?;
        }
        Ok(())
    }
}

impl ByteStore for S3ByteStore {
    fn layout(&self) -> ChunkLayout {
        self.inner.layout
    }

    fn layout_for(&self, size: u64) -> ChunkLayout {
        let unit = multipart::part_unit(size);
        let fit = |n: u64| (n / unit).max(1) * unit;
        ChunkLayout {
            chunk_size: fit(self.inner.layout.chunk_size),
            alignment: unit,
            max_chunk_size: fit(self.inner.layout.max_chunk_size),
        }
    }

    fn create(&self, upload_id: &str, size: u64) -> io::Result<()> {
        let s = &self.inner;
        s.block(
            s.client
                .create_multipart_upload()
                .bucket(&s.bucket)
                .key(s.staging_key(upload_id, size))
                .send(),
        )
        .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        Ok(())
    }

    fn writer(&self, upload_id: &str) -> io::Result<Arc<dyn RangeWriter>> {
        let s = &self.inner;
        let staged = s
            .find(upload_id)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"))?;
        Ok(Arc::new(PartWriter {
            store: s.clone(),
            unit: multipart::part_unit(staged.size),
            key: staged.key,
            head_key: s.head_key(upload_id),
            multipart_id: staged.multipart_id,
            runs: Mutex::default(),
        }))
    }

    fn read_at(&self, upload_id: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let s = &self.inner;
        let head = s.block(async {
            let object = s
                .client
                .get_object()
                .bucket(&s.bucket)
                .key(s.head_key(upload_id))
                .send()
                .await
                .map_err(|e| s3_error("GetObject", e))?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| io::Error::other(format!("S3 GetObject body: {e}")))?;
            Ok::<_, io::Error>(bytes.into_bytes())
        })?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(head.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(head.len());
        Ok(head[start..end].to_vec())
    }

    fn check_target(&self, folder: &str, path: &RelPath) -> io::Result<Result<(), Blocked>> {
        // Object keys have no folders that could be files or links.
        let _ = (folder, path);
        Ok(Ok(()))
    }

    fn finalize(&self, upload_id: &str, folder: &str, path: &RelPath) -> io::Result<String> {
        let s = &self.inner;
        // None: completed and copied by an earlier attempt that crashed before it was recorded;
        // its object is found below by the upload id in its metadata.
        let staging = match s.complete(upload_id) {
            Ok(key) => Some(key),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let name = path.file_name();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((st, e)) if !st.is_empty() => (st, Some(e)),
            _ => (name, None),
        };
        let dir = match (folder.is_empty(), path.parent()) {
            (true, None) => String::new(),
            (true, Some(p)) => format!("{p}/"),
            (false, None) => format!("{folder}/"),
            (false, Some(p)) => format!("{folder}/{p}/"),
        };
        for n in 0u32..10_000 {
            let candidate = match (n, ext) {
                (0, _) => name.to_owned(),
                (_, Some(ext)) => format!("{stem} ({n}).{ext}"),
                (_, None) => format!("{stem} ({n})"),
            };
            let key = format!("{}files/{dir}{candidate}", s.prefix);
            match (s.exists(&key)?, &staging) {
                (Some(meta), _) if meta.get(UPLOAD_META).map(String::as_str) == Some(upload_id) => {
                }
                (Some(_), _) => continue,
                (None, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "no multipart upload and no finished object",
                    ))
                }
                (None, Some(staging)) => {
                    s.block(
                        s.client
                            .copy_object()
                            .bucket(&s.bucket)
                            .key(&key)
                            .copy_source(format!("{}/{staging}", s.bucket))
                            .metadata_directive(MetadataDirective::Replace)
                            .metadata(UPLOAD_META, upload_id)
                            .send(),
                    )
                    .map_err(|e| s3_error("CopyObject", e))?;
                }
            }
            if let Some(staging) = &staging {
                s.delete(staging)?;
            }
            s.delete(&s.head_key(upload_id))?;
            return Ok(match path.parent() {
                Some(parent) => format!("{parent}/{candidate}"),
                None => candidate,
            });
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free file name",
        ))
    }

    fn discard(&self, upload_id: &str) -> io::Result<u64> {
        let s = &self.inner;
        let mut freed = 0;
        if let Some(Staged {
            key, multipart_id, ..
        }) = s.find(upload_id)?
        {
            freed = s.parts(&key, &multipart_id)?.iter().map(|p| p.2).sum();
            let aborted = s.block(
                s.client
                    .abort_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&key)
                    .upload_id(&multipart_id)
                    .send(),
            );
            match aborted {
                Ok(_) => {}
                Err(e) if e.code() == Some("NoSuchUpload") => {}
                Err(e) => return Err(s3_error("AbortMultipartUpload", e)),
            }
        }
        if let Some(completed) = s.completed(upload_id)? {
            s.delete(&completed)?;
        }
        s.delete(&s.head_key(upload_id))?;
        Ok(freed)
    }

    fn age(&self, upload_id: &str) -> io::Result<Option<Duration>> {
        let s = &self.inner;
        let Some(Staged {
            key,
            multipart_id,
            initiated,
            ..
        }) = s.find(upload_id)?
        else {
            return Ok(None);
        };
        // The last part written, or the start when there is none yet.
        let last = s.parts(&key, &multipart_id)?.iter().map(|p| p.3).max();
        let now = crate::now_secs();
        let at = last.unwrap_or(initiated);
        Ok(Some(Duration::from_secs(
            u64::try_from(now - at).unwrap_or(0),
        )))
    }

    /// The size is part of the staging key (it sets the unit): a multipart upload that holds no
    /// part yet is begun again under the new size; once parts exist the size cannot change.
    fn set_size(&self, upload_id: &str, size: u64) -> io::Result<()> {
        let s = &self.inner;
        let staged = s
            .find(upload_id)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"))?;
        if staged.size == size {
            return Ok(());
        }
        if !s.parts(&staged.key, &staged.multipart_id)?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the S3 store needs an upload's length before its first bytes",
            ));
        }
        self.create(upload_id, size)?;
        s.block(
            s.client
                .abort_multipart_upload()
                .bucket(&s.bucket)
                .key(&staged.key)
                .upload_id(&staged.multipart_id)
                .send(),
        )
        .map_err(|e| s3_error("AbortMultipartUpload", e))?;
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let s = &self.inner;
        let prefix = s.uploads_prefix();
        let listed = s
            .block(
                s.client
                    .list_multipart_uploads()
                    .bucket(&s.bucket)
                    .prefix(&prefix)
                    .send(),
            )
            .map_err(|e| s3_error("ListMultipartUploads", e))?;
        Ok(listed
            .uploads()
            .iter()
            .filter_map(|u| {
                let (id, _size) = u.key()?.strip_prefix(&prefix)?.split_once('/')?;
                Some(id.to_owned())
            })
            .collect())
    }
}
