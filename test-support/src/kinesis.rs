//! Reading a Kinesis stream on moto from the start, as a test that checks what was queued does.

use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use aws_sdk_kinesis::Client;

/// Every record on `stream` so far, shard by shard from the trim horizon (panics if the stream
/// cannot be read: it is a test's).
pub async fn stream_records(client: &Client, stream: &str) -> Vec<Record> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("the stream's shards");
    let mut records = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("a shard iterator");
        let mut next = iterator.shard_iterator().map(str::to_owned);
        while let Some(iterator) = next {
            let answer = client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .expect("the shard's records");
            if answer.records().is_empty() {
                break;
            }
            records.extend(answer.records().iter().cloned());
            next = answer.next_shard_iterator().map(str::to_owned);
        }
    }
    records
}
