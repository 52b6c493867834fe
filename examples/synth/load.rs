//! Reading a synthetic cluster the way `sodguard check` does: from a folder,
//! or straight from the generator without writing the files.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;

use sodguard::decode::convert;
use sodguard::load::Document;
use sodguard::model::Object;

use super::generate::Error;
use super::write::Sink;

/// Parses every document under `dir` as `sodguard check` does (one file at a
/// time, the JSON values dropped after each file). Returns the objects and
/// the number of documents.
pub fn load_objects(dir: &Path) -> Result<(Vec<Object>, usize), Error> {
    let mut objects = Vec::new();
    let mut docs = 0;
    for file in sodguard::load::files(&[dir.to_path_buf()])? {
        docs += convert_into(sodguard::load::read_file(&file)?, &mut objects)?;
    }
    Ok((objects, docs))
}

/// Converts parsed documents to objects; returns how many documents there were.
pub(crate) fn convert_into(docs: Vec<Document>, objects: &mut Vec<Object>) -> Result<usize, Error> {
    let n = docs.len();
    for doc in docs {
        if let Some(o) = convert(&doc.value).map_err(|e| format!("{}: {e}", doc.source))? {
            objects.push(o);
        }
    }
    Ok(n)
}

/// A sink that parses each generated file as it is finished, with the same
/// parser as [`load_objects`], and keeps only the objects: a cluster too
/// large to want on disk (1M RoleBindings are about 640 MB of YAML) is held
/// as YAML one file at a time.
#[derive(Default)]
pub struct Parsed {
    files: RefCell<BTreeMap<String, Vec<Object>>>,
    docs: Cell<usize>,
}

impl Sink for Parsed {
    fn file(&self, name: &str, text: &str) -> Result<(), Error> {
        let mut objects = Vec::new();
        let n = convert_into(
            sodguard::load::parse_str(Path::new(name), text)?,
            &mut objects,
        )?;
        self.docs.set(self.docs.get() + n);
        self.files.borrow_mut().insert(name.to_string(), objects);
        Ok(())
    }
}

impl Parsed {
    /// The objects in the order [`load_objects`] reads the same files from a
    /// folder (by file name), and the number of documents.
    pub fn into_objects(self) -> (Vec<Object>, usize) {
        let objects = self.files.into_inner().into_values().flatten().collect();
        (objects, self.docs.get())
    }
}
