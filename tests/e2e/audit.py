"""Scenario 16: the review-time audit (issue 11, R11) on a real API server.

Two sodguard replicas with leader election and the audit on run against the
test bed; the webhook is not registered (so every change below is drift the
webhook never saw). Checks, one line each:

- a violation under an `Audit` policy appears in the namespace's OpenReports
  Report and in the policy's status within 10 s;
- the report and the status are not rewritten while nothing changes (their
  resourceVersions stay, the audit counts no write) even though the audit runs;
- the violation leaves the report and the status within 10 s of the binding's
  deletion;
- an exception turns `Active`, then `Expired` at its expiry, with a Warning
  event;
- a long-lived token Secret older than the policy's `credentials.maxAge`
  becomes a `stale-token` finding;
- only the leader writes; after the leader is SIGKILLed the other replica
  takes over within the lease duration and audits.

  audit.py --cluster-dir DIR --lease-seconds N --replica NAME,PROBE-URL,PID --replica ...

Standard library only (and e2elib).
"""

import argparse
import datetime
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import Api, Sodguard, check_line  # noqa: E402

NS = "e2e-s16"
POLICY = "e2e-s16-audit"
LABEL = "e2e.sodguard.io/suite"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
SOD = "/apis/sodguard.io/v1alpha1"
REPORTS = f"/apis/openreports.io/v1alpha1/namespaces/{NS}/reports"


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name, ns=None):
    m = {"name": name, "labels": {LABEL: "true"}}
    if ns:
        m["namespace"] = ns
    return m


class Replica:
    def __init__(self, spec):
        name, url, pid = spec.split(",")
        self.name, self.sg, self.pid = name, Sodguard(url), int(pid)

    def leads(self):
        try:
            return self.sg.metric("sodguard_leader").get("", 0) == 1
        except OSError:
            return False

    def writes(self):
        try:
            return sum(self.sg.metric("sodguard_audit_writes_total").values())
        except OSError:
            return None


def wait(pred, timeout, step=0.2):
    """(value, seconds) of the first truthy pred() within timeout, else (None, timeout)."""
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None, timeout
        time.sleep(step)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster-dir", required=True)
    ap.add_argument("--lease-seconds", type=float, required=True)
    ap.add_argument("--replica", action="append", required=True)
    a = ap.parse_args()
    api = Api(a.cluster_dir)
    replicas = [Replica(r) for r in a.replica]

    def create(path, obj):
        st, body = api.request("POST", path, obj)
        if st not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: {st} {body}")

    def get(path):
        st, body = api.request("GET", path)
        return body if st == 200 else None

    def delete(path):
        api.request("DELETE", path)

    # --- setup: drift the webhook never saw.
    create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(NS)})
    create(f"/api/v1/namespaces/{NS}/serviceaccounts",
           {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("api", NS)})
    for name, verbs in (("writer", ["create", "update"]), ("reader", ["get", "list"])):
        create(f"{RBAC}/namespaces/{NS}/roles",
               {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name, NS),
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]})
    create(f"{SOD}/sodpolicies", {
        "apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": meta(POLICY),
        "spec": {"validationActions": ["Audit"],
                 "subjects": {"namespaces": [NS]},
                 "credentials": {"maxAge": "20s"},
                 "duties": [
                     {"name": "admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"],
                                                        "verbs": ["create", "update"]}]},
                     {"name": "use", "permissions": [{"apiGroups": [""], "resources": ["secrets"],
                                                      "verbs": ["get", "list"]}]}]}})

    def binding(name, role):
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name, NS),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "api", "namespace": NS}]}

    create(f"{RBAC}/namespaces/{NS}/rolebindings", binding("api-writes", "writer"))
    # A long-lived token for api, made now: stale 20 s later (R8.3).
    create(f"/api/v1/namespaces/{NS}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {**meta("api-token", NS), "annotations": {"kubernetes.io/service-account.name": "api"}}})
    token_made = time.monotonic()

    def results(**want):
        rep = get(f"{REPORTS}/sodguard")
        if not rep:
            return []
        return [r for r in rep.get("results", [])
                if r.get("policy") == POLICY and all(r.get(k) == v for k, v in want.items())]

    def violation_results(result):
        return [r for r in results(rule="duties", result=result)
                if any(x.get("name") == "api" for x in r.get("resources", []))]

    def policy_status():
        p = get(f"{SOD}/sodpolicies/{POLICY}") or {}
        return p.get("status") or {}

    # --- 1. a violation under Audit appears within 10 s.
    create(f"{RBAC}/namespaces/{NS}/rolebindings", binding("api-reads", "reader"))
    found, took = wait(lambda: violation_results("warn") and policy_status().get("violations") == 1, 20)
    check_line(found and took <= 10,
               f"16 a violation under an Audit policy is in the namespace's Report and the policy's status "
               f"within 10 s ({took:.1f} s)", f"report results {results()}, status {policy_status()}")
    st = policy_status()
    ready = [c for c in st.get("conditions", []) if c.get("type") == "Ready"]
    check_line(ready and ready[0].get("status") == "True" and st.get("violationsByAction", {}).get("Audit") == 1
               and st.get("observedGeneration") == 1,
               "16 the policy's status: Ready, violationsByAction {Audit: 1}, observedGeneration", st)

    # --- 2. nothing changes: no write.
    leader = next((r for r in replicas if r.leads()), None)
    if not check_line(leader is not None, "16 one replica leads", [r.leads() for r in replicas]):
        return 1
    follower = next(r for r in replicas if r is not leader)
    # The violations gauge is the audit's: the leader exports the counts, a
    # follower none (and -1 for the age of an audit it never ran), so a
    # dashboard that sums over replicas counts each violation once.
    lv = leader.sg.metric("sodguard_audit_violations")
    fv = follower.sg.metric("sodguard_audit_violations")
    fage = follower.sg.metric("sodguard_audit_last_success_age_seconds").get("", None)
    check_line(sum(lv.values()) >= 1 and not fv and fage == -1,
               "16 the leader exports the audit's violations gauge, the follower none (age -1)",
               f"leader {lv}, follower {fv}, follower age {fage}")
    rep_rv = (get(f"{REPORTS}/sodguard") or {}).get("metadata", {}).get("resourceVersion")
    pol_rv = (get(f"{SOD}/sodpolicies/{POLICY}") or {}).get("metadata", {}).get("resourceVersion")
    writes0 = leader.writes()
    # A change the audit sees (a new ServiceAccount) makes it run; nothing it
    # writes changes.
    create(f"/api/v1/namespaces/{NS}/serviceaccounts",
           {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("bystander", NS)})
    time.sleep(6)
    rep_rv2 = (get(f"{REPORTS}/sodguard") or {}).get("metadata", {}).get("resourceVersion")
    pol_rv2 = (get(f"{SOD}/sodpolicies/{POLICY}") or {}).get("metadata", {}).get("resourceVersion")
    runs = leader.sg.metric("sodguard_audit_duration_seconds_count").get("", 0)
    check_line(rep_rv == rep_rv2 and pol_rv == pol_rv2 and leader.writes() == writes0,
               f"16 audits of an unchanged state write nothing (report and policy resourceVersion kept; "
               f"{runs:.0f} audits so far)",
               f"report rv {rep_rv}->{rep_rv2}, policy rv {pol_rv}->{pol_rv2}, writes {writes0}->{leader.writes()}")

    # --- 3. the binding goes: so does the violation.
    delete(f"{RBAC}/namespaces/{NS}/rolebindings/api-reads")
    gone, took = wait(lambda: not violation_results("warn") and policy_status().get("violations") == 0, 20)
    check_line(gone and took <= 10,
               f"16 the violation leaves the report and the status within 10 s of the binding's deletion "
               f"({took:.1f} s)", f"report results {results()}, status {policy_status()}")

    # --- 4. an exception expires.
    create(f"{RBAC}/namespaces/{NS}/rolebindings", binding("api-reads", "reader"))
    now = time.time()
    expires = float(int(now) + 15)  # whole seconds, as expiresAt is written
    create(f"{SOD}/sodexceptions", {
        "apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException", "metadata": meta("e2e-s16-x"),
        "spec": {"policy": POLICY, "subject": {"kind": "ServiceAccount", "namespace": NS, "name": "api"},
                 "justification": "e2e", "requestedBy": "alice", "expiresAt": iso(expires),
                 "approvals": [{"user": "bob", "at": iso(now)}]}})

    def phase():
        x = get(f"{SOD}/sodexceptions/e2e-s16-x") or {}
        return (x.get("status") or {}).get("phase")

    active, _ = wait(lambda: phase() == "Active" and results(rule="duties", result="skip"), 12)
    check_line(active, "16 the exception is Active and the violation a skip result naming it",
               f"phase {phase()}, results {results()}")
    expired, _ = wait(lambda: phase() == "Expired", max(0, expires - time.time()) + 10)
    late = time.time() - expires
    check_line(expired, f"16 the exception's phase turns Expired at its expiry ({late:.1f} s after)",
               f"phase {phase()}")

    def expiry_event():
        evs = get(f"/api/v1/namespaces/{NS}/events") or {}
        return [e for e in evs.get("items", []) if e.get("reason") == "SoDExceptionExpired"
                and (e.get("involvedObject") or {}).get("name") == "api"]

    ev, _ = wait(expiry_event, 10)
    check_line(ev, "16 a Warning event SoDExceptionExpired is recorded on the ServiceAccount",
               [e.get("reason") for e in (get(f"/api/v1/namespaces/{NS}/events") or {}).get("items", [])])
    back, _ = wait(lambda: violation_results("warn"), 10)
    check_line(back, "16 once expired, the violation is a warn result again", results())

    # --- 5. the token Secret turns stale.
    stale, _ = wait(lambda: results(rule="stale-token", result="fail"), max(0, token_made + 20 - time.monotonic()) + 15)
    check_line(stale, "16 a long-lived token Secret older than maxAge is a stale-token finding", results())

    # --- 6. only the leader writes; the other takes over.
    fw = follower.writes()
    check_line(fw == 0 and (leader.writes() or 0) > 0,
               f"16 only the leader writes (leader {leader.writes():.0f} writes, follower {fw})", "")
    os.kill(leader.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    took_over, took = wait(follower.leads, a.lease_seconds * 2 + 10)
    check_line(took_over and took <= a.lease_seconds * 1.5 + 2,
               f"16 after the leader is killed the other replica leads within the lease duration "
               f"({took:.1f} s, lease {a.lease_seconds:.0f} s)", "")
    delete(f"{RBAC}/namespaces/{NS}/rolebindings/api-reads")
    gone, took = wait(lambda: not violation_results("warn"), 20)
    check_line(gone and took <= 10 and (follower.writes() or 0) > 0,
               f"16 the new leader audits: the deleted binding's violation leaves the report in {took:.1f} s "
               f"({time.monotonic() - t_kill:.1f} s after the kill)", results())
    return 0


if __name__ == "__main__":
    sys.exit(main())
