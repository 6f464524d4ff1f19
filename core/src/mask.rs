//! Keeping secrets out of logs and out of `config.get`.

use serde_json::Value;

const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "deviceToken",
    "bootstrapToken",
    "secret",
    "apiKey",
    "signature",
    "approvalRuntimeToken",
    "agentRuntimeIdentityToken",
];

fn is_secret_key(k: &str) -> bool {
    SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(k))
        || k.to_ascii_lowercase().ends_with("token")
        || k.to_ascii_lowercase().contains("password")
}

/// A copy of `v` with every secret-looking value replaced by `"__OPENCLAW_REDACTED__"`.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(crate::sorting::map_of(m.iter().map(|(k, x)| {
            let x = if is_secret_key(k) && (x.is_string() || x.is_number()) {
                Value::String("__OPENCLAW_REDACTED__".into())
            } else {
                redact(x)
            };
            (k.clone(), x)
        }))),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// A frame's text with secrets masked, for `--verbose` logs. Non-JSON text is shown by length only.
pub fn mask_secrets(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => redact(&v).to_string(),
        Err(_) => format!("<{} bytes of non-JSON text>", text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_nested_secrets() {
        let t =
            r#"{"params":{"auth":{"token":"s3cret","password":"p"},"device":{"signature":"x"}}}"#;
        let m = mask_secrets(t);
        assert!(!m.contains("s3cret") && !m.contains("\"p\"") && !m.contains("\"x\""));
        assert!(m.contains("__OPENCLAW_REDACTED__"));
    }
}
