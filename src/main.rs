use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = inspectd::cli::Cli::parse();
    inspectd::logging::init_with(&cli.log, cli.log_format);
    inspectd::cli::main(cli)
}
