//! The backing directory: read whole at mount (all of it is durable then), and kept equal to the
//! reachable part of the durable tree afterwards. Hard links stay hard links both ways.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::model::{Body, Ino, Meta, Node, Tree, ROOT};

/// The tree under `root` and the next free inode number.
pub fn load(root: &Path) -> io::Result<(Tree, Ino)> {
    let mut loader = Loader {
        tree: Tree::new(),
        next: ROOT + 1,
        seen: HashMap::new(),
    };
    let meta = fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let entries = loader.dir(root)?;
    loader.tree.insert(
        ROOT,
        Node {
            meta: meta_of(&meta),
            body: Body::Dir(entries),
        },
    );
    Ok((loader.tree, loader.next))
}

struct Loader {
    tree: Tree,
    next: Ino,
    /// (device, inode) of files already loaded, so that hard links share one node.
    seen: HashMap<(u64, u64), Ino>,
}

impl Loader {
    fn dir(&mut self, path: &Path) -> io::Result<BTreeMap<std::ffi::OsString, Ino>> {
        let mut entries = BTreeMap::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let child = entry.path();
            let meta = fs::symlink_metadata(&child)?;
            let ino = if meta.is_dir() {
                let body = Body::Dir(self.dir(&child)?);
                self.add(meta_of(&meta), body)
            } else if meta.is_file() {
                match self.seen.get(&(meta.dev(), meta.ino())) {
                    Some(&ino) => ino,
                    None => {
                        let ino = self.add(meta_of(&meta), Body::File(fs::read(&child)?));
                        self.seen.insert((meta.dev(), meta.ino()), ino);
                        ino
                    }
                }
            } else {
                return Err(io::Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}: only files and directories are supported",
                        child.display()
                    ),
                ));
            };
            entries.insert(entry.file_name(), ino);
        }
        Ok(entries)
    }

    fn add(&mut self, meta: Meta, body: Body) -> Ino {
        let ino = self.next;
        self.next += 1;
        self.tree.insert(ino, Node { meta, body });
        ino
    }
}

fn meta_of(m: &fs::Metadata) -> Meta {
    let now = std::time::SystemTime::now();
    Meta {
        perm: u16::try_from(m.mode() & 0o7777).unwrap_or(0o644),
        uid: m.uid(),
        gid: m.gid(),
        atime: m.accessed().unwrap_or(now),
        mtime: m.modified().unwrap_or(now),
        ctime: m.modified().unwrap_or(now),
    }
}

/// Writes `bytes` at `offset` of the file at `path` (created if missing) and sets its length.
pub fn write_range(path: &Path, bytes: &[u8], offset: u64, len: u64, perm: u16) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all_at(bytes, offset)?;
    file.set_len(len)?;
    file.set_permissions(fs::Permissions::from_mode(u32::from(perm)))
}

pub fn hard_link(existing: &Path, new: &Path) -> io::Result<()> {
    remove(new)?;
    fs::hard_link(existing, new)
}

pub fn make_dir(path: &Path, perm: u16) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(u32::from(perm)))
}

/// Removes a file or a whole directory; a missing one is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
