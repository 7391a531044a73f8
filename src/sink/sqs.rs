//! Amazon SQS: the manifest as the body with the same attributes as SNS; FIFO queues get the
//! source key as group and the object version's id as deduplication id.

use aws_sdk_sqs::types::MessageAttributeValue;

use super::{Outgoing, SinkError};

pub const NAME: &str = "sqs";

pub struct SqsSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsSink {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        SqsSink { client, queue_url }
    }

    pub async fn send(&self, msg: &Outgoing) -> Result<(), SinkError> {
        let attributes = msg.attributes.iter().map(|(name, value)| {
            let built = MessageAttributeValue::builder().data_type("String");
            (
                name.to_string(),
                built.string_value(value).build().expect("typed"),
            )
        });
        let (group, dedup) = msg.fifo_ids(&self.queue_url);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&msg.body)
            .set_message_attributes(Some(attributes.collect()))
            .set_message_group_id(group)
            .set_message_deduplication_id(dedup)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SinkError::sdk(NAME, &e))
    }
}
