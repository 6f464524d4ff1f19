//! OpenAI-compatible chat completions, streamed (`api: "openai-completions"`): a provider
//! `models.providers.<id>{baseUrl, apiKey, models}` answers `POST {baseUrl}/chat/completions`
//! with `text/event-stream`.
//!
//! - [`request`]: the transcript ([`Message`]) and the request ([`ChatRequest::to_http`]);
//! - [`chunk`]: one SSE `data` payload decoded ([`decode_payload`]);
//! - [`stream`]: the whole response body, bytes in, [`ChatEvent`]s out ([`ChatStream`]), tool
//!   calls accumulated by index, a [`Completion`] at the end;
//! - [`failure`]: a non-2xx answer or an in-stream `{"error":…}` as a [`ProviderError`] with
//!   upstream's error kinds.

pub mod chunk;
pub mod failure;
pub mod request;
pub mod stream;

pub use chunk::{Chunk, ChunkError, FinishReason, Payload, ToolCallDelta, Usage, decode_payload};
pub use failure::{ErrorKind, PREVIEW_CHARS, ProviderError, classify_http_error};
pub use request::{ChatRequest, Message, Schema, ToolCall, ToolSpec};
pub use stream::{ChatEvent, ChatStream, Completion, StreamError, StreamLimits};
