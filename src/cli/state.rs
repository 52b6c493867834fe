use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CliError;
use crate::index::Index;
use crate::load;
use crate::model::{TypeMeta, convert};

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
pub fn load_state(paths: &[PathBuf]) -> Result<(Index, LoadReport), CliError> {
    let mut report = LoadReport::default();
    let mut index = Index::new();
    index.begin_bulk();
    for file in load::files(paths)? {
        report.files += 1;
        for doc in load::read_file(&file)? {
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
                    return Err(CliError::Object {
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

/// The state of `source`: its files, or else the current context's cluster.
pub fn load_source(source: &super::Source) -> Result<(Index, LoadReport), CliError> {
    if !source.files.is_empty() {
        return load_state(&source.files);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let index = runtime.block_on(async {
        let client =
            crate::cluster::client(source.kubeconfig.as_deref(), source.context.as_deref()).await?;
        crate::cluster::snapshot(&client).await
    })?;
    Ok((index, LoadReport::default()))
}
