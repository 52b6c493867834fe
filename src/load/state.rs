use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::LoadError;
use crate::decode::{TypeMeta, convert};
use crate::engine::index::Index;
use crate::model::Object;

/// What loading found besides the objects.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub files: usize,
    pub documents: usize,
    /// Documents of kinds sodguard has no use for, by kind.
    pub skipped: BTreeMap<String, usize>,
    /// What may make the answer wrong without making it unreadable (R12.2),
    /// each message naming its file, object and field.
    pub warnings: Vec<String>,
}

impl LoadReport {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Who reads the files for [`load_state_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// A thread per core: the fastest, for a command that exits once done.
    EveryCore,
    /// The calling thread alone: for a process that keeps the index.
    /// Objects converted on other threads stay on their allocator pages
    /// beside that thread's parse garbage, which the allocator keeps
    /// resident for a while after it is freed: at 100k bindings `serve`
    /// peaked at 170–180 MiB loading on two threads and 137 MiB on one,
    /// ready 0.6 s later (BENCHMARKS.md).
    One,
}

/// Reads manifests into an index. Files are parsed and converted in
/// parallel, each on its own, so that only the small domain objects outlive
/// their file; the index takes them in file order, so the result and the
/// error reported (the first in file order) do not depend on scheduling.
pub fn load_state(paths: &[PathBuf]) -> Result<(Index, LoadReport), LoadError> {
    load_state_with(paths, Readers::EveryCore)
}

/// [`load_state`] with the files read by `readers`.
pub fn load_state_with(
    paths: &[PathBuf],
    readers: Readers,
) -> Result<(Index, LoadReport), LoadError> {
    let files = super::files(paths)?;
    let mut report = LoadReport::default();
    let mut index = Index::new();
    let mut judge = super::hygiene::Judge::default();
    index.begin_bulk();
    let mut next = files.iter();
    let threads = match readers {
        Readers::EveryCore => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Readers::One => 1,
    };
    in_file_order(&files, threads, read_objects, |file| {
        if let Some(path) = next.next() {
            judge.take(path, file.seen);
        }
        report.files += 1;
        report.documents += file.documents;
        for kind in file.skipped {
            *report.skipped.entry(kind).or_default() += 1;
        }
        for o in file.objects {
            let _ = index.apply(o);
        }
    })?;
    index.finish_bulk();
    report.warnings = judge.finish()?;
    Ok((index, report))
}

/// What one file holds for the index.
struct FileObjects {
    documents: usize,
    objects: Vec<Object>,
    /// The kind of each document sodguard has no use for.
    skipped: Vec<String>,
    seen: super::hygiene::Seen,
}

/// Converts each document as it is parsed: only the domain objects of a
/// file are ever held, not all its values. A document that does not convert
/// is reported unless the file turns out to be unreadable further on, as
/// when the whole file is read first.
fn read_objects(file: &Path) -> Result<FileObjects, LoadError> {
    let mut out = FileObjects {
        documents: 0,
        objects: Vec::new(),
        skipped: Vec::new(),
        seen: Default::default(),
    };
    let mut failed = None;
    super::read_file_each(file, |doc| {
        out.documents += 1;
        if failed.is_some() {
            return;
        }
        if let Err(e) = out.seen.document(&doc.source, &doc.value) {
            failed = Some(e);
            return;
        }
        match convert(&doc.value) {
            Ok(Some(o)) => out.objects.push(o),
            Ok(None) => {
                let tm = TypeMeta::of(&doc.value);
                out.skipped.push(if tm.kind.is_empty() {
                    "(no kind)".to_string()
                } else {
                    tm.kind
                });
            }
            Err(error) => {
                failed = Some(LoadError::Object {
                    at: Box::new(doc.source),
                    error: Box::new(error),
                });
            }
        }
    })?;
    failed.map_or(Ok(out), Err)
}

/// Runs `work` on every file on up to `threads` threads and hands the
/// results to `take` in the order of `files`, stopping at the first error
/// in that order — what a loop over the files would do.
fn in_file_order<T: Send>(
    files: &[PathBuf],
    threads: usize,
    work: impl Fn(&Path) -> Result<T, LoadError> + Sync,
    mut take: impl FnMut(T),
) -> Result<(), LoadError> {
    let threads = threads.min(files.len());
    if threads <= 1 {
        for f in files {
            take(work(f)?);
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let mut spawned = 0;
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            let worker = move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    if tx.send((i, work(f))).is_err() {
                        break;
                    }
                }
            };
            // Deeply nested documents recurse in the parser: the same stack
            // as the main thread, on which they are known to stay in bounds.
            let started = std::thread::Builder::new()
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, worker);
            spawned += usize::from(started.is_ok());
        }
        drop(tx);
        if spawned == 0 {
            for f in files {
                take(work(f)?);
            }
            return Ok(());
        }
        // Results that arrived ahead of their turn.
        let mut ahead = BTreeMap::new();
        let mut want = 0;
        for (i, result) in rx {
            ahead.insert(i, result);
            while let Some(result) = ahead.remove(&want) {
                match result {
                    Ok(t) => take(t),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                want += 1;
            }
        }
        Ok(())
    })
}

const WORKER_STACK: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn files(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    /// The first file finishes last: what it holds still comes first.
    #[test]
    fn results_are_taken_in_file_order() {
        let files = files(&["0", "1", "2", "3", "4", "5"]);
        let mut seen = Vec::new();
        in_file_order(
            &files,
            4,
            |f| {
                if f == Path::new("0") {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok(f.to_path_buf())
            },
            |f| seen.push(f),
        )
        .unwrap();
        assert_eq!(seen, files);
    }

    /// A later file failing first does not hide the first file's error,
    /// nor does it stop the files before it from being taken.
    #[test]
    fn the_first_error_in_file_order_is_reported() {
        let files = files(&["ok", "slow-bad", "fast-bad", "after"]);
        let mut seen = Vec::new();
        let err = in_file_order(
            &files,
            4,
            |f| {
                if f == Path::new("slow-bad") {
                    std::thread::sleep(Duration::from_millis(200));
                }
                if f.to_string_lossy().ends_with("bad") {
                    return Err(LoadError::NotFound(f.to_path_buf()));
                }
                Ok(f.to_path_buf())
            },
            |f| seen.push(f),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "slow-bad: no such file or folder");
        assert_eq!(seen, vec![PathBuf::from("ok")]);
    }

    const NO_ROLE_REF: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: a}\n";

    fn read(text: &str) -> Result<FileObjects, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.yaml");
        std::fs::write(&f, text).unwrap();
        read_objects(&f)
    }

    /// Documents are converted while the file is still being parsed: a
    /// syntax error further on still wins over a document that does not
    /// convert, as when the whole file was parsed first.
    #[test]
    fn a_syntax_error_later_in_the_file_wins() {
        let text = format!("{NO_ROLE_REF}---\nkind: X\nx: [unclosed\n");
        let err = read(&text).err().unwrap();
        assert!(matches!(err, LoadError::Yaml { document: 2, .. }), "{err}");
        let err = read("- a list\n---\nx: [unclosed\n").err().unwrap();
        assert!(matches!(err, LoadError::Yaml { document: 2, .. }), "{err}");
        let text = format!("{NO_ROLE_REF}---\n- a list\n");
        let err = read(&text).err().unwrap();
        assert!(matches!(err, LoadError::NotAnObject { .. }), "{err}");
        let err = read(NO_ROLE_REF).err().unwrap();
        assert!(matches!(err, LoadError::Object { .. }), "{err}");
    }

    /// One reader gives what a reader per core gives: the same objects in
    /// the same order, the same report, the same first error.
    #[test]
    fn one_reader_loads_what_every_core_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for i in 0..6 {
            let f = dir.path().join(format!("{i}.yaml"));
            let text = format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa{i}, namespace: ns}}\n---\n\
                 apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: b{i}, namespace: ns}}\n\
                 roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r{i}}}\n\
                 subjects: [{{kind: ServiceAccount, name: sa{i}, namespace: ns}}]\n---\nkind: ConfigMap\n"
            );
            std::fs::write(&f, text).unwrap();
            paths.push(f);
        }
        let (every, every_report) = load_state(&paths).unwrap();
        let (one, one_report) = load_state_with(&paths, Readers::One).unwrap();
        assert_eq!(
            format!("{:?}", one.counts()),
            format!("{:?}", every.counts())
        );
        let key = crate::model::BindingKey {
            namespace: Some("ns".into()),
            name: "b3".into(),
        };
        assert_eq!(one.binding(&key).unwrap().role.name.as_ref(), "r3");
        assert_eq!(every.binding(&key).unwrap().role.name.as_ref(), "r3");
        assert_eq!(format!("{one_report:?}"), format!("{every_report:?}"));
        assert_eq!(one_report.documents, 18);
        std::fs::write(&paths[2], NO_ROLE_REF).unwrap();
        std::fs::write(&paths[4], "x: [unclosed\n").unwrap();
        let one = load_state_with(&paths, Readers::One)
            .err()
            .unwrap()
            .to_string();
        let every = load_state(&paths).err().unwrap().to_string();
        assert_eq!(one, every);
        assert!(one.contains("2.yaml"), "{one}");
    }
}
