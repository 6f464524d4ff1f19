//! A reply as Slack messages: the agent's Markdown written as Slack's mrkdwn (`*bold*`,
//! `_italic_`, `~strike~`, `<url|text>`, code as is; `&`, `<`, `>` escaped) and cut under the
//! account's `textChunkLimit` (upstream's 8,000 by default): paragraphs first, then lines,
//! then characters, counting as upstream does (UTF-16 units).

use crate::channels::chunk::{split_markdown, units};
use crate::channels::markdown::{Span, Style, Syntax, escape_entities, inline, is_fence};

/// `&`, `<` and `>` escaped as Slack requires.
pub fn escape(text: &str) -> String {
    escape_entities(text, false)
}

/// Markdown as mrkdwn.
pub fn mrkdwn(md: &str) -> String {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.split('\n') {
        if is_fence(line) {
            fenced = !fenced;
            out.push(escape(line));
        } else if fenced {
            out.push(escape(line));
        } else if let Some(h) = heading(line) {
            out.push(format!("*{}*", inline::<Mrkdwn>(h)));
        } else {
            out.push(inline::<Mrkdwn>(line));
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

/// Slack's mrkdwn: code as is, `<url|text>` links, `*bold*`, `_italic_` (from `*italic*`;
/// `_italic_` is mrkdwn already), `~strike~`.
struct Mrkdwn;

impl Syntax for Mrkdwn {
    const MARKS: &'static [(&'static str, Style)] = &[
        ("**", Style::Bold),
        ("__", Style::Bold),
        ("~~", Style::Strike),
        ("*", Style::Italic),
    ];

    fn escape(text: &str) -> String {
        escape(text)
    }

    fn span(span: Span<'_>) -> Option<String> {
        match span {
            Span::Code(code) => Some(format!("`{}`", escape(code))),
            Span::Link { label, url } => Some(format!("<{}|{}>", escape(url), escape(label))),
            Span::Emphasis(_, "") => None,
            Span::Emphasis(Style::Italic, inner) if inner.starts_with(' ') => None,
            Span::Emphasis(style, inner) => {
                let mark = match style {
                    Style::Bold => "*",
                    Style::Italic => "_",
                    Style::Strike => "~",
                };
                Some(format!("{mark}{}{mark}", inline::<Mrkdwn>(inner)))
            }
        }
    }
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
