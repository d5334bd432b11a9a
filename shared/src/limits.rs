//! Every size limit of the service, in one place. Periods (retention, grace, waits) are in
//! [`crate::config`].

/// Most items one transaction may write: DynamoDB's limit for `TransactWriteItems`. Use cases
/// split their work to stay within it; every store refuses a larger transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Most lines one reservation may hold: each line is one event of its transaction (99 with an
/// `Idempotency-Key`, whose record takes an item).
pub const MAX_LINES: usize = MAX_TRANSACTION_ITEMS;

/// Most keys one batch read takes: DynamoDB's limit for `BatchGetItem`.
pub const MAX_BATCH_READ_KEYS: usize = 100;

/// Most SKUs one read of the product-page view may ask for: one batch read.
pub const MAX_SKUS_PER_READ: usize = MAX_BATCH_READ_KEYS;

/// Most records one `PutRecords` call takes (Kinesis's limit).
pub const MAX_QUEUE_RECORDS_PER_CALL: usize = 500;

/// Most entries one `PutEvents` call takes (EventBridge's limit): the notices of a change-feed
/// batch go out ten at a time.
pub const MAX_NOTICES_PER_CALL: usize = 10;

/// Most characters of a parked command's detail its `command_parked` notice carries (ten
/// notices go to one `PutEvents` call, which takes 256 KB).
pub const MAX_NOTICE_DETAIL: usize = 1_000;

/// Most commands one SKU may hold back at a time: the held commands are tried again with the
/// next chunk of arrivals, and both must fit one transaction.
pub const MAX_DEFERRED: usize = 16;

/// Largest adjustment, either way.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000;

/// Longest receipt reference or adjustment reason, in characters.
pub const MAX_NOTE_LEN: usize = 500;

/// Most locations one shop registers: the registry is one record of the table (some 200 bytes
/// a location, well within an item's 400 KB), and an allocation considers them all.
pub const MAX_LOCATIONS: usize = 1_000;

/// Longest location name, in characters.
pub const MAX_LOCATION_NAME: usize = 200;

/// Queued commands per processor invocation (the template's `BatchSize` on the command
/// stream; the dev pollers read as many).
pub const COMMAND_BATCH: usize = 100;

/// Change-feed records per reaction invocation in `inventory dev` (the template's reactions
/// read up to 500; a smaller batch keeps a dev process responsive).
pub const FEED_BATCH: usize = 100;

/// The most holds one expiry sweep expires; after a long outage the backlog is caught up over
/// several sweeps, oldest first.
pub const MAX_HOLDS_PER_SWEEP: usize = 5_000;

/// SKUs one processor batch applies at a time: with the states of a split item's buckets
/// (at most 256 streams of at most some 100 KB each), what a batch holds in memory stays within
/// the function's (`docs/architecture.md`, "The processor's bounds").
pub const SKUS_AT_ONCE: usize = 4;

/// How long before its invocation's deadline the processor stops starting work and answers
/// with what it has not done as failed records: a write under way gets the rest.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// SKUs expired concurrently by one sweep.
pub const SWEEP_CONCURRENCY: usize = 16;

/// Streams read at once for one request: a split item's 256 buckets read all at once opened 256
/// connections in one instant, more than a store's accept queue may take (moto's refused them
/// past the SDK's connect timeout: 503). 32 at a time read 256 buckets in 8 rounds of one
/// round trip each.
pub const READ_CONCURRENCY: usize = 32;

/// Most moves one transaction of a spread or a drain carries: each touches one more bucket,
/// and the bucket they all share takes one item (and its layout mark one more).
pub const MAX_MOVES_PER_TRANSACTION: usize = MAX_TRANSACTION_ITEMS - 2;

const _: () = assert!(2 * MAX_DEFERRED <= MAX_TRANSACTION_ITEMS);
