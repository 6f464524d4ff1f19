//! Skills: folders with a `SKILL.md` whose front matter names the skill and says what it is
//! for. The host finds and reads them ([`roots`] says where, in upstream's precedence order;
//! [`parse`] reads one); their names and descriptions go into the system prompt
//! ([`prompt_section`]), and the `read_skill` tool ([`SkillsProvider`]) returns a skill's
//! instructions when the model asks for them.

use std::time::Instant;

use serde_json::{Value, json};

use super::{
    CallContext, CallId, ProviderIo, ToolCall, ToolEntry, ToolOutcome, ToolProvider, ToolSource,
};
use crate::work::WorkResult;

/// The name of the tool that returns a skill's instructions.
pub const READ_SKILL: &str = "read_skill";
/// The largest `SKILL.md` read (upstream's bound).
pub const MAX_SKILL_BYTES: usize = 256 * 1024;
/// How deep under a root a `SKILL.md` is looked for (upstream's 6 levels).
pub const MAX_DEPTH: usize = 6;

/// One skill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skill {
    /// Its name (front matter `name`, else its folder's name).
    pub name: String,
    /// What it is for (front matter `description`).
    pub description: String,
    /// The path of its `SKILL.md`.
    pub location: String,
    /// Its instructions: the file after the front matter.
    pub body: String,
}

/// Why a `SKILL.md` is skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkillError {
    /// The file does not start with a `---` front matter block.
    #[error("no front matter")]
    NoFrontMatter,
    /// The front matter has no `description`.
    #[error("no description in the front matter")]
    NoDescription,
}

/// The directories skills are read from, highest precedence first: `<workspace>/skills`,
/// `<workspace>/.agents/skills`, `~/.agents/skills` (only with the default state
/// directory), `<state-dir>/skills`, then `skills.load.extraDirs`. The workspace is
/// `agents.defaults.workspace`, else `<state-dir>/workspace`.
pub fn roots(file: &Value, state_dir: &str, home: Option<&str>) -> Vec<String> {
    let workspace = crate::config::str_at(file, &["agents", "defaults", "workspace"])
        .map(|w| expand_home(&w, home))
        .unwrap_or_else(|| format!("{state_dir}/workspace"));
    let mut roots = vec![
        format!("{workspace}/skills"),
        format!("{workspace}/.agents/skills"),
    ];
    if let Some(home) = home
        && state_dir == format!("{home}/.openclaw")
    {
        roots.push(format!("{home}/.agents/skills"));
    }
    roots.push(format!("{state_dir}/skills"));
    if let Some(Value::Array(extra)) = crate::config::at(file, &["skills", "load", "extraDirs"]) {
        roots.extend(
            extra
                .iter()
                .filter_map(Value::as_str)
                .map(|d| expand_home(d, home)),
        );
    }
    roots
}

fn expand_home(path: &str, home: Option<&str>) -> String {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

/// Read one `SKILL.md` (`text`), found in the folder `folder` at `location`.
pub fn parse(text: &str, folder: &str, location: &str) -> Result<Skill, SkillError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Err(SkillError::NoFrontMatter);
    }
    let mut front: Vec<&str> = Vec::new();
    let mut closed = false;
    for line in lines.by_ref() {
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        front.push(line);
    }
    if !closed {
        return Err(SkillError::NoFrontMatter);
    }
    let body = lines.collect::<Vec<_>>().join("\n").trim().to_string();
    let name = field(&front, "name").unwrap_or_else(|| folder.to_string());
    let description = field(&front, "description").ok_or(SkillError::NoDescription)?;
    Ok(Skill {
        name,
        description,
        location: location.to_string(),
        body,
    })
}

/// A top-level `key: value` of YAML-ish front matter: a plain or quoted scalar, or a `|`/`>`
/// block of the indented lines below it (joined with spaces).
fn field(front: &[&str], key: &str) -> Option<String> {
    let at = front.iter().position(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })?;
    let line = front.get(at)?;
    let value = line[key.len()..].trim_start().strip_prefix(':')?.trim();
    let value = if matches!(value, "|" | ">" | "|-" | ">-" | "") {
        front
            .iter()
            .skip(at + 1)
            .take_while(|l| l.starts_with(' ') || l.starts_with('\t') || l.is_empty())
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        unquote(value).to_string()
    };
    Some(value).filter(|v| !v.is_empty())
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// The skills section of the system prompt (upstream's `<available_skills>` block), or
/// nothing without skills.
pub fn prompt_section(skills: &[Skill]) -> Option<String> {
    if skills.is_empty() {
        return None;
    }
    let mut s = format!(
        "## Skills\nBefore replying, scan the skills below. If one clearly applies, call {READ_SKILL} with its name to read its instructions, then follow them.\n<available_skills>"
    );
    for skill in skills {
        s.push_str(&format!(
            "\n  <skill>\n    <name>{}</name>\n    <description>{}</description>\n    <location>{}</location>\n  </skill>",
            xml(&skill.name),
            xml(&skill.description),
            xml(&skill.location)
        ));
    }
    s.push_str("\n</available_skills>");
    Some(s)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `read_skill` tool over the skills found at start-up.
#[derive(Debug)]
pub struct SkillsProvider {
    skills: Vec<Skill>,
}

impl SkillsProvider {
    /// The tool over `skills`.
    pub fn new(skills: Vec<Skill>) -> Self {
        Self { skills }
    }
}

impl ToolProvider for SkillsProvider {
    fn source(&self) -> ToolSource {
        ToolSource::Skill
    }

    fn tools(&self) -> Vec<ToolEntry> {
        let names: Vec<&str> = self.skills.iter().map(|s| s.name.as_str()).collect();
        vec![ToolEntry::new(
            READ_SKILL,
            "Read the instructions of one of the available skills.",
            json!({
                "type": "object",
                "properties": {"name": {"type": "string", "enum": names, "description": "The skill's name."}},
                "required": ["name"],
            }),
            ToolSource::Skill,
        )]
    }

    fn start(
        &mut self,
        _: Instant,
        id: CallId,
        call: &ToolCall,
        _: &CallContext,
        io: &mut ProviderIo,
    ) {
        let name = call.str_arg("name").unwrap_or_default();
        let outcome = match self.skills.iter().find(|s| s.name == name) {
            Some(skill) => ToolOutcome::text(skill.body.clone()),
            None => ToolOutcome::error(format!("No skill named {name:?}")),
        };
        io.finish(id, outcome);
    }

    fn work_result(&mut self, _: Instant, _: u64, _: WorkResult, _: &mut ProviderIo) {}

    fn cancel(&mut self, _: Instant, _: CallId, _: &mut ProviderIo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_names_and_describes_a_skill() {
        let s = parse(
            "---\nname: image-lab\ndescription: \"Edit images\"\nmetadata: {}\n---\n# Use it\nSteps.\n",
            "folder",
            "/s/image-lab/SKILL.md",
        )
        .unwrap();
        assert_eq!(s.name, "image-lab");
        assert_eq!(s.description, "Edit images");
        assert_eq!(s.body, "# Use it\nSteps.");
        let s = parse("---\ndescription: >\n  Two\n  lines\n---\nBody", "dir", "l").unwrap();
        assert_eq!(
            (s.name.as_str(), s.description.as_str()),
            ("dir", "Two lines")
        );
        assert_eq!(
            parse("# no front matter", "d", "l"),
            Err(SkillError::NoFrontMatter)
        );
        assert_eq!(
            parse("---\nname: x\n", "d", "l"),
            Err(SkillError::NoFrontMatter)
        );
        assert_eq!(
            parse("---\nname: x\n---\n", "d", "l"),
            Err(SkillError::NoDescription)
        );
    }

    #[test]
    fn roots_follow_upstreams_precedence() {
        let file = json!({"skills": {"load": {"extraDirs": ["~/more", "/abs"]}}});
        assert_eq!(
            roots(&file, "/h/.openclaw", Some("/h")),
            [
                "/h/.openclaw/workspace/skills",
                "/h/.openclaw/workspace/.agents/skills",
                "/h/.agents/skills",
                "/h/.openclaw/skills",
                "/h/more",
                "/abs"
            ]
        );
        let file = json!({"agents": {"defaults": {"workspace": "/w"}}});
        assert_eq!(
            roots(&file, "/state", Some("/h")),
            ["/w/skills", "/w/.agents/skills", "/state/skills"]
        );
    }
}
