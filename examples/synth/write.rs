//! YAML output: documents written the way `kubectl get -o yaml` prints them
//! (bookkeeping metadata included), chunked into files.

use std::fmt::Write as _;
use std::path::Path;

use rand::Rng;
use rand::rngs::SmallRng;

use super::generate::Error;

/// Documents per file: a RoleBinding file of 10,000 documents is about 5 MB.
pub(crate) const DOCS_PER_FILE: usize = 10_000;

/// A plain YAML scalar when that is safe, else a double-quoted one.
fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

/// Where the generated files go: one call per whole file.
pub(crate) trait Sink {
    fn file(&self, name: &str, text: &str) -> Result<(), Error>;
}

/// Files written into a folder.
pub(crate) struct Folder<'a>(pub(crate) &'a Path);

impl Sink for Folder<'_> {
    fn file(&self, name: &str, text: &str) -> Result<(), Error> {
        std::fs::write(self.0.join(name), text.as_bytes())?;
        Ok(())
    }
}

/// Documents of one kind, handed to the sink as `prefix-NNN.yaml` every
/// [`DOCS_PER_FILE`] documents.
pub(crate) struct Chunked<'a> {
    sink: &'a dyn Sink,
    pub(crate) prefix: &'static str,
    buf: String,
    docs: usize,
    total: usize,
    file: usize,
    files: usize,
    bytes: u64,
}

/// What one [`Chunked`] wrote.
pub(crate) struct Written {
    pub(crate) docs: usize,
    pub(crate) files: usize,
    pub(crate) bytes: u64,
}

impl<'a> Chunked<'a> {
    pub(crate) fn new(sink: &'a dyn Sink, prefix: &'static str) -> Self {
        Chunked {
            sink,
            prefix,
            buf: String::with_capacity(8 << 20),
            docs: 0,
            total: 0,
            file: 0,
            files: 0,
            bytes: 0,
        }
    }

    /// Starts a document; the caller writes its body into the returned buffer.
    pub(crate) fn doc(&mut self) -> Result<&mut String, Error> {
        if self.docs == DOCS_PER_FILE {
            self.flush()?;
        }
        if self.docs > 0 {
            self.buf.push_str("---\n");
        }
        self.docs += 1;
        self.total += 1;
        Ok(&mut self.buf)
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.docs == 0 {
            return Ok(());
        }
        let name = format!("{}-{:03}.yaml", self.prefix, self.file);
        self.sink.file(&name, &self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.files += 1;
        self.file += 1;
        self.buf.clear();
        self.docs = 0;
        Ok(())
    }

    /// Flushes the rest.
    pub(crate) fn finish(mut self) -> Result<Written, Error> {
        self.flush()?;
        Ok(Written {
            docs: self.total,
            files: self.files,
            bytes: self.bytes,
        })
    }
}

/// Writes `metadata:` with the bookkeeping fields a `kubectl get -o yaml`
/// dump carries (except managedFields).
pub(crate) fn metadata(
    out: &mut String,
    rng: &mut SmallRng,
    name: &str,
    namespace: Option<&str>,
    labels: &[(String, String)],
) {
    let uid: u128 = rng.random();
    let rv: u32 = rng.random_range(1_000..90_000_000);
    let day = rng.random_range(1..=28);
    let month = rng.random_range(1..=12);
    let secs = rng.random_range(0..86_400);
    let _ = writeln!(out, "metadata:\n  name: {}", q(name));
    if let Some(ns) = namespace {
        let _ = writeln!(out, "  namespace: {}", q(ns));
    }
    let _ = writeln!(
        out,
        "  uid: {:08x}-{:04x}-{:04x}-{:04x}-{:012x}\n  resourceVersion: \"{rv}\"\n  \
         creationTimestamp: \"2025-{month:02}-{day:02}T{:02}:{:02}:{:02}Z\"",
        (uid >> 96) as u32,
        (uid >> 80) as u16,
        (uid >> 64) as u16,
        (uid >> 48) as u16,
        uid & 0xffff_ffff_ffff,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
    );
    if !labels.is_empty() {
        out.push_str("  labels:\n");
        for (k, v) in labels {
            let _ = writeln!(out, "    {}: {}", q(k), q(v));
        }
    }
}

/// `apiVersion`, `kind` (the first with a namespace, the second without)
/// and `metadata` of an RBAC object.
fn rbac_head(
    out: &mut String,
    rng: &mut SmallRng,
    kinds: [&str; 2],
    namespace: Option<&str>,
    name: &str,
    labels: &[(String, String)],
) {
    let kind = if namespace.is_some() {
        kinds[0]
    } else {
        kinds[1]
    };
    let _ = writeln!(
        out,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}"
    );
    metadata(out, rng, name, namespace, labels);
}

#[derive(Debug, Clone)]
pub(crate) enum Subj {
    /// `with_ns: false` leaves the namespace to the RoleBinding's (R1.2).
    Sa {
        ns: String,
        name: String,
        with_ns: bool,
    },
    User(String),
    Group(String),
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn binding_doc(
    out: &mut String,
    rng: &mut SmallRng,
    namespace: Option<&str>,
    name: &str,
    role_kind: &str,
    role_name: &str,
    subjects: &[Subj],
    labels: &[(String, String)],
) {
    rbac_head(
        out,
        rng,
        ["RoleBinding", "ClusterRoleBinding"],
        namespace,
        name,
        labels,
    );
    let _ = writeln!(
        out,
        "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role_kind}\n  name: {}\nsubjects:",
        q(role_name)
    );
    for s in subjects {
        match s {
            Subj::Sa { ns, name, with_ns } => {
                let _ = writeln!(out, "- kind: ServiceAccount\n  name: {}", q(name));
                if *with_ns {
                    let _ = writeln!(out, "  namespace: {}", q(ns));
                }
            }
            Subj::User(u) => {
                let _ = writeln!(
                    out,
                    "- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: {}",
                    q(u)
                );
            }
            Subj::Group(g) => {
                let _ = writeln!(
                    out,
                    "- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: {}",
                    q(g)
                );
            }
        }
    }
}

pub(crate) fn role_doc(
    out: &mut String,
    rng: &mut SmallRng,
    namespace: Option<&str>,
    name: &str,
    labels: &[(String, String)],
    aggregation: Option<&str>,
    rules: &str,
) {
    rbac_head(out, rng, ["Role", "ClusterRole"], namespace, name, labels);
    if let Some(sel) = aggregation {
        out.push_str("aggregationRule:\n  clusterRoleSelectors:\n");
        for line in sel.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if rules.is_empty() {
        out.push_str("rules: []\n");
    } else {
        out.push_str("rules:\n");
        out.push_str(rules);
    }
}
