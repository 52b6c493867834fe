//! No false greens (R12): what loading refuses or warns about beyond a
//! document that does not convert. An input that holds nothing, two objects
//! that claim the same name (the answer would depend on the order of `-f`),
//! fields the schema does not know, and permissions nothing can match.

use serde_json::Value;
use std::collections::BTreeMap;

use super::{LoadError, Source};
use crate::decode::strict::{self, Served};
use crate::decode::{ObjectRef, TypeMeta};

/// What one document contributes to the checks made once all files are read.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Every named object: its identity and where it is.
    pub keys: Vec<(Key, Source)>,
    /// What the CustomResourceDefinitions of the input serve.
    pub served: Vec<(String, String)>,
    /// SoDPolicy documents, whose permissions are judged against everything
    /// served once all CRDs are known.
    pub policies: Vec<(Source, Value)>,
}

/// Kind (with its group), namespace and name: what makes two objects one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    group: String,
    object: String,
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
        let object = ObjectRef::of(value);
        if object.name.is_some() {
            self.keys.push((
                Key {
                    group: TypeMeta::of(value).group().to_string(),
                    object: object.to_string(),
                },
                source.clone(),
            ));
        }
        self.served.extend(strict::crd_serves(value));
        let tm = TypeMeta::of(value);
        if tm.group() == strict::GROUP && tm.kind == "SoDPolicy" {
            self.policies.push((source.clone(), value.clone()));
        }
        Ok(())
    }
}

/// All files' [`Seen`], in file order.
#[derive(Debug, Default)]
pub(super) struct Judge {
    first: BTreeMap<Key, Source>,
    duplicate: Option<LoadError>,
    served: Served,
    policies: Vec<(Source, Value)>,
}

impl Judge {
    pub fn take(&mut self, seen: Seen) {
        for (key, source) in seen.keys {
            match self.first.get(&key) {
                Some(first) if self.duplicate.is_none() => {
                    self.duplicate = Some(LoadError::Duplicate {
                        object: key.object.clone(),
                        first: Box::new(first.clone()),
                        second: Box::new(source),
                    });
                }
                Some(_) => {}
                None => {
                    self.first.insert(key, source);
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
