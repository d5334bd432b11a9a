//! The notice board on an EventBridge bus: each notice one entry, its CloudEvent (JSON) the
//! entry's `Detail`, its CloudEvents `type` the `DetailType`, [`BUS_SOURCE`] the `Source` and
//! the event's time the entry's. A rule then matches on `source` and `detail-type`, and an API
//! destination sends `$.detail`, the CloudEvent itself.

use async_trait::async_trait;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use crate::cloud_events::{CloudEvent, BUS_SOURCE};
use crate::domain::Noticed;
use crate::limits::MAX_NOTICES_PER_CALL;
use crate::ports::{NoticeBoard, PublishError};
use crate::retry::{put_in_chunks, Unput};

/// Notices published on an EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBoard {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgeBoard {
    /// A board on the bus named `bus` (or its ARN) through `client`; the CloudEvents name
    /// `/inventory/{bus}` as their source.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        let bus = bus.into();
        let name = bus.rsplit('/').next().unwrap_or(&bus);
        let source = format!("/inventory/{name}");
        Self {
            client,
            bus,
            source,
        }
    }

    /// Checks that the bus exists, without changing anything (a deployed stack's bus).
    pub async fn verify_bus(&self) -> Result<(), PublishError> {
        self.client
            .describe_event_bus()
            .name(&self.bus)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| {
                PublishError(format!(
                    "event bus {}: {}",
                    self.bus,
                    DisplayErrorContext(err)
                ))
            })
    }

    /// Creates the bus unless it exists; for local runs and tests. Deployed buses come from the
    /// SAM template.
    pub async fn create_bus_if_missing(&self) -> Result<(), PublishError> {
        if self.verify_bus().await.is_ok() {
            return Ok(());
        }
        let created = self.client.create_event_bus().name(&self.bus).send().await;
        match created {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(PublishError(format!(
                "event bus {}: {}",
                self.bus,
                DisplayErrorContext(err)
            ))),
        }
    }

    fn entry(&self, noticed: &Noticed) -> Result<PutEventsRequestEntry, PublishError> {
        let event = CloudEvent::of(noticed, &self.source);
        let detail = serde_json::to_string(&event).map_err(|e| PublishError(e.to_string()))?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(BUS_SOURCE)
            .detail_type(event.kind())
            .detail(detail)
            .time(DateTime::from_millis(noticed.at.millis()))
            .build())
    }
}

#[async_trait]
impl NoticeBoard for EventBridgeBoard {
    /// Puts the notices ten to a call, in order. Entries a call could not put (throttling,
    /// internal failures) are put again with backoff; if some still fail, the publish fails and
    /// the batch is delivered again (the entries already put repeat, with the same ids).
    async fn publish(&self, notices: &[Noticed]) -> Result<(), PublishError> {
        let entries = notices
            .iter()
            .map(|noticed| self.entry(noticed))
            .collect::<Result<Vec<_>, _>>()?;
        put_in_chunks(entries, MAX_NOTICES_PER_CALL, |chunk| async move {
            let answer = self
                .client
                .put_events()
                .set_entries(Some(chunk.clone()))
                .send()
                .await;
            match answer {
                Ok(answer) if answer.failed_entry_count() == 0 => Ok(()),
                Ok(answer) => Err(Unput::refused(
                    chunk,
                    answer.entries().iter().map(|result| {
                        let message = result.error_message().unwrap_or_default();
                        result.error_code().map(|code| format!("{code}: {message}"))
                    }),
                )),
                Err(err) => Err(Unput {
                    entries: chunk,
                    reason: DisplayErrorContext(&err).to_string(),
                }),
            }
        })
        .await
        .map_err(|unput| {
            PublishError(format!(
                "{} of {} notices could not be put on {} ({})",
                unput.entries.len(),
                notices.len(),
                self.bus,
                unput.reason
            ))
        })
    }
}
