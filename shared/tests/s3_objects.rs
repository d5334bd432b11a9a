//! The S3 object store keeps the `ObjectStore` contract, through the real AWS SDK against moto.
#![cfg(feature = "aws")]

use futures::future::try_join_all;
use inventory_core::aws::{S3Objects, TestAws};
use inventory_core::ports::ObjectStore;

/// A store on a fresh bucket of its own.
async fn fresh_store() -> (S3Objects, aws_sdk_s3::Client) {
    let aws = TestAws::new().await;
    let client = aws.s3();
    let store = aws.objects(client.clone(), "test").await;
    store
        .create_bucket_if_missing()
        .await
        .expect("creating it again is harmless");
    (store, client)
}

#[tokio::test]
async fn an_object_put_is_got_back_byte_for_byte() {
    let (store, _) = fresh_store().await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store
        .put("archive/sku=A/000001.json.gz", bytes.clone())
        .await
        .expect("put");
    let got = store
        .get("archive/sku=A/000001.json.gz")
        .await
        .expect("get");
    assert_eq!(got, Some(bytes));
}

#[tokio::test]
async fn a_missing_key_is_none() {
    let (store, _) = fresh_store().await;
    assert_eq!(store.get("nothing/here").await.expect("get"), None);
    store
        .put("something/here", b"x".to_vec())
        .await
        .expect("put");
    assert_eq!(store.get("something/her").await.expect("get"), None);
}

#[tokio::test]
async fn a_second_put_replaces_the_object() {
    let (store, _) = fresh_store().await;
    store.put("k", b"first".to_vec()).await.expect("put");
    store.put("k", b"second".to_vec()).await.expect("put");
    assert_eq!(store.get("k").await.expect("get"), Some(b"second".to_vec()));
    assert_eq!(store.list("").await.expect("list"), vec!["k".to_owned()]);
}

#[tokio::test]
async fn list_follows_every_page_and_keeps_keys_in_order() {
    let (store, _) = fresh_store().await;
    const COUNT: usize = 1_100; // more than one ListObjectsV2 page (1,000 keys)
    let keys: Vec<String> = (0..COUNT).map(|i| format!("many/{i:05}")).collect();
    for chunk in keys.chunks(100) {
        try_join_all(chunk.iter().map(|key| store.put(key, vec![1])))
            .await
            .expect("puts");
    }
    store.put("other/0", vec![2]).await.expect("put");

    let listed = store.list("many/").await.expect("list");
    assert_eq!(listed.len(), COUNT);
    assert_eq!(listed, keys, "every key, sorted");
    assert_eq!(store.list("").await.expect("list").len(), COUNT + 1);
    assert_eq!(
        store.list("other/").await.expect("list"),
        vec!["other/0".to_owned()]
    );
    assert!(store.list("none/").await.expect("list").is_empty());
}

#[tokio::test]
async fn list_folders_gives_the_distinct_folders_right_under_the_prefix() {
    let (store, _) = fresh_store().await;
    for key in [
        "events/sku=A/x",
        "events/sku=A/y",
        "events/sku=B/z",
        "events/sku=B/deeper/w",
        "events/loose",
        "days/2024-01-01/a",
    ] {
        store.put(key, b"x".to_vec()).await.expect("put");
    }
    assert_eq!(
        store.list_folders("events/").await.expect("folders"),
        vec!["events/sku=A/".to_owned(), "events/sku=B/".to_owned()]
    );
    assert_eq!(
        store.list_folders("").await.expect("folders"),
        vec!["days/".to_owned(), "events/".to_owned()]
    );
    assert_eq!(
        store.list_folders("events/sku=B/").await.expect("folders"),
        vec!["events/sku=B/deeper/".to_owned()]
    );
    assert!(store
        .list_folders("none/")
        .await
        .expect("folders")
        .is_empty());
}

#[tokio::test]
async fn list_folders_follows_every_page() {
    let (store, _) = fresh_store().await;
    const COUNT: usize = 1_050;
    let folders: Vec<String> = (0..COUNT).map(|i| format!("f/{i:05}/")).collect();
    for chunk in folders.chunks(100) {
        try_join_all(chunk.iter().map(|folder| {
            let store = &store;
            let key = format!("{folder}obj");
            async move { store.put(&key, b"x".to_vec()).await }
        }))
        .await
        .expect("puts");
    }
    assert_eq!(store.list_folders("f/").await.expect("folders"), folders);
}

#[tokio::test]
async fn objects_are_stored_encrypted_with_their_content_type() {
    let (store, client) = fresh_store().await;
    store
        .put("a/b.json.gz", vec![0x1f, 0x8b])
        .await
        .expect("put");
    store.put("a/c.bin", vec![0]).await.expect("put");

    let gz = client
        .head_object()
        .bucket(store.bucket())
        .key("a/b.json.gz")
        .send()
        .await
        .expect("head");
    assert_eq!(
        gz.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    assert_eq!(gz.content_type(), Some("application/gzip"));

    let bin = client
        .head_object()
        .bucket(store.bucket())
        .key("a/c.bin")
        .send()
        .await
        .expect("head");
    assert_eq!(
        bin.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    assert_eq!(bin.content_type(), Some("application/octet-stream"));
}
