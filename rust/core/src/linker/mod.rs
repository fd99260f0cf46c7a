//! Index links after the commit, on a thread of their own, with read-your-writes.
//!
//! Linking a node into the graph is an `ef_construction` search (1 to 3 ms at 768
//! dimensions), and the next insert's slot allocation waits for the write lock until every
//! link under way has finished: inserts arriving together wait for each other. So an
//! allocation hands its node to the [`Linker`] once the store has committed it, and
//! answers; one thread links everything queued meanwhile in one [`Hnsw::add`] on the
//! [`background`](crate::background) pool.
//!
//! Until it is linked a node is *pending*, and [`Linker::search`] scores the pending nodes
//! exactly and merges them with what the index finds, so a node is found from the moment
//! its allocation returns. A node stops being pending only once the index has it, and a
//! search reads the pending nodes before it searches the index, so it misses nothing.
//! [`Linker::wait_idle`] (checkpoints, backups, close) waits for the linker, at most a
//! deadline ([`LinkError::Timeout`]); [`Linker::discard`] (a delete) drops a node not yet
//! linked, or waits for its link under way. At most `max_pending` nodes wait: beyond, an
//! allocation waits ([`Linker::wait_room`], before it commits) for the linker (every
//! search scores the pending nodes, so their number bounds that cost).
//!
//! A failed link (not expected: the vectors were validated) leaves its nodes pending, so
//! searches still find them and a checkpoint cannot pass them by, and is retried after a
//! delay that doubles up to `max_retry_delay`. After `max_attempts` failures in a row the
//! linker is *failing*: [`Linker::health`] says so, and waits fail at once with
//! [`LinkError::Unavailable`] instead of holding a checkpoint or a request for their whole
//! deadline. It keeps retrying at the longest delay, and is healthy again after one link
//! succeeds.
//!
//! Nothing logs, and no hook runs, while the state lock is held: the Python package
//! forwards log records to Python, which needs the GIL, and a Python thread may hold the
//! GIL while it takes this lock.

mod search;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::background;
use crate::error::{Error, Result};
use crate::hnsw::{Hnsw, Metric};
use crate::quant::Precision;

/// How long waits last and how failed links are retried.
#[derive(Clone, Copy, Debug)]
pub struct LinkerSettings {
    /// The longest a wait on the linker lasts, unless the caller names its own.
    pub timeout: Duration,
    /// Failed links in a row that make the linker *failing*.
    pub max_attempts: u32,
    /// The wait before the first retry of a failed link; doubles each time.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Nodes that may wait for their link before [`Linker::wait_room`] holds writers back.
    pub max_pending: usize,
}

impl Default for LinkerSettings {
    fn default() -> Self {
        LinkerSettings {
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(60),
            max_pending: 256,
        }
    }
}

/// Why a wait on the linker ended without what it waited for.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the index linker did not {0} within {1:?}")]
    Timeout(String, Duration),
    /// It keeps failing, or it stopped: the nodes stay searchable, but what needs them in
    /// the index (a checkpoint) cannot proceed.
    #[error("{0}")]
    Unavailable(String),
}

/// Runs before each batch is linked, with its ids; an error fails the link. A seam for
/// tests (a link that fails, or that waits) and for callers that trace links.
pub type BeforeLink = Box<dyn Fn(&[u64]) -> std::result::Result<(), String> + Send + Sync>;

/// The wait before the next attempt after `failures` failed links in a row.
pub fn retry_delay(failures: u32, first: Duration, longest: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    first.saturating_mul(1 << doublings).min(longest)
}

struct Entry {
    /// As given: what the index is handed.
    vector: Arc<[f32]>,
    /// As the index keeps it, for searches (`search.rs`).
    row: Arc<Row>,
    precision: Precision,
    ordinal: u64,
}

/// A pending node's vector as the index stores it (normalized for cosine) with its
/// squared norm: a search scores it exactly as the index will once it is linked, to the
/// last bit, so a node's score does not move when its link lands.
pub(crate) struct Row {
    values: Vec<f32>,
    sq_norm: f32,
}

#[derive(Default)]
struct State {
    /// Queued or being linked.
    pending: HashMap<u64, Entry>,
    /// The pending nodes by ordinal: the oldest first.
    order: BTreeMap<u64, u64>,
    /// Waiting for the next batch, oldest first.
    queue: Vec<u64>,
    /// The batch being linked right now.
    linking: HashSet<u64>,
    closed: bool,
    /// The thread has ended.
    stopped: bool,
    added: u64,
    batches: u64,
    inserted: u64,
    failures: u32,
    failed_links: u64,
    last_error: Option<String>,
}

impl State {
    fn remove(&mut self, id: u64) -> bool {
        match self.pending.remove(&id) {
            Some(e) => {
                self.order.remove(&e.ordinal);
                true
            }
            None => false,
        }
    }
}

/// The linker's figures, for stats and health.
#[derive(Clone, Debug, Default)]
pub struct LinkerStats {
    pub pending: usize,
    pub batches: u64,
    /// Of `batches`, those linked at normal priority because someone waited for them.
    pub urgent_batches: u64,
    pub inserted: u64,
    pub failures: u32,
    pub failed_links: u64,
    pub last_error: Option<String>,
    pub failing: bool,
    pub stopped: bool,
}

struct Shared {
    index: Arc<Hnsw>,
    /// The index's, fixed for its life: read without its lock.
    metric: Metric,
    settings: LinkerSettings,
    before_link: Option<BeforeLink>,
    state: Mutex<State>,
    changed: Condvar,
    /// Threads waiting on the linker right now (checkpoints, deletes, writers held back).
    waiting: AtomicUsize,
    /// Batches linked at normal priority because someone waited for them.
    urgent_batches: AtomicUsize,
}

/// Links committed nodes into an index in the background; see the module's text.
pub struct Linker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Linker {
    pub fn start(
        index: Arc<Hnsw>,
        settings: LinkerSettings,
        before_link: Option<BeforeLink>,
    ) -> Result<Linker> {
        if settings.max_attempts == 0 || settings.max_pending == 0 {
            return Err(Error::invalid(
                "max_attempts and max_pending must be at least 1",
            ));
        }
        let metric = index.params().metric;
        let shared = Arc::new(Shared {
            metric,
            index,
            settings,
            before_link,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            urgent_batches: AtomicUsize::new(0),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("llmkg-linker".into())
            .spawn(move || worker.run())?;
        Ok(Linker {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn index(&self) -> &Arc<Hnsw> {
        &self.shared.index
    }

    pub fn settings(&self) -> LinkerSettings {
        self.shared.settings
    }

    /// Queue `id` for linking; it is pending from now on (an id already pending gets the
    /// new vector). Never waits (the node is committed already: see
    /// [`Linker::wait_room`]).
    pub fn add(&self, id: u64, vector: &[f32], precision: Precision) -> Result<()> {
        let dim = self.shared.index.dim();
        if vector.len() != dim {
            return Err(Error::invalid(format!(
                "vector has {} values, the index has dimension {dim}",
                vector.len()
            )));
        }
        if let Some(i) = vector.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("vector[{i}] is not finite")));
        }
        let mut st = self.shared.state.lock();
        if st.closed {
            return Err(Error::invalid("the index linker is closed"));
        }
        st.added += 1;
        let ordinal = st.added;
        st.remove(id);
        st.order.insert(ordinal, id);
        st.pending.insert(
            id,
            Entry {
                vector: vector.into(),
                row: Arc::new(Row::of(vector, self.shared.metric)),
                precision,
                ordinal,
            },
        );
        if !st.queue.contains(&id) {
            st.queue.push(id);
        }
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Return once fewer than `max_pending` nodes wait for their link. An allocation calls
    /// it before it commits, so that a refusal leaves nothing half done.
    pub fn wait_room(&self, timeout: Option<Duration>) -> Result<(), LinkError> {
        let max = self.shared.settings.max_pending;
        self.wait(|st| st.pending.len() < max, timeout, "make room")
    }

    /// Return once every node queued before the call is in the index (nodes queued
    /// meanwhile do not hold it up).
    pub fn wait_idle(&self, timeout: Option<Duration>) -> Result<(), LinkError> {
        let queued = self.shared.state.lock().added;
        self.wait(
            move |st| st.order.keys().next().is_none_or(|&oldest| oldest > queued),
            timeout,
            "link the nodes queued",
        )
    }

    /// Return once `id` is in the index (at once if it is not pending).
    pub fn wait_for(&self, id: u64, timeout: Option<Duration>) -> Result<(), LinkError> {
        self.wait(
            |st| !st.pending.contains_key(&id),
            timeout,
            &format!("link node {id}"),
        )
    }

    /// Make sure `id` is not linked after this returns (a delete): dropped if it is still
    /// queued, else its link under way is waited for (the caller then removes it from the
    /// index).
    pub fn discard(&self, id: u64, timeout: Option<Duration>) -> Result<(), LinkError> {
        let limit = timeout.unwrap_or(self.shared.settings.timeout);
        let deadline = Instant::now() + limit;
        let mut st = self.shared.state.lock();
        // Not failed fast while the linker is failing: an attempt under way ends soon,
        // linked or back in the queue, and from there the node can be dropped.
        let _waiting = Waiting::enter(&self.shared.waiting);
        while st.linking.contains(&id) {
            if self
                .shared
                .changed
                .wait_until(&mut st, deadline)
                .timed_out()
                && st.linking.contains(&id)
            {
                return Err(LinkError::Timeout(format!("link node {id}"), limit));
            }
        }
        if st.remove(id) {
            st.queue.retain(|&q| q != id);
            self.shared.changed.notify_all();
        }
        Ok(())
    }

    /// Threads waiting on the linker right now.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.shared.state.lock().pending.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.shared.state.lock().pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pending ids, oldest first.
    pub fn pending(&self) -> Vec<u64> {
        self.shared.state.lock().order.values().copied().collect()
    }

    /// The precision a pending node enters the index with (None: not pending).
    pub fn precision_of(&self, id: u64) -> Option<Precision> {
        self.shared
            .state
            .lock()
            .pending
            .get(&id)
            .map(|e| e.precision)
    }

    pub fn stats(&self) -> LinkerStats {
        let st = self.shared.state.lock();
        LinkerStats {
            pending: st.pending.len(),
            batches: st.batches,
            urgent_batches: self.shared.urgent_batches.load(Ordering::Relaxed) as u64,
            inserted: st.inserted,
            failures: st.failures,
            failed_links: st.failed_links,
            last_error: st.last_error.clone(),
            failing: self.shared.failing(&st),
            stopped: st.stopped,
        }
    }

    /// Whether links succeed, and a line that says how the linker is doing.
    pub fn health(&self) -> (bool, String) {
        let st = self.shared.state.lock();
        let detail = format!(
            "{} pending, {} failed links",
            st.pending.len(),
            st.failed_links
        );
        if st.closed {
            return (true, format!("closed; {detail}"));
        }
        if st.stopped {
            return (false, format!("the linker has stopped; {detail}"));
        }
        if self.shared.failing(&st) {
            let last = st.last_error.as_deref().unwrap_or("");
            return (
                false,
                format!("{} links failed in a row ({last}); {detail}", st.failures),
            );
        }
        (true, detail)
    }

    /// Link what is queued (one attempt if links fail), then stop the thread. Waits for
    /// the thread: call it without holding anything the thread needs (a Python caller
    /// releases the GIL, which a hook and the log records need).
    pub fn close(&self) {
        self.shared.state.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            // A panic was caught in the thread already; nothing is left to report.
            let _ = thread.join();
        }
    }

    fn wait(
        &self,
        done: impl Fn(&State) -> bool,
        timeout: Option<Duration>,
        what: &str,
    ) -> Result<(), LinkError> {
        let limit = timeout.unwrap_or(self.shared.settings.timeout);
        let deadline = Instant::now() + limit;
        let mut st = self.shared.state.lock();
        let _waiting = Waiting::enter(&self.shared.waiting);
        while !done(&st) && !self.shared.failing(&st) {
            if self
                .shared
                .changed
                .wait_until(&mut st, deadline)
                .timed_out()
                && !done(&st)
                && !self.shared.failing(&st)
            {
                return Err(LinkError::Timeout(what.to_string(), limit));
            }
        }
        if done(&st) {
            return Ok(());
        }
        Err(self.shared.unavailable(&st))
    }
}

impl Drop for Linker {
    /// Stops the thread without waiting for it (a drop may run where the thread's hook
    /// cannot: under Python's GIL); it links what is queued and ends.
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

/// Counts a waiting thread for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One batch taken from the queue.
struct Batch {
    ids: Vec<u64>,
    /// Each id's ordinal when taken: an id queued again meanwhile (a new vector) stays.
    ordinals: Vec<u64>,
    vectors: Vec<f32>,
    precisions: Vec<Precision>,
}

impl Shared {
    fn failing(&self, st: &State) -> bool {
        st.failures >= self.settings.max_attempts || st.stopped
    }

    fn unavailable(&self, st: &State) -> LinkError {
        if st.stopped {
            return LinkError::Unavailable("the index linker has stopped".into());
        }
        LinkError::Unavailable(format!(
            "the index linker is failing ({} links failed in a row: {}); the nodes stay \
             searchable",
            st.failures,
            st.last_error.as_deref().unwrap_or("")
        ))
    }

    fn run(&self) {
        while self.link_next() {}
        let left = {
            let mut st = self.state.lock();
            st.stopped = true;
            self.changed.notify_all();
            st.pending.len()
        };
        if left > 0 {
            log::warn!(
                "index linker stopped with {left} nodes not linked; they are in the store, \
                 and the next start replays them"
            );
        }
    }

    /// The next batch, once there is one; None once closed with nothing queued.
    fn take_batch(&self) -> Option<Batch> {
        let mut st = self.state.lock();
        while st.queue.is_empty() && !st.closed {
            self.changed.wait(&mut st);
        }
        if st.queue.is_empty() {
            return None;
        }
        let ids = std::mem::take(&mut st.queue);
        let mut vectors = Vec::with_capacity(ids.len() * self.index.dim());
        let mut precisions = Vec::with_capacity(ids.len());
        let mut ordinals = Vec::with_capacity(ids.len());
        for id in &ids {
            // Every queued id is pending: a discard takes it out of both.
            let e = &st.pending[id];
            vectors.extend_from_slice(&e.vector);
            precisions.push(e.precision);
            ordinals.push(e.ordinal);
        }
        st.linking = ids.iter().copied().collect();
        Some(Batch {
            ids,
            ordinals,
            vectors,
            precisions,
        })
    }

    fn link(&self, b: &Batch) -> std::result::Result<(), String> {
        if let Some(hook) = &self.before_link {
            hook(&b.ids)?;
        }
        // Someone waits for this link (a writer held back by `wait_room`, a checkpoint):
        // it runs at normal priority, on every core. The background pool's threads run
        // only on idle cores (SCHED_IDLE), and on a busy machine its waiters would wait
        // for whatever else keeps the cores busy.
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.urgent_batches.fetch_add(1, Ordering::Relaxed);
            return self
                .index
                .add(&b.ids, &b.vectors, &b.precisions, None)
                .map_err(|e| e.to_string());
        }
        let pool = background::pool().map_err(|e| e.to_string())?;
        // All of it on the pool, a lone node's link too (it would run on this thread).
        pool.install(|| {
            self.index
                .add(&b.ids, &b.vectors, &b.precisions, Some(pool))
        })
        .map_err(|e| e.to_string())
    }

    /// Link what is queued; false once closed with nothing left.
    fn link_next(&self) -> bool {
        let Some(batch) = self.take_batch() else {
            return false;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| self.link(&batch)))
            .unwrap_or_else(|_| Err("the link panicked".into()));
        let mut st = self.state.lock();
        st.linking.clear();
        if let Err(error) = outcome {
            st.failures += 1;
            st.failed_links += 1;
            st.last_error = Some(error.clone());
            // Back at the head of the queue, unless discarded or queued again meanwhile.
            let mut queue: Vec<u64> = batch
                .ids
                .iter()
                .copied()
                .filter(|id| st.pending.contains_key(id) && !st.queue.contains(id))
                .collect();
            queue.append(&mut st.queue);
            st.queue = queue;
            self.changed.notify_all(); // waiters fail fast once the linker is failing
            let failures = st.failures;
            let delay = retry_delay(
                failures,
                self.settings.retry_delay,
                self.settings.max_retry_delay,
            );
            let closed = st.closed;
            drop(st);
            log::error!(
                "linking {} nodes into the index failed ({failures} in a row: {error}); \
                 retrying in {delay:?}",
                batch.ids.len(),
            );
            if closed {
                return false; // no retries at close: the next start replays the nodes
            }
            // Until the deadline, whatever wakes the condition (an add) does not retry.
            let retry_at = Instant::now() + delay;
            let mut st = self.state.lock();
            while !st.closed && !self.changed.wait_until(&mut st, retry_at).timed_out() {}
            return true;
        }
        for (id, ordinal) in batch.ids.iter().zip(&batch.ordinals) {
            if st.pending.get(id).is_some_and(|e| e.ordinal == *ordinal) {
                st.remove(*id);
            }
        }
        let recovered = st.failures >= self.settings.max_attempts;
        st.failures = 0;
        st.batches += 1;
        st.inserted += batch.ids.len() as u64;
        self.changed.notify_all();
        drop(st);
        if recovered {
            log::warn!("the index linker links again");
        }
        true
    }
}

/// The pending nodes at one instant, for a search (`search.rs`).
pub(crate) struct PendingView {
    ids: Vec<u64>,
    rows: Vec<Arc<Row>>,
}

impl Shared {
    fn pending_view(&self) -> PendingView {
        let st: MutexGuard<'_, State> = self.state.lock();
        PendingView {
            ids: st.pending.keys().copied().collect(),
            rows: st.pending.values().map(|e| e.row.clone()).collect(),
        }
    }
}
