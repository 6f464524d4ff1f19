//! One scanner for the agent's inline Markdown (code, links, emphasis), which every transport
//! that rewrites Markdown shares: the scanner finds a span at the start of the text, and the
//! transport's [`Syntax`] writes it in its own markup (Telegram HTML, Slack mrkdwn), escapes
//! the text around it, or declines it (the span is then read as text).

/// What an emphasis mark means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// `**bold**`, `__bold__`.
    Bold,
    /// `*italic*`, `_italic_`.
    Italic,
    /// `~~strike~~`.
    Strike,
}

/// A span found at the start of a line's rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span<'a> {
    /// `` `code` `` (possibly empty).
    Code(&'a str),
    /// `[label](url)`: the URL is not empty and has no whitespace.
    Link {
        /// The text between the brackets (possibly empty).
        label: &'a str,
        /// The URL between the parentheses.
        url: &'a str,
    },
    /// Text between two emphasis marks (possibly empty).
    Emphasis(Style, &'a str),
}

/// A transport's output syntax for inline Markdown.
pub(crate) trait Syntax {
    /// The emphasis marks it reads, each with its style; a mark must come before any mark it
    /// starts with (`**` before `*`).
    const MARKS: &'static [(&'static str, Style)];

    /// `text` outside any span, escaped.
    fn escape(text: &str) -> String;

    /// `span` written in this syntax (inner text through [`inline`] again), or `None` when
    /// the syntax does not take it: its first character is then read as text.
    fn span(span: Span<'_>) -> Option<String>;
}

/// One line's inline Markdown written in syntax `S`.
pub(crate) fn inline<S: Syntax>(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        match scan::<S>(rest).and_then(|(span, used)| Some((S::span(span)?, used))) {
            Some((text, used)) => {
                out.push_str(&text);
                rest = rest.get(used..).unwrap_or_default();
            }
            None => {
                // No span here: this character is text, and so is every one after it up to
                // the next that could open a span, escaped together (not one at a time).
                let n = c.len_utf8();
                let end = rest
                    .get(n..)
                    .and_then(|r| r.find(may_open::<S>))
                    .map_or(rest.len(), |i| i + n);
                out.push_str(&S::escape(rest.get(..end).unwrap_or_default()));
                rest = rest.get(end..).unwrap_or_default();
            }
        }
    }
    out
}

/// Whether a span could start with `c` ([`scan`] finds none at any other character).
fn may_open<S: Syntax>(c: char) -> bool {
    c == '`' || c == '[' || S::MARKS.iter().any(|(m, _)| m.starts_with(c))
}

/// The span at the start of `s` and the bytes it takes, if one is there.
fn scan<S: Syntax>(s: &str) -> Option<(Span<'_>, usize)> {
    if let Some(body) = s.strip_prefix('`') {
        let end = body.find('`')?;
        return Some((Span::Code(body.get(..end)?), end + 2));
    }
    if let Some(body) = s.strip_prefix('[') {
        let close = body.find("](")?;
        let label = body.get(..close)?;
        let after = body.get(close + 2..)?;
        let end = after.find(')')?;
        let url = after.get(..end)?;
        if url.is_empty() || url.contains(char::is_whitespace) {
            return None;
        }
        return Some((Span::Link { label, url }, 1 + close + 2 + end + 1));
    }
    let (mark, style) = S::MARKS.iter().find(|(m, _)| s.starts_with(*m))?;
    let body = s.get(mark.len()..)?;
    let end = body.find(mark)?;
    Some((
        Span::Emphasis(*style, body.get(..end)?),
        mark.len() * 2 + end,
    ))
}

/// `text` with `&`, `<` and `>` (and `"` when `quotes`) written as HTML entities.
pub(crate) fn escape_entities(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `line` opens or closes a fenced code block.
pub(crate) fn is_fence(line: &str) -> bool {
    line.trim_start().starts_with("```")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntax that shows what it did: spans in brackets, each escaped run in braces.
    struct Shown;

    impl Syntax for Shown {
        const MARKS: &'static [(&'static str, Style)] = &[
            ("**", Style::Bold),
            ("*", Style::Italic),
            ("_", Style::Italic),
            ("~~", Style::Strike),
        ];

        fn escape(text: &str) -> String {
            escape_entities(text, true)
        }

        fn span(span: Span<'_>) -> Option<String> {
            match span {
                Span::Code(c) => Some(format!("<code>{}</code>", Self::escape(c))),
                Span::Link { label, url } if url.starts_with("http") => {
                    Some(format!("<a {url}>{}</a>", inline::<Self>(label)))
                }
                Span::Link { .. } => None,
                Span::Emphasis(style, body) => {
                    Some(format!("<{style:?}>{}</>", inline::<Self>(body)))
                }
            }
        }
    }

    /// [`inline`] as it was: text escaped one character at a time.
    fn one_at_a_time<S: Syntax>(line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(c) = rest.chars().next() {
            match scan::<S>(rest).and_then(|(span, used)| Some((S::span(span)?, used))) {
                Some((text, used)) => {
                    out.push_str(&text);
                    rest = rest.get(used..).unwrap_or_default();
                }
                None => {
                    let n = c.len_utf8();
                    out.push_str(&S::escape(rest.get(..n).unwrap_or_default()));
                    rest = rest.get(n..).unwrap_or_default();
                }
            }
        }
        out
    }

    #[test]
    fn text_between_spans_is_escaped_as_it_was_one_character_at_a_time() {
        for line in [
            "",
            "Echo from fake LLM: hello q7z",
            "a < b && \"c\" > d",
            "**bold** and *it* and _it_ and ~~gone~~ and ~single~",
            "`code <x>` then [label](http://x) then [no](ftp://y) then [open",
            "un*closed and **half* and `tick and __dunder__",
            "é✓😀 *é✓* [😀](https://e) <😀>",
            "*",
            "[",
            "`",
            "a*b*c_d_e~~f~~g[h](http://i)j`k`l",
        ] {
            assert_eq!(
                inline::<Shown>(line),
                one_at_a_time::<Shown>(line),
                "{line:?}"
            );
        }
    }
}
