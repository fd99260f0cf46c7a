//! `ShardedCache.put` and `ShardedCache.__setitem__` as CPython calls them, without
//! PyO3's generated wrappers (see `cache_fastcall`).
//!
//! A write that evicts takes about as long as PyO3's entry and CPython's slot wrapper
//! around it (`cache.__setitem__(k, v)` packs its two arguments into a tuple, which
//! the wrapper unpacks again): this entry point spares both. `cache[k] = v` then goes
//! through CPython's generic `__setitem__` slot, which calls this method without a
//! tuple; `del cache[k]` still reaches PyO3's `__delitem__`.

use llmkg_core::cache::{EntryOptions, Removed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::fastcall::{arguments, install as install_method, release_removed, run, Arg, Params};
use super::{entry_options, key_of, Ops, PyShardedCache};

/// Replaces PyO3's `ShardedCache.put` and `ShardedCache.__setitem__`.
pub(super) fn install(cls: &Bound<'_, PyType>) -> PyResult<()> {
    install_method(
        cls,
        c"put",
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: put,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    )?;
    install_method(
        cls,
        c"__setitem__",
        ffi::PyMethodDefPointer {
            PyCFunctionFast: set_item,
        },
        ffi::METH_FASTCALL,
    )
}

/// Stores `value` under `key` and drops what the write took out of the cache.
#[inline(always)]
fn store(
    py: Python<'_>,
    cache: &PyShardedCache,
    key: Arg<'_, '_>,
    value: Arg<'_, '_>,
    opts: EntryOptions,
) -> PyResult<*mut ffi::PyObject> {
    let (h, k) = key_of(&key)?;
    let mut removed = Removed::new();
    let value = value.to_owned().unbind();
    cache
        .inner
        .insert_hashed(&Ops(py), h, k, value, opts, &mut removed);
    release_removed(py, removed);
    Ok(py.None().into_ptr())
}

const PUT: Params<4> = Params {
    method: "put",
    names: ["key", "value", "ttl", "size"],
    positional: 2,
    required: 2,
};

/// `put(key, value, *, ttl=None, size=None)`.
unsafe extern "C" fn put(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the thread attached.
    let py = unsafe { Python::assume_attached() };
    run(py, || {
        // SAFETY: a method descriptor checks that `slf` is an instance of the class it was
        // made for (`install`'s) before it calls this, with CPython's arguments.
        let (cache, args, kwnames) =
            unsafe { arguments::<PyShardedCache>(py, slf, args, nargs, kwnames) };
        let (key, value, ttl, size) = match (args, kwnames) {
            ([key, value], None) => (*key, *value, None, None),
            _ => {
                let [key, value, ttl, size] = PUT.parse(args, nargs as usize, kwnames)?;
                (PUT.required(key, 0)?, PUT.required(value, 1)?, ttl, size)
            }
        };
        let ttl = optional::<f64>(ttl, "ttl")?;
        let size = optional::<i64>(size, "size")?;
        let opts = entry_options(&value, ttl, size)?;
        store(py, cache.get(), key, value, opts)
    })
}

/// `__setitem__(key, value, /)`: a positional-only method, as CPython's slot wrapper is.
unsafe extern "C" fn set_item(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the thread attached.
    let py = unsafe { Python::assume_attached() };
    run(py, || {
        // SAFETY: as in `put`; a `METH_FASTCALL` method without keywords gets no names.
        let (cache, args, _) = unsafe {
            arguments::<PyShardedCache>(py, slf, args.cast_const(), nargs, std::ptr::null_mut())
        };
        let [key, value] = args else {
            return Err(PyTypeError::new_err(format!(
                "__setitem__ expected 2 arguments, got {nargs}"
            )));
        };
        let opts = entry_options(value, None, None)?;
        store(py, cache.get(), *key, *value, opts)
    })
}

/// A keyword-only option: absent and `None` are both `None`.
#[inline]
fn optional<'a, 'py, T>(value: Option<Arg<'a, 'py>>, name: &str) -> PyResult<Option<T>>
where
    T: FromPyObject<'a, 'py>,
{
    match value {
        Some(v) if !v.is_none() => v.extract::<T>().map(Some).map_err(|e| {
            // The same exception, naming the argument.
            let (py, e): (_, PyErr) = (v.py(), e.into());
            PyErr::from_type(
                e.get_type(py),
                format!("put() argument '{name}': {}", e.value(py)),
            )
        }),
        _ => Ok(None),
    }
}
