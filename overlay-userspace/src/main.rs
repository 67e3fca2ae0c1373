//! `overlay`: the privileged host daemon and the admin CLI.

use clap::Parser;

mod cli;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_level.as_deref());
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("overlay: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
