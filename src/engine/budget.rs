//! How much whole-state work one decision or one evaluation may do.
//!
//! A single change can make every subject of the cluster violate in every
//! namespace: a ClusterRoleBinding of `edit` for `system:serviceaccounts`
//! lets each ServiceAccount act as every other one, and at 100k bindings the
//! state after it has billions of (subject, namespace) violations. Judging
//! them all would hold the decision lock for hours and the memory of the
//! process. A budget bounds the work: past it, a decision refuses (fail
//! closed) unless it has already found a reason to deny, and an evaluation
//! stops and says it is incomplete.

use std::time::{Duration, Instant};

/// The limits of one piece of work. [`Budget::UNLIMITED`] judges everything,
/// as the reference semantics (and `sodguard test`) do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most violations kept: new ones for a decision, all of them for an
    /// evaluation. What is kept is what costs memory.
    pub violations: usize,
    /// Most time the work may take, measured from its start.
    pub time: Option<Duration>,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget {
        violations: usize::MAX,
        time: None,
    };

    pub(crate) fn start(self) -> Meter {
        Meter {
            budget: self,
            deadline: self.time.and_then(|t| Instant::now().checked_add(t)),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::UNLIMITED
    }
}

/// Why work stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    #[error("more than {limit} violations (judged {judged} of {subjects} subjects)")]
    Violations {
        limit: usize,
        judged: usize,
        subjects: usize,
    },
    #[error("more than {}ms of work (judged {judged} of {subjects} subjects)", limit.as_millis())]
    Time {
        limit: Duration,
        judged: usize,
        subjects: usize,
    },
}

impl Exhausted {
    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Exhausted::Violations { .. } => "violations",
            Exhausted::Time { .. } => "time",
        }
    }

    /// The subjects the work had to judge (as far as it knew).
    pub(crate) fn subjects(&self) -> usize {
        match self {
            Exhausted::Violations { subjects, .. } | Exhausted::Time { subjects, .. } => *subjects,
        }
    }

    pub(crate) fn set_subjects(&mut self, n: usize) {
        match self {
            Exhausted::Violations { subjects, .. } | Exhausted::Time { subjects, .. } => {
                *subjects = n
            }
        }
    }
}

/// Tells a loop of short steps (microseconds each) whether `deadline` has
/// passed, reading the clock once every [`STEPS_PER_READING`] steps: a
/// reading costs about as much as a step.
pub(crate) struct Ticker {
    deadline: Option<Instant>,
    steps: usize,
}

/// Steps a [`Ticker`] lets go by between two readings of the clock.
const STEPS_PER_READING: usize = 64;

impl Ticker {
    pub(crate) fn new(deadline: Option<Instant>) -> Self {
        Ticker { deadline, steps: 0 }
    }

    /// Called before each step: whether the time is up (read at the first
    /// step and every [`STEPS_PER_READING`] after it).
    pub(crate) fn late(&mut self) -> bool {
        let read = self.steps.is_multiple_of(STEPS_PER_READING);
        self.steps += 1;
        read && self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// A started [`Budget`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meter {
    budget: Budget,
    deadline: Option<Instant>,
}

#[cfg(test)]
impl Meter {
    /// A meter that never runs out: what tests that judge everything pass.
    pub(crate) fn unlimited() -> Meter {
        Budget::UNLIMITED.start()
    }
}

impl Meter {
    /// Whether work that keeps `kept` violations, having judged `judged` of
    /// `subjects` subjects, must stop.
    pub(crate) fn check(
        &self,
        kept: usize,
        judged: usize,
        subjects: usize,
    ) -> Result<(), Exhausted> {
        if kept > self.budget.violations {
            return Err(Exhausted::Violations {
                limit: self.budget.violations,
                judged,
                subjects,
            });
        }
        self.check_time(judged, subjects)
    }

    /// Whether the time is up, having judged `judged` of `subjects`.
    pub(crate) fn check_time(&self, judged: usize, subjects: usize) -> Result<(), Exhausted> {
        match (self.deadline, self.budget.time) {
            (Some(deadline), Some(limit)) if Instant::now() >= deadline => Err(Exhausted::Time {
                limit,
                judged,
                subjects,
            }),
            _ => Ok(()),
        }
    }

    /// When the time is up, if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The [`Exhausted`] of a time that ran out in the middle of judging.
    pub(crate) fn timed_out(&self, judged: usize, subjects: usize) -> Exhausted {
        Exhausted::Time {
            limit: self.budget.time.unwrap_or_default(),
            judged,
            subjects,
        }
    }

    /// Most violations to keep.
    pub(crate) fn violations(&self) -> usize {
        self.budget.violations
    }
}
