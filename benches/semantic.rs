//! Semantic matching costs: the local sentence encoder on one ~20-token text and on a batch of
//! 32 (when `scripts/fetch-embedding-model` has installed it), and the in-process vector index's
//! filtered search over 10,000 broker profile vectors of 384 dimensions against the same search
//! without a filter.
//!
//! In-process decisions (1,000 brokers, actors on the bench's thread, as `decide`'s
//! `engine_decide_embedded`): a lead without notes with semantic matching off (the baseline), a
//! lead whose text's vector and neighbours are cached, and (`retrieval`) a lead with notes among
//! 10,000 and 50,000 brokers with vector retrieval of the 200 nearest before the pre-rank
//! against the same lead with retrieval off (structured 32-dimension vectors: embedding 50,000
//! profiles with the sentence encoder would take the bench minutes).
//!
//! Figures in PERFORMANCE.md. Run it as the server runs candle, on one thread:
//! `RAYON_NUM_THREADS=1 cargo bench --bench semantic`.

use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use leadrouter::{Config, Overrides};
use leadrouter_actors::config::EncoderKind;
use leadrouter_actors::{Durability, Engine};

#[allow(dead_code)]
mod common;
use leadrouter_actors::semantic::index::{Filter, Payload, Point};
use leadrouter_actors::semantic::{BertEncoder, Collection, MemoryIndex, TextEncoder, VectorIndex};
use leadrouter_models::rng::SplitMix64;
use leadrouter_models::{geo::US_STATES, InsuranceLine, LineSet, StateCode};

const TEXT: &str = "fleet of 12 delivery vans, two drivers under 25, prior claim in 2024";

fn encoder(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("var/models/all-minilm-l6-v2");
    let Ok(enc) = BertEncoder::load(&dir) else {
        eprintln!("encoder benchmarks skipped: run scripts/fetch-embedding-model");
        return;
    };
    let mut g = c.benchmark_group("encoder");
    g.sample_size(20);
    g.bench_function("one_text", |b| b.iter(|| enc.encode(&[TEXT]).unwrap()));
    let batch: Vec<String> = (0..32).map(|i| format!("{TEXT}, quote {i}")).collect();
    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    g.bench_function("batch_of_32", |b| b.iter(|| enc.encode(&refs).unwrap()));
    g.finish();
}

fn index(c: &mut Criterion) {
    let mut r = SplitMix64::new(3);
    let mut unit = |dim: usize| {
        let mut v: Vec<f32> = (0..dim).map(|_| r.next_f64() as f32 - 0.5).collect();
        leadrouter_models::semantic::normalize(&mut v);
        v
    };
    let idx = MemoryIndex::new(1);
    let points: Vec<Point> = (0..10_000)
        .map(|i| Point {
            id: format!("b{i}"),
            vector: unit(384),
            payload: Payload {
                states: vec![StateCode::of(US_STATES[i % US_STATES.len()]).0, StateCode::of(US_STATES[(i * 7) % US_STATES.len()]).0],
                lines: LineSet::of(&[InsuranceLine::Auto, InsuranceLine::Home]).0,
                ..Payload::default()
            },
        })
        .collect();
    idx.upsert(Collection::Brokers, points).unwrap();
    let q = unit(384);
    let tx = Filter { state: Some(StateCode::of("TX")), lines_all: LineSet::of(&[InsuranceLine::Auto]), ..Filter::default() };
    let mut g = c.benchmark_group("index_10000_brokers_384d");
    g.bench_function("top10_state_filter", |b| b.iter(|| idx.search(Collection::Brokers, &q, &tx, 10).unwrap()));
    g.bench_function("top10_no_filter", |b| b.iter(|| idx.search(Collection::Brokers, &q, &Filter::default(), 10).unwrap()));
    g.finish();
}

/// An embedded engine with `n` brokers, semantic settings from `tweak`, every profile embedded.
fn engine(sys: &actix_rt::SystemRunner, n: usize, tweak: impl FnOnce(&mut Config)) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = Overrides { port: Some(0), data_dir: Some(dir.path().to_path_buf()), no_demo: true, ..Overrides::default() };
    let mut cfg = Config::load(None, std::env::vars(), &o).expect("config");
    cfg.storage.durability = Durability::None;
    cfg.semantic.model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("var/models/all-minilm-l6-v2");
    tweak(&mut cfg);
    let e = sys.block_on(async {
        let e = Engine::start_embedded(cfg.engine(), Vec::new()).await.expect("engine");
        for i in 0..n {
            e.router().create_broker(common::broker(i)).await.expect("broker");
        }
        e
    });
    if e.router().config().semantic.enabled {
        while e.router().semantic().stats().collections.brokers < n || e.router().semantic().stats().refreshing {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    (e, dir)
}

fn noted(n: u64) -> leadrouter_models::DecideRequest {
    let mut l = common::lead(n);
    l.lead_data.notes = Some(TEXT.into());
    l
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("semantic_decide");
    let next = AtomicU64::new(0);
    let sys = actix_rt::System::new();
    let run = |g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
               name: &str,
               n: usize,
               notes: bool,
               tweak: &dyn Fn(&mut Config)| {
        let (e, _dir) = engine(&sys, n, tweak);
        let router = e.router().clone();
        if notes {
            // The text's vector and neighbours, cached before the samples.
            sys.block_on(router.decide(noted(u64::MAX))).expect("decided");
        }
        g.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                sys.block_on(router.decide(if notes { noted(i) } else { common::lead(i) })).expect("decided")
            })
        });
        sys.block_on(e.shutdown()).expect("shutdown");
    };
    if std::env::var_os("SEMANTIC_BENCH_RETRIEVAL_ONLY").is_none() {
        run(&mut g, "engine_decide_embedded_semantic_off", 1000, false, &|c| c.semantic.enabled = false);
        run(&mut g, "engine_decide_embedded_cached_notes", 1000, true, &|_| {});
    }
    for n in [10_000, 50_000] {
        let structured = |c: &mut Config, threshold: usize| {
            c.semantic.encoder = EncoderKind::Structured;
            c.semantic.retrieval_threshold = threshold;
        };
        run(&mut g, "retrieval_off", n, true, &|c| structured(c, 0));
        run(&mut g, "retrieval_200_nearest", n, true, &|c| structured(c, 5000));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = encoder, index, decisions
}
criterion_main!(benches);
