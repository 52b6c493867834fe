#![forbid(unsafe_code)]

// mimalloc returns freed memory to the system far better than glibc's
// allocator does after the burst of parsing at start-up, and keeps the
// webhook's resident memory close to what the index really uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sodguard::cli::main()
}
