//! Synthetic cluster generator and measurement driver for sodguard.
//!
//! ```text
//! cargo run --release --example synth -- --out DIR [--seed N] [--scale F | --rolebindings N]
//! cargo run --release --example synth -- --measure DIR [--iterations N] [--requests N]
//! cargo run --release --example synth -- --measure DIR --breakdown
//! cargo run --release --example synth -- --measure-generated [--seed N] [--scale F | --rolebindings N]
//!                                        [--iterations N] [--requests N]
//! ```
//!
//! `--out` writes a synthetic cluster as multi-document YAML files into DIR
//! (one set of files per kind, chunked at 10,000 documents per file). At
//! `--scale 1` it holds 5,000 Namespaces, 50,000 ServiceAccounts, 20,000
//! Roles, 500 ClusterRoles (20 of them aggregated), 100,000 RoleBindings,
//! 2,000 ClusterRoleBindings and 3 SoDPolicies; `--scale F` multiplies every
//! count by F, and `--rolebindings N` is the scale N / 100,000. The output is
//! a pure function of the seed and the scale.
//!
//! Everything a ServiceAccount can hold comes from a small set of shapes whose
//! duties are known, so that the violations are planted rather than accidental:
//! the Roles of one namespace never conflict with each other, RoleBindings of
//! ServiceAccounts to ClusterRoles use ClusterRoles without any duty, and about
//! 0.5% of the ServiceAccounts are given a real secret-admin + secret-use
//! conflict (through the aggregated `edit`/`admin`, two ClusterRoles, a Role
//! and a ClusterRole, or a ClusterRoleBinding plus a RoleBinding). Another
//! 0.5% hold exactly one secret duty through a ClusterRole in a namespace whose
//! Role grants the other one: binding them to that Role is a request that must
//! be denied, which the benchmarks use.
//!
//! `--measure` loads a generated folder the way `sodguard check` does, and
//! prints the resident memory before and after building the index, the build
//! and evaluation times, and the latency distribution of admission reviews.
//! `--measure-generated` does the same on a cluster generated in this process
//! and parsed file by file as it is generated, without writing it.
//!
//! `benches/engine.rs` compiles the generator's modules (not `main`, `heap`
//! or `measure`) into the benchmarks.

mod generate;
mod heap;
mod latency;
mod load;
mod measure;
mod requests;
mod shapes;
mod write;

use std::path::PathBuf;
use std::time::Instant;

use generate::{Config, generate};
use measure::{Input, measure, memory_breakdown};

fn usage() -> ! {
    eprintln!(
        "usage: synth --out DIR [--seed N] [--scale F | --rolebindings N]\n       \
         synth --measure DIR [--iterations N] [--requests N]\n       \
         synth --measure DIR --breakdown\n       \
         synth --measure-generated [--seed N] [--scale F | --rolebindings N] \
         [--iterations N] [--requests N]"
    );
    std::process::exit(2)
}

/// What the command line asks for.
enum Command {
    Write(PathBuf, Config),
    Measure(Input),
    Breakdown(PathBuf),
}

struct Args {
    command: Command,
    calls: usize,
    n_requests: usize,
}

fn parse_args() -> Args {
    let mut out: Option<PathBuf> = None;
    let mut measure_dir: Option<PathBuf> = None;
    let mut generated = false;
    let mut seed = Config::default().seed;
    let mut scale: Option<f64> = None;
    let mut role_bindings: Option<usize> = None;
    let (mut calls, mut n_requests, mut breakdown) = (100_000, 300, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--out" => out = Some(val().into()),
            "--measure" => measure_dir = Some(val().into()),
            "--measure-generated" => generated = true,
            "--seed" => seed = val().parse().unwrap_or_else(|_| usage()),
            "--scale" => scale = Some(val().parse().unwrap_or_else(|_| usage())),
            "--rolebindings" => role_bindings = Some(val().parse().unwrap_or_else(|_| usage())),
            "--iterations" => calls = val().parse().unwrap_or_else(|_| usage()),
            "--requests" => n_requests = val().parse().unwrap_or_else(|_| usage()),
            "--breakdown" => breakdown = true,
            _ => usage(),
        }
    }
    let scale = match (scale, role_bindings) {
        (Some(_), Some(_)) => {
            eprintln!("synth: --scale and --rolebindings both set the size: give one");
            std::process::exit(2)
        }
        (Some(s), None) => s,
        (None, Some(n)) => Config::scale_for_role_bindings(n),
        (None, None) => Config::default().scale,
    };
    if !(scale > 0.0 && scale.is_finite()) {
        usage()
    }
    let cfg = Config { seed, scale };
    let command = match (out, measure_dir, generated, breakdown) {
        (Some(dir), None, false, false) => Command::Write(dir, cfg),
        (None, Some(dir), false, true) => Command::Breakdown(dir),
        (None, Some(dir), false, false) => Command::Measure(Input::Folder(dir)),
        (None, None, true, false) => Command::Measure(Input::Generated(cfg)),
        _ => usage(),
    };
    Args {
        command,
        calls,
        n_requests,
    }
}

fn main() {
    let args = parse_args();
    let result = match args.command {
        Command::Write(dir, cfg) => {
            let t = Instant::now();
            generate(&dir, &cfg).map(|s| println!("{s} | {:.2?} -> {}", t.elapsed(), dir.display()))
        }
        Command::Breakdown(dir) => memory_breakdown(&dir),
        Command::Measure(input) => measure(&input, args.calls, args.n_requests),
    };
    if let Err(e) = result {
        eprintln!("synth: {e}");
        std::process::exit(1);
    }
}
