//! The resume record the uploader keeps in `localStorage`.
//!
//! The key names the upload URL (so the request), the file's relative path or name, its size
//! and its `lastModified`: two different files with the same name and size no longer collide
//! (original defect 7). The record is only a hint: on start the server is asked which ranges are
//! missing. A record that is corrupt, stale (older than 24 h), for another file, or holding
//! nonsense (a bad upload id, chunk indices that cannot exist) is ignored, never trusted
//! (original defect 6).

use serde::{Deserialize, Serialize};

use crate::composite::PartDigest;
use crate::text::decimal;
use crate::wire::is_valid_upload_id;

/// Every key starts with this, as in the design document.
pub const RECORD_KEY_PREFIX: &str = "droppr_upload_parallel_";
/// Records older than this are dropped (the design document's 24 hours).
pub const RECORD_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// A record stamped further in the future than this is not believed.
const MAX_CLOCK_SKEW_MS: u64 = 60 * 60 * 1000;
/// More remembered chunks than this is not a record this uploader wrote.
const MAX_COMPLETED_CHUNKS: usize = 1 << 20;

/// What identifies the file being uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity<'a> {
    pub upload_url: &'a str,
    /// The relative path with folders when given, else the file name.
    pub name: &'a str,
    pub size: u64,
    /// `File.lastModified`, milliseconds since the epoch.
    pub last_modified: u64,
}

impl FileIdentity<'_> {
    /// The `localStorage` key of this file's record. The fields are percent-encoded just enough
    /// that the separator cannot appear inside them.
    pub fn record_key(&self) -> String {
        [
            RECORD_KEY_PREFIX,
            &escape(self.upload_url),
            "|",
            &escape(self.name),
            "|",
            &decimal(self.size),
            "|",
            &decimal(self.last_modified),
        ]
        .concat()
    }
}

fn escape(s: &str) -> String {
    // A loop rather than `str::replace`, whose pattern searcher is a kilobyte of wasm.
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
    out
}

/// A stored record (JSON, camelCase as the design document's example).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub upload_id: String,
    /// Indices of the chunks the server acknowledged (a hint; the server decides).
    #[serde(default)]
    pub completed_chunks: Vec<u64>,
    /// When the record was last written, milliseconds since the epoch.
    pub timestamp: u64,
    pub upload_url: String,
    pub name: String,
    pub size: u64,
    pub last_modified: u64,
    /// The index the next new chunk gets, so indices stay unique across resumes.
    #[serde(default)]
    pub next_chunk_index: u64,
    /// The acknowledged chunks' ranges and SHA-256 digests, sorted by offset: what the
    /// uploader needs for the whole-file composite checksum after a reload ([`crate::composite`]).
    #[serde(default)]
    pub parts: Vec<PartDigest>,
}

/// Why a stored record was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordRejected {
    #[error("the resume record is not valid JSON of the expected shape")]
    Corrupt,
    #[error("the resume record is older than 24 hours")]
    Expired,
    #[error("the resume record is dated in the future")]
    FromTheFuture,
    #[error("the resume record belongs to another file or request")]
    OtherFile,
    #[error("the resume record holds an invalid upload id")]
    BadUploadId,
}

impl SessionRecord {
    /// A fresh record for `file`'s session `upload_id`.
    pub fn new(file: &FileIdentity<'_>, upload_id: &str, now_ms: u64) -> Self {
        Self {
            upload_id: upload_id.to_owned(),
            completed_chunks: Vec::new(),
            timestamp: now_ms,
            upload_url: file.upload_url.to_owned(),
            name: file.name.to_owned(),
            size: file.size,
            last_modified: file.last_modified,
            next_chunk_index: 0,
            parts: Vec::new(),
        }
    }

    /// Reads a stored record for `file`, refusing anything that does not fit (chunk indices must
    /// be strictly ascending, as this uploader writes them), so a later step never trips over it.
    pub fn load(json: &str, file: &FileIdentity<'_>, now_ms: u64) -> Result<Self, RecordRejected> {
        let record: Self = serde_json::from_str(json).map_err(|_| RecordRejected::Corrupt)?;
        record.validate(file, now_ms)
    }

    /// The checks of [`Self::load`] on a record already read by other means (the wasm glue reads
    /// it with the browser's `JSON.parse`, which keeps a JSON parser out of the wasm binary).
    pub fn validate(self, file: &FileIdentity<'_>, now_ms: u64) -> Result<Self, RecordRejected> {
        let record = self.validate_unfinished(file.upload_url, now_ms)?;
        if record.name != file.name
            || record.size != file.size
            || record.last_modified != file.last_modified
        {
            return Err(RecordRejected::OtherFile);
        }
        Ok(record)
    }

    /// The checks of [`Self::validate`] that need no file: a record of `upload_url` that an
    /// uploader would still resume (what `findUnfinishedUploads` lists for a page).
    pub fn validate_unfinished(
        self,
        upload_url: &str,
        now_ms: u64,
    ) -> Result<Self, RecordRejected> {
        let mut record = self;
        if record.timestamp > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(RecordRejected::FromTheFuture);
        }
        if now_ms.saturating_sub(record.timestamp) > RECORD_TTL_MS {
            return Err(RecordRejected::Expired);
        }
        if record.upload_url != upload_url {
            return Err(RecordRejected::OtherFile);
        }
        if !is_valid_upload_id(&record.upload_id) {
            return Err(RecordRejected::BadUploadId);
        }
        if record.completed_chunks.len() > MAX_COMPLETED_CHUNKS
            || record.parts.len() > MAX_COMPLETED_CHUNKS
            || record
                .parts
                .iter()
                .any(|p| p.end < p.start || p.end >= record.size)
        {
            return Err(RecordRejected::Corrupt);
        }
        // This uploader writes them strictly ascending; anything else is not its record.
        if record.completed_chunks.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RecordRejected::Corrupt);
        }
        let past_last = record
            .completed_chunks
            .last()
            .map_or(0, |&i| i.saturating_add(1));
        record.next_chunk_index = record.next_chunk_index.max(past_last);
        Ok(record)
    }

    /// Notes an acknowledged chunk and refreshes the timestamp.
    pub fn chunk_done(&mut self, index: u64, next_chunk_index: u64, now_ms: u64) {
        if let Err(at) = self.completed_chunks.binary_search(&index) {
            self.completed_chunks.insert(at, index);
        }
        self.next_chunk_index = self.next_chunk_index.max(next_chunk_index);
        self.timestamp = now_ms;
    }

    /// Notes the digest of an acknowledged chunk (a chunk acknowledged again replaces its entry).
    pub fn part_done(&mut self, part: PartDigest) {
        match self.parts.binary_search_by_key(&part.start, |p| p.start) {
            Ok(at) => self.parts[at] = part,
            Err(at) => self.parts.insert(at, part),
        }
    }

    /// The JSON to store.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000_000;

    fn file() -> FileIdentity<'static> {
        FileIdentity {
            upload_url: "https://x.test/api/droppr/requests/abc/upload-chunk",
            name: "holiday/clip.mp4",
            size: 123_456,
            last_modified: 1_600_000_000_000,
        }
    }

    #[test]
    fn keys_differ_by_request_file_size_and_date() {
        let base = file();
        let keys = [
            base.record_key(),
            FileIdentity {
                upload_url: "https://x.test/api/droppr/requests/other/upload-chunk",
                ..base
            }
            .record_key(),
            FileIdentity {
                name: "clip.mp4",
                ..base
            }
            .record_key(),
            FileIdentity { size: 1, ..base }.record_key(),
            FileIdentity {
                last_modified: 1,
                ..base
            }
            .record_key(),
        ];
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert!(keys[0].starts_with(RECORD_KEY_PREFIX));
        // The separator cannot be forged from inside a field.
        let a = FileIdentity {
            upload_url: "u|x",
            name: "n",
            ..base
        }
        .record_key();
        let b = FileIdentity {
            upload_url: "u",
            name: "x|n",
            ..base
        }
        .record_key();
        assert_ne!(a, b);
    }

    #[test]
    fn round_trips_and_refuses_disordered_indices() {
        let mut r = SessionRecord::new(&file(), "abcdefgh12345678", NOW);
        r.chunk_done(3, 4, NOW);
        r.chunk_done(1, 4, NOW);
        r.chunk_done(3, 4, NOW + 5);
        assert_eq!(r.completed_chunks, vec![1, 3]);
        let json = r.to_json();
        assert!(json.contains(r#""uploadId":"abcdefgh12345678""#), "{json}");
        assert!(json.contains(r#""completedChunks":[1,3]"#), "{json}");
        assert_eq!(SessionRecord::load(&json, &file(), NOW + 10), Ok(r));
        let messy = json.replace("[1,3]", "[9,3,3,1]");
        assert_eq!(
            SessionRecord::load(&messy, &file(), NOW),
            Err(RecordRejected::Corrupt)
        );
        let behind = json.replace(r#""nextChunkIndex":4"#, r#""nextChunkIndex":0"#);
        assert_eq!(
            SessionRecord::load(&behind, &file(), NOW)
                .unwrap()
                .next_chunk_index,
            4
        );
    }

    #[test]
    fn keeps_part_digests_in_offset_order_and_refuses_parts_outside_the_file() {
        use crate::composite::Sha256Digest;
        let part = |start, end, b| PartDigest {
            start,
            end,
            sha256: Sha256Digest([b; 32]),
        };
        let mut r = SessionRecord::new(&file(), "abcdefgh12345678", NOW);
        r.part_done(part(100, 199, 2));
        r.part_done(part(0, 99, 1));
        r.part_done(part(100, 199, 3));
        assert_eq!(r.parts, vec![part(0, 99, 1), part(100, 199, 3)]);
        let json = r.to_json();
        assert_eq!(SessionRecord::load(&json, &file(), NOW), Ok(r.clone()));
        // A record written before parts were kept still loads, with none.
        let old = json.replace(&json[json.find(r#","parts""#).unwrap()..json.len() - 1], "");
        assert!(!old.contains("parts"), "{old}");
        assert_eq!(
            SessionRecord::load(&old, &file(), NOW).unwrap().parts,
            vec![]
        );
        r.part_done(part(123_000, 123_456, 4));
        assert_eq!(
            SessionRecord::load(&r.to_json(), &file(), NOW),
            Err(RecordRejected::Corrupt)
        );
    }

    #[test]
    fn refuses_stale_corrupt_and_foreign_records() {
        let good = SessionRecord::new(&file(), "abcdefgh12345678", NOW);
        let load = |r: &SessionRecord, now| SessionRecord::load(&r.to_json(), &file(), now);
        assert!(load(&good, NOW + RECORD_TTL_MS).is_ok());
        assert_eq!(
            load(&good, NOW + RECORD_TTL_MS + 1),
            Err(RecordRejected::Expired)
        );
        assert_eq!(
            load(&good, NOW - 2 * MAX_CLOCK_SKEW_MS),
            Err(RecordRejected::FromTheFuture)
        );
        let other = SessionRecord {
            size: 1,
            ..good.clone()
        };
        assert_eq!(load(&other, NOW), Err(RecordRejected::OtherFile));
        let bad_id = SessionRecord {
            upload_id: "../x".into(),
            ..good.clone()
        };
        assert_eq!(load(&bad_id, NOW), Err(RecordRejected::BadUploadId));
        for junk in [
            "",
            "null",
            "[]",
            "{",
            r#"{"uploadId":5}"#,
            r#"{"uploadId":"abcdefgh","timestamp":-1}"#,
        ] {
            assert_eq!(
                SessionRecord::load(junk, &file(), NOW),
                Err(RecordRejected::Corrupt),
                "{junk}"
            );
        }
        // The design document's minimal example shape lacks the identity fields: not ours.
        let minimal =
            r#"{"uploadId":"abc123abc","completedChunks":[0,1,2,5,7],"timestamp":1234567890}"#;
        assert_eq!(
            SessionRecord::load(minimal, &file(), NOW),
            Err(RecordRejected::Corrupt)
        );
    }

    #[test]
    fn unfinished_records_are_checked_without_the_file() {
        let good = SessionRecord::new(&file(), "abcdefgh12345678", NOW);
        let url = file().upload_url;
        assert_eq!(good.clone().validate_unfinished(url, NOW), Ok(good.clone()));
        assert_eq!(
            good.clone()
                .validate_unfinished("https://x.test/other", NOW),
            Err(RecordRejected::OtherFile)
        );
        assert_eq!(
            good.clone()
                .validate_unfinished(url, NOW + RECORD_TTL_MS + 1),
            Err(RecordRejected::Expired)
        );
        let bad_id = SessionRecord {
            upload_id: "x".into(),
            ..good
        };
        assert_eq!(
            bad_id.validate_unfinished(url, NOW),
            Err(RecordRejected::BadUploadId)
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(json in ".{0,200}", now in any::<u64>()) {
            let _ = SessionRecord::load(&json, &file(), now);
        }

        #[test]
        fn accepts_exactly_the_records_younger_than_a_day(age in 0u64..(3 * RECORD_TTL_MS)) {
            let r = SessionRecord::new(&file(), "abcdefgh12345678", NOW);
            let got = SessionRecord::load(&r.to_json(), &file(), NOW + age);
            prop_assert_eq!(got.is_ok(), age <= RECORD_TTL_MS);
        }
    }
}
