//! Slack inside the gateway: `channels.slack` ([`config`]), the Events API and Socket Mode
//! wire formats ([`events`]), request signing ([`verify`]), and the gateway's glue: a
//! verified message is committed to the durable inbound queue before Slack is told it
//! arrived (the HTTP 200, or the Socket Mode ack), so a crash between the two only means
//! Slack delivers it again and the queue recognises it.

pub mod account;
pub mod api;
pub mod config;
pub mod driver;
pub mod events;
pub mod format;
pub mod users;
pub mod verify;

use std::time::Instant;

use serde_json::json;

use crate::channels::Step;
use crate::channels::account::Kind;
use crate::conn::ConnId;
use crate::gateway::Gateway;
use crate::http::PlainRequest;
use crate::log::Level;
use crate::work::WorkId;

use events::Callback;

/// Who is told that a Slack message is safe, once its batch is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// An Events API POST, answered with an empty 200 (500 if the batch failed, so Slack
    /// retries).
    Http(ConnId),
    /// A Socket Mode envelope, acknowledged by its id on the socket it came on (not at all
    /// if the batch failed, so Slack redelivers).
    Socket {
        /// The socket (its `WsOpen` id).
        socket: WorkId,
        /// The envelope's id.
        envelope_id: String,
    },
}

const JSON: &str = "application/json; charset=utf-8";

impl Gateway {
    /// A whole Events API POST for `account`: the signature first, then the payload.
    pub(crate) fn slack_http_request(
        &mut self,
        now: Instant,
        id: ConnId,
        account: &str,
        req: &PlainRequest,
        body: &[u8],
    ) {
        let secret = self
            .config
            .channels
            .slack
            .iter()
            .find(|a| a.common.account_id == account)
            .and_then(|a| a.signing_secret.clone());
        let Some(secret) = secret else {
            self.answer_post(now, id, 404, None, b"");
            return;
        };
        let now_secs = i64::try_from(self.unix_ms(now) / 1000).unwrap_or(i64::MAX);
        if let Err(e) = verify::verify(
            secret.expose().as_bytes(),
            req.header("x-slack-request-timestamp"),
            req.header("x-slack-signature"),
            body,
            now_secs,
        ) {
            self.log(
                now,
                Level::Warn,
                Some(id),
                format!("slack:{account}: refused an Events API request: {e}"),
            );
            self.answer_post(now, id, 401, None, b"");
            return;
        }
        match events::parse_callback(body) {
            Err(e) => {
                self.log(now, Level::Warn, Some(id), format!("slack:{account}: {e}"));
                self.answer_post(now, id, 400, None, b"");
            }
            Ok(Callback::UrlVerification(challenge)) => {
                let body = json!({ "challenge": challenge }).to_string();
                self.answer_post(now, id, 200, Some(JSON), body.as_bytes());
            }
            Ok(Callback::Ignored(why)) => {
                self.log(
                    now,
                    Level::Debug,
                    Some(id),
                    format!("slack:{account}: ignored {why}"),
                );
                self.answer_post(now, id, 200, None, b"");
            }
            Ok(Callback::Message(m)) => {
                let key = Kind::Slack.key(account);
                self.slack_ingest(now, &key, *m, Ack::Http(id));
            }
        }
    }

    /// Every batch up to a Slack message's is durable (`durable`) or failed. A durable one is
    /// acknowledged behind the batches in flight now, when there are any: the message's
    /// answer, when the model answered at once, is among them (committed in the same
    /// transaction, reported in the same wake-up), and its reply then leaves before the ack
    /// instead of behind its write. Slack waits 3 s for an ack; this holds it one commit at
    /// most, and not at all when nothing else is being written.
    pub(crate) fn slack_received(&mut self, now: Instant, ack: Ack, durable: bool) {
        if durable && !self.durable.is_settled() {
            self.hold_channel_step(now, Step::SlackAck(ack));
        } else {
            self.slack_acked(now, ack, durable);
        }
    }

    /// Every batch up to a Slack message's is durable (`durable`) or failed: tell Slack.
    pub(crate) fn slack_acked(&mut self, now: Instant, ack: Ack, durable: bool) {
        match ack {
            Ack::Http(id) if durable => self.answer_post(now, id, 200, None, b""),
            Ack::Http(id) => self.answer_post(now, id, 500, None, b""),
            Ack::Socket {
                socket,
                envelope_id,
            } if durable => self.socket_send(socket, events::ack(&envelope_id)),
            Ack::Socket { envelope_id, .. } => self.log(
                now,
                Level::Warn,
                None,
                format!("slack: envelope {envelope_id} not acknowledged: its batch failed"),
            ),
        }
    }
}
