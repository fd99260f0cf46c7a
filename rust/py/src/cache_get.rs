//! `ShardedCache.get` as CPython calls it, without PyO3's generated wrapper (see
//! `cache_fastcall`).
//!
//! A read is the cache's hottest call, and PyO3's method entry cost about 170
//! instructions per call: more than the lookup itself, and most of the gap to
//! cachebox's `get`. (`TieredCache` and `__getitem__` keep PyO3's entries.)

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::fastcall::{arguments, install as install_method, release_removed, run, Params};
use super::{key_of, Ops, PyShardedCache};

/// Replaces PyO3's `ShardedCache.get` with [`get`].
pub(super) fn install(cls: &Bound<'_, PyType>) -> PyResult<()> {
    install_method(
        cls,
        c"get",
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: get,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    )
}

const PARAMS: Params<2> = Params {
    method: "get",
    names: ["key", "default"],
    positional: 2,
    required: 1,
};

/// `get(key, default=None)`: CPython's calling convention for a method with keywords.
unsafe extern "C" fn get(
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
        let (key, default) = match (args, kwnames) {
            ([key], None) => (*key, None),
            ([key, default], None) => (*key, Some(*default)),
            _ => {
                let [key, default] = PARAMS.parse(args, nargs as usize, kwnames)?;
                (PARAMS.required(key, 0)?, default)
            }
        };
        let (h, k) = key_of(&key)?;
        let mut removed = llmkg_core::cache::Removed::new();
        let found = cache.get().inner.get_hashed(&Ops(py), h, &k, &mut removed);
        k.release(py);
        if !removed.is_empty() {
            release_removed(py, removed);
        }
        Ok(match found {
            Some(v) => v.into_ptr(),
            None => default
                .map_or_else(|| py.None(), |d| d.to_owned().unbind())
                .into_ptr(),
        })
    })
}
