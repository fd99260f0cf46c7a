//! Serializing the index without stopping its readers, and the fence that makes it safe.
//!
//! A snapshot is encoded under the *read* lock, so searches (which take the read lock
//! too) run all the while: encoding a large index takes tens of milliseconds, and a
//! search that waits that long on a server's event loop stalls every request behind it.
//!
//! Why the read lock is enough. Under the read lock only one thing changes the graph: an
//! `add` linking the nodes it has just allocated (link lists and the entry point, written
//! under per-node mutexes; see `graph.rs`), and compaction's repair pass, which rewrites
//! links the same way (see `insert.rs`). A snapshot caught in the middle of a link would
//! hold a node that is present (so the engine's replay, which adds only the ids an index
//! lacks, would skip it) yet reachable from nowhere. So the encoder first waits at the
//! [`LinkFence`] until the links under way have ended. No new one can begin meanwhile:
//! an `add` allocates its slots under the write lock before it links them, and the
//! writer waits for the encoder's read guard. Compaction's repair holds the fence too
//! (it could otherwise be caught with a list half rewritten, which is valid but worse).
//! Past the fence the graph is frozen until the guard drops: the bytes are exactly what
//! the write lock would have produced, while searches carry on.
//!
//! A snapshot file (`write_file`) is encoded, compressed and written to the file under
//! that one read guard, streaming, so that no copy of the index is made. Writers wait for
//! the whole of it, searches never: at zstd level 3 that is about 0.7 s for 100,000 nodes
//! of 384 dimensions (the compression, on one core; the encoding alone is 0.2 s), much
//! longer at the highest levels. Only the fsync comes after the guard is dropped.

use std::fs::File;
use std::path::Path;

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

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

    /// Serialize the index (format in `persist.rs`) in memory, from the frozen graph.
    pub fn to_bytes(&self) -> Vec<u8> {
        persist::encode(&self.frozen())
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
    /// The encoding streams into the compressor and on into the file, under the read
    /// lock from the first byte to the last (the graph is frozen meanwhile, so the file
    /// is exactly the index at one instant): searches go on all the while, and a
    /// concurrent `add` or `remove` waits for its write lock until the last byte is
    /// written (to the page cache: the fsync runs after the lock is released), then
    /// proceeds. The file holds every node whose `add` was allocated before the snapshot
    /// took the lock (linked in full: see the fence) and none of those added after;
    /// likewise every removal before it and none after.
    pub fn write_file(&self, path: &Path, level: Option<i32>) -> Result<u64> {
        persist::check_level(level)?;
        let file = File::create(path).map_err(|e| Error::from(e).on_file(path))?;
        let result = (|| -> Result<u64> {
            let file = persist::write_into(&self.frozen(), file, level)?;
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
