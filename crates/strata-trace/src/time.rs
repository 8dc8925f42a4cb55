//! Reading and writing times and durations for the command line (`--last 5h`, RFC 3339).

use std::time::Duration;

use crate::error::TraceError;

/// Parses a duration such as `90s`, `5h`, `1h30m`, `2d`, `250ms`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(strata_trace::time::parse_duration("1h30m")?, Duration::from_secs(5400));
/// assert!(strata_trace::time::parse_duration("5 parsecs").is_err());
/// # Ok::<(), strata_trace::TraceError>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, TraceError> {
    let bad = || TraceError::Usage(format!("'{s}' is not a duration (examples: 90s, 5h, 1h30m, 2d, 250ms)"));
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-27T03:50:51.123Z` for ns since the Unix epoch.
pub fn format_utc(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let t = secs.rem_euclid(86400);
    let ms = ns / 1_000_000 % 1000;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", t / 3600, t / 60 % 60, t % 60)
}

/// Parses a point in time: RFC 3339 (`2026-11-27T03:50:00Z`, `2026-11-27 03:50:00+01:00`, a
/// bare date), Unix seconds (`1795000000`), or a time before `now_ns` (`-2h`).
///
/// ```
/// let t = strata_trace::time::parse_time("1970-01-02T00:00:01Z", 0)?;
/// assert_eq!(t, 86_401_000_000_000);
/// assert_eq!(strata_trace::time::format_utc(t), "1970-01-02T00:00:01.000Z");
/// # Ok::<(), strata_trace::TraceError>(())
/// ```
pub fn parse_time(s: &str, now_ns: u64) -> Result<u64, TraceError> {
    let bad = || TraceError::Usage(format!("'{s}' is not a time (examples: 2026-11-27T03:50:00Z, 1795000000, -2h)"));
    let s = s.trim();
    if let Some(ago) = s.strip_prefix('-') {
        return Ok(now_ns.saturating_sub(parse_duration(ago)?.as_nanos() as u64));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return if secs >= 0.0 { Ok((secs * 1e9) as u64) } else { Err(bad()) };
    }
    let num = |r: &str| r.parse::<i64>().map_err(|_| bad());
    let (date, rest) = s.split_at(s.find(['T', 't', ' ']).unwrap_or(s.len()));
    let parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = parts[..] else { return Err(bad()) };
    let (y, mo, d) = (num(y)?, num(mo)?, num(d)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, mo, d) * 86400;
    let mut frac = 0f64;
    let rest = rest.get(1..).unwrap_or("");
    if !rest.is_empty() {
        let tz_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (clock, tz) = rest.split_at(tz_at);
        let hms: Vec<&str> = clock.split(':').collect();
        if hms.len() < 2 || hms.len() > 3 {
            return Err(bad());
        }
        secs += num(hms[0])? * 3600 + num(hms[1])? * 60;
        if let Some(sec) = hms.get(2) {
            let v: f64 = sec.parse().map_err(|_| bad())?;
            secs += v.trunc() as i64;
            frac = v.fract();
        }
        if let Some(sign) = tz.chars().next().filter(|c| *c == '+' || *c == '-') {
            let off: Vec<&str> = tz[1..].split(':').collect();
            let off = num(off[0])? * 3600 + off.get(1).map_or(Ok(0), |m| num(m))? * 60;
            secs += if sign == '+' { -off } else { off };
        }
    }
    if secs < 0 {
        return Err(bad());
    }
    Ok(secs as u64 * 1_000_000_000 + (frac * 1e9) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_offsets() {
        for days in [-1000, 0, 1, 59, 365, 10_957, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let z = parse_time("2026-11-27T03:50:00Z", 0).unwrap();
        assert_eq!(parse_time("2026-11-27T04:50:00+01:00", 0).unwrap(), z);
        assert_eq!(format_utc(z), "2026-11-27T03:50:00.000Z");
        assert_eq!(parse_time("-1h", 7_200_000_000_000).unwrap(), 3_600_000_000_000);
        assert!(parse_time("2026-13-01", 0).is_err());
        assert!(parse_time("yesterday", 0).is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
    }
}
