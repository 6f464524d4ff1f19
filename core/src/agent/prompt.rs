//! The system prompt of a turn. Upstream builds a long one from its workspace files and
//! tools; clawgate has neither, so it sends upstream's opening line (its whole prompt in
//! `promptMode: "none"`), the agent's configured `identity`, and upstream's model identity
//! line.

use crate::config::{AgentIdentity, ModelRoute};
use crate::tools::skills::{Skill, prompt_section};

/// Upstream's first line of every agent system prompt.
const OPENING: &str = "You are a personal assistant running inside OpenClaw.";

/// The system prompt for a turn of the agent with `identity` on `route`, with `skills`.
pub(crate) fn system_prompt(
    identity: &AgentIdentity,
    route: &ModelRoute,
    skills: &[Skill],
) -> String {
    let mut lines = vec![OPENING.to_string()];
    if let Some(name) = &identity.name {
        lines.push(format!("Your name is {name}."));
    }
    if let Some(theme) = &identity.theme {
        lines.push(format!("Your persona: {theme}."));
    }
    if let Some(emoji) = &identity.emoji {
        lines.push(format!("Your emoji is {emoji}."));
    }
    lines.push(format!(
        "Current model identity: {}/{}. If asked what model you are, answer with this value for the current run.",
        route.provider, route.model
    ));
    lines.extend(prompt_section(skills));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_identity_and_model() {
        let route = ModelRoute::new("fake", "fake-1", "http://127.0.0.1:9/v1");
        assert_eq!(
            system_prompt(&AgentIdentity::default(), &route, &[]),
            "You are a personal assistant running inside OpenClaw.\nCurrent model identity: fake/fake-1. If asked what model you are, answer with this value for the current run."
        );
        let samantha = AgentIdentity {
            name: Some("Samantha".into()),
            theme: Some("helpful sloth".into()),
            emoji: Some("🦥".into()),
        };
        let prompt = system_prompt(&samantha, &route, &[]);
        assert!(prompt.contains(
            "\nYour name is Samantha.\nYour persona: helpful sloth.\nYour emoji is 🦥.\n"
        ));
    }
}
