//! The synthetic cluster: who exists, who violates on purpose, and the order
//! in which everything is drawn from the seeded generator. The output is a
//! pure function of [`Config`]: every draw below happens in a fixed order, so
//! reordering two draws changes the generated files.

use std::collections::HashSet;
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::shapes::{
    CONFLICTS, CR_ROLES, ClusterRoleSpec, DUTY_RULES, N_TEAM_AGGREGATORS, NEUTRAL_RULES, NS_WORDS,
    POLICIES, PRODUCTS, SA_NAMES, TEMPLATES, TPL_SECRET_READER, builtin_cluster_roles,
    team_aggregator, team_label,
};
use super::write::{Chunked, Folder, Sink, Subj, Written, binding_doc, metadata, role_doc};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// RoleBindings per namespace: at scale 1 the cluster has 5,000 namespaces
/// and so 100,000 RoleBindings.
const ROLE_BINDINGS_PER_NAMESPACE: usize = 20;
const NAMESPACES_AT_SCALE_1: usize = 5_000;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub seed: u64,
    /// Every count (namespaces, ServiceAccounts, Roles, ClusterRoles,
    /// bindings, users) is its scale-1 value times this.
    pub scale: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            scale: 1.0,
        }
    }
}

impl Config {
    /// The scale whose cluster has `n` RoleBindings (rounded to a multiple
    /// of 20, one namespace's worth); everything else grows with it.
    pub fn scale_for_role_bindings(n: usize) -> f64 {
        n as f64 / (NAMESPACES_AT_SCALE_1 * ROLE_BINDINGS_PER_NAMESPACE) as f64
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub namespaces: usize,
    pub service_accounts: usize,
    pub roles: usize,
    pub cluster_roles: usize,
    pub aggregated_cluster_roles: usize,
    pub role_bindings: usize,
    pub cluster_role_bindings: usize,
    pub policies: usize,
    /// ServiceAccounts given a real secret-admin + secret-use conflict.
    pub planted_secret: usize,
    /// ServiceAccounts given all three release-train duties.
    pub planted_release: usize,
    /// ServiceAccounts holding one secret duty, one binding away from both.
    pub half_secret: usize,
    pub files: usize,
    pub bytes: u64,
}

impl Summary {
    /// Counts what one kind's files took; returns its number of documents.
    fn add(&mut self, w: Written) -> usize {
        self.files += w.files;
        self.bytes += w.bytes;
        w.docs
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "namespaces={} serviceaccounts={} roles={} clusterroles={} (aggregated {}) \
             rolebindings={} clusterrolebindings={} sodpolicies={} | planted: secret={} \
             release-train={} half-secret={} | files={} size={:.1} MiB",
            self.namespaces,
            self.service_accounts,
            self.roles,
            self.cluster_roles,
            self.aggregated_cluster_roles,
            self.role_bindings,
            self.cluster_role_bindings,
            self.policies,
            self.planted_secret,
            self.planted_release,
            self.half_secret,
            self.files,
            self.bytes as f64 / (1024.0 * 1024.0),
        )
    }
}

/// Writes the synthetic cluster into `dir` (created if needed).
pub fn generate(dir: &Path, cfg: &Config) -> Result<Summary, Error> {
    std::fs::create_dir_all(dir)?;
    clean(dir)?;
    generate_into(&Folder(dir), cfg)
}

/// Hands the synthetic cluster's files to `sink`, in the order they are
/// finished (not in file-name order).
pub fn generate_into(sink: &dyn Sink, cfg: &Config) -> Result<Summary, Error> {
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let plan = Plan::draw(&mut rng, cfg.scale);
    let summary = Summary {
        planted_secret: plan.planted,
        planted_release: plan.release,
        half_secret: plan.half_set.len(),
        ..Summary::default()
    };
    let mut w = Writer {
        sink,
        rng,
        plan,
        crs: ClusterRoleNames::default(),
        summary,
    };
    w.crs = write_cluster_roles(&mut w)?;
    write_namespaces(&mut w)?;
    write_role_bindings(&mut w)?;
    write_cluster_role_bindings(&mut w)?;
    sink.file("sodpolicies-000.yaml", POLICIES)?;
    let mut summary = w.summary;
    summary.policies = POLICIES.matches("kind: SoDPolicy").count();
    summary.files += 1;
    summary.bytes += POLICIES.len() as u64;
    Ok(summary)
}

/// Removes the files an earlier run wrote into `dir`.
fn clean(dir: &Path) -> Result<(), Error> {
    const PREFIXES: [&str; 7] = [
        "namespaces-",
        "serviceaccounts-",
        "roles-",
        "clusterroles-",
        "rolebindings-",
        "clusterrolebindings-",
        "sodpolicies-",
    ];
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".yaml") && PREFIXES.iter().any(|pre| name.starts_with(pre)) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

fn scaled(base: usize, scale: f64, min: usize) -> usize {
    ((base as f64 * scale).round() as usize).max(min)
}

fn pick_weighted(rng: &mut SmallRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Four compatible Role templates for one namespace.
fn namespace_templates(rng: &mut SmallRng) -> Vec<usize> {
    let weights: Vec<u32> = TEMPLATES.iter().map(|t| t.weight).collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(4);
    while chosen.len() < 4 {
        let t = pick_weighted(rng, &weights);
        let clash = chosen.contains(&t)
            || CONFLICTS
                .iter()
                .any(|&(a, b)| (t == a && chosen.contains(&b)) || (t == b && chosen.contains(&a)));
        if !clash {
            chosen.push(t);
        }
    }
    chosen
}

/// ServiceAccount `sa` is the `sa % 10`-th name of namespace `sa / 10`.
fn sa_ns(sa: usize) -> usize {
    sa / SA_NAMES.len()
}

fn sa_name(sa: usize) -> &'static str {
    SA_NAMES[sa % SA_NAMES.len()]
}

/// A RoleBinding planted for a violation (or half of one).
struct ExtraBinding {
    ns: usize,
    name: String,
    kind: &'static str,
    role: String,
    subjects: Vec<Subj>,
}

/// Everything drawn before the first document is written: the counts, the
/// namespaces' Role templates and the planted bindings.
struct Plan {
    n_ns: usize,
    n_sa: usize,
    n_rb: usize,
    n_users: usize,
    n_cr: usize,
    n_crb: usize,
    builtin: Vec<ClusterRoleSpec>,
    ns_names: Vec<String>,
    ns_tpl: Vec<Vec<usize>>,
    planted: usize,
    release: usize,
    /// ServiceAccounts one Role away from a secret conflict.
    half_set: HashSet<usize>,
    extra_rb: Vec<ExtraBinding>,
    /// (name, ClusterRole, subjects).
    extra_crb: Vec<(String, String, Vec<Subj>)>,
}

impl Plan {
    fn draw(rng: &mut SmallRng, s: f64) -> Plan {
        let n_ns = scaled(NAMESPACES_AT_SCALE_1, s, 2);
        let builtin = builtin_cluster_roles();
        let mut plan = Plan {
            n_ns,
            n_sa: n_ns * SA_NAMES.len(),
            n_rb: n_ns * ROLE_BINDINGS_PER_NAMESPACE,
            n_users: scaled(1_000, s, 10),
            n_cr: scaled(500, s, builtin.len() + N_TEAM_AGGREGATORS + 10),
            n_crb: scaled(2_000, s, 20),
            builtin,
            ns_names: (0..n_ns)
                .map(|i| format!("{}-{i:04}", NS_WORDS[i % NS_WORDS.len()]))
                .collect(),
            ns_tpl: (0..n_ns).map(|_| namespace_templates(rng)).collect(),
            planted: 0,
            release: 0,
            half_set: HashSet::new(),
            extra_rb: Vec::new(),
            extra_crb: Vec::new(),
        };
        plan.plant(rng);
        plan
    }

    /// The namespace's Role template that grants a secret duty, if any.
    fn secret_tpl(&self, ns: usize) -> Option<usize> {
        self.ns_tpl[ns]
            .iter()
            .copied()
            .find(|&t| TEMPLATES[t].secret)
    }

    fn sa_subj(&self, sa: usize) -> Subj {
        Subj::Sa {
            ns: self.ns_names[sa_ns(sa)].clone(),
            name: sa_name(sa).to_string(),
            with_ns: true,
        }
    }

    fn user(&self, rng: &mut SmallRng) -> String {
        format!("dev-{}@example.com", rng.random_range(0..self.n_users))
    }

    /// Binds ServiceAccount `sa` alone, in its own namespace.
    fn bind(&mut self, sa: usize, name: String, kind: &'static str, role: &str) {
        let subjects = vec![self.sa_subj(sa)];
        self.extra_rb.push(ExtraBinding {
            ns: sa_ns(sa),
            name,
            kind,
            role: role.into(),
            subjects,
        });
    }

    /// Chooses who violates on purpose (0.5% secret, 0.1% release-train) and
    /// who is one binding away from it (0.5%), and draws their bindings.
    fn plant(&mut self, rng: &mut SmallRng) {
        let mut order: Vec<usize> = (0..self.n_sa).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let share = |p: f64| ((self.n_sa as f64 * p).round() as usize).max(1);
        let (n_planted, n_half, n_release) = (share(0.005), share(0.005), share(0.001));
        let half: Vec<usize> = order[n_planted + n_release..]
            .iter()
            .copied()
            .filter(|&sa| self.secret_tpl(sa_ns(sa)).is_some())
            .take(n_half)
            .collect();
        for (i, &sa) in order[..n_planted].iter().enumerate() {
            self.plant_secret(rng, i, sa);
        }
        for &sa in &order[n_planted..n_planted + n_release] {
            let name = format!("{}-release-manager", sa_name(sa));
            self.bind(sa, name, "ClusterRole", "release-manager");
        }
        for &sa in &half {
            // The opposite of the namespace's secret Role: binding it completes a conflict.
            let cr = if self.secret_tpl(sa_ns(sa)) == Some(TPL_SECRET_READER) {
                "secret-writer"
            } else {
                "secret-reader"
            };
            self.bind(
                sa,
                format!("{}-{cr}-cluster", sa_name(sa)),
                "ClusterRole",
                cr,
            );
        }
        self.planted = n_planted;
        self.release = n_release;
        self.half_set = half.into_iter().collect();
    }

    /// A real secret-admin + secret-use conflict for `sa`, the `i`-th planted.
    fn plant_secret(&mut self, rng: &mut SmallRng, i: usize, sa: usize) {
        let who = sa_name(sa);
        let (read, write) = (
            format!("{who}-secrets-read"),
            format!("{who}-secrets-write"),
        );
        let p: f64 = rng.random();
        if p < 0.35 {
            self.bind(sa, format!("{who}-edit"), "ClusterRole", "edit");
        } else if p < 0.50 {
            self.bind(sa, format!("{who}-admin"), "ClusterRole", "admin");
        } else if p < 0.85 {
            // The namespace's own secret Role for one duty, where it has one.
            match self.secret_tpl(sa_ns(sa)) {
                Some(TPL_SECRET_READER) => {
                    self.bind(sa, read, "Role", "secret-reader");
                    self.bind(sa, write, "ClusterRole", "secret-writer");
                }
                Some(_) => {
                    self.bind(sa, write, "Role", "secret-writer");
                    self.bind(sa, read, "ClusterRole", "secret-reader");
                }
                None => {
                    self.bind(sa, read, "ClusterRole", "secret-reader");
                    self.bind(sa, write, "ClusterRole", "secret-writer");
                }
            }
        } else {
            // Reads Secrets everywhere, writes them in its own namespace.
            let subjects = vec![self.sa_subj(sa)];
            self.extra_crb
                .push((format!("secret-sync-{i}"), "secret-reader".into(), subjects));
            self.bind(sa, write, "ClusterRole", "secret-writer");
        }
    }
}

/// What the writing steps share: the generator, drawn from in a fixed
/// order, and what earlier steps wrote.
struct Writer<'a> {
    sink: &'a dyn Sink,
    rng: SmallRng,
    plan: Plan,
    crs: ClusterRoleNames,
    summary: Summary,
}

impl<'a> Writer<'a> {
    /// The fields, borrowed apart.
    fn parts(
        &mut self,
    ) -> (
        &'a dyn Sink,
        &mut SmallRng,
        &Plan,
        &ClusterRoleNames,
        &mut Summary,
    ) {
        (
            self.sink,
            &mut self.rng,
            &self.plan,
            &self.crs,
            &mut self.summary,
        )
    }
}

/// The ClusterRoles bindings may name.
#[derive(Default)]
struct ClusterRoleNames {
    /// Without any duty: safe to bind to ServiceAccounts.
    safe: Vec<String>,
    all: Vec<String>,
}

/// The fixed ClusterRoles, the team aggregators, then the products' own.
fn write_cluster_roles(w: &mut Writer) -> Result<ClusterRoleNames, Error> {
    let (sink, rng, plan, _, summary) = w.parts();
    let mut names = ClusterRoleNames::default();
    let mut crs = Chunked::new(sink, "clusterroles");
    names.safe.push("view".into());
    for (name, labels, agg, rules) in &plan.builtin {
        role_doc(crs.doc()?, rng, None, name, labels, agg.as_deref(), rules);
        names.all.push(name.clone());
        if agg.is_some() {
            summary.aggregated_cluster_roles += 1;
        }
    }
    for k in 0..N_TEAM_AGGREGATORS {
        let (name, labels, sel) = team_aggregator_spec(k);
        role_doc(crs.doc()?, rng, None, &name, &labels, Some(&sel), "");
        summary.aggregated_cluster_roles += 1;
        names.safe.push(name.clone());
        names.all.push(name);
    }
    let n_custom = plan.n_cr - plan.builtin.len() - N_TEAM_AGGREGATORS;
    for i in 0..n_custom {
        let (name, labels, rules, duty) = custom_cluster_role(rng, i);
        if !duty {
            names.safe.push(name.clone());
        }
        role_doc(crs.doc()?, rng, None, &name, &labels, None, &rules);
        names.all.push(name);
    }
    summary.cluster_roles = summary.add(crs.finish()?);
    Ok(names)
}

/// The `k`-th team aggregator: (name, labels, aggregation selectors).
fn team_aggregator_spec(k: usize) -> (String, Vec<(String, String)>, String) {
    let mut sel = format!("- matchLabels:\n    {}: \"true\"\n", team_label(k));
    if k.is_multiple_of(4) {
        sel.push_str(
            "- matchExpressions:\n  - key: platform.example.com/tier\n    operator: In\n    values: [read-only]\n  - key: platform.example.com/deprecated\n    operator: DoesNotExist\n",
        );
    }
    let mut labels = vec![(
        "app.kubernetes.io/part-of".to_string(),
        "platform".to_string(),
    )];
    // Some team roles aggregate into the next one: chains and, with the
    // last, a cycle that must be cut.
    if k.is_multiple_of(5) {
        labels.push((team_label((k + 1) % N_TEAM_AGGREGATORS), "true".into()));
    }
    if k == N_TEAM_AGGREGATORS - 1 {
        labels.push((team_label(0), "true".into()));
    }
    (team_aggregator(k), labels, sel)
}

/// A product's ClusterRole, 15% of them with a duty: (name, labels, rules,
/// has a duty).
fn custom_cluster_role(
    rng: &mut SmallRng,
    i: usize,
) -> (String, Vec<(String, String)>, String, bool) {
    let product = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
    let role = CR_ROLES[rng.random_range(0..CR_ROLES.len())];
    let name = format!("{product}-{role}-{i:03}");
    let duty = rng.random_bool(0.15);
    let mut labels = vec![("app.kubernetes.io/part-of".to_string(), product.to_string())];
    let n_rules = rng.random_range(1..=4);
    let mut rules = String::new();
    for r in 0..n_rules {
        if duty && r == 0 {
            rules.push_str(DUTY_RULES[rng.random_range(0..DUTY_RULES.len())]);
        } else {
            rules.push_str(NEUTRAL_RULES[rng.random_range(0..NEUTRAL_RULES.len())]);
        }
    }
    if !duty {
        if rng.random_bool(0.4) {
            labels.push((
                team_label(rng.random_range(0..N_TEAM_AGGREGATORS)),
                "true".into(),
            ));
        }
        if rng.random_bool(0.1) {
            labels.push((
                "rbac.authorization.k8s.io/aggregate-to-view".into(),
                "true".into(),
            ));
        }
        let tier = if rng.random_bool(0.5) {
            "read-only"
        } else {
            "read-write"
        };
        labels.push(("platform.example.com/tier".into(), tier.into()));
        if rng.random_bool(0.05) {
            labels.push(("platform.example.com/deprecated".into(), "true".into()));
        }
    }
    (name, labels, rules, duty)
}

/// Namespaces, their ServiceAccounts and their Roles, namespace by namespace.
fn write_namespaces(w: &mut Writer) -> Result<(), Error> {
    let (sink, rng, plan, _, summary) = w.parts();
    let mut nss = Chunked::new(sink, "namespaces");
    let mut sas = Chunked::new(sink, "serviceaccounts");
    let mut roles = Chunked::new(sink, "roles");
    for (i, ns) in plan.ns_names.iter().enumerate() {
        let team = ns.split('-').next().unwrap_or_default().to_string();
        let out = nss.doc()?;
        out.push_str("apiVersion: v1\nkind: Namespace\n");
        metadata(out, rng, ns, None, &[("team".into(), team.clone())]);
        out.push_str("spec:\n  finalizers: [kubernetes]\nstatus:\n  phase: Active\n");
        for sa in SA_NAMES {
            let out = sas.doc()?;
            out.push_str("apiVersion: v1\nkind: ServiceAccount\n");
            metadata(out, rng, sa, Some(ns), &[]);
        }
        for &t in &plan.ns_tpl[i] {
            let tpl = &TEMPLATES[t];
            let mut rules = tpl.rules.to_string();
            for _ in 0..rng.random_range(0..=2) {
                rules.push_str(NEUTRAL_RULES[rng.random_range(0..NEUTRAL_RULES.len())]);
            }
            let labels = [
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "Helm".to_string(),
                ),
                ("team".to_string(), team.clone()),
            ];
            role_doc(roles.doc()?, rng, Some(ns), tpl.name, &labels, None, &rules);
        }
    }
    summary.namespaces = summary.add(nss.finish()?);
    summary.service_accounts = summary.add(sas.finish()?);
    summary.roles = summary.add(roles.finish()?);
    Ok(())
}

/// The planted RoleBindings first, then ordinary ones round-robin over the
/// namespaces up to the plan's count.
fn write_role_bindings(w: &mut Writer) -> Result<(), Error> {
    let (sink, rng, plan, crs, summary) = w.parts();
    let mut rbs = Chunked::new(sink, "rolebindings");
    let mut per_ns_counter = vec![0u32; plan.n_ns];
    let helm = [(
        "app.kubernetes.io/managed-by".to_string(),
        "Helm".to_string(),
    )];
    for b in &plan.extra_rb {
        per_ns_counter[b.ns] += 1;
        let ns = Some(plan.ns_names[b.ns].as_str());
        binding_doc(
            rbs.doc()?,
            rng,
            ns,
            &b.name,
            b.kind,
            &b.role,
            &b.subjects,
            &[],
        );
    }
    let n_normal = plan.n_rb.saturating_sub(plan.extra_rb.len());
    for i in 0..n_normal {
        let ns = i % plan.n_ns;
        let (kind, role, subjects) = ordinary_role_binding(rng, plan, crs, ns);
        per_ns_counter[ns] += 1;
        let name = format!("{}-{}", role.replace(':', "-"), per_ns_counter[ns]);
        let labels: &[(String, String)] = if rng.random_bool(0.6) { &helm } else { &[] };
        let nsname = Some(plan.ns_names[ns].as_str());
        binding_doc(
            rbs.doc()?,
            rng,
            nsname,
            &name,
            kind,
            &role,
            &subjects,
            labels,
        );
    }
    summary.role_bindings = summary.add(rbs.finish()?);
    Ok(())
}

/// An ordinary RoleBinding in namespace `ns`: (role kind, role, subjects).
fn ordinary_role_binding(
    rng: &mut SmallRng,
    plan: &Plan,
    crs: &ClusterRoleNames,
    ns: usize,
) -> (&'static str, String, Vec<Subj>) {
    let r: f64 = rng.random();
    // The role: mostly one of the namespace's Roles, else a ClusterRole
    // without duties; a few point at nothing (R2.3).
    let (kind, role, tpl) = if rng.random_bool(0.002) {
        ("Role", "retired-role".to_string(), None)
    } else if rng.random_bool(0.8) {
        let t = plan.ns_tpl[ns][rng.random_range(0..4)];
        ("Role", TEMPLATES[t].name.to_string(), Some(t))
    } else {
        (
            "ClusterRole",
            crs.safe[rng.random_range(0..crs.safe.len())].clone(),
            None,
        )
    };
    let secret = tpl.is_some_and(|t| TEMPLATES[t].secret);
    let subjects = if r < 0.95 {
        let n = if rng.random_bool(0.3) { 2 } else { 1 };
        (0..n)
            .map(|_| service_account_subject(rng, plan, ns, secret))
            .collect()
    } else if r < 0.975 {
        vec![Subj::Group(format!(
            "system:serviceaccounts:{}",
            plan.ns_names[ns]
        ))]
    } else {
        vec![Subj::User(plan.user(rng))]
    };
    // Groups reach every ServiceAccount of the namespace: never a secret Role.
    if secret && matches!(subjects[0], Subj::Group(_)) {
        ("ClusterRole", "view".to_string(), subjects)
    } else {
        (kind, role, subjects)
    }
}

/// A ServiceAccount subject of a RoleBinding in `ns`: mostly of `ns`, a few
/// of another namespace or naming no ServiceAccount that exists.
fn service_account_subject(rng: &mut SmallRng, plan: &Plan, ns: usize, secret: bool) -> Subj {
    let mut sa_ns_i = ns;
    if rng.random_bool(0.01) {
        sa_ns_i = rng.random_range(0..plan.n_ns);
    }
    let mut sa = sa_ns_i * SA_NAMES.len() + rng.random_range(0..SA_NAMES.len());
    // A half-violator must not get the Role that completes its conflict.
    while secret && plan.half_set.contains(&sa) {
        sa = sa_ns_i * SA_NAMES.len() + (sa + 1) % SA_NAMES.len();
    }
    let name = if rng.random_bool(0.003) {
        // Names a ServiceAccount that does not exist (latent, R1.5).
        format!("legacy-{}", rng.random_range(0..100))
    } else {
        sa_name(sa).to_string()
    };
    Subj::Sa {
        ns: plan.ns_names[sa_ns_i].clone(),
        name,
        with_ns: sa_ns_i != ns || rng.random_bool(0.8),
    }
}

/// The bootstrap ClusterRoleBindings, the planted ones, then people's and
/// controllers' up to the plan's count.
fn write_cluster_role_bindings(w: &mut Writer) -> Result<(), Error> {
    let (sink, rng, plan, crs, summary) = w.parts();
    let mut crbs = Chunked::new(sink, "clusterrolebindings");
    let boot = [(
        "kubernetes.io/bootstrapping".to_string(),
        "rbac-defaults".to_string(),
    )];
    let authenticated = || Subj::Group("system:authenticated".into());
    let fixed = [
        ("cluster-admin", vec![Subj::Group("system:masters".into())]),
        ("system:basic-user", vec![authenticated()]),
        ("system:discovery", vec![authenticated()]),
        (
            "system:public-info-viewer",
            vec![
                authenticated(),
                Subj::Group("system:unauthenticated".into()),
            ],
        ),
    ];
    // The bootstrap bindings are named after their ClusterRole.
    let fixed = fixed
        .iter()
        .map(|(role, subjects)| (*role, *role, subjects, &boot[..]));
    let extra = plan
        .extra_crb
        .iter()
        .map(|(name, role, subjects)| (name.as_str(), role.as_str(), subjects, &[][..]));
    for (name, role, subjects, labels) in fixed.chain(extra) {
        binding_doc(
            crbs.doc()?,
            rng,
            None,
            name,
            "ClusterRole",
            role,
            subjects,
            labels,
        );
    }
    let n_rest = plan.n_crb.saturating_sub(4 + plan.extra_crb.len());
    for i in 0..n_rest {
        let (role, subjects) = ordinary_cluster_role_binding(rng, plan, crs);
        let name = format!("{}-{i}", role.replace(':', "-"));
        binding_doc(
            crbs.doc()?,
            rng,
            None,
            &name,
            "ClusterRole",
            &role,
            &subjects,
            &[],
        );
    }
    summary.cluster_role_bindings = summary.add(crbs.finish()?);
    Ok(())
}

/// An ordinary ClusterRoleBinding: (ClusterRole, subjects).
fn ordinary_cluster_role_binding(
    rng: &mut SmallRng,
    plan: &Plan,
    crs: &ClusterRoleNames,
) -> (String, Vec<Subj>) {
    let r: f64 = rng.random();
    if r >= 0.9 {
        // Controllers: a ServiceAccount with a ClusterRole without duties.
        let sa = rng.random_range(0..plan.n_sa);
        let role = crs.safe[rng.random_range(0..crs.safe.len())].clone();
        return (role, vec![plan.sa_subj(sa)]);
    }
    // People: any ClusterRole, now and then a very powerful one.
    let p: f64 = rng.random();
    let role = if p < 0.01 {
        "cluster-admin".to_string()
    } else if p < 0.04 {
        "admin".to_string()
    } else if p < 0.08 {
        "edit".to_string()
    } else if p < 0.13 {
        "view".to_string()
    } else {
        crs.all[rng.random_range(0..crs.all.len())].clone()
    };
    let subjects = if r < 0.7 {
        (0..rng.random_range(1..=3))
            .map(|_| Subj::User(plan.user(rng)))
            .collect()
    } else {
        vec![Subj::Group(format!(
            "oidc:team-{}",
            rng.random_range(0..50)
        ))]
    };
    (role, subjects)
}
