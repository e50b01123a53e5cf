//! The conversion network: an MLP (inputs → 64 → 32 → 1, ReLU, sigmoid output) in candle-nn that
//! predicts P(convert | lead, broker); AdamW training with early stopping on validation log
//! loss; weights as safetensors bytes (the caller does the file IO). A network reads the first
//! `inputs` columns of a feature row: 38 for feature spec version 2, 34 for a model trained with
//! version 1 (whose columns are a prefix of version 2's).
//!
//! Inference is meant to run single-threaded: candle's matmul parallelism follows
//! `RAYON_NUM_THREADS`, which `leadrouter serve` sets to 1 (a pool is many times slower for the
//! small batches of one decision).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{linear, AdamW, Linear, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::features::{FeatureRow, N_FEATURES};
use crate::metrics::{log_loss, EPS};
use crate::rng::SplitMix64;

/// Hidden layer widths.
pub const HIDDEN: [usize; 2] = [64, 32];

/// The network and its weights.
pub struct ConversionModel {
    inputs: usize,
    varmap: VarMap,
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl std::fmt::Debug for ConversionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversionModel").field("layers", &[self.inputs, HIDDEN[0], HIDDEN[1], 1]).finish()
    }
}

fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl ConversionModel {
    /// A fresh network over every feature, with He-uniform weights drawn from `seed` and zero
    /// biases.
    pub fn new(seed: u64) -> Result<Self> {
        Self::with_inputs(seed, N_FEATURES)
    }

    /// A fresh network reading the first `inputs` columns of a row (1 to [`N_FEATURES`]).
    pub fn with_inputs(seed: u64, inputs: usize) -> Result<Self> {
        if !(1..=N_FEATURES).contains(&inputs) {
            return Err(ModelError::Network(format!("a network reads 1 to {N_FEATURES} features, not {inputs}")));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let l1 = linear(inputs, HIDDEN[0], vb.pp("l1"))?;
        let l2 = linear(HIDDEN[0], HIDDEN[1], vb.pp("l2"))?;
        let l3 = linear(HIDDEN[1], 1, vb.pp("l3"))?;
        let mut rng = SplitMix64::new(seed);
        for (name, var) in sorted_vars(&varmap) {
            let shape = var.shape().clone();
            let n = shape.elem_count();
            let values: Vec<f32> = if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                let bound = (6.0 / shape.dims()[1] as f64).sqrt();
                (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect()
            };
            var.set(&Tensor::from_vec(values, shape, &Device::Cpu)?)?;
        }
        Ok(Self { inputs, varmap, l1, l2, l3 })
    }

    /// How many leading columns of a row the network reads.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.l1.forward(x)?.relu()?;
        let h = self.l2.forward(&h)?.relu()?;
        self.l3.forward(&h)
    }

    fn rows_tensor(&self, rows: &[FeatureRow]) -> Result<Tensor> {
        let flat: Vec<f32> = rows.iter().flat_map(|r| &r[..self.inputs]).copied().collect();
        Ok(Tensor::from_vec(flat, (rows.len(), self.inputs), &Device::Cpu)?)
    }

    /// P(convert) for each row, in one batched forward pass.
    pub fn predict(&self, rows: &[FeatureRow]) -> Result<Vec<f32>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let p = candle_nn::ops::sigmoid(&self.logits(&self.rows_tensor(rows)?)?)?;
        Ok(p.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The weights as a safetensors file's bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, Tensor)> = sorted_vars(&self.varmap).into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
        Ok(safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), None)?)
    }

    /// A network with the weights from safetensors bytes (every tensor must be present with
    /// the right shape); its input width is the first layer's.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let loaded = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let inputs = match loaded.get("l1.weight").map(|t| t.dims().to_vec()) {
            Some(d) if d.len() == 2 => d[1],
            _ => return Err(ModelError::Network("weights file lacks tensor l1.weight of rank 2".into())),
        };
        let model = Self::with_inputs(0, inputs)?;
        for (name, var) in sorted_vars(&model.varmap) {
            let t = loaded.get(&name).ok_or_else(|| ModelError::Network(format!("weights file lacks tensor {name}")))?;
            if t.shape() != var.shape() {
                return Err(ModelError::Network(format!("tensor {name} has shape {:?}, expected {:?}", t.shape(), var.shape())));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(model)
    }
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainConfig {
    /// Most passes over the training rows.
    pub max_epochs: usize,
    /// Rows per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Leading feature columns the network reads ([`N_FEATURES`]: the current spec).
    #[serde(default = "all_features")]
    pub inputs: usize,
}

fn all_features() -> usize {
    N_FEATURES
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { max_epochs: 60, batch_size: 256, learning_rate: 3e-3, weight_decay: 1e-4, patience: 6, seed: 17, inputs: N_FEATURES }
    }
}

/// One epoch's losses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training log loss.
    pub train_loss: f64,
    /// Validation log loss.
    pub valid_loss: f64,
}

/// How training went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainReport {
    /// Epochs run.
    pub epochs_run: usize,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Its validation log loss.
    pub best_valid_loss: f64,
    /// Every epoch.
    pub history: Vec<Epoch>,
}

/// A labelled row.
pub type Example = (FeatureRow, bool);

/// Trains a fresh network on `train`, stopping early on `valid` log loss and keeping the best
/// epoch's weights. `progress` sees each epoch and may return false to stop.
pub fn train(
    train: &[Example],
    valid: &[Example],
    cfg: &TrainConfig,
    mut progress: impl FnMut(&Epoch) -> bool,
) -> Result<(ConversionModel, TrainReport)> {
    if train.is_empty() || valid.is_empty() {
        return Err(ModelError::NotEnoughData("training and validation sets must both be non-empty".into()));
    }
    let model = ConversionModel::with_inputs(cfg.seed, cfg.inputs)?;
    let mut opt = AdamW::new(
        model.varmap.all_vars(),
        ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..ParamsAdamW::default() },
    )?;
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5eed);
    let valid_rows: Vec<FeatureRow> = valid.iter().map(|e| e.0).collect();
    let valid_y: Vec<bool> = valid.iter().map(|e| e.1).collect();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut best = (f64::INFINITY, 0usize, model.to_safetensors()?);
    let mut history = Vec::new();
    for epoch in 1..=cfg.max_epochs {
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let rows: Vec<FeatureRow> = chunk.iter().map(|&i| train[i].0).collect();
            let y: Vec<f32> = chunk.iter().map(|&i| f32::from(u8::from(train[i].1))).collect();
            let x = model.rows_tensor(&rows)?;
            let y = Tensor::from_vec(y, (chunk.len(), 1), &Device::Cpu)?;
            // Hand-written binary cross-entropy on a clamped sigmoid: numerically safe.
            let p = candle_nn::ops::sigmoid(&model.logits(&x)?)?.clamp(EPS as f32, 1.0 - EPS as f32)?;
            let one = Tensor::ones_like(&y)?;
            let ll = ((&y * p.log()?)? + ((&one - &y)? * (&one - &p)?.log()?)?)?;
            let loss = ll.neg()?.mean_all()?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        let pv: Vec<f64> = model.predict(&valid_rows)?.into_iter().map(f64::from).collect();
        let e = Epoch { epoch, train_loss: loss_sum / train.len() as f64, valid_loss: log_loss(&valid_y, &pv) };
        if !e.valid_loss.is_finite() || !e.train_loss.is_finite() {
            return Err(ModelError::Network(format!("loss became {} at epoch {epoch}", e.train_loss)));
        }
        let improved = e.valid_loss < best.0 - 1e-6;
        if improved {
            best = (e.valid_loss, epoch, model.to_safetensors()?);
        }
        let go_on = progress(&e);
        history.push(e);
        if !go_on || epoch - best.1 >= cfg.patience {
            break;
        }
    }
    let kept = ConversionModel::from_safetensors(&best.2)?;
    Ok((kept, TrainReport { epochs_run: history.len(), best_epoch: best.1, best_valid_loss: best.0, history }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::auc;

    fn rows(n: usize, seed: u64) -> Vec<FeatureRow> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| std::array::from_fn(|_| rng.next_f64() as f32)).collect()
    }

    #[test]
    fn save_load_round_trip_gives_identical_predictions() {
        let m = ConversionModel::new(3).unwrap();
        let x = rows(50, 1);
        let bytes = m.to_safetensors().unwrap();
        let back = ConversionModel::from_safetensors(&bytes).unwrap();
        assert_eq!(m.predict(&x).unwrap(), back.predict(&x).unwrap());
        assert!(ConversionModel::from_safetensors(b"not safetensors").is_err());
        // A version-1 network (34 inputs) reads the prefix of the same rows.
        let v1 = ConversionModel::with_inputs(3, 34).unwrap();
        let back = ConversionModel::from_safetensors(&v1.to_safetensors().unwrap()).unwrap();
        assert_eq!(back.inputs(), 34);
        let mut y = x.clone();
        y.iter_mut().for_each(|r| r[34..].fill(0.5));
        assert_eq!(back.predict(&x).unwrap(), back.predict(&y).unwrap());
        assert_ne!(m.predict(&x).unwrap(), m.predict(&y).unwrap());
    }

    #[test]
    fn initialisation_is_reproducible_from_the_seed() {
        let x = rows(5, 2);
        assert_eq!(ConversionModel::new(9).unwrap().predict(&x).unwrap(), ConversionModel::new(9).unwrap().predict(&x).unwrap());
        assert_ne!(ConversionModel::new(9).unwrap().predict(&x).unwrap(), ConversionModel::new(10).unwrap().predict(&x).unwrap());
    }

    #[test]
    fn learns_an_interaction_a_linear_rate_cannot_see() {
        // Label depends on the XOR-like interaction of two features; each alone is useless.
        let mut rng = SplitMix64::new(5);
        let mut make = |n| -> Vec<Example> {
            rows(n, rng.next_u64())
                .into_iter()
                .map(|r| {
                    let p = if (r[0] > 0.5) == (r[1] > 0.5) { 0.8 } else { 0.1 };
                    (r, rng.next_f64() < p)
                })
                .collect()
        };
        let (tr, va) = (make(4000), make(1000));
        let cfg = TrainConfig { max_epochs: 40, ..TrainConfig::default() };
        let (m, report) = train(&tr, &va, &cfg, |_| true).unwrap();
        let p: Vec<f64> = m.predict(&va.iter().map(|e| e.0).collect::<Vec<_>>()).unwrap().into_iter().map(f64::from).collect();
        let y: Vec<bool> = va.iter().map(|e| e.1).collect();
        let a = auc(&y, &p).unwrap();
        assert!(a > 0.75, "auc {a}, report {report:?}");
        assert!(report.best_epoch >= 1 && report.history.len() == report.epochs_run);
    }
}
