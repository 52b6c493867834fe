//! `kubectl sod grant request|approve|review|revoke` and `kubectl sod
//! exception approve|review`: requests, approvals and reviews written as the
//! current user (asked of the API server with a SelfSubjectReview) at the
//! current time, so nobody types a user name or a timestamp. The webhook
//! checks both anyway (R6.4); this only makes the right thing the easy one.

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};

use super::{CliError, EXIT_OK, Source};
use crate::crd::{AccessGrant, ClusterAccessGrant, SoDException};
use crate::model::Identity;

#[derive(Debug, clap::Subcommand)]
pub enum GrantCommand {
    /// Ask for a role for a while (requestedBy is you).
    Request(RequestArgs),
    /// Approve a grant as yourself, now.
    Approve(Target),
    /// Review a used break-glass grant as yourself, now.
    Review(ReviewArgs),
    /// End a grant: deleting it deletes its binding.
    Revoke(Target),
}

#[derive(Debug, clap::Subcommand)]
pub enum ExceptionCommand {
    /// Approve an SoDException as yourself, now.
    Approve(Target),
    /// Review a break-glass SoDException as yourself, now.
    Review(ReviewArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    pub name: String,
    /// The grant's namespace (an AccessGrant); without it, a
    /// ClusterAccessGrant. Ignored for exceptions (cluster-scoped).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub who: As,
}

/// kubectl's impersonation flags. kubectl hands a plugin its arguments
/// untouched (and refuses flags before the plugin's name), so `kubectl sod
/// grant approve g --as bob` must be understood here: the approval is then
/// bob's, as the API server sees bob.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct As {
    /// Act as this user (impersonation; your kubeconfig's user must be allowed to).
    #[arg(long = "as", value_name = "USER")]
    pub user: Option<String>,
    /// Act with this group too (repeatable; needs --as).
    #[arg(long = "as-group", value_name = "GROUP", requires = "user")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub target: Target,
    /// Accepted or Rejected.
    #[arg(long)]
    pub outcome: String,
    #[arg(long, default_value = "")]
    pub notes: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub target: Target,
    /// ServiceAccount:NAMESPACE:NAME, User:NAME or Group:NAME.
    #[arg(long)]
    pub subject: String,
    /// Role/NAME (of the namespace) or ClusterRole/NAME.
    #[arg(long)]
    pub role: String,
    /// How long, like 2h.
    #[arg(long)]
    pub duration: String,
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub ticket: Option<String>,
    /// Emergency access: active at once, reviewed afterwards.
    #[arg(long)]
    pub break_glass: bool,
}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::Request(e.to_string())
}

async fn connect(t: &Target) -> Result<Client, CliError> {
    let who = crate::cluster::Impersonation {
        user: t.who.user.clone(),
        groups: t.who.groups.clone(),
    };
    Ok(crate::cluster::client_as(
        t.source.kubeconfig.as_deref(),
        t.source.context.as_deref(),
        &who,
    )
    .await?)
}

/// The current user, as the API server authenticates them.
async fn whoami(client: &Client) -> Result<String, CliError> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let r = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| err(format!("cannot tell who you are (SelfSubjectReview): {e}")))?;
    r.status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| err("the API server did not say who you are"))
}

/// The object of a new grant.
pub fn grant_object(a: &RequestArgs, user: &str) -> Result<Value, String> {
    let subject: Identity = a.subject.parse().map_err(|e| format!("--subject: {e}"))?;
    let subject = match &subject {
        Identity::ServiceAccount { namespace, name } => {
            json!({"kind": "ServiceAccount", "namespace": namespace.to_string(), "name": name.to_string()})
        }
        Identity::User(n) => json!({"kind": "User", "name": n.to_string()}),
        Identity::Group(n) => json!({"kind": "Group", "name": n.to_string()}),
    };
    let (kind, role) = a
        .role
        .split_once('/')
        .filter(|(k, n)| matches!(*k, "Role" | "ClusterRole") && !n.is_empty())
        .ok_or("--role: write Role/NAME or ClusterRole/NAME")?;
    let mut spec = json!({
        "subject": subject,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "duration": a.duration, "reason": a.reason, "requestedBy": user,
        "breakGlass": a.break_glass,
    });
    if let Some(t) = &a.ticket {
        spec["ticket"] = json!(t);
    }
    let mut metadata = json!({"name": a.target.name});
    let kind = match &a.target.namespace {
        Some(ns) => {
            metadata["namespace"] = json!(ns);
            "AccessGrant"
        }
        None => "ClusterAccessGrant",
    };
    Ok(
        json!({"apiVersion": crate::crd::API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}),
    )
}

/// Appends the approval of `user` at `now` (R6.4: append-only, by the user
/// themself, at the time of the request).
pub fn with_approval(obj: &mut Value, user: &str, now: Timestamp) -> Result<(), String> {
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or("the object has no spec")?;
    let approvals = spec.entry("approvals").or_insert_with(|| json!([]));
    let list = approvals
        .as_array_mut()
        .ok_or("spec.approvals is not a list")?;
    if list
        .iter()
        .any(|a| a.get("user").and_then(Value::as_str) == Some(user))
    {
        return Err(format!("{user} has already approved it"));
    }
    list.push(json!({"user": user, "at": now.to_string()}));
    Ok(())
}

/// Writes the review of `user` at `now`.
pub fn with_review(
    obj: &mut Value,
    user: &str,
    now: Timestamp,
    outcome: &str,
    notes: &str,
) -> Result<(), String> {
    if !matches!(outcome, "Accepted" | "Rejected") {
        return Err(format!(
            "--outcome must be Accepted or Rejected, not {outcome:?}"
        ));
    }
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or("the object has no spec")?;
    if spec.get("review").is_some_and(|r| !r.is_null()) {
        return Err("it has been reviewed already".into());
    }
    spec.insert(
        "review".into(),
        json!({"user": user, "at": now.to_string(), "outcome": outcome, "notes": notes}),
    );
    Ok(())
}

fn grant_api(client: &Client, t: &Target) -> Api<DynamicObject> {
    match &t.namespace {
        Some(ns) => {
            let ar = ApiResource::erase::<AccessGrant>(&());
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        None => {
            let ar = ApiResource::erase::<ClusterAccessGrant>(&());
            Api::all_with(client.clone(), &ar)
        }
    }
}

fn exception_api(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::erase::<SoDException>(&());
    Api::all_with(client.clone(), &ar)
}

/// Reads, changes and replaces one object: the replace carries the
/// resourceVersion read, so a concurrent change makes it fail, not vanish.
/// On such a conflict (most often the grant controller writing the status
/// between our read and our replace) it reads again and makes the change
/// again on what it read, checked anew (an approval already there is not
/// added twice).
async fn edit(
    api: &Api<DynamicObject>,
    name: &str,
    change: impl Fn(&mut Value) -> Result<(), String>,
) -> Result<(), CliError> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let obj = api
            .get(name)
            .await
            .map_err(|e| err(format!("{name}: {e}")))?;
        let mut v = serde_json::to_value(&obj).map_err(err)?;
        change(&mut v).map_err(|e| err(format!("{name}: {e}")))?;
        let obj: DynamicObject = serde_json::from_value(v).map_err(err)?;
        match api.replace(name, &PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < ATTEMPTS => {}
            Err(e) => return Err(err(format!("{name}: {e}"))),
        }
    }
    unreachable_conflict(name)
}

/// The loop above returns on its last attempt; this keeps it panic-free.
fn unreachable_conflict(name: &str) -> Result<(), CliError> {
    Err(err(format!("{name}: changed by others on every attempt")))
}

fn block_on<F: std::future::Future<Output = Result<(), CliError>>>(f: F) -> Result<u8, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(f)?;
    Ok(EXIT_OK)
}

pub fn run_grant(c: &GrantCommand) -> Result<u8, CliError> {
    block_on(async {
        match c {
            GrantCommand::Request(a) => {
                let client = connect(&a.target).await?;
                let user = whoami(&client).await?;
                let obj: DynamicObject =
                    serde_json::from_value(grant_object(a, &user).map_err(err)?).map_err(err)?;
                grant_api(&client, &a.target)
                    .create(&PostParams::default(), &obj)
                    .await
                    .map_err(|e| err(format!("{}: {e}", a.target.name)))?;
                println!("requested {} as {user}", a.target.name);
            }
            GrantCommand::Approve(t) => {
                let client = connect(t).await?;
                let user = whoami(&client).await?;
                edit(&grant_api(&client, t), &t.name, |v| {
                    with_approval(v, &user, Timestamp::now())
                })
                .await?;
                println!("approved {} as {user}", t.name);
            }
            GrantCommand::Review(r) => {
                let client = connect(&r.target).await?;
                let user = whoami(&client).await?;
                edit(&grant_api(&client, &r.target), &r.target.name, |v| {
                    with_review(v, &user, Timestamp::now(), &r.outcome, &r.notes)
                })
                .await?;
                println!("reviewed {} as {user}", r.target.name);
            }
            GrantCommand::Revoke(t) => {
                let client = connect(t).await?;
                grant_api(&client, t)
                    .delete(&t.name, &DeleteParams::default())
                    .await
                    .map_err(|e| err(format!("{}: {e}", t.name)))?;
                println!("revoked {}", t.name);
            }
        }
        Ok(())
    })
}

pub fn run_exception(c: &ExceptionCommand) -> Result<u8, CliError> {
    block_on(async {
        match c {
            ExceptionCommand::Approve(t) => {
                let client = connect(t).await?;
                let user = whoami(&client).await?;
                edit(&exception_api(&client), &t.name, |v| {
                    with_approval(v, &user, Timestamp::now())
                })
                .await?;
                println!("approved {} as {user}", t.name);
            }
            ExceptionCommand::Review(r) => {
                let client = connect(&r.target).await?;
                let user = whoami(&client).await?;
                edit(&exception_api(&client), &r.target.name, |v| {
                    with_review(v, &user, Timestamp::now(), &r.outcome, &r.notes)
                })
                .await?;
                println!("reviewed {} as {user}", r.target.name);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_are_appended_as_the_user_now_and_once() {
        let mut v = json!({"spec": {"requestedBy": "alice"}});
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        with_approval(&mut v, "bob", now).unwrap();
        with_approval(&mut v, "carol", now).unwrap();
        assert_eq!(
            v["spec"]["approvals"],
            json!([{"user": "bob", "at": "2026-11-28T12:00:00Z"}, {"user": "carol", "at": "2026-11-28T12:00:00Z"}])
        );
        assert!(
            with_approval(&mut v, "bob", now)
                .unwrap_err()
                .contains("already approved")
        );
    }

    #[test]
    fn a_review_is_written_once_with_a_known_outcome() {
        let mut v = json!({"spec": {}});
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        assert!(with_review(&mut v, "bob", now, "Fine", "").is_err());
        with_review(&mut v, "bob", now, "Accepted", "ok").unwrap();
        assert_eq!(v["spec"]["review"]["user"], "bob");
        assert!(with_review(&mut v, "bob", now, "Accepted", "").is_err());
    }

    #[test]
    fn a_requested_grant_is_one_the_crd_reads() {
        let a = RequestArgs {
            target: Target {
                name: "g".into(),
                namespace: Some("pay".into()),
                source: Source {
                    files: vec![],
                    kubeconfig: None,
                    context: None,
                },
                who: As::default(),
            },
            subject: "ServiceAccount:pay:web".into(),
            role: "Role/reader".into(),
            duration: "2h".into(),
            reason: "r".into(),
            ticket: None,
            break_glass: false,
        };
        let v = grant_object(&a, "alice").unwrap();
        let Ok(Some(crate::model::Object::Grant(g))) = crate::decode::convert(&v) else {
            panic!("{v}")
        };
        assert_eq!(g.requested_by, "alice");
        let bad = RequestArgs {
            role: "reader".into(),
            ..a
        };
        assert!(grant_object(&bad, "alice").unwrap_err().contains("--role"));
    }
}
