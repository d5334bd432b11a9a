//! The local AWS the tests run on keeps every write it acknowledges, as DynamoDB does. Plain moto
//! does not: a cancelled `TransactWriteItems` restores a copy of the table taken before it,
//! erasing what other requests wrote meanwhile. `scripts/moto-server` (what `./scripts/test`
//! starts) serialises moto's DynamoDB backend; this test races conditional puts against
//! cancelled transactions on it and finds every acknowledged put.
#![cfg(feature = "aws")]

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use futures::future::join_all;
use inventory_core::aws::TestAws;

const WRITERS: usize = 4;
const PUTS_PER_WRITER: usize = 150;

fn key(pk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::N("0".into())),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_put_is_lost_to_a_concurrent_cancelled_transaction() {
    let aws = TestAws::new().await;
    let client = aws.dynamodb();
    let table = aws
        .store(client.clone(), "no-loss")
        .await
        .table()
        .to_owned();
    // An item every transaction's condition fails on.
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(key("blocker".into())))
        .send()
        .await
        .expect("blocker");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let canceller = {
        let (client, table, done) = (client.clone(), table.clone(), done.clone());
        tokio::spawn(async move {
            let mut cancelled = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let put = |pk: &str| {
                    Put::builder()
                        .table_name(&table)
                        .set_item(Some(key(pk.to_owned())))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("put")
                };
                let answer = client
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().put(put("fresh")).build())
                    .transact_items(TransactWriteItem::builder().put(put("blocker")).build())
                    .send()
                    .await;
                assert!(answer.is_err(), "the blocker makes every transaction fail");
                cancelled += 1;
            }
            cancelled
        })
    };
    let writers = (0..WRITERS).map(|writer| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            let mut acknowledged = Vec::new();
            for n in 0..PUTS_PER_WRITER {
                let pk = format!("w{writer}-{n}");
                let answer = client
                    .put_item()
                    .table_name(&table)
                    .set_item(Some(key(pk.clone())))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                if answer.is_ok() {
                    acknowledged.push(pk);
                }
            }
            acknowledged
        }
    });
    let acknowledged: Vec<String> = join_all(writers).await.into_iter().flatten().collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let cancelled = canceller.await.expect("canceller");
    assert!(
        cancelled > 10,
        "the transactions raced the puts ({cancelled})"
    );
    assert_eq!(acknowledged.len(), WRITERS * PUTS_PER_WRITER);

    let mut lost = Vec::new();
    for pk in &acknowledged {
        let item = client
            .get_item()
            .table_name(&table)
            .set_key(Some(key(pk.clone())))
            .consistent_read(true)
            .send()
            .await
            .expect("get");
        if item.item.is_none() {
            lost.push(pk.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged puts lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}
