use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use super::Name;

/// Who holds permissions (R1.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    ServiceAccount { namespace: Name, name: Name },
    User(Name),
    Group(Name),
}

const SA_USER_PREFIX: &str = "system:serviceaccount:";
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ALL_SERVICEACCOUNTS: &str = "system:serviceaccounts";
pub const SERVICEACCOUNTS_OF: &str = "system:serviceaccounts:";

impl Identity {
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity::ServiceAccount {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        }
    }

    /// The identity a binding subject denotes, as the RBAC authorizer reads it:
    /// a ServiceAccount without namespace takes the binding's (R1.2), a User
    /// named `system:serviceaccount:ns:n` is that ServiceAccount (R1.3).
    /// `None` for subjects that match nobody (unknown kinds, a ServiceAccount
    /// without any namespace).
    pub fn from_subject(
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        binding_namespace: Option<&str>,
    ) -> Option<Self> {
        match kind {
            "ServiceAccount" => {
                let ns = namespace
                    .filter(|n| !n.is_empty())
                    .or(binding_namespace)
                    .filter(|n| !n.is_empty())?;
                Some(Identity::service_account(ns, name))
            }
            "User" => Some(Self::user(name)),
            "Group" => Some(Identity::Group(Arc::from(name))),
            _ => None,
        }
    }

    /// A username as the API server reports it, with ServiceAccount usernames
    /// recognised (R1.3).
    pub fn user(username: &str) -> Self {
        if let Some(rest) = username.strip_prefix(SA_USER_PREFIX)
            && let Some((ns, n)) = rest.split_once(':')
            && !ns.is_empty()
            && !n.is_empty()
            && !n.contains(':')
        {
            return Identity::service_account(ns, n);
        }
        Identity::User(Arc::from(username))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Identity::ServiceAccount { .. } => "ServiceAccount",
            Identity::User(_) => "User",
            Identity::Group(_) => "Group",
        }
    }

    pub fn name(&self) -> &Name {
        match self {
            Identity::ServiceAccount { name, .. }
            | Identity::User(name)
            | Identity::Group(name) => name,
        }
    }

    pub fn namespace(&self) -> Option<&Name> {
        match self {
            Identity::ServiceAccount { namespace, .. } => Some(namespace),
            _ => None,
        }
    }

    /// The username the API server gives this identity when it authenticates.
    pub fn username(&self) -> Option<String> {
        match self {
            Identity::ServiceAccount { namespace, name } => {
                Some(format!("{SA_USER_PREFIX}{namespace}:{name}"))
            }
            Identity::User(n) => Some(n.to_string()),
            Identity::Group(_) => None,
        }
    }

    /// The groups the cluster itself puts this identity in (R1.4). Other
    /// memberships of users live in the identity provider and are unknown.
    pub fn implicit_groups(&self) -> Vec<Identity> {
        self.implicit_groups_of(|ns| Some(Name::from(format!("{SERVICEACCOUNTS_OF}{ns}"))))
    }

    /// [`implicit_groups`](Self::implicit_groups), with a ServiceAccount's
    /// namespace group as `of_namespace` gives it, left out when it gives
    /// none: a walk asks this of every identity it reaches, and the index
    /// has that group's name when a binding names it (a group nothing names
    /// gives nothing), where building it took two allocations each time.
    pub fn implicit_groups_of(
        &self,
        of_namespace: impl FnOnce(&str) -> Option<Name>,
    ) -> Vec<Identity> {
        // The two groups of every ServiceAccount or user are named once.
        static ALL_SAS: LazyLock<Name> = LazyLock::new(|| Arc::from(ALL_SERVICEACCOUNTS));
        static ALL_USERS: LazyLock<Name> = LazyLock::new(|| Arc::from(ALL_AUTHENTICATED));
        let g = |s: &LazyLock<Name>| Identity::Group(Name::clone(s));
        match self {
            Identity::ServiceAccount { namespace, .. } => {
                let mut out = Vec::with_capacity(3);
                out.push(g(&ALL_SAS));
                if let Some(group) = of_namespace(namespace) {
                    out.push(Identity::Group(group));
                }
                out.push(g(&ALL_USERS));
                out
            }
            Identity::User(_) => vec![g(&ALL_USERS)],
            Identity::Group(_) => Vec::new(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pieces, not a format string: an audit writes ~90,000 of them.
        match self {
            Identity::ServiceAccount { namespace, name } => {
                f.write_str("ServiceAccount:")?;
                f.write_str(namespace)?;
                f.write_str(":")?;
                f.write_str(name)
            }
            Identity::User(n) => {
                f.write_str("User:")?;
                f.write_str(n)
            }
            Identity::Group(n) => {
                f.write_str("Group:")?;
                f.write_str(n)
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid subject {0:?}: expected ServiceAccount:NAMESPACE:NAME, User:NAME or Group:NAME")]
pub struct IdentityParseError(pub String);

impl FromStr for Identity {
    type Err = IdentityParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdentityParseError(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(err)?;
        if rest.is_empty() {
            return Err(err());
        }
        match kind {
            "ServiceAccount" => {
                let (ns, name) = rest.split_once(':').ok_or_else(err)?;
                if ns.is_empty() || name.is_empty() || name.contains(':') {
                    return Err(err());
                }
                Ok(Identity::service_account(ns, name))
            }
            // User and group names may themselves contain colons.
            "User" => Ok(Identity::User(Arc::from(rest))),
            "Group" => Ok(Identity::Group(Arc::from(rest))),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serviceaccount_subject_takes_binding_namespace() {
        assert_eq!(
            Identity::from_subject("ServiceAccount", "api", None, Some("payments")),
            Some(Identity::service_account("payments", "api"))
        );
        assert_eq!(
            Identity::from_subject("ServiceAccount", "api", Some(""), None),
            None
        );
    }

    #[test]
    fn serviceaccount_usernames_are_serviceaccounts() {
        assert_eq!(
            Identity::from_subject("User", "system:serviceaccount:ci:builder", None, None),
            Some(Identity::service_account("ci", "builder"))
        );
        assert_eq!(
            Identity::user("system:serviceaccount:ci"),
            Identity::User(Arc::from("system:serviceaccount:ci"))
        );
    }

    #[test]
    fn display_and_parse_round_trip() {
        for s in ["ServiceAccount:a:b", "User:alice", "Group:system:masters"] {
            let id: Identity = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        for bad in [
            "",
            "ServiceAccount:a",
            "Robot:x",
            "User:",
            "ServiceAccount::b",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad}");
        }
    }

    #[test]
    fn implicit_groups() {
        let sa = Identity::service_account("ns", "n");
        let groups: Vec<String> = sa.implicit_groups().iter().map(|g| g.to_string()).collect();
        assert_eq!(
            groups,
            [
                "Group:system:serviceaccounts",
                "Group:system:serviceaccounts:ns",
                "Group:system:authenticated"
            ]
        );
    }
}
