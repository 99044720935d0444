//! Cron triggers' schedules: five-field expressions (minute, hour, day of
//! month, month, day of week) in UTC, as Cloudflare takes them: lists,
//! ranges, steps, month and day names, `L`, `W` and `#` (croner), matched
//! one minute at a time.

use chrono::{TimeZone, Utc};

/// A parsed cron expression.
#[derive(Clone)]
pub struct Schedule {
  text: String,
  cron: croner::Cron,
}

impl std::fmt::Debug for Schedule {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "Schedule({:?})", self.text)
  }
}

impl Schedule {
  /// Parses `text`; Cloudflare's five fields only (no seconds, no
  /// nicknames).
  pub fn parse(text: &str) -> Result<Self, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
      return Err(format!(
        "{text:?}: a cron has five fields (minute hour day-of-month month day-of-week), not {fields}"
      ));
    }
    let cron = croner::Cron::new(text).parse().map_err(|e| format!("{text:?}: {e}"))?;
    Ok(Self {
      text: text.to_string(),
      cron,
    })
  }

  /// The expression as written.
  pub fn text(&self) -> &str {
    &self.text
  }

  /// Whether the minute starting at `minute_ms` (ms since the epoch, a
  /// multiple of 60,000) is one the schedule fires in.
  pub fn fires_at(&self, minute_ms: i64) -> bool {
    match Utc.timestamp_millis_opt(minute_ms) {
      chrono::LocalResult::Single(t) => self.cron.is_time_matching(&t).unwrap_or(false),
      _ => false,
    }
  }
}

/// The start of the minute `ms` falls in.
pub fn minute_of(ms: i64) -> i64 {
  ms.div_euclid(60_000) * 60_000
}

#[cfg(test)]
mod tests {
  use super::*;

  /// 2026-12-04T00:00:00Z, a Friday.
  const FRI: i64 = 1_796_342_400_000;

  fn at(days: i64, hours: i64, minutes: i64) -> i64 {
    FRI + ((days * 24 + hours) * 60 + minutes) * 60_000
  }

  #[test]
  fn fields_as_cloudflare_reads_them() {
    let every5 = Schedule::parse("*/5 * * * *").unwrap();
    assert!(every5.fires_at(at(0, 0, 0)) && every5.fires_at(at(0, 0, 5)) && !every5.fires_at(at(0, 0, 6)));
    let weekdays = Schedule::parse("0 12 * * MON-FRI").unwrap();
    assert!(weekdays.fires_at(at(0, 12, 0)), "Friday noon");
    assert!(!weekdays.fires_at(at(1, 12, 0)), "not Saturday");
    let last_day = Schedule::parse("59 23 L * *").unwrap();
    assert!(last_day.fires_at(at(27, 23, 59)), "31 December");
    assert!(!last_day.fires_at(at(26, 23, 59)));
    let last_friday = Schedule::parse("0 0 * * 5L").unwrap();
    assert!(last_friday.fires_at(at(21, 0, 0)), "25 December is the last Friday");
    assert!(!last_friday.fires_at(at(14, 0, 0)));
    let second_monday = Schedule::parse("0 0 * * 1#2").unwrap();
    assert!(second_monday.fires_at(at(10, 0, 0)), "14 December");
    assert!(!second_monday.fires_at(at(3, 0, 0)));
    assert_eq!(minute_of(at(0, 0, 1) + 59_999), at(0, 0, 1));
  }

  #[test]
  fn bad_expressions_are_refused() {
    for bad in [
      "",
      "* * * *",
      "* * * * * *",
      "61 * * * *",
      "* * 32 * *",
      "nonsense x y z w",
    ] {
      assert!(Schedule::parse(bad).is_err(), "{bad:?}");
    }
  }
}
