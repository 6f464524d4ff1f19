//! `openclaw.json` changed in place, as upstream changes it: read (JSON5), edited
//! ([`ConfigEdit`]), written back as JSON atomically (temp file, fsync, rename, fsync of the
//! directory), every other key kept. The gateway's edits run on a file worker thread, never
//! on the event loop; the command line calls [`edit`] directly.

use std::path::Path;
use std::sync::Mutex;

use clawgate_core::config::edit::{ConfigEdit, Edited, render};
use serde_json::Value;

/// One edit at a time in this process: two would read the same file and the second write
/// would lose the first's change.
static EDITING: Mutex<()> = Mutex::new(());

/// Apply `change` to the file at `path` (a missing or empty file is an empty object); the
/// file is rewritten only when the document changed. The error names the file.
pub fn edit(path: &Path, change: &ConfigEdit) -> Result<Edited, String> {
    let _one = EDITING.lock().unwrap_or_else(|e| e.into_inner());
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    let mut doc = if text.trim().is_empty() {
        Value::Null
    } else {
        clawgate_core::config::parse_file(&text)
            .map_err(|e| format!("{shown} is not valid JSON5: {e}"))?
    };
    let edited = change
        .apply(&mut doc)
        .map_err(|e| format!("{shown}: {e}"))?;
    if edited.changed {
        crate::store::write_atomic(path, &render(&doc))
            .map_err(|e| format!("cannot write {shown}: {e}"))?;
    }
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json5_is_read_and_json_written_with_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("clawgate-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("openclaw.json");
        std::fs::write(
            &path,
            "// mine\n{ gateway: { port: 1 }, channels: { telegram: { botToken: '1:a', dmPolicy: 'open' } } }",
        )
        .unwrap();
        let logout = ConfigEdit::ClearAccountFields {
            section: "telegram".into(),
            account_id: "default".into(),
            fields: vec!["botToken".into()],
        };
        let e = edit(&path, &logout).unwrap();
        assert!(e.changed && e.cleared);
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"gateway": {"port": 1}, "channels": {"telegram": {"dmPolicy": "open"}}})
        );
        assert!(!edit(&path, &logout).unwrap().changed);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
