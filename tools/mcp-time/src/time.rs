//! The two tools' arithmetic, producing the reference server's JSON field for field.

use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use serde_json::{Value, json};

/// An error the model reads as an `isError` result.
pub struct ToolFailure(pub String);

/// The zone for an exact IANA key. jiff matches names case-insensitively; the reference (and Linux)
/// does not, so `europe/warsaw` is rejected here too.
pub fn zone(name: &str) -> Result<TimeZone, ToolFailure> {
    let invalid = || {
        ToolFailure(format!(
            "Invalid timezone: 'No time zone found with key {name}'"
        ))
    };
    let tz = TimeZone::get(name).map_err(|_| invalid())?;
    if tz.iana_name() != Some(name) {
        return Err(invalid());
    }
    Ok(tz)
}

/// The system's IANA zone name, or UTC when it has none.
pub fn system_zone_name() -> String {
    TimeZone::try_system()
        .ok()
        .and_then(|tz| tz.iana_name().map(str::to_string))
        .unwrap_or_else(|| "UTC".into())
}

fn time_result(name: &str, when: &ZonedDateTime) -> Value {
    json!({
        "timezone": name,
        "datetime": isoformat(when),
        "day_of_week": when.strftime("%A").to_string(),
        "is_dst": when.time_zone().to_offset_info(when.timestamp()).dst().is_dst(),
    })
}

/// Python's `datetime.isoformat(timespec="seconds")`: `2026-11-28T19:43:09+09:00`.
fn isoformat(when: &ZonedDateTime) -> String {
    when.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

pub fn current_time(name: &str) -> Result<Value, ToolFailure> {
    let tz = zone(name)?;
    Ok(time_result(name, &Timestamp::now().to_zoned_datetime(tz)))
}

/// `HH:MM` as Python's `strptime(..., "%H:%M")` accepts it: one or two digits each, nothing else.
fn parse_time(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    let field = |s: &str| {
        (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i8>().ok())
            .flatten()
    };
    Time::new(field(h)?, field(m)?, 0, 0).ok()
}

pub fn convert_time(source: &str, time: &str, target: &str) -> Result<Value, ToolFailure> {
    let (source_tz, target_tz) = (zone(source)?, zone(target)?);
    let parsed = parse_time(time).ok_or_else(|| {
        ToolFailure("Invalid time format. Expected HH:MM [24-hour format]".into())
    })?;
    let today = Timestamp::now().to_zoned_datetime(source_tz.clone()).date();
    let wall = DateTime::from_parts(today, parsed);
    let source_time = wall
        .to_zoned_datetime(source_tz)
        .map_err(|e| ToolFailure(e.to_string()))?;
    if source_time.datetime() != wall {
        return Err(ToolFailure(format!(
            "Invalid time: {time} does not exist in {source} on {today} (skipped by a clock change)"
        )));
    }
    let target_time = source_time.with_time_zone(target_tz);
    let hours = f64::from(target_time.offset().seconds() - source_time.offset().seconds()) / 3600.0;
    let difference = if hours.fract() == 0.0 {
        format!("{hours:+.1}h")
    } else {
        format!(
            "{}h",
            format!("{hours:+.2}")
                .trim_end_matches('0')
                .trim_end_matches('.')
        )
    };
    Ok(json!({
        "source": time_result(source, &source_time),
        "target": time_result(target, &target_time),
        "time_difference": difference,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_strptime() {
        assert!(
            parse_time("9:30").is_some()
                && parse_time("09:05").is_some()
                && parse_time("23:59").is_some()
        );
        for bad in [
            "24:00", "9:3x", "930", "09:60", "", ":30", "009:30", "9:30 ",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn zone_names_must_match_exactly() {
        assert!(zone("Europe/Warsaw").is_ok() && zone("UTC").is_ok());
        assert!(zone("europe/warsaw").is_err() && zone("Mars/Base").is_err());
    }

    #[test]
    fn fractional_offsets_format_like_the_reference() {
        let v = convert_time("Asia/Kathmandu", "09:30", "UTC").ok().unwrap();
        assert_eq!(v["time_difference"], "-5.75h");
        assert!(
            v["source"]["datetime"]
                .as_str()
                .unwrap()
                .ends_with("T09:30:00+05:45")
        );
        let v = convert_time("UTC", "12:00", "Asia/Kolkata").ok().unwrap();
        assert_eq!(v["time_difference"], "+5.5h");
        assert_eq!(
            convert_time("UTC", "12:00", "UTC").ok().unwrap()["time_difference"],
            "+0.0h"
        );
    }
}
