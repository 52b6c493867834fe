//! Running the `sodguard` binary from integration tests.
#![allow(dead_code)] // each test crate uses a different part

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The settings that would make a run depend on the caller's environment.
pub const ENV_TO_CLEAR: &[&str] = &[
    "SODGUARD_NOW",
    "SODGUARD_LOG",
    "SODGUARD_LOG_FORMAT",
    "CLICOLOR_FORCE",
    "CLICOLOR",
    "NO_COLOR",
];

/// What a finished run printed, and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `cmd` with no stdin and its output captured; a run still going after
/// `timeout` is killed and fails the test as a hang.
pub fn run_with_timeout(mut cmd: Command, what: &str, timeout: Duration) -> Finished {
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
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?} (a hang): {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Finished {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
        elapsed: start.elapsed(),
    }
}
