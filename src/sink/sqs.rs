//! Amazon SQS: the manifest as the body with the same attributes as SNS; FIFO queues get the
//! source key as group and the object version's id as deduplication id.

use aws_sdk_sqs::types::MessageAttributeValue;

use super::{Outgoing, SinkError, with_attributes_and_fifo_ids};

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
        let req = self.client.send_message().queue_url(&self.queue_url);
        let req = req.message_body(&msg.body);
        let req = with_attributes_and_fifo_ids!(req, MessageAttributeValue, msg, &self.queue_url);
        let sent = req.send().await;
        sent.map(|_| ()).map_err(|e| SinkError::sdk(NAME, &e))
    }
}
