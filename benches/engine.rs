//! Criterion: the parts of a decision and of persistence, each beside a baseline from the same
//! run.
//!
//! - `scoring`: the scoring formula over 32 candidates (`combine`) vs a plain weighted sum of
//!   the same inputs.
//! - `scatter_gather`: `Score` sent to 32 broker actors on 2 arbiters and gathered, vs the same
//!   per-broker scoring work done inline on one thread.
//! - `journal_append`: one appended record (a queued lead) per durability mode, awaited until
//!   durable per that mode, vs encoding the same record into memory.
//! - `snapshot`: writing and loading a sled snapshot of 10,000 brokers, vs encoding the same
//!   entries into memory.
//! - `snapshot_leads`: writing 10,000 changed leads (decided by a real engine) as a snapshot
//!   does, compressed in sorted batches, and loading them; vs encoding them into memory, and vs
//!   one sled batch of their plain JSON in no order (the simplest way to write them).
//! - `filter`: the static checks (licences, specialties, status, working hours) over 1,000
//!   brokers with working hours in four time zones, as the index runs them (one local-time
//!   conversion per zone per scan), vs each broker converting the decision time itself.
//! - `experiment_analysis`: the full analysis (`analyze`: every comparison, power, the
//!   sample-ratio test, the Bayesian summary) of a two-arm experiment with 1,000,000 exposures
//!   and two guardrails, from the per-arm totals the book keeps; vs the per-arm summaries alone
//!   (what `results` computes). Building the totals (1,000,000 exposures folded in one by one, as
//!   the book does) is timed once and printed.
//!
//! - `exploration`: one exploring pick among 8 scored candidates with its exact probabilities,
//!   per method (epsilon, softmax, Thompson sampling), vs taking the best.
//!
//! Run: `cargo bench --bench engine`.

mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use actix::Supervisor;
use chrono::Utc;
use common::{broker, lead};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use leadrouter::{Config, Overrides};
use leadrouter_actors::broker_actor::BrokerActor;
use leadrouter_actors::clock::SystemClock;
use leadrouter_actors::counters::Counters;
use leadrouter_actors::engine::{journal_dir, Engine};
use leadrouter_actors::feed::Feed;
use leadrouter_actors::messages::Score;
use leadrouter_actors::metrics::Metrics;
use leadrouter_actors::storage::journal::{Journal, JournalSettings};
use leadrouter_actors::storage::snapshot::SnapshotStore;
use leadrouter_actors::storage::state::{BrokerEntry, BrokerLive, EngineState};
use leadrouter_actors::{Durability, Record};
use leadrouter_models::scoring::{combine, Priors, ScoreInputs, Weights};
use leadrouter_models::{Broker, BrokerProfile, LocalClock};

fn exploration(c: &mut Criterion) {
    use leadrouter_models::exploration::{Contender, Exploration, Method};
    let mut g = c.benchmark_group("exploration");
    let cs: Vec<Contender> = (0..8).map(|i| Contender { score: 1.0 - i as f64 * 0.03, spread: 0.05 + i as f64 * 0.01 }).collect();
    let mut rng = fastrand::Rng::with_seed(1);
    for (name, method, epsilon, temperature) in [
        ("epsilon", Method::Epsilon, Some(0.05), None),
        ("softmax", Method::Softmax, None, Some(0.1)),
        ("thompson", Method::Thompson, None, None),
    ] {
        let x = Exploration { method, epsilon, temperature, band: Some(1.0) };
        g.bench_function(name, |b| b.iter(|| x.draw(black_box(&cs), &mut rng)));
    }
    g.bench_function("best_baseline", |b| {
        b.iter(|| black_box(&cs).iter().enumerate().max_by(|a, b| a.1.score.total_cmp(&b.1.score)).map(|(i, _)| i))
    });
    g.finish();
}

fn scoring(c: &mut Criterion) {
    let mut g = c.benchmark_group("scoring");
    let priors = Priors::from_totals(300, 1000, 900, 1000, 20.0);
    let live = BrokerLive::default();
    let inputs: Vec<ScoreInputs> =
        (0..32).map(|i| live.score_inputs((i % 5) as f64 / 4.0, 1.0 - i as f64 / 64.0, 30, 25_000.0, &priors)).collect();
    let w = Weights::default();
    g.bench_function("combine_32", |b| b.iter(|| combine(black_box(&inputs), &w)));
    g.bench_function("plain_weighted_sum_32_baseline", |b| {
        b.iter(|| {
            black_box(&inputs)
                .iter()
                .map(|i| w.specialty * i.specialty + w.performance * i.conversion + w.capacity * i.headroom + w.sla * i.sla_compliance)
                .collect::<Vec<f64>>()
        })
    });
    g.finish();
}

fn scatter_gather(c: &mut Criterion) {
    let mut g = c.benchmark_group("scatter_gather");
    let sys = actix_rt::System::new();
    let arbiters: Vec<actix::Arbiter> = (0..2).map(|_| actix::Arbiter::new()).collect();
    let feed = Arc::new(Feed::new(256));
    let (notices, _rx) = tokio::sync::mpsc::unbounded_channel();
    let brokers: Vec<Arc<Broker>> = (0..32).map(|i| Arc::new(broker(i))).collect();
    let addrs: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (b, n, f) = (b.clone(), notices.clone(), feed.clone());
            Supervisor::start_in_arbiter(&arbiters[i % 2].handle(), move |_| {
                BrokerActor::new(b, BrokerLive::default(), Counters::standalone(), n, f, Arc::new(SystemClock), Default::default())
            })
        })
        .collect();
    let features = Arc::new(lead(0).features());
    let priors = Priors::from_totals(300, 1000, 900, 1000, 20.0);
    g.bench_function(BenchmarkId::new("actors_32_on_2_arbiters", 32), |b| {
        b.iter(|| {
            let now = Utc::now();
            sys.block_on(futures_util::future::join_all(
                addrs.iter().map(|a| a.send(Score { lead: features.clone(), priors, now, with_features: true, with_evidence: false })),
            ))
        })
    });
    let profiles: Vec<_> = brokers.iter().map(|b| b.profile()).collect();
    let lives: Vec<BrokerLive> = (0..32).map(|_| BrokerLive::default()).collect();
    g.bench_function(BenchmarkId::new("inline_same_work_baseline", 32), |b| {
        b.iter(|| {
            let now = Utc::now();
            profiles
                .iter()
                .zip(&lives)
                .map(|(p, l)| {
                    let inputs =
                        l.score_inputs(p.specialty_score(features.lines), p.headroom(l.open_count(), 0), 30, features.value, &priors);
                    (inputs, l.features(p, &features, &priors, now))
                })
                .collect::<Vec<_>>()
        })
    });
    g.finish();
    drop(addrs);
    for a in arbiters {
        a.stop();
        a.join().expect("arbiter stops");
    }
}

fn queued_record(n: u64) -> Arc<Record> {
    let now = Utc::now();
    Arc::new(Record::Queued { at: now, request: Arc::new(lead(n)), expires_at: now + chrono::Duration::hours(1) })
}

fn journal_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_append");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    let sys = actix_rt::System::new();
    for (name, durability) in [("fsync", Durability::Fsync), ("batch", Durability::Batch), ("none", Durability::None)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (tx, rx) = std::sync::mpsc::channel();
        let drain = std::thread::spawn(move || for _ in rx {});
        let settings =
            JournalSettings { durability, batch_interval: Duration::from_millis(5), commit_delay: Duration::ZERO, segment_bytes: 64 << 20 };
        let journal = Journal::start(dir.path(), 0, settings, tx, Arc::new(Metrics::new())).expect("journal starts");
        let mut n = 0;
        g.bench_function(BenchmarkId::new("append", name), |b| {
            b.iter(|| {
                n += 1;
                sys.block_on(journal.append(queued_record(n))).expect("appended")
            })
        });
        sys.block_on(journal.stop()).expect("journal stops");
        drop(journal);
        drain.join().expect("drain thread");
    }
    g.bench_function("encode_in_memory_baseline", |b| {
        let rec = queued_record(1);
        b.iter(|| serde_json::to_vec(black_box(&*rec)).expect("encodes"))
    });
    g.finish();
}

fn snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_10k_brokers");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let mut state = EngineState::default();
    state.seq = 1;
    for i in 0..10_000 {
        let b = broker(i);
        state.brokers.insert(b.id.clone(), BrokerEntry { broker: b, live: BrokerLive::default() });
    }
    let ids: HashSet<String> = state.brokers.keys().cloned().collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = SnapshotStore::open(&dir.path().join("snap")).expect("sled opens");
    g.bench_function("write", |b| b.iter(|| store.save(&state, &ids, &HashSet::new()).expect("saved")));
    g.bench_function("restore", |b| {
        b.iter(|| {
            let (_, s) = store.load().expect("loads").expect("a snapshot");
            assert_eq!(s.brokers.len(), 10_000);
            s
        })
    });
    g.bench_function("encode_in_memory_baseline", |b| {
        b.iter(|| state.brokers.values().map(|e| serde_json::to_vec(e).expect("encodes")).collect::<Vec<_>>())
    });
    g.finish();
}

fn snapshot_leads(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_10k_leads");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let state = decided_leads(10_000);
    let ids: HashSet<String> = state.leads.keys().cloned().collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = SnapshotStore::open(&dir.path().join("snap")).expect("sled opens");
    g.bench_function("write", |b| b.iter(|| store.save(&state, &HashSet::new(), &ids).expect("saved")));
    g.bench_function("restore", |b| {
        b.iter(|| {
            let (_, s) = store.load().expect("loads").expect("a snapshot");
            assert_eq!(s.leads.len(), 10_000);
            s
        })
    });
    let plain = sled::open(dir.path().join("plain")).expect("sled opens");
    g.bench_function("one_sled_batch_baseline", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for id in &ids {
                batch.insert(format!("lead/{id}").as_bytes(), serde_json::to_vec(&state.leads[id]).expect("encodes"));
            }
            plain.apply_batch(batch).expect("written");
            plain.flush().expect("flushed")
        })
    });
    g.bench_function("encode_in_memory_baseline", |b| {
        b.iter(|| ids.iter().map(|id| serde_json::to_vec(&state.leads[id]).expect("encodes")).collect::<Vec<_>>())
    });
    g.finish();
}

/// `n` leads decided by an engine (100 brokers, durability `none`), as its journal has them.
fn decided_leads(n: u64) -> EngineState {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = Overrides { port: Some(0), data_dir: Some(dir.path().to_path_buf()), no_demo: true, ..Overrides::default() };
    let mut cfg = Config::load(None, std::iter::empty::<(String, String)>(), &o).expect("config");
    cfg.storage.durability = Durability::None;
    cfg.semantic.enabled = false;
    actix_rt::System::new().block_on(async {
        let e = Engine::start_embedded(cfg.engine(), Vec::new()).await.expect("engine");
        for i in 0..100 {
            e.router().create_broker(broker(i)).await.expect("broker");
        }
        for i in 0..n {
            e.router().decide(lead(i)).await.expect("decided");
        }
        e.shutdown().await.expect("shutdown");
    });
    let mut state = EngineState::default();
    leadrouter_actors::storage::journal::read_all(&journal_dir(dir.path()), |seq, rec| state.apply(seq, &rec)).expect("journal");
    assert_eq!(state.leads.len() as u64, n);
    state
}

fn filter(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter");
    let zones = ["America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York"];
    let profiles: Vec<BrokerProfile> = (0..1_000)
        .map(|i| {
            let mut b = broker(i);
            b.schedule = Some(
                serde_json::from_value(serde_json::json!({"timezone": zones[i % zones.len()],
                    "hours": {"mon": ["00:00", "24:00"], "tue": ["00:00", "24:00"], "wed": ["00:00", "24:00"], "thu": ["00:00", "24:00"],
                              "fri": ["00:00", "24:00"], "sat": ["00:00", "24:00"], "sun": ["00:00", "24:00"]}}))
                .expect("schedule"),
            );
            b.profile()
        })
        .collect();
    let features = lead(0).features();
    let now = Utc::now();
    // Every broker works around the clock in its zone, so all 1,000 pass and both variants do the
    // same checks.
    assert_eq!(profiles.iter().filter(|p| p.static_eligibility(&features, now).is_ok()).count(), profiles.len());
    g.bench_function("static_checks_1000_shared_clock", |b| {
        b.iter(|| {
            let mut clock = LocalClock::default();
            profiles.iter().filter(|p| p.static_eligibility_at(&features, now, &mut clock).is_ok()).count()
        })
    });
    g.bench_function("static_checks_1000_per_broker_baseline", |b| {
        b.iter(|| profiles.iter().filter(|p| p.static_eligibility(&features, now).is_ok()).count())
    });
    g.finish();
}

fn experiment_analysis(c: &mut Criterion) {
    use leadrouter_models::experiment::{analysis, analyze, ArmTotals, Definition};
    let def: Definition = leadrouter::api::experiments::parse_definition(
        br#"{"id": "big", "name": "big", "guardrailMetrics": ["sla_compliance", "first_contact_minutes"],
             "arms": [{"name": "a", "strategy": "specialty", "allocation": 0.5}, {"name": "b", "strategy": "ml", "allocation": 0.5}]}"#,
    )
    .expect("definition");
    let started = std::time::Instant::now();
    let mut totals = vec![ArmTotals::default(), ArmTotals::default()];
    let mut rng = leadrouter_models::rng::SplitMix64::new(7);
    for i in 0..1_000_000u64 {
        let arm = (i % 2) as usize;
        for t in totals.iter_mut() {
            t.expected += 0.5;
        }
        let t = &mut totals[arm];
        t.expose(0.5);
        let minutes = 60.0 * rng.next_f64();
        t.contact(minutes, minutes <= 30.0);
        if rng.next_f64() < 0.10 + 0.01 * arm as f64 {
            t.convert(0.5, 1000.0 * rng.next_f64(), 0.0, true);
        }
    }
    println!("experiment_analysis: 1,000,000 exposures folded into totals in {:?}", started.elapsed());
    let mut g = c.benchmark_group("experiment_analysis");
    g.bench_function("analyze_1m_exposures", |b| b.iter(|| analyze(&def, &totals, Some(14.0))));
    g.bench_function("summaries_baseline", |b| b.iter(|| analysis::summaries(&def, &totals, 1_000_000)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = scoring, scatter_gather, journal_append, snapshot, snapshot_leads, filter, experiment_analysis, exploration
}
criterion_main!(benches);
