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

use std::path::Path;

use parking_lot::{Condvar, Mutex, RwLock};

use super::graph::Graph;
use super::{persist, Hnsw};
use crate::error::Result;

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
    /// Serialize the index (format in `persist.rs`) under the read lock, once the links
    /// under way have ended (see the module's note).
    pub fn to_bytes(&self) -> Vec<u8> {
        let g = self.reader();
        self.fence.wait_idle();
        #[cfg(test)]
        test_point("encoding");
        persist::encode(&g)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Hnsw> {
        let graph = persist::decode(bytes)?;
        // Under the index's logger, where it was before this file split off (operators
        // filter on it).
        log::debug!(
            target: "llmkg_core::hnsw",
            "index decoded: {} live nodes, {} deleted, {} bytes",
            graph.live,
            graph.deleted,
            bytes.len()
        );
        Ok(Hnsw::from_graph(graph))
    }

    pub(crate) fn from_graph(graph: Graph) -> Hnsw {
        Hnsw {
            dim: graph.params.dim,
            graph: RwLock::new(graph),
            fence: LinkFence::default(),
        }
    }

    /// Write the index to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        persist::write_atomic(path, &self.to_bytes())
    }

    pub fn load(path: &Path) -> Result<Hnsw> {
        let bytes = std::fs::read(path)?;
        Hnsw::from_bytes(&bytes)
    }
}
