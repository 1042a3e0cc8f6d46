//! Folders and files beneath the files root, reached one component at a time without following
//! symbolic links: a symlink planted inside the files tree (by an operator, a sync tool or another
//! program) can never make an upload land outside it. Every walk starts from a directory handle
//! and opens each next component with `O_NOFOLLOW | O_DIRECTORY`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{mkdirat, openat, statat, AtFlags, FileType, Mode, OFlags, CWD};

/// What stands in the way of a folder path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// The component at this index exists but is a file, a symlink or something else.
    NotAFolder(usize),
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The root itself (chosen by the operator, so it may be reached through a link).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn is_blocked(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::LOOP
}

/// Opens `components` beneath `root`, creating missing folders. A component that exists and is
/// not a real folder fails with [`io::ErrorKind::NotADirectory`].
pub fn open_dirs(root: &Path, components: &[&str]) -> io::Result<OwnedFd> {
    let mut dir = open_root(root)?;
    for name in components {
        dir = match openat(dir.as_fd(), *name, dir_flags(), Mode::empty()) {
            Ok(next) => next,
            Err(e) if e == rustix::io::Errno::NOENT => {
                match mkdirat(dir.as_fd(), *name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    // Another upload made it a moment ago.
                    Err(e) if e == rustix::io::Errno::EXIST => {}
                    Err(e) => return Err(e.into()),
                }
                #[cfg(not(feature = "mutant-no-mkdir-parent-sync"))]
                rustix::fs::fsync(dir.as_fd())?;
                openat(dir.as_fd(), *name, dir_flags(), Mode::empty()).map_err(not_a_folder)?
            }
            Err(e) => return Err(not_a_folder(e)),
        };
    }
    Ok(dir)
}

fn not_a_folder(e: rustix::io::Errno) -> io::Error {
    if is_blocked(e) {
        io::Error::new(
            io::ErrorKind::NotADirectory,
            "a folder on the path is a file or a link",
        )
    } else {
        e.into()
    }
}

/// Checks, without creating anything, that each existing component of `components` beneath
/// `root` is a real folder (missing ones will be created at completion).
pub fn probe_dirs(root: &Path, components: &[&str]) -> io::Result<Result<(), Blocked>> {
    let mut dir = match open_root(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(())),
        Err(e) => return Err(e),
    };
    for (i, name) in components.iter().enumerate() {
        dir = match openat(dir.as_fd(), *name, dir_flags(), Mode::empty()) {
            Ok(next) => next,
            Err(e) if e == rustix::io::Errno::NOENT => return Ok(Ok(())),
            Err(e) if is_blocked(e) => return Ok(Err(Blocked::NotAFolder(i))),
            Err(e) => return Err(e.into()),
        };
    }
    Ok(Ok(()))
}

/// The inode and device of `name` in `dir`, not following a link; none when it does not exist.
pub fn identity(dir: impl AsFd, name: &str) -> io::Result<Option<(u64, u64)>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Ok(Some((0, 0))),
        Ok(st) => Ok(Some((st.st_ino, st.st_dev))),
        Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_links_and_files_on_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("files");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/file"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("a/link")).unwrap();
        assert_eq!(probe_dirs(&root, &["a", "new", "deeper"]).unwrap(), Ok(()));
        assert_eq!(
            probe_dirs(&root, &["a", "file", "x"]).unwrap(),
            Err(Blocked::NotAFolder(1))
        );
        assert_eq!(
            probe_dirs(&root, &["a", "link"]).unwrap(),
            Err(Blocked::NotAFolder(1))
        );
        let err = open_dirs(&root, &["a", "link", "x"]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
        assert!(
            !tmp.path().join("x").exists(),
            "nothing made outside the root"
        );
        open_dirs(&root, &["a", "b", "c"]).unwrap();
        assert!(root.join("a/b/c").is_dir());
    }
}
