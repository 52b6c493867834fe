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

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestCase {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub now: Option<Timestamp>,
    #[serde(default)]
    pub objects: Vec<Value>,
    #[serde(default)]
    pub request: Option<Request>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expect {
    #[serde(default)]
    pub allowed: Option<bool>,
    #[serde(default)]
    pub violations: Vec<ExpectedViolation>,
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
    let mut out = Vec::new();
    for file in load::files(paths)? {
        for doc in load::read_file(&file)? {
            out.push(parse_case(&file, doc.source.document, &doc.value)?);
        }
    }
    Ok(out)
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
    let case: TestCase = serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        malformed(&field, e.into_inner().to_string())
    })?;
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
    for (i, o) in case.objects.iter().enumerate() {
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
    })
}

/// What running a case found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub allowed: Option<bool>,
    pub violations: BTreeSet<ExpectedViolation>,
    /// Why a request was refused other than for violations.
    pub refusal: Option<String>,
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
            Outcome {
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

/// Compares an outcome with the case's expectation.
pub fn judge(c: &LoadedCase, got: &Outcome) -> CaseResult {
    let mut failures = Vec::new();
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
