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
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, Delete,
    MetadataDirective, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use base64::Engine;
use droppr_protocol::multipart;

use super::{ByteStore, ChunkLayout, RangeWriter};
use crate::beneath::Blocked;
use crate::validate::RelPath;

/// How many leading bytes are kept readable before completion (content sniffing needs 16).
const HEAD_LEN: usize = 4096;
/// Metadata key naming the upload a finished object came from (finalize finds its own result).
const UPLOAD_META: &str = "droppr-upload";
/// The largest part (and the largest object CopyObject copies): S3's limit, 5 GiB.
pub const MAX_COPY_PART: u64 = 5 << 30;
/// Parts made inside the store at once (UploadPartCopy, or a gathered unit).
const PARTS_AT_ONCE: usize = 4;
/// The checksum S3 verifies: each part's on upload, the whole object's at completion.
const CRC: crc_fast::CrcAlgorithm = crc_fast::CrcAlgorithm::Crc64Nvme;

/// A CRC64NVME as S3 headers carry it: the 8 big-endian bytes in base64.
fn crc_header(crc: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

fn parse_crc_header(text: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The CRC64NVME of bytes `0..want` from the CRCs of ranges `(start, len, crc)`, if some of them
/// tile `0..want` (CRCs combine without the bytes). Every record is the CRC of the file's own
/// bytes in its range, so any tiling gives the same answer.
fn tiled_crc(records: &[(u64, u64, u64)], want: u64) -> Option<u64> {
    if want == 0 {
        return Some(crc_fast::checksum(CRC, b""));
    }
    let mut by_start: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for &(start, len, crc) in records {
        if len > 0 && start.checked_add(len).is_some_and(|end| end <= want) {
            by_start.entry(start).or_default().push((start + len, crc));
        }
    }
    // From the end backwards: the CRC of `start..want` for every start that reaches the end.
    let mut to_end: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for (&start, ends) in by_start.iter().rev() {
        let found = ends.iter().find_map(|&(end, crc)| {
            if end == want {
                Some(crc)
            } else {
                to_end
                    .get(&end)
                    .map(|rest| crc_fast::checksum_combine(CRC, crc, *rest, want - end))
            }
        });
        if let Some(crc) = found {
            to_end.insert(start, crc);
        }
    }
    to_end.get(&0).copied()
}

/// Where the store lives: `s3://BUCKET?endpoint=URL&region=NAME&prefix=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// None: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    /// Key prefix of everything the store writes (empty, or ending in `/`).
    pub prefix: String,
    /// Objects larger than this are copied in parts of this size (UploadPartCopy) instead of one
    /// CopyObject: S3's 5 GiB limit, lowered by tests (`--test-s3-copy-part`).
    pub copy_part: u64,
    /// Multipart uploads asked for per ListMultipartUploads page (S3's most: 1,000; tests ask
    /// for fewer to see the paging).
    pub list_page: i32,
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
            copy_part: MAX_COPY_PART,
            list_page: 1000,
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
    /// [`S3Location::copy_part`].
    copy_part: u64,
    /// [`S3Location::list_page`].
    list_page: i32,
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

/// The parts on the `unit` grid (part `n` starts at `(n - 1) * unit`) that make up the first
/// `want` bytes of a file, in order, each starting where the previous one ended, ending exactly
/// at `want` when `exact` (a whole file) or at or past it (the received prefix of a tus partial);
/// returns them and where they end. A part whose bytes reached S3 but whose range was never
/// recorded (the server crashed in between) may have been covered since by a longer part with a
/// lower number: no chain goes through it, or the object would hold its bytes twice. A part
/// number sent twice may be listed twice (SeaweedFS keeps both until completion): the last one
/// sent is taken where a chain goes on from it, as on AWS.
fn file_parts(
    parts: Vec<(i32, String, u64, i64)>,
    unit: u64,
    want: u64,
    exact: bool,
) -> io::Result<(Vec<CompletedPart>, u64)> {
    let mut by_start: BTreeMap<u64, Vec<(i64, i32, String, u64)>> = BTreeMap::new();
    for (number, tag, len, at) in parts {
        let start = u64::try_from(number - 1)
            .unwrap_or(u64::MAX)
            .saturating_mul(unit);
        if len > 0 && start < want {
            by_start
                .entry(start)
                .or_default()
                .push((at, number, tag, len));
        }
    }
    // From the last start back: which part to take there so that a chain reaches `want`.
    let mut take: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for (&start, candidates) in by_start.iter_mut().rev() {
        // The last sent first (of two sent in one second, the one listed last).
        candidates.reverse();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let reaches = |len: u64| {
            let end = start.saturating_add(len);
            if end >= want {
                !exact || end == want
            } else {
                take.contains_key(&end)
            }
        };
        if let Some(i) = candidates.iter().position(|c| reaches(c.3)) {
            take.insert(start, i);
        }
    }
    let mut chain = Vec::new();
    let mut next = 0u64;
    while next < want {
        let Some((_, number, tag, len)) = take.get(&next).map(|&i| &by_start[&next][i]) else {
            return Err(io::Error::other(format!(
                "the parts in S3 cover {next} of {want} bytes"
            )));
        };
        chain.push(
            CompletedPart::builder()
                .part_number(*number)
                .e_tag(tag)
                .build(),
        );
        next += len;
    }
    Ok((chain, next))
}

/// Where the bytes of one part made inside the store come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartSource {
    /// UploadPartCopy of bytes `first..=last` of object `key`: no byte passes through the server.
    Copy { key: String, first: u64, last: u64 },
    /// Ranges `(key, first, last)` of several objects, read and sent as one part: the grid unit
    /// that straddles the end of one source and the start of the next (at most one unit).
    Gather(Vec<(String, u64, u64)>),
}

/// A part to make: its number and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedPart {
    number: i32,
    source: PartSource,
}

/// The parts that lay `sources` (object key, length) one after the other from offset `at` of a
/// multipart upload of `size` bytes on the `unit` grid (part `n` starts at `(n - 1) * unit`), as
/// completion expects them. Every whole unit inside one source is copied inside the store, in
/// parts of at most `max_copy` bytes; only a unit that straddles two sources (or more, when they
/// are small) is read and sent again, so at most one unit per source boundary passes through
/// memory. `at` must be on the grid, and the end too unless it ends the file.
fn plan_parts(
    at: u64,
    sources: &[(String, u64)],
    size: u64,
    unit: u64,
    max_copy: u64,
) -> io::Result<Vec<PlannedPart>> {
    let mut spans = Vec::new();
    let mut end = at;
    for (key, len) in sources.iter().filter(|(_, len)| *len > 0) {
        spans.push((end, end + len, key.as_str()));
        end += len;
    }
    if unit == 0
        || !at.is_multiple_of(unit)
        || end > size
        || (end != size && !end.is_multiple_of(unit))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bytes {at}..{end} of {size} are off the {unit}-byte part grid"),
        ));
    }
    let max_copy = (max_copy / unit).max(1) * unit;
    let mut parts = Vec::new();
    let (mut pos, mut j) = (at, 0);
    while pos < end {
        while spans[j].1 <= pos {
            j += 1;
        }
        let number = multipart::part_number(pos, unit).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "more parts than S3 allows")
        })?;
        let (start, stop, key) = spans[j];
        // A copy reaches the last grid point inside this source (or the end of what is laid).
        let reach = if stop == end { end } else { stop / unit * unit };
        let (source, next) = if reach > pos {
            let next = reach.min(pos + max_copy);
            let copy = PartSource::Copy {
                key: key.to_owned(),
                first: pos - start,
                last: next - start - 1,
            };
            (copy, next)
        } else {
            let next = (pos + unit).min(end);
            let pieces = spans[j..]
                .iter()
                .take_while(|(s, _, _)| *s < next)
                .map(|&(s, e, k)| (k.to_owned(), pos.max(s) - s, next.min(e) - s - 1))
                .collect();
            (PartSource::Gather(pieces), next)
        };
        parts.push(PlannedPart {
            number: i32::from(number),
            source,
        });
        pos = next;
    }
    Ok(parts)
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
            copy_part: location.copy_part.clamp(multipart::MIN_PART, MAX_COPY_PART),
            list_page: location.list_page.clamp(1, 1000),
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

    /// Where the length of an upload is kept when it was told after its first bytes (tus
    /// `Upload-Defer-Length`): its staging key keeps the size its unit came from.
    fn size_key(&self, upload_id: &str) -> String {
        format!("{}sizes/{upload_id}", self.prefix)
    }

    fn declared_size(&self, upload_id: &str) -> io::Result<Option<u64>> {
        let got = self.block(async {
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(self.size_key(upload_id))
                .send()
                .await
        });
        let object = match got {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", e)),
        };
        let body = self
            .block(object.body.collect())
            .map_err(|e| io::Error::other(format!("S3 GetObject body: {e}")))?
            .into_bytes();
        std::str::from_utf8(&body)
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Some)
            .ok_or_else(|| io::Error::other("an unreadable declared size"))
    }

    /// Where the CRCs of an upload's ranges are kept: one empty object per range, its key
    /// `crcs/ID/START-LEN-CRC` (ListParts of SeaweedFS does not give part checksums back, and
    /// any instance must be able to complete the upload).
    fn crcs_prefix(&self, upload_id: &str) -> String {
        format!("{}crcs/{upload_id}/", self.prefix)
    }

    /// Records the CRC of bytes `start..start + len` of an upload (before the bytes are sent,
    /// so that a part in S3 always has its record).
    async fn put_crc(&self, upload_id: &str, start: u64, len: u64, crc: u64) -> io::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!(
                "{}{start}-{len}-{crc:016x}",
                self.crcs_prefix(upload_id)
            ))
            .body(ByteStream::from_static(b""))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        Ok(())
    }

    /// The keys under `prefix` (every page).
    fn keys(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let page = self
                .block(
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| s3_error("ListObjectsV2", e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        Ok(keys)
    }

    /// The recorded CRCs of an upload's ranges: (start, len, crc).
    fn crcs(&self, upload_id: &str) -> io::Result<Vec<(u64, u64, u64)>> {
        let prefix = self.crcs_prefix(upload_id);
        Ok(self
            .keys(&prefix)?
            .iter()
            .filter_map(|key| {
                let mut fields = key.strip_prefix(&prefix)?.split('-');
                let start = fields.next()?.parse().ok()?;
                let len = fields.next()?.parse().ok()?;
                let crc = u64::from_str_radix(fields.next()?, 16).ok()?;
                Some((start, len, crc))
            })
            .collect())
    }

    /// The CRC64NVME of bytes `0..want` of an upload, if its recorded ranges cover them.
    fn crc_of(&self, upload_id: &str, want: u64) -> io::Result<Option<u64>> {
        let crc = tiled_crc(&self.crcs(upload_id)?, want);
        if crc.is_none() {
            tracing::warn!(
                upload = upload_id,
                "no CRC records cover the upload: completed without a full-object checksum"
            );
        }
        Ok(crc)
    }

    /// Deletes an upload's CRC records.
    fn drop_crcs(&self, upload_id: &str) -> io::Result<()> {
        let keys = self.keys(&self.crcs_prefix(upload_id))?;
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io::Error::other(format!("S3 DeleteObjects: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| io::Error::other(format!("S3 DeleteObjects: {e}")))?;
            self.block(
                self.client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send(),
            )
            .map_err(|e| s3_error("DeleteObjects", e))?;
        }
        Ok(())
    }

    /// The size of object `key`.
    fn stored_size(&self, key: &str) -> io::Result<u64> {
        let head = self
            .block(
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map_err(|e| s3_error("HeadObject", e))?;
        Ok(head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    /// The full-object CRC64NVME S3 keeps for `key`, if it has one.
    fn stored_crc(&self, key: &str) -> io::Result<Option<u64>> {
        let head = self
            .block(
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send(),
            )
            .map_err(|e| s3_error("HeadObject", e))?;
        Ok(head.checksum_crc64_nvme().and_then(parse_crc_header))
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
        Ok(self.keys(&prefix)?.into_iter().next())
    }

    /// The age of a completed upload's staging object, if there is one.
    fn completed_age(&self, upload_id: &str) -> io::Result<Option<Duration>> {
        let listed = self
            .block(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(format!("{}{upload_id}/", self.uploads_prefix()))
                    .send(),
            )
            .map_err(|e| s3_error("ListObjectsV2", e))?;
        Ok(listed.contents().first().map(|o| {
            let at = o.last_modified().map_or(0, |t| t.secs());
            Duration::from_secs(u64::try_from(crate::now_secs() - at).unwrap_or(0))
        }))
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
        // A deferred length told after the first bytes: the key keeps the size the unit came from.
        let want = self.declared_size(upload_id)?.unwrap_or(size);
        let unit = multipart::part_unit(size);
        let (parts, _) = file_parts(self.parts(&key, &multipart_id)?, unit, want, true)?;
        let crc = self.crc_of(upload_id, want)?;
        if self.finish_multipart(&key, &multipart_id, parts, crc)? {
            return Ok(key);
        }
        // Another instance completed it in the meantime (both recorded a last range).
        self.completed(upload_id)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"))
    }

    /// Completes a multipart upload with `parts`. False if it was gone (completed or aborted by
    /// another instance meanwhile).
    /// With `crc`, S3 checks that the object is the bytes whose CRC64NVME that is (and refuses
    /// it otherwise): the parts it holds are the ones the server received, in the right order.
    fn finish_multipart(
        &self,
        key: &str,
        multipart_id: &str,
        parts: Vec<CompletedPart>,
        crc: Option<u64>,
    ) -> io::Result<bool> {
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(multipart_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if let Some(crc) = crc {
            request = request
                .checksum_type(ChecksumType::FullObject)
                .checksum_crc64_nvme(crc_header(crc));
        }
        let completed = self.block(request.send());
        match completed {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(false),
            Err(e) => Err(s3_error("CompleteMultipartUpload", e)),
        }
    }

    /// The object that holds the first `len` bytes of upload `upload_id` (a tus partial whose
    /// bytes are to be copied): its multipart upload is completed with the parts that cover them
    /// (S3 cannot copy from a part), or was completed by an earlier attempt.
    fn seal(&self, upload_id: &str, len: u64) -> io::Result<String> {
        if let Some(Staged {
            key,
            multipart_id,
            size,
            ..
        }) = self.find(upload_id)?
        {
            let unit = multipart::part_unit(size);
            let (parts, end) = file_parts(self.parts(&key, &multipart_id)?, unit, len, false)?;
            // The object may hold more than `len` (a part sent but never recorded): its CRC is
            // then not the one of `len` bytes, and S3 checks only what the parts were sent with.
            let crc = if end == len {
                self.crc_of(upload_id, len)?
            } else {
                None
            };
            if self.finish_multipart(&key, &multipart_id, parts, crc)? {
                return Ok(key);
            }
        }
        self.completed(upload_id)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"))
    }

    /// Bytes `first..=last` of object `key`.
    async fn get_range(&self, key: &str, first: u64, last: u64) -> io::Result<Vec<u8>> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={first}-{last}"))
            .send()
            .await
            .map_err(|e| s3_error("GetObject", e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| io::Error::other(format!("S3 GetObject body: {e}")))?
            .into_bytes();
        if bytes.len() as u64 != last - first + 1 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{key} holds fewer bytes than {first}-{last}"),
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Makes one planned part of multipart upload `multipart_id` at `key`.
    async fn make_part(
        &self,
        key: &str,
        multipart_id: &str,
        part: PlannedPart,
    ) -> io::Result<CompletedPart> {
        let tag = match part.source {
            PartSource::Copy {
                key: from,
                first,
                last,
            } => self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(multipart_id)
                .part_number(part.number)
                .copy_source(format!("{}/{from}", self.bucket))
                .copy_source_range(format!("bytes={first}-{last}"))
                .send()
                .await
                .map_err(|e| s3_error("UploadPartCopy", e))?
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned),
            PartSource::Gather(pieces) => {
                let mut bytes = Vec::new();
                for (from, first, last) in pieces {
                    bytes.extend(self.get_range(&from, first, last).await?);
                }
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(multipart_id)
                    .part_number(part.number)
                    .checksum_crc64_nvme(crc_header(crc_fast::checksum(CRC, &bytes)))
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .map_err(|e| s3_error("UploadPart", e))?
                    .e_tag()
                    .map(str::to_owned)
            }
        };
        let tag = tag.ok_or_else(|| io::Error::other("S3 answered a part without an ETag"))?;
        Ok(CompletedPart::builder()
            .part_number(part.number)
            .e_tag(tag)
            .build())
    }

    /// Makes the planned parts, a few at once; returns them in part order.
    fn make_parts(
        &self,
        key: &str,
        multipart_id: &str,
        planned: Vec<PlannedPart>,
    ) -> io::Result<Vec<CompletedPart>> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut made: Vec<CompletedPart> = self.block(
            futures_util::stream::iter(planned)
                .map(|part| self.make_part(key, multipart_id, part))
                .buffer_unordered(PARTS_AT_ONCE)
                .try_collect(),
        )?;
        made.sort_by_key(|p| p.part_number());
        Ok(made)
    }

    /// Copies object `from` (`size` bytes) to `to`, its metadata naming `upload_id`: one
    /// CopyObject up to [`Inner::copy_part`], a multipart copy (UploadPartCopy ranges) above.
    /// Either way no byte passes through the server.
    fn copy(&self, from: &str, size: u64, to: &str, upload_id: &str) -> io::Result<()> {
        if size <= self.copy_part {
            self.block(
                self.client
                    .copy_object()
                    .bucket(&self.bucket)
                    .key(to)
                    .copy_source(format!("{}/{from}", self.bucket))
                    .metadata_directive(MetadataDirective::Replace)
                    .metadata(UPLOAD_META, upload_id)
                    .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                    .send(),
            )
            .map_err(|e| s3_error("CopyObject", e))?;
            return Ok(());
        }
        // The copy is checked against the CRC S3 verified when it completed the original.
        let crc = self.stored_crc(from)?;
        let created = self
            .block(
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(to)
                    .metadata(UPLOAD_META, upload_id)
                    .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                    .checksum_type(ChecksumType::FullObject)
                    .send(),
            )
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let multipart_id = created
            .upload_id()
            .ok_or_else(|| io::Error::other("S3 answered no multipart upload id"))?;
        let copied = plan_parts(
            0,
            &[(from.to_owned(), size)],
            size,
            self.copy_part,
            self.copy_part,
        )
        .and_then(|planned| self.make_parts(to, multipart_id, planned))
        .and_then(|parts| self.finish_multipart(to, multipart_id, parts, crc));
        match copied {
            Ok(true) => Ok(()),
            Ok(false) => Err(io::Error::other("the multipart copy was aborted")),
            Err(e) => {
                // Leave no half-made copy behind (the next attempt begins another).
                let _ = self.block(
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(to)
                        .upload_id(multipart_id)
                        .send(),
                );
                Err(e)
            }
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
    upload_id: String,
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
            // S3 checks the part against its CRC64NVME; the CRC is recorded first, for the
            // whole-object checksum at completion (on any instance).
            let crc = crc_fast::checksum(CRC, &bytes);
            let s = &self.store;
            s.block(s.put_crc(&self.upload_id, start, bytes.len() as u64, crc))?;
            s.block(
                s.client
                    .upload_part()
                    .bucket(&s.bucket)
                    .key(&self.key)
                    .upload_id(&self.multipart_id)
                    .part_number(i32::from(part))
                    .checksum_crc64_nvme(crc_header(crc))
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
                .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                .checksum_type(ChecksumType::FullObject)
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
            upload_id: upload_id.to_owned(),
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
                    s.copy(staging, s.stored_size(staging)?, &key, upload_id)?;
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
        s.delete(&s.size_key(upload_id))?;
        s.drop_crcs(upload_id)?;
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
            // A staging object left behind: its age is the completion's.
            return s.completed_age(upload_id);
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
    /// part yet is begun again under the new size. Once parts exist, the new size is kept in
    /// `PREFIX/sizes/ID` if it has the same unit (every size up to 50,000 MiB has 5 MiB), and
    /// refused otherwise (the parts already sent lie on the old unit's grid).
    fn set_size(&self, upload_id: &str, size: u64) -> io::Result<()> {
        let s = &self.inner;
        let staged = s
            .find(upload_id)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"))?;
        if staged.size == size {
            return Ok(());
        }
        if !s.parts(&staged.key, &staged.multipart_id)?.is_empty() {
            if multipart::part_unit(size) != multipart::part_unit(staged.size) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the S3 store cannot change the part unit of an upload after its first bytes",
                ));
            }
            s.block(
                s.client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(s.size_key(upload_id))
                    .body(ByteStream::from(size.to_string().into_bytes()))
                    .send(),
            )
            .map_err(|e| s3_error("PutObject", e))?;
            return Ok(());
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

    /// tus concatenation inside the store: each partial's multipart upload is completed (with
    /// the parts that hold the bytes to join), and the joined span of `into` is made of
    /// UploadPartCopy ranges of those objects on `into`'s part grid ([`plan_parts`]); only a grid
    /// unit that straddles two partials is read and sent again (at most one unit, 5 MiB for files
    /// under 50,000 MiB, per boundary). Parts are durable in S3 once made.
    fn join(&self, into: &str, at: u64, parts: &[(String, u64)]) -> io::Result<()> {
        let s = &self.inner;
        let staged = s
            .find(into)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no multipart upload"))?;
        let unit = multipart::part_unit(staged.size);
        // Off the grid is refused before any partial is sealed (a sealed partial takes no PATCH).
        plan_parts(at, parts, staged.size, unit, s.copy_part)?;
        let sources = parts
            .iter()
            .filter(|(_, len)| *len > 0)
            .map(|(id, len)| Ok((s.seal(id, *len)?, *len)))
            .collect::<io::Result<Vec<_>>>()?;
        // Each partial's CRC (combined from its own records) becomes a record of its place.
        let mut place = at;
        for (id, len) in parts.iter().filter(|(_, len)| *len > 0) {
            if let Some(crc) = s.crc_of(id, *len)? {
                s.block(s.put_crc(into, place, *len, crc))?;
            }
            place += len;
        }
        let planned = plan_parts(at, &sources, staged.size, unit, s.copy_part)?;
        if at == 0 {
            // The first bytes, for content sniffing, as the first chunk would have kept them.
            let mut head = Vec::new();
            for (key, len) in &sources {
                let want = (HEAD_LEN - head.len()).min(usize::try_from(*len).unwrap_or(HEAD_LEN));
                if want == 0 {
                    break;
                }
                head.extend(s.block(s.get_range(key, 0, want as u64 - 1))?);
            }
            s.block(
                s.client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(s.head_key(into))
                    .body(ByteStream::from(head))
                    .send(),
            )
            .map_err(|e| s3_error("PutObject", e))?;
        }
        s.make_parts(&staged.key, &staged.multipart_id, planned)?;
        Ok(())
    }

    /// Every multipart upload under `uploads/`, page after page (past the first 1,000), and
    /// every staging object left there (completed, but not yet copied to its name or deleted).
    fn list(&self) -> io::Result<Vec<String>> {
        let s = &self.inner;
        let prefix = s.uploads_prefix();
        let mut keys = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        // Bounded: a million multipart uploads at 1,000 a page.
        for _ in 0..1_000_000 / s.list_page.max(1) + 1 {
            let page = s
                .block(
                    s.client
                        .list_multipart_uploads()
                        .bucket(&s.bucket)
                        .prefix(&prefix)
                        .max_uploads(s.list_page)
                        .set_key_marker(key_marker.take())
                        .set_upload_id_marker(id_marker.take())
                        .send(),
                )
                .map_err(|e| s3_error("ListMultipartUploads", e))?;
            keys.extend(
                page.uploads()
                    .iter()
                    .filter_map(|u| u.key().map(str::to_owned)),
            );
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            // AWS names both markers of the next page; SeaweedFS (4.48) names only the upload id.
            if !page.is_truncated().unwrap_or(false)
                || (key_marker.is_none() && id_marker.is_none())
            {
                break;
            }
        }
        keys.extend(s.keys(&prefix)?);
        let mut ids: Vec<String> = keys
            .iter()
            .filter_map(|key| {
                let (id, _size) = key.strip_prefix(&prefix)?.split_once('/')?;
                Some(id.to_owned())
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn copy(key: &str, first: u64, last: u64) -> PartSource {
        PartSource::Copy {
            key: key.into(),
            first,
            last,
        }
    }

    fn numbers_and_sources(parts: Vec<PlannedPart>) -> Vec<(i32, PartSource)> {
        parts.into_iter().map(|p| (p.number, p.source)).collect()
    }

    #[test]
    fn partials_on_the_grid_are_copied_whole() {
        let u = 5 * MIB;
        let sources = [("a".to_owned(), 10 * MIB), ("b".to_owned(), 5 * MIB + 7)];
        let plan = plan_parts(0, &sources, 15 * MIB + 7, u, MAX_COPY_PART).expect("plan");
        assert_eq!(
            numbers_and_sources(plan),
            [
                (1, copy("a", 0, 10 * MIB - 1)),
                (3, copy("b", 0, 5 * MIB + 6))
            ]
        );
    }

    #[test]
    fn a_unit_across_a_boundary_is_gathered_and_the_rest_copied() {
        let u = 5 * MIB;
        // 4 partials of 7 MiB: units straddle 7, 14 and 21 MiB.
        let sources: Vec<(String, u64)> = ["a", "b", "c", "d"]
            .iter()
            .map(|k| ((*k).to_owned(), 7 * MIB))
            .collect();
        let plan =
            numbers_and_sources(plan_parts(0, &sources, 28 * MIB, u, MAX_COPY_PART).expect("plan"));
        assert_eq!(
            plan,
            [
                (1, copy("a", 0, u - 1)),
                (
                    2,
                    PartSource::Gather(vec![
                        ("a".into(), u, 7 * MIB - 1),
                        ("b".into(), 0, 3 * MIB - 1)
                    ])
                ),
                (
                    3,
                    PartSource::Gather(vec![
                        ("b".into(), 3 * MIB, 7 * MIB - 1),
                        ("c".into(), 0, MIB - 1)
                    ])
                ),
                (4, copy("c", MIB, 6 * MIB - 1)),
                (
                    5,
                    PartSource::Gather(vec![
                        ("c".into(), 6 * MIB, 7 * MIB - 1),
                        ("d".into(), 0, 4 * MIB - 1)
                    ])
                ),
                (6, copy("d", 4 * MIB, 7 * MIB - 1)),
            ]
        );
        let gathered: u64 =
            numbers_and_sources(plan_parts(0, &sources, 28 * MIB, u, MAX_COPY_PART).expect("plan"))
                .iter()
                .filter_map(|(_, s)| match s {
                    PartSource::Gather(p) => Some(p.iter().map(|(_, a, b)| b - a + 1).sum::<u64>()),
                    PartSource::Copy { .. } => None,
                })
                .sum();
        assert_eq!(
            gathered,
            3 * u,
            "one unit per boundary passes through memory"
        );
    }

    #[test]
    fn small_partials_share_a_unit_and_every_part_tiles_the_file() {
        let u = 5 * MIB;
        let lens = [MIB, 2 * MIB, 100, 9 * MIB, 3];
        let sources: Vec<(String, u64)> = lens
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("p{i}"), *l))
            .collect();
        let size: u64 = lens.iter().sum();
        let plan = plan_parts(0, &sources, size, u, MAX_COPY_PART).expect("plan");
        let mut next = 0;
        for part in &plan {
            assert_eq!(u64::try_from(part.number - 1).expect("number") * u, next);
            let len: u64 = match &part.source {
                PartSource::Copy { first, last, .. } => last - first + 1,
                PartSource::Gather(p) => p.iter().map(|(_, a, b)| b - a + 1).sum(),
            };
            assert!(len <= u || matches!(part.source, PartSource::Copy { .. }));
            next += len;
            assert!(
                next == size || next.is_multiple_of(u),
                "a short part before the end"
            );
        }
        assert_eq!(next, size);
        assert!(matches!(&plan[0].source, PartSource::Gather(p) if p.len() == 4));
    }

    #[test]
    fn large_copies_are_split_and_spans_off_the_grid_are_refused() {
        let u = 5 * MIB;
        let plan = plan_parts(0, &[("big".into(), 23 * MIB)], 23 * MIB, u, 10 * MIB).expect("plan");
        assert_eq!(
            numbers_and_sources(plan),
            [
                (1, copy("big", 0, 10 * MIB - 1)),
                (3, copy("big", 10 * MIB, 20 * MIB - 1)),
                (5, copy("big", 20 * MIB, 23 * MIB - 1)),
            ]
        );
        // A run laid from the second unit, ending on the grid before the file's end.
        let plan = plan_parts(u, &[("x".into(), 2 * u)], 4 * u, u, MAX_COPY_PART).expect("plan");
        assert_eq!(numbers_and_sources(plan), [(2, copy("x", 0, 2 * u - 1))]);
        for (at, len) in [(1, u), (0, u + 1), (0, 5 * u)] {
            let e = plan_parts(at, &[("x".into(), len)], 4 * u, u, MAX_COPY_PART)
                .expect_err("off the grid");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn range_crcs_combine_into_the_whole_files() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 253) as u8).collect();
        let crc = |a: usize, b: usize| {
            (
                a as u64,
                (b - a) as u64,
                crc_fast::checksum(CRC, &data[a..b]),
            )
        };
        let whole = crc_fast::checksum(CRC, &data);
        // Overlapping and superseded records: a tiling is found among them.
        let records = [
            crc(0, 4000),
            crc(4000, 6000),
            crc(6000, 10_000),
            crc(4000, 9000),
            crc(0, 1000),
        ];
        assert_eq!(tiled_crc(&records, 10_000), Some(whole));
        assert_eq!(
            tiled_crc(&records, 6000),
            Some(crc_fast::checksum(CRC, &data[..6000]))
        );
        // A gap: no checksum rather than a wrong one.
        assert_eq!(tiled_crc(&[crc(0, 4000), crc(6000, 10_000)], 10_000), None);
        assert_eq!(tiled_crc(&[], 0), Some(crc_fast::checksum(CRC, b"")));
        assert_eq!(parse_crc_header(&crc_header(whole)), Some(whole));
    }

    #[test]
    fn the_chain_skips_stale_parts_and_takes_the_last_sent() {
        let u = 5 * MIB;
        let part = |n: i32, tag: &str, len: u64, at: i64| (n, tag.to_owned(), len, at);
        let tags = |parts: &[CompletedPart]| -> Vec<String> {
            parts
                .iter()
                .filter_map(|p| p.e_tag().map(str::to_owned))
                .collect()
        };
        // Part 2 stale (covered by part 1 of two units); part 3 sent twice, the second later.
        let listed = vec![
            part(2, "stale", u, 10),
            part(1, "two-units", 2 * u, 11),
            part(3, "old", 7, 12),
            part(3, "new", 7, 13),
        ];
        let (chain, end) = file_parts(listed.clone(), u, 2 * u + 7, true).expect("chain");
        assert_eq!(tags(&chain), ["two-units", "new"]);
        assert_eq!(end, 2 * u + 7);
        // The last sent does not fit the file: the one that does is taken.
        let listed = vec![
            part(1, "fits", u, 10),
            part(1, "longer", 3 * u, 20),
            part(2, "rest", 5, 11),
        ];
        let (chain, _) = file_parts(listed, u, u + 5, true).expect("chain");
        assert_eq!(tags(&chain), ["fits", "rest"]);
        // A gap is an error; a prefix may end past what is wanted.
        let e = file_parts(
            vec![part(1, "a", u, 1), part(3, "c", 5, 1)],
            u,
            2 * u + 5,
            true,
        )
        .expect_err("a gap");
        assert!(e.to_string().contains("cover 0 of 10485765 bytes"), "{e}");
        let (chain, end) = file_parts(vec![part(1, "a", 2 * u, 1)], u, u, false).expect("prefix");
        assert_eq!((tags(&chain), end), (vec!["a".to_owned()], 2 * u));
    }
}
