//! `inventory ledger --sku SKU [--csv]`: an item's whole ledger, every change of its stock from
//! its first, read from the table and the S3 archive as the API's `GET /items/{sku}/ledger`
//! pages it: JSON lines (one entry each), or CSV for finance and a 3PL's reconciliation.
//!
//! Exit code: 0 when printed whole, 1 for an unknown SKU, 2 when the table or the archive
//! could not be read (or the history has a gap neither fills).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use inventory_core::app::{LedgerEntry, MAX_LEDGER_PAGE};
use inventory_core::domain::Sku;
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::SystemClock;
use inventory_core::{AppError, Config, Inventory};

use crate::audit::{parse_sku, Backend, Target};

/// Options of `inventory ledger`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// The item.
    #[arg(long, value_parser = parse_sku)]
    pub sku: Sku,

    /// CSV with a header line instead of JSON lines.
    #[arg(long)]
    pub csv: bool,

    #[command(flatten)]
    /// Where the item's history is.
    pub target: Target,
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 24] = [
    "version",
    "at",
    "kind",
    "on_hand_change",
    "reserved_change",
    "committed_change",
    "damaged_change",
    "quality_control_change",
    "safety_stock_change",
    "available_change",
    "on_hand",
    "reserved",
    "committed",
    "damaged",
    "quality_control",
    "safety_stock",
    "available",
    "reason",
    "note",
    "reference",
    "actor",
    "command_id",
    "reservation_id",
    "rejection",
];

/// One entry as a CSV record, in [`CSV_HEADER`]'s order.
pub fn csv_record(entry: &LedgerEntry) -> Vec<String> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let c = entry.changes;
    let a = entry.after;
    let numbers = [
        c.on_hand,
        c.reserved,
        c.committed,
        c.damaged,
        c.quality_control,
        c.safety_stock,
        c.available,
        a.on_hand,
        a.reserved,
        a.committed,
        a.unavailable.damaged,
        a.unavailable.quality_control,
        a.unavailable.safety_stock,
        a.available,
    ];
    let mut record = vec![
        entry.version.to_string(),
        inventory_core::app::format_rfc3339(entry.at),
        entry.kind.to_owned(),
    ];
    record.extend(numbers.iter().map(ToString::to_string));
    record.extend([
        entry
            .reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        text(&entry.note),
        text(&entry.reference),
        entry
            .actor
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        entry
            .command_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        entry
            .reservation_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        entry
            .rejection
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
    ]);
    record
}

/// `inventory ledger`.
pub async fn ledger(args: LedgerArgs) -> ExitCode {
    let Backend { store, archive } = Backend::connect(&args.target).await;
    let inventory = Inventory::new(
        Arc::new(store),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
        Config::default(),
    )
    .with_archive(archive);
    let stdout = std::io::stdout();
    let mut csv = args.csv.then(|| csv::Writer::from_writer(stdout.lock()));
    if let Some(writer) = &mut csv {
        if let Err(err) = writer.write_record(CSV_HEADER) {
            eprintln!("inventory: {err}");
            return ExitCode::from(2);
        }
    }
    let mut after = 0;
    loop {
        let page = match inventory.ledger(&args.sku, after, MAX_LEDGER_PAGE).await {
            Ok(page) => page,
            Err(AppError::UnknownSku(sku)) => {
                eprintln!("inventory: no stock was ever recorded for {sku}");
                return ExitCode::from(1);
            }
            Err(err) => {
                eprintln!(
                    "inventory: could not read the ledger of {}: {err}",
                    args.sku
                );
                return ExitCode::from(2);
            }
        };
        for entry in &page.entries {
            let written = match &mut csv {
                Some(writer) => writer
                    .write_record(csv_record(entry))
                    .map_err(|e| e.to_string()),
                None => serde_json::to_string(entry)
                    .map_err(|e| e.to_string())
                    .and_then(|line| writeln!(stdout.lock(), "{line}").map_err(|e| e.to_string())),
            };
            if let Err(err) = written {
                eprintln!("inventory: {err}");
                return ExitCode::from(2);
            }
        }
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    if let Some(mut writer) = csv {
        if let Err(err) = writer.flush() {
            eprintln!("inventory: {err}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
