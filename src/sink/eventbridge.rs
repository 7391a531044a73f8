//! Amazon EventBridge: `PutEvents` with source `export-fetcher`, the message's detail-type
//! (`Braze Export Indexed` or `Braze Export Failed` for an object, `Braze API Export Closed`,
//! `Braze Currents Partition Closed`), the manifest as detail.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

pub use super::{DETAIL_TYPE_FAILED, DETAIL_TYPE_INDEXED};
use super::{Outgoing, SinkError};

pub const NAME: &str = "eventbridge";
pub const SOURCE: &str = "export-fetcher";

pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        EventBridgeSink { client, bus }
    }

    pub async fn send(&self, msg: &Outgoing) -> Result<(), SinkError> {
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(msg.detail_type)
            .detail(&msg.body)
            .event_bus_name(&self.bus)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| SinkError::sdk(NAME, &e))?;
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| {
                    e.error_code()
                        .map(|c| format!("{c}: {}", e.error_message().unwrap_or("")))
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SinkError {
                sink: NAME,
                message: format!("PutEvents rejected the event ({why})"),
            });
        }
        Ok(())
    }
}
