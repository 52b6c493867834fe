//! `SoDTestCase` files (format in semantics.md) and the runner behind
//! `sodguard test`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::decode::convert;
use crate::engine::index::Index;
use crate::engine::{self, Request, Violation};
use crate::load::{self, LoadError};
use crate::model::{Identity, Object};

pub const KIND: &str = "SoDTestCase";

// Unknown fields are refused: a misspelled `expect` key would otherwise
// be a check that silently never runs (R12).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestCase {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub now: Option<Timestamp>,
    #[serde(default)]
    pub objects: Vec<Value>,
    /// Manifest files or folders, relative to the case file, whose objects
    /// join `objects` (the real policy files rather than copies).
    #[serde(default)]
    pub objects_from: Vec<PathBuf>,
    #[serde(default)]
    pub request: Option<Request>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub allowed: Option<bool>,
    #[serde(default)]
    pub violations: Vec<ExpectedViolation>,
    /// Each must appear in one of the warnings.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Must appear in the denial message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A violation as test cases and `check -o json` write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub struct ExpectedViolation {
    pub policy: String,
    pub subject: String,
    pub namespace: String,
    pub duties: Vec<String>,
}

impl ExpectedViolation {
    pub fn of(v: &Violation) -> Self {
        ExpectedViolation {
            policy: v.policy.to_string(),
            subject: v.subject.to_string(),
            namespace: v.namespace.to_string(),
            duties: v.duties.iter().map(|d| d.to_string()).collect(),
        }
    }
}

impl fmt::Display for ExpectedViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {} [{}]",
            self.policy,
            self.subject,
            self.namespace,
            self.duties.join(", ")
        )
    }
}

/// A case file that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{file}:{line}: {message}")]
    PendingList {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot read {file}: {source}")]
    PendingRead {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}, document {document}: {field}: {message}")]
    Malformed {
        file: PathBuf,
        document: usize,
        field: String,
        message: String,
    },
}

/// A parsed case with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    pub file: PathBuf,
    pub document: usize,
    pub case: TestCase,
    /// The case's objects, converted (after validation).
    pub objects: Vec<Object>,
    /// What makes the case fail whatever the engine answers.
    pub problems: Vec<String>,
}

/// Case files known not to pass yet (`sodguard test --pending FILE`): one
/// line each, the file name and then why (the open issue that will make it
/// pass); `#` starts a comment.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub source: PathBuf,
    entries: std::collections::BTreeMap<String, String>,
}

impl Pending {
    pub fn load(path: &Path) -> Result<Self, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CaseError::PendingRead {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, CaseError> {
        let mut entries = std::collections::BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| CaseError::PendingList {
                file: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let (name, why) = line
                .split_once(char::is_whitespace)
                .map(|(n, w)| (n, w.trim()))
                .unwrap_or((line, ""));
            if why.is_empty() {
                return Err(bad(format!(
                    "{name}: say why it is pending (the open issue that will make it pass)"
                )));
            }
            if name.contains('/') {
                return Err(bad(format!("{name}: a file name, not a path")));
            }
            if entries.insert(name.to_string(), why.to_string()).is_some() {
                return Err(bad(format!("{name} is listed twice")));
            }
        }
        Ok(Pending {
            source: path.to_path_buf(),
            entries,
        })
    }

    /// Why the case file `file` is pending, if it is.
    pub fn reason(&self, file: &Path) -> Option<&str> {
        let name = file.file_name()?.to_str()?;
        self.entries.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// Reads every case in `paths` (files or folders).
pub fn load_cases(paths: &[PathBuf]) -> Result<Vec<LoadedCase>, CaseError> {
    Ok(load_cases_noting(paths)?.0)
}

/// [`load_cases`], with a note for each document that is not a case: the
/// manifests a test folder also holds (the policies its cases read through
/// `objectsFrom`) are skipped, not fatal.
pub fn load_cases_noting(paths: &[PathBuf]) -> Result<(Vec<LoadedCase>, Vec<String>), CaseError> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for file in load::files(paths)? {
        let mut skipped = Vec::new();
        for doc in load::read_file(&file)? {
            let tm = crate::decode::TypeMeta::of(&doc.value);
            let ours = tm.group() == crate::decode::strict::GROUP;
            let other_kind = tm.kind != KIND
                && !tm.kind.eq_ignore_ascii_case(KIND)
                && !tm.kind.is_empty()
                && (!ours || crate::decode::strict::KINDS.contains(&tm.kind.as_str()));
            if other_kind {
                skipped.push(crate::decode::ObjectRef::of(&doc.value).to_string());
                continue;
            }
            out.push(parse_case(&file, doc.source.document, &doc.value)?);
        }
        if !skipped.is_empty() {
            let first = skipped
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if skipped.len() > 3 { ", …" } else { "" };
            notes.push(format!(
                "{}: skipped {} document(s) that are not {KIND}s ({first}{more})",
                file.display(),
                skipped.len()
            ));
        }
    }
    Ok((out, notes))
}

pub fn parse_case(file: &Path, document: usize, v: &Value) -> Result<LoadedCase, CaseError> {
    let malformed = |field: &str, message: String| CaseError::Malformed {
        file: file.to_path_buf(),
        document,
        field: field.to_string(),
        message,
    };
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != KIND {
        return Err(malformed(
            "kind",
            format!("expected {KIND}, found {kind:?}"),
        ));
    }
    let mut case: TestCase = serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        malformed(&field, e.into_inner().to_string())
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    for (i, from) in case.objects_from.clone().iter().enumerate() {
        let field = format!("objectsFrom[{i}]");
        let files =
            load::files(&[base.join(from)]).map_err(|e| malformed(&field, e.to_string()))?;
        for f in files {
            let docs = load::read_file(&f).map_err(|e| malformed(&field, e.to_string()))?;
            case.objects.extend(docs.into_iter().map(|d| d.value));
        }
    }
    if case.request.is_some() && case.expect.allowed.is_none() {
        return Err(malformed(
            "expect.allowed",
            "a case with a request must say whether it is allowed".into(),
        ));
    }
    for (i, ev) in case.expect.violations.iter().enumerate() {
        ev.subject
            .parse::<Identity>()
            .map_err(|e| malformed(&format!("expect.violations[{i}].subject"), e.to_string()))?;
    }
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (i, o) in case.objects.iter().enumerate() {
        // A failure of the case rather than of the run: the others still
        // run, and a case pending on the feature that adds the field stays
        // pending.
        for f in crate::decode::strict::unknown_fields(o) {
            problems.push(format!(
                "objects[{i}].{f}: unknown field (refused as `kubectl apply --validate=strict` would)"
            ));
        }
        match convert(o) {
            Ok(Some(obj)) => objects.push(obj),
            Ok(None) => {}
            Err(e) => return Err(malformed(&format!("objects[{i}]"), e.to_string())),
        }
    }
    Ok(LoadedCase {
        file: file.to_path_buf(),
        document,
        case,
        objects,
        problems,
    })
}

/// What running a case found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub allowed: Option<bool>,
    pub violations: BTreeSet<ExpectedViolation>,
    /// Why a request was refused other than for violations.
    pub refusal: Option<String>,
    /// The denial message, as the webhook words it.
    pub message: Option<String>,
    /// The warnings: the webhook's for a request, the input's (R12.2) for
    /// a state.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub file: PathBuf,
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs a case through the engine.
pub fn run_engine(c: &LoadedCase) -> Outcome {
    let now = c.case.now.unwrap_or_else(Timestamp::now);
    let mut index = Index::from_objects(c.objects.iter().cloned());
    match &c.case.request {
        Some(req) => {
            let review = engine::review(&mut index, req, now);
            let mut warnings = engine::wording::warnings(&review);
            if let Some(o) = &req.object {
                warnings.extend(hygiene_warnings(&c.case.objects, o));
            }
            Outcome {
                message: (!review.allowed).then(|| engine::wording::denial_message(&review)),
                warnings,
                allowed: Some(review.allowed),
                violations: review
                    .violations
                    .iter()
                    .map(ExpectedViolation::of)
                    .collect(),
                refusal: review.refusal,
            }
        }
        None => Outcome {
            message: None,
            warnings: c
                .case
                .objects
                .iter()
                .flat_map(|o| hygiene_warnings(&c.case.objects, o))
                .collect(),
            allowed: None,
            violations: engine::evaluate(&index, now)
                .violations
                .iter()
                .map(ExpectedViolation::of)
                .collect(),
            refusal: None,
        },
    }
}

/// R12.2 for `object`, with the CRDs among `objects` served.
fn hygiene_warnings(objects: &[Value], object: &Value) -> Vec<String> {
    use crate::decode::strict;
    let served = strict::Served {
        extra: objects.iter().flat_map(strict::crd_serves).collect(),
        any_other_group: false,
    };
    strict::impossible_permissions(object, &served)
}

/// Compares an outcome with the case's expectation.
pub fn judge(c: &LoadedCase, got: &Outcome) -> CaseResult {
    let mut failures = c.problems.clone();
    if let (Some(want), Some(have)) = (c.case.expect.allowed, got.allowed)
        && want != have
    {
        let why = got
            .refusal
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        failures.push(format!(
            "expected allowed: {want}, got allowed: {have}{why}"
        ));
    }
    let want: BTreeSet<ExpectedViolation> = c
        .case
        .expect
        .violations
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.duties.sort();
            v
        })
        .collect();
    for w in &c.case.expect.warnings {
        if !got.warnings.iter().any(|g| g.contains(w.as_str())) {
            failures.push(format!(
                "missing warning containing {w:?} (warnings: {:?})",
                got.warnings
            ));
        }
    }
    if let Some(m) = &c.case.expect.message {
        match &got.message {
            Some(have) if have.contains(m.as_str()) => {}
            Some(have) => failures.push(format!("the denial message lacks {m:?}: {have:?}")),
            None => failures.push(format!(
                "expected a denial message containing {m:?}, but the request was allowed"
            )),
        }
    }
    for missing in want.difference(&got.violations) {
        failures.push(format!("missing violation: {missing}"));
    }
    for extra in got.violations.difference(&want) {
        failures.push(format!("unexpected violation: {extra}"));
    }
    CaseResult {
        name: c.case.name.clone(),
        file: c.file.clone(),
        failures,
    }
}
