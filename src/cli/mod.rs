//! The `sodguard` command line. Thin: parse arguments, load, ask the engine,
//! print.

pub mod authz;
mod check;
mod explain;
mod grant;
mod hygiene;
mod output;
mod report;
mod test;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;

use crate::load::{LoadReport, load_state};

/// Exit codes shared by every command.
pub const EXIT_OK: u8 = 0;
pub const EXIT_VIOLATIONS: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "sodguard",
    version,
    about = "Segregation of duties for Kubernetes RBAC"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info,sodguard=debug`).
    #[arg(long, env = "SODGUARD_LOG", default_value = "warn", global = true)]
    pub log: String,
    /// Log format.
    #[arg(long, env = "SODGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report every violation in a set of manifests.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Show what one subject holds, per policy and namespace, and why.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// Print the reports the review-time audit would write (OpenReports).
    Report(ReportArgs),
    /// Run SoDTestCase files.
    #[command(after_help = TEST_EXAMPLES)]
    Test(TestArgs),
    /// Print the CustomResourceDefinitions.
    Crd,
    /// Print the AuthorizationConfiguration entry (kube-apiserver
    /// --authorization-config) that chains sodguard's use-time webhook
    /// before RBAC, for the policies with `useTime.action: Deny`.
    #[command(after_help = AUTHZ_EXAMPLES)]
    AuthzConfig(authz::AuthzConfigArgs),
    /// Just-in-time grants on the cluster (R10), as the current user.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// Approve or review an SoDException on the cluster, as the current user.
    #[command(subcommand)]
    Exception(grant::ExceptionCommand),
    /// Run the validating admission webhook.
    Serve(Box<crate::serve::ServeArgs>),
}

const CHECK_EXAMPLES: &str = "Examples:
  # every violation in a folder of manifests (exit 1 if one is under Deny)
  sodguard check -f cluster/ -f policies/

  # a rendered chart or kustomization, from standard input
  helm template my-app ./chart | sodguard check -f - -f policies/

  # one namespace, as YAML, with exceptions judged at a given time
  sodguard check -f cluster/ -n payments -o yaml --now 2026-11-28T12:00:00Z

  # the live cluster of the current kubeconfig context (as `kubectl sod check`)
  sodguard check";

const EXPLAIN_EXAMPLES: &str = "Examples:
  sodguard explain ServiceAccount:payments:api -f cluster/ -f policies/
  # the user name the API server gives a ServiceAccount works too
  sodguard explain system:serviceaccount:payments:api -f cluster/
  sodguard explain Group:ops -f cluster/ -o json";

const AUTHZ_EXAMPLES: &str = "Examples:
  # the authorizer entry for the policies in a folder
  sodguard authz-config -f policies/

  # a whole configuration (Node, sodguard, RBAC) and the webhook's kubeconfig
  sodguard authz-config -f policies/ --full --url https://10.0.0.5:8443/authorize \\
    --ca-file /etc/kubernetes/pki/sodguard-ca.crt --write-kubeconfig sodguard-authz.kubeconfig";

const TEST_EXAMPLES: &str = "Examples:
  sodguard test policies/tests/
  # only the cases whose name contains `break-glass`, with a JUnit report for CI
  sodguard test policies/tests/ --run break-glass --junit report.xml";

/// Where the state comes from: files, or else the cluster of the current
/// kubeconfig context (as `kubectl sod`).
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// Files or folders of YAML/JSON manifests (repeatable; `-` reads
    /// standard input); without them the current kubeconfig context's
    /// cluster is read.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Kubeconfig file, when reading a cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context, when reading a cluster.
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: Source,
    /// The time exceptions are judged at (RFC 3339); default: now.
    #[arg(long, env = "SODGUARD_NOW")]
    pub now: Option<Timestamp>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Only the violations in this namespace (and the exit code of those).
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// Namespaces the webhook configuration excludes, as given to `serve`:
    /// their ServiceAccounts count as soon as a binding names them (R7.10).
    #[arg(long, env = "SODGUARD_EXCLUDED_NAMESPACES", value_delimiter = ',')]
    pub excluded_namespaces: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportOutput {
    Yaml,
    Json,
}

/// Exit code 1 when a report has a `fail` result (a violation under a
/// `Deny` policy, a stale token, an unreviewed break-glass window).
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub source: Source,
    /// The time exceptions and token ages are judged at (RFC 3339); default: now.
    #[arg(long, env = "SODGUARD_NOW")]
    pub now: Option<Timestamp>,
    /// YAML (a stream of reports) or JSON (a `List`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ReportOutput::Yaml)]
    pub output: ReportOutput,
    /// The report API: OpenReports, or the older wgpolicyk8s.io PolicyReport.
    #[arg(long, env = "SODGUARD_REPORT_FORMAT", value_enum, default_value_t = crate::audit::ReportFormat::Openreports)]
    pub format: crate::audit::ReportFormat,
    /// Namespaces the webhook configuration excludes, as given to `serve`.
    #[arg(long, env = "SODGUARD_EXCLUDED_NAMESPACES", value_delimiter = ',')]
    pub excluded_namespaces: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub source: Source,
    /// ServiceAccount:NAMESPACE:NAME, User:NAME or Group:NAME (may also come
    /// last after the -f paths: `explain -f a/ b/ ServiceAccount:ns:n`).
    pub subject: Option<String>,
    #[arg(long, env = "SODGUARD_NOW")]
    pub now: Option<Timestamp>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// SoDTestCase files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// A list of case file names known not to pass yet (a name and a reason
    /// per line). They are run and reported as pending, never counted as
    /// passed or failed.
    #[arg(long, env = "SODGUARD_PENDING")]
    pub pending: Option<PathBuf>,
    /// Also write the results as a JUnit XML report (read by CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Only the cases whose name contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    pub run: Option<String>,
}

/// Errors that stop a command (exit code 2). Violations are not errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    #[error(transparent)]
    Case(#[from] crate::testcase::CaseError),
    #[error(transparent)]
    Subject(#[from] crate::model::IdentityParseError),
    #[error("cannot read the cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{}: no SoDTestCase found: a test run that runs nothing proves nothing", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoCases(Vec<PathBuf>),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A request to the cluster that failed (grant and exception commands).
    #[error("{0}")]
    Request(String),
}

/// The name usage lines show: `kubectl sod` when run as the kubectl
/// plugin (kubectl runs `kubectl-sod` from PATH), else `sodguard`.
fn command_name() -> Option<&'static str> {
    let argv0 = std::env::args_os().next()?;
    let file = std::path::Path::new(&argv0)
        .file_stem()?
        .to_str()?
        .to_string();
    (file == "kubectl-sod").then_some("kubectl sod")
}

fn parse_args() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    if let Some(name) = command_name() {
        cmd = cmd.name(name).bin_name(name);
    }
    Cli::from_arg_matches(&cmd.try_get_matches()?)
}

pub fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            });
        }
    };
    init_tracing(&cli.log, cli.log_format);
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`| head`): nothing left to tell it.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            output::print_error(e);
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

pub fn run(command: Command) -> Result<u8, CliError> {
    match command {
        Command::Check(a) => check::run(&a),
        Command::Explain(a) => explain::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Test(a) => test::run(&a),
        Command::Serve(a) => serve(*a),
        Command::Grant(c) => grant::run_grant(&c),
        Command::Exception(c) => grant::run_exception(&c),
        Command::AuthzConfig(a) => authz::run(&a),
        Command::Crd => {
            let mut out = std::io::stdout().lock();
            out.write_all(crate::crd::crds_yaml().as_bytes())?;
            Ok(EXIT_OK)
        }
    }
}

fn serve(args: crate::serve::ServeArgs) -> Result<u8, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.into())
        .enable_all()
        .build()?;
    match runtime.block_on(crate::serve::run(args)) {
        Ok(()) => Ok(EXIT_OK),
        Err(e) => {
            // A usage error is the user's to read once, on stderr; a failure
            // while serving also goes to the log the operator collects.
            if !e.is_usage() {
                tracing::error!(error = %e, "sodguard serve stopped");
            }
            output::print_error(&e);
            Ok(if e.is_usage() {
                EXIT_BAD_INPUT
            } else {
                EXIT_VIOLATIONS
            })
        }
    }
}

fn init_tracing(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour only when a person reads stderr on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The state of `source`: its files, or else the current context's cluster.
pub fn load_source(source: &Source) -> Result<(crate::engine::index::Index, LoadReport), CliError> {
    if !source.files.is_empty() {
        let (index, report) = load_state(&source.files)?;
        // Nothing read is not "no violation" (R12): a wrong path or an
        // empty render would otherwise pass as a clean cluster.
        if report.documents == 0 {
            return Err(crate::load::LoadError::Empty(source.files.clone()).into());
        }
        return Ok((index, report));
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
