//! Printing: JSON documents as upstream prints them (two-space indent), warnings on stderr.

use serde_json::Value;

/// Print a JSON document on stdout, indented by two spaces.
pub fn print_json(doc: &Value) {
    match serde_json::to_string_pretty(doc) {
        Ok(s) => say!("{s}"),
        Err(e) => eprintln!("clawgate: cannot print JSON: {e}"),
    }
}

/// Print a warning on stderr.
pub fn warn(message: &str) {
    eprintln!("clawgate: warning: {message}");
}

/// Print rows as aligned columns (the first row is the header).
pub fn table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        say!("{}", line.join("  ").trim_end());
    }
}

/// A JSON field as display text (`-` when absent, lists joined by commas).
pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// A JSON array field's items, none when the field is absent or not an array.
pub fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The first 12 characters of an id, enough to tell devices apart in a table.
pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// A list field as a count and its first few entries (`21: a,b,c,…`).
pub fn count_list(v: &Value, key: &str) -> String {
    const SHOWN: usize = 3;
    let items: Vec<String> = v
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match items.len() {
        0 => "-".into(),
        n if n <= SHOWN => items.join(","),
        n => format!(
            "{n}: {},…",
            items.get(..SHOWN).unwrap_or_default().join(",")
        ),
    }
}
