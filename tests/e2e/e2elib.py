"""Helpers shared by the Python parts of the e2e suite (replay.py, load.py).

Only the standard library and PyYAML. Talks to the test bed's API server with
the admin client certificate (system:masters: the webhook is bypassed), reads
sodguard's /metrics, and runs the real kubectl.
"""

import http.client
import json
import os
import re
import ssl
import subprocess
import time
import urllib.request

SKEW_WARNING = "exceeds the supported minor version skew"


def check_line(ok, name, why=""):
    """One line per check, in the suite's format."""
    if ok:
        print(f"ok  {name}", flush=True)
    else:
        why = " ".join(str(why).split())  # one line
        print(f"FAIL {name}: {why}", flush=True)
    return ok


def read_env(cluster_dir):
    env = {}
    with open(os.path.join(cluster_dir, "env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


class Api:
    """A small client of the API server: admin certificate, optional impersonation."""

    def __init__(self, cluster_dir, impersonate=None, timeout=30):
        env = read_env(cluster_dir)
        url = env["APISERVER_URL"]
        m = re.match(r"https://([^:/]+):(\d+)$", url)
        if not m:
            raise ValueError(f"unexpected APISERVER_URL {url!r}")
        self.host, self.port = m.group(1), int(m.group(2))
        pki = os.path.join(cluster_dir, "pki")
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.ctx = ctx
        self.impersonate = impersonate
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.ctx, timeout=self.timeout
        )

    def request(self, method, path, body=None, query=""):
        """Returns (status, parsed JSON or text). One retry on a dropped keep-alive connection."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.impersonate:
            headers["Impersonate-User"] = self.impersonate
        url = path + (("?" + query) if query else "")
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, url, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self.close()
                if attempt == 1:
                    raise
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return resp.status, payload

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


# kind -> (API prefix, plural, namespaced). The plural is also the label of
# sodguard's per-resource watch metrics.
KINDS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "SoDPolicy": ("/apis/sodguard.io/v1alpha1", "sodpolicies", False),
    "SoDException": ("/apis/sodguard.io/v1alpha1", "sodexceptions", False),
    "AccessGrantPolicy": ("/apis/sodguard.io/v1alpha1", "accessgrantpolicies", False),
    "AccessGrant": ("/apis/sodguard.io/v1alpha1", "accessgrants", True),
    "ClusterAccessGrant": ("/apis/sodguard.io/v1alpha1", "clusteraccessgrants", False),
}


def collection_path(obj):
    kind = obj.get("kind")
    if kind not in KINDS:
        raise KeyError(f"kind {kind!r} is not supported by the replay")
    prefix, plural, namespaced = KINDS[kind]
    if namespaced:
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        return f"{prefix}/namespaces/{ns}/{plural}"
    return f"{prefix}/{plural}"


def object_path(obj):
    return collection_path(obj) + "/" + obj["metadata"]["name"]


def resource_of(obj):
    return KINDS[obj["kind"]][1]


class Sodguard:
    """sodguard's probe endpoint: readiness and metrics."""

    def __init__(self, probe_url):
        self.probe_url = probe_url.rstrip("/")

    def metrics_text(self):
        with urllib.request.urlopen(self.probe_url + "/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        """{label-string: value} of one metric family (e.g. 'sodguard_audit_violations')."""
        out = {}
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if m and m.group(1) == name:
                out[m.group(2) or ""] = float(m.group(3))
        return out

    def event_ages(self):
        ages = {}
        for labels, v in self.metric("sodguard_watch_last_event_age_seconds").items():
            m = re.search(r'resource="([^"]+)"', labels)
            if m:
                ages[m.group(1)] = v
        return ages

    def wait_events(self, writes, timeout=20.0):
        """Waits until sodguard's watcher of each resource has had an event at or
        after the monotonic time given for it (the start of the last write of that
        resource), i.e. until its index has caught up with our writes.

        `writes`: {resource plural: time.monotonic() before the last effective write}.
        """
        if not writes:
            return
        deadline = time.monotonic() + timeout
        while True:
            t = time.monotonic()
            ages = self.event_ages()
            # age is measured when the metrics are rendered (after t): an age of
            # at most t - t0 means the last event came at or after t0.
            if all(r in ages and ages[r] <= t - t0 for r, t0 in writes.items()):
                break
            if time.monotonic() > deadline:
                late = {r: ages.get(r) for r in writes}
                raise TimeoutError(f"sodguard's watch did not show our writes within {timeout}s "
                                   f"(last event ages {late})")
            time.sleep(0.05)
        # The event is counted just before it is applied to the index.
        time.sleep(0.2)


def kubectl(args, kubeconfig, timeout=60, stdin=None):
    """Runs the real kubectl; returns (rc, stdout, stderr without the skew warning)."""
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    try:
        p = subprocess.run(["kubectl", "--request-timeout=30s", *args], input=stdin,
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return 124, "", f"kubectl {' '.join(args)}: timed out after {timeout}s"
    err = "\n".join(line for line in p.stderr.splitlines() if SKEW_WARNING not in line)
    return p.returncode, p.stdout, err


WEBHOOK_DENIAL = 'admission webhook "validate.sodguard.io" denied the request'
_VIOLATION = re.compile(
    r"SoDPolicy (\S+): (\S+) would hold (.+?) (?:in namespace (\S+)|cluster-wide)( \(Warn\))?$")
_EXCUSED = re.compile(
    r"SoDPolicy (\S+): (\S+) would hold (.+?) (?:in namespace (\S+)|cluster-wide) — excused by SoDException (\S+)")


def _tuple(m):
    ns = m.group(4) if m.group(4) is not None else "*"
    duties = tuple(sorted(d.strip() for d in m.group(3).split(" + ")))
    return (m.group(1), m.group(2), ns, duties)


def parse_violations(stderr):
    """The violations kubectl shows: denial lines and `Warning: ... (Warn)` lines.
    Returns (denied, warned, excused) as sets of (policy, subject, namespace, duties)."""
    denied, warned, excused = set(), set(), set()
    for line in stderr.splitlines():
        line = line.strip()
        is_warning = line.startswith("Warning: ")
        body = line[len("Warning: "):] if is_warning else line
        # kubectl puts the first line of the denial after the error prefix.
        if not is_warning and "SoDPolicy " in body:
            body = body[body.index("SoDPolicy "):]
        e = _EXCUSED.search(body)
        if e:
            excused.add(_tuple(e))
            continue
        m = _VIOLATION.match(body)
        if not m:
            continue
        if is_warning and m.group(5):
            warned.add(_tuple(m))
        elif not is_warning:
            denied.add(_tuple(m))
    return denied, warned, excused


def violation_tuple(v):
    return (v["policy"], v["subject"], v.get("namespace", "*"), tuple(sorted(v["duties"])))


def fmt_violations(vs):
    if not vs:
        return "none"
    return "; ".join(f"{p} {s} {ns} [{'+'.join(d)}]" for p, s, ns, d in sorted(vs))
