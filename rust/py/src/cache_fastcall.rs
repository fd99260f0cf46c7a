//! Methods of `ShardedCache` as CPython calls them, without PyO3's generated wrapper:
//! what `get`, `put` and `__setitem__` (`cache_get`, `cache_put`) share.
//!
//! PyO3's generic method entry (its trampoline, the matching of arguments to parameter
//! names, the `PyResult`s moved through memory) costs about 170 instructions per call:
//! more than a cache lookup itself. A slot method such as `__setitem__` costs more
//! still when called as `cache.__setitem__(k, v)`: CPython packs its arguments into a
//! tuple for the slot wrapper. [`install`] puts a plain `METH_FASTCALL` method in the
//! class's dict in place of PyO3's, which still supplies the docstring and signature.
//!
//! Without PyO3's trampoline, PyO3 does not know that the thread is attached, and would
//! queue the decrement of any `Py<T>` dropped here until its next call instead of doing
//! it. So these methods drop none: keys and values go through `Bound`
//! ([`release_removed`]), and anything else a call takes out of the cache is dropped
//! under `Python::attach`. (Only a panic's unwinding may queue one.)

use std::ffi::{c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use llmkg_core::cache::Removed;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use super::PyKey;
use crate::gil::panic_error;

/// A positional or keyword value, borrowed for the call.
pub(super) type Arg<'a, 'py> = Borrowed<'a, 'py, PyAny>;

/// Replaces PyO3's method `name` of `cls` with `meth`, called with `flags` (a
/// `METH_FASTCALL` convention), keeping PyO3's docstring and text signature.
pub(super) fn install(
    cls: &Bound<'_, PyType>,
    name: &'static CStr,
    meth: ffi::PyMethodDefPointer,
    flags: c_int,
) -> PyResult<()> {
    let attr = name
        .to_str()
        .map_err(|_| PyTypeError::new_err("bad name"))?;
    let pyo3_method = cls.getattr(attr)?;
    let signature: Option<String> = pyo3_method.getattr("__text_signature__")?.extract()?;
    let body: Option<String> = pyo3_method.getattr("__doc__")?.extract()?;
    let doc = format!(
        "{attr}{}\n--\n\n{}",
        signature.unwrap_or_default(),
        body.unwrap_or_default()
    );
    let doc = CString::new(doc)
        .map_err(|_| PyTypeError::new_err(format!("{attr}'s docstring has a NUL")))?;
    // CPython keeps a pointer to the definition and its strings for the life of the type,
    // which is the process's: leaked once, at import.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.into_raw().cast_const(),
    }));
    // SAFETY: `cls` is a live type object and `def` is a valid definition that outlives
    // it; the call returns a new reference or NULL with an exception set.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(cls.py(), ffi::PyDescr_NewMethod(cls.as_type_ptr(), def))
    }?;
    cls.setattr(attr, descr)
}

/// The body of a method: its result as a new reference, or NULL with the error (or a
/// panic, as a `RuntimeError`) raised.
#[inline(always)]
pub(super) fn run(
    py: Python<'_>,
    body: impl FnOnce() -> PyResult<*mut ffi::PyObject>,
) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
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

/// The `self` and arguments of a `METH_FASTCALL | METH_KEYWORDS` call: the positional
/// values, then one per name in `kwnames`.
///
/// # Safety
/// `slf` must be a live instance of `T`, and `args`, `nargs` and `kwnames` what CPython
/// passes to such a method: `args` holds `nargs` values and then one per name in
/// `kwnames` (a tuple of `str`, or NULL), each borrowed for the call (and may be NULL
/// when there are none).
#[inline(always)]
pub(super) unsafe fn arguments<'a, 'py, T: pyo3::PyClass>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> (
    Borrowed<'a, 'py, T>,
    &'a [Arg<'a, 'py>],
    Option<Borrowed<'a, 'py, PyTuple>>,
) {
    // SAFETY: per the contract above; a `Borrowed` is a transparent non-null object
    // pointer, so the array of pointers is one of `Borrowed`s.
    unsafe {
        let kwnames = Borrowed::from_ptr_or_opt(py, kwnames).map(|k| k.cast_unchecked::<PyTuple>());
        let n = nargs as usize + kwnames.map_or(0, |k| k.len());
        let args = match n {
            0 => &[],
            n => std::slice::from_raw_parts(args.cast::<Arg<'a, 'py>>(), n),
        };
        (
            Borrowed::from_ptr(py, slf).cast_unchecked::<T>(),
            args,
            kwnames,
        )
    }
}

/// A method's parameters: their names, how many may be passed by position (the rest are
/// keyword-only) and how many are required (the first ones).
pub(super) struct Params<const N: usize> {
    pub(super) method: &'static str,
    pub(super) names: [&'static str; N],
    pub(super) positional: usize,
    pub(super) required: usize,
}

impl<const N: usize> Params<N> {
    /// Each parameter's value, matched from positional values and keywords with the
    /// errors Python gives for a function of the same signature.
    #[inline(never)]
    pub(super) fn parse<'a, 'py>(
        &self,
        args: &[Arg<'a, 'py>],
        nargs: usize,
        kwnames: Option<Borrowed<'_, 'py, PyTuple>>,
    ) -> PyResult<[Option<Arg<'a, 'py>>; N]> {
        let method = self.method;
        if nargs > self.positional {
            let takes = if self.required == self.positional {
                format!("{}", self.positional)
            } else {
                format!("from {} to {}", self.required, self.positional)
            };
            let plural = if self.positional == 1 { "" } else { "s" };
            return Err(PyTypeError::new_err(format!(
                "{method}() takes {takes} positional argument{plural} but {nargs} were given"
            )));
        }
        let mut slots = [None; N];
        for (slot, value) in slots.iter_mut().zip(&args[..nargs]) {
            *slot = Some(*value);
        }
        if let Some(names) = kwnames {
            for (name, value) in names.iter_borrowed().zip(&args[nargs..]) {
                let name = name.cast::<PyString>()?;
                let name = name.to_cow()?;
                let Some(i) = self.names.iter().position(|n| *n == name) else {
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got an unexpected keyword argument '{name}'"
                    )));
                };
                if slots[i].replace(*value).is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got multiple values for argument '{name}'"
                    )));
                }
            }
        }
        let missing: Vec<usize> = (0..self.required).filter(|&i| slots[i].is_none()).collect();
        if missing.is_empty() {
            Ok(slots)
        } else {
            Err(self.missing(&missing))
        }
    }

    /// The value of required parameter `i`, from a [`parse`](Self::parse) (which
    /// already checked that it is there).
    #[inline]
    pub(super) fn required<'a, 'py>(
        &self,
        value: Option<Arg<'a, 'py>>,
        i: usize,
    ) -> PyResult<Arg<'a, 'py>> {
        value.ok_or_else(|| self.missing(&[i]))
    }

    /// Python's error for required parameters without a value.
    #[cold]
    fn missing(&self, which: &[usize]) -> PyErr {
        let method = self.method;
        let names: Vec<String> = which
            .iter()
            .map(|&i| format!("'{}'", self.names[i]))
            .collect();
        PyTypeError::new_err(match names.as_slice() {
            [first @ .., last] if !first.is_empty() => format!(
                "{method}() missing {} required positional arguments: {} and {last}",
                names.len(),
                first.join(", ")
            ),
            _ => format!(
                "{method}() missing 1 required positional argument: {}",
                names.join("")
            ),
        })
    }
}

/// Drops what a call took out of the cache, at once (see the module's comment): the
/// usual single entry through `Bound`, anything more under `Python::attach`.
#[inline]
pub(super) fn release_removed(py: Python<'_>, mut removed: Removed<PyKey, Py<PyAny>>) {
    if let Some((key, value)) = removed.take_one() {
        key.release(py);
        drop(value.into_bound(py));
    }
    if !removed.is_empty() {
        Python::attach(|_| drop(removed));
    }
}
