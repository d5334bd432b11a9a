//! `inventory dev`: the service in one process. The API listens on 127.0.0.1; commands go to an
//! in-memory queue that a processor task drains in batches as soon as they arrive, redelivering
//! from the first failed position like the Kinesis event source mapping does. The reactions run
//! in-process too: the snapshotter and the archiver follow the store's change feed (redelivered
//! until they handle it, like a stream), and the expiry sweep runs every `sweep_interval`.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use command_processor::Delivery;
use futures::FutureExt as _;
use inventory_core::archive::Archive;
use inventory_core::aws::s3::s3_client;
use inventory_core::aws::{local_config, DynamoStore, EventBridgeBoard, KinesisQueue, S3Objects};
use inventory_core::domain::{CommandId, StreamId, Timestamp};
use inventory_core::error::panic_message;
use inventory_core::feed::Reaction;
use inventory_core::limits::{COMMAND_BATCH, FEED_BATCH};
use inventory_core::memory::{MemoryObjects, MemoryQueue, MemoryStore};
use inventory_core::ports::{Clock, EventStore, NoticeBoard, SystemClock};
use inventory_core::reactions::{Archiver, Snapshotter};
use inventory_core::retry::Retry;
use inventory_core::{Config, Inventory};
use reservations_api::Authentication;
use tokio::task::JoinSet;

use crate::feed_source::FeedSource;
use crate::notice_file::{Boards, NoticeFile};
use crate::queue_source::QueueSource;
use crate::shard_poller::poll;

/// Options of `inventory dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one and prints it).
    #[arg(long, default_value_t = 3000, env = "INVENTORY_PORT")]
    pub port: u16,

    /// Use DynamoDB, Kinesis, S3 and EventBridge at this endpoint (a local AWS such as moto)
    /// instead of the embedded backend; the table, stream, bucket and bus are created if missing
    /// (see --existing), and the integration events are put on the bus.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The table, stream, bucket and bus, with --endpoint-url.
    #[command(flatten)]
    pub names: ResourceNames,

    /// Use the table, stream, bucket and bus as they are (a deployed stack's): create nothing, and
    /// stop if any is missing or not shaped as the code expects (keys, indexes, change feed).
    #[arg(long, requires = "endpoint_url")]
    pub existing: bool,

    /// Serve the API only: the command processor, the reactions to the change feed and the
    /// expiry sweep are left to another `inventory dev` on the same table and stream, as the
    /// many API environments of a deployment share one processor and one set of reactions.
    #[arg(long, requires = "endpoint_url")]
    pub api_only: bool,

    /// Require a bearer token on every request, from this JSON file:
    /// {"tokens": [{"token": "…", "client_id": "…", "scopes": ["inventory/reserve"]}]}.
    /// Without it the service runs open: every request acts as client `local` with every scope.
    #[arg(long, value_name = "FILE", env = "INVENTORY_DEV_TOKENS")]
    pub tokens: Option<PathBuf>,

    /// Append the integration events (out of stock, back in stock, low stock, hold expired,
    /// command rejected or parked, stock changed) to this file as CloudEvents JSON lines, as the
    /// snapshotter tells them (with --endpoint-url, as well as on the bus). Off by default.
    #[arg(long, value_name = "FILE", conflicts_with = "api_only")]
    pub events_out: Option<PathBuf>,
}

/// Names of the table, stream, bucket and bus at a local AWS.
#[derive(Debug, clap::Args)]
pub struct ResourceNames {
    #[command(flatten)]
    /// The table and bucket, with --endpoint-url.
    pub storage: StorageNames,

    /// The command stream.
    #[arg(
        long,
        default_value = "inventory-commands",
        env = "INVENTORY_COMMAND_STREAM"
    )]
    pub stream: String,

    /// The EventBridge bus of the integration events.
    #[arg(
        long,
        default_value = "inventory-notices",
        env = "INVENTORY_NOTICE_BUS"
    )]
    pub bus: String,
}

/// Names of the events table and the archive bucket (also what `replay` and `audit` read).
#[derive(Debug, clap::Args)]
pub struct StorageNames {
    /// The events table.
    #[arg(long, default_value = "inventory-events", env = "INVENTORY_TABLE")]
    pub table: String,

    /// The archive bucket.
    #[arg(
        long,
        default_value = "inventory-archive",
        env = "INVENTORY_ARCHIVE_BUCKET"
    )]
    pub bucket: String,
}

/// Options of `inventory init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The local AWS endpoint (moto), e.g. http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: String,

    #[command(flatten)]
    /// The table, stream, bucket and bus to create or check.
    pub names: ResourceNames,

    /// Create nothing: check that the table, stream, bucket and bus exist and are shaped as the
    /// code expects (keys, indexes, change feed), e.g. a deployed stack's.
    #[arg(long)]
    pub existing: bool,
}

/// Creates the table, stream, bucket and bus if missing (with --existing: only checks them).
pub async fn init(args: InitArgs) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = local_config(&args.endpoint_url).await;
    prepare(&sdk, &args.names, args.existing).await?;
    let verb = if args.existing {
        "are as the code expects"
    } else {
        "are ready"
    };
    println!(
        "table {}, stream {}, bucket {} and bus {} {verb} at {}",
        args.names.storage.table,
        args.names.stream,
        args.names.storage.bucket,
        args.names.bus,
        args.endpoint_url
    );
    Ok(())
}

/// The resources of a deployment at a local AWS.
struct Resources {
    store: DynamoStore,
    queue: KinesisQueue,
    objects: S3Objects,
    bus: EventBridgeBoard,
}

/// The table, stream, bucket and bus named: created if missing, or with `--existing` checked as
/// they are (nothing created).
async fn prepare(
    sdk: &aws_config::SdkConfig,
    names: &ResourceNames,
    existing: bool,
) -> Result<Resources, Box<dyn std::error::Error>> {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &names.storage.table);
    let queue = KinesisQueue::new(aws_sdk_kinesis::Client::new(sdk), &names.stream);
    let objects = S3Objects::new(s3_client(sdk), &names.storage.bucket);
    let bus = EventBridgeBoard::new(aws_sdk_eventbridge::Client::new(sdk), &names.bus);
    if existing {
        store.verify_table().await?;
        queue.verify_stream().await?;
        objects.verify_bucket().await?;
        bus.verify_bus().await?;
    } else {
        store.create_table_if_missing().await?;
        queue.create_stream_if_missing().await?;
        objects.create_bucket_if_missing().await?;
        bus.create_bus_if_missing().await?;
    }
    Ok(Resources {
        store,
        queue,
        objects,
        bus,
    })
}

/// How often the embedded feed is looked at for new changes.
const FEED_POLL: Duration = Duration::from_millis(100);
/// How often the embedded store's time to live runs (DynamoDB's is far less punctual).
const TTL_INTERVAL: Duration = Duration::from_secs(60);

/// Serves until interrupted.
pub async fn run(args: DevArgs) -> Result<(), Box<dyn std::error::Error>> {
    let authentication = match &args.tokens {
        None => {
            tracing::warn!(
                "open: no authentication, every request acts as client `local` with every scope \
                 (--tokens FILE requires bearer tokens)"
            );
            Authentication::Open
        }
        Some(path) => {
            let authentication = tokens_from(path)?;
            tracing::info!(file = %path.display(), "bearer tokens required, from the token file");
            authentication
        }
    };
    let config = Config::from_env()?;
    let board: Option<Arc<dyn NoticeBoard>> = match &args.events_out {
        None => None,
        Some(path) => {
            tracing::info!(file = %path.display(), "integration events go to the file, as CloudEvents JSON lines");
            Some(Arc::new(NoticeFile::open(path).await?))
        }
    };
    let mut loops = Loops::default();
    let inventory = match &args.endpoint_url {
        None => embedded(config, board, &mut loops),
        Some(url) => {
            let background = if args.api_only {
                Background::Elsewhere
            } else {
                Background::InProcess
            };
            on_local_aws(
                url,
                &args.names,
                args.existing,
                background,
                config,
                board,
                &mut loops,
            )
            .await?
        }
    };

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let address = listener.local_addr()?;
    println!("inventory dev listening on http://{address}");
    match &args.endpoint_url {
        None => tracing::info!(%address, "embedded backend: in-memory store, queue and archive"),
        Some(url) => tracing::info!(%address, endpoint = %url, table = %args.names.storage.table,
            stream = %args.names.stream, bucket = %args.names.storage.bucket,
            bus = %args.names.bus, "DynamoDB, Kinesis, S3 and EventBridge backend"),
    }
    let serving = axum::serve(
        listener,
        reservations_api::router(inventory, authentication),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    tokio::select! {
        served = serving => Ok(served?),
        stopped = loops.stopped() => {
            tracing::error!(loop_stopped = %stopped, "stopping: the API would accept work nothing does");
            Err(format!("{stopped}; stopping, since the API would accept work nothing does").into())
        }
    }
}

/// The static tokens of a token file; a file that cannot be read or is malformed stops the start.
fn tokens_from(path: &Path) -> Result<Authentication, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the token file {}: {err}", path.display()))?;
    Authentication::from_token_file(&text)
        .map_err(|reason| format!("the token file {} is malformed: {reason}", path.display()))
}

/// The embedded backend: memory store, queue and archive; the processor draining the queue, the
/// reactions following the store's feed, its time to live and the expiry sweep, all in-process.
fn embedded(
    config: Config,
    board: Option<Arc<dyn NoticeBoard>>,
    loops: &mut Loops,
) -> Arc<Inventory> {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let archive = Archive::new(Arc::new(MemoryObjects::new()));
    let reactions = reactions(
        Arc::clone(&store) as Arc<dyn EventStore>,
        archive.clone(),
        Arc::clone(&clock),
        &config,
        board,
    );
    let sweep_interval = config.sweep_interval;
    let inventory = Arc::new(
        Inventory::new(
            Arc::clone(&store) as Arc<dyn EventStore>,
            queue.clone(),
            Arc::clone(&clock),
            config,
        )
        .with_archive(archive),
    );
    loops.spawn(
        "the command processor",
        drain_queue(Arc::clone(&inventory), queue, Arc::clone(&clock)),
    );
    loops.spawn(
        "the reactions to the change feed",
        follow_feed(Arc::clone(&store), reactions),
    );
    loops.spawn("the time to live", play_time_to_live(store, clock));
    loops.spawn(
        "the expiry sweep",
        sweep_expired_holds(Arc::clone(&inventory), sweep_interval),
    );
    inventory
}

/// The loops behind the API (processor, reactions, sweep, time to live): none may stop while
/// the API serves, or it would answer 202s that nothing applies. A loop that ends — a panic
/// included — stops the process with an error naming it.
#[derive(Default)]
pub(crate) struct Loops(JoinSet<(&'static str, String)>);

impl Loops {
    /// Runs `work`, a loop meant to run for good, as `name`.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.0.spawn(async move {
            let why = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(()) => "it returned".to_owned(),
                Err(panic) => format!("it panicked: {}", panic_message(panic.as_ref())),
            };
            (name, why)
        });
    }

    /// Waits until a loop stops, and says which and why; never, while none runs.
    pub(crate) async fn stopped(&mut self) -> String {
        match self.0.join_next().await {
            Some(Ok((name, why))) => format!("{name} stopped: {why}"),
            Some(Err(err)) => format!("a background loop stopped: {err}"),
            None => std::future::pending().await,
        }
    }
}

/// Where the work behind the API runs: the processor, the reactions and the expiry sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Background {
    /// In this process.
    InProcess,
    /// In another process on the same resources (`--api-only`).
    Elsewhere,
}

/// DynamoDB, Kinesis, S3 and EventBridge at `url`: the table, stream, bucket and bus are created
/// if missing (or checked as they are, with `--existing`). With the background in-process, the
/// command stream is polled to drive the processor and the table's stream to drive the
/// reactions, as the event source mappings do in AWS (the snapshotter puts its notices on the
/// bus, and on `file` too if given), and the expiry sweep runs on a timer.
async fn on_local_aws(
    url: &str,
    names: &ResourceNames,
    existing: bool,
    background: Background,
    config: Config,
    file: Option<Arc<dyn NoticeBoard>>,
    loops: &mut Loops,
) -> Result<Arc<Inventory>, Box<dyn std::error::Error>> {
    let sdk = local_config(url).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let Resources {
        store,
        queue,
        objects,
        bus,
    } = prepare(&sdk, names, existing).await?;
    let store = store.with_retention(&config);
    let mut boards: Vec<Arc<dyn NoticeBoard>> = vec![Arc::new(bus)];
    boards.extend(file);
    let board: Arc<dyn NoticeBoard> = Arc::new(Boards(boards));
    let table_stream =
        crate::feed_source::latest_stream_arn(&dynamodb, &names.storage.table).await?;

    let store: Arc<dyn EventStore> = Arc::new(store);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let archive = Archive::new(Arc::new(objects));
    let reactions = reactions(
        Arc::clone(&store),
        archive.clone(),
        Arc::clone(&clock),
        &config,
        Some(board),
    );
    let sweep_interval = config.sweep_interval;
    let inventory =
        Arc::new(Inventory::new(store, Arc::new(queue), clock, config).with_archive(archive));
    if background == Background::Elsewhere {
        tracing::info!("API only: the processor, reactions and sweep run in another process");
        return Ok(inventory);
    }
    loops.spawn(
        "the command processor",
        poll(Arc::new(QueueSource {
            client: kinesis,
            stream: names.stream.clone(),
            inventory: Arc::clone(&inventory),
        })),
    );
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    for (name, reaction) in reactions {
        loops.spawn(
            name,
            poll(Arc::new(FeedSource {
                client: streams.clone(),
                stream_arn: table_stream.clone(),
                name,
                reaction,
            })),
        );
    }
    loops.spawn(
        "the expiry sweep",
        sweep_expired_holds(Arc::clone(&inventory), sweep_interval),
    );
    tracing::info!(
        "the local endpoint's time to live is not simulated (moto never deletes expired \
         items): retired events stay in the table"
    );
    Ok(inventory)
}

/// The reactions to the change feed, in the order the embedded feed delivers to them (the
/// snapshot first, so the archiver may retire what it covers at once); the snapshotter tells
/// `board`, if any, the notices of what it folds.
fn reactions(
    store: Arc<dyn EventStore>,
    archive: Archive,
    clock: Arc<dyn Clock>,
    config: &Config,
    board: Option<Arc<dyn NoticeBoard>>,
) -> Vec<(&'static str, Arc<dyn Reaction>)> {
    let snapshotter = Snapshotter::new(Arc::clone(&store));
    let snapshotter = match board {
        Some(board) => snapshotter.with_notices(board),
        None => snapshotter,
    };
    vec![
        ("snapshotter", Arc::new(snapshotter) as Arc<dyn Reaction>),
        (
            "archiver",
            Arc::new(Archiver::new(store, archive, clock, config.live_retention)),
        ),
    ]
}

/// Delivers the embedded store's change feed to the reactions, forever, in batches. A batch is
/// delivered again (to every reaction) until none names a SKU it could not handle, as a stream
/// redelivers; the reactions take repeats in their stride.
async fn follow_feed(store: Arc<MemoryStore>, reactions: Vec<(&'static str, Arc<dyn Reaction>)>) {
    let mut cursor = 0;
    let mut retry = Retry::poll();
    loop {
        let (mut changes, _) = store.feed_since(cursor);
        if changes.is_empty() {
            tokio::time::sleep(FEED_POLL).await;
            continue;
        }
        changes.truncate(FEED_BATCH);
        let mut failed: BTreeSet<StreamId> = BTreeSet::new();
        for (name, reaction) in &reactions {
            let skus = reaction.react(&changes).await;
            if !skus.is_empty() {
                tracing::warn!(
                    reaction = name,
                    skus = skus.len(),
                    "feed batch to deliver again"
                );
                failed.extend(skus);
            }
        }
        if failed.is_empty() {
            cursor += changes.len();
            retry = Retry::poll();
        } else {
            retry.wait().await;
        }
    }
}

/// Does what the table's time to live does, on the embedded store: deletes the events whose
/// time to live is past (archived and retired ones), each a removal on the feed.
async fn play_time_to_live(store: Arc<MemoryStore>, clock: Arc<dyn Clock>) {
    loop {
        tokio::time::sleep(TTL_INTERVAL).await;
        let deleted = store.delete_expired(clock.now());
        if deleted > 0 {
            tracing::info!(deleted, "time to live: expired events deleted");
        }
    }
}

/// The expiry timer: a sweep of the expiry index every `interval`, the first at start-up.
async fn sweep_expired_holds(inventory: Arc<Inventory>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Each sweep logs what it did.
        if let Err(err) = inventory.sweep_expired_holds().await {
            tracing::warn!(error = %err, "expiry sweep failed; the next one covers its window");
        }
    }
}

/// The in-process command processor: applies batches as they arrive, forever. A command counts
/// as arrived when it was first received, so one that keeps failing is parked after the bound,
/// as on the stream.
async fn drain_queue(inventory: Arc<Inventory>, queue: Arc<MemoryQueue>, clock: Arc<dyn Clock>) {
    let mut first_received: HashMap<CommandId, Timestamp> = HashMap::new();
    let mut retry = Retry::poll();
    loop {
        let batch = queue.receive(COMMAND_BATCH).await;
        let now = clock.now();
        let deliveries: Vec<Delivery> = batch
            .iter()
            .map(|command| Delivery {
                command: command.clone(),
                arrived_at: *first_received.entry(command.id).or_insert(now),
            })
            .collect();
        let outcome = command_processor::process_deliveries(&inventory, &deliveries, None).await;
        let done = outcome.retry_from.unwrap_or(batch.len());
        for command in &batch[..done] {
            first_received.remove(&command.id);
        }
        if done < batch.len() {
            queue.redeliver(batch[done..].to_vec());
            retry.wait().await;
        } else {
            retry = Retry::poll();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_that_panics_or_returns_is_named_with_why_it_stopped() {
        let mut loops = Loops::default();
        loops.spawn("the forever loop", std::future::pending());
        loops.spawn("the command processor", async {
            panic!("a bug in a batch");
        });
        assert_eq!(
            loops.stopped().await,
            "the command processor stopped: it panicked: a bug in a batch"
        );
        loops.spawn("the expiry sweep", async {});
        assert_eq!(
            loops.stopped().await,
            "the expiry sweep stopped: it returned"
        );
    }
}
