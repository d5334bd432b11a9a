//! The `inventory` command line. `inventory dev` runs the whole service in one process on the
//! embedded backend: the HTTP API on 127.0.0.1, the command queue and its processor in-process.

pub mod audit;
pub mod dev;
pub mod feed_source;
pub mod ledger;
pub mod load;
pub mod notice_file;
pub mod parked;
mod queue_source;
pub mod shard_poller;
pub mod smoke;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inventory_core::aws::{local_config, sdk_config};

/// The SDK configuration of a tool's `--endpoint-url`: a local AWS (moto) at it, or AWS as the
/// environment configures it. A malformed setting of the environment ends the process with
/// exit code 2 (the tools' "could not reach"), naming it.
pub(crate) async fn tool_sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    match endpoint_url {
        Some(url) => local_config(url).await,
        None => sdk_config().await.unwrap_or_else(|err| {
            eprintln!("inventory: {err}");
            std::process::exit(2)
        }),
    }
}

/// Inventory as a service that never oversells.
#[derive(Debug, Parser)]
#[command(name = "inventory", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Subcommands,
}

#[derive(Debug, Subcommand)]
enum Subcommands {
    /// Run the whole service locally on the embedded in-memory backend (no AWS account needed),
    /// or with --endpoint-url on DynamoDB and Kinesis at a local AWS such as moto.
    Dev(dev::DevArgs),
    /// Create the events table, the command stream and the archive bucket at a local AWS (moto)
    /// if missing, e.g. before `sam local invoke` or `cargo lambda watch` against it.
    Init(dev::InitArgs),
    /// Rebuild one SKU from the S3 archive plus the table and compare it with its snapshot and
    /// read view (exit 1 on a mismatch, 2 if the table or bucket cannot be read).
    Replay(audit::ReplayArgs),
    /// Audit the SKUs archived today and yesterday (UTC), or --all SKUs: rebuild each from the
    /// archive plus the table, check for gaps and compare with snapshots and read views (exit 1
    /// on a mismatch, 2 if the table or bucket cannot be read).
    Audit(audit::AuditArgs),
    /// Print an item's ledger, every change of its stock from its first (the table and the S3
    /// archive), as JSON lines or --csv (exit 1 for an unknown SKU, 2 if the history cannot be
    /// read whole).
    Ledger(ledger::LedgerArgs),
    /// Check the service's promises end to end against any deployment (inventory dev, or a
    /// deployed stack's ApiUrl): one line per check; exit 1 if any fails.
    Smoke(smoke::SmokeArgs),
    /// A flash sale against a deployment: fresh SKUs stocked, shoppers reserving and checking
    /// out, then rates, latency percentiles per route, answers, units sold against stock and the
    /// verdict that nothing oversold. Refuses a target not on this machine unless told.
    Load(load::LoadArgs),
    /// Print the API's OpenAPI 3.1 document, as GET /openapi.json serves it.
    Openapi,
    /// Operate on queued commands: list the parked ones, redrive them.
    #[command(subcommand)]
    Commands(parked::CommandsCommand),
}

/// Runs the parsed command line; the exit code says whether it went well.
pub async fn run(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Subcommands::Dev(args) => dev::run(args).await,
        Subcommands::Init(args) => dev::init(args).await,
        Subcommands::Replay(args) => return audit::replay(args).await,
        Subcommands::Audit(args) => return audit::audit(args).await,
        Subcommands::Commands(command) => return parked::run(command).await,
        Subcommands::Ledger(args) => return ledger::ledger(args).await,
        Subcommands::Smoke(args) => return smoke::smoke(args).await,
        Subcommands::Load(args) => return load::load(args).await,
        Subcommands::Openapi => {
            println!("{}", reservations_api::openapi_json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("inventory: {err}");
            ExitCode::FAILURE
        }
    }
}
