//! Long replies cut into messages under a transport's limit: on paragraph, then line, then
//! (for transports that want it) word boundaries, then a hard cut on a character boundary.
//! Lengths count UTF-16 units, as Telegram and Discord (JavaScript strings) count them.

/// Length as the transports count it.
pub fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Cut `text` into pieces of at most `limit` units: blank-line boundaries first, then line
/// boundaries, then (with `words`) the last space that fits, then a hard cut on a character
/// boundary.
pub fn split_markdown(text: &str, limit: usize, words: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for para in text.split("\n\n") {
        for piece in fit(para, limit, "\n", words) {
            let joined = if cur.is_empty() { 0 } else { units(&cur) + 2 };
            if joined + units(&piece) <= limit && !cur.is_empty() && !piece.is_empty() {
                cur.push_str("\n\n");
                cur.push_str(&piece);
            } else {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur = piece;
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.retain(|p| !p.trim().is_empty());
    out
}

/// `para` as pieces of at most `limit` units, cut on `sep` where possible.
fn fit(para: &str, limit: usize, sep: &str, words: bool) -> Vec<String> {
    if units(para) <= limit {
        return vec![para.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in para.split(sep) {
        let mut line = line.to_string();
        while units(&line) > limit {
            let hard = hard_cut(&line, limit);
            let cut = match line.get(..hard).and_then(|l| l.rfind(' ')) {
                Some(space) if words && space > 0 => space,
                _ => hard,
            };
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            let (head, tail) = line.split_at(cut);
            let (head, tail) = if words {
                (head.trim_end(), tail.trim_start())
            } else {
                (head, tail)
            };
            out.push(head.to_string());
            line = tail.to_string();
        }
        let extra = if cur.is_empty() { 0 } else { units(sep) };
        if units(&cur) + extra + units(&line) <= limit {
            if !cur.is_empty() {
                cur.push_str(sep);
            }
            cur.push_str(&line);
        } else {
            out.push(std::mem::replace(&mut cur, line));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The byte index of the longest prefix of `s` within `limit` units (at least one char).
fn hard_cut(s: &str, limit: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > limit {
            return i.max(c.len_utf8());
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_kept_whole_when_asked() {
        let text = "word ".repeat(1000);
        let out = split_markdown(text.trim_end(), 2000, true);
        assert!(out.len() >= 3);
        for c in &out {
            assert!(units(c) <= 2000);
            assert!(c.split(' ').all(|w| w == "word"), "{c:?}");
        }
        let hard = split_markdown(&"x".repeat(4500), 2000, true);
        assert_eq!(
            hard.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [2000, 2000, 500]
        );
    }
}
