//! `inventory`: see `inventory --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    inventory_cli::run(inventory_cli::Cli::parse()).await
}
