//! The request headers a static response is negotiated by: `Accept` (may the SPA fallback
//! answer HTML?), `Accept-Encoding` (which precompressed variant?), `If-None-Match` and
//! `Range`.

/// A content coding of a precompressed variant: the file suffix and the header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `.br`, `br`.
    Brotli,
    /// `.gz`, `gzip`.
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of the variant's file.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// One comma-separated item of a header: its value and its `q` (1 when absent, 0 when
/// unparseable).
fn items(header: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    header.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let value = parts.next()?.trim().to_ascii_lowercase();
        if value.is_empty() {
            return None;
        }
        let mut q = 1.0;
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
            }
        }
        Some((value, q))
    })
}

/// Whether `Accept` permits an HTML document (upstream's `acceptsControlUiHtmlResponse`):
/// no header, or the most specific range matching `text/html` has `q > 0`, or
/// `application/xhtml+xml` is named explicitly. An explicit `text/html;q=0` beats `*/*`.
pub(crate) fn accepts_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let mut best: Option<(u8, f32)> = None;
    let mut xhtml = false;
    for (range, q) in items(accept) {
        let specificity = match range.as_str() {
            "text/html" => 2,
            "text/*" => 1,
            "*/*" => 0,
            "application/xhtml+xml" => {
                xhtml |= q > 0.0;
                continue;
            }
            _ => continue,
        };
        best = match best {
            Some((s, bq)) if s > specificity => Some((s, bq)),
            Some((s, bq)) if s == specificity => Some((s, bq.max(q))),
            _ => Some((specificity, q)),
        };
    }
    xhtml || best.is_some_and(|(_, q)| q > 0.0)
}

/// The precompressed codings `Accept-Encoding` accepts, best first (`br` before `gzip` at
/// equal weight); identity is always the last resort.
pub(crate) fn codings(accept_encoding: Option<&str>) -> Vec<Coding> {
    let Some(header) = accept_encoding else {
        return Vec::new();
    };
    let (mut br, mut gzip, mut star) = (None, None, None);
    for (coding, q) in items(header) {
        match coding.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let mut out: Vec<(Coding, f32)> = [(Coding::Brotli, br), (Coding::Gzip, gzip)]
        .into_iter()
        .filter_map(|(c, q)| Some((c, q.or(star)?)))
        .filter(|(_, q)| *q > 0.0)
        .collect();
    // Stable: br stays first among equals.
    crate::sorting::sort_by(&mut out, |a, b| b.1.total_cmp(&a.1));
    out.into_iter().map(|(c, _)| c).collect()
}

/// Whether `If-None-Match` names `etag` (weak comparison) or is `*`.
pub(crate) fn none_match(if_none_match: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

/// What a `Range` header asks of a representation of a known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No usable range: send it whole (no header, another unit, several ranges, bad syntax).
    Whole,
    /// Bytes `start..end` (end exclusive, non-empty).
    Part(u64, u64),
    /// A single range no byte of the representation satisfies, or numbers too large to
    /// read: `416`.
    Unsatisfiable,
}

/// Resolve a `Range` header against a representation of `size` bytes.
pub(crate) fn range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if (first.is_empty() && last.is_empty())
        || !(digits(first) || first.is_empty())
        || !(digits(last) || last.is_empty())
    {
        return RangeAsk::Whole;
    }
    match (first.parse::<u64>(), last.parse::<u64>()) {
        // `-n`: the last n bytes.
        (Err(_), Ok(n)) if first.is_empty() => match n.min(size) {
            0 => RangeAsk::Unsatisfiable,
            n => RangeAsk::Part(size - n, size),
        },
        (Ok(start), Err(_)) if last.is_empty() && start < size => RangeAsk::Part(start, size),
        (Ok(start), Ok(end)) if start <= end && start < size => {
            RangeAsk::Part(start, end.saturating_add(1).min(size))
        }
        (Ok(start), Ok(end)) if start > end => RangeAsk::Whole,
        // Past the end, or digits beyond u64.
        _ => RangeAsk::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_acceptance() {
        assert!(accepts_html(None));
        assert!(accepts_html(Some("")));
        assert!(accepts_html(Some("*/*")));
        assert!(accepts_html(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!accepts_html(Some("text/html;q=0, */*")));
        assert!(!accepts_html(Some("application/json")));
        assert!(accepts_html(Some("application/xhtml+xml")));
        assert!(!accepts_html(Some("*/*;q=0")));
    }

    #[test]
    fn encodings_in_preference_order() {
        assert_eq!(codings(None), []);
        assert_eq!(
            codings(Some("gzip, deflate, br, zstd")),
            [Coding::Brotli, Coding::Gzip]
        );
        assert_eq!(codings(Some("gzip")), [Coding::Gzip]);
        assert_eq!(
            codings(Some("br;q=0.5, gzip")),
            [Coding::Gzip, Coding::Brotli]
        );
        assert_eq!(codings(Some("*, br;q=0")), [Coding::Gzip]);
        assert_eq!(codings(Some("identity")), []);
    }

    #[test]
    fn etags_and_ranges() {
        assert!(none_match("\"a\", W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"x\""));
        assert!(!none_match("\"a\"", "\"b\""));
        assert_eq!(range(None, 10), RangeAsk::Whole);
        assert_eq!(range(Some("bytes=2-4"), 10), RangeAsk::Part(2, 5));
        assert_eq!(range(Some("bytes=2-"), 10), RangeAsk::Part(2, 10));
        assert_eq!(range(Some("bytes=-3"), 10), RangeAsk::Part(7, 10));
        assert_eq!(range(Some("bytes=5-100"), 10), RangeAsk::Part(5, 10));
        assert_eq!(range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(
            range(Some("bytes=99999999999999999999999-"), 10),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(range(Some("bytes=0-1,3-4"), 10), RangeAsk::Whole);
        assert_eq!(range(Some("bytes=4-2"), 10), RangeAsk::Whole);
        assert_eq!(range(Some("bytes=x-2"), 10), RangeAsk::Whole);
        assert_eq!(range(Some("items=0-2"), 10), RangeAsk::Whole);
    }
}
