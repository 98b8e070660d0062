//! ISO 8601 date-times for `--to-datetime`, turned into Unix milliseconds without a time
//! zone database (UTC, or an explicit offset).

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an ISO 8601 date-time into milliseconds since the Unix epoch:
/// `YYYY-MM-DDTHH:MM[:SS[.fff...]]` (a space may stand for `T`), then `Z`, an offset
/// `±HH:MM`, `±HHMM` or `±HH`, or nothing, which means UTC. Digits past milliseconds are
/// dropped. Times before 1970 are refused: ListOffsets gives negative timestamps other
/// meanings.
pub(crate) fn parse_iso_datetime(s: &str) -> Result<i64, String> {
    let bytes = s.as_bytes();
    let digits = |from: usize, n: usize, what: &str| -> Result<i64, String> {
        let part = bytes
            .get(from..from + n)
            .filter(|p| p.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("'{s}': expected {n} digits of {what} at position {from}"))?;
        Ok(part
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, options: &[u8], what: &str| -> Result<(), String> {
        match bytes.get(at) {
            Some(b) if options.contains(b) => Ok(()),
            _ => Err(format!("'{s}': expected {what} at position {at}")),
        }
    };
    let year = digits(0, 4, "the year")?;
    expect(4, b"-", "'-'")?;
    let month = digits(5, 2, "the month")?;
    expect(7, b"-", "'-'")?;
    let day = digits(8, 2, "the day")?;
    expect(10, b"Tt ", "'T'")?;
    let hour = digits(11, 2, "the hour")?;
    expect(13, b":", "':'")?;
    let minute = digits(14, 2, "the minute")?;
    let mut at = 16;
    let mut second = 0;
    let mut millis = 0;
    if bytes.get(at) == Some(&b':') {
        second = digits(at + 1, 2, "the second")?;
        at += 3;
        if matches!(bytes.get(at), Some(b'.' | b',')) {
            at += 1;
            let start = at;
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start || at - start > 9 {
                return Err(format!(
                    "'{s}': expected 1 to 9 digits of a fraction of a second at position {start}"
                ));
            }
            let fraction = &s[start..at.min(start + 3)];
            millis = fraction.parse::<i64>().expect("ASCII digits")
                * 10i64.pow(3 - fraction.len() as u32);
        }
    }
    let offset_minutes = match bytes.get(at) {
        None => 0,
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let hours = digits(at + 1, 2, "the offset hours")?;
            at += 3;
            let mut minutes = 0;
            if bytes.get(at) == Some(&b':') {
                minutes = digits(at + 1, 2, "the offset minutes")?;
                at += 3;
            } else if at < bytes.len() {
                minutes = digits(at, 2, "the offset minutes")?;
                at += 2;
            }
            if hours > 23 || minutes > 59 {
                return Err(format!("'{s}': offset out of range"));
            }
            sign * (hours * 60 + minutes)
        }
        Some(_) => return Err(format!("'{s}': unexpected text at position {at}")),
    };
    if at != bytes.len() {
        return Err(format!("'{s}': unexpected text at position {at}"));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("'{s}': month {month} out of range"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(format!("'{s}': day {day} out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("'{s}': time of day out of range"));
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    let ms = seconds * 1000 + millis;
    if ms < 0 {
        return Err(format!(
            "'{s}': times before 1970-01-01T00:00:00Z are not supported"
        ));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iso_datetimes_parse() {
        assert_eq!(parse_iso_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_iso_datetime("2026-11-25T10:00:00Z"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25T10:00:00"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25T10:00Z"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25 10:00:00z"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25T12:00:00+02:00"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25T12:00:00+0200"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25T12:00:00+02"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2026-11-25T07:30:00-02:30"),
            Ok(1_795_600_800_000)
        );
        assert_eq!(
            parse_iso_datetime("2000-02-29T23:59:59Z"),
            Ok(951_868_799_000)
        );
        assert_eq!(
            parse_iso_datetime("2000-02-29T23:59:59.5Z"),
            Ok(951_868_799_500)
        );
        assert_eq!(
            parse_iso_datetime("2000-02-29T23:59:59.123456789Z"),
            Ok(951_868_799_123)
        );
        assert_eq!(
            parse_iso_datetime("2000-01-01T00:00:00+01:30"),
            Ok(946_679_400_000)
        );
        for bad in [
            "",
            "2026",
            "2026-11-25",
            "2026-11-25T",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:60:00Z",
            "2026-11-25T10:00:60Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00.1234567890Z",
            "2026-11-25T10:00:00+24:00",
            "2026-11-25T10:00:00Zjunk",
            "2026-11-25T10:00:00+1",
            "1969-12-31T23:59:59Z",
            "2026-11-25T10:00:00 UTC",
            "２０２６-11-25T10:00:00Z",
        ] {
            assert!(parse_iso_datetime(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn datetimes_never_panic(s in "\\PC{0,40}") {
            let _ = parse_iso_datetime(&s);
        }

        #[test]
        fn dates_agree_with_day_counting(days in 0i64..2_932_896) {
            // Walk from 1970-01-01 by whole years and months; compare with days_from_civil.
            let (mut y, mut m, mut left) = (1970i64, 1i64, days);
            loop {
                let year_days = if is_leap_year(y) { 366 } else { 365 };
                if m == 1 && left >= year_days { left -= year_days; y += 1; continue; }
                let md = days_in_month(y, m);
                if left >= md { left -= md; m += 1; continue; }
                break;
            }
            let s = format!("{y:04}-{m:02}-{:02}T00:00:00Z", left + 1);
            prop_assert_eq!(parse_iso_datetime(&s), Ok(days * 86_400_000));
        }
    }
}
