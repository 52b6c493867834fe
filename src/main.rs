#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    sodguard::cli::main()
}
