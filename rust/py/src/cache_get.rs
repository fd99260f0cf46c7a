//! `ShardedCache.get` as CPython calls it, without PyO3's generated wrapper.
//!
//! A read is the cache's hottest call, and PyO3's generic method entry (its trampoline,
//! the matching of arguments to parameter names, the `PyResult`s moved through memory)
//! cost about 170 instructions per call: more than the lookup itself, and most of the gap
//! to cachebox's `get`. [`install`] puts this plain `METH_FASTCALL | METH_KEYWORDS`
//! method in the class's dict in place of PyO3's, which still supplies the docstring
//! and signature (and `TieredCache` and `__getitem__` keep PyO3's entries).
//!
//! Without PyO3's trampoline, PyO3 does not know that the thread is attached, and would
//! queue the decrement of any `Py<T>` dropped here until its next call instead of doing
//! it. So a read drops none: keys are released through `Bound`, and the entries a read
//! takes out (an expired one, rarely) are dropped under `Python::attach`. (Only a panic's
//! unwinding may queue one.)

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use super::{key_of, Ops, PyShardedCache};
use crate::gil::panic_error;

/// Replaces PyO3's `ShardedCache.get` with [`get`].
pub(super) fn install(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let pyo3_get = cls.getattr("get")?;
    let doc = format!(
        "get{}\n--\n\n{}",
        pyo3_get
            .getattr("__text_signature__")?
            .extract::<String>()?,
        pyo3_get.getattr("__doc__")?.extract::<String>()?
    );
    let doc = CString::new(doc).map_err(|_| PyTypeError::new_err("get's docstring has a NUL"))?;
    // CPython keeps a pointer to the definition and its strings for the life of the type,
    // which is the process's: leaked once, at import.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"get".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: get,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.into_raw().cast_const(),
    }));
    // SAFETY: `cls` is a live type object and `def` is a valid definition that outlives
    // it; the call returns a new reference or NULL with an exception set.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(cls.py(), ffi::PyDescr_NewMethod(cls.as_type_ptr(), def))
    }?;
    cls.setattr("get", descr)
}

/// `get(key, default=None)`: CPython's calling convention for a method with keywords.
unsafe extern "C" fn get(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a method descriptor checks that `slf` is an instance of the class it was
        // made for (`install`'s) before it calls this; `args` holds `nargs` positional
        // values and then one per name in `kwnames` (a tuple of `str`, or NULL), each a
        // reference borrowed for the call (and may be NULL when there are none); a
        // `Borrowed` is a transparent non-null object pointer.
        let (cache, args, kwnames) = unsafe {
            let kwnames =
                Borrowed::from_ptr_or_opt(py, kwnames).map(|k| k.cast_unchecked::<PyTuple>());
            let n = nargs as usize + kwnames.map_or(0, |k| k.len());
            let args = match n {
                0 => &[],
                n => std::slice::from_raw_parts(args.cast::<Arg<'_, '_>>(), n),
            };
            let cache = Borrowed::from_ptr(py, slf).cast_unchecked::<PyShardedCache>();
            (cache, args, kwnames)
        };
        let (key, default) = match (args, kwnames) {
            ([key], None) => (*key, None),
            ([key, default], None) => (*key, Some(*default)),
            _ => parse(args, nargs as usize, kwnames)?,
        };
        let (h, k) = key_of(&key)?;
        let mut removed = llmkg_core::cache::Removed::new();
        let found = cache.get().inner.get_hashed(&Ops(py), h, &k, &mut removed);
        k.release(py);
        if !removed.is_empty() {
            Python::attach(|_| drop(removed));
        }
        Ok::<_, PyErr>(match found {
            Some(v) => v.into_ptr(),
            None => default
                .map_or_else(|| py.None(), |d| d.to_owned().unbind())
                .into_ptr(),
        })
    }));
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(panic) => {
            panic_error(panic).restore(py);
            std::ptr::null_mut()
        }
    }
}

type Arg<'a, 'py> = Borrowed<'a, 'py, PyAny>;

/// `key` and `default` from positional values and keywords, with Python's own errors.
#[inline(never)]
fn parse<'a, 'py>(
    args: &[Arg<'a, 'py>],
    nargs: usize,
    kwnames: Option<Borrowed<'_, 'py, PyTuple>>,
) -> PyResult<(Arg<'a, 'py>, Option<Arg<'a, 'py>>)> {
    if nargs > 2 {
        return Err(PyTypeError::new_err(format!(
            "get() takes from 1 to 2 positional arguments but {nargs} were given"
        )));
    }
    let mut slots = [args.first().copied(), args.get(1).copied()];
    slots[nargs..].fill(None);
    if let Some(names) = kwnames {
        for (name, value) in names.iter_borrowed().zip(&args[nargs..]) {
            let name = name.cast::<PyString>()?;
            let name = name.to_cow()?;
            let i = match &*name {
                "key" => 0,
                "default" => 1,
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "get() got an unexpected keyword argument '{name}'"
                    )))
                }
            };
            if slots[i].replace(*value).is_some() {
                return Err(PyTypeError::new_err(format!(
                    "get() got multiple values for argument '{name}'"
                )));
            }
        }
    }
    match slots {
        [Some(key), default] => Ok((key, default)),
        [None, _] => Err(PyTypeError::new_err(
            "get() missing 1 required positional argument: 'key'",
        )),
    }
}
