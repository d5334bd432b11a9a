//! The local AWS (moto) of the tests, set up in one place (feature `test-util`): the SDK
//! configuration for [`test_endpoint`], resource names unique to one test, and the table, bucket
//! and stream the adapters run on, created before the test uses them.
//!
//! ```no_run
//! # async fn example() {
//! use inventory_core::aws::TestAws;
//!
//! let aws = TestAws::new().await;
//! let store = aws.store(aws.dynamodb(), "events").await;
//! let queue = aws.queue(aws.kinesis(), "commands").await;
//! assert_eq!(store.table(), aws.name("events"));
//! # }
//! ```

use super::{local_config, s3::s3_client, test_endpoint, DynamoStore, KinesisQueue, S3Objects};

/// The longest name [`TestAws::name`] gives: an S3 bucket name's limit, the tightest of the three.
const MAX_NAME_LEN: usize = 63;

/// One test's view of the local AWS: the SDK configuration for the test endpoint and a suffix
/// unique to this value, so every resource it names is the test's own.
#[derive(Debug, Clone)]
pub struct TestAws {
    endpoint: String,
    config: aws_config::SdkConfig,
    unique: String,
}

impl TestAws {
    /// The SDK configuration for the test endpoint ([`local_config`] of [`test_endpoint`]) and a
    /// fresh unique suffix. Panics, saying what to do, when the endpoint is not set.
    pub async fn new() -> Self {
        let endpoint = test_endpoint();
        let config = local_config(&endpoint).await;
        Self {
            endpoint,
            config,
            unique: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The endpoint URL of the local AWS (for a process started with `--endpoint-url`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The SDK configuration for the local AWS (for clients of one's own, such as recording ones).
    pub fn config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    /// The suffix unique to this value (32 lowercase hex digits), for other names a test needs
    /// unique per run.
    pub fn unique(&self) -> &str {
        &self.unique
    }

    /// The name of this test's resource of `kind`: `{kind}-{unique}`, the same for the same
    /// `kind`. Panics unless `kind` is lowercase letters, digits and `-` and the name fits an S3
    /// bucket name (63 characters), so one name serves a table, a stream and a bucket.
    pub fn name(&self, kind: &str) -> String {
        assert!(
            !kind.is_empty()
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "resource kind {kind:?}: use lowercase letters, digits and '-'"
        );
        let name = format!("{kind}-{}", self.unique);
        assert!(
            name.len() <= MAX_NAME_LEN,
            "{name} is longer than {MAX_NAME_LEN} characters: use a shorter kind"
        );
        name
    }

    /// A plain DynamoDB client for the local AWS.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    /// A plain Kinesis client for the local AWS.
    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.config)
    }

    /// A plain S3 client for the local AWS (path-style, see [`s3_client`]).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.config)
    }

    /// The event store on the table named [`name`](Self::name)`(kind)`, through `client`,
    /// created if missing. Panics when it cannot be created.
    pub async fn store(&self, client: aws_sdk_dynamodb::Client, kind: &str) -> DynamoStore {
        let store = DynamoStore::new(client, self.name(kind));
        store
            .create_table_if_missing()
            .await
            .unwrap_or_else(|err| panic!("creating table {}: {err}", store.table()));
        store
    }

    /// The object store on the bucket named [`name`](Self::name)`(kind)`, through `client`
    /// (for S3 on moto, one made by [`s3_client`]), created if missing. Panics when it cannot
    /// be created.
    pub async fn objects(&self, client: aws_sdk_s3::Client, kind: &str) -> S3Objects {
        let objects = S3Objects::new(client, self.name(kind));
        objects
            .create_bucket_if_missing()
            .await
            .unwrap_or_else(|err| panic!("creating bucket {}: {err}", objects.bucket()));
        objects
    }

    /// The command queue on the stream named [`name`](Self::name)`(kind)`, through `client`,
    /// created if missing (and active). Panics when it cannot be created.
    pub async fn queue(&self, client: aws_sdk_kinesis::Client, kind: &str) -> KinesisQueue {
        let queue = KinesisQueue::new(client, self.name(kind));
        queue
            .create_stream_if_missing()
            .await
            .unwrap_or_else(|err| panic!("creating stream {}: {err}", queue.stream()));
        queue
    }
}
