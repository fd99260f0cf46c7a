//! Serializing the index without stopping its readers, or its writers for long, and the
//! fence that makes it safe.
//!
//! A snapshot *captures* the index under the read lock, then streams it (encoding, zstd,
//! the file) a batch of about 64 KiB at a time, each batch under a read lock of its own:
//! searches (which take the read lock too) never wait for a snapshot, and a writer (`add`,
//! `remove`) waits for the capture (a pass over the slots' metadata: 0.15 ms for 100,000
//! nodes) and then for one batch at most (tens of microseconds), not for the compression
//! (over half a second for 100,000 nodes of 384 dimensions at zstd level 3, much longer at
//! the highest levels). The file is still the index at the instant of the capture; this
//! note says why.
//!
//! The capture. Under the read lock only one thing changes the graph: an `add` linking the
//! nodes it has just allocated (link lists and the entry point, written under per-node
//! mutexes; see `graph.rs`), and compaction's repair pass, which rewrites links the same
//! way (see `insert.rs`). A snapshot caught in the middle of a link would hold a node that
//! is present (so the engine's replay, which adds only the ids an index lacks, would skip
//! it) yet reachable from nowhere. So the snapshot first waits at the [`LinkFence`] until
//! the links under way have ended. No new one can begin meanwhile: an `add` allocates its
//! slots under the write lock before it links them, and the writer waits for the
//! snapshot's read guard. Compaction's repair holds the fence too (it could otherwise be
//! caught with a list half rewritten, which is valid but worse). Past the fence the graph
//! is frozen until the guard drops: the snapshot takes what is small and changes
//! (the entry point, the free lists, the sizes: [`encode::Capture`]) and turns on the
//! [`SnapshotLog`], then lets go.
//!
//! The stream. From then on writers run between the batches, and each change they make to
//! what the snapshot has not yet written is made so that the snapshot still writes the
//! captured state:
//! - a link list (rewritten when a new node links to its neighbours): the writer keeps the
//!   list as it was in the log before its first change, under the node's mutex, unless the
//!   snapshot has written that list already; the snapshot reads each list under the same
//!   mutex and takes the log's copy when there is one;
//! - a removal (a live node marked deleted): the log keeps the slot, and the snapshot
//!   writes it live;
//! - a new node: it goes to a slot and rows that were free at the capture (written as free,
//!   zeroed, whatever they hold now) or past the captured ones (not written at all);
//! - nothing else. The vectors and codes of the nodes in use at the capture (nine tenths
//!   of the bytes) are never rewritten in place, and no slot or row is freed while a
//!   snapshot streams: compaction's release of removed nodes is put off until the next
//!   `add` or `remove` after it (an explicit `compact` waits), and precision changes and
//!   `restore_full_rows` wait for the snapshot's end. An array that grows moves, but keeps
//!   its contents: the snapshot finds them again under its next read guard.
//!
//! So the file holds every node whose `add` was allocated before the capture (fully
//! linked) and none allocated after, every removal before it and none after. The extra
//! memory is the capture (the free lists), the buffers, and the copies of the lists that
//! writers change before the snapshot writes them (the lists come first, so a writer
//! pays for this only in the first tenth of the stream). `to_bytes` streams the same way,
//! into memory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::encode::{self, Capture};
use super::graph::Graph;
use super::{persist, Hnsw};
use crate::error::{Error, Result};

/// Counts the link passes under way (each `add`'s link phase, compaction's repair) so
/// that a snapshot can wait for them to end.
#[derive(Default)]
pub(crate) struct LinkFence {
    active: Mutex<FenceState>,
    idle: Condvar,
}

#[derive(Default)]
struct FenceState {
    active: usize,
    /// Snapshots waiting for the link passes to end (observed by tests).
    waiting: usize,
}

/// One link pass under way; it ends when dropped (on a panic too, so a snapshot never
/// waits for a pass that unwound).
pub(crate) struct LinkPass<'a>(&'a LinkFence);

impl LinkFence {
    /// Start a link pass. The caller holds the write lock (the pass then continues under
    /// the read lock it downgrades to), so that no snapshot under the read lock can see
    /// the new slots before the pass is counted.
    pub fn enter(&self) -> LinkPass<'_> {
        self.active.lock().active += 1;
        LinkPass(self)
    }

    /// Wait until no link pass is under way. The caller holds the read lock: no new
    /// pass can begin until it lets go.
    pub fn wait_idle(&self) {
        let mut state = self.active.lock();
        if state.active > 0 {
            state.waiting += 1;
            self.idle.wait_while(&mut state, |s| s.active > 0);
            state.waiting -= 1;
        }
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.active.lock().waiting
    }
}

impl Drop for LinkPass<'_> {
    fn drop(&mut self) {
        let mut state = self.0.active.lock();
        state.active -= 1;
        if state.active == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// What writers keep for a snapshot that streams the index without the lock (see the
/// module's note): the link lists as they were at the capture, of those a writer changes
/// before the snapshot has written them, and the nodes removed since the capture. Shared
/// by the graph (whose writers record into it) and the index (whose snapshots and
/// maintenance wait on it without the lock).
#[derive(Default)]
pub(crate) struct SnapshotLog {
    /// A snapshot is streaming: read on every link write and removal, which then record
    /// what they change.
    active: AtomicBool,
    /// Slots whose lists the snapshot has written, at level 0 (`[0]`) and above (`[1]`):
    /// changes to their lists are no longer its concern.
    streamed: [AtomicUsize; 2],
    changes: Mutex<Changes>,
    /// Signalled when a snapshot ends.
    ended: Condvar,
    /// Held by a snapshot from its capture to its last byte: the log serves one capture.
    turn: Mutex<()>,
}

#[derive(Default)]
struct Changes {
    /// Slots at the capture: later ones are not in the snapshot.
    slots: usize,
    /// `(slot, level)`: the list (count, then cells) as it was at the capture.
    lists: HashMap<(u32, u8), Box<[u32]>>,
    /// Slots live at the capture, removed since.
    removed: HashSet<u32>,
    /// Threads waiting for the snapshot's end (observed by tests).
    #[cfg(test)]
    waiting: usize,
}

/// A snapshot streaming: the writers' log is on until it is dropped (on an error or a
/// panic too), and no other snapshot can begin.
pub(crate) struct Streaming<'a> {
    log: &'a SnapshotLog,
    _turn: MutexGuard<'a, ()>,
}

impl SnapshotLog {
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Turn the log on for a capture of `slots` slots. The caller holds `turn` and the
    /// read lock, past the fence: no writer runs until it lets go.
    fn begin<'a>(&'a self, turn: MutexGuard<'a, ()>, slots: usize) -> Streaming<'a> {
        let mut changes = self.changes.lock();
        changes.slots = slots;
        for cursor in &self.streamed {
            cursor.store(0, Ordering::Release);
        }
        self.active.store(true, Ordering::Release);
        Streaming {
            log: self,
            _turn: turn,
        }
    }

    /// Before `list` (`slot`'s at `level`) is rewritten; the caller holds the node's mutex.
    #[inline]
    pub fn before_link_write(&self, slot: u32, level: usize, list: &[AtomicU32]) {
        if self.is_active() {
            self.keep_list(slot, level, list);
        }
    }

    #[cold]
    fn keep_list(&self, slot: u32, level: usize, list: &[AtomicU32]) {
        // Written already: the snapshot read it under this node's mutex, which the caller
        // holds now, before it moved the cursor past it.
        if (slot as usize) < self.streamed[usize::from(level > 0)].load(Ordering::Acquire) {
            return;
        }
        let mut changes = self.changes.lock();
        // Ended meanwhile (a new snapshot cannot have begun: this write is part of a link
        // pass, which a capture waits for), or a slot the snapshot does not hold.
        if !self.is_active() || slot as usize >= changes.slots {
            return;
        }
        changes
            .lists
            .entry((slot, level as u8))
            .or_insert_with(|| list.iter().map(|w| w.load(Ordering::Relaxed)).collect());
    }

    /// Before the live `slot` is marked deleted; the caller holds the write lock.
    #[inline]
    pub fn before_remove(&self, slot: u32) {
        if self.is_active() {
            let mut changes = self.changes.lock();
            if (slot as usize) < changes.slots {
                changes.removed.insert(slot);
            }
        }
    }

    /// The list of `slot` at `level` as it was at the capture, if a writer changed it
    /// since (taken: the snapshot reads each list once). The caller holds the node's
    /// mutex.
    pub fn list_at_capture(&self, slot: u32, level: usize) -> Option<Box<[u32]>> {
        let mut changes = self.changes.lock();
        if changes.lists.is_empty() {
            return None;
        }
        changes.lists.remove(&(slot, level as u8))
    }

    /// Whether `slot` was live at the capture and removed since.
    pub fn removed_since(&self, slot: u32) -> bool {
        self.changes.lock().removed.contains(&slot)
    }

    /// The lists of the slots below `slot`, at level 0 or above it (`upper`), are written.
    pub fn streamed_below(&self, upper: bool, slot: usize) {
        self.streamed[usize::from(upper)].store(slot, Ordering::Release);
    }

    /// Wait until no snapshot is streaming.
    pub fn wait_ended(&self) {
        let mut changes = self.changes.lock();
        #[cfg(test)]
        {
            changes.waiting += 1;
        }
        while self.is_active() {
            self.ended.wait(&mut changes);
        }
        #[cfg(test)]
        {
            changes.waiting -= 1;
        }
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.changes.lock().waiting
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        let log = self.log;
        let mut changes = log.changes.lock();
        log.active.store(false, Ordering::Release);
        // The memory goes back now, not at the next snapshot.
        changes.lists = HashMap::new();
        changes.removed = HashSet::new();
        log.ended.notify_all();
    }
}

#[cfg(test)]
type TestHook = Option<Box<dyn FnMut(&str)>>;

#[cfg(test)]
thread_local! {
    /// Called with the name of a point inside a long operation, on the operation's
    /// thread, while it holds what it holds there (tests only: they check what others
    /// can do meanwhile).
    pub(crate) static TEST_POINT: std::cell::RefCell<TestHook> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
pub(crate) fn test_point(name: &str) {
    TEST_POINT.with(|hook| {
        if let Some(f) = hook.borrow_mut().as_mut() {
            f(name)
        }
    });
}

impl Hnsw {
    /// The graph under the read lock, once the links under way have ended (see the
    /// module's note): frozen until the guard drops, while searches go on.
    fn frozen(&self) -> RwLockReadGuard<'_, Graph> {
        let g = self.reader();
        self.fence.wait_idle();
        #[cfg(test)]
        test_point("encoding");
        g
    }

    /// Capture the index for a snapshot that streams it (see the module's note), with the
    /// writers' log on for it until the `Streaming` is dropped. One snapshot at a time: a
    /// second waits here for the first to end.
    fn capture(&self) -> (Capture, Streaming<'_>) {
        let turn = self.snapshot_log.turn.lock();
        let g = self.frozen();
        (
            Capture::take(&g, true),
            self.snapshot_log.begin(turn, g.slots()),
        )
    }

    /// Serialize the index (format in `persist.rs`) in memory, as `write_file` does: the
    /// bytes of the index at the capture, writers held up for the capture only.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (capture, streaming) = self.capture();
        let bytes = encode::encode(&capture, || self.reader());
        drop(streaming);
        bytes
    }

    /// The write lock, once no snapshot is streaming: for the changes that a snapshot
    /// streaming meanwhile could not keep out of its file (those that free a slot or a
    /// row, or rewrite a vector in place). Waits for the end of a snapshot.
    pub(crate) fn writer_between_snapshots(&self) -> RwLockWriteGuard<'_, Graph> {
        loop {
            let g = self.graph.write();
            if !self.snapshot_log.is_active() {
                return g;
            }
            drop(g);
            self.snapshot_log.wait_ended();
        }
    }

    /// Read an index from bytes as `to_bytes` gives them or as `write_file` writes them
    /// (zstd-compressed or not).
    pub fn from_bytes(bytes: &[u8]) -> Result<Hnsw> {
        let graph = if persist::is_zstd(bytes) {
            persist::read(bytes)?
        } else {
            persist::decode(bytes)?
        };
        Ok(Hnsw::loaded(graph))
    }

    fn loaded(graph: Graph) -> Hnsw {
        // Under the index's logger, where it was before this file split off (operators
        // filter on it).
        log::debug!(
            target: "llmkg_core::hnsw",
            "index decoded: {} live nodes, {} deleted",
            graph.live,
            graph.deleted,
        );
        Hnsw::from_graph(graph)
    }

    pub(crate) fn from_graph(graph: Graph) -> Hnsw {
        Hnsw {
            dim: graph.params.dim,
            snapshot_log: Arc::clone(&graph.snapshot_log),
            graph: RwLock::new(graph),
            fence: LinkFence::default(),
        }
    }

    /// Write the index to `path` (created or truncated) and fsync it: zstd-compressed at
    /// `level`, or as `to_bytes` gives it (`None`). Returns the size of the file. Not
    /// atomic: this is the first half of publishing a file, whose caller renames it into
    /// place (as `save` does; the engine first makes its store durable). On failure the
    /// file is removed.
    ///
    /// The index is captured under the read lock (once the links under way have ended:
    /// see the fence), then encoded into the compressor and on into the file a batch at a
    /// time, each batch under a read lock of its own (see the module's note). Searches go
    /// on all the while; a concurrent `add` or `remove` waits for the capture and for a
    /// batch at most, not for the compression. The file is exactly the index at the
    /// capture: it holds every node whose `add` was allocated before it (linked in full)
    /// and none of those allocated after; likewise every removal before it and none after.
    /// While it streams, a compaction's release of removed nodes is put off and precision
    /// changes wait. One snapshot is written at a time (a second, or `to_bytes`, waits).
    pub fn write_file(&self, path: &Path, level: Option<i32>) -> Result<u64> {
        persist::check_level(level)?;
        let file = File::create(path).map_err(|e| Error::from(e).on_file(path))?;
        let result = (|| -> Result<u64> {
            let (capture, streaming) = self.capture();
            let file = encode::write_into(&capture, || self.reader(), file, level)?;
            drop(streaming);
            file.sync_all()?;
            Ok(file.metadata()?.len())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result.map_err(|e| e.on_file(path))
    }

    /// Write the index to `path` atomically (`write_file` to a temporary file beside it,
    /// rename, fsync of the folder): a crash leaves the old file or the new one. Returns
    /// the size of the file.
    pub fn save(&self, path: &Path, level: Option<i32>) -> Result<u64> {
        persist::write_atomic(path, |tmp| self.write_file(tmp, level))
    }

    /// Read an index file that `save` or `write_file` wrote, compressed or not (told
    /// apart by its first bytes), decompressing it as it is read.
    pub fn load(path: &Path) -> Result<Hnsw> {
        let file = File::open(path).map_err(|e| Error::from(e).on_file(path))?;
        let graph = persist::read(file).map_err(|e| e.on_file(path))?;
        Ok(Hnsw::loaded(graph))
    }
}
