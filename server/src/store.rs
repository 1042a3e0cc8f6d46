//! Where upload bytes live. [`ByteStore`] knows nothing of HTTP: the routes hand it ranges, it
//! writes them in place. The default [`FsByteStore`] keeps one preallocated `.part` file per
//! upload, takes positioned writes from any number of chunks at once, and completes by linking the
//! file into its folder: no per-chunk files, no concatenation, O(1) in the file size.
//!
//! A scale-out store (S3 multipart) implements the same trait; its part-size rule reaches clients
//! through [`ChunkLayout::alignment`].

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod s3;

use crate::beneath::{self, Blocked};
use crate::validate::RelPath;

/// The chunk geometry a store needs from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Suggested chunk size.
    pub chunk_size: u64,
    /// Every chunk but the last must start and end on multiples of this (1 = any byte).
    pub alignment: u64,
    /// Largest chunk body accepted.
    pub max_chunk_size: u64,
}

/// Writes ranges of one upload. Cheap to clone and share between the chunks in flight.
pub trait RangeWriter: Send + Sync + Debug {
    /// Writes `data` at `offset`. Concurrent writers of disjoint (or identical) ranges are fine.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable.
    fn sync(&self) -> io::Result<()>;
}

/// Storage for upload bytes. All methods block; call them off the async executor.
pub trait ByteStore: Send + Sync + Debug {
    fn layout(&self) -> ChunkLayout;
    /// The layout of one upload of `size` bytes: a store whose parts have a minimum size and a
    /// maximum count (S3 multipart) announces a larger alignment for a larger file.
    fn layout_for(&self, size: u64) -> ChunkLayout {
        let _ = size;
        self.layout()
    }
    /// Reserves room for an upload of `size` bytes (fails with ENOSPC when there is none).
    fn create(&self, upload_id: &str, size: u64) -> io::Result<()>;
    fn writer(&self, upload_id: &str) -> io::Result<Arc<dyn RangeWriter>>;
    /// Reads up to `len` bytes from `offset` (fewer at the end of the upload).
    fn read_at(&self, upload_id: &str, offset: u64, len: u64) -> io::Result<Vec<u8>>;
    /// Whether `folder/path` can be created under the files root: every existing folder on the way
    /// is a real folder (not a file, not a link). Checked when a session opens.
    fn check_target(&self, folder: &str, path: &RelPath) -> io::Result<Result<(), Blocked>>;
    /// Moves the finished upload to `folder/path` under the files root without copying. An
    /// existing file of that name is kept and the upload gets a ` (n)` suffix. Returns the final
    /// path relative to `folder`. Idempotent: after a crash it finds its own earlier result.
    fn finalize(&self, upload_id: &str, folder: &str, path: &RelPath) -> io::Result<String>;
    /// Frees what the upload holds and says how many bytes that was. Missing uploads are not an error.
    fn discard(&self, upload_id: &str) -> io::Result<u64>;
    /// Time since the upload's bytes were last written, or none if the store holds none.
    fn age(&self, upload_id: &str) -> io::Result<Option<std::time::Duration>>;
    /// Ids of every upload the store holds bytes for (to find orphans after a crash).
    fn list(&self) -> io::Result<Vec<String>>;
    /// Sets the length of an upload whose size was not known when it was created, reserving its
    /// blocks as [`ByteStore::create`] does.
    fn set_size(&self, upload_id: &str, size: u64) -> io::Result<()>;
    /// Copies the first `len` bytes of each upload in `parts`, one after the other, into upload
    /// `into` from offset `at`, and makes them durable (tus concatenation). This default passes
    /// the bytes through memory; a store that can copy inside the storage overrides it.
    fn join(&self, into: &str, at: u64, parts: &[(String, u64)]) -> io::Result<()> {
        let writer = self.writer(into)?;
        let mut to = at;
        for (id, len) in parts {
            let mut from = 0;
            while from < *len {
                let piece = self.read_at(id, from, (len - from).min(1 << 20))?;
                if piece.is_empty() {
                    return Err(io::Error::from(ErrorKind::UnexpectedEof));
                }
                writer.write_at(to, &piece)?;
                from += piece.len() as u64;
                to += piece.len() as u64;
            }
        }
        writer.sync()
    }
}

/// Default store: a directory of `.part` files plus the files root.
#[derive(Debug)]
pub struct FsByteStore {
    parts_dir: PathBuf,
    files_dir: PathBuf,
    layout: ChunkLayout,
}

impl FsByteStore {
    pub fn open(parts_dir: PathBuf, files_dir: PathBuf, layout: ChunkLayout) -> io::Result<Self> {
        for dir in [&parts_dir, &files_dir] {
            fs::create_dir_all(dir)?;
            // Make the folders' own names durable on purpose, not because SQLite happens to sync
            // the data directory when it creates its journal.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(Self {
            parts_dir,
            files_dir,
            layout,
        })
    }

    /// Upload ids are validated before they reach the store, so they are safe file names.
    pub fn part_path(&self, upload_id: &str) -> PathBuf {
        self.parts_dir.join(format!("{upload_id}.part"))
    }

    pub fn files_dir(&self) -> &Path {
        &self.files_dir
    }
}

#[derive(Debug)]
struct PartWriter(File);

impl RangeWriter for PartWriter {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl ByteStore for FsByteStore {
    fn layout(&self) -> ChunkLayout {
        self.layout
    }

    fn create(&self, upload_id: &str, size: u64) -> io::Result<()> {
        let path = self.part_path(upload_id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        if let Err(e) = preallocate(&file, size) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        file.sync_all()?;
        sync_dir(&self.parts_dir)
    }

    fn writer(&self, upload_id: &str) -> io::Result<Arc<dyn RangeWriter>> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.part_path(upload_id))?;
        Ok(Arc::new(PartWriter(file)))
    }

    fn read_at(&self, upload_id: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let file = File::open(self.part_path(upload_id))?;
        let size = file.metadata()?.len();
        let len = len.min(size.saturating_sub(offset));
        let mut buf =
            vec![0; usize::try_from(len).map_err(|_| io::Error::from(ErrorKind::InvalidInput))?];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn check_target(&self, folder: &str, path: &RelPath) -> io::Result<Result<(), Blocked>> {
        let components = target_dirs(folder, path)?;
        beneath::probe_dirs(&self.files_dir, &components)
    }

    fn finalize(&self, upload_id: &str, folder: &str, path: &RelPath) -> io::Result<String> {
        let part = self.part_path(upload_id);
        let part_meta = fs::metadata(&part)?;
        let dir = beneath::open_dirs(&self.files_dir, &target_dirs(folder, path)?)?;
        let name = path.file_name();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, Some(e)),
            _ => (name, None),
        };
        for n in 0u32..10_000 {
            let candidate = match (n, ext) {
                (0, _) => name.to_owned(),
                (_, Some(ext)) => format!("{stem} ({n}).{ext}"),
                (_, None) => format!("{stem} ({n})"),
            };
            // A hard link never replaces an existing file (nor follows a link planted in its
            // place), and costs the same for 1 byte or 4 GiB.
            let linked = match rustix::fs::linkat(
                rustix::fs::CWD,
                &part,
                &dir,
                candidate.as_str(),
                rustix::fs::AtFlags::empty(),
            ) {
                Ok(()) => true,
                Err(e) if e == rustix::io::Errno::EXIST => {
                    // Ours from an attempt that crashed before it was recorded?
                    beneath::identity(&dir, &candidate)? == Some((part_meta.ino(), part_meta.dev()))
                }
                Err(e) if e == rustix::io::Errno::XDEV => {
                    copy_durably(&part, &dir, &candidate)?;
                    true
                }
                Err(e) => return Err(e.into()),
            };
            if linked {
                #[cfg(not(feature = "mutant-no-link-dir-sync"))]
                rustix::fs::fsync(&dir)?;
                return Ok(match path.parent() {
                    Some(parent) => format!("{parent}/{candidate}"),
                    None => candidate,
                });
            }
        }
        Err(io::Error::new(
            ErrorKind::AlreadyExists,
            "no free file name",
        ))
    }

    fn discard(&self, upload_id: &str) -> io::Result<u64> {
        let path = self.part_path(upload_id);
        let size = match fs::metadata(&path) {
            // Blocks actually held: a sparse or preallocated file may differ from its length.
            Ok(m) => m.blocks() * 512,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.parts_dir).map(|()| size),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn age(&self, upload_id: &str) -> io::Result<Option<std::time::Duration>> {
        match fs::metadata(self.part_path(upload_id)) {
            Ok(m) => Ok(Some(age_of(m.modified()?))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_size(&self, upload_id: &str, size: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.part_path(upload_id))?;
        file.set_len(size)?;
        preallocate(&file, size)?;
        file.sync_all()
    }

    /// `copy_file_range`: the kernel copies (or, on btrfs and XFS, shares the blocks by reflink);
    /// no byte passes through user space.
    fn join(&self, into: &str, at: u64, parts: &[(String, u64)]) -> io::Result<()> {
        let out = OpenOptions::new().write(true).open(self.part_path(into))?;
        let mut to = at;
        for (id, len) in parts {
            let src = File::open(self.part_path(id))?;
            let mut from = 0u64;
            while from < *len {
                let want = usize::try_from((len - from).min(1 << 30)).unwrap_or(1 << 30);
                let n =
                    rustix::fs::copy_file_range(&src, Some(&mut from), &out, Some(&mut to), want)?;
                if n == 0 {
                    return Err(io::Error::from(ErrorKind::UnexpectedEof));
                }
            }
        }
        out.sync_data()
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.parts_dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".part")) {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }
}

/// Reserves the blocks up front so that a full disk fails the upload at its start, not at 99 %.
fn preallocate(file: &File, size: u64) -> io::Result<()> {
    if size == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate get a sparse file of the right length.
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            file.set_len(size)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes a rename, link or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Only when the files root is on another filesystem than the parts: a copy, made durable.
fn copy_durably(from: &Path, dir: &OwnedFd, name: &str) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let mut src = File::open(from)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut dst = File::from(fd);
    io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

/// The folders an upload lands in: the link's folder, then the path's own folders.
fn target_dirs<'a>(folder: &'a str, path: &'a RelPath) -> io::Result<Vec<&'a str>> {
    let folder = if folder.is_empty() {
        None
    } else {
        Some(folder)
    };
    let mut out: Vec<&str> = folder.into_iter().flat_map(|f| f.split('/')).collect();
    if out.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(io::Error::new(ErrorKind::InvalidInput, "invalid folder"));
    }
    out.extend(path.parent().into_iter().flat_map(|p| p.split('/')));
    Ok(out)
}

/// How old a file is, by its modification time.
pub fn age_of(modified: std::time::SystemTime) -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> FsByteStore {
        FsByteStore::open(
            dir.join("parts"),
            dir.join("files"),
            ChunkLayout {
                chunk_size: 8,
                alignment: 1,
                max_chunk_size: 64,
            },
        )
        .unwrap()
    }

    #[test]
    fn writes_in_any_order_and_finalizes_with_suffixes() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        for id in ["upload-one", "upload-two"] {
            s.create(id, 10).unwrap();
            let w = s.writer(id).unwrap();
            w.write_at(5, b"56789").unwrap();
            w.write_at(0, b"01234").unwrap();
            w.sync().unwrap();
            assert_eq!(s.read_at(id, 0, 100).unwrap(), b"0123456789");
        }
        let path = RelPath::parse("sub/clip.mp4").unwrap();
        assert_eq!(
            s.finalize("upload-one", "req", &path).unwrap(),
            "sub/clip.mp4"
        );
        // Idempotent: the same upload finalized again finds its own link.
        assert_eq!(
            s.finalize("upload-one", "req", &path).unwrap(),
            "sub/clip.mp4"
        );
        assert_eq!(
            s.finalize("upload-two", "req", &path).unwrap(),
            "sub/clip (1).mp4"
        );
        assert_eq!(
            fs::read(tmp.path().join("files/req/sub/clip (1).mp4")).unwrap(),
            b"0123456789"
        );
        s.discard("upload-one").unwrap();
        s.discard("upload-one").unwrap();
        assert_eq!(s.list().unwrap(), vec!["upload-two".to_owned()]);
        assert!(s.create("upload-two", 1).is_err(), "ids are never reused");
    }
}
