//! Criterion: the conversion network's forward pass for batches of 1, 32 and 256 on one thread,
//! beside the empirical-Bayes estimate it replaces (the same-run baseline) and the same pass on
//! a two-thread rayon pool (why serving pins one thread). Candle reads `RAYON_NUM_THREADS` at
//! every matmul, so both run in one process.
//!
//! Run: `cargo bench --bench forward`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use leadrouter_models::rng::SplitMix64;
use leadrouter_models::{features, BrokerFeatures, ConversionModel, FeatureRow, InsuranceLine, LeadFeatures, LineSet, Prior, Urgency};

fn rows(n: usize, rng: &mut SplitMix64) -> Vec<FeatureRow> {
    (0..n)
        .map(|_| {
            let lead = LeadFeatures {
                lines: LineSet::of(&[InsuranceLine::ALL[rng.below(7)]]),
                urgency: [Urgency::Low, Urgency::Medium, Urgency::High, Urgency::Critical][rng.below(4)],
                value: rng.next_f64() * 50_000.0,
                complexity: 1 + rng.below(10) as u8,
                ..LeadFeatures::default()
            };
            let b = BrokerFeatures {
                proficiency: std::array::from_fn(|_| rng.below(6) as u8),
                licensed: lead.lines,
                tenure_days: rng.next_f64() as f32 * 900.0,
                conversion: rng.next_f64() as f32 * 0.3,
                recent_conversion: rng.next_f64() as f32 * 0.3,
                sla_compliance: 0.8 + rng.next_f64() as f32 * 0.2,
                utilization: rng.next_f64() as f32,
                state_leads: rng.below(500) as u32,
                state_conversion: rng.next_f64() as f32 * 0.3,
                line_leads: rng.below(500) as u32,
                line_conversion: rng.next_f64() as f32 * 0.3,
            };
            features::build(&lead, &b, None)
        })
        .collect()
}

fn conversion_estimate(c: &mut Criterion) {
    // As `leadrouter serve` does: candle's matmul on the calling thread.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let model = ConversionModel::new(1).expect("model");
    let prior = Prior { mean: 0.1, strength: 20.0 };
    let mut rng = SplitMix64::new(7);
    let mut g = c.benchmark_group("conversion_estimate");
    for n in [1usize, 32, 256] {
        let x = rows(n, &mut rng);
        let counts: Vec<(f64, f64)> = (0..n).map(|_| (rng.below(50) as f64, 50.0 + rng.below(400) as f64)).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("candle_mlp", n), &x, |b, x| b.iter(|| model.predict(black_box(x)).expect("predict")));
        std::env::set_var("RAYON_NUM_THREADS", "2");
        g.bench_with_input(BenchmarkId::new("candle_mlp_two_threads", n), &x, |b, x| {
            b.iter(|| model.predict(black_box(x)).expect("predict"))
        });
        std::env::set_var("RAYON_NUM_THREADS", "1");
        g.bench_with_input(BenchmarkId::new("empirical_bayes_baseline", n), &counts, |b, c| {
            b.iter(|| black_box(c).iter().map(|&(s, t)| prior.smooth(s, t)).collect::<Vec<f64>>())
        });
    }
    g.finish();
}

criterion_group!(benches, conversion_estimate);
criterion_main!(benches);
