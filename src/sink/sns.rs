//! Amazon SNS: the manifest as the message, attributes for subscription filter policies; FIFO
//! topics get the source key as group and the object version's id as deduplication id.

use aws_sdk_sns::types::MessageAttributeValue;

use super::{Outgoing, SinkError, with_attributes_and_fifo_ids};

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
        let req = self.client.publish().topic_arn(&self.topic_arn);
        let req = req.message(&msg.body);
        let req = with_attributes_and_fifo_ids!(req, MessageAttributeValue, msg, &self.topic_arn);
        let sent = req.send().await;
        sent.map(|_| ()).map_err(|e| SinkError::sdk(NAME, &e))
    }
}
