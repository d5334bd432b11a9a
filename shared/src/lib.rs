//! `inventory-core`: the domain of an inventory service that never oversells, its ports, the
//! in-memory adapters, configuration and the use cases every function shares.
//!
//! - [`domain`]: pure rules (no I/O, the clock passed in).
//! - [`ports`]: what the use cases need from the world; [`memory`]: the embedded adapters.
//! - [`app`]: the use cases, written once against the ports.
//! - [`feed`], [`reactions`], [`archive`]: what follows the change feed: snapshots (the read
//!   view), the cold archive; the expiry sweep is a use case of [`app`].
//!
//! Feature `test-util` adds what the crates' tests share and production leaves out: the event
//! store conformance suite (`conformance`), the flaky store (`testing`), the flash-sale
//! simulation (`simulation`) and the tests' local AWS
//! (`aws::test_endpoint`, and `aws::TestAws`, which names and creates the tests' tables, buckets
//! and streams there). Every crate enables it in its dev-dependencies only.

pub mod app;
pub mod archive;
pub mod audit;
#[cfg(feature = "aws")]
pub mod aws;
pub mod cloud_events;
pub mod config;
#[cfg(feature = "test-util")]
pub mod conformance;
pub mod domain;
pub mod error;
pub mod feed;
pub mod limits;
pub mod memory;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod ports;
pub mod reactions;
pub mod retry;
#[cfg(feature = "test-util")]
pub mod simulation;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;

pub use app::Inventory;
pub use config::Config;
pub use error::AppError;
