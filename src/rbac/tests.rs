use proptest::prelude::*;

use super::*;
use crate::model::Name;

fn names(xs: &[&str]) -> Vec<Name> {
    xs.iter().map(|s| Name::from(*s)).collect()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
    Rule {
        verbs: names(verbs),
        api_groups: names(groups),
        resources: names(resources),
        ..Rule::default()
    }
}

fn perm(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Permission {
    Permission {
        verbs: names(verbs),
        api_groups: names(groups),
        resources: names(resources),
        ..Permission::default()
    }
}

#[test]
fn wildcards_of_rules() {
    let p = perm(&["get"], &[""], &["secrets"]);
    assert!(grants(&rule(&["*"], &[""], &["secrets"]), &p));
    assert!(grants(&rule(&["get"], &["*"], &["*"]), &p));
    assert!(!grants(&rule(&["get"], &["apps"], &["secrets"]), &p));
    assert!(!grants(&rule(&["list"], &[""], &["secrets"]), &p));
}

#[test]
fn subresources_are_not_the_resource() {
    let p = perm(&["get"], &[""], &["secrets"]);
    assert!(!grants(&rule(&["get"], &[""], &["secrets/status"]), &p));
    assert!(!grants(&rule(&["get"], &[""], &["*/status"]), &p));
    // `secrets/*` is a subresource literally named `*` (R3.2).
    assert!(!grants(&rule(&["get"], &[""], &["secrets/*"]), &p));
    let any_sub = perm(&["get"], &[""], &["secrets/*"]);
    assert!(grants(
        &rule(&["get"], &[""], &["secrets/status"]),
        &any_sub
    ));
    assert!(grants(&rule(&["get"], &[""], &["*/status"]), &any_sub));
    assert!(grants(&rule(&["get"], &[""], &["*"]), &any_sub));
    assert!(!grants(&rule(&["get"], &[""], &["secrets"]), &any_sub));
}

#[test]
fn resource_names_still_hold_the_power() {
    let mut r = rule(&["get"], &[""], &["secrets"]);
    r.resource_names = names(&["tls"]);
    let p = perm(&["get"], &[""], &["secrets"]);
    assert!(grants(&r, &p));
    let mut named = p.clone();
    named.resource_names = names(&["other"]);
    assert!(!grants(&r, &named));
    named.resource_names = names(&["other", "tls"]);
    assert!(grants(&r, &named));
}

#[test]
fn non_resource_urls() {
    let mut r = Rule {
        verbs: names(&["get"]),
        non_resource_urls: names(&["/api/*"]),
        ..Rule::default()
    };
    let mut p = Permission {
        verbs: names(&["get"]),
        non_resource_urls: names(&["/api/v1"]),
        ..Permission::default()
    };
    assert!(grants(&r, &p));
    p.non_resource_urls = names(&["/metrics"]);
    assert!(!grants(&r, &p));
    r.non_resource_urls = names(&["*"]);
    assert!(grants(&r, &p));
    // A resource permission is not granted by a URL rule.
    assert!(!grants(&r, &perm(&["get"], &["*"], &["*"])));
}

// ---- a straightforward reference: enumerate concrete requests -------------

#[derive(Debug, Clone)]
struct Request {
    verb: String,
    group: String,
    resource: String,
    sub: Option<String>,
    name: Option<String>,
}

/// The authorizer's own check of one request (rbac/v1 evaluation helpers).
fn rule_allows(r: &Rule, q: &Request) -> bool {
    let has = |xs: &[Name], s: &str| xs.iter().any(|x| &**x == s);
    let combined = match &q.sub {
        Some(s) => format!("{}/{}", q.resource, s),
        None => q.resource.clone(),
    };
    (has(&r.verbs, "*") || has(&r.verbs, &q.verb))
        && (has(&r.api_groups, "*") || has(&r.api_groups, &q.group))
        && r.resources.iter().any(|x| {
            &**x == "*"
                || **x == *combined
                || q.sub.as_ref().is_some_and(|s| **x == *format!("*/{s}"))
        })
        && (r.resource_names.is_empty()
            || q.name.as_ref().is_some_and(|n| has(&r.resource_names, n)))
}

fn perm_contains(p: &Permission, q: &Request) -> bool {
    let any_or = |xs: &[Name], s: &str| xs.iter().any(|x| &**x == "*" || &**x == s);
    let res_ok = p.resources.iter().any(|x| {
        if &**x == "*" {
            return true;
        }
        let (res, sub) = match x.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (&**x, None),
        };
        (res == "*" || res == q.resource)
            && match (sub, &q.sub) {
                (None, None) => true,
                (Some("*"), Some(_)) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            }
    });
    any_or(&p.verbs, &q.verb)
        && any_or(&p.api_groups, &q.group)
        && res_ok
        && (p.resource_names.is_empty()
            || q.name
                .as_ref()
                .is_some_and(|n| p.resource_names.iter().any(|x| **x == **n)))
}

fn universe(r: &Rule, p: &Permission) -> Vec<Request> {
    let real = |s: &&str| *s != "*";
    let mut verbs: Vec<&str> = r
        .verbs
        .iter()
        .chain(&p.verbs)
        .map(|s| &**s)
        .filter(real)
        .collect();
    verbs.push("fresh-verb");
    let mut groups: Vec<&str> = r
        .api_groups
        .iter()
        .chain(&p.api_groups)
        .map(|s| &**s)
        .filter(real)
        .collect();
    groups.push("fresh.group");
    let mut bases = vec!["fresh-resource"];
    let mut subs: Vec<Option<&str>> = vec![None, Some("fresh-sub")];
    for x in r.resources.iter().chain(&p.resources) {
        let (a, b) = x
            .split_once('/')
            .map_or((&**x, None), |(a, b)| (a, Some(b)));
        if a != "*" {
            bases.push(a);
        }
        if let Some(b) = b.filter(|b| *b != "*") {
            subs.push(Some(b));
        }
    }
    let mut rnames: Vec<Option<&str>> = vec![None, Some("fresh-name")];
    rnames.extend(
        r.resource_names
            .iter()
            .chain(&p.resource_names)
            .map(|s| Some(&**s)),
    );
    let mut out = Vec::new();
    for v in &verbs {
        for g in &groups {
            for b in &bases {
                for s in &subs {
                    for n in &rnames {
                        out.push(Request {
                            verb: v.to_string(),
                            group: g.to_string(),
                            resource: b.to_string(),
                            sub: s.map(str::to_string),
                            name: n.map(str::to_string),
                        });
                    }
                }
            }
        }
    }
    out
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<Name>> {
    proptest::collection::vec(proptest::sample::select(pool), 0..3)
        .prop_map(|v| v.into_iter().map(Name::from).collect())
}

prop_compose! {
    fn arb_rule()(
        verbs in pick(&["get", "list", "create", "*"]),
        api_groups in pick(&["", "apps", "*"]),
        resources in pick(&["secrets", "pods", "secrets/status", "pods/log", "*", "*/status", "secrets/*", "*/*"]),
        resource_names in pick(&["a", "b"]),
    ) -> Rule {
        Rule { verbs, api_groups, resources, resource_names, non_resource_urls: vec![] }
    }
}

prop_compose! {
    fn arb_perm()(
        verbs in pick(&["get", "list", "create", "*"]),
        api_groups in pick(&["", "apps", "*"]),
        resources in pick(&["secrets", "pods", "secrets/status", "pods/log", "*", "*/status", "secrets/*", "*/*"]),
        resource_names in pick(&["a", "b"]),
    ) -> Permission {
        Permission { verbs, api_groups, resources, resource_names, non_resource_urls: vec![] }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn matching_agrees_with_request_enumeration(r in arb_rule(), p in arb_perm()) {
        let expected = universe(&r, &p).iter().any(|q| perm_contains(&p, q) && rule_allows(&r, q));
        prop_assert_eq!(grants(&r, &p), expected, "rule {:?} perm {:?}", r, p);
    }

    #[test]
    fn url_matching_agrees_with_enumeration(
        ru in pick(&["/metrics", "/api", "/api/*", "*", "/healthz", "/a*"]),
        pu in pick(&["/metrics", "/api", "/api/*", "*", "/healthz", "/a*"]),
    ) {
        let r = Rule { verbs: names(&["get"]), non_resource_urls: ru.clone(), ..Rule::default() };
        let p = Permission { verbs: names(&["get"]), non_resource_urls: pu.clone(), ..Permission::default() };
        // Concrete paths: every literal, every prefix extended, one fresh path.
        let mut paths: Vec<String> = vec!["/fresh".into()];
        for u in ru.iter().chain(&pu) {
            match u.strip_suffix('*') {
                Some(pre) => { paths.push(format!("{pre}x")); paths.push(pre.to_string()); }
                None => paths.push(u.to_string()),
            }
        }
        let matches = |pat: &str, path: &str| pat == "*" || pat == path
            || pat.strip_suffix('*').is_some_and(|pre| path.starts_with(pre));
        let expected = paths.iter().any(|q| pu.iter().any(|x| matches(x, q)) && ru.iter().any(|x| matches(x, q)));
        prop_assert_eq!(grants(&r, &p), expected);
    }
}
