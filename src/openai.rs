//! The `openai` text encoder: any OpenAI-compatible `POST /v1/embeddings` endpoint (ada-002 or
//! another model), called from the semantic worker thread with a blocking client. The key comes
//! from `openai.api_key` or `OPENAI_API_KEY` and is never logged; an answer whose vectors are not
//! of the configured dimension is an error naming both.

use std::time::Duration;

use leadrouter_actors::semantic::TextEncoder;
use leadrouter_actors::{ActorError, Result};
use serde::Deserialize;

use crate::config::OpenAiConfig;

/// The client.
pub struct OpenAiEncoder {
    agent: ureq::Agent,
    url: String,
    model: String,
    dimension: usize,
    key: String,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEncoder {
    /// A client for `cfg`; the key from the config or, when empty, `env_key` (`OPENAI_API_KEY`).
    pub fn new(cfg: &OpenAiConfig, env_key: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
            .http_status_as_error(false)
            .build()
            .into();
        let key = if cfg.api_key.is_empty() { env_key.unwrap_or_default() } else { cfg.api_key.clone() };
        Self { agent, url: cfg.url.clone(), model: cfg.model.clone(), dimension: cfg.dimension, key }
    }
}

fn err(e: impl std::fmt::Display) -> ActorError {
    ActorError::Embedding(format!("openai endpoint: {e}"))
}

impl TextEncoder for OpenAiEncoder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dim(&self) -> usize {
        self.dimension
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::json!({ "model": self.model, "input": texts }).to_string();
        let mut req = self.agent.post(&self.url).header("content-type", "application/json");
        if !self.key.is_empty() {
            req = req.header("authorization", &format!("Bearer {}", self.key));
        }
        let mut resp = req.send(body.as_bytes()).map_err(err)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(err)?;
        if status != 200 {
            let excerpt: String = text.chars().take(200).collect();
            return Err(err(format!("status {status}: {excerpt}")));
        }
        let answer: Answer = serde_json::from_str(&text).map_err(|e| err(format!("unexpected answer: {e}")))?;
        if answer.data.len() != texts.len() {
            return Err(err(format!("{} vectors for {} texts", answer.data.len(), texts.len())));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for item in answer.data {
            if item.embedding.len() != self.dimension {
                return Err(err(format!("a vector of dimension {}, but openai.dimension is {}", item.embedding.len(), self.dimension)));
            }
            let slot = out.get_mut(item.index).ok_or_else(|| err(format!("index {} out of range", item.index)))?;
            let mut v = item.embedding;
            leadrouter_models::semantic::normalize(&mut v);
            *slot = v;
        }
        if out.iter().any(Vec::is_empty) {
            return Err(err("an input has no vector"));
        }
        Ok(out)
    }
}
