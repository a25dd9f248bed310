//! The `gantry` binary: parse the command line, run, exit with gantry's exit code.

fn main() -> std::process::ExitCode {
    gantry::cli::main()
}
