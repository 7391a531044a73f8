//! Amazon SNS: the manifest as the message, attributes for subscription filter policies; FIFO
//! topics get the source key as group and the object version's id as deduplication id.

use aws_sdk_sns::types::MessageAttributeValue;

use super::{Outgoing, SinkError};

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
        let attributes = msg.attributes.iter().map(|(name, value)| {
            let built = MessageAttributeValue::builder().data_type("String");
            (
                name.to_string(),
                built.string_value(value).build().expect("typed"),
            )
        });
        let (group, dedup) = msg.fifo_ids(&self.topic_arn);
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(&msg.body)
            .set_message_attributes(Some(attributes.collect()))
            .set_message_group_id(group)
            .set_message_deduplication_id(dedup)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SinkError::sdk(NAME, &e))
    }
}
