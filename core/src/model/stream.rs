//! What both streamed APIs share: the events a response gives ([`ChatEvent`]), its outcome
//! ([`Completion`]) and errors, the tool calls joined from their fragments, and
//! [`EventStream`], which frames the SSE body, remembers the end and the first error, and
//! hands each event to its API's [`Dialect`].

use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::model::openai::{
    ChunkError, FinishReason, ProviderError, ToolCall, ToolCallDelta, Usage,
};
use crate::model::sse::{SseDecoder, SseError, SseEvent, SseLimits};

/// The default of [`StreamLimits::max_tool_calls`].
pub const DEFAULT_MAX_TOOL_CALLS: usize = 64;
/// The default of [`StreamLimits::max_tool_call_bytes`]: 1 MiB.
pub const DEFAULT_MAX_TOOL_CALL_BYTES: usize = 1024 * 1024;

/// How much one response may make the decoder hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// The SSE layer's line and event limits.
    pub sse: SseLimits,
    /// The most distinct tool calls (indexes) in one response.
    pub max_tool_calls: usize,
    /// The most bytes of tool call ids, names and arguments together in one response.
    pub max_tool_call_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            sse: SseLimits::default(),
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            max_tool_call_bytes: DEFAULT_MAX_TOOL_CALL_BYTES,
        }
    }
}

impl StreamLimits {
    /// The most bytes a [`ChatStream`] with these limits ever holds: the SSE buffers, the
    /// accumulated tool calls, and the response's model name (one line at most).
    pub fn max_buffered_bytes(&self) -> usize {
        self.sse
            .max_buffered_bytes()
            .saturating_add(self.max_tool_call_bytes)
            .saturating_add(self.sse.max_line_bytes)
    }
}

/// Why a response could not be read to its end. The stream stays stopped: every later call
/// returns the same error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The SSE framing broke a limit.
    #[error(transparent)]
    Sse(#[from] SseError),
    /// A `data` payload was not a chat completion chunk.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// More tool calls than [`StreamLimits::max_tool_calls`].
    #[error("more than {limit} tool calls in one response")]
    TooManyToolCalls {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Tool calls larger than [`StreamLimits::max_tool_call_bytes`].
    #[error("tool calls larger than {limit} bytes in one response")]
    ToolCallsTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The provider reported an error inside the stream.
    #[error(transparent)]
    Provider(ProviderError),
    /// An Anthropic stream event was not JSON or had a known field of the wrong type.
    #[error("malformed model stream event: {0}")]
    Event(String),
    /// The body ended before its end marker or a finish reason.
    #[error("the model's response ended early")]
    Truncated,
}

/// What the response said, in order. Deltas are passed on as they arrive; the stream keeps
/// only what the [`Completion`] needs (tool calls, finish reason, usage, model name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatEvent {
    /// More assistant text (OpenAI's `choices[0].delta.content`, Anthropic's `text_delta`),
    /// never empty.
    TextDelta(String),
    /// A fragment of a tool call; [`EventStream::tool_calls`] has them accumulated.
    ToolCallDelta(ToolCallDelta),
    /// The finish reason was set (`finish_reason`, `stop_reason`).
    Finish(FinishReason),
    /// The token counts.
    Usage(Usage),
    /// The end marker (`[DONE]`, `message_stop`): nothing follows. Anything the body still
    /// holds is ignored.
    Done,
}

/// The outcome of a response that ended well, from [`EventStream::finish`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The last finish reason (`None` when only the end marker ended the stream).
    pub finish_reason: Option<FinishReason>,
    /// The last usage counts.
    pub usage: Option<Usage>,
    /// The tool calls, by index, fragments joined.
    pub tool_calls: Vec<ToolCall>,
    /// The model the provider named first (upstream's `responseModel`).
    pub response_model: Option<String>,
}

/// The calls of one response, by index, and the bytes they hold.
#[derive(Clone, Debug)]
pub(crate) struct ToolCalls {
    max_calls: usize,
    max_bytes: usize,
    calls: BTreeMap<u32, ToolCall>,
    bytes: usize,
}

impl ToolCalls {
    /// No calls yet; at most `limits.max_tool_calls` of `limits.max_tool_call_bytes` in all.
    pub(crate) fn new(limits: StreamLimits) -> Self {
        ToolCalls {
            max_calls: limits.max_tool_calls,
            max_bytes: limits.max_tool_call_bytes,
            calls: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// The bytes of ids, names and arguments held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The calls so far, by index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &ToolCall)> {
        self.calls.iter().map(|(i, c)| (*i, c))
    }

    /// The calls, in index order.
    pub(crate) fn to_vec(&self) -> Vec<ToolCall> {
        self.calls.values().cloned().collect()
    }

    /// Join a fragment into its call: `id` and `name` are set when sent, `arguments` appended.
    pub(crate) fn accumulate(&mut self, delta: &ToolCallDelta) -> Result<(), StreamError> {
        let empty = ToolCall::default();
        let call = match self.calls.get(&delta.index) {
            Some(call) => call,
            None if self.calls.len() >= self.max_calls => {
                return Err(StreamError::TooManyToolCalls {
                    limit: self.max_calls,
                });
            }
            None => &empty,
        };
        let before = call.id.len() + call.name.len() + call.arguments.len();
        let after = delta.id.as_ref().unwrap_or(&call.id).len()
            + delta.name.as_ref().unwrap_or(&call.name).len()
            + call.arguments.len()
            + delta.arguments.len();
        let total = self.bytes.saturating_sub(before).saturating_add(after);
        if total > self.max_bytes {
            return Err(StreamError::ToolCallsTooLarge {
                limit: self.max_bytes,
            });
        }
        self.bytes = total;
        let call = self.calls.entry(delta.index).or_default();
        if let Some(id) = &delta.id {
            call.id.clone_from(id);
        }
        if let Some(name) = &delta.name {
            call.name.clone_from(name);
        }
        call.arguments.push_str(&delta.arguments);
        Ok(())
    }
}

/// What a response said so far that its [`Completion`] needs.
#[derive(Clone, Debug)]
pub struct Partial {
    pub(crate) tool_calls: ToolCalls,
    pub(crate) finish_reason: Option<FinishReason>,
    pub(crate) usage: Option<Usage>,
    pub(crate) response_model: Option<String>,
    /// The API's end marker arrived; nothing after it is read.
    pub(crate) done: bool,
}

impl Partial {
    /// Join a tool call fragment and pass it on.
    pub(crate) fn tool_call(
        &mut self,
        delta: ToolCallDelta,
        out: &mut Vec<ChatEvent>,
    ) -> Result<(), StreamError> {
        self.tool_calls.accumulate(&delta)?;
        out.push(ChatEvent::ToolCallDelta(delta));
        Ok(())
    }

    /// Record why the model stopped and pass it on.
    pub(crate) fn finish(&mut self, reason: FinishReason, out: &mut Vec<ChatEvent>) {
        self.finish_reason = Some(reason.clone());
        out.push(ChatEvent::Finish(reason));
    }

    /// Record the token counts and pass them on.
    pub(crate) fn usage(&mut self, usage: Usage, out: &mut Vec<ChatEvent>) {
        self.usage = Some(usage);
        out.push(ChatEvent::Usage(usage));
    }

    /// The end marker: nothing follows.
    pub(crate) fn done(&mut self, out: &mut Vec<ChatEvent>) {
        self.done = true;
        out.push(ChatEvent::Done);
    }
}

/// How one API's SSE events read: each event updates the [`Partial`] and appends the
/// [`ChatEvent`]s it says to `out`.
pub trait Dialect {
    /// Read one event.
    fn on_event(
        partial: &mut Partial,
        event: &SseEvent,
        out: &mut Vec<ChatEvent>,
    ) -> Result<(), StreamError>;
}

/// The decoder of one 2xx `text/event-stream` response body in dialect `D`.
#[derive(Clone, Debug)]
pub struct EventStream<D> {
    sse: SseDecoder,
    sse_events: Vec<SseEvent>,
    partial: Partial,
    failed: Option<StreamError>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> EventStream<D> {
    /// A decoder at the start of a body.
    pub fn new(limits: StreamLimits) -> Self {
        EventStream {
            sse: SseDecoder::new(limits.sse),
            sse_events: Vec::new(),
            partial: Partial {
                tool_calls: ToolCalls::new(limits),
                finish_reason: None,
                usage: None,
                response_model: None,
                done: false,
            },
            failed: None,
            dialect: PhantomData,
        }
    }

    /// Whether the API's end marker has arrived (the caller may close the connection).
    pub fn is_done(&self) -> bool {
        self.partial.done
    }

    /// The tool calls accumulated so far, by index.
    pub fn tool_calls(&self) -> impl Iterator<Item = (u32, &ToolCall)> {
        self.partial.tool_calls.iter()
    }

    /// The bytes held; at most [`StreamLimits::max_buffered_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.sse.buffered_bytes()
            + self.partial.tool_calls.bytes()
            + self.partial.response_model.as_ref().map_or(0, String::len)
    }

    /// Decode `bytes`, appending the events they complete to `out`. On an error the events
    /// before it are in `out`, and every later call returns the same error.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.partial.done {
            return Ok(());
        }
        let mut sse_events = core::mem::take(&mut self.sse_events);
        let framed = self.sse.feed(bytes, &mut sse_events);
        let mut result = Ok(());
        for ev in sse_events.drain(..) {
            if self.partial.done {
                break;
            }
            result = D::on_event(&mut self.partial, &ev, out);
            if result.is_err() {
                break;
            }
        }
        self.sse_events = sse_events;
        // An SSE error stops the stream after the events that came before it.
        let result = result.and(if self.partial.done {
            Ok(())
        } else {
            framed.map_err(Into::into)
        });
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The end of the body: the [`Completion`] if the response was complete (its end marker
    /// or a finish reason seen), else [`StreamError::Truncated`] or the error that stopped it.
    pub fn finish(&mut self) -> Result<Completion, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let p = &self.partial;
        if !p.done && p.finish_reason.is_none() {
            return Err(StreamError::Truncated);
        }
        Ok(Completion {
            finish_reason: p.finish_reason.clone(),
            usage: p.usage,
            tool_calls: p.tool_calls.to_vec(),
            response_model: p.response_model.clone(),
        })
    }
}

impl<D: Dialect> Default for EventStream<D> {
    fn default() -> Self {
        EventStream::new(StreamLimits::default())
    }
}
