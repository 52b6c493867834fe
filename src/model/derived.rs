//! The escalation paths a policy considers (R9.1, R9.2).

use std::fmt;

/// One kind of derivation: a way a subject obtains more than its rules name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DerivedKind {
    WorkloadCreation,
    PodExec,
    TokenRequest,
    Impersonation,
    RoleGrant,
}

impl DerivedKind {
    pub const ALL: [DerivedKind; 5] = [
        DerivedKind::WorkloadCreation,
        DerivedKind::PodExec,
        DerivedKind::TokenRequest,
        DerivedKind::Impersonation,
        DerivedKind::RoleGrant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DerivedKind::WorkloadCreation => "WorkloadCreation",
            DerivedKind::PodExec => "PodExec",
            DerivedKind::TokenRequest => "TokenRequest",
            DerivedKind::Impersonation => "Impersonation",
            DerivedKind::RoleGrant => "RoleGrant",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for DerivedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`DerivedKind`]s, small enough to compare and hash for free:
/// policies with the same set share one holdings walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DerivedSet(u8);

impl DerivedSet {
    pub const NONE: DerivedSet = DerivedSet(0);

    pub fn all() -> Self {
        DerivedKind::ALL.into_iter().collect()
    }

    pub fn contains(self, k: DerivedKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: DerivedSet) -> DerivedSet {
        DerivedSet(self.0 | other.0)
    }

    pub fn intersects(self, other: DerivedSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn with(self, k: DerivedKind) -> DerivedSet {
        DerivedSet(self.0 | k.bit())
    }
}

impl Default for DerivedSet {
    /// R9.2: every path unless the policy says otherwise.
    fn default() -> Self {
        Self::all()
    }
}

impl FromIterator<DerivedKind> for DerivedSet {
    fn from_iter<I: IntoIterator<Item = DerivedKind>>(it: I) -> Self {
        DerivedSet(it.into_iter().fold(0, |acc, k| acc | k.bit()))
    }
}
