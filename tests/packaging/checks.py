#!/usr/bin/env python3
"""Checks of the rendered Helm chart and of the Dockerfile, for check.sh.

Each subcommand prints one line per check, `ok  NAME` or `FAIL NAME: WHY`
(check.sh counts them), and exits 0 even when a check fails; exit 2 only on
bad usage or unreadable input.

  checks.py webhook  RENDER E2E-WEBHOOK-YAML      chart's webhooks == e2e's (but clientConfig)
  checks.py chart    VARIANT[@LABEL] RENDER NS    properties of a rendered chart
  checks.py count    FILE                         number of objects in a YAML stream
  checks.py context  ROOT OUT                     Docker build context (per .dockerignore) -> OUT
  checks.py dockerfile ROOT                       static checks of the Dockerfile
"""
import base64
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

# The fields of a webhook that must be equal in the chart and in the e2e suite.
WEBHOOK_FIELDS = ("name", "rules", "failurePolicy", "sideEffects", "timeoutSeconds",
                  "matchConditions", "admissionReviewVersions")


def ok(name):
    print(f"ok  {name}")


def fail(name, why):
    why = " ".join(str(why).split())[:700]
    print(f"FAIL {name}: {why}")


def check(cond, name, why=""):
    (ok(name) if cond else fail(name, why or "not so"))
    return cond


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    if len(found) != 1:
        raise LookupError(f"{len(found)} objects of kind {kind}, expected 1")
    return found[0]


# ----------------------------------------------------------------- webhook --

def cmd_webhook(render, e2e):
    chart = one(load(render), "ValidatingWebhookConfiguration")
    ref = one(load(e2e), "ValidatingWebhookConfiguration")
    cw = {w["name"]: w for w in chart.get("webhooks", [])}
    rw = {w["name"]: w for w in ref.get("webhooks", [])}
    check(sorted(cw) == sorted(rw), "webhook: the chart and the e2e suite register the same webhooks",
          f"chart {sorted(cw)}, e2e {sorted(rw)}")
    for name in sorted(set(cw) & set(rw)):
        for field in WEBHOOK_FIELDS:
            a, b = cw[name].get(field), rw[name].get(field)
            check(a == b, f"webhook {name}: {field} equals tests/e2e/webhook-configuration.yaml",
                  f"chart {a!r} != e2e {b!r}")


# ------------------------------------------------------------------- chart --

def rules_of(role):
    return role.get("rules", [])


def secrets_rule(role):
    return [r for r in rules_of(role) if "" in r.get("apiGroups", []) and "secrets" in r.get("resources", [])]


def cmd_chart(variant, render, ns):
    """VARIANT is the value set (defaults, all-on, all-on-helm, cert-manager,
    own-tls), optionally followed by @LABEL for the check names."""
    variant, _, label = variant.partition("@")
    docs = load(render)
    pre = f"{label or variant}:"
    try:
        dep = one(docs, "Deployment")
        role = one(docs, "ClusterRole")
        vwc = one(docs, "ValidatingWebhookConfiguration")
    except LookupError as e:
        fail(f"{pre} rendered objects", e)
        return
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    args = c.get("args", [])
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})

    # The objects every install has.
    kinds = sorted({d["kind"] for d in docs})
    for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment",
              "ValidatingWebhookConfiguration"):
        check(k in kinds, f"{pre} renders a {k}", f"kinds: {kinds}")
    for d in docs:
        meta = d.get("metadata", {})
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
                             "SoDPolicy", "Namespace"):
            if meta.get("namespace") != ns:
                fail(f"{pre} {d['kind']}/{meta.get('name')} is in namespace {ns}", meta.get("namespace"))

    # Deployment.
    if variant == "defaults":
        check(spec.get("replicas") == 2, f"{pre} 2 replicas", spec.get("replicas"))
        anti = pod.get("affinity", {}).get("podAntiAffinity", {})
        check(bool(anti.get("preferredDuringSchedulingIgnoredDuringExecution")),
              f"{pre} pod anti-affinity (preferred, per node)", anti)
        pdb = by_kind(docs, "PodDisruptionBudget")
        check(len(pdb) == 1 and pdb[0]["spec"].get("minAvailable") == 1,
              f"{pre} PodDisruptionBudget minAvailable 1", pdb)
        check("--log-format=json" in args, f"{pre} JSON logs (--log-format=json)", args)
        check("--watch-secrets=false" in args, f"{pre} --watch-secrets=false when watchSecrets is off", args)
        check(not secrets_rule(role), f"{pre} no permission on Secrets when watchSecrets is off",
              secrets_rule(role))
        check(spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") == 0,
              f"{pre} rolling update never below the replica count", spec.get("strategy"))
    if variant == "all-on":
        check("--watch-secrets=true" in args, f"{pre} --watch-secrets=true when watchSecrets is on", args)
        sr = secrets_rule(role)
        check(len(sr) == 1 and sorted(sr[0]["verbs"]) == ["get", "list", "watch"],
              f"{pre} Secrets get/list/watch only, when watchSecrets is on", sr)
    check(psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is True
          and psc.get("runAsUser") == 65532, f"{pre} runs as non-root UID 65532", (psc, sc))
    check(sc.get("readOnlyRootFilesystem") is True, f"{pre} read-only root filesystem", sc)
    check(sc.get("allowPrivilegeEscalation") is False, f"{pre} no privilege escalation", sc)
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{pre} all capabilities dropped", sc)
    check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
          and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{pre} seccomp RuntimeDefault", sc)
    res = c.get("resources", {})
    check(all(res.get(a, {}).get(b) for a in ("requests", "limits") for b in ("cpu", "memory")),
          f"{pre} resource requests and limits", res)
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    want_ports = {"webhook": 8443, "probe": 8080}
    if spec.get("replicas", 1) > 1:
        want_ports["peer"] = 8444  # leader election: forwarded requests between replicas
    check(ports == want_ports, f"{pre} ports {want_ports}", ports)
    rp, lp = c.get("readinessProbe", {}).get("httpGet", {}), c.get("livenessProbe", {}).get("httpGet", {})
    check(rp.get("path") == "/readyz" and rp.get("port") == "probe"
          and lp.get("path") == "/healthz" and lp.get("port") == "probe",
          f"{pre} readiness /readyz and liveness /healthz on the probe port", (rp, lp))
    check(f"--listen=0.0.0.0:8443" in args and "--probe-listen=0.0.0.0:8080" in args
          and "--tls-cert=/tls/tls.crt" in args and "--tls-key=/tls/tls.key" in args and args[:1] == ["serve"],
          f"{pre} serve args: listen, probe-listen, TLS files under /tls", args)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    check("/tls" in mounts and "subPath" not in mounts["/tls"],
          f"{pre} TLS Secret mounted whole at /tls (rotation without restart)", mounts)

    # RBAC: least privilege. The audit writes status, its reports and events
    # (R11), nothing else.
    audit_writes = {
        ("openreports.io", "reports"), ("openreports.io", "clusterreports"),
        ("wgpolicyk8s.io", "policyreports"), ("wgpolicyk8s.io", "clusterpolicyreports"),
    }
    bad = []
    for r in rules_of(role):
        verbs, res_ = set(r.get("verbs", [])), r.get("resources", [])
        if "*" in verbs or "*" in res_ or "*" in r.get("apiGroups", []):
            bad.append(("wildcard", r))
        writes = verbs - {"get", "list", "watch"}
        groups = r.get("apiGroups", [])
        status = writes <= {"update", "patch"} and all(x.endswith("/status") for x in res_)
        reports = writes <= {"create", "patch", "delete"} and all((g, x) in audit_writes for g in groups for x in res_)
        events = writes <= {"create", "patch"} and groups == ["events.k8s.io"] and res_ == ["events"]
        if writes and not (status or reports or events):
            bad.append(("write", r))
        if verbs & {"bind", "escalate", "impersonate"}:
            bad.append(("escalation", r))
    check(not bad, f"{pre} ClusterRole: read only, writes only on status, no wildcards", bad)
    want_read = {("rbac.authorization.k8s.io", x) for x in ("roles", "clusterroles", "rolebindings",
                                                            "clusterrolebindings")}
    want_read |= {("", "serviceaccounts"), ("", "namespaces"), ("sodguard.io", "sodpolicies"),
                  ("sodguard.io", "sodexceptions")}
    have = {(g, x) for r in rules_of(role) if {"get", "list", "watch"} <= set(r["verbs"])
            for g in r["apiGroups"] for x in r["resources"]}
    check(want_read <= have, f"{pre} ClusterRole: get/list/watch on everything sodguard watches",
          sorted(want_read - have))
    st = {(g, x) for r in rules_of(role) if {"update", "patch"} <= set(r["verbs"])
          for g in r["apiGroups"] for x in r["resources"]}
    # Nothing writes status yet (the review-time audit will): no grant for it.
    check(not st, f"{pre} ClusterRole: no update/patch at all (sodguard writes no status yet)",
          sorted(st))

    # The webhook configuration.
    w = vwc["webhooks"][0]
    sel = w.get("namespaceSelector", {}).get("matchExpressions", [])
    check(any(e.get("key") == "kubernetes.io/metadata.name" and e.get("operator") == "NotIn"
              and ns in e.get("values", []) for e in sel) and not w.get("objectSelector"),
          f"{pre} webhook excludes namespace {ns} by kubernetes.io/metadata.name only", sel)
    # One list: what the webhook never sees is what sodguard governs on sight (R7.10).
    excluded = [v for e in sel if e.get("key") == "kubernetes.io/metadata.name" and e.get("operator") == "NotIn"
                for v in e.get("values", [])]
    flag = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--excluded-namespaces=")]
    check(flag == [excluded], f"{pre} sodguard's --excluded-namespaces is the webhook's excluded namespaces",
          f"flag {flag}, webhook {excluded}")
    svc = w["clientConfig"].get("service", {})
    service = one(docs, "Service")
    check(svc.get("name") == service["metadata"]["name"] and svc.get("namespace") == ns
          and svc.get("path") == "/validate", f"{pre} webhook calls the chart's Service at /validate", svc)
    ann = vwc["metadata"].get("annotations", {})
    if variant in ("defaults", "all-on-helm"):
        secret = [d for d in by_kind(docs, "Secret") if d.get("type") == "kubernetes.io/tls"]
        if check(len(secret) == 1 and w["clientConfig"].get("caBundle"),
                 f"{pre} generated TLS Secret and caBundle", secret):
            check_tls(pre, secret[0], w["clientConfig"]["caBundle"], svc)
    if variant in ("all-on", "cert-manager"):
        certs = {d["metadata"]["name"]: d for d in by_kind(docs, "Certificate")}
        inj = ann.get("cert-manager.io/inject-ca-from", "")
        cns, _, cname = inj.partition("/")
        check(cns == ns and cname in certs, f"{pre} cert-manager.io/inject-ca-from names the serving Certificate",
              f"{inj!r}, certificates {sorted(certs)}")
        if cname in certs:
            vol = [v for v in pod.get("volumes", []) if v["name"] == "tls"]
            check(vol and vol[0]["secret"]["secretName"] == certs[cname]["spec"]["secretName"],
                  f"{pre} the Deployment mounts the Certificate's Secret", vol)
            dns = f"{svc.get('name')}.{ns}.svc"
            check(dns in certs[cname]["spec"].get("dnsNames", []), f"{pre} Certificate covers {dns}",
                  certs[cname]["spec"].get("dnsNames"))
        check("caBundle" not in w["clientConfig"], f"{pre} no static caBundle with cert-manager", w["clientConfig"])

    # Policies.
    pols = {d["metadata"]["name"]: d for d in by_kind(docs, "SoDPolicy")}
    if variant == "defaults":
        p = pols.get("secret-admin-vs-secret-use")
        if check(p is not None, f"{pre} the default policy secret-admin-vs-secret-use", sorted(pols)):
            ex = p["spec"]["subjects"]["exclude"]
            exns = {e.get("namespace") for e in ex if e.get("kind") == "ServiceAccount" and e.get("name") == "*"}
            check({"kube-system", ns} <= exns, f"{pre} default policy excludes kube-system and {ns}", ex)
            check(p["spec"].get("validationActions") == ["Deny"], f"{pre} default policy denies",
                  p["spec"].get("validationActions"))
            ann = p["metadata"].get("annotations", {})
            hooks = set(ann.get("helm.sh/hook", "").split(","))
            # Before the webhook on an install; never an upgrade hook (a
            # pre-upgrade hook is deleted and re-created by every upgrade).
            check(hooks == {"pre-install"},
                  f"{pre} policies are pre-install hooks only (exist before the webhook, no upgrade hook)", hooks)
            check(ann.get("helm.sh/resource-policy") == "keep"
                  and ann.get("meta.helm.sh/release-name") == "sodguard"
                  and ann.get("meta.helm.sh/release-namespace") == ns
                  and p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm",
                  f"{pre} policies are kept and carry Helm's ownership metadata (adopted on the first upgrade)", ann)
            same_as_example(pre, p)


def same_as_example(pre, p):
    """The chart's default policy is examples/policies/secret-admin-vs-secret-use.yaml."""
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    ex = load(os.path.join(root, "examples", "policies", "secret-admin-vs-secret-use.yaml"))[0]
    a, b = dict(p["spec"]), dict(ex["spec"])
    a["subjects"] = {k: v for k, v in a["subjects"].items() if k != "exclude"}
    b["subjects"] = {k: v for k, v in b["subjects"].items() if k != "exclude"}
    diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    check(not diff, f"{pre} default policy is examples/policies/secret-admin-vs-secret-use.yaml "
                    f"(but its exclusions)", diff)


def check_tls(pre, secret, ca_bundle, svc):
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for k, v in (("ca", ca_bundle), ("crt", secret["data"]["tls.crt"]), ("key", secret["data"]["tls.key"])):
            paths[k] = os.path.join(d, k)
            with open(paths[k], "wb") as f:
                f.write(base64.b64decode(v))
        r = subprocess.run(["openssl", "verify", "-CAfile", paths["ca"], paths["crt"]],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"{pre} the caBundle verifies the serving certificate", r.stdout + r.stderr)
        r = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", paths["crt"]],
                           capture_output=True, text=True)
        dns = f"{svc.get('name')}.{svc.get('namespace')}.svc"
        check(f"DNS:{dns}" in r.stdout, f"{pre} the serving certificate names {dns}", r.stdout + r.stderr)
        r = subprocess.run(["openssl", "x509", "-noout", "-ext", "extendedKeyUsage", "-in", paths["crt"]],
                           capture_output=True, text=True)
        check("TLS Web Client Authentication" in r.stdout,
              f"{pre} the serving certificate can also be the replicas' client certificate (clientAuth)",
              r.stdout + r.stderr)
        a = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", paths["crt"]], capture_output=True)
        b = subprocess.run(["openssl", "pkey", "-pubout", "-in", paths["key"]], capture_output=True)
        check(a.returncode == 0 and a.stdout == b.stdout, f"{pre} tls.key matches tls.crt",
              (a.stderr + b.stderr).decode(errors="replace"))


# -------------------------------------------------------------- dockerfile --

def dockerignore(root):
    try:
        with open(os.path.join(root, ".dockerignore")) as f:
            lines = [l.strip() for l in f]
    except FileNotFoundError:
        return []
    return [l for l in lines if l and not l.startswith("#")]


def ignored(rel, patterns):
    """Docker's rule: the last matching pattern wins; a pattern matches a path
    or any of its parent directories."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for p in patterns:
        neg = p.startswith("!")
        pat = os.path.normpath(p[1:] if neg else p).lstrip("/")
        if any(fnmatch.fnmatchcase(x, pat) for x in prefixes):
            result = not neg
    return result


def cmd_context(root, out):
    pats = dockerignore(root)
    n = 0
    for dp, dns, fns in os.walk(root):
        rel_dir = os.path.relpath(dp, root)
        dns[:] = [d for d in dns if d not in (".git", "target")]
        for fn in fns:
            rel = os.path.normpath(os.path.join(rel_dir, fn))
            if not ignored(rel, pats):
                dst = os.path.join(out, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(os.path.join(dp, fn), dst)
                n += 1
    print(f"# {n} files in the build context", file=sys.stderr)


def cmd_dockerfile(root):
    with open(os.path.join(root, "Dockerfile")) as f:
        text = f.read()
    logical = re.sub(r"\\\n", " ", text)
    instr = [l.strip() for l in logical.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l.split()[1] for l in instr if l.upper().startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: multi-stage", froms)
    check(all(":" in f.split("/")[-1] and not f.endswith(":latest") for f in froms),
          "Dockerfile: every base image pinned by tag", froms)
    check(bool(froms) and re.match(r"rust:1\.\d+", froms[0]) is not None, "Dockerfile: pinned Rust builder",
          froms[:1])
    check(bool(froms) and froms[-1].startswith("gcr.io/distroless/"), "Dockerfile: distroless runtime (no shell)",
          froms[-1:])
    runs = [l for l in instr if l.upper().startswith("RUN ")]
    check(any("cargo build --release --locked" in r for r in runs),
          "Dockerfile: builds with `cargo build --release --locked` (the CI's build)", runs)
    last = instr[max(i for i, l in enumerate(instr) if l.upper().startswith("FROM ")):]
    users = [l.split()[1] for l in last if l.upper().startswith("USER ")]
    check(users and re.fullmatch(r"\d+(:\d+)?", users[-1]) and not users[-1].startswith("0"),
          "Dockerfile: runtime user is a numeric non-root UID", users)
    ep = [l for l in last if l.upper().startswith("ENTRYPOINT ")]
    check(ep and ep[-1].split(None, 1)[1].lstrip().startswith("["),
          "Dockerfile: exec-form ENTRYPOINT (no shell)", ep)
    pats = dockerignore(root)
    srcs = []
    for l in instr:
        if l.upper().startswith("COPY ") and "--from=" not in l:
            words = [w for w in l.split()[1:] if not w.startswith("--")]
            srcs += words[:-1]
    missing = [s for s in srcs if not os.path.exists(os.path.join(root, s)) or ignored(os.path.normpath(s), pats)]
    check(srcs and not missing, "Dockerfile: every COPY source exists and is in the build context", missing)


def cmd_grants(default, grants, ns):
    """grants.enabled=true adds the grant controller and only that: the
    --grants flag, and one ClusterRole (bound to sodguard's ServiceAccount)
    with status patches of the grants, create/delete of bindings and bind on
    roles; the rest of the render is the default's."""
    ddocs, gdocs = load(default), load(grants)
    pre = "grants:"
    dep = one(gdocs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    args = pod["containers"][0].get("args", [])
    dargs = one(ddocs, "Deployment")["spec"]["template"]["spec"]["containers"][0].get("args", [])
    sa = pod["serviceAccountName"]
    user = f"--grant-controller-user=system:serviceaccount:{ns}:{sa}"
    check("--grants" in args and user in args, f"{pre} serve gets --grants and {user}", args)
    check("--grants" not in dargs, f"{pre} no --grants by default", dargs)
    check([a for a in args if a != "--grants"] == dargs, f"{pre} no other flag changes",
          sorted(set(args) ^ set(dargs)))
    extra = [d for d in gdocs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
             and d["metadata"]["name"].endswith("-grants")]
    check(not [d for d in ddocs if d["metadata"]["name"].endswith("-grants")],
          f"{pre} no grant RBAC by default")
    roles = [d for d in extra if d["kind"] == "ClusterRole"]
    binds = [d for d in extra if d["kind"] == "ClusterRoleBinding"]
    want = {("sodguard.io", "accessgrants/status", "patch"), ("sodguard.io", "clusteraccessgrants/status", "patch"),
            ("rbac.authorization.k8s.io", "rolebindings", "create"),
            ("rbac.authorization.k8s.io", "rolebindings", "delete"),
            ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
            ("rbac.authorization.k8s.io", "clusterrolebindings", "delete"),
            ("rbac.authorization.k8s.io", "roles", "bind"), ("rbac.authorization.k8s.io", "clusterroles", "bind")}
    have = {(g, x, v) for r in (rules_of(roles[0]) if len(roles) == 1 else [])
            for g in r.get("apiGroups", []) for x in r.get("resources", []) for v in r.get("verbs", [])}
    names = [r.get("resourceNames") for r in (rules_of(roles[0]) if len(roles) == 1 else [])]
    check(len(roles) == 1 and have == want and not any(names),
          f"{pre} one extra ClusterRole: patch grant status, create/delete bindings, bind roles; "
          f"nothing else (no escalate, update, impersonate, wildcard)", sorted(have ^ want))
    check(len(binds) == 1 and len(roles) == 1
          and binds[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": roles[0]["metadata"]["name"]}
          and binds[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
          f"{pre} bound to sodguard's ServiceAccount only", binds)

    def rest(docs):
        return sorted((yaml.safe_dump(d, sort_keys=True) for d in docs
                       if d not in extra and d["kind"] != "Deployment"
                       and d["kind"] not in ("Secret", "MutatingWebhookConfiguration",
                                             "ValidatingWebhookConfiguration")))
    check(rest(gdocs) == rest(ddocs), f"{pre} every other object is the default's (same main ClusterRole)")
    dw, gw = one(ddocs, "ValidatingWebhookConfiguration"), one(gdocs, "ValidatingWebhookConfiguration")
    strip = lambda w: [{k: v for k, v in x.items() if k != "clientConfig"} for x in w["webhooks"]]
    check(strip(dw) == strip(gw), f"{pre} the webhook is the default's (grants and serviceaccounts/token always sent)")


def cmd_count(path):
    print(len(load(path)))


def cmd_election(multi, single, client_auth, ns):
    """Leader election on with several replicas (Lease RBAC in the release
    namespace only, downward-API identity), off with one; --client-ca only
    when clientAuth is on."""
    docs = load(multi)
    dep = one(docs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c.get("args", [])
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env", [])}
    for a in ("--leader-election", "--lease-namespace=$(POD_NAMESPACE)", "--identity=$(POD_NAME)",
              "--peer-address=$(POD_IP):8444", "--peer-ca=/tls/ca.crt",
              f"--peer-server-name=sodguard.{ns}.svc"):
        check(a in args, f"election: with 2 replicas, serve gets {a}", args)
    check(env.get("POD_NAME") == "metadata.name" and env.get("POD_IP") == "status.podIP"
          and env.get("POD_NAMESPACE") == "metadata.namespace",
          "election: POD_NAME, POD_NAMESPACE, POD_IP from the downward API", env)
    roles = [d for d in by_kind(docs, "Role") if d["metadata"]["name"].endswith("-leader-election")]
    ok_role = (len(roles) == 1 and roles[0]["metadata"].get("namespace") == ns
               and all(r.get("apiGroups") == ["coordination.k8s.io"] and r.get("resources") == ["leases"]
                       for r in rules_of(roles[0])))
    check(ok_role, "election: a namespaced Role on leases only, in the release namespace", roles)
    verbs = set(v for r in rules_of(roles[0]) for v in r.get("verbs", [])) if roles else set()
    check({"get", "create", "update"} <= verbs and "delete" not in verbs and "*" not in verbs,
          "election: the Role can get/create/update leases, not delete them", sorted(verbs))
    binds = [d for d in by_kind(docs, "RoleBinding") if d["roleRef"]["name"].endswith("-leader-election")]
    check(len(binds) == 1 and binds[0]["subjects"][0]["name"] == dep["spec"]["template"]["spec"]["serviceAccountName"],
          "election: bound to sodguard's ServiceAccount", binds)
    check("--client-ca=/client-ca/ca.crt" not in args, "election: no --client-ca by default", args)

    sdocs = load(single)
    sargs = one(sdocs, "Deployment")["spec"]["template"]["spec"]["containers"][0].get("args", [])
    check("--leader-election" not in sargs and not by_kind(sdocs, "Role"),
          "election: off with replicaCount=1 (no flag, no Role)", sargs)

    cdocs = load(client_auth)
    cpod = one(cdocs, "Deployment")["spec"]["template"]["spec"]
    cargs = cpod["containers"][0].get("args", [])
    mounts = {m["mountPath"]: m["name"] for m in cpod["containers"][0].get("volumeMounts", [])}
    vols = {v["name"]: v for v in cpod.get("volumes", [])}
    cms = [d for d in by_kind(cdocs, "ConfigMap") if "ca.crt" in d.get("data", {})]
    check("--client-ca=/client-ca/ca.crt" in cargs and mounts.get("/client-ca") in vols
          and len(cms) == 1 and vols[mounts["/client-ca"]].get("configMap", {}).get("name") == cms[0]["metadata"]["name"]
          and "BEGIN CERTIFICATE" in cms[0]["data"]["ca.crt"],
          "clientAuth: --client-ca from a ConfigMap of the given CA, mounted at /client-ca", (cargs, mounts, cms))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    table = {"webhook": (cmd_webhook, 2), "chart": (cmd_chart, 3), "count": (cmd_count, 1),
             "context": (cmd_context, 2), "dockerfile": (cmd_dockerfile, 1),
             "election": (cmd_election, 4), "grants": (cmd_grants, 3)}
    if cmd not in table or len(args) != table[cmd][1]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        table[cmd][0](*args)
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as e:
        fail(f"{cmd} {' '.join(args)}", f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
