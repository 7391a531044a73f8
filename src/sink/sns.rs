//! Amazon SNS: the manifest as the message, attributes for subscription filter policies; FIFO
//! topics get the source key as group and the object version's id as deduplication id.

use aws_sdk_sns::types::MessageAttributeValue;

use super::{Outgoing, SinkError, sdk_error};

pub const NAME: &str = "sns";

pub struct SnsSink {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsSink {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: String) -> Self {
        SnsSink { client, topic_arn }
    }

    pub async fn send(&self, msg: &Outgoing) -> Result<(), SinkError> {
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(&msg.body);
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
        if self.topic_arn.ends_with(".fifo") {
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
