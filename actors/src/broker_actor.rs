//! `BrokerActor`: the single owner of one broker's live capacity, reservations, timers and
//! rolling performance. A handler that panics stops the actor; its `Supervisor` restarts it with
//! the same state, and the reply says the broker could not take the lead.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, SpawnHandle, Supervised};
use chrono::{DateTime, Duration, Utc};
use leadrouter_models::{Broker, BrokerProfile, Exclusion};
use tokio::sync::mpsc::UnboundedSender;

use crate::clock::SharedClock;
use crate::config::ThrottleConfig;
use crate::counters::Counters;
use crate::feed::{CapacityState, Feed};
use crate::messages::{
    Apply, Cancel, Crash, Disarm, Inspect, LiveView, Notice, Performance, PerformanceCounters, Reservation, Reserve, Restart, Retire,
    Score, ScoreReply, UpdateConfig,
};
use crate::storage::record::Record;
use crate::storage::state::{BrokerLive, OpenLead, Release};
use leadrouter_models::LeadState;

/// One broker's live state, owned by exactly this actor.
pub struct BrokerActor {
    broker: Arc<Broker>,
    profile: BrokerProfile,
    live: BrokerLive,
    counters: Counters,
    notices: UnboundedSender<Notice>,
    feed: Arc<Feed>,
    clock: SharedClock,
    throttle: Arc<ThrottleConfig>,
    /// Acceptance deadlines of reserved leads, earliest first, served by one timer: an actix
    /// context polls every spawned future on each wake-up, so one timer per lead would make
    /// every message cost O(open leads).
    deadlines: BTreeSet<(DateTime<Utc>, String)>,
    /// The armed wake-up and when it fires.
    wake: Option<(DateTime<Utc>, SpawnHandle)>,
    /// The withheld seats last asked of the supervisor and not yet applied back: the same step
    /// is not asked for twice while its record is on its way.
    asked: Option<u32>,
    retired: bool,
}

impl BrokerActor {
    /// An actor for `broker` starting from `live` (from a snapshot and replay, or empty).
    pub fn new(
        broker: Arc<Broker>,
        live: BrokerLive,
        counters: Counters,
        notices: UnboundedSender<Notice>,
        feed: Arc<Feed>,
        clock: SharedClock,
        throttle: Arc<ThrottleConfig>,
    ) -> Self {
        let profile = broker.profile();
        counters.publish(&live, &profile);
        Self {
            profile,
            broker,
            live,
            counters,
            notices,
            feed,
            clock,
            throttle,
            deadlines: BTreeSet::new(),
            wake: None,
            asked: None,
            retired: false,
        }
    }

    /// The capacity state as the feed shows it.
    pub fn capacity_state(&self) -> CapacityState {
        let day = self.profile.local_day(self.clock.now());
        let seats = self.live.seats(self.broker.capacity.max_concurrent);
        CapacityState::of(&self.broker, self.live.open_count(), seats, self.live.daily_used_on(day), self.feed.overload_at())
    }

    /// Runs a handler body; a panic stops the actor (the supervisor restarts it, state intact).
    /// Afterwards the index counters are refreshed and, when load or status changed, a capacity
    /// event with `reason` is published.
    fn guarded<R>(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &'static str,
        fallback: R,
        f: impl FnOnce(&mut Self, &mut Context<Self>) -> R,
    ) -> R {
        self.counters.handled();
        let before = self.capacity_state();
        match catch_unwind(AssertUnwindSafe(|| f(self, ctx))) {
            Ok(r) => {
                self.counters.publish(&self.live, &self.profile);
                let after = self.capacity_state();
                if after != before {
                    self.feed.publish(reason, after);
                }
                r
            }
            Err(_) => {
                tracing::error!(broker = %self.broker.id, "broker actor panicked; restarting with its state");
                ctx.stop();
                fallback
            }
        }
    }

    /// Asks the supervisor to journal a throttling step when one is due (the record, applied
    /// back, changes the seats; this actor never changes them on its own).
    fn check_throttle(&mut self) {
        let Some((withheld, sla_compliance)) =
            self.live.throttle_step(&self.throttle, self.broker.capacity.max_concurrent, self.clock.now())
        else {
            self.asked = None;
            return;
        };
        if self.asked == Some(withheld) {
            return;
        }
        self.asked = Some(withheld);
        let notice = Notice::Throttle { broker_id: self.broker.id.clone(), withheld, sla_compliance };
        if let Err(e) = self.notices.send(notice) {
            tracing::warn!(broker = %self.broker.id, notice = ?e.0, "a throttling step found no supervisor to hear it");
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>, lead_id: &str) {
        let Some(open) = self.live.open.get(lead_id) else { return };
        if open.stage != LeadState::Reserved {
            return;
        }
        self.deadlines.insert((open.accept_deadline, lead_id.to_string()));
        self.schedule_wake(ctx);
    }

    fn disarm_timer(&mut self, ctx: &mut Context<Self>, lead_id: &str) {
        if let Some(open) = self.live.open.get(lead_id) {
            self.deadlines.remove(&(open.accept_deadline, lead_id.to_string()));
        } else {
            self.deadlines.retain(|(_, id)| id != lead_id);
        }
        if self.deadlines.is_empty() {
            if let Some((_, h)) = self.wake.take() {
                ctx.cancel_future(h);
            }
        }
    }

    /// Keeps the one wake-up armed for the earliest deadline.
    fn schedule_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(&(first, _)) = self.deadlines.first() else { return };
        if let Some((at, h)) = self.wake {
            if at <= first {
                return;
            }
            ctx.cancel_future(h);
        }
        let wait = (first - self.clock.now()).to_std().unwrap_or_default();
        let handle = ctx.run_later(wait, |act, ctx| {
            act.wake = None;
            act.fire_due(ctx);
        });
        self.wake = Some((first, handle));
    }

    /// Reports every reservation whose acceptance deadline has passed, then re-arms.
    fn fire_due(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        while let Some((at, lead)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(o) = self.live.open.get(&lead).filter(|o| o.stage == LeadState::Reserved && o.accept_deadline == at) {
                let reserved_at = o.reserved_at;
                let notice = Notice::AcceptTimeout { broker_id: self.broker.id.clone(), lead_id: lead, reserved_at };
                if let Err(e) = self.notices.send(notice) {
                    // Only once the supervisor is gone (shutdown); the lead stays reserved in the
                    // journal.
                    tracing::warn!(broker = %self.broker.id, notice = ?e.0, "an acceptance time-out found no supervisor to hear it");
                }
            }
        }
        self.schedule_wake(ctx);
    }
}

impl Actor for BrokerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Also runs after a restart: the old context's wake-up is gone, so re-arm them all.
        self.deadlines.clear();
        self.wake = None;
        let reserved: Vec<String> =
            self.live.open.iter().filter(|(_, o)| o.stage == LeadState::Reserved).map(|(id, _)| id.clone()).collect();
        for id in reserved {
            self.arm_timer(ctx, &id);
        }
    }
}

impl Supervised for BrokerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.counters.restarted();
    }
}

impl Handler<Score> for BrokerActor {
    type Result = Option<ScoreReply>;

    fn handle(&mut self, m: Score, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, "score", None, |a, _| {
            let p = &a.profile;
            if a.retired || !p.is_available(m.now) {
                return None;
            }
            let day = p.local_day(m.now);
            let used_today = a.live.daily_used_on(day);
            let held = a.live.held(p.max_concurrent);
            p.capacity_eligibility(held, used_today).ok()?;
            let headroom = p.headroom(held, used_today);
            let target = a.broker.sla.target_minutes(m.lead.urgency.is_urgent());
            Some(ScoreReply {
                inputs: a.live.score_inputs(p.specialty_score(m.lead.lines), headroom, target, m.lead.value, &m.priors),
                features: m.with_features.then(|| a.live.features(p, &m.lead, &m.priors, m.now)),
                evidence: m.with_evidence.then(|| a.live.evidence(p, &m.lead, day, a.broker.cost_per_lead)),
                load: a.live.open_count() as f64 / a.live.seats(p.max_concurrent) as f64,
            })
        })
    }
}

impl Handler<Reserve> for BrokerActor {
    type Result = Result<Reservation, Exclusion>;

    fn handle(&mut self, m: Reserve, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, "reserve", Err(Exclusion::Unavailable), |a, ctx| {
            let p = &a.profile;
            if a.retired || !p.is_available(m.at) {
                return Err(Exclusion::Unavailable);
            }
            a.live.can_take(a.live.seats(p.max_concurrent), p.daily_cap, p.local_day(m.at))?;
            if a.live.open.contains_key(&m.lead_id) {
                return Err(Exclusion::Excluded);
            }
            let r = Reservation {
                accept_deadline: m.at + Duration::seconds(a.broker.sla.accept_timeout_seconds as i64),
                sla_minutes: a.broker.sla.target_minutes(m.urgency.is_urgent()),
            };
            a.live.reserve(&m.lead_id, OpenLead::reserved(&m.lead_state, m.lines, m.at, r.accept_deadline, r.sla_minutes, p.tz));
            a.arm_timer(ctx, &m.lead_id);
            Ok(r)
        })
    }
}

impl Handler<Cancel> for BrokerActor {
    type Result = ();

    fn handle(&mut self, m: Cancel, ctx: &mut Context<Self>) {
        self.guarded(ctx, "cancel", (), |a, ctx| {
            a.disarm_timer(ctx, &m.lead_id);
            a.live.release(&m.lead_id, Release::Cancelled, m.at);
        })
    }
}

impl Handler<Apply> for BrokerActor {
    type Result = ();

    fn handle(&mut self, m: Apply, ctx: &mut Context<Self>) {
        let reason = match &*m.0 {
            Record::LeadEvent { event, .. } => event_name(*event),
            Record::BrokerThrottled { .. } => "throttled",
            _ => "apply",
        };
        self.guarded(ctx, reason, (), |a, ctx| {
            if let Record::LeadEvent { lead_id, .. } = &*m.0 {
                a.disarm_timer(ctx, lead_id);
            }
            a.live.apply(&m.0, a.profile.tz);
            if let Record::BrokerThrottled { .. } = &*m.0 {
                a.asked = None;
            }
            if let Record::LeadEvent { event: leadrouter_models::EventKind::Contacted | leadrouter_models::EventKind::Closed, .. } = &*m.0 {
                a.check_throttle();
            }
        })
    }
}

impl Handler<UpdateConfig> for BrokerActor {
    type Result = ();

    fn handle(&mut self, m: UpdateConfig, ctx: &mut Context<Self>) {
        self.guarded(ctx, "config", (), |a, _| {
            a.profile = m.0.profile();
            a.counters.forget_day_end();
            a.broker = m.0;
        })
    }
}

impl Handler<Inspect> for BrokerActor {
    type Result = actix::MessageResult<Inspect>;

    fn handle(&mut self, _: Inspect, _ctx: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        actix::MessageResult(LiveView { broker: self.broker.clone(), live: self.live.clone(), counters: self.counters.actor() })
    }
}

impl Handler<Performance> for BrokerActor {
    type Result = actix::MessageResult<Performance>;

    fn handle(&mut self, m: Performance, _ctx: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let day = self.profile.local_day(m.now);
        actix::MessageResult(PerformanceCounters {
            all_time: self.live.all_time.clone(),
            recent: self.live.window(m.now, m.window_days),
            window_days: m.window_days,
            open: self.live.open_count(),
            daily_used: self.live.daily_used_on(day),
        })
    }
}

impl Handler<Retire> for BrokerActor {
    type Result = Result<(), u32>;

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, "retire", Err(u32::MAX), |a, _| match a.live.open_count() {
            0 => {
                a.retired = true;
                Ok(())
            }
            n => Err(n),
        })
    }
}

impl Handler<Disarm> for BrokerActor {
    type Result = ();

    fn handle(&mut self, _: Disarm, ctx: &mut Context<Self>) {
        self.counters.handled();
        self.deadlines.clear();
        if let Some((_, h)) = self.wake.take() {
            ctx.cancel_future(h);
        }
    }
}

impl Handler<Restart> for BrokerActor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        self.counters.handled();
        // Stopping hands the actor back to its supervisor, which restarts it with this state.
        ctx.stop();
    }
}

impl Handler<Crash> for BrokerActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        self.guarded(ctx, "crash", (), |_, _| panic!("diagnostic crash requested"));
    }
}

fn event_name(e: leadrouter_models::EventKind) -> &'static str {
    use leadrouter_models::EventKind as E;
    match e {
        E::Accepted => "accepted",
        E::Rejected => "rejected",
        E::TimedOut => "timed_out",
        E::Contacted => "contacted",
        E::Converted => "converted",
        E::Lost => "lost",
        E::Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::Supervisor;
    use leadrouter_models::Urgency;

    fn broker(max: u32) -> Arc<Broker> {
        let mut b: Broker = serde_json::from_str(r#"{"id":"b1","name":"B","licenses":[{"state":"CA","lines":["AUTO"],"expiresOn":"2099-01-01"}],"capacity":{"maxConcurrent":2,"dailyCap":50},"sla":{"firstContactMinutes":30,"acceptTimeoutSeconds":60}}"#).unwrap();
        b.capacity.max_concurrent = max;
        Arc::new(b)
    }

    #[actix_rt::test]
    async fn refuses_beyond_capacity_and_survives_a_panic() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let counters = Counters::standalone();
        let c2 = counters.clone();
        let addr = Supervisor::start(move |_| {
            BrokerActor::new(
                broker(2),
                BrokerLive::default(),
                c2,
                tx,
                Arc::new(Feed::new(16)),
                Arc::new(crate::clock::SystemClock),
                Default::default(),
            )
        });
        let at = Utc::now();
        let reserve =
            |id: &str| Reserve { lead_id: id.into(), lead_state: "CA".into(), lines: Default::default(), urgency: Urgency::High, at };
        let r1 = addr.send(reserve("l1")).await.unwrap().unwrap();
        assert_eq!(r1.sla_minutes, 15, "urgent target is half the normal one");
        addr.send(reserve("l2")).await.unwrap().unwrap();
        assert_eq!(addr.send(reserve("l3")).await.unwrap(), Err(Exclusion::AtCapacity));
        assert_eq!(counters.open(), 2);
        addr.send(Crash).await.unwrap();
        // The restarted actor still holds both leads and still refuses a third.
        let view = addr.send(Inspect).await.unwrap();
        assert_eq!(view.counters.restarts, 1);
        assert_eq!(view.live.open.len(), 2);
        assert_eq!(addr.send(reserve("l3")).await.unwrap(), Err(Exclusion::AtCapacity));
    }

    #[actix_rt::test]
    async fn unaccepted_reservation_times_out() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = (*broker(2)).clone();
        b.sla.accept_timeout_seconds = 1;
        let addr = Supervisor::start(move |_| {
            BrokerActor::new(
                Arc::new(b),
                BrokerLive::default(),
                Counters::standalone(),
                tx,
                Arc::new(Feed::new(16)),
                Arc::new(crate::clock::SystemClock),
                Default::default(),
            )
        });
        addr.send(Reserve {
            lead_id: "l1".into(),
            lead_state: "CA".into(),
            lines: Default::default(),
            urgency: Urgency::Low,
            at: Utc::now(),
        })
        .await
        .unwrap()
        .unwrap();
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert!(matches!(n, Notice::AcceptTimeout { lead_id, .. } if lead_id == "l1"));
    }
}
