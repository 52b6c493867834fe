//! No false greens (R12): what loading refuses or warns about beyond a
//! document that does not convert. An input that holds nothing, two objects
//! that claim the same name (the answer would depend on the order of `-f`),
//! fields the schema does not know, and permissions nothing can match.

use serde_json::Value;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::{LoadError, Source};
use crate::decode::strict::{self, Served};
use crate::decode::{ObjectRef, TypeMeta};

/// What one document contributes to the checks made once all files are read.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Every named object: its identity and where it is in its file
    /// (document, item); the file is the one being read. Kept small: there
    /// is one per object of the input.
    pub keys: Vec<(Key, u32, Option<u32>)>,
    /// What the CustomResourceDefinitions of the input serve.
    pub served: Vec<(String, String)>,
    /// SoDPolicy documents, whose permissions are judged against everything
    /// served once all CRDs are known.
    pub policies: Vec<(Source, Value)>,
}

/// Kind with its group, namespace and name: what makes two objects one.
/// One string (`RoleBinding ns/name`, the mark, the group) per object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Key(Box<str>);

/// Separates the group in a [`Key`]; no name or kind holds it.
const GROUP_MARK: char = '\u{1f}';

impl Key {
    /// The object as messages name it: `SoDPolicy name`.
    fn object(&self) -> &str {
        self.0.split(GROUP_MARK).next().unwrap_or_default()
    }
}

impl Seen {
    /// Takes what the checks need from `value`; an unknown field of
    /// sodguard's kinds is an error right away (R12.1).
    pub fn document(&mut self, source: &Source, value: &Value) -> Result<(), LoadError> {
        let unknown = strict::unknown_fields(value);
        if !unknown.is_empty() {
            return Err(LoadError::UnknownFields {
                at: Box::new(source.clone()),
                object: ObjectRef::of(value).to_string(),
                fields: unknown.join(", "),
            });
        }
        let tm = TypeMeta::of(value);
        let object = ObjectRef::of(value);
        if object.name.is_some() {
            self.keys.push((
                Key(format!("{object}{GROUP_MARK}{}", tm.group()).into_boxed_str()),
                source.document as u32,
                source.item.map(|i| i as u32),
            ));
        }
        self.served.extend(strict::crd_serves(value));
        if tm.group() == strict::GROUP && tm.kind == "SoDPolicy" {
            self.policies.push((source.clone(), value.clone()));
        }
        Ok(())
    }
}

/// All files' [`Seen`], in file order.
#[derive(Debug, Default)]
pub(super) struct Judge {
    files: Vec<std::path::PathBuf>,
    /// One entry per named object of the input, filled on the one thread
    /// that takes the files in order: hashed with foldhash (randomly seeded),
    /// not SipHash, which cost 5 % of a large `check`.
    first: HashMap<Key, (u32, u32, Option<u32>), foldhash::fast::RandomState>,
    duplicate: Option<LoadError>,
    served: Served,
    policies: Vec<(Source, Value)>,
}

impl Judge {
    /// Takes what was seen in `file`, the next file in order.
    pub fn take(&mut self, file: &std::path::Path, seen: Seen) {
        let f = self.files.len() as u32;
        self.files.push(file.to_path_buf());
        let source = |files: &[std::path::PathBuf],
                      (f, document, item): (u32, u32, Option<u32>)| Source {
            file: files[f as usize].clone(),
            document: document as usize,
            item: item.map(|i| i as usize),
        };
        for (key, document, item) in seen.keys {
            match self.first.entry(key) {
                Entry::Occupied(e) if self.duplicate.is_none() => {
                    self.duplicate = Some(LoadError::Duplicate {
                        object: e.key().object().to_string(),
                        first: Box::new(source(&self.files, *e.get())),
                        second: Box::new(source(&self.files, (f, document, item))),
                    });
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(e) => {
                    e.insert((f, document, item));
                }
            }
        }
        self.served.extra.extend(seen.served);
        self.policies.extend(seen.policies);
    }

    /// The error of the input as a whole, else its warnings.
    pub fn finish(self) -> Result<Vec<String>, LoadError> {
        if let Some(e) = self.duplicate {
            return Err(e);
        }
        let mut warnings = Vec::new();
        for (source, value) in &self.policies {
            let object = ObjectRef::of(value);
            for w in strict::impossible_permissions(value, &self.served) {
                warnings.push(format!("{source}: {object}: {w}"));
            }
        }
        Ok(warnings)
    }
}
