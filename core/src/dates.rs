//! Unix milliseconds as the calendar dates the wire carries: ISO 8601 in payloads, IMF-fixdate
//! in HTTP headers. Pure arithmetic; the clock is read by the shells.

/// Unix milliseconds as ISO 8601 UTC (`2026-11-25T01:39:54.224Z`), as upstream's payloads carry
/// times.
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(secs / 86_400);
    // Written digit by digit: a log line carries one, so this runs for every line logged.
    let mut out = String::with_capacity(24);
    for (n, width, then) in [
        (y, 4, '-'),
        (m, 2, '-'),
        (d, 2, 'T'),
        (rem / 3600, 2, ':'),
        (rem % 3600 / 60, 2, ':'),
        (rem % 60, 2, '.'),
        (ms % 1000, 3, 'Z'),
    ] {
        push_padded(&mut out, n, width);
        out.push(then);
    }
    out
}

/// Append `n` in decimal, zero-padded to at least `width` digits (as `{n:0width$}`).
pub(crate) fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(digits.len().saturating_sub(width));
    // ASCII digits.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of Unix milliseconds.
pub(crate) fn http_date(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        WEEKDAYS.get((days % 7) as usize).unwrap_or(&"Thu"),
        MONTHS.get(m.saturating_sub(1) as usize).unwrap_or(&"Jan"),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1-12) and day of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_795_571_081_538), "2026-11-25T01:44:41.538Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // Past year 9999 the year takes the digits it needs, as `{y:04}` writes it.
        assert_eq!(iso_time(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
        for ms in [
            1,
            59_999,
            3_599_999,
            86_399_999,
            1_764_979_200_123,
            4_102_444_799_999,
        ] {
            let secs = ms / 1000;
            let (y, m, d) = civil_from_days(secs / 86_400);
            let rem = secs % 86_400;
            let formatted = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60,
                ms % 1000
            );
            assert_eq!(iso_time(ms), formatted);
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_709_210_096_000),
            "Thu, 29 Feb 2024 12:34:56 GMT"
        );
    }
}
