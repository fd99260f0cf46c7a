//! The shared pool, one thread per core, that background work runs on: index links made
//! after an allocation answered (`linker`). On Linux its threads run under `SCHED_IDLE`,
//! so that they take the cores only when requests leave them idle and give a core up the
//! moment a request's thread wakes; at nice [`NICE`] they kept it for the rest of their
//! time slice, a millisecond or more. Where `SCHED_IDLE` is refused, they keep the nice
//! value.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The nice value of the background pool's threads (0 is normal, 19 the lowest).
pub const NICE: i32 = 10;

/// The pool, started on first use.
pub fn pool() -> Result<&'static rayon::ThreadPool> {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("llmkg-bg-{i}"))
        .start_handler(|_| lower_this_threads_priority())
        .build()
        .map_err(|e| {
            Error::Io(std::io::Error::other(format!(
                "cannot start the background pool: {e}"
            )))
        })?;
    // A racing caller may have built one first: theirs is kept, this one is dropped.
    Ok(POOL.get_or_init(|| pool))
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours. On Linux
    // `who = 0` with PRIO_PROCESS names the calling thread only (each thread has its own
    // nice value). A refusal leaves the priority unchanged, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads the sched_param passed, which outlives the
    // call; pid 0 is the calling thread. Any user may move a thread to SCHED_IDLE; a
    // refusal leaves the nice value set above.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {
    // Elsewhere PRIO_PROCESS would lower the whole process: the pool keeps its priority.
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn pool_threads_run_at_idle_priority() {
        let pool = super::pool().unwrap();
        let policy = pool.install(|| {
            // SAFETY: sched_getscheduler reads no memory; pid 0 is the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        });
        assert!(policy == libc::SCHED_IDLE || policy == libc::SCHED_OTHER);
        let nice = pool.install(|| {
            // SAFETY: getpriority reads no memory; who 0 is the calling thread.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        });
        assert!(nice >= super::NICE, "nice {nice}");
    }
}
