//! Latency of individual admission decisions, timed one by one with
//! `Instant` (criterion reports means, not tails).

use std::time::{Duration, Instant};

use sodguard::engine::index::Index;
use sodguard::engine::{self, Request};

use super::requests::bench_now;

#[derive(Debug, Clone)]
pub struct Latency {
    pub calls: usize,
    pub allowed: usize,
    pub denied: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reviews ({} allowed, {} denied): mean {:.1?} p50 {:.1?} p90 {:.1?} p99 {:.1?} p99.9 {:.1?} max {:.1?}",
            self.calls,
            self.allowed,
            self.denied,
            self.mean,
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max
        )
    }
}

/// Times `calls` individual `engine::review` calls, round-robin over `reqs`,
/// after one untimed pass to warm up.
pub fn measure_latency(index: &mut Index, reqs: &[Request], calls: usize) -> Latency {
    let now = bench_now();
    time_reviews(reqs, calls, |r| {
        engine::review_within(index, r, now, serve_budget())
    })
}

/// The same in live mode (R7.8) with something pending (see [`pend_one`]):
/// judged on the confirmed state before and the assumed state after; what
/// an admitted request adds is not kept, so that every call sees the same
/// state.
pub fn measure_latency_live(
    confirmed: &Index,
    assumed: &mut Index,
    reqs: &[Request],
    calls: usize,
) -> Latency {
    let now = bench_now();
    time_reviews(reqs, calls, |r| {
        engine::review_against(Some(confirmed), assumed, r, now, serve_budget()).0
    })
}

/// One admitted change the watch has not shown yet, as a live server holds
/// it: a namespace's RoleBinding given one more existing ServiceAccount of
/// its namespace.
pub fn pend_one(assumed: &mut Index) {
    use sodguard::model::Object;
    let found = assumed.bindings().find_map(|b| {
        let ns = b.key.namespace.as_ref()?;
        b.role.namespace.as_ref()?;
        let extra = assumed
            .service_accounts_in(ns)
            .find(|sa| !b.subjects.contains(sa))?;
        let mut b = b.clone();
        b.subjects.push(extra);
        Some(b)
    });
    let Some(a) = found.and_then(|b| engine::assumption(assumed, Object::Binding(b))) else {
        return;
    };
    let _ = assumed.apply(a.merged);
    if let Some(s) = a.shadow {
        let _ = assumed.apply(s);
    }
}

/// Decisions each right after an admitted RoleBinding to a role that opens
/// an escalation path (workloads, exec, bind …), round-robin over `reqs`:
/// such an admission renews the state's epoch, so the decision after it
/// gathers the cluster-wide actors again (`ClusterActors`, kept once per
/// state otherwise). The admission and its undo are not timed. `None` when
/// `reqs` holds no admitted escalating binding.
pub fn measure_after_escalation(
    index: &mut Index,
    reqs: &[Request],
    calls: usize,
) -> Option<Latency> {
    let now = bench_now();
    let escalating: Vec<&Request> = reqs.iter().filter(|r| escalating_role(index, r)).collect();
    let mut admitted = 0;
    let mut k = 0;
    let lat = time_parts(reqs, calls, |r| {
        // One admitted escalating binding before each timed decision.
        let mut undo = None;
        for _ in 0..escalating.len() {
            let e = escalating[k % escalating.len()];
            k += 1;
            // Another binding: the same one again would be judged as an
            // update of the admitted one.
            if name(e) == name(r) {
                continue;
            }
            if let (review, Some(u)) = engine::review_and_apply(index, e, now) {
                if review.allowed {
                    undo = Some(u);
                    break;
                }
                index.undo(u);
            }
        }
        admitted += usize::from(undo.is_some());
        let t = Instant::now();
        let review = engine::review_within(index, r, now, serve_budget());
        let dt = t.elapsed();
        if let Some(u) = undo {
            index.undo(u);
        }
        (review, dt)
    });
    (admitted > 0).then_some(lat)
}

/// The namespace and name of the object `r` carries.
fn name(r: &Request) -> Option<(&serde_json::Value, &serde_json::Value)> {
    let o = r.object.as_ref()?;
    Some((
        o.pointer("/metadata/namespace")?,
        o.pointer("/metadata/name")?,
    ))
}

/// Whether `r` binds a role that opens an escalation path.
fn escalating_role(index: &Index, r: &Request) -> bool {
    let Some(o) = r.object.as_ref() else {
        return false;
    };
    let field = |p: &str| o.pointer(p).and_then(|v| v.as_str());
    let (Some(name), Some(kind)) = (field("/roleRef/name"), field("/roleRef/kind")) else {
        return false;
    };
    let namespace = (kind == "Role")
        .then(|| field("/metadata/namespace"))
        .flatten()
        .map(Into::into);
    index.role_derives(&sodguard::model::RoleKey {
        namespace,
        name: name.into(),
    })
}

/// `sodguard serve`'s default decision budget (--decision-budget,
/// --decision-max-violations): what a decision may do in production.
pub fn serve_budget() -> engine::Budget {
    engine::Budget {
        violations: 1000,
        time: Some(Duration::from_secs(2)),
    }
}

/// With `SYNTH_RANK=N`, the N requests whose fastest decision was slowest
/// are named on stderr after each timed mix: the fastest of many runs of one
/// request moves little with a shared machine's noise, so this ranks what
/// makes the tail when whole-mix percentiles move by 2× between runs.
fn rank() -> usize {
    std::env::var("SYNTH_RANK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A decision slower than this is named on stderr: 50 ms, or
/// `SYNTH_SLOW_US` microseconds (to see which requests make the tail).
fn slow() -> Duration {
    std::env::var("SYNTH_SLOW_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(50), Duration::from_micros)
}

/// The binding a request creates: name, namespace, subjects and role.
fn describe(r: &Request) -> String {
    let o = r.object.as_ref();
    let field = |p: &str| {
        o.and_then(|o| o.pointer(p))
            .map_or_else(String::new, ToString::to_string)
    };
    format!(
        "{} {}/{}: {} -> {} {}",
        field("/kind"),
        field("/metadata/namespace"),
        field("/metadata/name"),
        field("/subjects"),
        field("/roleRef/kind"),
        field("/roleRef/name"),
    )
}

fn time_reviews(
    reqs: &[Request],
    calls: usize,
    mut review: impl FnMut(&Request) -> engine::Review,
) -> Latency {
    time_parts(reqs, calls, |r| {
        let t = Instant::now();
        let review = review(r);
        (review, t.elapsed())
    })
}

/// [`time_reviews`] of calls that time the part that counts themselves.
fn time_parts(
    reqs: &[Request],
    calls: usize,
    mut review: impl FnMut(&Request) -> (engine::Review, Duration),
) -> Latency {
    for r in reqs {
        std::hint::black_box(review(r));
    }
    let slow = slow();
    let mut times = Vec::with_capacity(calls);
    let mut fastest = vec![Duration::MAX; reqs.len()];
    let (mut allowed, mut denied) = (0, 0);
    for i in 0..calls {
        let r = &reqs[i % reqs.len()];
        let (review, dt) = review(r);
        times.push(dt);
        let f = &mut fastest[i % reqs.len()];
        *f = (*f).min(dt);
        if dt > slow && i < reqs.len() {
            // Once per request: which ones are slow matters more than how often.
            eprintln!(
                "slow:     {dt:.1?} for {} (allowed: {}, refused: {:?}, {} new violation(s))",
                describe(r),
                review.allowed,
                review.refusal.as_ref().map(|x| x.to_string()),
                review.violations.len()
            );
        }
        if review.allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
        std::hint::black_box(review);
    }
    let mut ranked: Vec<(Duration, &Request)> = fastest
        .into_iter()
        .zip(reqs)
        .filter(|(d, _)| *d < Duration::MAX)
        .collect();
    ranked.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
    for (d, r) in ranked.into_iter().take(rank()) {
        eprintln!("rank:     fastest {d:.1?} for {}", describe(r));
    }
    let total: Duration = times.iter().sum();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Latency {
        calls,
        allowed,
        denied,
        mean: total / calls.max(1) as u32,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: *times.last().unwrap_or(&Duration::ZERO),
    }
}
