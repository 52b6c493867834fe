#!/usr/bin/env python3
"""Scenario 9 of the e2e suite: RoleBinding creates through the API server from
parallel clients, with sodguard's webhook in the path and then without it.

Each client is one keep-alive HTTPS connection to the API server with the admin
client certificate and `Impersonate-User: alice` (so the webhook's match
conditions let the request through, as for a real user); per-request latency
is the time of one POST. kubectl is not used here: its process start (~150 ms)
would hide what the webhook adds.

Steps: state (namespace, ServiceAccount, Role, a Deny SoDPolicy) as admin;
20 warm-up creates; N creates with the webhook (sodguard's request counter
must grow by N); the ValidatingWebhookConfiguration is deleted and we wait
until the API server no longer calls it; N creates without it (the counter
must not move); the configuration is registered again as it was. Prints one
`ok`/`FAIL` line per check and the latency comparison.
"""

import argparse
import json
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from e2elib import Api, Sodguard, check_line

VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
PROBE_POLICY = {  # valid for the CRD schema, invalid for sodguard: duplicate duty names
    "apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
    "metadata": {"name": "e2e-load-probe"},
    "spec": {"duties": [
        {"name": "a", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"name": "a", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
    ]},
}


def webhook_active(alice):
    st, body = alice.request("POST", "/apis/sodguard.io/v1alpha1/sodpolicies", PROBE_POLICY,
                             query="dryRun=All")
    if st == 403 and "validate.sodguard.io" in json.dumps(body):
        return True
    if st in (200, 201):
        return False
    raise RuntimeError(f"probe: unexpected HTTP {st}: {json.dumps(body)[:300]}")


def wait_webhook(alice, active, timeout=30):
    deadline = time.monotonic() + timeout
    while webhook_active(alice) != active:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API server did not {'start' if active else 'stop'} "
                               f"calling the webhook within {timeout}s")
        time.sleep(0.1)


def decided(sg):
    return sum(v for labels, v in sg.metric("sodguard_admission_requests_total").items()
               if 'kind="RoleBinding"' in labels)


def run(cluster_dir, ns, prefix, count, clients):
    """`count` creates split over `clients` threads; returns (latencies s, failures, wall s)."""
    lat, failures = [], []
    lock = threading.Lock()

    def worker(idx):
        api = Api(cluster_dir, impersonate="alice")
        mine = []
        try:
            for i in range(idx, count, clients):
                rb = {
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": f"{prefix}-{i:04d}", "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                "name": "load-configmap-reader"},
                    "subjects": [{"kind": "ServiceAccount", "name": "load", "namespace": ns}],
                }
                t = time.perf_counter()
                try:
                    st, body = api.request(
                        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", rb)
                except Exception as e:  # counted, not fatal
                    st, body = 0, str(e)
                d = time.perf_counter() - t
                if st == 201:
                    mine.append(d)
                else:
                    with lock:
                        failures.append(f"{rb['metadata']['name']}: HTTP {st} "
                                        f"{(body.get('message') if isinstance(body, dict) else body)}"[:200])
        finally:
            api.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return lat, failures, time.perf_counter() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(lat, wall):
    return {"n": len(lat), "mean": statistics.mean(lat) * 1000, "p50": pct(lat, 50) * 1000,
            "p95": pct(lat, 95) * 1000, "max": max(lat) * 1000, "wall": wall, "rps": len(lat) / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster-dir", required=True)
    ap.add_argument("--probe-url", required=True)
    ap.add_argument("--namespace", default="e2e-load")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    ns, n, c = args.namespace, args.count, args.clients
    admin = Api(args.cluster_dir)
    alice = Api(args.cluster_dir, impersonate="alice")
    sg = Sodguard(args.probe_url)
    failed = 0

    def check(ok, name, why=""):
        nonlocal failed
        if not check_line(ok, name, why):
            failed += 1
        return ok

    # ---- state (as admin) and the configuration to restore afterwards
    try:
        for path, obj in [
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            (f"/api/v1/namespaces/{ns}/serviceaccounts",
             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "load", "namespace": ns}}),
            (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "load-configmap-reader", "namespace": ns},
              "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
            ("/apis/sodguard.io/v1alpha1/sodpolicies",
             {"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
              "metadata": {"name": "e2e-load-secret-admin-vs-use"},
              "spec": {"duties": [
                  {"name": "secret-admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"],
                                                            "verbs": ["create", "update", "delete"]}]},
                  {"name": "secret-use", "permissions": [{"apiGroups": [""], "resources": ["secrets"],
                                                          "verbs": ["get", "list", "watch"]}]}]}}),
        ]:
            st, body = admin.request("POST", path, obj)
            if st not in (201, 409):
                raise RuntimeError(f"creating {path}: HTTP {st}: {body}")
        st, vwc = admin.request("GET", f"{VWC}/sodguard")
        if st != 200:
            raise RuntimeError(f"the ValidatingWebhookConfiguration sodguard is not registered (HTTP {st})")
        wait_webhook(alice, True)
        admin.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings")
        time.sleep(0.5)  # sodguard's watch sees the policy and the clean namespace
    except Exception as e:
        check(False, "9 load setup", f"{type(e).__name__}: {e}")
        return 1

    # ---- with the webhook
    run(args.cluster_dir, ns, "warmup", 20, c)
    before = decided(sg)
    lat_with, fail_with, wall_with = run(args.cluster_dir, ns, "with", n, c)
    seen = decided(sg) - before
    check(len(lat_with) == n and seen >= n,
          f"9 load with the webhook: {len(lat_with)}/{n} RoleBinding creates from {c} clients "
          f"admitted, sodguard decided {int(seen)}",
          f"{len(lat_with)}/{n} created, sodguard decided {int(seen)}; "
          f"first failures: {fail_with[:3]}")

    # ---- without it
    restored = False
    try:
        st, body = admin.request("DELETE", f"{VWC}/sodguard")
        if st not in (200, 202):
            raise RuntimeError(f"deleting the webhook configuration: HTTP {st}: {body}")
        wait_webhook(alice, False)
        before = decided(sg)
        lat_without, fail_without, wall_without = run(args.cluster_dir, ns, "without", n, c)
        seen = decided(sg) - before
        check(len(lat_without) == n and seen == 0,
              f"9 load without the webhook: {len(lat_without)}/{n} creates, sodguard not called",
              f"{len(lat_without)}/{n} created, sodguard decided {int(seen)}; "
              f"first failures: {fail_without[:3]}")
    except Exception as e:
        check(False, "9 load without the webhook", f"{type(e).__name__}: {e}")
        lat_without = []
    finally:
        for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            vwc.get("metadata", {}).pop(k, None)
        st, body = admin.request("POST", VWC, vwc)
        restored = st in (201, 409)
        try:
            if restored:
                wait_webhook(alice, True)
        except Exception as e:
            restored = False
            body = str(e)
        check(restored, "9 load: webhook configuration registered again", f"HTTP {st}: {body}")
        admin.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings")
        admin.request("DELETE", "/apis/sodguard.io/v1alpha1/sodpolicies/e2e-load-secret-admin-vs-use")

    if lat_with and lat_without:
        w, wo = summary(lat_with, wall_with), summary(lat_without, wall_without)
        line = (f"9 load: added latency per request {w['mean'] - wo['mean']:+.1f} ms mean, "
                f"{w['p50'] - wo['p50']:+.1f} ms p50, {w['p95'] - wo['p95']:+.1f} ms p95 "
                f"(with: mean {w['mean']:.1f} p50 {w['p50']:.1f} p95 {w['p95']:.1f} max {w['max']:.1f} ms, "
                f"{w['rps']:.0f} creates/s; without: mean {wo['mean']:.1f} p50 {wo['p50']:.1f} "
                f"p95 {wo['p95']:.1f} max {wo['max']:.1f} ms, {wo['rps']:.0f} creates/s)")
        # A sanity bound only: the webhook's timeoutSeconds is 5.
        check(w["p95"] < 5000, line, "p95 with the webhook reaches its 5s timeout")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
