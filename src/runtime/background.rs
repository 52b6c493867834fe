//! Whole-state work (the audit) on a thread of its own, at a lower CPU
//! priority than admission: on a pod with two cores, an audit of 100k
//! bindings takes one of them for a second or more, and the decisions that
//! ran beside it waited for the scheduler. Its own thread, not tokio's
//! blocking pool, since decisions run on that pool and a thread's priority
//! stays with it.

/// How whole-state work runs (`--audit-nice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Background {
    /// How much the thread's nice value is above the process's (0–19, at
    /// most 19 in all; Linux only): higher yields more CPU to admission.
    /// Work at 19 still runs whenever admission leaves a core idle.
    pub nice: i32,
}

impl Default for Background {
    fn default() -> Self {
        Background { nice: DEFAULT_NICE }
    }
}

/// Ten steps below admission: the kernel's weights make a busy admission
/// thread get about nine tenths of a core it shares with the audit, and an
/// audit under full load still ends (about ten times later).
pub const DEFAULT_NICE: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("starting the {name} thread: {source}")]
    Spawn {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("the {name} thread panicked")]
    Panicked { name: &'static str },
}

impl Background {
    /// Runs `work` on a new thread named `name` at this priority, and waits
    /// for it without holding an async worker.
    pub async fn run<T: Send + 'static>(
        self,
        name: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BackgroundError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("sodguard-{name}"))
            .spawn(move || {
                self.lower_this_thread(name);
                // The receiver is gone only when the caller was dropped:
                // nobody wants the result then.
                let _ = tx.send(work());
            })
            .map_err(|source| BackgroundError::Spawn { name, source })?;
        // A panic drops the sender unsent.
        rx.await.map_err(|_| BackgroundError::Panicked { name })
    }

    #[cfg(target_os = "linux")]
    fn lower_this_thread(self, name: &str) {
        if self.nice == 0 {
            return;
        }
        // On Linux a nice value is per thread: PRIO_PROCESS with the
        // thread's id reads and sets this thread's alone. Relative to the
        // process's own, as `nice -n` is: lowering it needs no privilege.
        let tid = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(tid)).and_then(|now| {
            rustix::process::setpriority_process(Some(tid), (now + self.nice).min(19))
        });
        if let Err(e) = lowered {
            // The work then runs at admission's priority, as it did before.
            tracing::warn!(error = %e, thread = name, nice = self.nice, "could not lower the thread's priority");
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn lower_this_thread(self, _name: &str) {}
}

/// This thread's nice value (Linux), to test that the work ran at it.
#[cfg(all(test, target_os = "linux"))]
fn current_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_work_runs_at_the_lower_priority_and_the_caller_keeps_its_own() {
        let before = current_nice();
        let seen = Background { nice: 12 }
            .run("test", current_nice)
            .await
            .expect("ran");
        assert_eq!(seen, (before + 12).min(19));
        assert_eq!(current_nice(), before, "the caller's thread is unchanged");
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_an_error_not_a_hang() {
        let r = Background::default()
            .run("test", || -> u32 { panic!("boom") })
            .await;
        assert!(
            matches!(r, Err(BackgroundError::Panicked { name: "test" })),
            "{r:?}"
        );
    }
}
