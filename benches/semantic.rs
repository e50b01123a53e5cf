//! Semantic matching costs: the local sentence encoder on one ~20-token text and on a batch of
//! 32 (when `scripts/fetch-embedding-model` has installed it), and the in-process vector index's
//! filtered search over 10,000 broker profile vectors of 384 dimensions against the same search
//! without a filter. Figures in PERFORMANCE.md.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
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

criterion_group!(benches, encoder, index);
criterion_main!(benches);
