"""Scenario 13: two sodguard replicas, one decision order.

Sends the two halves of a conflict (two RoleBindings that together give one
ServiceAccount both duties of a Deny policy) as AdmissionReviews at the same
moment, one to each replica, round after round, and checks that both are
never admitted; measures a decision through the leader and through the
follower; with --kill, SIGKILLs the leader and checks that the follower
answers 503 until it takes over, then decides again.

  replicas.py --ca CA --ns NS --sa-prefix P --rounds N \
      --replica NAME,WEBHOOK-PORT,PROBE-PORT,PID --replica ... [--kill] [--expect-bypass]

Standard library only. Output: one `ok  ...` / `FAIL ...` line per check.
"""

import argparse
import http.client
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import check_line  # noqa: E402


class Replica:
    def __init__(self, spec, ctx):
        name, port, probe, pid = spec.split(",")
        self.name, self.port, self.probe, self.pid = name, int(port), int(probe), int(pid)
        self.ctx = ctx
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
            self.local.conn = c
        return c

    def post(self, body):
        """(status, parsed body or None); status 0 when the connection fails."""
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                c = self.conn()
                c.request("POST", "/validate", body=data, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                raw = r.read()
                try:
                    return r.status, json.loads(raw)
                except ValueError:
                    return r.status, None
            except (OSError, http.client.HTTPException):
                self.local.conn = None
                if attempt == 2:
                    return 0, None
        return 0, None

    def readyz(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.probe}/readyz", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)


def rb(ns, name, role, sa, uid):
    obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "RoleBinding"},
            "resource": {"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "rolebindings"},
            "name": name, "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "alice"}, "object": obj,
        },
    }


def allowed(resp):
    status, body = resp
    return status == 200 and body is not None and body.get("response", {}).get("allowed") is True


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def concurrent(pairs):
    """Posts each (replica, body) in its own thread, released together."""
    out = [None] * len(pairs)
    go = threading.Barrier(len(pairs))

    def run(i, rep, body):
        go.wait()
        out[i] = rep.post(body)

    ts = [threading.Thread(target=run, args=(i, r, b)) for i, (r, b) in enumerate(pairs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def conflict_rounds(args, reps, tag, first, rounds):
    both = one = none = errors = 0
    for i in range(first, first + rounds):
        sa = f"{args.sa_prefix}{i}"
        a = rb(args.ns, f"{tag}-w-{i}", "secret-writer", sa, f"{tag}-w-{i}")
        b = rb(args.ns, f"{tag}-r-{i}", "secret-reader", sa, f"{tag}-r-{i}")
        # Alternate which half goes to which replica.
        x, y = (reps[0], reps[1]) if i % 2 else (reps[1], reps[0])
        ra, rb_ = concurrent([(x, a), (y, b)])
        if ra[0] not in (200, 503) or rb_[0] not in (200, 503):
            errors += 1
        n = allowed(ra) + allowed(rb_)
        both += n == 2
        one += n == 1
        none += n == 0
    return both, one, none, errors


def leader_and_follower(reps, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        roles = {r.name: r.readyz() for r in reps}
        leaders = [r for r in reps if roles[r.name][0] == 200 and "leader" in roles[r.name][1] and "following" not in roles[r.name][1]]
        followers = [r for r in reps if roles[r.name][0] == 200 and "following" in roles[r.name][1]]
        if len(leaders) == 1 and len(followers) == len(reps) - 1:
            return leaders[0], followers
        time.sleep(0.2)
    return None, []


def latency(rep, ns, n, tag):
    lat = []
    for i in range(n):
        body = rb(ns, f"{tag}-{i}", "secret-reader", "web", f"{tag}-{i}")
        t = time.perf_counter()
        resp = rep.post(body)
        lat.append(time.perf_counter() - t)
        if resp[0] != 200:
            return None
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca", required=True)
    ap.add_argument("--ns", required=True)
    ap.add_argument("--sa-prefix", required=True)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--replica", action="append", required=True)
    ap.add_argument("--kill", action="store_true")
    ap.add_argument("--expect-bypass", action="store_true",
                    help="replicas without leader election: show that both halves get admitted")
    ap.add_argument("--latency", type=int, default=300)
    args = ap.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    reps = [Replica(s, ctx) for s in args.replica]

    if args.expect_bypass:
        both, one, none, errors = conflict_rounds(args, reps, "nolead", 1, args.rounds)
        check_line(both > 0, "13 control: two replicas WITHOUT leader election both admit the two halves",
                   f"both admitted in {both}/{args.rounds} rounds (one: {one}, none: {none})")
        print(f"# without leader election: both admitted in {both}/{args.rounds} rounds", flush=True)
        return

    leader, followers = leader_and_follower(reps)
    if not check_line(leader is not None, "13 one replica leads, the other follows (/readyz)",
                      {r.name: r.readyz() for r in reps}):
        return
    follower = followers[0]
    print(f"# leader {leader.name}, follower {follower.name}", flush=True)

    both, one, none, errors = conflict_rounds(args, reps, "lead", 1, args.rounds)
    check_line(both == 0, f"13 {args.rounds} rounds of two conflicting halves sent at once to two replicas: never both admitted",
               f"both admitted in {both} rounds")
    check_line(one == args.rounds and errors == 0,
               f"13 each round admits exactly one half (the other is denied)",
               f"one: {one}, none: {none}, unexpected statuses: {errors}")

    lat_l = latency(leader, args.ns, args.latency, "lat-leader")
    lat_f = latency(follower, args.ns, args.latency, "lat-follower")
    if check_line(lat_l is not None and lat_f is not None, "13 latency: decisions through the leader and through the follower"):
        ms = lambda x: f"{x * 1000:.2f}"  # noqa: E731
        print(f"# latency over {args.latency} sequential requests (ms): "
              f"leader p50 {ms(pct(lat_l, 50))} p99 {ms(pct(lat_l, 99))}; "
              f"follower p50 {ms(pct(lat_f, 50))} p99 {ms(pct(lat_f, 99))}", flush=True)

    if not args.kill:
        return
    os.kill(leader.pid, signal.SIGKILL)
    t_kill = time.time()
    first = follower.post(rb(args.ns, "kill-probe-0", "secret-reader", "web", "kill-probe-0"))
    check_line(first[0] == 503, "13 leader killed: the follower answers 503 (the failurePolicy applies)",
               f"status {first[0]} {first[1]}")
    statuses, t_took = {}, None
    for i in range(1, 400):
        st, body = follower.post(rb(args.ns, f"kill-probe-{i}", "secret-reader", "web", f"kill-probe-{i}"))
        statuses[st] = statuses.get(st, 0) + 1
        if st == 200:
            t_took = time.time() - t_kill
            break
        if st not in (503,):
            break
        time.sleep(0.1)
    check_line(t_took is not None and set(statuses) <= {200, 503},
               "13 the follower answers only 503 until it takes over, then decides",
               f"statuses {statuses}")
    if t_took is not None:
        print(f"# takeover {t_took:.1f}s after SIGKILL of the leader", flush=True)
    # The survivor decides alone now: the two halves still never both pass.
    both, one, none, errors = conflict_rounds(args, [follower, follower], "after", args.rounds + 1, 5)
    check_line(both == 0 and one == 5, "13 after the takeover the new leader decides conflicts (one half of each admitted)",
               f"both {both}, one {one}, none {none}, errors {errors}")
    st, text = follower.readyz()
    check_line(st == 200 and "leader" in text, "13 the survivor reports itself the leader on /readyz", f"{st} {text}")


if __name__ == "__main__":
    main()
