//! Use time (R13): whether an authorization webhook refuses one request of
//! an identity that has an unexcused violation under a policy that opts in.
//!
//! The answer never scans the state: a request that falls within no opted-in
//! duty is answered from the policies alone, and otherwise only the
//! requester's own identities are judged (one holdings walk each, which a
//! caller may cache per state: [`decide_with`]). Exceptions are judged at the
//! request's time on every answer, never cached, so an exception's end takes
//! effect at once.

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::Timestamp;

use super::grant_rules::{GrantPhase, grant_standing};
use super::index::Index;
use super::violations::{Violation, excuse, subject_violations};
use crate::model::{BindingKey, CLUSTER_WIDE, GrantKey, Identity, Name, Permission, Policy, Rule};

/// The identities whose requests are never judged: cluster admins, nodes
/// and the API server's own loopback client. The generated authorizer
/// configuration never sends them; this is the second line.
pub const EXEMPT_GROUPS: [&str; 2] = ["system:masters", "system:nodes"];
pub const EXEMPT_USERS: [&str; 1] = ["system:apiserver"];

/// Who asks: a SubjectAccessReview's `user` and `groups`, as the API server
/// authenticated them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub user: String,
    pub groups: Vec<String>,
}

/// What is asked: a SubjectAccessReview's resource or non-resource
/// attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Resource {
        verb: String,
        /// Empty for cluster-scoped resources (and for requests across all
        /// namespaces).
        namespace: String,
        group: String,
        resource: String,
        subresource: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Access {
    pub fn verb(&self) -> &str {
        match self {
            Access::Resource { verb, .. } | Access::NonResource { verb, .. } => verb,
        }
    }

    /// R13.1: whether the request is within `perm` (R4.1, matched as R3: the
    /// request is read as a rule of one verb, group, resource and name).
    pub fn within(&self, perm: &Permission) -> bool {
        let one = |s: &str| vec![Name::from(s)];
        let rule = match self {
            Access::Resource {
                verb,
                group,
                resource,
                subresource,
                name,
                ..
            } => {
                if perm.resources.is_empty() {
                    return false;
                }
                // A permission limited to some names covers requests for
                // those names only; a list or create names none.
                if !perm.resource_names.is_empty()
                    && !perm.resource_names.iter().any(|n| **n == **name)
                {
                    return false;
                }
                let resource = resource_path(resource, subresource);
                Rule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(&resource),
                    resource_names: Vec::new(),
                    non_resource_urls: Vec::new(),
                }
            }
            Access::NonResource { verb, path } => {
                if perm.non_resource_urls.is_empty() {
                    return false;
                }
                Rule {
                    verbs: one(verb),
                    non_resource_urls: one(path),
                    ..Rule::default()
                }
            }
        };
        crate::rbac::grants(&rule, perm)
    }

    /// Whether a violation in `namespace` (or `*`) covers this request: a
    /// violation in N covers requests in N and requests across all
    /// namespaces (a review's empty namespace: `list secrets -A` reads N's
    /// too); a cluster-wide one covers every request, non-resource URLs
    /// included.
    fn in_scope(&self, namespace: &str) -> bool {
        namespace == CLUSTER_WIDE
            || matches!(self, Access::Resource { namespace: ns, .. } if ns.is_empty() || ns == namespace)
    }
}

/// A review's resource as RBAC rules name it: `pods`, or `pods/exec` for a
/// subresource.
pub fn resource_path(resource: &str, subresource: &str) -> String {
    if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    }
}

/// A refusal: the violation it stands on and the duty the request exercises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseTimeDenial {
    pub violation: Violation,
    /// The refused duty of the violation the request falls within.
    pub duty: Name,
}

impl UseTimeDenial {
    /// For the API server's log and the requester's "forbidden" message:
    /// which policy, which violation, how to repair it.
    pub fn reason(&self) -> String {
        let v = &self.violation;
        let place = if &*v.namespace == CLUSTER_WIDE {
            "cluster-wide".to_string()
        } else {
            format!("in namespace {}", v.namespace)
        };
        let duties: Vec<&str> = v.duties.iter().map(|d| &**d).collect();
        let mut m = format!(
            "sodguard: {} holds {} {place}, which SoDPolicy {} forbids; the request exercises duty {}",
            v.subject,
            duties.join(" + "),
            v.policy,
            self.duty
        );
        for d in &v.explanation {
            if let Some(p) = d.paths.first() {
                let _ = write!(m, "; {}: {p}", d.duty);
            }
        }
        m.push_str(
            "; to repair, remove one of the duties (a binding above), or get an SoDException approved",
        );
        m
    }
}

/// A refusal because a just-in-time grant of the requester has ended while
/// its binding, which grants the request, is still there (R13.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedGrant {
    pub grant: GrantKey,
    pub kind: &'static str,
    pub subject: Identity,
    pub binding: BindingKey,
    /// Why it no longer stands: expired at …, refused, pending.
    pub why: String,
}

impl EndedGrant {
    pub fn reason(&self) -> String {
        let grant = match &self.grant.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.grant.name),
            None => format!("{} {}", self.kind, self.grant.name),
        };
        format!(
            "sodguard: {grant} for {} no longer stands ({}); its {} still grants this request until sodguard's grant controller deletes it; request a new grant",
            self.subject, self.why, self.binding
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseTimeVerdict {
    Deny(Box<UseTimeDenial>),
    /// Refused: only an ended grant's leftover binding allows it.
    GrantEnded(Box<EndedGrant>),
    /// RBAC decides. Why, for the decision log.
    NoOpinion(NoOpinion),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoOpinion {
    /// An identity sodguard never judges ([`EXEMPT_GROUPS`], [`EXEMPT_USERS`]).
    Exempt,
    /// The request is within no refused duty of any opted-in policy.
    NoDuty,
    /// Within a refused duty, but the requester has no unexcused violation
    /// that covers it.
    NoViolation,
}

impl UseTimeVerdict {
    /// The reason of a refusal, `None` for no opinion.
    pub fn reason(&self) -> Option<String> {
        match self {
            UseTimeVerdict::Deny(d) => Some(d.reason()),
            UseTimeVerdict::GrantEnded(g) => Some(g.reason()),
            UseTimeVerdict::NoOpinion(_) => None,
        }
    }
}

impl NoOpinion {
    pub fn as_str(self) -> &'static str {
        match self {
            NoOpinion::Exempt => "exempt",
            NoOpinion::NoDuty => "no-duty",
            NoOpinion::NoViolation => "no-violation",
        }
    }
}

/// The opted-in policies that refuse some duty the request is within, each
/// with those duties (by index).
pub fn candidates<'a>(
    index: &'a Index,
    access: &Access,
) -> Vec<(u32, &'a Arc<Policy>, Vec<usize>)> {
    index
        .policies()
        .filter(|(_, p)| p.use_time.deny)
        .filter_map(|(slot, p)| {
            let duties: Vec<usize> = p
                .duties
                .iter()
                .enumerate()
                .filter(|(i, d)| {
                    p.use_time.refused.get(*i).copied().unwrap_or(false)
                        && p.permissions[d.permissions.clone()]
                            .iter()
                            .any(|perm| access.within(perm))
                })
                .map(|(i, _)| i)
                .collect();
            (!duties.is_empty()).then_some((slot, p, duties))
        })
        .collect()
}

/// The identities a request is judged as (R13.1): the user (a
/// ServiceAccount for `system:serviceaccount:NS:NAME`) and each group as a
/// Group subject. `None` for an exempt requester.
pub fn identities(requester: &Requester) -> Option<Vec<Identity>> {
    if EXEMPT_USERS.contains(&requester.user.as_str())
        || requester
            .groups
            .iter()
            .any(|g| EXEMPT_GROUPS.contains(&g.as_str()))
    {
        return None;
    }
    let mut out = Vec::with_capacity(1 + requester.groups.len());
    if !requester.user.is_empty() {
        out.push(Identity::user(&requester.user));
    }
    for g in &requester.groups {
        let id = Identity::Group(Name::from(g.as_str()));
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Some(out)
}

/// Gives an identity's raw violations under the policy in a slot: see
/// [`decide_with`].
pub type ViolationsOf<'a> = dyn FnMut(&Index, &Identity, u32) -> Arc<Vec<Violation>> + 'a;

/// [`decide_with`], judging each identity afresh.
pub fn decide(
    index: &Index,
    requester: &Requester,
    access: &Access,
    now: Timestamp,
) -> UseTimeVerdict {
    decide_with(index, requester, access, now, &mut |index, id, slot| {
        Arc::new(subject_violations(index, id, Some(slot)))
    })
}

/// The use-time decision (R13). `violations_of(index, identity, slot)` must
/// give the identity's raw violations (exceptions not applied) under the
/// policy in `slot` on `index`, as [`subject_violations`] does: a caller may
/// keep them for as long as the state does not change. Exceptions are
/// applied here, at `now`.
pub fn decide_with(
    index: &Index,
    requester: &Requester,
    access: &Access,
    now: Timestamp,
    violations_of: &mut ViolationsOf<'_>,
) -> UseTimeVerdict {
    let Some(ids) = identities(requester) else {
        return UseTimeVerdict::NoOpinion(NoOpinion::Exempt);
    };
    let candidates = candidates(index, access);
    if candidates.is_empty() {
        return UseTimeVerdict::NoOpinion(NoOpinion::NoDuty);
    }
    for (slot, policy, duties) in candidates {
        for id in ids.iter().filter(|id| policy.subjects.selects(id)) {
            let raw = violations_of(index, id, slot);
            for v in raw.iter().filter(|v| access.in_scope(&v.namespace)) {
                let Some(duty) = duties
                    .iter()
                    .map(|&i| &policy.duties[i].name)
                    .find(|d| v.duties.contains(d))
                else {
                    continue;
                };
                // R13.2: exceptions count at the moment of the request.
                let ev = excuse(index, vec![v.clone()], now);
                if let Some(v) = ev.violations.into_iter().next() {
                    return UseTimeVerdict::Deny(Box::new(UseTimeDenial {
                        violation: v,
                        duty: duty.clone(),
                    }));
                }
            }
        }
    }
    if let Some(g) = ended_grant(index, &ids, access, now) {
        return UseTimeVerdict::GrantEnded(Box::new(g));
    }
    UseTimeVerdict::NoOpinion(NoOpinion::NoViolation)
}

/// R13.2 for grants: a grant of one of the requester's identities that no
/// longer stands at `now` (expired, refused, never approved) while its
/// binding is still there and grants the request. The grant controller
/// deletes such a binding; until it does, use time refuses what it grants
/// (within the opted-in duties only: the caller has checked those).
fn ended_grant(
    index: &Index,
    ids: &[Identity],
    access: &Access,
    now: Timestamp,
) -> Option<EndedGrant> {
    let Access::Resource {
        verb,
        namespace,
        group,
        resource,
        subresource,
        name,
    } = access
    else {
        return None;
    };
    let resource = resource_path(resource, subresource);
    let asked = Permission {
        verbs: vec![Name::from(verb.as_str())],
        api_groups: vec![Name::from(group.as_str())],
        resources: vec![Name::from(resource.as_str())],
        resource_names: if name.is_empty() {
            Vec::new()
        } else {
            vec![Name::from(name.as_str())]
        },
        non_resource_urls: Vec::new(),
    };
    for g in index.grants().filter(|g| ids.contains(&g.subject)) {
        let key = g.binding_key();
        // A RoleBinding grants in its namespace only.
        if key
            .namespace
            .as_ref()
            .is_some_and(|ns| namespace.is_empty() || **ns != **namespace)
        {
            continue;
        }
        let Some(binding) = index.binding(&key) else {
            continue;
        };
        if !binding.subjects.contains(&g.subject) {
            continue;
        }
        let grants_it = index
            .role(&binding.role)
            .is_some_and(|e| e.role.rules.iter().any(|r| crate::rbac::grants(r, &asked)));
        if !grants_it {
            continue;
        }
        let standing = grant_standing(index, g, now);
        if standing.phase == GrantPhase::Active {
            continue;
        }
        return Some(EndedGrant {
            grant: g.key(),
            kind: g.kind(),
            subject: g.subject.clone(),
            binding: key,
            why: standing
                .reason
                .unwrap_or_else(|| standing.phase.as_str().to_string()),
        });
    }
    None
}

/// Whether any policy opts in: without one, no request needs judging.
pub fn enabled(index: &Index) -> bool {
    index.policies().any(|(_, p)| p.use_time.deny)
}

#[cfg(test)]
mod tests;
