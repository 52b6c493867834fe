//! Running the `sodguard` binary: one [`Run`] per process, its output and
//! exit, and the assertions every command-line test makes on it.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sodguard");
/// A run still going after this is a hang.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Address-space cap of every run, in KiB (4 GiB): an input that makes
/// sodguard allocate without bound fails its test (abort on allocation
/// failure) instead of the machine.
pub const MEMORY_CAP_KB: u64 = 4 << 20;

/// The settings that would make a run depend on the caller's environment.
const ENV_TO_CLEAR: &[&str] = &[
    "SODGUARD_NOW",
    "SODGUARD_REPORT_FORMAT",
    "SODGUARD_LOG",
    "SODGUARD_LOG_FORMAT",
    "CLICOLOR_FORCE",
    "CLICOLOR",
    "NO_COLOR",
];

/// What a finished run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub what: String,
    pub elapsed: Duration,
}

/// `s`, cut to a length a failure message can show.
fn clip(s: &str) -> String {
    const MAX: usize = 3000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

impl Run {
    /// The command, its exit and its output, for a failure message.
    pub fn context(&self) -> String {
        format!(
            "command: {}\nexit: {} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            match self.code {
                Some(101) => "101 (panic)".to_string(),
                Some(c) => c.to_string(),
                None => "killed by a signal (crash, abort or stack overflow)".to_string(),
            },
            self.elapsed,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }

    /// The crash-freedom contract — exit 0, 1 or 2, no panic, an error on
    /// exit 2 that starts with `error:` and names `file` (when given) —
    /// `None` when it holds, else why not.
    pub fn violation(&self, file: Option<&str>) -> Option<String> {
        let problem = match self.code {
            Some(0 | 1) if self.stderr.contains("panicked") => Some("panic message"),
            Some(0 | 1) => None,
            Some(2) if !self.stderr.starts_with("error:") => {
                Some("exit 2 without a message starting with `error:`")
            }
            Some(2) if self.stderr.contains("panicked") => Some("panic message"),
            Some(2) => match file {
                Some(f) if !self.stderr.contains(f) => Some("the error does not name the file"),
                _ => None,
            },
            Some(101) => Some("panic"),
            Some(_) => Some("exit code other than 0, 1 or 2"),
            None => Some("killed by a signal"),
        };
        problem.map(|p| format!("{p}\n{}", self.context()))
    }

    /// Asserts the crash-freedom contract (see [`Run::violation`]).
    #[track_caller]
    pub fn survived(&self, file: Option<&str>) -> &Self {
        if let Some(v) = self.violation(file) {
            panic!("{v}");
        }
        self
    }

    /// Asserts the exit code, the crash-freedom contract, and that no ANSI
    /// escape reached the output (never a terminal here).
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.context()
        );
        self.survived(None);
        assert!(
            !self.stdout.contains('\x1b') && !self.stderr.contains('\x1b'),
            "ANSI escape codes in output that is not a terminal\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    fn contains(&self, stream: &str, text: &str, needle: &str, wanted: bool) -> &Self {
        assert!(
            text.contains(needle) == wanted,
            "{stream} {} {needle:?}\n{}",
            if wanted { "lacks" } else { "has" },
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        self.contains("stdout", &self.stdout, needle, true)
    }

    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        self.contains("stdout", &self.stdout, needle, false)
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        self.contains("stderr", &self.stderr, needle, true)
    }

    /// stdout read as one JSON value.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.context()))
    }

    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// Runs `sodguard ARGS` under [`MEMORY_CAP_KB`].
pub fn sodguard<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    sodguard_capped(args, MEMORY_CAP_KB)
}

/// Runs `sodguard ARGS` with no stdin, in a predictable environment: no
/// clock or log settings from the caller, nothing that forces colours, and a
/// TERM that says the terminal could do colours (they must still be dropped:
/// stdout is a pipe). The address space is capped at `cap_kb` KiB where
/// `/bin/sh` can set `ulimit -v`.
pub fn sodguard_capped<I, S>(args: I, cap_kb: u64) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let what = std::iter::once("sodguard".to_string())
        .chain(args.iter().map(|a| clip(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = if Path::new("/bin/sh").exists() {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(r#"ulimit -v "$1" 2>/dev/null; shift; exec "$@""#)
            .arg("sh")
            .arg(cap_kb.to_string())
            .arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(&args);
    for var in ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
    cmd.env("TERM", "xterm-256color")
        .env("COLORTERM", "truecolor")
        .env("RUST_BACKTRACE", "0");
    run_with_timeout(cmd, what)
}

/// Runs `cmd` with no stdin and its output captured; a run still going after
/// [`TIMEOUT`] is killed and fails the test as a hang.
fn run_with_timeout(mut cmd: Command, what: String) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("cannot start sodguard");
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let t_out = read_all(Box::new(child.stdout.take().unwrap()));
    let t_err = read_all(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {TIMEOUT:?} (a hang): {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
        what,
        elapsed: start.elapsed(),
    }
}

/// `sodguard check -f FILE...`.
pub fn check<P: AsRef<Path>>(files: &[P]) -> Run {
    check_with(files, &[])
}

/// `sodguard check -f FILE... EXTRA...`.
pub fn check_with<P: AsRef<Path>>(files: &[P], extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec!["check".as_ref()];
    for f in files {
        args.extend(["-f".as_ref(), f.as_ref().as_os_str()]);
    }
    args.extend(extra.iter().map(OsStr::new));
    sodguard(args)
}

/// One run of many, and the file name its error must mention.
pub struct Job {
    pub args: Vec<OsString>,
    pub file: Option<String>,
}

impl Job {
    /// `check -f FILE...`, whose error must name `named`.
    pub fn check<P: AsRef<Path>>(files: &[P], named: &Path) -> Job {
        let mut args: Vec<OsString> = vec!["check".into()];
        for f in files {
            args.push("-f".into());
            args.push(f.as_ref().as_os_str().to_owned());
        }
        Job {
            args,
            file: named.file_name().map(|n| n.to_string_lossy().into_owned()),
        }
    }
}

/// Runs jobs on a few threads and asserts the crash-freedom contract for
/// all of them, listing every failure.
#[track_caller]
pub fn run_all(jobs: Vec<Job>) -> Vec<Run> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Run>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let run = sodguard(&job.args);
                    results.lock().unwrap()[i] = Some(run);
                }
            });
        }
    });
    let runs: Vec<Run> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let failures: Vec<String> = runs
        .iter()
        .zip(&jobs)
        .filter_map(|(r, j)| r.violation(j.file.as_deref()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs broke the contract; the first ones:\n\n{}",
        failures.len(),
        runs.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    runs
}
