//! Notices as CloudEvents 1.0 in JSON: the envelope consumers of the service's integration
//! events read, on the event bus and in `inventory dev --events-out`.
//!
//! - `id`: `{stream}:{version}:{kind}`, the same whenever the same event gives the same notice,
//!   so a consumer drops a repeat by its id.
//! - `type`: [`TYPE_PREFIX`] and the notice's kind, e.g. `com.neveroversell.inventory.out_of_stock`.
//! - `subject`: the item's SKU (a split item's buckets tell under the item's SKU).
//! - `time`: when the event that caused it was decided (RFC 3339, milliseconds, UTC).
//! - `data`: the notice's fields, its `type`, the `stream` it was told from and its `version`:
//!   per stream, consumers order by `data.version`.

use serde::Serialize;

use crate::app::format_rfc3339;
use crate::domain::{Notice, Noticed, Version};

/// What every notice's CloudEvents `type` starts with: [`BUS_SOURCE`] and a dot.
pub const TYPE_PREFIX: &str = "com.neveroversell.inventory.";

/// The `source` of the service's entries on an EventBridge bus (what a rule's pattern matches;
/// the CloudEvent inside names the deployment as its own `source`).
pub const BUS_SOURCE: &str = "com.neveroversell.inventory";

/// One notice in the CloudEvents 1.0 JSON format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    time: String,
    datacontenttype: &'static str,
    data: Data<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Data<'a> {
    stream: String,
    /// Absent for `command_parked`, which no event caused.
    #[serde(skip_serializing_if = "is_zero")]
    version: Version,
    #[serde(flatten)]
    notice: &'a Notice,
}

fn is_zero(version: &Version) -> bool {
    *version == 0
}

impl<'a> CloudEvent<'a> {
    /// `noticed` as told by `source` (a URI reference naming the deployment, e.g. the event
    /// bus's ARN or `/inventory/dev`).
    pub fn of(noticed: &'a Noticed, source: &'a str) -> Self {
        Self {
            specversion: "1.0",
            id: noticed.id(),
            source,
            kind: format!("{TYPE_PREFIX}{}", noticed.notice.kind()),
            subject: noticed.stream.item().to_string(),
            time: format_rfc3339(noticed.at),
            datacontenttype: "application/json",
            data: Data {
                stream: noticed.stream.to_string(),
                version: noticed.version,
                notice: &noticed.notice,
            },
        }
    }

    /// The type, e.g. `com.neveroversell.inventory.out_of_stock` (EventBridge's `DetailType`).
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Sku, StockFigures, StreamId, Timestamp};

    #[test]
    fn the_types_start_with_the_bus_source() {
        assert_eq!(TYPE_PREFIX, format!("{BUS_SOURCE}."));
    }

    #[test]
    fn a_notice_reads_as_a_cloud_event() {
        let noticed = Noticed {
            stream: StreamId::of(&Sku::parse("SKU-1").unwrap()),
            version: 42,
            at: Timestamp::from_millis(1_796_000_000_000),
            notice: Notice::OutOfStock {
                stock: StockFigures {
                    on_hand: Some(10),
                    reserved: Some(3),
                    committed: Some(7),
                    unavailable: None,
                    available: 0,
                    version: 42,
                },
            },
        };
        let json = serde_json::to_value(CloudEvent::of(&noticed, "/inventory/dev")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "specversion": "1.0",
                "id": "SKU-1:42:out_of_stock",
                "source": "/inventory/dev",
                "type": "com.neveroversell.inventory.out_of_stock",
                "subject": "SKU-1",
                "time": "2026-11-30T00:53:20.000Z",
                "datacontenttype": "application/json",
                "data": {
                    "stream": "SKU-1",
                    "version": 42,
                    "type": "out_of_stock",
                    "stock": {"on_hand": 10, "reserved": 3, "committed": 7, "available": 0, "version": 42}
                }
            })
        );
    }
}
