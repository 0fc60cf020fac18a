use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = inspectd::cli::Cli::parse();
    inspectd::logging::init(&cli.log);
    inspectd::cli::main(cli)
}
