//! `inventory commands parked` and `inventory commands redrive`: the commands the processor set
//! aside, listed and put back on the queue; `inventory commands requeue`: the accepted commands
//! that never reached an outcome, queued again. On AWS or at a local AWS (moto).
//!
//! Exit code: 0 when done, 1 when a redrive left something parked (unreadable by this version,
//! or changed meanwhile), 2 when the table or the stream could not be reached.

use std::process::ExitCode;
use std::sync::Arc;

use inventory_core::app::{
    format_rfc3339, parked_bytes, parse_rfc3339, RedriveSelection, Redriven,
};
use inventory_core::aws::{DynamoStore, KinesisQueue};
use inventory_core::domain::{CommandId, Timestamp};
use inventory_core::ports::{ParkedEntry, SystemClock};
use inventory_core::{Config, Inventory};

use crate::dev::ResourceNames;

/// Exit code when a redrive left something parked.
const LEFT_PARKED: u8 = 1;
/// Exit code when the table or the stream could not be reached.
const UNAVAILABLE: u8 = 2;

/// Where the table and the command stream are.
#[derive(Debug, clap::Args)]
pub struct CommandsTarget {
    /// A local AWS endpoint (moto), e.g. http://127.0.0.1:5000; without it, AWS as configured
    /// by the environment (AWS_REGION, AWS_PROFILE, credentials…).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    #[command(flatten)]
    /// The table and stream of the deployment.
    pub names: ResourceNames,
}

/// `inventory commands …`.
#[derive(Debug, clap::Subcommand)]
pub enum CommandsCommand {
    /// List the parked commands, oldest first: one line each with the command id, the SKU,
    /// when and why it was parked, and its body as queued.
    Parked {
        #[command(flatten)]
        /// Where the parked commands are.
        target: CommandsTarget,
    },
    /// Put parked commands back on the command stream under their own ids (a redrive can be
    /// repeated: a command applies once).
    Redrive {
        /// The command to redrive (repeatable).
        #[arg(long = "id", value_name = "COMMAND_ID", value_parser = parse_id,
            required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<CommandId>,
        /// Every parked command.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        /// Where the parked commands are and where to queue them again.
        target: CommandsTarget,
    },
    /// Queue again, each under its own id, every command answered 202 since a time that has no
    /// outcome (not applied, rejected or parked): what a record that left the command stream
    /// unapplied (past its retention) never did. One line each: id, SKU, accepted at, what was
    /// done, body. A command still on its way is queued twice and applied once, so a requeue can
    /// be repeated. Reads every command record of the table (a scan): kept for the dedupe
    /// window, so --since reaches back that far at most.
    Requeue {
        /// Commands accepted at or after this time (RFC 3339, e.g. 2026-12-07T09:30:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
        since: Timestamp,
        /// List them and queue nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        /// Where the command records are and where to queue them again.
        target: CommandsTarget,
    },
}

fn parse_id(raw: &str) -> Result<CommandId, String> {
    CommandId::parse(raw).map_err(|err| err.to_string())
}

/// Runs `inventory commands …`.
pub async fn run(command: CommandsCommand) -> ExitCode {
    match command {
        CommandsCommand::Parked { target } => {
            let inventory = connect(&target).await;
            match inventory.parked_commands().await {
                Ok(parked) => {
                    if parked.is_empty() {
                        eprintln!("no parked commands");
                    }
                    for entry in &parked {
                        println!("{}", line(entry));
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("inventory: could not list the parked commands: {err}");
                    ExitCode::from(UNAVAILABLE)
                }
            }
        }
        CommandsCommand::Requeue {
            since,
            dry_run,
            target,
        } => requeue(since, dry_run, &target).await,
        CommandsCommand::Redrive { ids, all, target } => {
            let inventory = connect(&target).await;
            let selection = if all {
                RedriveSelection::All
            } else {
                RedriveSelection::Ids(ids)
            };
            match inventory.redrive(&selection).await {
                Ok(results) => {
                    let mut left = 0;
                    for (id, sku, result) in &results {
                        match result {
                            Redriven::Queued => println!("{id}\t{sku}\tredriven"),
                            Redriven::Unreadable(why) => {
                                left += 1;
                                println!(
                                    "{id}\t{sku}\tleft parked: this version cannot read it: {why}"
                                );
                            }
                            Redriven::Changed => {
                                left += 1;
                                println!("{id}\t{sku}\tleft alone: it changed since it was listed");
                            }
                        }
                    }
                    eprintln!("{} redriven, {left} left", results.len() - left);
                    if left > 0 {
                        ExitCode::from(LEFT_PARKED)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(err) => {
                    eprintln!("inventory: could not redrive: {err}");
                    ExitCode::from(UNAVAILABLE)
                }
            }
        }
    }
}

/// `inventory commands requeue`.
async fn requeue(since: Timestamp, dry_run: bool, target: &CommandsTarget) -> ExitCode {
    let inventory = connect(target).await;
    match inventory.requeue(since, dry_run).await {
        Ok(commands) => {
            let done = if dry_run { "unfinished" } else { "requeued" };
            for command in &commands {
                let body = serde_json::to_string(command).unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{done}\t{body}",
                    command.id,
                    command.sku,
                    format_rfc3339(command.accepted_at)
                );
            }
            eprintln!("{} {done} since {}", commands.len(), format_rfc3339(since));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("inventory: could not requeue: {err}");
            ExitCode::from(UNAVAILABLE)
        }
    }
}

/// One tab-separated line: id, SKU, parked at, reason, state, detail, body.
fn line(entry: &ParkedEntry) -> String {
    let parked = &entry.parked;
    let state = match parked.redriven_at {
        None => "parked".to_owned(),
        Some(at) => format!("redriven {}", format_rfc3339(at)),
    };
    let body = match parked_bytes(parked) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => format!("base64:{}", parked.body),
        },
        Err(why) => why,
    };
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        entry.command_id,
        entry.sku,
        format_rfc3339(parked.parked_at),
        parked.reason.as_str(),
        state,
        parked.detail.replace(['\t', '\n'], " "),
        body.replace(['\t', '\n'], " ")
    )
}

/// The service over the table and the stream (the connection the commands need; nothing is
/// created).
async fn connect(target: &CommandsTarget) -> Inventory {
    let sdk = crate::tool_sdk_config(target.endpoint_url.as_deref()).await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &target.names.storage.table,
    );
    let queue = KinesisQueue::new(aws_sdk_kinesis::Client::new(&sdk), &target.names.stream);
    Inventory::new(
        Arc::new(store),
        Arc::new(queue),
        Arc::new(SystemClock),
        Config::default(),
    )
}
