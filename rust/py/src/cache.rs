//! `ShardedCache` and `TieredCache`: Python classes over llmkg-core's caches, keyed by
//! `str`, `bytes` or `int`, holding any Python object.
//!
//! The GIL is *not* released around cache calls. Each call is O(1) on in-memory state
//! (or O(n) in its input, which it must read from Python objects anyway); the shard
//! locks make the core safe without the GIL; and releasing and re-taking the GIL would
//! cost more than the operation. What the core does need the GIL for here is comparing
//! `str` keys and copying values, which happens under a shard lock while attached; since
//! no Python code runs under that lock (evicted values come back in a `Removed` and are
//! dropped after it is released), no thread can wait for the GIL while holding a lock.

use llmkg_core::cache::{
    hash, CacheConfig, CacheOps, CacheStats, EntryOptions, Policy, Removed, ShardedCache,
};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString};
use std::sync::Arc;

use crate::errors::CoreError;

#[path = "cache_get.rs"]
mod fast_get;
#[path = "cache_put.rs"]
mod fast_put;
#[path = "cache_fastcall.rs"]
mod fastcall;
#[path = "cache_tiered.rs"]
mod tiered;
#[path = "cache_time.rs"]
mod time;

use tiered::PyTieredCache;
use time::{clock_of, ttl_of, PyManualClock};

/// Weight of a value that is neither `bytes` nor `str` when `put` is given no `size`.
const DEFAULT_WEIGHT: u32 = 64;

/// A key as stored: small ints by value; other keys by reference to an immutable object
/// of an exact built-in type (so comparing them runs no user code).
pub enum PyKey {
    Int(i64),
    Str(Py<PyString>),
    Bytes(Py<PyBytes>),
    BigInt(Py<PyInt>),
}

impl PyKey {
    /// Drops the key's reference through `Bound`, which decrements it at once even where
    /// PyO3 does not know that the thread is attached (see `fastcall`).
    #[inline]
    fn release(self, py: Python<'_>) {
        match self {
            PyKey::Int(_) => {}
            PyKey::Str(s) => drop(s.into_bound(py)),
            PyKey::Bytes(b) => drop(b.into_bound(py)),
            PyKey::BigInt(i) => drop(i.into_bound(py)),
        }
    }
}

/// Compares and copies keys and values with the GIL token.
struct Ops<'py>(Python<'py>);

impl Ops<'_> {
    #[inline(never)]
    fn object_key_eq(&self, stored: &PyKey, probe: &PyKey) -> bool {
        let py = self.0;
        match (stored, probe) {
            (PyKey::Str(a), PyKey::Str(b)) => {
                a.is(b) || a.bind(py).as_any().eq(b.bind(py)).unwrap_or(false)
            }
            (PyKey::Bytes(a), PyKey::Bytes(b)) => {
                a.is(b) || a.bind(py).as_bytes() == b.bind(py).as_bytes()
            }
            (PyKey::BigInt(a), PyKey::BigInt(b)) => {
                a.bind(py).as_any().eq(b.bind(py)).unwrap_or(false)
            }
            _ => false,
        }
    }
}

impl CacheOps<PyKey, Py<PyAny>> for Ops<'_> {
    #[inline]
    fn key_eq(&self, stored: &PyKey, probe: &PyKey) -> bool {
        // Ints inline (one compare in the table probe), the rest out of line.
        match (stored, probe) {
            (PyKey::Int(a), PyKey::Int(b)) => a == b,
            _ => self.object_key_eq(stored, probe),
        }
    }

    fn clone_key(&self, key: &PyKey) -> PyKey {
        match key {
            PyKey::Int(i) => PyKey::Int(*i),
            PyKey::Str(s) => PyKey::Str(s.clone_ref(self.0)),
            PyKey::Bytes(b) => PyKey::Bytes(b.clone_ref(self.0)),
            PyKey::BigInt(b) => PyKey::BigInt(b.clone_ref(self.0)),
        }
    }

    #[inline]
    fn clone_value(&self, value: &Py<PyAny>) -> Py<PyAny> {
        value.clone_ref(self.0)
    }
}

type Evicted = Removed<PyKey, Py<PyAny>>;

/// Runs `op` on the hash and converted form of a Python key, with the GIL token and a
/// list for what the call evicts, which is dropped after `op` has left the shard lock.
/// Every one-key method of `ShardedCache` and `TieredCache` goes through here.
#[inline]
fn with_key<R>(
    key: &Bound<'_, PyAny>,
    op: impl FnOnce(&Ops<'_>, u64, PyKey, &mut Evicted) -> R,
) -> PyResult<R> {
    let (h, k) = key_of(key)?;
    let mut removed = Removed::new();
    Ok(op(&Ops(key.py()), h, k, &mut removed))
}

/// `found`, else `default`, else `None`: what `get(key, default)` and `pop` answer.
fn or_default(found: Option<Py<PyAny>>, default: Option<Py<PyAny>>, py: Python<'_>) -> Py<PyAny> {
    found.or(default).unwrap_or_else(|| py.None())
}

fn key_error(key: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err(key.clone().unbind())
}

/// Converts a Python key and hashes it with the process key. `str` and `bytes` reuse the
/// interpreter's cached hash; subclasses are copied to the exact type first, so that an
/// overridden `__eq__` or `__hash__` never runs under a shard lock.
#[inline]
fn key_of(obj: &Bound<'_, PyAny>) -> PyResult<(u64, PyKey)> {
    // A small int is the common key and takes a few instructions; it is tested here,
    // inlined into every caller, and everything else goes out of line.
    if obj.is_exact_instance_of::<PyInt>() {
        let mut overflow: std::ffi::c_int = 0;
        // SAFETY: `obj` is a live `int` (exactly, so no `__index__` runs) and we are
        // attached to the interpreter; `overflow` outlives the call. For an exact `int`
        // the call cannot fail: it returns -1 with `overflow` set when the value does
        // not fit, and sets no exception then.
        let v = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
        if overflow == 0 && !(v == -1 && PyErr::occurred(obj.py())) {
            return Ok((hash::mix(v as u64), PyKey::Int(v)));
        }
    }
    key_of_other(obj)
}

/// [`key_of`] for any key but a small exact `int`.
#[inline(never)]
fn key_of_other(obj: &Bound<'_, PyAny>) -> PyResult<(u64, PyKey)> {
    let py = obj.py();
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok((hash::mix(s.hash()? as u64), PyKey::Str(s.clone().unbind())));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return match i.extract::<i64>() {
            Ok(v) => Ok((hash::mix(v as u64), PyKey::Int(v))),
            Err(_) => {
                let exact = if i.is_exact_instance_of::<PyInt>() {
                    i.clone()
                } else {
                    py.get_type::<PyInt>().call1((i,))?.cast_into::<PyInt>()?
                };
                Ok((
                    hash::mix(exact.hash()? as u64),
                    PyKey::BigInt(exact.unbind()),
                ))
            }
        };
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok((
            hash::mix(b.hash()? as u64),
            PyKey::Bytes(b.clone().unbind()),
        ));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return key_of_other(PyString::new(py, &s.to_cow()?).as_any());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return key_of_other(PyBytes::new(py, b.as_bytes()).as_any());
    }
    Err(PyTypeError::new_err(format!(
        "cache keys must be str, bytes or int, not {}",
        obj.get_type().name()?
    )))
}

fn entry_options(
    value: &Bound<'_, PyAny>,
    ttl: Option<f64>,
    size: Option<i64>,
) -> PyResult<EntryOptions> {
    let weight = match size {
        Some(s) => u32::try_from(s).map_err(|_| {
            PyValueError::new_err(format!("size must be between 0 and {}, got {s}", u32::MAX))
        })?,
        None => {
            let len = if let Ok(b) = value.cast_exact::<PyBytes>() {
                b.as_bytes().len()
            } else if let Ok(s) = value.cast_exact::<PyString>() {
                s.len()?
            } else {
                DEFAULT_WEIGHT as usize
            };
            len.min(u32::MAX as usize) as u32
        }
    };
    Ok(EntryOptions {
        ttl: ttl_of(ttl)?,
        weight,
    })
}

fn stats_dict<'py>(py: Python<'py>, s: &CacheStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    d.set_item("hit_rate", s.hit_rate())?;
    d.set_item("evictions", s.evictions)?;
    d.set_item("expirations", s.expirations)?;
    d.set_item("rejections", s.rejections)?;
    d.set_item("entries", s.entries)?;
    d.set_item("memory_bytes", s.memory_bytes)?;
    Ok(d)
}

/// Calls `f` for each `(key, value)` of a mapping or an iterable of pairs.
fn for_each_pair<'py>(
    items: &Bound<'py, PyAny>,
    mut f: impl FnMut(&Bound<'py, PyAny>, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(d) = items.cast::<PyDict>() {
        for (k, v) in d.iter() {
            f(&k, &v)?;
        }
        return Ok(());
    }
    let pairs = if items.hasattr("items")? {
        items.call_method0("items")?
    } else {
        items.clone()
    };
    let not_a_pair =
        || PyTypeError::new_err("put_many expects a mapping or an iterable of (key, value) pairs");
    for pair in pairs.try_iter()? {
        let pair = pair?;
        // Like dict(): any iterable of exactly two items is a pair.
        if pair.is_instance_of::<PyString>() || pair.is_instance_of::<PyBytes>() {
            return Err(not_a_pair());
        }
        let mut items = pair.try_iter().map_err(|_| not_a_pair())?;
        let (Some(k), Some(v), None) = (items.next(), items.next(), items.next()) else {
            return Err(not_a_pair());
        };
        f(&k?, &v?)?;
    }
    Ok(())
}

type Core = ShardedCache<PyKey, Py<PyAny>>;

/// A concurrent cache of at most `capacity` entries in `shards` independently locked
/// shards.
///
/// Keys are `str`, `bytes` or `int` (compared as a dict would); values any object.
///
/// - `policy`: `"lru"` (exact least-recently-used eviction over all shards together) or
///   `"lru-with-frequency"` (W-TinyLFU: a frequency filter in front of LRU eviction, so
///   scans and loops larger than the cache do not flush the hot set; each shard applies
///   it to an even share of `capacity` and `max_memory`).
/// - `ttl`: a default time to live in seconds.
/// - `max_memory`: a bound of the sum of entry weights: a `put`'s `size`, or else
///   `len(value)` for `bytes`/`str` and 64 for anything else.
/// - `clock`: a `ManualClock` to expire entries by, instead of the monotonic clock.
///
/// Both bounds are hard; at most `min(shards, capacity, max_memory)` shards are used, and
/// an entry heavier than its bound is rejected (counted in `stats()["rejections"]`).
#[pyclass(frozen, module = "llmkg._core", name = "ShardedCache")]
pub struct PyShardedCache {
    inner: Arc<Core>,
}

impl PyShardedCache {
    fn put_one(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        opts: EntryOptions,
    ) -> PyResult<()> {
        let value = value.clone().unbind();
        with_key(key, |ops, h, k, removed| {
            self.inner.insert_hashed(ops, h, k, value, opts, removed);
        })
    }

    #[inline]
    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        with_key(key, |ops, h, k, removed| {
            self.inner.get_hashed(ops, h, &k, removed)
        })
    }

    fn take(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        with_key(key, |ops, h, k, removed| {
            self.inner
                .remove_hashed(ops, h, &k, removed)
                .map(|(_, v)| v)
        })
    }
}

#[pymethods]
impl PyShardedCache {
    #[new]
    #[pyo3(signature = (capacity, *, shards=16, ttl=None, max_memory=None, policy="lru-with-frequency", clock=None))]
    fn new(
        capacity: i64,
        shards: i64,
        ttl: Option<f64>,
        max_memory: Option<i64>,
        policy: &str,
        clock: Option<PyRef<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        if capacity < 1 {
            return Err(PyValueError::new_err(format!(
                "capacity must be >= 1, got {capacity}"
            )));
        }
        if shards < 1 {
            return Err(PyValueError::new_err(format!(
                "shards must be >= 1, got {shards}"
            )));
        }
        if let Some(m) = max_memory.filter(|&m| m < 1) {
            return Err(PyValueError::new_err(format!(
                "max_memory must be >= 1, got {m}"
            )));
        }
        let config = CacheConfig {
            capacity: usize::try_from(capacity)
                .map_err(|_| PyValueError::new_err("capacity is too large"))?,
            shards: usize::try_from(shards).unwrap_or(usize::MAX),
            ttl: ttl_of(ttl)?,
            max_memory: max_memory.map(|m| m as u64),
            policy: Policy::parse(policy).map_err(CoreError::from)?,
            clock: clock_of(clock),
        };
        let inner = Core::new(config).map_err(CoreError::from)?;
        Ok(PyShardedCache {
            inner: Arc::new(inner),
        })
    }

    /// Stores `value` under `key`; `ttl` (seconds) overrides the cache's default,
    /// `size` is the entry's weight for `max_memory`.
    #[pyo3(signature = (key, value, *, ttl=None, size=None))]
    fn put(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        size: Option<i64>,
    ) -> PyResult<()> {
        self.put_one(key, value, entry_options(value, ttl, size)?)
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put_one(key, value, entry_options(value, None, None)?)
    }

    /// The value of `key`, or `default` if it is absent or expired.
    #[pyo3(signature = (key, default=None))]
    fn get(&self, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        Ok(or_default(self.lookup(key)?, default, key.py()))
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lookup(key)?.ok_or_else(|| key_error(key))
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_key(key, |ops, h, k, removed| {
            self.inner.contains_hashed(ops, h, &k, removed)
        })
    }

    /// Removes `key` and returns its value, or `default` if it is absent or expired.
    #[pyo3(signature = (key, default=None))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        Ok(or_default(self.take(key)?, default, key.py()))
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.take(key)? {
            Some(_) => Ok(()),
            None => Err(key_error(key)),
        }
    }

    /// Live entries (expired ones are reclaimed first).
    fn __len__(&self) -> usize {
        let mut removed = Removed::new();
        self.inner.len_into(&mut removed)
    }

    /// Removes every entry; the counters of `stats()` are kept.
    fn clear(&self) {
        let mut removed = Removed::new();
        self.inner.clear_into(&mut removed);
    }

    /// A dict of the keys that have live values, each with its value.
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = keys.py();
        let out = PyDict::new(py);
        let mut removed = Removed::new();
        for key in keys.try_iter()? {
            let key = key?;
            let (h, k) = key_of(&key)?;
            if let Some(v) = self.inner.get_hashed(&Ops(py), h, &k, &mut removed) {
                out.set_item(key, v)?;
            }
        }
        Ok(out)
    }

    /// Stores every `(key, value)` of a mapping or an iterable of pairs.
    #[pyo3(signature = (items, *, ttl=None))]
    fn put_many(&self, items: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let ttl = ttl_of(ttl)?;
        for_each_pair(items, |k, v| {
            let mut opts = entry_options(v, None, None)?;
            opts.ttl = ttl;
            self.put_one(k, v, opts)
        })
    }

    /// Counters since creation: hits, misses, hit_rate, evictions, expirations,
    /// rejections, and the entries and memory_bytes held now.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut removed = Removed::new();
        let s = self.inner.stats_into(&mut removed);
        stats_dict(py, &s)
    }

    /// Most entries held.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.config().capacity
    }

    /// Shards in use: `min(shards, capacity, max_memory)`.
    #[getter]
    fn shards(&self) -> usize {
        self.inner.shard_count()
    }

    /// `"lru"` or `"lru-with-frequency"`.
    #[getter]
    fn policy(&self) -> &'static str {
        self.inner.config().policy.name()
    }

    /// Default time to live in seconds (`None`: entries do not expire by default).
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.inner.config().ttl.map(|d| d.as_secs_f64())
    }

    /// Bound of the sum of entry weights (`None`: no bound).
    #[getter]
    fn max_memory(&self) -> Option<u64> {
        self.inner.config().max_memory
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "ShardedCache(capacity={}, shards={}, policy={:?})",
            c.capacity,
            self.inner.shard_count(),
            c.policy.name()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyShardedCache>()?;
    let cls = m.py().get_type::<PyShardedCache>();
    fast_get::install(&cls)?;
    fast_put::install(&cls)?;
    m.add_class::<PyTieredCache>()?;
    m.add_class::<PyManualClock>()?;
    Ok(())
}
