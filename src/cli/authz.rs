//! `sodguard authz-config`: the AuthorizationConfiguration entry
//! (`apiserver.config.k8s.io/v1`) that chains sodguard's use-time webhook
//! (R13) before RBAC, with CEL matchConditions that send it only the requests
//! that can touch an opted-in duty.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::{CliError, EXIT_OK, OutputFormat, Source, load_source};
use crate::engine::index::Index;
use crate::engine::usetime::{EXEMPT_GROUPS, EXEMPT_USERS};
use crate::model::Permission;

#[derive(Debug, clap::Args)]
pub struct AuthzConfigArgs {
    #[command(flatten)]
    pub source: Source,
    /// The kubeconfig file, as the API server reads it, that points at
    /// sodguard's `/authorize` (see --write-kubeconfig).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/kubernetes/sodguard-authz-webhook.kubeconfig"
    )]
    pub webhook_kubeconfig: String,
    /// Also write that kubeconfig file here, for sodguard at --url.
    #[arg(long, value_name = "FILE")]
    pub write_kubeconfig: Option<PathBuf>,
    /// sodguard's authorize URL, as the API server reaches it.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://sodguard.sodguard.svc:443/authorize"
    )]
    pub url: String,
    /// The CA that signed sodguard's serving certificate (a path the API
    /// server can read), for --write-kubeconfig.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<String>,
    /// A client certificate and key the API server presents to sodguard
    /// (with `serve --client-ca`), for --write-kubeconfig.
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<String>,
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<String>,
    /// How long the API server keeps a denial or no opinion: how long a
    /// repair (or a new violation) can take to show at use time.
    #[arg(long, default_value = "10s")]
    pub unauthorized_ttl: String,
    /// The API server's wait for an answer; past it the failurePolicy
    /// (NoOpinion) applies.
    #[arg(long, default_value = "2s")]
    pub timeout: String,
    /// A whole AuthorizationConfiguration (Node, sodguard, RBAC) instead of
    /// the entry alone.
    #[arg(long)]
    pub full: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

pub fn run(args: &AuthzConfigArgs) -> Result<u8, CliError> {
    let (index, _report) = load_source(&args.source)?;
    let entry = authorizer_entry(
        &index,
        &args.webhook_kubeconfig,
        &args.unauthorized_ttl,
        &args.timeout,
    )
    .ok_or_else(|| {
        CliError::Request(
            "no SoDPolicy has spec.useTime.action: Deny: there is nothing for the authorization webhook to refuse".into(),
        )
    })?;
    let doc = if args.full {
        json!({
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AuthorizationConfiguration",
            "authorizers": [
                {"type": "Node", "name": "node"},
                entry,
                {"type": "RBAC", "name": "rbac"},
            ],
        })
    } else {
        entry
    };
    if let Some(path) = &args.write_kubeconfig {
        let kc = kubeconfig(args);
        let text = serde_saphyr::to_string(&kc).map_err(std::io::Error::other)?;
        std::fs::write(path, text)?;
    }
    let mut out = std::io::stdout().lock();
    super::output::write_data(&mut out, args.output, &doc)?;
    out.flush()?;
    Ok(EXIT_OK)
}

fn kubeconfig(args: &AuthzConfigArgs) -> Value {
    let mut cluster = json!({"server": args.url});
    if let Some(ca) = &args.ca_file {
        cluster["certificate-authority"] = json!(ca);
    }
    let mut user = json!({});
    if let (Some(c), Some(k)) = (&args.client_cert, &args.client_key) {
        user = json!({"client-certificate": c, "client-key": k});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sodguard", "cluster": cluster}],
        "users": [{"name": "kube-apiserver", "user": user}],
        "contexts": [{"name": "sodguard", "context": {"cluster": "sodguard", "user": "kube-apiserver"}}],
        "current-context": "sodguard",
    })
}

/// The authorizer entry, or `None` when no policy opts in.
pub fn authorizer_entry(
    index: &Index,
    kubeconfig: &str,
    unauthorized_ttl: &str,
    timeout: &str,
) -> Option<Value> {
    let conditions = match_conditions(index)?;
    Some(json!({
        "type": "Webhook",
        "name": "sodguard.io",
        "webhook": {
            // sodguard never allows; a short TTL all the same.
            "authorizedTTL": unauthorized_ttl,
            "unauthorizedTTL": unauthorized_ttl,
            "timeout": timeout,
            "subjectAccessReviewVersion": "v1",
            "matchConditionSubjectAccessReviewVersion": "v1",
            // sodguard down, slow or not answering must never lock the
            // cluster: RBAC decides alone.
            "failurePolicy": "NoOpinion",
            "connectionInfo": {"type": "KubeConfigFile", "kubeConfigFile": kubeconfig},
            "matchConditions": conditions.into_iter().map(|e| json!({"expression": e})).collect::<Vec<_>>(),
        },
    }))
}

/// CEL string literal.
fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn list(xs: &[impl AsRef<str>]) -> String {
    let items: Vec<String> = xs.iter().map(|x| lit(x.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

const RA: &str = "request.resourceAttributes";
const NRA: &str = "request.nonResourceAttributes";

/// A field of the attributes, `''` when the API server left it out (an
/// absent key is an error in CEL, and an error skips the webhook).
fn field(obj: &str, f: &str) -> String {
    format!("(has({obj}.{f}) ? {obj}.{f} : '')")
}

fn any(xs: &[crate::model::Name]) -> bool {
    xs.iter().any(|x| &**x == "*")
}

/// One permission as CEL over the SubjectAccessReview: a superset of what
/// [`crate::engine::usetime::Access::within`] accepts (resource names are
/// left to sodguard).
fn permission_cel(p: &Permission) -> Option<String> {
    let mut parts = Vec::new();
    if !p.resources.is_empty() {
        parts.push(format!("has({RA})"));
        if !any(&p.verbs) {
            parts.push(format!("{} in {}", field(RA, "verb"), list(&p.verbs)));
        }
        if !any(&p.api_groups) {
            parts.push(format!("{} in {}", field(RA, "group"), list(&p.api_groups)));
        }
        let resources: Vec<String> = p
            .resources
            .iter()
            .map(|r| {
                let (res, sub) = match r.split_once('/') {
                    None if &**r == "*" => return "true".to_string(),
                    None => (&**r, Some("")),
                    Some((res, sub)) => (res, Some(sub)),
                };
                let mut c = Vec::new();
                if res != "*" {
                    c.push(format!("{} == {}", field(RA, "resource"), lit(res)));
                }
                if let Some(sub) = sub.filter(|s| *s != "*") {
                    c.push(format!("{} == {}", field(RA, "subresource"), lit(sub)));
                }
                if c.is_empty() {
                    "true".to_string()
                } else {
                    format!("({})", c.join(" && "))
                }
            })
            .collect();
        if !resources.iter().any(|r| r == "true") {
            parts.push(format!("({})", resources.join(" || ")));
        }
    } else if !p.non_resource_urls.is_empty() {
        parts.push(format!("has({NRA})"));
        if !any(&p.verbs) {
            parts.push(format!("{} in {}", field(NRA, "verb"), list(&p.verbs)));
        }
        let urls: Vec<String> = p
            .non_resource_urls
            .iter()
            .map(|u| match u.strip_suffix('*') {
                Some("") => "true".to_string(),
                Some(prefix) => format!("{}.startsWith({})", field(NRA, "path"), lit(prefix)),
                None => format!("{} == {}", field(NRA, "path"), lit(u)),
            })
            .collect();
        if !urls.iter().any(|u| u == "true") {
            parts.push(format!("({})", urls.join(" || ")));
        }
    } else {
        return None;
    }
    Some(format!("({})", parts.join(" && ")))
}

/// The matchConditions: never the exempt identities, and only requests
/// within a refused duty of an opted-in policy. `None` when no policy opts in.
pub fn match_conditions(index: &Index) -> Option<Vec<String>> {
    let mut clauses = BTreeSet::new();
    for (_, p) in index.policies().filter(|(_, p)| p.use_time.deny) {
        for (i, d) in p.duties.iter().enumerate() {
            if !p.use_time.refused.get(i).copied().unwrap_or(false) {
                continue;
            }
            clauses.extend(
                p.permissions[d.permissions.clone()]
                    .iter()
                    .filter_map(permission_cel),
            );
        }
    }
    if clauses.is_empty() {
        return None;
    }
    let clauses: Vec<String> = clauses.into_iter().collect();
    Some(vec![
        format!("!(request.user in {})", list(&EXEMPT_USERS)),
        format!(
            "!has(request.groups) || !request.groups.exists(g, g in {})",
            list(&EXEMPT_GROUPS)
        ),
        clauses.join(" || "),
    ])
}
