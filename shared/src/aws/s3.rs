//! The archive's object store on S3: one object per key in one bucket.
//!
//! Objects are private and encrypted at rest. The bucket blocks all public access (the SAM
//! template sets it), and every put asks for SSE-S3 (`AES256`) itself, so an object is encrypted
//! even if the bucket's default encryption (also SSE-S3 in the template) were ever changed.

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, ServerSideEncryption,
};
use aws_sdk_s3::Client;

use crate::ports::{ObjectStore, ObjectStoreError};

/// An S3 client for `sdk`. Path-style addressing (`endpoint/bucket/key`) is forced only when the
/// configuration overrides the endpoint (a local S3 such as moto, which cannot serve
/// `bucket.endpoint` host names); against AWS the default virtual-hosted style is kept.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> Client {
    if sdk.endpoint_url().is_some() {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        Client::from_conf(config)
    } else {
        Client::new(sdk)
    }
}

/// The S3 object store.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
}

impl S3Objects {
    /// Objects in `bucket` through `client` (see [`s3_client`]).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Checks that the bucket exists and is ours, without changing anything (a deployed
    /// stack's bucket).
    pub async fn verify_bucket(&self) -> Result<(), ObjectStoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|err| {
                ObjectStoreError(format!(
                    "bucket {}: {}",
                    self.bucket,
                    DisplayErrorContext(err)
                ))
            })
    }

    /// Creates the bucket unless it exists; for local runs and tests. Deployed buckets come
    /// from the SAM template (with public access blocked and default encryption).
    pub async fn create_bucket_if_missing(&self) -> Result<(), ObjectStoreError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the default location and refuses to be named as a constraint.
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let exists = err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                });
                if exists {
                    Ok(())
                } else {
                    Err(unavailable(err))
                }
            }
        }
    }
}

fn unavailable<E>(err: E) -> ObjectStoreError
where
    E: std::error::Error,
{
    ObjectStoreError(DisplayErrorContext(err).to_string())
}

fn content_type(key: &str) -> &'static str {
    if key.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectStoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type(key))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) => {
                let no_such_key = err.as_service_error().is_some_and(|e| e.is_no_such_key());
                let not_found = err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404);
                return if no_such_key || not_found {
                    Ok(None)
                } else {
                    Err(unavailable(err))
                };
            }
        };
        let body = output.body.collect().await.map_err(unavailable)?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut folders = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|common| common.prefix().map(str::to_owned)),
            );
        }
        folders.sort();
        folders.dedup();
        Ok(folders)
    }
}
