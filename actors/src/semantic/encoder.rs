//! Text encoders: the trait every provider implements, and the local sentence encoder
//! all-MiniLM-L6-v2 run in candle (BERT, mean pooling over the attention mask, L2-normalised;
//! 384 dimensions). Other providers (an OpenAI-compatible endpoint) live with the HTTP code in
//! the server crate and plug in through [`TextEncoder`].

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{ActorError, Result};

/// Turns texts into unit vectors of one dimension.
pub trait TextEncoder: Send + Sync {
    /// The model's name, reported by the API and stored with the vectors.
    fn model(&self) -> &str;
    /// The vectors' dimension.
    fn dim(&self) -> usize;
    /// One unit vector per text, in order.
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// Longest input in tokens; longer texts are cut (the model was trained on 256 at most).
pub const MAX_TOKENS: usize = 256;

/// The files the local encoder needs in its directory.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// all-MiniLM-L6-v2 in candle.
pub struct BertEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    name: String,
    dim: usize,
}

fn embedding_err(what: &str, e: impl std::fmt::Display) -> ActorError {
    ActorError::Embedding(format!("{what}: {e}"))
}

impl BertEncoder {
    /// Loads the encoder from `dir` (the files of [`MODEL_FILES`]). The tokenizer's own padding
    /// and truncation (fixed at 128) are replaced by batch-longest padding and [`MAX_TOKENS`],
    /// so a short text pays for its own length only.
    pub fn load(dir: &Path) -> Result<Self> {
        for f in MODEL_FILES {
            if !dir.join(f).is_file() {
                return Err(ActorError::Embedding(format!("{} is missing", dir.join(f).display())));
            }
        }
        let config: BertConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| embedding_err("tokenizer.json", e))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..PaddingParams::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..TruncationParams::default() }))
            .map_err(|e| embedding_err("tokenizer truncation", e))?;
        // The buffered loader: memory-mapping the weights would need `unsafe`.
        let weights = std::fs::read(dir.join("model.safetensors"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).map_err(|e| embedding_err("weights", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| embedding_err("weights", e))?;
        Ok(Self { model, tokenizer, name: "all-MiniLM-L6-v2".into(), dim: config.hidden_size })
    }

    fn forward(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(candle_core::Error::wrap)?;
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let n = enc.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &enc {
            ids.extend(e.get_ids().iter().copied());
            mask.extend(e.get_attention_mask().iter().copied());
        }
        let dev = &Device::Cpu;
        let ids = Tensor::from_vec(ids, (n, len), dev)?;
        let mask = Tensor::from_vec(mask, (n, len), dev)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens only.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let mut out = mean.to_vec2::<f32>()?;
        out.iter_mut().for_each(|v| leadrouter_models::semantic::normalize(v));
        Ok(out)
    }
}

impl TextEncoder for BertEncoder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(texts).map_err(|e| embedding_err("forward pass", e))
    }
}
