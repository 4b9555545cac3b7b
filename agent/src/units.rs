//! Amounts, times and durations as a person reads them: NEAR with its 24
//! decimals (exact, no floating point), dates in UTC, durations in the two
//! largest units. Machine output (`--json`) keeps the raw values.

use agentwire_protocol::money::{format_units, Currency, NEAR_DECIMALS};

/// `yocto` yoctoNEAR as NEAR: `near(15 * 10^21)` is `"0.015 NEAR"`.
pub fn near(yocto: u128) -> String {
    format!("{} NEAR", format_units(yocto, NEAR_DECIMALS))
}

/// An amount of `currency` with its `decimals` (`None` when a token's
/// decimals are unknown: then the raw smallest units, said to be so).
pub fn amount(value: u128, currency: &Currency, decimals: Option<u8>) -> String {
    match (currency, decimals) {
        (Currency::Near, _) => near(value),
        (Currency::Token(t), Some(d)) => format!("{} {}", format_units(value, d), t.as_str()),
        (Currency::Token(t), None) => format!("{value} (smallest units of {})", t.as_str()),
    }
}

/// A duration in its two largest units: `3_725` s is `"1 h 2 min"`, `59` s is `"59 s"`.
pub fn duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    if secs == 0 {
        return "0 s".into();
    }
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in UNITS {
        if rest >= size {
            parts.push(format!("{} {name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && rest == 0) {
            break;
        }
    }
    parts.join(" ")
}

/// How far `at` is from `now`, in words: `"in 59 min 12 s"` or `"3 min ago"`.
pub fn relative(at: u64, now: u64) -> String {
    if at >= now {
        format!("in {}", duration(at - now))
    } else {
        format!("{} ago", duration(now - at))
    }
}

/// Seconds since the Unix epoch as a UTC date and time, `"2026-12-04 11:14:48 UTC"`.
pub fn date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

/// A date and how far it is from now: `"2026-12-04 11:14:48 UTC (in 59 min)"`.
pub fn when(unix_secs: u64, now: u64) -> String {
    format!("{} ({})", date(unix_secs), relative(unix_secs, now))
}

/// Days since 1970-01-01 as (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::account::AccountId;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(near(10u128.pow(22)), "0.01 NEAR");
        assert_eq!(near(0), "0 NEAR");
        assert_eq!(near(1), "0.000000000000000000000001 NEAR");
        assert_eq!(near(1_033 * 10u128.pow(21)), "1.033 NEAR");
        let usdc = Currency::Token(AccountId::new("usdc.devnet").unwrap());
        assert_eq!(amount(2_500_000, &usdc, Some(6)), "2.5 usdc.devnet");
        assert_eq!(amount(7, &usdc, None), "7 (smallest units of usdc.devnet)");
    }

    #[test]
    fn durations_use_two_units() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(60), "1 min");
        assert_eq!(duration(3_552), "59 min 12 s");
        assert_eq!(duration(3_725), "1 h 2 min");
        assert_eq!(duration(90_061), "1 d 1 h");
        assert_eq!(relative(100, 40), "in 1 min");
        assert_eq!(relative(40, 100), "1 min ago");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(date(1_796_382_888), "2026-12-04 11:14:48 UTC");
        assert_eq!(date(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }
}
