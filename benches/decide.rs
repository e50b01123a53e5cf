//! Criterion: one in-process decision (index filter, pre-rank, scatter-gather to the top K,
//! combine, reserve, journal append with durability `none`) with 100, 1,000 and 10,000
//! brokers, beside two baselines from the same run: a plain loop over a `Vec` of the same
//! brokers' profiles doing the hard constraints and the specialty score, and the fixed cost of
//! entering the actor runtime (`block_on` of an empty future), which every engine sample pays.
//! `engine_predict` routes without reserving or journaling, to show where the time goes.
//!
//! Two placements of the broker actors: `engine_decide` has them on an arbiter thread of their
//! own and asks from another thread, as the server's HTTP workers do; `engine_decide_embedded`
//! has them on the bench's own thread (`Engine::start_embedded`, as the simulator runs them), so
//! no step leaves that thread.
//!
//! With its actors on their own thread, a decision waits on three hand-offs the design asks for:
//! the scatter to the brokers' arbiter, `Reserve` on the winner's actor, and the append on the
//! journal writer's thread. The `handoff` group measures one empty round trip of each kind from
//! the same caller, the floor those three steps cannot go below.
//!
//! `engine_decide_embedded_3_experiments` (1,000 brokers) is the embedded decision with three
//! experiments running in one layer, each taking a third of the traffic: every lead is hashed
//! against them, exposed to one and routed by its arm, the exposure logged in the decision and
//! counted by the book on the snapshotter's thread. Their arms route as the default does
//! (`specialty` with its configured weights), so the difference from `engine_decide_embedded` of
//! the same run is what the experiments cost, not a different routing.
//!
//! `engine_decide_embedded_ml` and `engine_decide_embedded_roi` (1,000 brokers) are the embedded
//! decision under strategies `ml` and `roi`, in the same run: what `roi`'s evidence and net-value
//! terms cost beside `ml`'s seed formula.
//!
//! Run: `cargo bench --bench decide`.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use actix::{Actor, Arbiter, Context, Handler, Message};

use actix_rt::SystemRunner;
use chrono::Utc;
use common::{broker, lead};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use leadrouter::{Config, Overrides};
use leadrouter_actors::{Durability, Engine, RouterSupervisor};
use leadrouter_models::Strategy;

fn decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    g.sample_size(50);
    let next = AtomicU64::new(0);
    for n in [100usize, 1_000, 10_000] {
        let sys = actix_rt::System::new();
        let (engine, _dir) = start_engine(&sys, n, false);
        let router = engine.router().clone();
        bench_decide(&mut g, BenchmarkId::new("engine_decide", n), &sys, &router, &next);
        // The same routing without the reservation, the journal and the lead record.
        g.bench_function(BenchmarkId::new("engine_predict", n), |b| {
            b.iter(|| sys.block_on(router.predict(lead(0), Default::default())).expect("predicted"))
        });
        g.bench_function(BenchmarkId::new("runtime_entry_baseline", n), |b| b.iter(|| sys.block_on(async { black_box(1) })));
        let profiles: Vec<_> = (0..n).map(|i| broker(i).profile()).collect();
        let features = lead(0).features();
        g.bench_function(BenchmarkId::new("plain_vec_scan_baseline", n), |b| {
            b.iter(|| {
                let now = Utc::now();
                profiles
                    .iter()
                    .filter(|p| p.static_eligibility(&features, now).is_ok())
                    .map(|p| (p.specialty_score(features.lines), &p.id))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(s, id)| (s, id.clone()))
            })
        });
        sys.block_on(engine.shutdown()).expect("shutdown");
        let (embedded, _dir) = start_engine(&sys, n, true);
        let router = embedded.router().clone();
        bench_decide(&mut g, BenchmarkId::new("engine_decide_embedded", n), &sys, &router, &next);
        sys.block_on(embedded.shutdown()).expect("shutdown");
        if n == 1_000 {
            // `ml` and `roi` side by side in one run (no model active: both use their own
            // estimates; a model adds the same batched forward pass to each, `benches/forward.rs`).
            for strategy in [Strategy::Ml, Strategy::Roi] {
                let (embedded, _dir) = start_engine(&sys, n, true);
                let router = embedded.router().clone();
                let id = BenchmarkId::new(format!("engine_decide_embedded_{}", strategy.name()), n);
                g.bench_function(id, |b| {
                    b.iter(|| {
                        let mut req = lead(next.fetch_add(1, Ordering::Relaxed));
                        req.strategy = Some(strategy);
                        sys.block_on(router.decide(req)).expect("decided")
                    })
                });
                sys.block_on(embedded.shutdown()).expect("shutdown");
            }
            let (embedded, _dir) = start_engine(&sys, n, true);
            let router = embedded.router().clone();
            start_experiments(&sys, &router);
            bench_decide(&mut g, BenchmarkId::new("engine_decide_embedded_3_experiments", n), &sys, &router, &next);
            sys.block_on(embedded.shutdown()).expect("shutdown");
        }
    }
    g.finish();
}

/// Times one decision of a new lead (ids from `next`).
fn bench_decide(g: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId, sys: &SystemRunner, router: &RouterSupervisor, next: &AtomicU64) {
    g.bench_function(id, |b| {
        b.iter(|| {
            let req = lead(next.fetch_add(1, Ordering::Relaxed));
            sys.block_on(router.decide(req)).expect("decided")
        })
    });
}

/// An engine with `n` brokers and journal durability `none`, its data in the temporary folder
/// returned beside it; with `embedded`, its broker actors on this thread.
fn start_engine(sys: &SystemRunner, n: usize, embedded: bool) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = Overrides { port: Some(0), data_dir: Some(dir.path().to_path_buf()), no_demo: true, ..Overrides::default() };
    // LEADROUTER__* variables apply, as for the server (e.g. LEADROUTER__ROUTING__ARBITERS=1).
    let mut cfg = Config::load(None, std::env::vars(), &o).expect("config");
    cfg.storage.durability = Durability::None;
    // The leads carry no notes: no semantic terms to measure, and the brokers' profiles would
    // be embedded on another thread while the benchmark runs.
    cfg.semantic.enabled = false;
    let engine = sys.block_on(async {
        let started =
            if embedded { Engine::start_embedded(cfg.engine(), Vec::new()).await } else { Engine::start(cfg.engine(), Vec::new()).await };
        let e = started.expect("engine");
        for i in 0..n {
            e.router().create_broker(broker(i)).await.expect("broker");
        }
        e
    });
    (engine, dir)
}

/// Three running experiments of one layer, a third of the traffic each.
fn start_experiments(sys: &SystemRunner, router: &RouterSupervisor) {
    for i in 0..3 {
        let json = format!(
            r#"{{"id": "e{i}", "name": "e{i}", "start": true, "trafficAllocation": {share},
                "arms": [{{"name": "a", "strategy": "specialty", "allocation": 0.5}},
                         {{"name": "b", "strategy": "specialty", "allocation": 0.5}}]}}"#,
            share = if i < 2 { 0.333 } else { 0.334 }
        );
        let def = leadrouter::api::experiments::parse_definition(json.as_bytes()).expect("definition");
        sys.block_on(router.create_experiment(def, true)).expect("experiment");
    }
}

/// An actor that answers at once.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

/// An empty request to [`Echo`].
#[derive(Message)]
#[rtype(result = "()")]
struct Ping;

impl Handler<Ping> for Echo {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    let sys = actix_rt::System::new();
    // Like a broker actor: on an arbiter of its own, asked from the caller's runtime.
    let arbiter = Arbiter::new();
    let echo = sys.block_on(async { Echo::start_in_arbiter(&arbiter.handle(), |_| Echo) });
    g.bench_function("actor_round_trip", |b| b.iter(|| sys.block_on(echo.send(Ping)).expect("answered")));
    // Like the journal writer: a plain thread blocked on a channel, answering on a oneshot.
    let (tx, rx) = mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
    let writer = std::thread::spawn(move || {
        while let Ok(done) = rx.recv() {
            let _ = done.send(());
        }
    });
    g.bench_function("thread_round_trip", |b| {
        b.iter(|| {
            let (done, wait) = tokio::sync::oneshot::channel();
            tx.send(done).expect("writer running");
            sys.block_on(wait).expect("answered")
        })
    });
    g.bench_function("runtime_entry_baseline", |b| b.iter(|| sys.block_on(async { black_box(1) })));
    drop(tx);
    writer.join().expect("writer stopped");
    arbiter.stop();
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = decide, handoff
}
criterion_main!(benches);
