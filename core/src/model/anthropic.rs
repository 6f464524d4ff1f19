//! Anthropic's Messages API, streamed (`api: "anthropic-messages"`): a provider
//! `models.providers.<id>{baseUrl, apiKey, models}` answers `POST {baseUrl}/v1/messages` with
//! `text/event-stream`, authenticated by `x-api-key` and versioned by `anthropic-version`.
//!
//! - [`request`]: the transcript as a Messages body ([`MessagesRequest::to_http`]): `system`
//!   apart, `max_tokens`, same-role turns merged;
//! - [`stream`]: the event stream as the same [`ChatEvent`](crate::model::openai::ChatEvent)s
//!   and [`Completion`](crate::model::openai::Completion) the OpenAI decoder gives.
//!
//! Error answers (`{"type":"error","error":{"type","message"}}`, in a non-2xx body or as an
//! `error` event) are classified by the same [`classify_http_error`] as OpenAI's.
//!
//! [`classify_http_error`]: crate::model::openai::classify_http_error

pub mod request;
pub mod stream;

pub use request::{ANTHROPIC_VERSION, MessagesRequest};
pub use stream::{AnthropicEvents, MessagesStream};
