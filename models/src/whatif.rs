//! The moment of a what-if prediction (`POST /api/routing/predict`'s `context`): a time of day,
//! a day of the week and a season, turned into the instant the hard constraints are checked at.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Another moment to predict for. Times are UTC; a broker's working hours are still read in its
/// own time zone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictContext {
    /// `HH:MM`, UTC.
    #[serde(default)]
    pub time_of_day: Option<String>,
    /// `monday` … `sunday`.
    #[serde(default)]
    pub day_of_week: Option<String>,
    /// `winter`, `spring`, `summer` or `autumn` (`fall`). No hard constraint or model feature
    /// depends on the season, so it is checked and echoed only.
    #[serde(default)]
    pub season: Option<String>,
}

const SEASONS: [&str; 5] = ["winter", "spring", "summer", "autumn", "fall"];

impl PredictContext {
    /// The instant this context names, from `now`: the same date moved forward to the named day
    /// of the week (this week's, or next week's when it has passed), at the named time.
    pub fn at(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let mut at = now;
        if let Some(d) = &self.day_of_week {
            let want: Weekday =
                d.parse().map_err(|_| ModelError::invalid("context.dayOfWeek", "must be a day of the week, e.g. monday"))?;
            let ahead = (i64::from(want.num_days_from_monday()) - i64::from(now.weekday().num_days_from_monday())).rem_euclid(7);
            at += Duration::days(ahead);
        }
        if let Some(t) = &self.time_of_day {
            // Exactly two digits each side: chrono alone would also take `9:5`.
            let two_digits = t.len() == 5 && t.as_bytes()[2] == b':' && t.bytes().enumerate().all(|(i, b)| i == 2 || b.is_ascii_digit());
            let time = NaiveTime::parse_from_str(t, "%H:%M")
                .ok()
                .filter(|_| two_digits)
                .ok_or_else(|| ModelError::invalid("context.timeOfDay", "must be HH:MM, 00:00 to 23:59 (UTC)"))?;
            at = at.date_naive().and_time(time).and_utc();
        }
        if let Some(s) = &self.season {
            if !SEASONS.contains(&s.to_ascii_lowercase().as_str()) {
                return Err(ModelError::invalid("context.season", "must be winter, spring, summer or autumn"));
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ctx(t: Option<&str>, d: Option<&str>, s: Option<&str>) -> PredictContext {
        PredictContext { time_of_day: t.map(Into::into), day_of_week: d.map(Into::into), season: s.map(Into::into) }
    }

    #[test]
    fn the_moment_moves_to_the_named_day_and_time() {
        // A Wednesday.
        let now = Utc.with_ymd_and_hms(2026, 6, 3, 10, 30, 0).unwrap();
        assert_eq!(ctx(None, None, None).at(now).unwrap(), now);
        assert_eq!(ctx(Some("22:15"), None, None).at(now).unwrap(), Utc.with_ymd_and_hms(2026, 6, 3, 22, 15, 0).unwrap());
        assert_eq!(ctx(Some("08:00"), Some("saturday"), None).at(now).unwrap(), Utc.with_ymd_and_hms(2026, 6, 6, 8, 0, 0).unwrap());
        // Monday has passed this week: next Monday.
        assert_eq!(
            ctx(None, Some("Monday"), Some("winter")).at(now).unwrap().date_naive(),
            chrono::NaiveDate::from_ymd_opt(2026, 6, 8).unwrap()
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let now = Utc::now();
        assert!(ctx(Some("25:00"), None, None).at(now).unwrap_err().to_string().contains("context.timeOfDay"));
        assert!(ctx(None, Some("someday"), None).at(now).unwrap_err().to_string().contains("context.dayOfWeek"));
        assert!(ctx(None, None, Some("monsoon")).at(now).unwrap_err().to_string().contains("context.season"));
    }
}
