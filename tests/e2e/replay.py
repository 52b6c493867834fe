#!/usr/bin/env python3
"""Scenario 7 of the e2e suite: every SoDTestCase of ../shared/scenarios replayed
against the live API server, through sodguard's webhook, with the real kubectl.

For each case:
  * its `objects` are written as the cluster state with the admin credentials
    (system:masters: the webhook is bypassed), Namespaces first; then we wait
    until sodguard's watchers have shown every write (its watch metrics);
  * a case with a `request`: the request is made with kubectl as
    `request.userInfo.username` (CREATE: `kubectl create -f`, UPDATE:
    `kubectl replace -f`, DELETE: `kubectl delete -f`, `dryRun`:
    `--dry-run=server`); allowed/denied is compared with `expect.allowed`, and
    the violations kubectl shows (denial lines, `Warning: ... (Warn)` lines)
    with `expect.violations` (policies that only Audit are not shown by kubectl
    and are left out of the comparison). When the API server itself refuses
    the request before the webhook (e.g. the CRD schema), the same request is
    also sent to the webhook directly, whose decision must match as well;
  * a case without a request states V(S): the case's state is written without
    its SoDPolicies, then each policy is created with `--dry-run=server` as
    `alice` with `validationActions: [Warn]` — sodguard reports the violations
    a new policy already has, one `Warning:` per violation — and that set must
    equal `expect.violations`. Then the policies are created for real and
    the audit's `sodguard_audit_violations{policy,action}` gauge must reach the
    expected count (each violation counts under every action of its policy).
  * a case with `now` has the timestamps of its SoDExceptions moved by
    (real now - case now): sodguard judges a live cluster at the real time;
  * afterwards every object of the case (and the request's object) is deleted,
    except Namespaces (no namespace controller here: they would stay
    Terminating), and we wait for sodguard to see the deletions.

Prints one `ok  7 replay NAME ...` / `FAIL 7 replay NAME: why` line per case;
exit 0 when all pass.
"""

import argparse
import copy
import datetime as dt
import glob
import json
import os
import ssl
import sys
import tempfile
import time
import urllib.request
import uuid

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from e2elib import (KINDS, WEBHOOK_DENIAL, Api, Sodguard, check_line, collection_path,
                    fmt_violations, kubectl, object_path, parse_violations, resource_of,
                    violation_tuple)

ORDER = ["Namespace", "SoDPolicy", "AccessGrantPolicy", "ClusterRole", "Role", "ServiceAccount",
         "Secret", "RoleBinding", "ClusterRoleBinding", "SoDException", "AccessGrant",
         "ClusterAccessGrant"]
# Kinds whose approvals and reviews carry timestamps the webhook compares with its clock.
TIMED = ("SoDException", "AccessGrant", "ClusterAccessGrant")


def parse_time(s):
    return dt.datetime.fromisoformat(str(s).replace("Z", "+00:00"))


def fmt_time(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rebase_times(obj, delta):
    """Moves the timestamps of an SoDException or a grant by `delta`."""
    if not isinstance(obj, dict) or obj.get("kind") not in TIMED:
        return
    spec = obj.get("spec") or {}
    for k in ("expiresAt", "notBefore"):
        if spec.get(k):
            spec[k] = fmt_time(parse_time(spec[k]) + delta)
    for a in (spec.get("approvals") or []) + [spec.get("review") or {}]:
        if a.get("at"):
            a["at"] = fmt_time(parse_time(a["at"]) + delta)


def same_object(a, b):
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    return (a.get("kind"), ma.get("namespace"), ma.get("name")) == \
        (b.get("kind"), mb.get("namespace"), mb.get("name"))


def is_token_request(request):
    """A TokenRequest: a CREATE on the subresource serviceaccounts/token."""
    obj = request.get("object") or {}
    return request.get("subResource") == "token" or obj.get("kind") == "TokenRequest"


def token_request_args(request):
    """`kubectl create token` for the case's TokenRequest, field by field."""
    obj = request.get("object") or {}
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ns = request.get("namespace") or meta.get("namespace") or "default"
    args = ["create", "token", request.get("name") or meta.get("name"), "-n", ns]
    if spec.get("expirationSeconds") is not None:
        args += ["--duration", f"{int(spec['expirationSeconds'])}s"]
    for a in spec.get("audiences") or []:
        args += ["--audience", a]
    ref = spec.get("boundObjectRef")
    if ref:
        args += ["--bound-object-kind", ref["kind"], "--bound-object-name", ref["name"]]
        if ref.get("uid"):
            args += ["--bound-object-uid", ref["uid"]]
    return args


def shown_actions(policy):
    actions = (policy.get("spec") or {}).get("validationActions") or ["Deny"]
    return "Deny" in actions or "Warn" in actions


class Replay:
    def __init__(self, args):
        self.args = args
        self.api = Api(args.cluster_dir)
        self.sg = Sodguard(args.probe_url)
        self.kubeconfig = os.path.join(args.cluster_dir, "kubeconfig")
        self.tmp = tempfile.mkdtemp(prefix="replay-", dir=args.cluster_dir)

    # -------------------------------------------------------------- state --

    def write(self, obj, writes):
        """Creates obj as admin (replacing a leftover); records the write time."""
        coll = collection_path(obj)
        t0 = time.monotonic()
        st, body = self.api.request("POST", coll, obj)
        if st == 409 and obj["kind"] == "Namespace":
            return  # namespaces stay; an existing one is fine
        if st == 409:  # a leftover of an earlier run: replace it
            self.delete(obj, writes)
            t0 = time.monotonic()
            st, body = self.api.request("POST", coll, obj)
        if st not in (200, 201):
            raise RuntimeError(f"state: creating {obj['kind']} {obj['metadata'].get('name')} "
                               f"failed: HTTP {st}: {msg(body)}")
        writes[resource_of(obj)] = t0

    def delete(self, obj, writes):
        t0 = time.monotonic()
        st, body = self.api.request("DELETE", object_path(obj))
        if st in (200, 202):
            writes[resource_of(obj)] = t0
            # Wait until it is really gone (finalizers would keep it).
            for _ in range(100):
                st2, _ = self.api.request("GET", object_path(obj))
                if st2 == 404:
                    break
                time.sleep(0.05)
        elif st != 404:
            raise RuntimeError(f"cleanup: deleting {obj['kind']} {obj['metadata'].get('name')} "
                               f"failed: HTTP {st}: {msg(body)}")

    def wipe_crs(self):
        """No sodguard object may be left from earlier scenarios."""
        writes = {}
        for kind in ("AccessGrant", "ClusterAccessGrant", "SoDException", "AccessGrantPolicy",
                     "SoDPolicy"):
            prefix, plural, _ = KINDS[kind]
            st, body = self.api.request("GET", f"{prefix}/{plural}")
            if st != 200:
                raise RuntimeError(f"listing {plural}: HTTP {st}")
            for item in body.get("items") or []:
                meta = {k: item["metadata"][k] for k in ("name", "namespace") if k in item["metadata"]}
                self.delete({"kind": kind, "metadata": meta}, writes)
        self.sg.wait_events(writes)

    def token_request_setup(self, request, pods):
        """What a TokenRequest needs to get past the API server's own checks,
        so that it is sodguard that decides: the requesting user may create
        tokens of that one ServiceAccount (RBAC objects, returned to be written
        as state), and a Pod the token is bound to exists (written here, its
        real uid put into the request; `pods` collects it for the cleanup)."""
        ns, sa = request.get("namespace"), request.get("name")
        obj = request.get("object") or {}
        ns = ns or (obj.get("metadata") or {}).get("namespace") or "default"
        sa = sa or (obj.get("metadata") or {}).get("name")
        ref = (obj.get("spec") or {}).get("boundObjectRef")
        if ref and ref.get("kind") == "Pod":
            path = f"/api/v1/namespaces/{ns}/pods"
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": ref["name"], "namespace": ns},
                   "spec": {"serviceAccountName": sa, "automountServiceAccountToken": False,
                            "containers": [{"name": "c", "image": "none"}]}}
            self.api.request("DELETE", f"{path}/{ref['name']}", query="gracePeriodSeconds=0")
            for _ in range(100):  # an unscheduled Pod goes at once; wait for it
                if self.api.request("GET", f"{path}/{ref['name']}")[0] == 404:
                    break
                time.sleep(0.05)
            st, body = self.api.request("POST", path, pod)
            if st not in (200, 201):
                raise RuntimeError(f"creating the bound Pod {ref['name']}: HTTP {st}: {msg(body)}")
            pods.append(f"{path}/{ref['name']}")
            ref["uid"] = body["metadata"]["uid"]
        user = (request.get("userInfo") or {}).get("username") or "alice"
        if user in ("alice", "bob"):  # cluster-admin already
            return []
        name = "e2e-replay-token-requester"
        label = {"e2e.sodguard.io/suite": "true"}
        return [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": name, "namespace": ns, "labels": label},
             "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                        "resourceNames": [sa], "verbs": ["create"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": name, "namespace": ns, "labels": label},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
        ]

    # -------------------------------------------------------------- cases --

    def run_case(self, path, doc):
        name = doc.get("name") or os.path.basename(path)
        label = f"7 replay {name}"
        objects = copy.deepcopy(doc.get("objects") or [])
        request = copy.deepcopy(doc.get("request"))
        expect = doc.get("expect") or {}
        if doc.get("now"):
            delta = dt.datetime.now(dt.timezone.utc) - parse_time(doc["now"])
            for o in objects:
                rebase_times(o, delta)
            if request:
                rebase_times(request.get("object"), delta)
                rebase_times(request.get("oldObject"), delta)
        # A request whose object is not of its kind (R7.9) cannot come from an
        # API server, which sets request.kind itself: it is a forged review,
        # posted straight to the live webhook instead.
        forged = bool(request and request.get("kind") and
                      (request["kind"].get("kind") !=
                       (request.get("object") or request.get("oldObject") or {}).get("kind")))
        token = bool(request and not forged and is_token_request(request))
        old = (request or {}).get("oldObject")
        # An UPDATE of an object the case does not list (an approval of a
        # grant): its old object is part of the state the request finds.
        if request and not forged and request.get("operation") == "UPDATE" and old \
                and old.get("kind") in KINDS and not any(same_object(o, old) for o in objects):
            objects.append(copy.deepcopy(old))
        for o in objects:
            if o.get("kind") not in KINDS:
                return check_line(False, label, f"object kind {o.get('kind')!r} not supported")
        objects.sort(key=lambda o: ORDER.index(o["kind"]))
        policies = [o for o in objects if o["kind"] == "SoDPolicy"]
        shown = {p["metadata"]["name"] for p in policies if shown_actions(p)}
        expected = {violation_tuple(v) for v in expect.get("violations") or []
                    if v["policy"] in shown}
        req_obj = None
        if request and not forged and not token:  # a TokenRequest is not stored
            req_obj = request.get("object") or request.get("oldObject")
        created = []
        pods = []
        try:
            # Leftovers of an interrupted earlier case would change its meaning.
            pre = {}
            for o in reversed(objects + ([req_obj] if req_obj else [])):
                if o["kind"] != "Namespace":
                    self.delete(o, pre)
            self.sg.wait_events(pre)

            writes = {}
            state = objects if request else [o for o in objects if o["kind"] != "SoDPolicy"]
            for o in state:
                self.write(o, writes)
                created.append(o)
            if token:
                for o in self.token_request_setup(request, pods):
                    self.write(o, writes)
                    created.append(o)
            self.sg.wait_events(writes)

            if forged:
                ok, why = self.forged_case(request, expect)
            elif request:
                ok, why = self.request_case(request, expect, expected)
            else:
                ok, why = self.state_case(policies, expected, expect, created)
            return check_line(ok, label + ("" if not ok else f" ({why})"), why)
        except Exception as e:  # a broken step is a failed case, not a crash
            return check_line(False, label, f"{type(e).__name__}: {e}")
        finally:
            try:
                writes = {}
                if req_obj is not None and req_obj.get("kind") in KINDS \
                        and req_obj["kind"] != "Namespace":
                    self.delete(req_obj, writes)
                for o in reversed(created):
                    if o["kind"] != "Namespace":
                        self.delete(o, writes)
                for path in pods:  # not watched by sodguard: nothing to wait for
                    self.api.request("DELETE", path)
                self.sg.wait_events(writes)
            except Exception as e:
                check_line(False, f"{label} cleanup", f"{type(e).__name__}: {e}")

    def request_case(self, request, expect, expected):
        op = request.get("operation")
        user = (request.get("userInfo") or {}).get("username") or "alice"
        groups = [g for g in (request.get("userInfo") or {}).get("groups") or []
                  if g != "system:authenticated"]
        obj = request.get("object") if op != "DELETE" else request.get("oldObject")
        if obj is None:
            return False, f"{op} request without an object"
        impersonate = ["--as", user] + [a for g in groups for a in ("--as-group", g)]
        if is_token_request(request):
            if op != "CREATE" or request.get("dryRun"):
                return False, f"a TokenRequest {op}{' (dry run)' if request.get('dryRun') else ''} is not supported"
            args = token_request_args(request) + impersonate
        else:
            f = os.path.join(self.tmp, f"{uuid.uuid4().hex}.yaml")
            with open(f, "w") as fh:
                yaml.safe_dump(obj, fh)
            verb = {"CREATE": "create", "UPDATE": "replace", "DELETE": "delete"}.get(op)
            if verb is None:
                return False, f"operation {op!r} not supported"
            args = [verb, "-f", f] + impersonate
            if request.get("dryRun"):
                args.append("--dry-run=server")
        rc, out, err = kubectl(args, self.kubeconfig)
        allowed = rc == 0
        want = bool(expect.get("allowed"))
        what = f"{op} {obj['kind']} as {user}{' (dry run)' if request.get('dryRun') else ''}"
        by_webhook = WEBHOOK_DENIAL in err
        if not allowed and not by_webhook:
            # Refused before (or without) our webhook: only acceptable when a
            # denial was expected and sodguard, asked directly, denies too.
            first = err.strip().splitlines()[0] if err.strip() else f"rc={rc}"
            if want:
                return False, f"{what}: expected allowed, kubectl failed: {first}"
            direct = self.ask_webhook(request)
            if direct is None or direct.get("allowed") is not False:
                return False, (f"{what}: refused by the API server before the webhook ({first}), "
                               f"and the webhook asked directly answered {json.dumps(direct)}")
            why = first.split(" is invalid: ", 1)[-1]
            return True, (f"{what}: denied by the API server before the webhook ({why}); "
                          f"the webhook asked directly denies too: "
                          f"{(direct.get('status') or {}).get('message', '')}")
        if allowed != want:
            detail = err.strip().replace("\n", " | ")[:400] or out.strip()[:200]
            return False, (f"{what}: expected {'allowed' if want else 'denied'}, got "
                           f"{'allowed' if allowed else 'denied'}: {detail}")
        denied_v, warned_v, _ = parse_violations(err)
        seen = denied_v | warned_v
        if seen != expected:
            return False, (f"{what}: {'allowed' if allowed else 'denied'} as expected, but kubectl "
                           f"shows violations {fmt_violations(seen)}; expected "
                           f"{fmt_violations(expected)}")
        v = f", violations {fmt_violations(seen)}" if seen else ""
        if not allowed and not seen:  # say why, so a denial for another reason shows
            v = ": " + err.split(WEBHOOK_DENIAL, 1)[-1].lstrip(": ").splitlines()[0][:160]
        return True, f"{what}: {'allowed' if allowed else 'denied'} as expected{v}"

    def forged_case(self, request, expect):
        """A review no API server sends (R7.9), posted to the live webhook."""
        direct = self.ask_webhook(request)
        want = bool(expect.get("allowed"))
        what = (f"forged {request.get('operation')} of a "
                f"{(request.get('object') or request.get('oldObject') or {}).get('kind')} "
                f"as {request['kind'].get('kind')}, posted to /validate")
        if direct is None or "allowed" not in direct:
            return False, f"{what}: no answer: {json.dumps(direct)}"
        if direct["allowed"] != want:
            return False, f"{what}: expected allowed={want}, got {json.dumps(direct)[:300]}"
        m = (direct.get("status") or {}).get("message", "")
        if expect.get("message") and expect["message"] not in m:
            return False, f"{what}: the message lacks {expect['message']!r}: {m[:300]}"
        return True, f"{what}: {'allowed' if want else 'denied'} as expected ({m[:120]})"

    def ask_webhook(self, request):
        """Sends the case's request straight to sodguard's /validate."""
        o = request.get("object") or request.get("oldObject") or {}
        api_version = o.get("apiVersion", "v1")
        group, version = api_version.split("/", 1) if "/" in api_version else ("", api_version)
        review = {
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": request.get("kind") or {"group": group, "version": version,
                                                "kind": o.get("kind", "")},
                "operation": request.get("operation"),
                "userInfo": request.get("userInfo") or {},
                "object": request.get("object"),
                "oldObject": request.get("oldObject"),
                "dryRun": bool(request.get("dryRun")),
            },
        }
        for field in ("resource", "subResource", "name", "namespace"):
            if request.get(field) is not None:
                review["request"][field] = request[field]
        ctx = ssl.create_default_context(cafile=os.path.join(self.args.cluster_dir, "pki", "ca.crt"))
        req = urllib.request.Request(self.args.webhook_url, data=json.dumps(review).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return json.loads(r.read()).get("response")
        except Exception as e:
            return {"error": str(e)}

    def state_case(self, policies, expected, expect, created):
        if not policies:
            return False, "a case without a request needs an SoDPolicy in its objects"
        seen = set()
        for p in policies:
            warn = copy.deepcopy(p)
            warn.setdefault("spec", {})["validationActions"] = ["Warn"]
            f = os.path.join(self.tmp, f"{uuid.uuid4().hex}.yaml")
            with open(f, "w") as fh:
                yaml.safe_dump(warn, fh)
            rc, out, err = kubectl(["create", "-f", f, "--as", "alice", "--dry-run=server"],
                                   self.kubeconfig)
            if rc != 0:
                return False, (f"dry-run creation of SoDPolicy {p['metadata']['name']} was refused: "
                               f"{err.strip()[:300]}")
            _, warned, _ = parse_violations(err)
            seen |= warned
        # The Warn copies report every violation, whatever the real actions.
        want_all = {violation_tuple(v) for v in expect.get("violations") or []}
        if seen != want_all:
            return False, (f"a dry-run policy creation on this state reports "
                           f"{fmt_violations(seen)}; expected {fmt_violations(want_all)}")
        # Now the real policies, and sodguard's own evaluation of the whole state.
        writes = {}
        for p in policies:
            self.write(p, writes)
            created.append(p)
        self.sg.wait_events(writes)
        want_counts = {p["metadata"]["name"]: 0 for p in policies}
        for v in expect.get("violations") or []:
            want_counts[v["policy"]] = want_counts.get(v["policy"], 0) + 1
        deadline = time.monotonic() + 8
        while True:
            gauge = self.sg.metric("sodguard_audit_violations")
            got = {}
            for labels, val in gauge.items():
                for name in want_counts:
                    if f'policy="{name}"' in labels:
                        got[name] = max(got.get(name, 0), int(val))
            if got == want_counts:
                break
            if time.monotonic() > deadline:
                return False, (f"violations reported as expected ({fmt_violations(seen)}), but "
                               f"sodguard_audit_violations is {got}, expected {want_counts}")
            time.sleep(0.25)
        return True, f"V(S): {fmt_violations(seen)}, by policy dry-run and gauge"


def msg(body):
    if isinstance(body, dict):
        return body.get("message") or json.dumps(body)[:300]
    return str(body)[:300]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster-dir", required=True)
    ap.add_argument("--probe-url", required=True, help="sodguard's probe address, http://127.0.0.1:PORT")
    ap.add_argument("--webhook-url", required=True, help="https://127.0.0.1:PORT/validate")
    ap.add_argument("--scenarios", required=True, help="folder of SoDTestCase files")
    ap.add_argument("--only", default="", help="run only cases whose file name contains this")
    ap.add_argument("--pending", default="", help="tests/pending-scenarios.txt: file names skipped here "
                    "(the engine tier checks that they still fail)")
    args = ap.parse_args()
    pending = set()
    if args.pending:
        with open(args.pending) as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line:
                    pending.add(line.split()[0])

    files = sorted(glob.glob(os.path.join(args.scenarios, "*.yaml")) +
                   glob.glob(os.path.join(args.scenarios, "*.yml")))
    files = [f for f in files if args.only in os.path.basename(f)]
    skipped = [f for f in files if os.path.basename(f) in pending]
    files = [f for f in files if os.path.basename(f) not in pending]
    if skipped:
        print(f"7 replay: {len(skipped)} pending scenario(s) skipped (tests/pending-scenarios.txt)", flush=True)
    if not files:
        check_line(False, "7 replay", f"no SoDTestCase files in {args.scenarios}")
        return 1
    r = Replay(args)
    try:
        r.wipe_crs()
    except Exception as e:
        check_line(False, "7 replay setup", f"{type(e).__name__}: {e}")
        return 1
    failed = 0
    for f in files:
        try:
            with open(f) as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d]
        except yaml.YAMLError as e:
            check_line(False, f"7 replay {os.path.basename(f)}", f"unreadable: {e}")
            failed += 1
            continue
        for d in docs:
            if d.get("kind") != "SoDTestCase":
                continue
            if not r.run_case(f, d):
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
