use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{LoadError, read_file};
use crate::decode::{TypeMeta, convert};
use crate::engine::index::Index;

/// What loading found besides the objects.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub files: usize,
    pub documents: usize,
    /// Documents of kinds sodguard has no use for, by kind.
    pub skipped: BTreeMap<String, usize>,
}

impl LoadReport {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Reads manifests into an index. Files are parsed one at a time so that
/// only the small domain objects outlive their file.
pub fn load_state(paths: &[PathBuf]) -> Result<(Index, LoadReport), LoadError> {
    let mut report = LoadReport::default();
    let mut index = Index::new();
    index.begin_bulk();
    for file in super::files(paths)? {
        report.files += 1;
        for doc in read_file(&file)? {
            report.documents += 1;
            match convert(&doc.value) {
                Ok(Some(o)) => {
                    let _ = index.apply(o);
                }
                Ok(None) => {
                    let tm = TypeMeta::of(&doc.value);
                    let kind = if tm.kind.is_empty() {
                        "(no kind)".to_string()
                    } else {
                        tm.kind
                    };
                    *report.skipped.entry(kind).or_default() += 1;
                }
                Err(error) => {
                    return Err(LoadError::Object {
                        at: Box::new(doc.source),
                        error: Box::new(error),
                    });
                }
            }
        }
    }
    index.finish_bulk();
    Ok((index, report))
}
