//! The filesystem as two trees of the same inodes: `live`, what programs see (every write,
//! create, link, rename and unlink applied at once), and `durable`, what a power cut would leave.
//! Only `fsync`/`fdatasync` of a file and `fsync` of a directory move state from one to the other;
//! the backing directory is always a copy of the reachable part of `durable` ([`crate::backing`]).
//!
//! - `sync_file(f)`: `f`'s bytes, size and mode become durable (not its names).
//! - `sync_dir(d)`: `d`'s entries become durable: new names appear, removed ones go, a renamed
//!   file moves. A file whose name becomes durable before its data does is empty on disk.
//! - [`NewDirs`] says whether syncing a directory that was itself just created also makes its own
//!   entry in its parent durable (ext4, XFS and btrfs do; POSIX does not promise it).
//!
//! Nothing is ever written back on its own: a power cut is forgetting `live`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::backing;

pub type Ino = u64;
/// The root directory's inode (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: Ino = 1;

/// A failed operation, as the errno the kernel passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        // The kernel only passes an errno on: say what went wrong here.
        eprintln!("droppr-faultfs: backing directory: {e}");
        Errno(libc::EIO)
    }
}

pub type Result<T> = std::result::Result<T, Errno>;

/// When the entry of a freshly made directory becomes durable in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NewDirs {
    /// Syncing the new directory itself makes its entry (and its new ancestors') durable, as the
    /// journaling filesystems Linux servers run on do.
    #[default]
    WithOwnSync,
    /// Strict POSIX: only syncing the parent does.
    WithParentSync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What `stat` shows of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl Meta {
    pub fn new(perm: u16, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        Self {
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, Ino>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub meta: Meta,
    pub body: Body,
}

impl Node {
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    fn empty_like(&self) -> Node {
        Node {
            meta: self.meta,
            body: match self.body {
                Body::File(_) => Body::File(Vec::new()),
                Body::Dir(_) => Body::Dir(BTreeMap::new()),
            },
        }
    }
}

/// A node's attributes as the kernel wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub nlink: u32,
    pub meta: Meta,
}

/// The inodes of one tree.
pub type Tree = HashMap<Ino, Node>;

/// Live and durable state of the mounted filesystem.
#[derive(Debug)]
pub struct Model {
    live: Tree,
    durable: Tree,
    /// Per file, the span of bytes written (or cut off) since its last sync.
    dirty: HashMap<Ino, (u64, u64)>,
    next_ino: Ino,
    backing: PathBuf,
    new_dirs: NewDirs,
}

impl Model {
    /// Loads the backing directory: at mount time everything in it is durable.
    pub fn load(backing_dir: &Path, new_dirs: NewDirs) -> std::io::Result<Self> {
        let (tree, next_ino) = backing::load(backing_dir)?;
        Ok(Self {
            live: tree.clone(),
            durable: tree,
            dirty: HashMap::new(),
            next_ino,
            backing: backing_dir.to_owned(),
            new_dirs,
        })
    }

    fn node(&self, ino: Ino) -> Result<&Node> {
        self.live.get(&ino).ok_or(Errno(libc::ENOENT))
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.live.get_mut(&ino).ok_or(Errno(libc::ENOENT))
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<OsString, Ino>> {
        match &self.node(ino)?.body {
            Body::Dir(entries) => Ok(entries),
            Body::File(_) => Err(Errno(libc::ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<OsString, Ino>> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(entries) => Ok(entries),
            Body::File(_) => Err(Errno(libc::ENOTDIR)),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut Vec<u8>> {
        match &mut self.node_mut(ino)?.body {
            Body::File(data) => Ok(data),
            Body::Dir(_) => Err(Errno(libc::EISDIR)),
        }
    }

    /// Names of live links to `ino` (hard links count).
    fn nlink(&self, ino: Ino) -> u32 {
        let links = self
            .live
            .values()
            .filter_map(|n| match &n.body {
                Body::Dir(entries) => Some(entries.values().filter(|&&i| i == ino).count()),
                Body::File(_) => None,
            })
            .sum::<usize>();
        u32::try_from(links).unwrap_or(u32::MAX)
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr> {
        let node = self.node(ino)?;
        let (size, nlink) = match &node.body {
            Body::File(data) => (data.len() as u64, self.nlink(ino)),
            Body::Dir(_) => (4096, 2),
        };
        Ok(Attr {
            ino,
            kind: node.kind(),
            size,
            nlink,
            meta: node.meta,
        })
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let ino = *self.dir(parent)?.get(name).ok_or(Errno(libc::ENOENT))?;
        self.attr(ino)
    }

    /// Entries of a directory with their kinds, in name order.
    pub fn entries(&self, dir: Ino) -> Result<Vec<(Ino, Kind, OsString)>> {
        Ok(self
            .dir(dir)?
            .iter()
            .filter_map(|(name, &ino)| Some((ino, self.live.get(&ino)?.kind(), name.clone())))
            .collect())
    }

    fn mark_dirty(&mut self, ino: Ino, from: u64, to: u64) {
        let span = self.dirty.entry(ino).or_insert((from, to));
        span.0 = span.0.min(from);
        span.1 = span.1.max(to);
    }

    pub fn read(&self, ino: Ino, offset: u64, len: u32) -> Result<&[u8]> {
        match &self.node(ino)?.body {
            Body::File(data) => {
                let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
                let end = start.saturating_add(len as usize).min(data.len());
                Ok(&data[start..end])
            }
            Body::Dir(_) => Err(Errno(libc::EISDIR)),
        }
    }

    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<u32> {
        let start = usize::try_from(offset).map_err(|_| Errno(libc::EFBIG))?;
        let end = start.checked_add(bytes.len()).ok_or(Errno(libc::EFBIG))?;
        let data = self.file_mut(ino)?;
        let old_len = data.len() as u64;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        let node = self.node_mut(ino)?;
        node.meta.mtime = SystemTime::now();
        node.meta.ctime = node.meta.mtime;
        self.mark_dirty(ino, offset.min(old_len), end as u64);
        u32::try_from(bytes.len()).map_err(|_| Errno(libc::EINVAL))
    }

    /// Truncates or extends (with zeros) a file.
    pub fn set_size(&mut self, ino: Ino, size: u64) -> Result<()> {
        let new_len = usize::try_from(size).map_err(|_| Errno(libc::EFBIG))?;
        let data = self.file_mut(ino)?;
        let old_len = data.len() as u64;
        data.resize(new_len, 0);
        let node = self.node_mut(ino)?;
        node.meta.mtime = SystemTime::now();
        node.meta.ctime = node.meta.mtime;
        self.mark_dirty(ino, old_len.min(size), old_len.max(size));
        Ok(())
    }

    /// `fallocate` mode 0 (reserve and extend) and `FALLOC_FL_KEEP_SIZE`; nothing else.
    pub fn allocate(&mut self, ino: Ino, offset: u64, len: u64, mode: i32) -> Result<()> {
        let end = offset.checked_add(len).ok_or(Errno(libc::EFBIG))?;
        let size = match &self.node(ino)?.body {
            Body::File(data) => data.len() as u64,
            Body::Dir(_) => return Err(Errno(libc::EISDIR)),
        };
        match mode {
            0 if end > size => self.set_size(ino, end),
            0 | libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno(libc::EOPNOTSUPP)),
        }
    }

    pub fn set_meta(&mut self, ino: Ino, change: impl FnOnce(&mut Meta)) -> Result<Attr> {
        let node = self.node_mut(ino)?;
        change(&mut node.meta);
        node.meta.ctime = SystemTime::now();
        self.attr(ino)
    }

    fn add_node(&mut self, parent: Ino, name: &OsStr, node: Node) -> Result<Attr> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno(libc::EEXIST));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.live.insert(ino, node);
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        self.touch(parent)?;
        self.attr(ino)
    }

    fn touch(&mut self, dir: Ino) -> Result<()> {
        let node = self.node_mut(dir)?;
        node.meta.mtime = SystemTime::now();
        node.meta.ctime = node.meta.mtime;
        Ok(())
    }

    pub fn create(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Attr> {
        self.add_node(
            parent,
            name,
            Node {
                meta,
                body: Body::File(Vec::new()),
            },
        )
    }

    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Attr> {
        self.add_node(
            parent,
            name,
            Node {
                meta,
                body: Body::Dir(BTreeMap::new()),
            },
        )
    }

    pub fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr) -> Result<Attr> {
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(Errno(libc::EPERM));
        }
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno(libc::EEXIST));
        }
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        self.touch(parent)?;
        self.set_meta(ino, |_| {})
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = *self.dir(parent)?.get(name).ok_or(Errno(libc::ENOENT))?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(Errno(libc::EISDIR));
        }
        self.dir_mut(parent)?.remove(name);
        self.touch(parent)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = *self.dir(parent)?.get(name).ok_or(Errno(libc::ENOENT))?;
        if !self.dir(ino)?.is_empty() {
            return Err(Errno(libc::ENOTEMPTY));
        }
        self.dir_mut(parent)?.remove(name);
        self.touch(parent)
    }

    /// `rename(2)` with `RENAME_NOREPLACE` as `no_replace`. A directory moves only within its
    /// parent: the durable tree must stay a tree whatever order the directories are synced in.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        let ino = *self.dir(parent)?.get(name).ok_or(Errno(libc::ENOENT))?;
        let kind = self.node(ino)?.kind();
        if kind == Kind::Dir && parent != new_parent {
            return Err(Errno(libc::EXDEV));
        }
        if let Some(&target) = self.dir(new_parent)?.get(new_name) {
            if target == ino {
                return Ok(());
            }
            if no_replace {
                return Err(Errno(libc::EEXIST));
            }
            match (kind, self.node(target)?.kind()) {
                (Kind::File, Kind::Dir) => return Err(Errno(libc::EISDIR)),
                (Kind::Dir, Kind::File) => return Err(Errno(libc::ENOTDIR)),
                (Kind::Dir, Kind::Dir) if !self.dir(target)?.is_empty() => {
                    return Err(Errno(libc::ENOTEMPTY))
                }
                _ => {}
            }
        }
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.touch(parent)?;
        self.touch(new_parent)
    }

    // ---- durability ----------------------------------------------------------------------------

    /// `fsync`/`fdatasync` of a file: its bytes, size and mode become durable.
    pub fn sync_file(&mut self, ino: Ino) -> Result<()> {
        let node = self.node(ino)?.clone();
        let Body::File(data) = &node.body else {
            return self.sync_dir(ino);
        };
        let len = data.len();
        let (lo, hi) = match self.durable.get(&ino) {
            Some(_) => self.dirty.remove(&ino).unwrap_or((0, 0)),
            // Never synced: all of it.
            None => {
                self.dirty.remove(&ino);
                (0, len as u64)
            }
        };
        let lo = usize::try_from(lo).unwrap_or(len).min(len);
        let hi = usize::try_from(hi).unwrap_or(len).min(len).max(lo);
        let durable = self.durable.entry(ino).or_insert_with(|| node.empty_like());
        durable.meta = node.meta;
        if let Body::File(kept) = &mut durable.body {
            kept.resize(len, 0);
            kept[lo..hi].copy_from_slice(&data[lo..hi]);
        }
        if let Some(path) = self.durable_paths(ino).into_iter().next() {
            backing::write_range(&path, &data[lo..hi], lo as u64, len as u64, node.meta.perm)?;
        }
        Ok(())
    }

    /// `fsync` of a directory: its entries become durable.
    pub fn sync_dir(&mut self, ino: Ino) -> Result<()> {
        let live = self.dir(ino)?.clone();
        let meta = self.node(ino)?.meta;
        let durable = self.durable.entry(ino).or_insert_with(|| Node {
            meta,
            body: Body::Dir(BTreeMap::new()),
        });
        durable.meta = meta;
        let old = match &durable.body {
            Body::Dir(entries) => entries.clone(),
            Body::File(_) => return Err(Errno(libc::EIO)),
        };
        for (name, &child) in &old {
            if live.get(name) != Some(&child) {
                self.remove_durable_entry(ino, name)?;
            }
        }
        for (name, &child) in &live {
            if old.get(name) != Some(&child) {
                self.add_durable_entry(ino, name, child)?;
            }
        }
        if self.new_dirs == NewDirs::WithOwnSync
            && ino != ROOT
            && self.durable_paths(ino).is_empty()
        {
            self.persist_own_entry(ino)?;
        }
        Ok(())
    }

    /// Every live file and directory becomes durable (what the kernel's periodic writeback does
    /// given time): files first, then directories from the root down.
    pub fn sync_all(&mut self) -> Result<()> {
        let mut files: Vec<Ino> = self
            .live
            .iter()
            .filter(|(_, n)| n.kind() == Kind::File)
            .map(|(&i, _)| i)
            .collect();
        files.sort_unstable();
        for ino in files {
            self.sync_file(ino)?;
        }
        let mut queue = vec![ROOT];
        while let Some(dir) = queue.pop() {
            self.sync_dir(dir)?;
            for (child, kind, _) in self.entries(dir)? {
                if kind == Kind::Dir {
                    queue.push(child);
                }
            }
        }
        Ok(())
    }

    /// A directory just synced whose own name is not durable yet: its entry in its live parent
    /// (and, up the tree, its parents' entries) become durable too.
    fn persist_own_entry(&mut self, ino: Ino) -> Result<()> {
        let Some((parent, name)) = self.live_parent(ino) else {
            return Ok(());
        };
        if !self.durable.contains_key(&parent) {
            let meta = self.node(parent)?.meta;
            self.durable.insert(
                parent,
                Node {
                    meta,
                    body: Body::Dir(BTreeMap::new()),
                },
            );
        }
        let current = match &self.durable[&parent].body {
            Body::Dir(entries) => entries.get(&name).copied(),
            Body::File(_) => None,
        };
        if current.is_some() {
            self.remove_durable_entry(parent, &name)?;
        }
        self.add_durable_entry(parent, &name, ino)?;
        if parent != ROOT && self.durable_paths(parent).is_empty() {
            self.persist_own_entry(parent)?;
        }
        Ok(())
    }

    fn live_parent(&self, ino: Ino) -> Option<(Ino, OsString)> {
        self.live.iter().find_map(|(&dir, node)| match &node.body {
            Body::Dir(entries) => entries
                .iter()
                .find(|(_, &i)| i == ino)
                .map(|(name, _)| (dir, name.clone())),
            Body::File(_) => None,
        })
    }

    fn remove_durable_entry(&mut self, dir: Ino, name: &OsStr) -> Result<()> {
        let paths = self.durable_paths(dir);
        if let Some(Body::Dir(entries)) = self.durable.get_mut(&dir).map(|n| &mut n.body) {
            entries.remove(name);
        }
        for path in paths {
            backing::remove(&path.join(name))?;
        }
        Ok(())
    }

    fn add_durable_entry(&mut self, dir: Ino, name: &OsStr, child: Ino) -> Result<()> {
        if !self.durable.contains_key(&child) {
            // Its name is durable before anything of it was synced: an empty file or directory.
            let empty = self.node(child)?.empty_like();
            self.durable.insert(child, empty);
        }
        let existing = self.durable_paths(child);
        if let Some(Body::Dir(entries)) = self.durable.get_mut(&dir).map(|n| &mut n.body) {
            entries.insert(name.to_owned(), child);
        }
        for path in self.durable_paths(dir) {
            self.materialize(child, &path.join(name), &existing)?;
        }
        Ok(())
    }

    /// Writes the durable node `ino` (and what is under it) to `path` in the backing directory;
    /// a file that is already there under another name gets a hard link.
    fn materialize(&self, ino: Ino, path: &Path, existing: &[PathBuf]) -> Result<()> {
        let node = self.durable.get(&ino).ok_or(Errno(libc::EIO))?;
        match &node.body {
            Body::File(data) => match existing.iter().find(|p| p.as_path() != path) {
                Some(other) => backing::hard_link(other, path)?,
                None => backing::write_range(path, data, 0, data.len() as u64, node.meta.perm)?,
            },
            Body::Dir(entries) => {
                backing::make_dir(path, node.meta.perm)?;
                for (name, &child) in entries {
                    let others: Vec<PathBuf> = self
                        .durable_paths(child)
                        .into_iter()
                        .filter(|p| p.symlink_metadata().is_ok())
                        .collect();
                    self.materialize(child, &path.join(name), &others)?;
                }
            }
        }
        Ok(())
    }

    /// Backing paths of `ino` in the durable tree (none when it is not reachable from the root).
    fn durable_paths(&self, ino: Ino) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut queue = vec![(ROOT, self.backing.clone())];
        if ino == ROOT {
            return vec![self.backing.clone()];
        }
        while let Some((dir, path)) = queue.pop() {
            let Some(Body::Dir(entries)) = self.durable.get(&dir).map(|n| &n.body) else {
                continue;
            };
            for (name, &child) in entries {
                let child_path = path.join(name);
                if child == ino {
                    found.push(child_path.clone());
                }
                if matches!(
                    self.durable.get(&child).map(|n| &n.body),
                    Some(Body::Dir(_))
                ) {
                    queue.push((child, child_path));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn meta() -> Meta {
        Meta::new(0o644, 0, 0)
    }

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn the_backing_directory_holds_only_what_was_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Model::load(tmp.path(), NewDirs::WithParentSync).unwrap();
        let f = m.create(ROOT, name("f"), meta()).unwrap().ino;
        m.write(f, 0, b"hello").unwrap();
        m.sync_dir(ROOT).unwrap();
        assert_eq!(
            fs::read(tmp.path().join("f")).unwrap(),
            b"",
            "name before data"
        );
        m.sync_file(f).unwrap();
        m.write(f, 5, b" world").unwrap();
        assert_eq!(m.read(f, 0, 100).unwrap(), b"hello world");
        assert_eq!(fs::read(tmp.path().join("f")).unwrap(), b"hello");
        m.set_size(f, 2).unwrap();
        m.sync_file(f).unwrap();
        assert_eq!(fs::read(tmp.path().join("f")).unwrap(), b"he");
    }

    #[test]
    fn hard_links_stay_hard_links_both_ways() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a"), b"shared").unwrap();
        fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).unwrap();
        let mut m = Model::load(tmp.path(), NewDirs::WithParentSync).unwrap();
        let a = m.lookup(ROOT, name("a")).unwrap();
        assert_eq!(m.lookup(ROOT, name("b")).unwrap().ino, a.ino);
        assert_eq!(a.nlink, 2);
        m.link(a.ino, ROOT, name("c")).unwrap();
        m.sync_dir(ROOT).unwrap();
        let ino = |n: &str| fs::metadata(tmp.path().join(n)).unwrap().ino();
        assert_eq!(ino("c"), ino("a"));
    }

    #[test]
    fn refused_operations_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Model::load(tmp.path(), NewDirs::WithOwnSync).unwrap();
        let d = m.mkdir(ROOT, name("d"), meta()).unwrap().ino;
        let e = m.mkdir(ROOT, name("e"), meta()).unwrap().ino;
        m.create(d, name("f"), meta()).unwrap();
        let err = |r: Result<()>| r.unwrap_err().0;
        assert_eq!(
            err(m.rename(ROOT, name("d"), e, name("d"), false)),
            libc::EXDEV
        );
        assert_eq!(err(m.rmdir(ROOT, name("d"))), libc::ENOTEMPTY);
        assert_eq!(err(m.unlink(ROOT, name("d"))), libc::EISDIR);
        assert_eq!(
            err(m.rename(d, name("f"), ROOT, name("e"), false)),
            libc::EISDIR
        );
        assert_eq!(m.create(d, name("f"), meta()).unwrap_err().0, libc::EEXIST);
        assert_eq!(m.entries(d).unwrap().len(), 1);
        assert_eq!(m.entries(ROOT).unwrap().len(), 2);
    }
}
