//! Who decides: replicas elect a leader through a `coordination.k8s.io`
//! Lease (kube-lease-manager runs the election), and only the leader decides,
//! so two halves of a conflict sent to two replicas are decided one after the
//! other on one state.
//!
//! The holder identity is `IDENTITY@PEER-ADDRESS`: followers learn from the
//! Lease itself where to forward. The "am I leader" signal is a watch channel
//! ([`Leadership::subscribe`]) for anything else that must run on one
//! replica only.
//!
//! The election crate keeps saying "leader" while it cannot reach the API
//! server, so the leader's own right to decide is judged from the Lease as
//! last seen: it decides only until `renewTime + duration - grace/2` by its
//! own clock (it wrote `renewTime` with that clock). A follower takes over
//! only after `renewTime + duration` by its clock, so two replicas never
//! decide at once as long as the clocks differ by less than grace/2.
//!
//! Deciding at once is not enough: the new leader must also see what the old
//! one admitted last, and it learns that from its watch, which lags. So a
//! replica that has just been elected decides only from grace/2 after the
//! election said so (by its own clock: no skew involved), whether the Lease
//! expired or was released by a leader shutting down; and a leader that is
//! shutting down stops deciding before it gives the Lease up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

/// The part of the Lease the roles are judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub duration: Option<SignedDuration>,
}

impl LeaseView {
    fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        LeaseView {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renew_time: spec
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0)
                .or_else(|| spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0)),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .map(|s| SignedDuration::from_secs(i64::from(s))),
        }
    }

    /// When the holder's claim ends (None: no valid claim).
    fn expiry(&self) -> Option<Timestamp> {
        self.renew_time?.checked_add(self.duration?).ok()
    }
}

/// What this replica does with a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Holds the Lease, within its safe window: decides.
    Leader,
    /// Another replica holds an unexpired Lease: forward to `address`.
    Follower { leader: String, address: String },
    /// No valid holder known (none yet, expired, or our own claim running
    /// out): answer 503 and let the API server apply the failurePolicy.
    Unknown,
}

/// The holder identity written into the Lease.
pub fn holder_identity(identity: &str, peer_address: &str) -> String {
    format!("{identity}@{peer_address}")
}

/// The role, from the Lease as last seen, since when the election has said
/// we hold the Lease (None: it does not), and the time. Pure, so that the
/// safety rule is tested on its own.
pub fn role(
    view: Option<&LeaseView>,
    me: &str,
    elected_since: Option<Timestamp>,
    now: Timestamp,
    grace: SignedDuration,
) -> Role {
    let Some(view) = view else {
        return Role::Unknown;
    };
    let (Some(holder), Some(expiry)) = (view.holder.as_deref(), view.expiry()) else {
        return Role::Unknown;
    };
    if holder == me {
        let safe_until = expiry.checked_sub(grace / 2).unwrap_or(expiry);
        // The previous leader's last admissions may not have reached our
        // watch yet: give them grace/2 (a time that cannot be computed
        // counts as not yet).
        let settled = elected_since
            .and_then(|since| since.checked_add(grace / 2).ok())
            .is_some_and(|from| now >= from);
        return if settled && now < safe_until {
            Role::Leader
        } else {
            Role::Unknown
        };
    }
    if now >= expiry {
        return Role::Unknown;
    }
    match holder.rsplit_once('@') {
        Some((leader, address)) if !leader.is_empty() && !address.is_empty() => Role::Follower {
            leader: leader.to_string(),
            address: address.to_string(),
        },
        _ => Role::Unknown,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("leader election: {0}")]
pub struct ElectionError(#[from] kube_lease_manager::LeaseManagerError);

pub struct Leadership {
    me: String,
    grace: SignedDuration,
    view: watch::Receiver<Option<LeaseView>>,
    elected: watch::Receiver<Option<Timestamp>>,
    leader: watch::Sender<bool>,
    /// Set when shutting down: this replica never decides again.
    stepped_down: AtomicBool,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    pub fn identity(&self) -> &str {
        &self.me
    }

    /// The role now (cheap: read on every request).
    pub fn role(&self) -> Role {
        let elected = if self.stepped_down.load(Ordering::Acquire) {
            None
        } else {
            *self.elected.borrow()
        };
        role(
            self.view.borrow().as_ref(),
            &self.me,
            elected,
            Timestamp::now(),
            self.grace,
        )
    }

    /// `true` when this replica may decide a request now; asked again under
    /// the decision lock, so that a request accepted while leading is not
    /// decided once the lead is lost.
    pub fn may_decide(&self) -> bool {
        self.role() == Role::Leader
    }

    /// Stops deciding for good (requests then answer 503, so the API server
    /// and the followers fail closed); the Lease is kept until
    /// [`Elector::release`].
    pub fn step_down(&self) {
        if !self.stepped_down.swap(true, Ordering::AcqRel) {
            tracing::info!("shutting down: no longer deciding");
        }
    }

    /// `true` while this replica is the leader, by the same rule as
    /// [`Leadership::role`], re-evaluated at least every 250 ms.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }
}

/// Leader election settings, complete and consistent.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    pub lease_duration_secs: u64,
    pub lease_grace_secs: u64,
    pub identity: String,
    pub peer_listen: SocketAddr,
    pub peer_address: String,
    pub peer_server_name: String,
    pub peer_ca: PathBuf,
    /// The client pair; None: the serving pair.
    pub peer_client: Option<(PathBuf, PathBuf)>,
    pub forward_timeout: Duration,
}

#[cfg(test)]
impl Leadership {
    /// A Leadership that sees `lease` and `elected_since` for ever.
    pub(crate) fn fixed(
        me: &str,
        elected_since: Option<Timestamp>,
        lease: LeaseView,
        grace: SignedDuration,
    ) -> Self {
        Leadership {
            me: me.to_string(),
            grace,
            view: watch::channel(Some(lease)).1,
            elected: watch::channel(elected_since).1,
            leader: watch::channel(false).0,
            stepped_down: AtomicBool::new(false),
        }
    }
}

/// The running election: [`Leadership`] and what stops it.
pub struct Elector {
    pub leadership: Arc<Leadership>,
    stop: watch::Sender<bool>,
    campaign: tokio::task::JoinHandle<()>,
}

impl Elector {
    /// Stops deciding, waits for a decision under way (`barrier` takes the
    /// decision lock), then stops campaigning and gives the Lease up, so that
    /// a follower takes over without waiting for the Lease to expire (it
    /// still waits grace/2 before deciding). Called after the servers have
    /// finished their in-flight requests.
    pub async fn release(self, within: Duration, barrier: impl FnOnce() + Send + 'static) {
        self.leadership.step_down();
        // Every decision re-checks the role under the lock: once the lock has
        // been taken after stepping down, no decision of ours can follow.
        let _ = tokio::task::spawn_blocking(barrier).await;
        let _ = self.stop.send(true);
        if tokio::time::timeout(within, self.campaign).await.is_err() {
            tracing::warn!("the Lease was not released in time; it will expire");
        }
    }
}

/// Watches the Lease at once (a follower can forward before this replica is
/// ready) and starts campaigning once `ready` says the index is complete, so
/// that a replica still loading never takes the lead.
pub fn start(
    client: Client,
    settings: &Election,
    ready: impl Fn() -> bool + Send + 'static,
) -> Elector {
    let me = holder_identity(&settings.identity, &settings.peer_address);
    let (view_tx, view_rx) = watch::channel(None);
    let (elected_tx, elected_rx) = watch::channel(None);
    let (leader_tx, _) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    tokio::spawn(watch_lease(
        api,
        settings.lease_name.clone(),
        view_tx,
        stop_rx.clone(),
    ));
    let leadership = Arc::new(Leadership {
        me: me.clone(),
        grace: SignedDuration::from_secs(settings.lease_grace_secs as i64),
        view: view_rx,
        elected: elected_rx,
        leader: leader_tx,
        stepped_down: AtomicBool::new(false),
    });
    tokio::spawn(publish(leadership.clone(), stop_rx.clone()));
    let campaign = tokio::spawn(campaign(
        client,
        settings.clone(),
        me,
        elected_tx,
        stop_rx,
        ready,
    ));
    Elector {
        leadership,
        stop: stop_tx,
        campaign,
    }
}

async fn watch_lease(
    api: Api<Lease>,
    name: String,
    tx: watch::Sender<Option<LeaseView>>,
    mut stop: watch::Receiver<bool>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed = false;
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => tracing::warn!(error = %e, "watching the Lease"),
            Some(Ok(watcher::Event::Init)) => listed = false,
            Some(Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l))) => {
                listed = true;
                let view = LeaseView::from_lease(&l);
                tx.send_if_modified(|v| {
                    let changed = v.as_ref() != Some(&view);
                    *v = Some(view);
                    changed
                });
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if !listed {
                    let _ = tx.send(None);
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                let _ = tx.send(None);
            }
        }
    }
}

/// Keeps the reusable "am I leader" channel and the log in step with the
/// role; the time-based end of a claim is noticed by the tick.
async fn publish(leadership: Arc<Leadership>, mut stop: watch::Receiver<bool>) {
    let mut view = leadership.view.clone();
    let mut elected = leadership.elected.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        let role = leadership.role();
        if last.as_ref() != Some(&role) {
            match &role {
                Role::Leader => {
                    tracing::info!(identity = %leadership.me, "leading: deciding every request")
                }
                Role::Follower { leader, address } => {
                    tracing::info!(%leader, %address, "following: forwarding to the leader")
                }
                Role::Unknown => tracing::warn!("no leader known: answering 503"),
            }
            leadership.leader.send_if_modified(|l| {
                std::mem::replace(l, role == Role::Leader) != (role == Role::Leader)
            });
            last = Some(role);
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                leadership.leader.send_replace(false);
                return;
            }
            _ = view.changed() => {}
            _ = elected.changed() => {}
            _ = tick.tick() => {}
        }
    }
}

async fn campaign(
    client: Client,
    settings: Election,
    me: String,
    elected: watch::Sender<Option<Timestamp>>,
    mut stop: watch::Receiver<bool>,
    ready: impl Fn() -> bool,
) {
    while !ready() {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let manager = loop {
        let built =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
                .with_namespace(&settings.namespace)
                .with_identity(&me)
                .with_duration(settings.lease_duration_secs)
                .with_grace(settings.lease_grace_secs)
                .build()
                .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %ElectionError(e), "cannot set up the Lease; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    tracing::info!(identity = %me, lease = %settings.lease_name, namespace = %settings.namespace, "campaigning for the Lease");
    let (mut rx, task) = manager.watch().await;
    loop {
        let now_elected = *rx.borrow_and_update();
        // Keep the time of the first "elected": a repeated one changes nothing.
        elected.send_if_modified(|since| match (now_elected, since.is_some()) {
            (true, false) => {
                *since = Some(Timestamp::now());
                true
            }
            (false, true) => {
                *since = None;
                true
            }
            _ => false,
        });
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    elected.send_replace(None);
    // Dropping the last receiver makes the manager give the Lease up.
    drop(rx);
    match task.await {
        Ok(Ok(_)) => tracing::info!("Lease released"),
        Ok(Err(e)) => tracing::warn!(error = %ElectionError(e), "giving the Lease up"),
        Err(e) => tracing::warn!(error = %e, "the election task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: &str, renewed: Timestamp) -> LeaseView {
        LeaseView {
            holder: Some(holder.to_string()),
            renew_time: Some(renewed),
            duration: Some(SignedDuration::from_secs(15)),
        }
    }

    const GRACE: SignedDuration = SignedDuration::from_secs(6);

    #[test]
    fn the_leader_stops_deciding_before_a_follower_may_take_over() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        let me = holder_identity("a", "10.0.0.1:8444");
        let v = view(&me, t0);
        // Elected long ago (the grace/2 after acquiring is past).
        let elected = Some(at(-60));
        assert_eq!(role(Some(&v), &me, elected, at(1), GRACE), Role::Leader);
        assert_eq!(role(Some(&v), &me, elected, at(11), GRACE), Role::Leader);
        // Not renewed (the API server is unreachable): stop 3 s before expiry,
        // even though the election task still says "leader".
        assert_eq!(role(Some(&v), &me, elected, at(12), GRACE), Role::Unknown);
        // Elected but the Lease does not show us yet: not leader.
        assert_eq!(role(None, &me, elected, at(1), GRACE), Role::Unknown);
        // The Lease shows us but the election says no (released): not leader.
        assert_eq!(role(Some(&v), &me, None, at(1), GRACE), Role::Unknown);
        // A follower forwards until the Lease expires by its clock, and only
        // then (after the leader stopped) may take over.
        let other = holder_identity("b", "10.0.0.2:8444");
        let f = role(Some(&v), &other, None, at(14), GRACE);
        assert_eq!(
            f,
            Role::Follower {
                leader: "a".into(),
                address: "10.0.0.1:8444".into()
            }
        );
        assert_eq!(role(Some(&v), &other, None, at(15), GRACE), Role::Unknown);
        // IPv6 addresses keep their colons; a holder without an address is unusable.
        let v6 = view("a@[fd00::1]:8444", t0);
        assert_eq!(
            role(Some(&v6), &other, None, at(1), GRACE),
            Role::Follower {
                leader: "a".into(),
                address: "[fd00::1]:8444".into()
            }
        );
        let bare = view("some-other-tool", t0);
        assert_eq!(role(Some(&bare), &other, None, at(1), GRACE), Role::Unknown);
        let free = LeaseView {
            holder: None,
            renew_time: None,
            duration: None,
        };
        assert_eq!(role(Some(&free), &other, None, at(1), GRACE), Role::Unknown);
    }

    /// A rolling restart: the old leader admits one half of a conflict and
    /// releases the Lease at once; the replica that takes it must not decide
    /// the other half before its watch can show the first.
    #[test]
    fn a_new_leader_waits_grace_half_after_being_elected() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |ms: i64| t0 + SignedDuration::from_millis(ms);
        let me = holder_identity("b", "10.0.0.2:8444");
        // Acquired at t0 (renewTime = acquireTime = t0), elected at t0.
        let v = view(&me, t0);
        for ms in [0, 1, 1_000, 2_999] {
            assert_eq!(
                role(Some(&v), &me, Some(t0), at(ms), GRACE),
                Role::Unknown,
                "{ms} ms after being elected"
            );
        }
        assert_eq!(
            role(Some(&v), &me, Some(t0), at(3_000), GRACE),
            Role::Leader
        );
        // The delay counts from the election's word by our clock, not from
        // the Lease's times (written maybe by another clock, or long ago by
        // a previous process with our identity).
        let old = view(&me, at(-60_000));
        let renewed = LeaseView {
            renew_time: Some(t0),
            ..old
        };
        assert_eq!(
            role(Some(&renewed), &me, Some(at(1_000)), at(2_000), GRACE),
            Role::Unknown
        );
        assert_eq!(
            role(Some(&renewed), &me, Some(at(1_000)), at(4_000), GRACE),
            Role::Leader
        );
        // A leader whose lease is about to run out is not made a leader by
        // an old election either.
        assert_eq!(
            role(Some(&v), &me, Some(at(-60_000)), at(12_000), GRACE),
            Role::Unknown
        );
    }

    fn leadership(elected_since: Option<Timestamp>, lease: LeaseView) -> Leadership {
        let me = lease.holder.clone().unwrap_or_default();
        Leadership::fixed(&me, elected_since, lease, GRACE)
    }

    /// Shutting down, the leader stops deciding before anything else
    /// (before its in-flight requests end and before the Lease is given up).
    #[test]
    fn a_leader_that_steps_down_no_longer_decides() {
        let now = Timestamp::now();
        let me = holder_identity("a", "10.0.0.1:8444");
        let l = leadership(Some(now - SignedDuration::from_secs(60)), view(&me, now));
        assert_eq!(l.role(), Role::Leader);
        assert!(l.may_decide());
        l.step_down();
        assert_eq!(l.role(), Role::Unknown);
        assert!(!l.may_decide());
        // Just elected: not deciding yet.
        let l = leadership(Some(now), view(&me, now));
        assert!(!l.may_decide());
    }
}
