//! `droppr-faultfs`: a FUSE filesystem for power-cut tests. It serves a backing directory, keeps
//! every change in memory, and writes to the backing directory only what a real disk would have
//! after a power cut: file data once the file is `fsync`ed or `fdatasync`ed, a directory's
//! entries (create, link, rename, unlink, mkdir, rmdir) once the directory is `fsync`ed. Unmount
//! is the power cut: whatever was not synced is gone, and mounting the backing directory again
//! shows what a machine would find at boot. LazyFS ("When Amnesia Strikes", VLDB 2024) models
//! lost unsynced data the same way; this layer adds the namespace, so that a missing directory
//! sync after a rename or a link is caught too.
//!
//! What it models, precisely ([`model`]):
//! - A file's bytes, length and mode become durable together at its sync. A name that became
//!   durable before its file was ever synced shows an empty file.
//! - A directory's entries become durable at its sync, all of them. A directory made since the
//!   last sync of its parent becomes durable in its parent when it is synced itself, as ext4, XFS
//!   and btrfs do ([`NewDirs::WithOwnSync`]); [`NewDirs::WithParentSync`] is strict POSIX.
//! - Timestamps, owners and hard-link counts are kept live only. Directories move only within
//!   their parent (`EXDEV` otherwise). No symlinks, device nodes, xattrs or locks through the
//!   daemon (the kernel keeps POSIX locks itself), which is all SQLite and the server need.
//!
//! Everything is held in memory, live and durable, so it is for test-sized data (tens of MiB).
//! Shared `mmap` works (SQLite's WAL index): the kernel page cache is kept between opens.

mod backing;
mod fuse;
pub mod model;

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use model::Model;
pub use model::NewDirs;

/// A mounted faultfs. Dropping it is a power cut too.
#[derive(Debug)]
#[must_use = "dropping the mount cuts the power at once"]
pub struct Mounted {
    session: fuser::BackgroundSession,
    model: Arc<Mutex<Model>>,
}

/// Serves `backing` at `mountpoint` (an empty directory). Needs /dev/fuse and, unless run as root,
/// `fusermount3`.
pub fn mount(backing: &Path, mountpoint: &Path, new_dirs: NewDirs) -> io::Result<Mounted> {
    let model = Arc::new(Mutex::new(Model::load(backing, new_dirs)?));
    let fs = fuse::FaultFs {
        model: model.clone(),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("droppr-faultfs".to_owned()),
        fuser::MountOption::Subtype("droppr-faultfs".to_owned()),
    ];
    let session = fuser::Session::new(fs, mountpoint, &config)?.spawn()?;
    Ok(Mounted { session, model })
}

impl Mounted {
    /// Makes everything durable, as the kernel's writeback eventually does on a machine that
    /// stays up: for setting a scene before the cuts that count.
    pub fn sync_all(&self) -> io::Result<()> {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sync_all()
            .map_err(|e| io::Error::from_raw_os_error(e.0))
    }

    /// False once something else unmounted it (`umount MOUNTPOINT`).
    pub fn is_mounted(&self) -> bool {
        !self.session.guard.is_finished()
    }

    /// Unmounts without writing anything back: the backing directory keeps only what was synced.
    /// Fails while files on the mount are still open.
    pub fn power_cut(self) -> io::Result<()> {
        self.session.umount_and_join()
    }
}
