//! A reply as Slack messages: the agent's Markdown written as Slack's mrkdwn (`*bold*`,
//! `_italic_`, `~strike~`, `<url|text>`, code as is; `&`, `<`, `>` escaped) and cut under the
//! account's `textChunkLimit` (upstream's 8,000 by default): paragraphs first, then lines,
//! then characters, counting as upstream does (UTF-16 units).

use crate::channels::chunk::{split_markdown, units};

/// `&`, `<` and `>` escaped as Slack requires.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown as mrkdwn.
pub fn mrkdwn(md: &str) -> String {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.split('\n') {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push(escape(line));
        } else if fenced {
            out.push(escape(line));
        } else if let Some(h) = heading(line) {
            out.push(format!("*{}*", inline(h)));
        } else {
            out.push(inline(line));
        }
    }
    out.join("\n")
}

/// A `#`-heading's text.
fn heading(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let hashes = t.bytes().take_while(|b| *b == b'#').count();
    (1..=6).contains(&hashes).then_some(())?;
    t.get(hashes..)
        .filter(|rest| rest.starts_with(' '))
        .map(str::trim)
}

/// One line's inline Markdown.
fn inline(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if let Some((text, used)) = span(rest) {
            out.push_str(&text);
            rest = rest.get(used..).unwrap_or_default();
        } else {
            out.push_str(&escape(&c.to_string()));
            rest = rest.get(c.len_utf8()..).unwrap_or_default();
        }
    }
    out
}

/// A span at the start of `s`: its mrkdwn and the bytes it used.
fn span(s: &str) -> Option<(String, usize)> {
    if let Some(body) = s.strip_prefix('`') {
        let end = body.find('`')?;
        let code = body.get(..end)?;
        return Some((format!("`{}`", escape(code)), end + 2));
    }
    for (open, mark) in [("**", "*"), ("__", "*"), ("~~", "~")] {
        if let Some(body) = s.strip_prefix(open) {
            let end = body.find(open).filter(|e| *e > 0)?;
            let inner = body.get(..end)?;
            return Some((
                format!("{mark}{}{mark}", inline(inner)),
                end + 2 * open.len(),
            ));
        }
    }
    if let Some(body) = s.strip_prefix('*').filter(|b| !b.starts_with(' ')) {
        let end = body.find('*').filter(|e| *e > 0)?;
        let inner = body.get(..end)?;
        return Some((format!("_{}_", inline(inner)), end + 2));
    }
    if let Some(body) = s.strip_prefix('[') {
        let close = body.find("](")?;
        let text = body.get(..close)?;
        let after = body.get(close + 2..)?;
        let end = after.find(')')?;
        let url = after.get(..end)?;
        if url.contains(char::is_whitespace) || url.is_empty() {
            return None;
        }
        let used = 1 + close + 2 + end + 1;
        return Some((format!("<{}|{}>", escape(url), escape(text)), used));
    }
    None
}

/// The reply as Slack messages, each at most `limit` units once written as mrkdwn.
pub fn chunks(md: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut out = Vec::new();
    for piece in split_markdown(md, limit, false) {
        render_within(&piece, limit, &mut out);
    }
    out
}

/// `piece` as mrkdwn; cut again (in halves of the limit) while escaping makes it too long.
fn render_within(piece: &str, limit: usize, out: &mut Vec<String>) {
    let text = mrkdwn(piece);
    if units(&text) <= limit || units(piece) <= 1 {
        out.push(text);
        return;
    }
    let smaller = (units(piece) / 2).max(1);
    for p in split_markdown(piece, smaller, false) {
        render_within(&p, limit, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_mrkdwn() {
        assert_eq!(
            mrkdwn(
                "# Title\n**bold** and *it* ~~gone~~ `a<b` [site](https://x.test/?a=1&b=2) 1 < 2"
            ),
            "*Title*\n*bold* and _it_ ~gone~ `a&lt;b` <https://x.test/?a=1&amp;b=2|site> 1 &lt; 2"
        );
        assert_eq!(mrkdwn("```\nx > y\n```"), "```\nx &gt; y\n```");
        assert_eq!(mrkdwn("a * b * c"), "a * b * c");
    }

    #[test]
    fn long_replies_are_cut_under_the_limit() {
        let para = "word ".repeat(400);
        let text = [para.trim(); 10].join("\n\n");
        let parts = chunks(&text, 8000);
        assert!(parts.len() >= 2, "{}", parts.len());
        assert!(parts.iter().all(|p| units(p) <= 8000));
        let escaped = "<".repeat(100);
        let parts = chunks(&escaped, 50);
        assert!(parts.iter().all(|p| units(p) <= 50), "{parts:?}");
        assert_eq!(parts.concat(), "&lt;".repeat(100));
    }
}
