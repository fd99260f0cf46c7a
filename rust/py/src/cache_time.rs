//! The time of the caches from Python: `ManualClock`, and times to live in seconds.

use std::time::Duration;

use llmkg_core::cache::{Clock, ManualClock};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A clock for tests of expiry: it starts at 0 and moves only by `advance`. A cache
/// built with `clock=` expires its entries by it instead of the monotonic clock.
#[pyclass(frozen, module = "llmkg._core", name = "ManualClock")]
pub struct PyManualClock {
    inner: ManualClock,
}

#[pymethods]
impl PyManualClock {
    #[new]
    fn new() -> Self {
        PyManualClock {
            inner: ManualClock::new(),
        }
    }

    /// Moves the clock forward by `seconds` (>= 0, to the microsecond).
    fn advance(&self, seconds: f64) -> PyResult<()> {
        let by = Duration::try_from_secs_f64(seconds).map_err(|_| {
            PyValueError::new_err(format!(
                "seconds must be a finite number >= 0, got {seconds}"
            ))
        })?;
        self.inner.advance(by);
        Ok(())
    }

    /// Seconds the clock has been advanced by.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed().as_secs_f64()
    }

    fn __repr__(&self) -> String {
        format!("ManualClock(elapsed={})", self.elapsed())
    }
}

/// The clock of a cache built with `clock=` (`None`: the monotonic clock).
pub fn clock_of(clock: Option<PyRef<'_, PyManualClock>>) -> Clock {
    clock.map_or(Clock::System, |c| Clock::Manual(c.inner.clone()))
}

pub fn ttl_of(ttl: Option<f64>) -> PyResult<Option<Duration>> {
    match ttl {
        None => Ok(None),
        Some(t) if t > 0.0 => Duration::try_from_secs_f64(t).map(Some).map_err(|_| {
            PyValueError::new_err(format!("ttl must be a finite number of seconds, got {t}"))
        }),
        Some(t) => Err(PyValueError::new_err(format!(
            "ttl must be > 0 seconds, got {t}"
        ))),
    }
}
