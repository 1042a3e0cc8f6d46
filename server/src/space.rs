//! Disk space: new uploads must leave a configured headroom free, and a small reserve file keeps
//! room for the metadata writes that free space (abort, expiry, cleanup), so that a full disk
//! can always be emptied again. When such a write meets a full disk, the reserve is released and
//! the write tried once more; the reserve comes back once there is room.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use droppr_protocol::wire::ErrorCode;

use crate::error::{Error, Result};

/// Bytes kept in the reserve file: far more than opening the database (its 32 KiB shared-memory
/// file) and deleting rows of sessions (a few WAL pages) need.
pub const RESERVE_BYTES: u64 = 1024 * 1024;

#[derive(Debug)]
pub struct Space {
    data_dir: PathBuf,
    reserve: PathBuf,
    min_free: u64,
}

impl Space {
    /// Watches the filesystem of `data_dir`; puts the reserve file in place when there is room.
    pub fn open(data_dir: &Path, min_free: u64) -> Self {
        let space = Space {
            data_dir: data_dir.to_owned(),
            reserve: data_dir.join("space.reserve"),
            min_free,
        };
        space.restore_reserve();
        space
    }

    /// Bytes available to the server on the data directory's filesystem.
    pub fn available(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.data_dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Refuses (507) a new upload of `size` bytes that would leave less than the headroom free.
    pub fn check_room(&self, size: u64) -> Result<()> {
        let free = self.available()?;
        if free.saturating_sub(size) < self.min_free || free < size {
            tracing::warn!(
                free,
                size,
                headroom = self.min_free,
                "upload refused: disk nearly full"
            );
            return Err(Error::client(
                ErrorCode::InsufficientStorage,
                "The server does not have room for this file right now.",
            ));
        }
        Ok(())
    }

    /// Whether the disk has less room left than the reserve holds.
    fn nearly_full(&self) -> bool {
        self.available().is_ok_and(|free| free < RESERVE_BYTES)
    }

    /// Runs `op`, a write that frees space (or opening the metadata, which needs a little room);
    /// if it fails on a full disk (SQLite reports that as "full" or as an I/O error on its
    /// journal), releases the reserve and runs it once more.
    pub fn freeing<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        match op() {
            Err(e) if e.is_disk_full() || self.nearly_full() => {
                tracing::warn!("disk full: releasing the metadata reserve to free space");
                match fs::remove_file(&self.reserve) {
                    Ok(()) => {}
                    Err(r) if r.kind() == io::ErrorKind::NotFound => return Err(e),
                    Err(r) => return Err(r.into()),
                }
                op()
            }
            other => other,
        }
    }

    /// Puts the reserve file back if it is missing and the disk has room for it and the headroom.
    pub fn restore_reserve(&self) {
        if self.reserve.exists() {
            return;
        }
        let room = self
            .available()
            .is_ok_and(|free| free >= RESERVE_BYTES.saturating_mul(2));
        if !room {
            return;
        }
        let made = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.reserve)
            .and_then(|f| {
                // Real blocks, not a sparse file: deleting it must free space.
                rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)?;
                f.sync_all()
            });
        if let Err(e) = made {
            let _ = fs::remove_file(&self.reserve);
            tracing::warn!(error = %e, "could not put the metadata reserve in place");
        }
    }
}
