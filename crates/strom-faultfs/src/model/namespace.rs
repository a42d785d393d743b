//! The namespace: the live directory tree, the durable tree (as of the last cut, plus the
//! committed ops folded in), and the ordered log of namespace ops not yet folded in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};

use super::{Ino, ROOT};
use crate::error::{FsError, FsResult};

/// A directory tree: directory → name → child, plus each present node's parent.
/// A node is in the tree iff it is the root or has a parent entry; directories (even empty
/// ones) have a `dirs` entry, other nodes do not. Hard links are not supported, so every
/// node has one name.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    dirs: HashMap<Ino, BTreeMap<OsString, Ino>>,
    parents: HashMap<Ino, (Ino, OsString)>,
}

impl Tree {
    /// A tree holding only the empty root directory.
    pub(crate) fn with_root() -> Self {
        Tree { dirs: HashMap::from([(ROOT, BTreeMap::new())]), parents: HashMap::new() }
    }

    /// Whether `ino` is in the tree.
    pub(crate) fn contains(&self, ino: Ino) -> bool {
        ino == ROOT || self.parents.contains_key(&ino)
    }

    /// Whether `ino` is a directory in the tree.
    pub(crate) fn is_dir(&self, ino: Ino) -> bool {
        self.dirs.contains_key(&ino)
    }

    /// The entries of directory `dir`.
    pub(crate) fn children(&self, dir: Ino) -> Option<&BTreeMap<OsString, Ino>> {
        self.dirs.get(&dir)
    }

    /// The child `name` of `dir`.
    pub(crate) fn lookup(&self, dir: Ino, name: &OsStr) -> Option<Ino> {
        self.dirs.get(&dir)?.get(name).copied()
    }

    /// The parent directory of `ino` (the root is its own parent).
    pub(crate) fn parent(&self, ino: Ino) -> Option<Ino> {
        if ino == ROOT { Some(ROOT) } else { self.parents.get(&ino).map(|(p, _)| *p) }
    }

    /// `/`-separated path of `ino` from the root ("/" for the root).
    pub(crate) fn path(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let (parent, name) = self.parents.get(&at)?;
            parts.push(name.to_string_lossy());
            at = *parent;
        }
        parts.reverse();
        Some(format!("/{}", parts.join("/")))
    }

    /// Whether `ancestor` is `node` or one of its ancestors.
    fn is_ancestor(&self, ancestor: Ino, node: Ino) -> bool {
        let mut at = node;
        loop {
            if at == ancestor {
                return true;
            }
            match self.parents.get(&at) {
                Some((parent, _)) => at = *parent,
                None => return false,
            }
        }
    }

    /// Adds `dir/name → ino`. The caller checked that `dir` is a directory and `name` is free.
    fn link(&mut self, dir: Ino, name: &OsStr, ino: Ino, is_dir: bool) {
        if let Some(entries) = self.dirs.get_mut(&dir) {
            entries.insert(name.to_owned(), ino);
            self.parents.insert(ino, (dir, name.to_owned()));
            if is_dir {
                self.dirs.entry(ino).or_default();
            }
        }
    }

    /// Removes `dir/name` and, if it is a directory, everything below it. Returns its inode.
    fn unlink(&mut self, dir: Ino, name: &OsStr) -> Option<Ino> {
        let ino = self.dirs.get_mut(&dir)?.remove(name)?;
        self.parents.remove(&ino);
        let mut stack = vec![ino];
        while let Some(node) = stack.pop() {
            if let Some(entries) = self.dirs.remove(&node) {
                for child in entries.into_values() {
                    self.parents.remove(&child);
                    stack.push(child);
                }
            }
        }
        Some(ino)
    }

    /// Moves `from/from_name` to `to/to_name`, replacing (with its subtree) what was there.
    /// The caller checked that the source exists, `to` is a directory and no cycle results.
    fn move_entry(&mut self, from: Ino, from_name: &OsStr, to: Ino, to_name: &OsStr) {
        let Some(ino) = self.dirs.get_mut(&from).and_then(|e| e.remove(from_name)) else { return };
        self.unlink(to, to_name);
        if let Some(entries) = self.dirs.get_mut(&to) {
            entries.insert(to_name.to_owned(), ino);
        }
        self.parents.insert(ino, (to, to_name.to_owned()));
    }
}

/// One namespace change, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NsOp {
    /// A new node `ino` named `parent/name` (create, mknod, mkdir).
    Create { parent: Ino, name: OsString, ino: Ino, is_dir: bool },
    /// `parent/name`, which was `ino`, removed (unlink, rmdir).
    Remove { parent: Ino, name: OsString, ino: Ino },
    /// `ino` moved from `from/from_name` to `to/to_name`, replacing whatever was there.
    Rename { from: Ino, from_name: OsString, to: Ino, to_name: OsString, ino: Ino },
}

impl NsOp {
    /// The directory whose fsync commits this op (a rename's destination).
    fn commit_dir(&self) -> Ino {
        match self {
            NsOp::Create { parent, .. } | NsOp::Remove { parent, .. } => *parent,
            NsOp::Rename { to, .. } => *to,
        }
    }

    /// The inode this op gives a name to, if any.
    fn names_inode(&self) -> Option<Ino> {
        match self {
            NsOp::Create { ino, .. } | NsOp::Rename { ino, .. } => Some(*ino),
            NsOp::Remove { .. } => None,
        }
    }

    /// Applies the op to `tree` if it still applies there (its source still exists, its
    /// directories exist, no cycle would result); returns whether it did. A rename applies
    /// atomically: both the removal of the old name and the new name, or nothing.
    fn apply(&self, tree: &mut Tree) -> bool {
        match self {
            NsOp::Create { parent, name, ino, is_dir } => {
                if !tree.is_dir(*parent) || tree.lookup(*parent, name).is_some() || tree.contains(*ino) {
                    return false;
                }
                tree.link(*parent, name, *ino, *is_dir);
                true
            }
            NsOp::Remove { parent, name, ino } => {
                if tree.lookup(*parent, name) != Some(*ino) {
                    return false;
                }
                tree.unlink(*parent, name);
                true
            }
            NsOp::Rename { from, from_name, to, to_name, ino } => {
                if tree.lookup(*from, from_name) != Some(*ino) || !tree.is_dir(*to) || tree.is_ancestor(*ino, *to) {
                    return false;
                }
                tree.move_entry(*from, from_name, *to, to_name);
                true
            }
        }
    }
}

/// A logged op and whether an fsync of its directory has committed it.
#[derive(Debug)]
struct Logged {
    op: NsOp,
    committed: bool,
}

/// What a cut did to the namespace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsCut {
    /// Logged ops kept (committed or inside the kept prefix), whether or not they still applied.
    pub(crate) kept: usize,
    /// Logged ops dropped.
    pub(crate) dropped: usize,
    /// Kept ops skipped because they no longer applied.
    pub(crate) skipped: usize,
}

/// The live tree, the durable tree and the unsynced op log between them.
#[derive(Debug)]
pub(crate) struct Namespace {
    live: Tree,
    durable: Tree,
    log: VecDeque<Logged>,
}

impl Namespace {
    /// An empty filesystem: only the root directory, durable.
    pub(crate) fn new() -> Self {
        Namespace { live: Tree::with_root(), durable: Tree::with_root(), log: VecDeque::new() }
    }

    /// The live tree.
    pub(crate) fn live(&self) -> &Tree {
        &self.live
    }

    /// The durable tree (committed prefix of the log folded in).
    pub(crate) fn durable(&self) -> &Tree {
        &self.durable
    }

    /// Number of logged ops not yet folded into the durable tree.
    pub(crate) fn unsynced_ops(&self) -> usize {
        self.log.len()
    }

    /// Whether `ino` may be in the namespace after some cut: it is durable, or a logged op names it.
    pub(crate) fn may_survive(&self, ino: Ino) -> bool {
        self.durable.contains(ino) || self.log.iter().any(|l| l.op.names_inode() == Some(ino))
    }

    fn check_dir(&self, dir: Ino) -> FsResult<()> {
        if self.live.is_dir(dir) {
            Ok(())
        } else if self.live.contains(dir) {
            Err(FsError::NotDir)
        } else {
            Err(FsError::NotFound)
        }
    }

    fn push(&mut self, op: NsOp) {
        self.log.push_back(Logged { op, committed: false });
    }

    /// Links a new node `ino` at `parent/name`.
    pub(crate) fn create(&mut self, parent: Ino, name: &OsStr, ino: Ino, is_dir: bool) -> FsResult<()> {
        self.check_dir(parent)?;
        if self.live.lookup(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        self.live.link(parent, name, ino, is_dir);
        self.push(NsOp::Create { parent, name: name.to_owned(), ino, is_dir });
        Ok(())
    }

    /// Removes `parent/name`: a directory (which must be empty) if `dir`, else a non-directory.
    pub(crate) fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> FsResult<Ino> {
        self.check_dir(parent)?;
        let ino = self.live.lookup(parent, name).ok_or(FsError::NotFound)?;
        match (dir, self.live.children(ino)) {
            (true, None) => return Err(FsError::NotDir),
            (true, Some(entries)) if !entries.is_empty() => return Err(FsError::NotEmpty),
            (false, Some(_)) => return Err(FsError::IsDir),
            _ => {}
        }
        self.live.unlink(parent, name);
        self.push(NsOp::Remove { parent, name: name.to_owned(), ino });
        Ok(ino)
    }

    /// Renames `from/from_name` to `to/to_name` (replacing a compatible target unless
    /// `no_replace`). Returns the replaced inode, if any.
    pub(crate) fn rename(
        &mut self,
        from: Ino,
        from_name: &OsStr,
        to: Ino,
        to_name: &OsStr,
        no_replace: bool,
    ) -> FsResult<Option<Ino>> {
        self.check_dir(from)?;
        self.check_dir(to)?;
        let ino = self.live.lookup(from, from_name).ok_or(FsError::NotFound)?;
        let src_dir = self.live.is_dir(ino);
        if src_dir && self.live.is_ancestor(ino, to) {
            return Err(FsError::Invalid);
        }
        let target = self.live.lookup(to, to_name);
        if let Some(target) = target {
            if target == ino {
                return Ok(None);
            }
            if no_replace {
                return Err(FsError::Exists);
            }
            match (src_dir, self.live.children(target)) {
                (true, None) => return Err(FsError::NotDir),
                (false, Some(_)) => return Err(FsError::IsDir),
                (true, Some(entries)) if !entries.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        self.live.move_entry(from, from_name, to, to_name);
        self.push(NsOp::Rename { from, from_name: from_name.to_owned(), to, to_name: to_name.to_owned(), ino });
        Ok(target)
    }

    /// fsync of directory `dir`: commits every logged op it is the commit directory of, then
    /// folds the committed prefix of the log into the durable tree. Returns the ops committed.
    pub(crate) fn fsync_dir(&mut self, dir: Ino) -> usize {
        let mut committed = 0;
        for logged in self.log.iter_mut().filter(|l| !l.committed && l.op.commit_dir() == dir) {
            logged.committed = true;
            committed += 1;
        }
        // Every cut keeps a committed op whose predecessors are all committed, so folding
        // such a prefix now gives the same durable result and keeps the log short.
        while self.log.front().is_some_and(|l| l.committed) {
            if let Some(logged) = self.log.pop_front() {
                logged.op.apply(&mut self.durable);
            }
        }
        committed
    }

    /// Power cut: applies to the durable tree, in log order, every committed op and the first
    /// `prefix` ops of the log; the live tree becomes the durable one and the log empties.
    pub(crate) fn cut(&mut self, prefix: usize) -> NsCut {
        let mut report = NsCut::default();
        for (i, logged) in std::mem::take(&mut self.log).into_iter().enumerate() {
            if logged.committed || i < prefix {
                report.kept += 1;
                if !logged.op.apply(&mut self.durable) {
                    report.skipped += 1;
                }
            } else {
                report.dropped += 1;
            }
        }
        self.live = self.durable.clone();
        report
    }
}
