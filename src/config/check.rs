//! The ranges of the numbers users set, shared by YAML fields and CLI flags so both refuse the same
//! values in the same words. Every bound here protects something downstream: `Duration::from_secs_f64`
//! panics on negative, NaN or overflowing seconds, a timer deadline past the clock's range panics, a
//! zero count makes a loop that never runs, and a size shifted into bytes must not overflow.

use std::fmt::Display;
use std::str::FromStr;

/// What a value must be, when it is not (`Err` holds the rule and the value, e.g. "must be ... , not -1").
pub type Verdict = Result<(), String>;

/// The longest timeout accepted anywhere: a week, far below where deadlines overflow.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// The most positions a context (and so a prompt or an answer) may have: 32× Qwen3's native 32768,
/// beyond any YaRN setting Qwen documents.
pub const MAX_CONTEXT: usize = 1 << 20;

/// Megabytes that still fit in bytes as a u64/usize shifted by 20: 1 TiB.
pub const MAX_MEGABYTES: u64 = 1 << 20;

/// The wasm32 guest cannot address more than 4 GiB.
pub const MAX_GUEST_MB: usize = 4096;

/// A timeout or any wait: finite, above 0, at most a week.
pub fn seconds(v: f64) -> Verdict {
    rule(
        v.is_finite() && v > 0.0 && v <= MAX_SECONDS,
        "must be a number of seconds above 0 and at most 604800 (7 days)",
        v,
    )
}

/// A count of things that must happen at least once (rounds, tokens, positions), up to `max`.
pub fn count(v: usize, max: usize) -> Verdict {
    rule(
        (1..=max).contains(&v),
        &format!("must be at least 1 and at most {max}"),
        v,
    )
}

/// A size in megabytes (scratch space): at least 1, and small enough to count in bytes.
pub fn megabytes(v: u64) -> Verdict {
    rule(
        (1..=MAX_MEGABYTES).contains(&v),
        &format!("must be at least 1 and at most {MAX_MEGABYTES} (MB)"),
        v,
    )
}

/// Sampling temperature: 0 is greedy; negative or not-a-number has no meaning.
pub fn temperature(v: f32) -> Verdict {
    rule(
        v.is_finite() && v >= 0.0,
        "must be a number of at least 0 (0 is greedy)",
        v,
    )
}

/// Nucleus sampling keeps the smallest set whose probability reaches `top_p`: above 0, at most 1.
pub fn top_p(v: f32) -> Verdict {
    rule(
        v > 0.0 && v <= 1.0,
        "must be above 0 and at most 1 (1 keeps every token)",
        v,
    )
}

/// A fraction of the most likely token's probability: 0 (off) to 1.
pub fn min_p(v: f32) -> Verdict {
    rule((0.0..=1.0).contains(&v), "must be between 0 (off) and 1", v)
}

/// Subtracted from the logits of tokens already generated; OpenAI's and vLLM's range.
pub fn presence_penalty(v: f32) -> Verdict {
    rule(
        (-2.0..=2.0).contains(&v),
        "must be between -2 and 2 (0 is off)",
        v,
    )
}

/// Divides (or multiplies) the logits of tokens already seen: above 0, 1 is off.
pub fn repetition_penalty(v: f32) -> Verdict {
    rule(
        v.is_finite() && v > 0.0 && v <= 100.0,
        "must be above 0 and at most 100 (1 is off)",
        v,
    )
}

/// YaRN's context extension factor: 1 (none) up to 32.
pub fn rope_factor(v: f64) -> Verdict {
    rule(
        (1.0..=32.0).contains(&v),
        "must be between 1 and 32 (e.g. 4.0 for 131072 positions on Qwen3)",
        v,
    )
}

fn rule(ok: bool, what: &str, value: impl Display) -> Verdict {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}, not {value}"))
    }
}

/// A flag parser (for clap's `value_parser`) that reads a `T` and applies `check`, so a flag refuses
/// what the YAML field refuses.
pub fn flag<T>(
    check: fn(T) -> Verdict,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + Copy + Send + Sync + 'static,
    T::Err: Display,
{
    move |text| {
        let value: T = text.trim().parse().map_err(|e| format!("{e}"))?;
        check(value).map(|()| value)
    }
}

/// [`count`] up to [`MAX_CONTEXT`], for token and position counts.
pub fn tokens(v: usize) -> Verdict {
    count(v, MAX_CONTEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_refuse_what_duration_would_panic_on() {
        for bad in [-1.0, 0.0, f64::NAN, f64::INFINITY, 1e300, MAX_SECONDS + 1.0] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        for good in [0.001, 30.0, MAX_SECONDS] {
            assert!(seconds(good).is_ok(), "{good}");
            // What passes converts without a panic, with room for a grace period.
            let _ = std::time::Duration::from_secs_f64(good) + std::time::Duration::from_secs(60);
        }
        assert_eq!(
            seconds(-1.0).unwrap_err(),
            "must be a number of seconds above 0 and at most 604800 (7 days), not -1"
        );
    }

    #[test]
    fn sampling_ranges() {
        assert!(temperature(f32::NAN).is_err() && temperature(-0.1).is_err());
        assert!(temperature(0.0).is_ok());
        assert!(top_p(0.0).is_err() && top_p(1.5).is_err() && top_p(f32::NAN).is_err());
        assert!(top_p(1.0).is_ok());
        assert!(min_p(-0.1).is_err() && min_p(f32::NAN).is_err() && min_p(0.0).is_ok());
        assert!(presence_penalty(3.0).is_err() && presence_penalty(1.5).is_ok());
        assert!(repetition_penalty(0.0).is_err() && repetition_penalty(1.0).is_ok());
        assert!(rope_factor(0.5).is_err() && rope_factor(4.0).is_ok());
        assert!(count(0, 8).is_err() && count(9, 8).is_err() && count(8, 8).is_ok());
        assert!(megabytes(0).is_err() && megabytes(MAX_MEGABYTES + 1).is_err());
    }

    #[test]
    fn flags_parse_then_check() {
        let parse = flag(seconds);
        assert_eq!(parse("2.5"), Ok(2.5));
        assert!(parse("-1").unwrap_err().contains("above 0"));
        assert!(parse("NaN").unwrap_err().contains("not NaN"));
        assert!(parse("soon").is_err());
        assert_eq!(flag(tokens)("16"), Ok(16));
        assert!(flag(tokens)("0").is_err());
    }
}
