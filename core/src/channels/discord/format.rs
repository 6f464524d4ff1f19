//! Replies as Discord messages: the agent's Markdown is Discord's own, so it is sent as
//! written, cut under `textChunkLimit` (at most Discord's 2,000) on paragraph, line and
//! word boundaries.

use crate::channels::chunk::split_markdown;

/// Discord's limit on one message's content.
pub const DISCORD_MAX_TEXT: usize = 2000;

/// The reply as Discord messages.
pub fn chunks(md: &str, limit: usize) -> Vec<String> {
    let limit = limit.clamp(1, DISCORD_MAX_TEXT);
    let mut out = split_markdown(md.trim_end(), limit, true);
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chunk::units;

    #[test]
    fn long_replies_are_cut_under_2000_at_words() {
        let text = (0..900)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let out = chunks(&text, 5000);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|c| units(c) <= DISCORD_MAX_TEXT));
        assert_eq!(out.join(" "), text, "cut between words, nothing lost");
        assert_eq!(chunks("**hi** `x`", 2000), ["**hi** `x`"]);
    }
}
