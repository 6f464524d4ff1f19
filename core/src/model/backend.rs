//! The one interface the agent talks to a model through, whatever API the provider speaks:
//! a [`ModelRoute`] turns a system prompt and a transcript into the [`HttpRequest`] of one
//! streamed turn ([`ModelRoute::turn_request`]) and gives the decoder of its answer
//! ([`ModelRoute::turn_stream`], a [`TurnStream`] yielding the same [`ChatEvent`]s for every
//! API), and words its failures with the config key that fixes them.

use core::time::Duration;

use crate::config::{ModelApi, ModelRoute};
use crate::model::HttpRequest;
use crate::model::anthropic::{MessagesRequest, MessagesStream};
use crate::model::openai::{
    ChatEvent, ChatRequest, ChatStream, Completion, ErrorKind, Message, ProviderError, StreamError,
    StreamLimits, ToolSpec,
};

/// The decoder of one turn's 2xx response body, in its API's dialect.
#[derive(Clone, Debug)]
pub enum TurnStream {
    /// `openai-completions`.
    OpenAi(ChatStream),
    /// `anthropic-messages`.
    Anthropic(MessagesStream),
}

impl TurnStream {
    /// A decoder for `api` with `limits`.
    pub fn new(api: ModelApi, limits: StreamLimits) -> Self {
        match api {
            ModelApi::OpenAiCompletions => TurnStream::OpenAi(ChatStream::new(limits)),
            ModelApi::AnthropicMessages => TurnStream::Anthropic(MessagesStream::new(limits)),
        }
    }

    /// Decode `bytes`, appending the events they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), StreamError> {
        match self {
            TurnStream::OpenAi(s) => s.feed(bytes, out),
            TurnStream::Anthropic(s) => s.feed(bytes, out),
        }
    }

    /// The end of the body: the completion, or why the answer is incomplete.
    pub fn finish(&mut self) -> Result<Completion, StreamError> {
        match self {
            TurnStream::OpenAi(s) => s.finish(),
            TurnStream::Anthropic(s) => s.finish(),
        }
    }
}

impl Default for TurnStream {
    fn default() -> Self {
        TurnStream::new(ModelApi::OpenAiCompletions, StreamLimits::default())
    }
}

impl ModelRoute {
    /// The request of one streamed turn: `system` (if any) then `messages`, in this route's
    /// API, with its key (unless `authHeader: false`) and its configured headers, which
    /// replace a default header of the same name.
    pub fn turn_request(
        &self,
        system: Option<&str>,
        messages: &[&Message],
        tools: Vec<ToolSpec>,
    ) -> HttpRequest {
        let key = self
            .api_key
            .as_ref()
            .filter(|_| self.auth_header)
            .map(|k| k.expose());
        let system = system.map(|s| Message::System(s.to_string()));
        let messages: Vec<&Message> = system.iter().chain(messages.iter().copied()).collect();
        let mut req = match self.api {
            ModelApi::OpenAiCompletions => ChatRequest {
                model: self.model.clone(),
                messages,
                tools,
            }
            .to_http(&self.base_url, key),
            ModelApi::AnthropicMessages => MessagesRequest {
                model: self.model.clone(),
                max_tokens: self.max_tokens,
                messages,
                tools,
            }
            .to_http(&self.base_url, key),
        };
        for (name, value) in &self.headers {
            req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            req.headers
                .push((name.clone().into(), value.expose().to_string()));
        }
        req
    }

    /// The decoder of a turn's answer.
    pub fn turn_stream(&self, limits: StreamLimits) -> TurnStream {
        TurnStream::new(self.api, limits)
    }

    /// `model provider "<id>"`, as every failure message starts.
    fn named(&self) -> String {
        format!("model provider {:?}", self.provider)
    }

    /// A provider's refusal in words: who, the HTTP status, what it said, and the config key
    /// to check when one would fix it.
    pub fn describe_refusal(&self, e: &ProviderError) -> String {
        let said = match e.status {
            Some(status) => format!("answered HTTP {status} ({})", e.kind),
            None => format!("reported an error ({})", e.kind),
        };
        let mut text = format!("{} {said}: {}", self.named(), e.message_preview);
        let hint = match (e.kind, e.status) {
            (ErrorKind::Auth, _) => Some(format!("check {}", self.key_hint)),
            (_, Some(404)) => Some(format!(
                "check models.providers.{}.baseUrl ({}) and the model id {:?}",
                self.provider, self.base_url, self.model
            )),
            _ => None,
        };
        if let Some(hint) = hint {
            text.push_str("; ");
            text.push_str(&hint);
        }
        text
    }

    /// A request that failed before an answer (connect, DNS, TLS) in words, naming the
    /// `baseUrl` and its key.
    pub fn describe_unreachable(&self, error: &str) -> String {
        format!(
            "{} at {} cannot be reached: {error}; check models.providers.{}.baseUrl",
            self.named(),
            self.base_url,
            self.provider
        )
    }

    /// A model that went silent for `waited` in words, naming the key that allows longer.
    pub fn describe_timeout(&self, waited: Duration, what: &str) -> String {
        format!(
            "{} sent nothing for {} s ({what} timeout); raise models.providers.{}.timeoutSeconds if it is just slow",
            self.named(),
            waited.as_secs_f32(),
            self.provider
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use crate::model::openai::classify_http_error;

    fn anthropic() -> ModelRoute {
        let mut r = ModelRoute::new("anthropic", "claude-x", "http://127.0.0.1:9");
        r.api = ModelApi::AnthropicMessages;
        r.api_key = Some(Secret::new("sk-ant"));
        r.key_hint = "models.providers.anthropic.apiKey (or ANTHROPIC_API_KEY)".into();
        r.headers = vec![
            ("anthropic-version".into(), Secret::new("2099-01-01")),
            ("X-Team".into(), Secret::new("t1")),
        ];
        r
    }

    #[test]
    fn one_interface_two_wire_formats() {
        let hi = Message::User("hi".into());
        let messages = [&hi];
        let a = anthropic().turn_request(Some("Be brief."), &messages, vec![]);
        assert_eq!(a.url, "http://127.0.0.1:9/v1/messages");
        assert_eq!(a.header("x-api-key"), Some("sk-ant"));
        assert_eq!(a.header("anthropic-version"), Some("2099-01-01"));
        assert_eq!(a.header("x-team"), Some("t1"));
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["system"][0]["text"], "Be brief.");
        assert_eq!(body["max_tokens"], 4096);

        let mut o = ModelRoute::new("fake", "fake-1", "http://127.0.0.1:9/v1");
        o.api_key = Some(Secret::new("sk-o"));
        let r = o.turn_request(Some("Be brief."), &messages, vec![]);
        assert_eq!(r.url, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-o"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["messages"][0]["role"], "system");
        o.auth_header = false;
        assert_eq!(
            o.turn_request(None, &messages, vec![])
                .header("authorization"),
            None
        );
    }

    #[test]
    fn failures_name_the_provider_the_status_and_the_key() {
        let r = anthropic();
        let e = classify_http_error(
            401,
            None,
            br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        );
        assert_eq!(
            r.describe_refusal(&e),
            "model provider \"anthropic\" answered HTTP 401 (auth): invalid x-api-key; check models.providers.anthropic.apiKey (or ANTHROPIC_API_KEY)"
        );
        let e = classify_http_error(404, None, b"not found");
        assert!(
            r.describe_refusal(&e)
                .ends_with("check models.providers.anthropic.baseUrl (http://127.0.0.1:9) and the model id \"claude-x\""),
        );
        assert!(
            r.describe_unreachable("connection refused")
                .contains("at http://127.0.0.1:9 cannot be reached: connection refused; check models.providers.anthropic.baseUrl")
        );
        assert!(r.describe_timeout(Duration::from_secs(2), "idle").contains(
            "sent nothing for 2 s (idle timeout); raise models.providers.anthropic.timeoutSeconds"
        ));
    }
}
