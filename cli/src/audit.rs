//! `inventory replay --sku SKU` and `inventory audit [--all]`: each SKU's state rebuilt from the
//! S3 archive plus the live table and compared with its snapshot and its read view.
//!
//! Exit code: 0 when everything checked is consistent, 1 when something is not (the report
//! says what), 2 when the audit could not run (the table or the bucket unreachable).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use inventory_core::app::ItemView;
use inventory_core::archive::ArchiveError;
use inventory_core::archive::{day_of, Archive};
use inventory_core::audit::{audit_sku, check_buckets, SkuAudit};
use inventory_core::aws::s3::s3_client;
use inventory_core::aws::{DynamoStore, S3Objects};
use inventory_core::domain::{Sku, SkuState, StreamId, Timestamp};
use inventory_core::ports::{Clock, SystemClock};

use crate::dev::StorageNames;

/// Exit code when a mismatch or a gap was found.
const MISMATCH: u8 = 1;
/// Exit code when the audit could not run.
const UNAVAILABLE: u8 = 2;

const DAY_MILLIS: i64 = 86_400_000;

/// Where the table and the archive are.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// A local AWS endpoint (moto), e.g. http://127.0.0.1:5000; without it, AWS as configured
    /// by the environment (AWS_REGION, AWS_PROFILE, credentials…).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    #[command(flatten)]
    /// The table and bucket to read.
    pub names: StorageNames,
}

/// Options of `inventory replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The SKU to rebuild.
    #[arg(long, value_parser = parse_sku)]
    pub sku: Sku,

    #[command(flatten)]
    /// Where the SKU's history is.
    pub target: Target,
}

/// Options of `inventory audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Every SKU in the archive and every SKU with a snapshot, instead of the SKUs archived
    /// today and yesterday (UTC).
    #[arg(long)]
    pub all: bool,

    /// SKUs audited at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    #[command(flatten)]
    /// Where the histories are.
    pub target: Target,
}

pub(crate) fn parse_sku(raw: &str) -> Result<Sku, String> {
    Sku::parse(raw).map_err(|err| err.to_string())
}

/// The table and the archive.
pub(crate) struct Backend {
    pub(crate) store: DynamoStore,
    pub(crate) archive: Archive,
}

impl Backend {
    /// The table and the bucket `target` names.
    pub(crate) async fn connect(target: &Target) -> Self {
        let sdk = crate::tool_sdk_config(target.endpoint_url.as_deref()).await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &target.names.table);
        let objects = S3Objects::new(s3_client(&sdk), &target.names.bucket);
        Self {
            store,
            archive: Archive::new(Arc::new(objects)),
        }
    }

    async fn audit(&self, stream: &StreamId, now: Timestamp) -> Result<SkuAudit, ArchiveError> {
        audit_sku(&self.store, &self.archive, stream, now).await
    }
}

/// One line of figures of `state` at `now`, as the API shows them.
fn figures(sku: &Sku, state: &SkuState, now: Timestamp) -> String {
    shown(&ItemView::new(sku.clone(), state, state.now(now)))
}

/// One line of the figures of `view`.
fn shown(view: &ItemView) -> String {
    format!(
        "on_hand {}, committed {}, reserved {}, available {}, version {}",
        view.on_hand, view.committed, view.reserved, view.available, view.version
    )
}

/// `inventory replay --sku SKU`.
pub async fn replay(args: ReplayArgs) -> ExitCode {
    let backend = Backend::connect(&args.target).await;
    let now = SystemClock.now();
    let audit = match backend.audit(&StreamId::of(&args.sku), now).await {
        Ok(audit) => audit,
        Err(err) => {
            eprintln!("inventory: could not replay {}: {err}", args.sku);
            return ExitCode::from(UNAVAILABLE);
        }
    };
    println!("{}", args.sku);
    println!("  replayed: {}", figures(&args.sku, &audit.replayed, now));
    if !audit.gaps.is_empty() {
        println!("            (incomplete: the history has gaps)");
    }
    match &audit.snapshot {
        Some(snapshot) => println!("  snapshot: {}", figures(&args.sku, snapshot, now)),
        None => println!("  snapshot: none"),
    }
    match &audit.view {
        Some(view) => println!("  view:     {}", shown(view)),
        None => println!("  view:     none (the SKU is listed as missing)"),
    }
    println!("{audit}");
    if audit.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(MISMATCH)
    }
}

/// The SKUs to audit: archived today or yesterday, or with `all` every archived SKU and every
/// SKU with a snapshot.
async fn skus_to_audit(
    backend: &Backend,
    all: bool,
    now: Timestamp,
) -> Result<Vec<StreamId>, ArchiveError> {
    let mut skus = BTreeSet::new();
    if all {
        skus.extend(backend.archive.skus().await?);
        skus.extend(backend.store.snapshot_skus().await?);
    } else {
        for day in [day_of(now), day_of(now.plus_millis(-DAY_MILLIS))] {
            skus.extend(backend.archive.skus_on(&day).await?);
        }
    }
    Ok(skus.into_iter().collect())
}

/// `inventory audit [--all]`.
pub async fn audit(args: AuditArgs) -> ExitCode {
    let backend = Backend::connect(&args.target).await;
    let now = SystemClock.now();
    let skus = match skus_to_audit(&backend, args.all, now).await {
        Ok(skus) => skus,
        Err(err) => {
            eprintln!("inventory: could not list the SKUs to audit: {err}");
            return ExitCode::from(UNAVAILABLE);
        }
    };

    let progress = ProgressBar::new(skus.len() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} SKUs, {msg}")
    {
        progress.set_style(style.progress_chars("=> "));
    }
    progress.set_message("0 mismatches");

    let mut audits: Vec<SkuAudit> = Vec::with_capacity(skus.len());
    let mut failures: Vec<(StreamId, ArchiveError)> = Vec::new();
    let mut mismatches = 0;
    let backend = &backend;
    let mut results = futures::stream::iter(&skus)
        .map(|sku| async move { (sku, backend.audit(sku, now).await) })
        .buffer_unordered(usize::from(args.concurrency));
    while let Some((sku, result)) = results.next().await {
        match result {
            Ok(audit) => {
                mismatches += audit.mismatches.len();
                audits.push(audit);
            }
            Err(err) => failures.push((sku.clone(), err)),
        }
        progress.inc(1);
        progress.set_message(if failures.is_empty() {
            format!("{mismatches} mismatches")
        } else {
            format!("{mismatches} mismatches, {} not audited", failures.len())
        });
    }
    drop(results);
    progress.finish_and_clear();

    // Every bucket of the items split into buckets, those not listed too, then their
    // transfers paired across buckets.
    let unlisted: Vec<StreamId> = audits
        .iter()
        .filter(|audit| audit.stream.is_home())
        .flat_map(|audit| audit.replayed.layout.streams(&audit.stream).skip(1))
        .filter(|stream| !skus.contains(stream))
        .collect();
    for sku in unlisted {
        match backend.audit(&sku, now).await {
            Ok(audit) => audits.push(audit),
            Err(err) => failures.push((sku, err)),
        }
    }
    check_buckets(&mut audits);
    let mismatches: usize = audits.iter().map(|audit| audit.mismatches.len()).sum();

    audits.sort_by(|a, b| a.stream.cmp(&b.stream));
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    let events: usize = audits.iter().map(|a| a.events).sum();
    let archived: usize = audits.iter().map(|a| a.archived).sum();
    let live: usize = audits.iter().map(|a| a.live).sum();
    println!(
        "audited {} SKUs, {events} events ({archived} archived, {live} live): {mismatches} mismatches",
        audits.len()
    );
    for audit in audits.iter().filter(|audit| !audit.is_clean()) {
        println!("{audit}");
    }
    for (sku, err) in &failures {
        println!("{sku}: not audited: {err}");
    }
    if mismatches > 0 {
        ExitCode::from(MISMATCH)
    } else if !failures.is_empty() {
        ExitCode::from(UNAVAILABLE)
    } else {
        ExitCode::SUCCESS
    }
}
