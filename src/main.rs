use std::process::ExitCode;

fn main() -> ExitCode {
    pipecron::cli::run(std::env::args_os())
}
