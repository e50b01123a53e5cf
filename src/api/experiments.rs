//! Experiments: A/B/n tests between routing policies. Create (the product brief's
//! control/treatment form or the general `arms` form), list, read, change status (conclude with
//! a rollout of the winner), delete drafts, results from the running totals, and the full
//! analysis with a recommendation.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use leadrouter_actors::experiments::Entry;
use leadrouter_models::experiment::analysis::{self, ArmSummary, Srm};
use leadrouter_models::experiment::sequential::DEFAULT_TUNING;
use leadrouter_models::experiment::{
    AllocationMethod, Analysis, ArmSpec, AssignmentKey, Correction, Definition, Metric, Report, Status, Targeting,
};
use leadrouter_models::{Strategy, Weights};
use serde::{Deserialize, Serialize};

use super::{query, State};
use crate::error::{Error, ErrorResponse, Result};
use crate::json;

/// One group of the product brief's two-group form.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupIn {
    /// Arm name (`control` / `treatment` when absent).
    #[serde(default)]
    name: Option<String>,
    /// Strategy.
    strategy: Strategy,
    /// Weights; the strategy's configured weights when absent.
    #[serde(default)]
    weights: Option<Weights>,
    /// Model version (strategy `ml`); the active model when absent.
    #[serde(default)]
    model_version: Option<String>,
    /// Share of the experiment's traffic (both groups: 0.5 when absent).
    #[serde(default)]
    allocation: Option<f64>,
    /// Exploration of this group's decisions (specialty, ml, roi); the strategy's configured
    /// exploration when absent.
    #[serde(default)]
    exploration: Option<leadrouter_models::Exploration>,
}

/// One arm of the general form.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmIn {
    /// Name, unique in the experiment; the first arm is the control.
    name: String,
    /// Strategy.
    strategy: Strategy,
    /// Weights; the strategy's configured weights when absent.
    #[serde(default)]
    weights: Option<Weights>,
    /// Model version (strategy `ml`); the active model when absent.
    #[serde(default)]
    model_version: Option<String>,
    /// Share of the experiment's traffic; the arms' shares sum to 1.
    allocation: f64,
    /// Exploration of this arm's decisions (specialty, ml, roi); the strategy's configured
    /// exploration when absent.
    #[serde(default)]
    exploration: Option<leadrouter_models::Exploration>,
}

/// A new experiment. Give either `controlGroup` and `treatmentGroup` or `arms`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateExperiment {
    /// Id (letters, digits, `-_.:`); derived from the name when absent.
    #[serde(default)]
    id: Option<String>,
    /// Name.
    name: String,
    /// Free text.
    #[serde(default)]
    description: String,
    /// The control of the two-group form.
    #[serde(default)]
    control_group: Option<GroupIn>,
    /// The treatment of the two-group form.
    #[serde(default)]
    treatment_group: Option<GroupIn>,
    /// Arms of the general form, the control first.
    #[serde(default)]
    arms: Option<Vec<ArmIn>>,
    /// Share of targeted leads that enter the experiment (default 1).
    #[serde(default = "one")]
    traffic_allocation: f64,
    /// Exposures per arm to reach; else the size the power analysis asks for.
    #[serde(default)]
    target_sample_size: Option<u64>,
    /// Planned length in days (default 14).
    #[serde(default = "fourteen")]
    duration: f64,
    /// The metric that decides (default `conversion_rate`).
    #[serde(default = "conversion_rate")]
    primary_metric: Metric,
    /// Metrics that must not get worse.
    #[serde(default)]
    guardrail_metrics: Vec<Metric>,
    /// Which leads may enter (all when absent).
    #[serde(default)]
    targeting: Targeting,
    /// `leadId` (default) or `customerId`.
    #[serde(default)]
    assignment_key: AssignmentKey,
    /// Smallest relative lift of the primary metric worth detecting (default 0.1).
    #[serde(default = "tenth")]
    minimum_detectable_effect: f64,
    /// Significance level (default 0.05).
    #[serde(default = "five_percent")]
    alpha: f64,
    /// Planned power (default 0.8).
    #[serde(default = "eighty_percent")]
    power: f64,
    /// `fixed` (default) or `sequential`.
    #[serde(default)]
    analysis: Analysis,
    /// `fixed` (default) or `thompson`.
    #[serde(default)]
    allocation_method: AllocationMethod,
    /// `holm` (default), `benjamini_hochberg` or `none`.
    #[serde(default)]
    correction: Correction,
    /// Conclude (no rollout) when a sequential analysis finds a winner.
    #[serde(default)]
    auto_conclude: bool,
    /// Confidence sequences: total exposures where they are tightest (default 5000).
    #[serde(default = "default_tuning")]
    sequential_tuning: f64,
    /// Sequential: exposures every arm needs before a winner may be declared (default 100).
    #[serde(default = "hundred")]
    min_sample_per_arm: u64,
    /// Thompson: the smallest share any arm keeps (default 0.01).
    #[serde(default = "one_percent")]
    min_arm_share: f64,
    /// Thompson: exposures with equal shares before the first update (default 200).
    #[serde(default = "two_hundred")]
    burn_in: u64,
    /// Layer (default `main`): exclusive experiments of a layer take disjoint traffic.
    #[serde(default = "main_layer")]
    layer: String,
    /// Exclusive (default) or independent of the other experiments.
    #[serde(default = "yes")]
    exclusive: bool,
    /// Salt of the assignment hash (default: the id).
    #[serde(default)]
    salt: Option<String>,
    /// Start running at once (default: a draft).
    #[serde(default)]
    start: bool,
}

fn one() -> f64 {
    1.0
}
fn fourteen() -> f64 {
    14.0
}
fn conversion_rate() -> Metric {
    Metric::ConversionRate
}
fn tenth() -> f64 {
    0.1
}
fn five_percent() -> f64 {
    0.05
}
fn eighty_percent() -> f64 {
    0.8
}
fn default_tuning() -> f64 {
    DEFAULT_TUNING
}
fn hundred() -> u64 {
    100
}
fn one_percent() -> f64 {
    0.01
}
fn two_hundred() -> u64 {
    200
}
fn main_layer() -> String {
    "main".into()
}
fn yes() -> bool {
    true
}

/// An id from a name: lower-case letters and digits, other runs of characters as one `-`.
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-');
    let s: String = s.chars().take(100).collect();
    if s.is_empty() {
        "experiment".into()
    } else {
        s
    }
}

impl CreateExperiment {
    fn into_definition(self) -> Result<(Definition, bool)> {
        let arms = match (self.arms, self.control_group, self.treatment_group) {
            (Some(arms), None, None) => arms
                .into_iter()
                .map(|a| ArmSpec {
                    name: a.name,
                    strategy: a.strategy,
                    weights: a.weights,
                    model_version: a.model_version,
                    allocation: a.allocation,
                    exploration: a.exploration,
                })
                .collect(),
            (None, Some(c), Some(t)) => {
                let (ca, ta) = match (c.allocation, t.allocation) {
                    (None, None) => (0.5, 0.5),
                    (Some(x), None) => (x, 1.0 - x),
                    (None, Some(y)) => (1.0 - y, y),
                    (Some(x), Some(y)) => (x, y),
                };
                vec![
                    ArmSpec {
                        name: c.name.unwrap_or_else(|| "control".into()),
                        strategy: c.strategy,
                        weights: c.weights,
                        model_version: c.model_version,
                        allocation: ca,
                        exploration: c.exploration,
                    },
                    ArmSpec {
                        name: t.name.unwrap_or_else(|| "treatment".into()),
                        strategy: t.strategy,
                        weights: t.weights,
                        model_version: t.model_version,
                        allocation: ta,
                        exploration: t.exploration,
                    },
                ]
            }
            (None, None, None) => {
                return Err(Error::Invalid { field: "arms".into(), reason: "give arms, or controlGroup and treatmentGroup".into() })
            }
            (Some(_), _, _) => {
                return Err(Error::Invalid {
                    field: "arms".into(),
                    reason: "give either arms or controlGroup and treatmentGroup, not both".into(),
                })
            }
            (None, None, Some(_)) => {
                return Err(Error::Invalid { field: "controlGroup".into(), reason: "is required with treatmentGroup".into() })
            }
            (None, Some(_), None) => {
                return Err(Error::Invalid { field: "treatmentGroup".into(), reason: "is required with controlGroup".into() })
            }
        };
        let id = self.id.unwrap_or_else(|| slug(&self.name));
        let salt = self.salt.unwrap_or_else(|| id.clone());
        if salt.is_empty() || salt.chars().count() > 200 {
            return Err(Error::Invalid { field: "salt".into(), reason: "must be 1 to 200 characters".into() });
        }
        let def = Definition {
            id,
            name: self.name,
            description: self.description,
            arms,
            primary_metric: self.primary_metric,
            guardrail_metrics: self.guardrail_metrics,
            targeting: self.targeting,
            assignment_key: self.assignment_key,
            traffic_allocation: self.traffic_allocation,
            traffic_offset: 0.0,
            target_sample_size: self.target_sample_size,
            duration_days: self.duration,
            minimum_detectable_effect: self.minimum_detectable_effect,
            alpha: self.alpha,
            power: self.power,
            analysis: self.analysis,
            allocation_method: self.allocation_method,
            correction: self.correction,
            auto_conclude: self.auto_conclude,
            sequential_tuning: self.sequential_tuning,
            min_sample_per_arm: self.min_sample_per_arm,
            min_arm_share: self.min_arm_share,
            burn_in: self.burn_in,
            layer: self.layer,
            exclusive: self.exclusive,
            salt,
        };
        Ok((def, self.start))
    }
}

/// Reads a definition from the JSON of a create request (as `simulate --experiment` does), with
/// the same checks: the definition's own, not the engine's (free traffic, overlaps).
pub fn parse_definition(body: &[u8]) -> Result<Definition> {
    let input: CreateExperiment = json::parse(body)?;
    let (def, _) = input.into_definition()?;
    def.validate()?;
    Ok(def)
}

/// An experiment: its definition and where it stands.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentView {
    /// The definition (`trafficOffset` is where its traffic range starts in its layer).
    #[serde(flatten)]
    definition: Definition,
    /// `draft`, `running`, `paused` or `concluded`.
    status: Status,
    /// Current share of each arm (the allocation, or the last Thompson update).
    current_shares: Vec<f64>,
    /// Thompson updates so far.
    allocation_updates: u32,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it first ran.
    started_at: Option<DateTime<Utc>>,
    /// When it was concluded.
    concluded_at: Option<DateTime<Utc>>,
    /// The declared winner.
    winner: Option<String>,
    /// Days spent running.
    running_days: f64,
}

fn view(e: Entry, now: DateTime<Utc>) -> ExperimentView {
    ExperimentView {
        running_days: e.running_days(now),
        definition: (*e.definition).clone(),
        status: e.status,
        current_shares: e.shares,
        allocation_updates: e.allocation_updates,
        created_at: e.created_at,
        started_at: e.started_at,
        concluded_at: e.concluded_at,
        winner: e.winner,
    }
}

/// `POST /api/experiments`.
#[utoipa::path(post, path = "/api/experiments", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), request_body = CreateExperiment,
    responses((status = 201, description = "Created (a draft, or running with `start: true`); `Location` names it", body = ExperimentView),
        (status = 409, description = "The id is taken", body = ErrorResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 413, description = "Body larger than server.body_limit_bytes", body = ErrorResponse), (status = 422, description = "Invalid definition (allocations not summing to 1, unknown strategy or model version, duration ≤ 0, overlap with an exclusive experiment...); `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn create(state: State, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let input: CreateExperiment = json::parse(&body)?;
    let (def, start) = input.into_definition()?;
    let e = state.router.create_experiment(def, start).await?;
    let id = e.definition.id.clone();
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/experiments/{id}"))).json(view(e, state.router.now())))
}

/// Filter of the list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only experiments with this status.
    #[serde(default)]
    status: Option<Status>,
}

/// The experiments.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExperimentList {
    /// Oldest first.
    experiments: Vec<ExperimentView>,
}

/// `GET /api/experiments?status=`.
#[utoipa::path(get, path = "/api/experiments", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "Experiments, oldest first", body = ExperimentList), (status = 422, description = "Unknown status; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn list(state: State, req: HttpRequest) -> Result<HttpResponse> {
    let q: ListQuery = query(&req)?;
    let now = state.router.now();
    let experiments = state.router.experiments(q.status).into_iter().map(|e| view(e, now)).collect();
    Ok(HttpResponse::Ok().json(ExperimentList { experiments }))
}

/// `GET /api/experiments/{id}`.
#[utoipa::path(get, path = "/api/experiments/{id}", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "The experiment", body = ExperimentView), (status = 404, description = "No such experiment", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(state.router.experiment(&path)?, state.router.now())))
}

/// A status change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChange {
    /// `running`, `paused` or `concluded`.
    status: Status,
    /// With `concluded`: the winning arm.
    #[serde(default)]
    winner: Option<String>,
    /// With `concluded` and a winner: make the winner's strategy, weights and model version
    /// the routing default.
    #[serde(default)]
    rollout: bool,
}

/// `PATCH /api/experiments/{id}`: `draft → running ⇄ paused → concluded`.
#[utoipa::path(patch, path = "/api/experiments/{id}", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Experiment id")), request_body = StatusChange,
    responses((status = 200, description = "The experiment after the change", body = ExperimentView), (status = 404, description = "No such experiment", body = ErrorResponse), (status = 409, description = "Illegal transition", body = ErrorResponse), (status = 400, description = "The body is not JSON", body = ErrorResponse), (status = 422, description = "Unknown status, winner not an arm, rollout without a winner; `field` names it", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn patch(state: State, path: web::Path<String>, body: web::Payload) -> Result<HttpResponse> {
    let body = json::read_body(body, state.body_limit).await?;
    let c: StatusChange = json::parse(&body)?;
    let e = state.router.set_experiment_status(&path, c.status, c.winner, c.rollout).await?;
    Ok(HttpResponse::Ok().json(view(e, state.router.now())))
}

/// `DELETE /api/experiments/{id}`: drafts only.
#[utoipa::path(delete, path = "/api/experiments/{id}", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Experiment id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such experiment", body = ErrorResponse), (status = 409, description = "Not a draft", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn delete(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    state.router.delete_experiment(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The current numbers of an experiment.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    /// The experiment.
    experiment_id: String,
    /// Its status.
    status: Status,
    /// Days spent running.
    running_days: f64,
    /// Exposures in all arms.
    exposures: u64,
    /// Per arm, the control first.
    arms: Vec<ArmSummary>,
    /// Sample-ratio test.
    srm: Srm,
}

/// `GET /api/experiments/{id}/results`: per-arm numbers from the running totals.
#[utoipa::path(get, path = "/api/experiments/{id}/results", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Per-arm numbers and the sample-ratio test", body = Results), (status = 404, description = "No such experiment", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn results(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let (e, totals) = state.router.experiment_totals(&path)?;
    let exposures = totals.iter().map(|t| t.exposures).sum();
    Ok(HttpResponse::Ok().json(Results {
        experiment_id: e.definition.id.clone(),
        status: e.status,
        running_days: e.running_days(state.router.now()),
        exposures,
        arms: analysis::summaries(&e.definition, &totals, exposures),
        srm: analysis::srm(&e.definition, &totals),
    }))
}

/// The full analysis of an experiment.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisView {
    /// The experiment.
    experiment_id: String,
    /// Its status.
    status: Status,
    /// Fixed or sequential.
    analysis: Analysis,
    /// The correction applied: `holm`, `benjamini_hochberg` or `none`; `bonferroni` under
    /// sequential analysis, whose confidence sequences it keeps valid at every look.
    correction: &'static str,
    /// Significance level.
    alpha: f64,
    /// Days spent running.
    running_days: f64,
    /// The analysis.
    #[serde(flatten)]
    report: Report,
}

/// `POST /api/experiments/{id}/analyze`: the full analysis and a recommendation.
#[utoipa::path(post, path = "/api/experiments/{id}/analyze", tag = "experiments", security((), ("api_key" = []), ("bearer" = [])), params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Comparisons, power, Bayesian summary, sample-ratio test and a recommendation: `continue`, `ship <arm>`, `stop: no effect` or `invalid: sample ratio mismatch`", body = AnalysisView), (status = 404, description = "No such experiment", body = ErrorResponse), (status = 401, description = "No credentials", body = ErrorResponse), (status = 403, description = "Wrong credentials", body = ErrorResponse)))]
pub async fn analyze(state: State, path: web::Path<String>) -> Result<HttpResponse> {
    let (e, report) = state.router.analyze_experiment(&path)?;
    let d = &e.definition;
    let correction = match (d.analysis, d.correction) {
        (Analysis::Sequential, _) => "bonferroni",
        (Analysis::Fixed, Correction::Holm) => "holm",
        (Analysis::Fixed, Correction::BenjaminiHochberg) => "benjamini_hochberg",
        (Analysis::Fixed, Correction::None) => "none",
    };
    Ok(HttpResponse::Ok().json(AnalysisView {
        experiment_id: d.id.clone(),
        status: e.status,
        analysis: d.analysis,
        correction,
        alpha: d.alpha,
        running_days: e.running_days(state.router.now()),
        report,
    }))
}
