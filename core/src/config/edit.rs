//! Changes the gateway and the command line make to `openclaw.json`, as upstream makes them:
//! on the parsed file (JSON5 read, written back as JSON, as upstream's writer does), leaving
//! every other key as it was. The host reads, applies and writes the file atomically on a
//! worker thread ([`crate::Work::EditConfig`]); this module only decides the new document.

use serde_json::{Map, Value, json};

/// One change to `openclaw.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigEdit {
    /// Remove `fields` of account `account_id` in `channels.<section>` (upstream's
    /// `clearAccountFieldsFromConfigSection`, what `channels.logout` does with `botToken`):
    /// at the section's root for the `default` account (when one of them is set), and in
    /// `accounts.<id>`, pruning the entry, `accounts` and the section once they are empty.
    ClearAccountFields {
        /// The `channels` section (`telegram`).
        section: String,
        /// The account.
        account_id: String,
        /// The keys to remove.
        fields: Vec<String>,
    },
    /// Set `commands.ownerAllowFrom` to `[owner]` when it is missing or empty (the first
    /// pairing approval's owner bootstrap).
    BootstrapOwner(String),
}

/// What an edit did to the document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Edited {
    /// The document changed (the file is rewritten).
    pub changed: bool,
    /// A value that was set was removed (`channels.logout`'s `cleared`).
    pub cleared: bool,
}

/// Why an edit cannot apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditError(pub String);

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EditError {}

/// Whether a config value counts as set (a non-empty string, or a secret reference).
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    }
}

impl ConfigEdit {
    /// Apply the edit to the parsed file `doc` (an object, or `null` for a missing file).
    pub fn apply(&self, doc: &mut Value) -> Result<Edited, EditError> {
        if doc.is_null() {
            *doc = json!({});
        }
        let root = doc
            .as_object_mut()
            .ok_or_else(|| EditError("the file is not a JSON object".into()))?;
        match self {
            ConfigEdit::ClearAccountFields {
                section,
                account_id,
                fields,
            } => Ok(clear_account_fields(root, section, account_id, fields)),
            ConfigEdit::BootstrapOwner(owner) => bootstrap_owner(root, owner),
        }
    }
}

fn clear_account_fields(
    root: &mut Map<String, Value>,
    section: &str,
    account_id: &str,
    fields: &[String],
) -> Edited {
    let Some(sec) = root
        .get_mut("channels")
        .and_then(Value::as_object_mut)
        .and_then(|c| c.get_mut(section))
        .and_then(Value::as_object_mut)
    else {
        return Edited::default();
    };
    let mut edited = Edited::default();
    if account_id == "default" && fields.iter().any(|f| sec.get(f).is_some_and(is_set)) {
        for f in fields {
            sec.remove(f);
        }
        edited = Edited {
            changed: true,
            cleared: true,
        };
    }
    if let Some(accounts) = sec.get_mut("accounts").and_then(Value::as_object_mut) {
        let entry = accounts.get_mut(account_id).and_then(Value::as_object_mut);
        if let Some(entry) = entry.filter(|e| fields.iter().any(|f| e.contains_key(f))) {
            for f in fields {
                if entry.remove(f).is_some_and(|v| is_set(&v)) {
                    edited.cleared = true;
                }
            }
            edited.changed = true;
            if entry.is_empty() {
                accounts.remove(account_id);
            }
        }
        if accounts.is_empty() && edited.changed {
            sec.remove("accounts");
        }
    }
    if edited.changed
        && sec.is_empty()
        && let Some(channels) = root.get_mut("channels").and_then(Value::as_object_mut)
    {
        channels.remove(section);
    }
    edited
}

fn bootstrap_owner(root: &mut Map<String, Value>, owner: &str) -> Result<Edited, EditError> {
    let commands = root.entry("commands").or_insert_with(|| json!({}));
    let commands = commands
        .as_object_mut()
        .ok_or_else(|| EditError("commands must be an object".into()))?;
    let has_owner = commands
        .get("ownerAllowFrom")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_owner {
        return Ok(Edited::default());
    }
    commands.insert("ownerAllowFrom".into(), json!([owner]));
    Ok(Edited {
        changed: true,
        cleared: false,
    })
}

/// The file's new text: JSON, two-space indented, with a final newline (upstream's writer).
pub fn render(doc: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logout(account: &str) -> ConfigEdit {
        ConfigEdit::ClearAccountFields {
            section: "telegram".into(),
            account_id: account.into(),
            fields: vec!["botToken".into()],
        }
    }

    #[test]
    fn logout_removes_the_token_and_keeps_the_rest() {
        let mut doc = json!({"gateway": {"port": 1},
            "channels": {"telegram": {"botToken": "1:a", "dmPolicy": "open"}}});
        let e = logout("default").apply(&mut doc).unwrap();
        assert_eq!(
            e,
            Edited {
                changed: true,
                cleared: true
            }
        );
        assert_eq!(
            doc,
            json!({"gateway": {"port": 1}, "channels": {"telegram": {"dmPolicy": "open"}}})
        );
        assert_eq!(
            logout("default").apply(&mut doc).unwrap(),
            Edited::default()
        );
    }

    #[test]
    fn a_named_account_loses_its_entry_and_empty_parents_are_pruned() {
        let mut doc = json!({"channels": {"telegram": {"accounts": {"ops": {"botToken": "2:b"}}}}});
        let e = logout("ops").apply(&mut doc).unwrap();
        assert!(e.changed && e.cleared);
        assert_eq!(doc, json!({"channels": {}}));
        let mut doc = json!({"channels": {"telegram": {"botToken": "1:a"}}});
        assert_eq!(logout("ops").apply(&mut doc).unwrap(), Edited::default());
    }

    #[test]
    fn the_owner_is_set_only_when_empty() {
        let mut doc = Value::Null;
        let e = ConfigEdit::BootstrapOwner("telegram:1".into())
            .apply(&mut doc)
            .unwrap();
        assert!(e.changed);
        assert_eq!(doc, json!({"commands": {"ownerAllowFrom": ["telegram:1"]}}));
        let again = ConfigEdit::BootstrapOwner("telegram:2".into())
            .apply(&mut doc)
            .unwrap();
        assert!(!again.changed);
        assert!(
            ConfigEdit::BootstrapOwner("x".into())
                .apply(&mut json!([]))
                .is_err()
        );
        assert!(render(&doc).ends_with(b"}\n"));
    }
}
