//! Amazon SQS: the manifest as the body with the same attributes as SNS; FIFO queues get the
//! source key as group and the object version's id as deduplication id.

use aws_sdk_sqs::types::MessageAttributeValue;

use super::{Outgoing, SinkError, sdk_error};

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
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&msg.body);
        for (name, value) in &msg.attributes {
            req = req.message_attributes(
                *name,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .expect("data type is set"),
            );
        }
        if self.queue_url.ends_with(".fifo") {
            req = req
                .message_group_id(&msg.group_id)
                .message_deduplication_id(&msg.idempotency_key);
        }
        req.send().await.map(|_| ()).map_err(|e| SinkError {
            sink: NAME,
            message: sdk_error(&e),
        })
    }
}
