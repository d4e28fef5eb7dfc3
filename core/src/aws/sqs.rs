//! The job queue on Amazon SQS, with a dead-letter queue.
//!
//! The port's semantics are SQS's own, so most operations map one to one: `receive` is
//! a long poll that leases one message for the visibility timeout, `change_visibility`
//! is the heartbeat, `delete` acknowledges, and the queue's `RedrivePolicy` moves a
//! message received `maxReceiveCount` times to the dead-letter queue. Counts come from
//! `GetQueueAttributes` (never CloudWatch, whose queue metrics lag by minutes).
//!
//! Where SQS differs from the embedded queue (the conformance suite allows for each):
//! * times are whole seconds: visibility timeouts and long-poll waits are rounded up,
//!   and a long poll waits at most 20 s per call (longer waits loop);
//! * counts are approximate and eventually consistent;
//! * a stale receipt (the message was delivered again since) cannot extend a lease;
//!   SQS reports it as an invalid receipt handle, mapped to `Error::Conflict`;
//! * there is no "move to dead letters" call: [`JobQueue::dead_letter`] copies the
//!   message to the dead-letter queue, then deletes it from the job queue;
//! * reading the dead letters receives them (SQS cannot peek): each read hides the
//!   letters it returned for [`PEEK_HIDE`], so successive reads walk the whole queue.

use super::{error_code, internal, whole_secs};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::queue::{DeadLetter, Delivery, JobQueue};
use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use quarry_domain::QueueCounts;
use std::collections::HashMap;
use std::time::Duration;

/// How long a read of the dead letters hides the letters it returned.
pub const PEEK_HIDE: Duration = Duration::from_secs(60);
/// SQS's longest single long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// The attribute carrying the receive count of a message dead-lettered by Quarry.
const RECEIVE_COUNT_ATTR: &str = "quarry-receive-count";
/// The attribute carrying the original message id of a message dead-lettered by Quarry.
const SOURCE_ID_ATTR: &str = "quarry-source-message-id";

/// An SQS job queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dlq_url: String,
    visibility: Duration,
    max_receives: u32,
}

impl SqsQueue {
    /// Opens the queue at `url`. Its dead-letter queue and `maxReceiveCount` come from
    /// the queue's own `RedrivePolicy`, so they cannot disagree with what SQS does; a
    /// queue without one is refused. `visibility` is the lease each receive takes.
    pub async fn open(
        sdk: &aws_config::SdkConfig,
        url: &str,
        visibility: Duration,
    ) -> anyhow::Result<Self> {
        let client = Client::new(sdk);
        let attrs = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| internal("reading the job queue's attributes", e))
            .with_context(|| format!("opening the SQS queue {url}"))?;
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .with_context(|| {
                format!("the SQS queue {url} has no RedrivePolicy: give it a dead-letter queue")
            })?;
        let policy: serde_json::Value =
            serde_json::from_str(policy).context("parsing the queue's RedrivePolicy")?;
        let arn = policy
            .get("deadLetterTargetArn")
            .and_then(|v| v.as_str())
            .context("RedrivePolicy without deadLetterTargetArn")?;
        let max_receives = match policy.get("maxReceiveCount") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .and_then(|n| u32::try_from(n).ok())
        .context("RedrivePolicy without a numeric maxReceiveCount")?;
        // arn:aws:sqs:<region>:<account>:<name>
        let mut parts = arn.rsplitn(3, ':');
        let (name, account) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let dlq_url = client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| internal("finding the dead-letter queue", e))?
            .queue_url
            .context("GetQueueUrl returned no URL")?;
        Ok(Self {
            client,
            url: url.to_owned(),
            dlq_url,
            visibility: Duration::from_secs(u64::try_from(whole_secs(visibility)).unwrap_or(1)),
            max_receives,
        })
    }

    /// Creates a job queue called `name` and its dead-letter queue `<name>-dlq`
    /// (encrypted with SQS-managed keys, messages kept 14 days), then opens it. For
    /// tests and for running against an emulator; the stacks create the real ones.
    pub async fn create(
        sdk: &aws_config::SdkConfig,
        name: &str,
        visibility: Duration,
        max_receives: u32,
    ) -> anyhow::Result<Self> {
        let client = Client::new(sdk);
        let retention = (14 * 24 * 3600).to_string();
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
            .attributes(QueueAttributeName::MessageRetentionPeriod, &retention)
            .send()
            .await
            .map_err(|e| internal("creating the dead-letter queue", e))?
            .queue_url
            .context("CreateQueue returned no URL")?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| internal("reading the dead-letter queue's ARN", e))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .context("the dead-letter queue has no ARN")?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives.to_string(),
        });
        let url = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
            .attributes(QueueAttributeName::MessageRetentionPeriod, &retention)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                whole_secs(visibility).to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(|e| internal("creating the job queue", e))?
            .queue_url
            .context("CreateQueue returned no URL")?;
        Self::open(sdk, &url, visibility).await
    }

    /// The job queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The dead-letter queue's URL.
    pub fn dead_letter_url(&self) -> &str {
        &self.dlq_url
    }

    async fn approximate(&self, url: &str) -> Result<HashMap<QueueAttributeName, String>> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| internal("reading queue counts", e))?;
        Ok(out.attributes.unwrap_or_default())
    }

    async fn receive_once(&self, wait: Duration) -> Result<Option<Delivery>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(whole_secs(wait))
            .visibility_timeout(whole_secs(self.visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| internal("receiving from the job queue", e))?;
        let Some(message) = out.messages.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let attribute = |name: MessageSystemAttributeName| {
            message
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<i64>().ok())
        };
        let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1);
        let sent_at_ms = attribute(MessageSystemAttributeName::SentTimestamp).unwrap_or(0);
        Ok(Some(Delivery {
            message_id: message.message_id.clone().unwrap_or_default(),
            receipt: message
                .receipt_handle
                .clone()
                .context("a received message without a receipt handle")?,
            body: message.body.clone().unwrap_or_default(),
            receive_count,
            sent_at_ms,
        }))
    }
}

fn count(attrs: &HashMap<QueueAttributeName, String>, name: &QueueAttributeName) -> u64 {
    attrs.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Whether an SQS error says the receipt no longer names a leased message.
fn lease_lost(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ReceiptHandleIsInvalid"
                | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
                | "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
                | "InvalidParameterValue"
        )
    )
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, body: &str) -> Result<String> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| internal("sending to the job queue", e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(delivery) = self.receive_once(left.min(MAX_WAIT)).await? {
                return Ok(Some(delivery));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_secs(visibility))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if lease_lost(error_code(&e)) => Err(Error::Conflict(
                "the lease on this message was lost".to_owned(),
            )),
            Err(e) => Err(internal("extending a lease", e)),
        }
    }

    /// SQS cannot reset a message's receive count (`ChangeMessageVisibility` only
    /// shortens the lease), so a hand-back sends the body afresh and deletes the
    /// delivery. A crash between the two leaves a duplicate, which is harmless: a job
    /// commits once.
    async fn hand_back(&self, delivery: &Delivery) -> Result<()> {
        self.send(&delivery.body).await?;
        self.delete(&delivery.receipt).await
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        match self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if lease_lost(error_code(&e)) => Ok(()),
            Err(e) => Err(internal("deleting a message", e)),
        }
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<()> {
        let number = |v: String| {
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(v)
                .build()
        };
        let text = |v: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
        };
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(&delivery.body)
            .message_attributes(
                RECEIVE_COUNT_ATTR,
                number(delivery.receive_count.to_string())
                    .map_err(|e| internal("building an attribute", e))?,
            )
            .message_attributes(
                SOURCE_ID_ATTR,
                text(delivery.message_id.clone())
                    .map_err(|e| internal("building an attribute", e))?,
            )
            .send()
            .await
            .map_err(|e| internal("sending to the dead-letter queue", e))?;
        self.delete(&delivery.receipt).await
    }

    async fn counts(&self) -> Result<QueueCounts> {
        let (jobs, dead) =
            tokio::try_join!(self.approximate(&self.url), self.approximate(&self.dlq_url))?;
        Ok(QueueCounts {
            visible: count(&jobs, &QueueAttributeName::ApproximateNumberOfMessages)
                + count(
                    &jobs,
                    &QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ),
            in_flight: count(
                &jobs,
                &QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ),
            dead: count(&dead, &QueueAttributeName::ApproximateNumberOfMessages)
                + count(
                    &dead,
                    &QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                )
                + count(
                    &dead,
                    &QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ),
        })
    }

    async fn dead_letters(&self, _after: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let mut letters: Vec<(i64, DeadLetter)> = Vec::new();
        while letters.len() < limit as usize {
            let want = (limit as usize - letters.len()).min(10);
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .visibility_timeout(whole_secs(PEEK_HIDE))
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| internal("reading the dead-letter queue", e))?;
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let attr = |name: &str| {
                    m.message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value().map(ToOwned::to_owned))
                };
                let sent = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(now_ms());
                letters.push((
                    sent,
                    DeadLetter {
                        // Redriven by SQS: same id, received maxReceiveCount times.
                        message_id: attr(SOURCE_ID_ATTR)
                            .or_else(|| m.message_id.clone())
                            .unwrap_or_default(),
                        body: m.body.clone().unwrap_or_default(),
                        receive_count: attr(RECEIVE_COUNT_ATTR)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(self.max_receives),
                        handle: m.receipt_handle.clone().unwrap_or_default(),
                        cursor: String::new(),
                    },
                ));
            }
        }
        letters.sort_by_key(|l| l.0);
        Ok(letters.into_iter().map(|(_, l)| l).collect())
    }

    async fn redrive(&self, letter: &DeadLetter) -> Result<()> {
        self.send(&letter.body).await?;
        match self
            .client
            .delete_message()
            .queue_url(&self.dlq_url)
            .receipt_handle(&letter.handle)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if lease_lost(error_code(&e)) => Ok(()),
            Err(e) => Err(internal("deleting a redriven dead letter", e)),
        }
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}
