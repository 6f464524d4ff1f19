//! One tool call and its outcome, bounded in size.

use serde_json::Value;

/// A call the model (or `tools.invoke`) made.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The provider's call id (`call_…`, `toolu_…`), echoed in the result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments; an object unless the model wrote something else.
    pub arguments: Value,
}

impl ToolCall {
    /// A call from the model's text arguments: invalid JSON becomes a string the tool
    /// refuses, an empty text an empty object.
    pub fn from_model(id: &str, name: &str, arguments: &str) -> Self {
        let arguments = if arguments.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.into()))
        };
        Self {
            id: id.to_string(),
            name: name.to_string(),
            arguments,
        }
    }

    /// The string argument `key`, if present.
    pub fn str_arg(&self, key: &str) -> Option<&str> {
        self.arguments.get(key).and_then(Value::as_str)
    }
}

/// What a tool answered.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolContent {
    /// Plain text.
    Text(String),
    /// A JSON value (sent to the model as its text).
    Json(Value),
}

/// The outcome of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutcome {
    /// What it answered.
    pub content: ToolContent,
    /// The call failed (the content says why).
    pub is_error: bool,
    /// The content was cut to the result bound.
    pub truncated: bool,
}

/// The marker that ends a truncated result.
pub const TRUNCATED_MARKER: &str = "\n[… result truncated by the gateway]";

impl ToolOutcome {
    /// A text result.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: ToolContent::Text(text.into()),
            is_error: false,
            truncated: false,
        }
    }

    /// A JSON result.
    pub fn json(value: Value) -> Self {
        Self {
            content: ToolContent::Json(value),
            is_error: false,
            truncated: false,
        }
    }

    /// A failure, with the text the model and the user see.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            content: ToolContent::Text(text.into()),
            is_error: true,
            truncated: false,
        }
    }

    /// The content as text (JSON serialised).
    pub fn as_text(&self) -> String {
        match &self.content {
            ToolContent::Text(t) => t.clone(),
            ToolContent::Json(v) => v.to_string(),
        }
    }

    /// The outcome cut to at most `max` bytes of text (on a character boundary) plus
    /// [`TRUNCATED_MARKER`]; a JSON result that is too large becomes its cut text.
    pub fn bounded(self, max: usize) -> Self {
        let over = match &self.content {
            ToolContent::Text(t) => t.len() > max,
            ToolContent::Json(v) => json_len(v) > max,
        };
        if !over {
            return self;
        }
        let mut text = self.as_text();
        bound_text(&mut text, max);
        Self {
            content: ToolContent::Text(text),
            is_error: self.is_error,
            truncated: true,
        }
    }
}

/// The length of `v`'s JSON text, without building it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Text cut to at most `max` bytes on a character boundary with [`TRUNCATED_MARKER`], and
/// whether it was cut (for output read in pieces, such as a command's).
pub fn bound_text(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(TRUNCATED_MARKER);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn large_results_are_cut_with_a_marker() {
        let o = ToolOutcome::text("é".repeat(100)).bounded(51);
        assert!(o.truncated);
        let t = o.as_text();
        assert!(t.ends_with(TRUNCATED_MARKER));
        assert_eq!(t.len(), 50 + TRUNCATED_MARKER.len());
        let small = ToolOutcome::json(json!({"a": 1})).bounded(100);
        assert!(!small.truncated);
        let big = ToolOutcome::json(json!({"a": "x".repeat(200)})).bounded(10);
        assert_eq!(big.as_text(), format!("{{\"a\":\"xxxx{TRUNCATED_MARKER}"));
    }

    #[test]
    fn model_arguments() {
        assert_eq!(ToolCall::from_model("c", "t", "").arguments, json!({}));
        assert_eq!(
            ToolCall::from_model("c", "t", "{\"a\":1}").arguments,
            json!({"a": 1})
        );
        assert_eq!(ToolCall::from_model("c", "t", "{").arguments, json!("{"));
    }
}
