//! The agent's Markdown as Telegram HTML (`parse_mode: "HTML"`), and long replies cut into
//! messages: at `textChunkLimit` on paragraph, then line, then character boundaries, each
//! rendered message never over Telegram's 4096 (counted in UTF-16 units, as Telegram counts).

use crate::channels::chunk::{split_markdown, units};
use crate::channels::config::TELEGRAM_MAX_TEXT;
use crate::channels::markdown::{Span, Style, Syntax, escape_entities, inline, is_fence};

/// `text` with `&`, `<`, `>` and `"` escaped for Telegram HTML.
pub fn escape(text: &str) -> String {
    escape_entities(text, true)
}

/// Markdown (fenced and inline code, `**bold**`, `*italic*`/`_italic_`, `~~strike~~`,
/// `[text](url)`) as Telegram HTML; everything else is escaped text.
pub fn markdown_to_html(md: &str) -> String {
    if md.bytes().any(rewritten) {
        rewrite(md)
    } else {
        // Nothing could open a span or a fence, nothing to escape: the HTML is the text.
        md.to_string()
    }
}

/// Whether [`rewrite`] might write byte `b` other than as itself: a character that can open
/// a span or a fence (`` ` ``, `[`, the emphasis marks) or that is escaped (`&<>"`).
fn rewritten(b: u8) -> bool {
    matches!(
        b,
        b'`' | b'[' | b'*' | b'_' | b'~' | b'&' | b'<' | b'>' | b'"'
    )
}

/// [`markdown_to_html`], line by line.
fn rewrite(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + 16);
    let mut in_fence = false;
    let mut first = true;
    for line in md.split('\n') {
        if is_fence(line) {
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
            out.push_str(&inline::<Html>(line));
        }
        first = false;
    }
    if in_fence {
        out.push_str("</code></pre>");
    }
    out
}

/// Telegram HTML: `<code>`, `<a href>` to http(s) and `tg:` URLs, `<b>`, `<i>`, `<s>`;
/// emphasis with nothing inside, or with spaces just inside its marks, is text.
struct Html;

impl Syntax for Html {
    const MARKS: &'static [(&'static str, Style)] = &[
        ("**", Style::Bold),
        ("__", Style::Bold),
        ("~~", Style::Strike),
        ("*", Style::Italic),
        ("_", Style::Italic),
    ];

    fn escape(text: &str) -> String {
        escape(text)
    }

    fn span(span: Span<'_>) -> Option<String> {
        match span {
            Span::Code(code) => {
                (!code.is_empty()).then(|| format!("<code>{}</code>", escape(code)))
            }
            Span::Link { label, url } => {
                let ok = ["http://", "https://", "tg://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme));
                (ok && !label.is_empty())
                    .then(|| format!("<a href=\"{}\">{}</a>", escape(url), inline::<Html>(label)))
            }
            // `*` alone is not emphasis; `a * b * c` neither (spaces inside the marks).
            Span::Emphasis(_, inner)
                if inner.is_empty() || inner.starts_with(' ') || inner.ends_with(' ') =>
            {
                None
            }
            Span::Emphasis(style, inner) => {
                let tag = match style {
                    Style::Bold => "b",
                    Style::Italic => "i",
                    Style::Strike => "s",
                };
                Some(format!("<{tag}>{}</{tag}>", inline::<Html>(inner)))
            }
        }
    }
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
    fn text_with_nothing_to_rewrite_is_its_own_html() {
        for text in [
            "",
            "Echo from fake LLM: hello q7z",
            "ok! (1 + 2 = 3) #tag {x} 'y' \\ / 100% ^-^",
            "é✓😀\n\nnext paragraph\n  indented - item\n",
            "line\r\nwith CRLF and\ttab",
        ] {
            assert!(!text.bytes().any(rewritten), "{text:?}");
            assert_eq!(rewrite(text), text, "{text:?}");
            assert_eq!(markdown_to_html(text), text);
        }
        for special in ["`", "[", "*", "_", "~", "&", "<", ">", "\""] {
            let text = format!("a {special} b");
            assert_eq!(markdown_to_html(&text), rewrite(&text), "{text:?}");
        }
    }

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
