//! Routing analytics: `GET /api/analytics/routing-efficiency` (the journal's cohorts over a
//! window, per strategy, group and day) and `GET /api/analytics/fairness` (each group's share of
//! the rolling window against its bounds).

use actix_web::{HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDate};
use leadrouter_actors::storage::analytics::{Filter, Query, DAYS_KEPT};
use leadrouter_actors::EfficiencyView;
use leadrouter_models::fairness::Standing;
use leadrouter_models::{InsuranceLine, Strategy};
use serde::Deserialize;

use super::{query, State};
use crate::error::{Error, ErrorResponse, Result};

/// The window and filters of the report.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EfficiencyQuery {
    /// First arrival day, `YYYY-MM-DD` (not with `window`).
    #[serde(default)]
    #[param(format = Date)]
    from: Option<String>,
    /// Last arrival day, included, `YYYY-MM-DD` (default: today, UTC).
    #[serde(default)]
    #[param(format = Date)]
    to: Option<String>,
    /// Days ending today, e.g. `7d` (default `7d`; at most the days kept).
    #[serde(default)]
    #[param(pattern = "^[0-9]{1,3}d$")]
    window: Option<String>,
    /// Only this strategy (`none`: leads never assigned).
    #[serde(default)]
    #[param(pattern = "^(specialty|random|round_robin|weighted_round_robin|ml|roi|none)$")]
    strategy: Option<String>,
    /// Only leads from this state.
    #[serde(default)]
    #[param(pattern = "^[A-Za-z]{2}$")]
    state: Option<String>,
    /// Only leads whose first line is this one.
    #[serde(default)]
    #[param(
        pattern = "^([Aa][Uu][Tt][Oo]|[Hh][Oo][Mm][Ee]|[Rr][Ee][Nn][Tt][Ee][Rr][Ss]|[Ll][Ii][Ff][Ee]|[Hh][Ee][Aa][Ll][Tt][Hh]|[Cc][Oo][Mm][Mm][Ee][Rr][Cc][Ii][Aa][Ll]|[Uu][Mm][Bb][Rr][Ee][Ll][Ll][Aa]|none)$"
    )]
    line: Option<String>,
    /// Only leads first given to this broker group (`none`: brokers without one).
    #[serde(default)]
    #[param(min_length = 1, max_length = 128)]
    group: Option<String>,
}

fn bad(field: &str, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

fn window_days(w: &str) -> Result<i64> {
    let days = w.strip_suffix('d').and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| bad("window", "must be a number of days, e.g. 7d"))?;
    if !(1..=DAYS_KEPT).contains(&days) {
        return Err(bad("window", format!("must be from 1d to {DAYS_KEPT}d")));
    }
    Ok(days)
}

fn day(field: &str, v: Option<&str>) -> Result<Option<NaiveDate>> {
    v.map(|s| s.parse::<NaiveDate>().map_err(|_| bad(field, "must be a date, YYYY-MM-DD"))).transpose()
}

fn parse(q: EfficiencyQuery, today: NaiveDate) -> Result<Query> {
    let (from, to) = (day("from", q.from.as_deref())?, day("to", q.to.as_deref())?);
    let (from, to) = match (q.window.as_deref(), from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(bad("window", "give either window or from/to, not both")),
        (Some(w), None, None) => (today - Duration::days(window_days(w)? - 1), today),
        (None, None, to) => {
            let to = to.unwrap_or(today);
            (to - Duration::days(6), to)
        }
        (None, Some(from), to) => (from, to.unwrap_or(today)),
    };
    if from > to {
        return Err(bad("from", "must not be after to"));
    }
    if (to - from).num_days() >= DAYS_KEPT {
        return Err(bad("from", format!("the window may span at most {DAYS_KEPT} days")));
    }
    if let Some(s) = &q.strategy {
        if s != "none" && !Strategy::ALL.iter().any(|x| x.name() == s) {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            return Err(bad("strategy", format!("must be one of {} or none", names.join(", "))));
        }
    }
    if let Some(l) = &q.line {
        if l != "none" && !InsuranceLine::ALL.iter().any(|x| x.name().eq_ignore_ascii_case(l)) {
            let names: Vec<&str> = InsuranceLine::ALL.iter().map(|l| l.name()).collect();
            return Err(bad("line", format!("must be one of {}", names.join(", "))));
        }
    }
    if let Some(s) = &q.state {
        if s.len() != 2 || !s.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad("state", "must be a two-letter state code"));
        }
    }
    if q.group.as_ref().is_some_and(|g| g.is_empty() || g.chars().count() > 128) {
        return Err(bad("group", "must be 1 to 128 characters"));
    }
    Ok(Query { from, to, filter: Filter { strategy: q.strategy, state: q.state, line: q.line, group: q.group } })
}

/// `GET /api/analytics/routing-efficiency?window=7d` (or `from=&to=`), optionally
/// `&strategy=&state=&line=&group=`: figures of the leads that arrived in the window, counted as
/// cohorts from aggregates kept as the journal is applied.
#[utoipa::path(get, path = "/api/analytics/routing-efficiency", tag = "analytics", security((), ("api_key" = []), ("bearer" = [])), params(EfficiencyQuery),
    responses((status = 200, description = "Figures in total, per strategy, per group and per day; calibration; uplift over random; the brokers' spread; fairness standings", body = EfficiencyView),
        (status = 422, description = "A parameter is malformed or out of range; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn routing_efficiency(state: State, req: HttpRequest) -> Result<HttpResponse> {
    let q: EfficiencyQuery = query(&req)?;
    let q = parse(q, state.router.now().date_naive())?;
    Ok(HttpResponse::Ok().json(state.router.routing_efficiency(&q)))
}

/// `GET /api/analytics/fairness`: every broker group's (and bounded broker's) share of the leads
/// and of the expected value over the rolling window (`routing.fairness.window_hours`), its
/// bounds, its current price and whether it is within them.
#[utoipa::path(get, path = "/api/analytics/fairness", tag = "analytics", security((), ("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "One standing per group and bounded broker", body = [Standing]),
        (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn fairness(state: State) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.router.fairness()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> EfficiencyQuery {
        EfficiencyQuery { from: None, to: None, window: None, strategy: None, state: None, line: None, group: None }
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn windows_end_today_and_from_to_are_inclusive() {
        let today = date("2026-06-10");
        let w = parse(EfficiencyQuery { window: Some("3d".into()), ..q() }, today).unwrap();
        assert_eq!((w.from, w.to), (date("2026-06-08"), today));
        let w = parse(q(), today).unwrap();
        assert_eq!((w.from, w.to), (date("2026-06-04"), today));
        let w = parse(EfficiencyQuery { from: Some("2026-06-01".into()), to: Some("2026-06-02".into()), ..q() }, today).unwrap();
        assert_eq!((w.from, w.to), (date("2026-06-01"), date("2026-06-02")));
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let today = date("2026-06-10");
        let field = |e: Error| match e {
            Error::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(parse(EfficiencyQuery { window: Some("7".into()), ..q() }, today).unwrap_err()), "window");
        assert_eq!(field(parse(EfficiencyQuery { window: Some("0d".into()), ..q() }, today).unwrap_err()), "window");
        assert_eq!(
            field(parse(EfficiencyQuery { window: Some("7d".into()), from: Some("2026-06-01".into()), ..q() }, today).unwrap_err()),
            "window"
        );
        assert_eq!(field(parse(EfficiencyQuery { from: Some("2026-06-11".into()), ..q() }, today).unwrap_err()), "from");
        assert_eq!(field(parse(EfficiencyQuery { to: Some("June".into()), ..q() }, today).unwrap_err()), "to");
        assert_eq!(field(parse(EfficiencyQuery { strategy: Some("best".into()), ..q() }, today).unwrap_err()), "strategy");
        assert_eq!(field(parse(EfficiencyQuery { line: Some("BOAT".into()), ..q() }, today).unwrap_err()), "line");
        assert_eq!(field(parse(EfficiencyQuery { state: Some("Texas".into()), ..q() }, today).unwrap_err()), "state");
    }
}
