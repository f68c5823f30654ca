//! `poolguard`: reproduces the classic pool failures and measures them (the code and its
//! documentation are in the `poolguard_cli` library).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    poolguard_cli::main()
}
