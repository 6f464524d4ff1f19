//! The agent's Markdown as Telegram HTML (`parse_mode: "HTML"`), and long replies cut into
//! messages: at `textChunkLimit` on paragraph, then line, then character boundaries, each
//! rendered message never over Telegram's 4096 (counted in UTF-16 units, as Telegram counts).

use super::super::chunk::{split_markdown, units};
use super::super::config::TELEGRAM_MAX_TEXT;

/// `text` with `&`, `<` and `>` escaped for Telegram HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown (fenced and inline code, `**bold**`, `*italic*`/`_italic_`, `~~strike~~`,
/// `[text](url)`) as Telegram HTML; everything else is escaped text.
pub fn markdown_to_html(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + 16);
    let mut in_fence = false;
    let mut first = true;
    for line in md.split('\n') {
        let fence = line.trim_start().starts_with("```");
        if fence {
            if in_fence {
                out.push_str("</code></pre>");
            } else {
                if !first {
                    out.push('\n');
                }
                out.push_str("<pre><code>");
            }
            in_fence = !in_fence;
            first = false;
            continue;
        }
        if in_fence {
            out.push_str(&escape(line));
            out.push('\n');
        } else {
            if !first {
                out.push('\n');
            }
            out.push_str(&inline(line));
        }
        first = false;
    }
    if in_fence {
        out.push_str("</code></pre>");
    }
    out
}

/// One line's inline Markdown.
fn inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if let Some((html, used)) = span(rest) {
            out.push_str(&html);
            rest = rest.get(used..).unwrap_or_default();
        } else {
            out.push_str(&escape(&rest[..c.len_utf8()]));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A span at the start of `s`: its HTML and the bytes it used.
fn span(s: &str) -> Option<(String, usize)> {
    if let Some(body) = s.strip_prefix('`') {
        let end = body.find('`')?;
        let code = body.get(..end).filter(|c| !c.is_empty())?;
        return Some((format!("<code>{}</code>", escape(code)), end + 2));
    }
    if let Some(body) = s.strip_prefix('[') {
        let close = body.find("](")?;
        let label = body.get(..close)?;
        let after = body.get(close + 2..)?;
        let end = after.find(')')?;
        let url = after.get(..end)?;
        let ok =
            url.starts_with("http://") || url.starts_with("https://") || url.starts_with("tg://");
        if !ok || label.is_empty() || url.contains(char::is_whitespace) {
            return None;
        }
        let used = 1 + close + 2 + end + 1;
        return Some((
            format!("<a href=\"{}\">{}</a>", escape(url), inline(label)),
            used,
        ));
    }
    for (mark, tag) in [
        ("**", "b"),
        ("__", "b"),
        ("~~", "s"),
        ("*", "i"),
        ("_", "i"),
    ] {
        if let Some(body) = s.strip_prefix(mark) {
            let end = body.find(mark)?;
            let inner = body.get(..end)?;
            // `*` alone is not emphasis; `a * b * c` neither (spaces inside the marks).
            if inner.is_empty() || inner.starts_with(' ') || inner.ends_with(' ') {
                return None;
            }
            return Some((
                format!("<{tag}>{}</{tag}>", inline(inner)),
                mark.len() * 2 + end,
            ));
        }
    }
    None
}

/// The reply as Telegram messages: Markdown cut at `limit` (paragraphs, then lines, then
/// characters), each piece rendered to HTML; a piece whose HTML passes 4096 is cut again.
pub fn chunks(md: &str, limit: usize) -> Vec<String> {
    let limit = limit.clamp(1, TELEGRAM_MAX_TEXT);
    let mut out = Vec::new();
    for piece in split_markdown(md.trim_end(), limit, false) {
        render_within(&piece, &mut out);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

fn render_within(piece: &str, out: &mut Vec<String>) {
    let html = markdown_to_html(piece);
    if units(&html) <= TELEGRAM_MAX_TEXT || piece.chars().count() < 2 {
        out.push(html);
        return;
    }
    for half in split_markdown(piece, piece.chars().count() / 2, false) {
        render_within(&half, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_escaped_telegram_html() {
        assert_eq!(markdown_to_html("a < b & c"), "a &lt; b &amp; c");
        assert_eq!(
            markdown_to_html("**bold** and *it* and `x<y` and ~~no~~"),
            "<b>bold</b> and <i>it</i> and <code>x&lt;y</code> and <s>no</s>"
        );
        assert_eq!(
            markdown_to_html("see [docs](https://x.y/?a=1&b=2)"),
            "see <a href=\"https://x.y/?a=1&amp;b=2\">docs</a>"
        );
        assert_eq!(
            markdown_to_html("code:\n```rust\nlet a = 1 < 2;\n```\ndone"),
            "code:\n<pre><code>let a = 1 &lt; 2;\n</code></pre>\ndone"
        );
        assert_eq!(markdown_to_html("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(
            markdown_to_html("[x](javascript:alert)"),
            "[x](javascript:alert)"
        );
    }

    #[test]
    fn long_replies_split_on_paragraphs_then_lines_never_over_4096() {
        let para = |i: usize| format!("{i} {}", "word ".repeat(100).trim_end());
        let text: Vec<String> = (0..18).map(para).collect();
        let text = text.join("\n\n");
        assert!(text.len() > 9_000);
        let out = chunks(&text, 4000);
        assert_eq!(
            out.len(),
            3,
            "{:?}",
            out.iter().map(|c| c.len()).collect::<Vec<_>>()
        );
        for c in &out {
            assert!(units(c) <= 4000);
            assert!(!c.starts_with('\n') && !c.ends_with('\n'));
        }
        assert_eq!(out.join("\n\n"), text, "cut on paragraph boundaries only");
        let lines = "x".repeat(30) + &"\nline of text".repeat(1000);
        for c in chunks(&lines, 4000) {
            assert!(units(&c) <= 4000);
        }
        let escapes = "<".repeat(5000);
        let out = chunks(&escapes, 4000);
        assert!(
            out.iter().all(|c| units(c) <= TELEGRAM_MAX_TEXT),
            "escaping grows text"
        );
        assert_eq!(out.concat(), "&lt;".repeat(5000));
        let emoji = "😀".repeat(3000);
        assert!(chunks(&emoji, 4000).iter().all(|c| units(c) <= 4000));
    }
}
