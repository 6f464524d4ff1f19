//! Finding and reading skills at start-up (and on reload): every `SKILL.md` under the
//! roots the core names ([`clawgate_core::tools::skills::roots`]), up to
//! [`MAX_DEPTH`] levels deep, not below a folder that has one; the first skill of a name
//! wins (roots come highest precedence first). A file that is too large or has no valid
//! front matter is skipped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use clawgate_core::tools::skills::{MAX_DEPTH, MAX_SKILL_BYTES, Skill, parse, roots};
use serde_json::Value;

/// The skills under the roots for the config `file` and `state_dir`.
pub fn load(file: &Value, state_dir: &str, env: &BTreeMap<String, String>) -> Vec<Skill> {
    let home = env
        .get("HOME")
        .map(String::as_str)
        .filter(|h| !h.is_empty());
    let mut skills: Vec<Skill> = Vec::new();
    for root in roots(file, state_dir, home) {
        let mut found = Vec::new();
        walk(Path::new(&root), 0, &mut found);
        clawgate_core::sorting::sort_by(&mut found, |a, b| a.location.cmp(&b.location));
        for skill in found {
            if !skills.iter().any(|s| s.name == skill.name) {
                skills.push(skill);
            }
        }
    }
    skills
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<Skill>) {
    let file = dir.join("SKILL.md");
    if file.is_file() {
        if let Some(skill) = read(&file, dir) {
            found.push(skill);
        }
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_dir() {
            walk(&path, depth + 1, found);
        }
    }
}

fn read(file: &Path, dir: &Path) -> Option<Skill> {
    let mut text = String::new();
    std::fs::File::open(file)
        .ok()?
        .take(MAX_SKILL_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .ok()?;
    if text.len() > MAX_SKILL_BYTES {
        return None;
    }
    let folder = dir.file_name()?.to_string_lossy();
    parse(&text, &folder, &file.display().to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_are_found_nested_and_the_first_name_wins() {
        let base = std::env::temp_dir().join(format!("clawgate-skills-{}", std::process::id()));
        let state = base.join("state");
        let write = |rel: &str, text: &str| {
            let p = state.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "workspace/skills/group/research/SKILL.md",
            "---\ndescription: ws\n---\nA",
        );
        write(
            "skills/research/SKILL.md",
            "---\ndescription: managed\n---\nB",
        );
        write(
            "skills/notes/SKILL.md",
            "---\nname: notes\ndescription: n\n---\nC",
        );
        write(
            "skills/notes/inner/SKILL.md",
            "---\nname: inner\ndescription: i\n---\nD",
        );
        write("skills/bad/SKILL.md", "no front matter");
        let skills = load(&Value::Null, &state.display().to_string(), &BTreeMap::new());
        let got: Vec<(&str, &str)> = skills
            .iter()
            .map(|s| (s.name.as_str(), s.description.as_str()))
            .collect();
        assert_eq!(got, [("research", "ws"), ("notes", "n")]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
