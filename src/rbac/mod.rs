//! Rule matching, as the Kubernetes RBAC authorizer does it (R3), and the
//! label selectors of aggregated ClusterRoles (R2.4).

pub mod builtin;

pub use crate::model::{LabelSelector, Permission, Requirement, Rule};

/// Whether `rule` grants at least one request of `perm` (R4.1): the set of
/// requests the permission names meets the set the rule allows.
pub fn grants(rule: &Rule, perm: &Permission) -> bool {
    if !words_meet(&rule.verbs, &perm.verbs) {
        return false;
    }
    let resource_part = !perm.resources.is_empty()
        && words_meet(&rule.api_groups, &perm.api_groups)
        && resources_meet(&rule.resources, &perm.resources)
        && names_meet(&rule.resource_names, &perm.resource_names);
    resource_part || urls_meet(&rule.non_resource_urls, &perm.non_resource_urls)
}

/// The part of `rule` that grants `perm`, for explanations: a rule listing
/// nine resources is shown with the one that matters. The flag tells whether
/// anything was left out.
pub fn focus(rule: &Rule, perm: &Permission) -> (Rule, bool) {
    let keep_words =
        |xs: &[crate::model::Name], ps: &[crate::model::Name]| -> Vec<crate::model::Name> {
            xs.iter()
                .filter(|x| words_meet(std::slice::from_ref(*x), ps))
                .cloned()
                .collect()
        };
    let focused = Rule {
        verbs: keep_words(&rule.verbs, &perm.verbs),
        api_groups: if perm.resources.is_empty() {
            rule.api_groups.clone()
        } else {
            keep_words(&rule.api_groups, &perm.api_groups)
        },
        resources: rule
            .resources
            .iter()
            .filter(|r| perm.resources.iter().any(|p| resource_meets(r, p)))
            .cloned()
            .collect(),
        resource_names: rule.resource_names.clone(),
        non_resource_urls: rule
            .non_resource_urls
            .iter()
            .filter(|r| perm.non_resource_urls.iter().any(|p| url_meets(r, p)))
            .cloned()
            .collect(),
    };
    let trimmed = focused.verbs.len() < rule.verbs.len()
        || focused.api_groups.len() < rule.api_groups.len()
        || focused.resources.len() < rule.resources.len()
        || focused.non_resource_urls.len() < rule.non_resource_urls.len();
    (focused, trimmed)
}

/// Verbs and API groups: `*` on either side means "any"; otherwise exact.
fn words_meet<S: AsRef<str>>(rule: &[S], perm: &[S]) -> bool {
    let rule_any = rule.iter().any(|w| w.as_ref() == "*");
    let perm_any = perm.iter().any(|w| w.as_ref() == "*");
    match (rule_any, perm_any) {
        (true, _) => !perm.is_empty(),
        (false, true) => !rule.is_empty(),
        (false, false) => rule
            .iter()
            .any(|r| perm.iter().any(|p| r.as_ref() == p.as_ref())),
    }
}

/// A resource pattern split into the resource and its subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Any,
    Exact(&'a str),
}

#[derive(Debug, Clone, Copy)]
enum Sub<'a> {
    None,
    Some(Part<'a>),
}

/// How the authorizer reads a rule's resource (R3.2). `None` when it grants
/// nothing real (`x/*` names a subresource literally called `*`).
fn rule_resource(r: &str) -> Option<(Part<'_>, Sub<'_>)> {
    if r == "*" {
        return Some((Part::Any, Sub::Some(Part::Any)));
    }
    match r.split_once('/') {
        None => Some((Part::Exact(r), Sub::None)),
        Some((_, "*")) => None,
        Some(("*", sub)) => Some((Part::Any, Sub::Some(Part::Exact(sub)))),
        Some((res, sub)) => Some((Part::Exact(res), Sub::Some(Part::Exact(sub)))),
    }
}

/// How a duty names resources (R4.1): `*` means "any" in either position, and
/// a bare `*` is every resource with or without subresource.
fn perm_resource(p: &str) -> (Part<'_>, Option<Sub<'_>>) {
    fn part(s: &str) -> Part<'_> {
        if s == "*" { Part::Any } else { Part::Exact(s) }
    }
    if p == "*" {
        // `None` for the subresource: with or without one.
        return (Part::Any, None);
    }
    match p.split_once('/') {
        None => (part(p), Some(Sub::None)),
        Some((res, sub)) => (part(res), Some(Sub::Some(part(sub)))),
    }
}

fn parts_meet(a: Part<'_>, b: Part<'_>) -> bool {
    match (a, b) {
        (Part::Any, _) | (_, Part::Any) => true,
        (Part::Exact(x), Part::Exact(y)) => x == y,
    }
}

fn resource_meets(rule: &str, perm: &str) -> bool {
    let Some((r_res, r_sub)) = rule_resource(rule) else {
        return false;
    };
    let (p_res, p_sub) = perm_resource(perm);
    if !parts_meet(r_res, p_res) {
        return false;
    }
    match (r_sub, p_sub) {
        (_, None) => true,
        // A rule `*` covers the resource itself and all its subresources.
        (Sub::Some(Part::Any), Some(_)) if r_res == Part::Any => true,
        (Sub::None, Some(Sub::None)) => true,
        (Sub::Some(a), Some(Sub::Some(b))) => parts_meet(a, b),
        _ => false,
    }
}

fn resources_meet<S: AsRef<str>>(rule: &[S], perm: &[S]) -> bool {
    rule.iter()
        .any(|r| perm.iter().any(|p| resource_meets(r.as_ref(), p.as_ref())))
}

/// R3.3: a rule limited to some names still holds the power on those names.
fn names_meet<S: AsRef<str>>(rule: &[S], perm: &[S]) -> bool {
    rule.is_empty()
        || perm.is_empty()
        || rule
            .iter()
            .any(|r| perm.iter().any(|p| r.as_ref() == p.as_ref()))
}

/// R3.4: URLs match exactly, `*`, or by a prefix ending in `*`, on either side.
fn url_meets(rule: &str, perm: &str) -> bool {
    match (rule.strip_suffix('*'), perm.strip_suffix('*')) {
        (Some(r), Some(p)) => r.starts_with(p) || p.starts_with(r),
        (Some(r), None) => perm.starts_with(r),
        (None, Some(p)) => rule.starts_with(p),
        (None, None) => rule == perm,
    }
}

fn urls_meet<S: AsRef<str>>(rule: &[S], perm: &[S]) -> bool {
    rule.iter()
        .any(|r| perm.iter().any(|p| url_meets(r.as_ref(), p.as_ref())))
}

#[cfg(test)]
mod tests;
