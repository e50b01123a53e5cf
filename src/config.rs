//! Configuration: `config/default.toml` compiled in, then an optional file, then
//! `LEADROUTER__SECTION__KEY` environment variables, then command-line flags; validated once.

use std::path::{Path, PathBuf};

use leadrouter_actors::config::{ModelConfig, SemanticConfig};
use leadrouter_actors::{EngineConfig, RoutingConfig, StorageConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Prefix of environment overrides; `__` separates path segments.
pub const ENV_PREFIX: &str = "LEADROUTER__";

/// HTTP server settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub bind: String,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Most leads per batch request.
    pub max_batch: usize,
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Let the kernel back the process's memory with transparent huge pages.
    pub transparent_huge_pages: bool,
}

/// Access control and overload protection.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Keys accepted on /api; empty leaves /api open.
    pub api_keys: Vec<String>,
    /// Token for /admin; empty disables /admin.
    pub admin_token: String,
    /// CORS origins.
    pub cors_origins: Vec<String>,
    /// Most /api requests in flight.
    pub max_in_flight: usize,
    /// Requests per second each API key (each client address while /api is open) may make to
    /// /api; 0 turns the limit off.
    pub rate_limit_per_second: f64,
    /// Requests a key may make at once above the rate (the bucket's size).
    pub rate_limit_burst: f64,
}

impl std::fmt::Debug for SecurityConfig {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("api_keys", &format!("{} configured", self.api_keys.len()))
            .field("admin_token", &if self.admin_token.is_empty() { "disabled" } else { "set" })
            .field("cors_origins", &self.cors_origins)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .finish()
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The endpoint's full URL.
    pub url: String,
    /// The model asked for.
    pub model: String,
    /// The vectors' dimension.
    pub dimension: usize,
    /// Bearer key; empty means `OPENAI_API_KEY`.
    pub api_key: String,
    /// Per-request time limit.
    pub timeout_ms: u64,
}

impl std::fmt::Debug for OpenAiConfig {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("api_key", &if self.api_key.is_empty() { "from OPENAI_API_KEY" } else { "set" })
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Outbound webhooks (`[webhooks]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow targets on loopback, private and link-local addresses.
    pub allow_private_targets: bool,
    /// Attempts per event before it is a dead letter.
    pub max_attempts: u32,
    /// Wait before the second attempt, doubled after each failure.
    pub retry_base_ms: u64,
    /// Longest wait between attempts.
    pub retry_max_ms: u64,
    /// Spread of each wait, as a fraction of it.
    pub jitter: f64,
    /// Time limit of one attempt.
    pub timeout_ms: u64,
    /// Default deliveries in flight per subscription.
    pub concurrency: u32,
    /// Most subscriptions.
    pub max_subscriptions: usize,
    /// How often an idle subscription looks for new records.
    pub poll_ms: u64,
    /// Dead letters kept per subscription.
    pub dead_letters_kept: usize,
}

impl Default for WebhooksConfig {
    /// The values of `config/default.toml` (a test checks they agree).
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            max_attempts: 8,
            retry_base_ms: 1000,
            retry_max_ms: 600_000,
            jitter: 0.2,
            timeout_ms: 5000,
            concurrency: 4,
            max_subscriptions: 100,
            poll_ms: 100,
            dead_letters_kept: 1000,
        }
    }
}

impl WebhooksConfig {
    fn validate(&self) -> Result<()> {
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(config_err(format!("webhooks.{key}"), format!("must be between {lo} and {hi}")))
            }
        };
        range("max_attempts", self.max_attempts.into(), 1, 100)?;
        range("retry_base_ms", self.retry_base_ms, 1, 86_400_000)?;
        range("retry_max_ms", self.retry_max_ms, self.retry_base_ms, 86_400_000)?;
        range("timeout_ms", self.timeout_ms, 1, 600_000)?;
        range("concurrency", self.concurrency.into(), 1, 64)?;
        range("max_subscriptions", self.max_subscriptions as u64, 1, 10_000)?;
        range("poll_ms", self.poll_ms, 1, 60_000)?;
        range("dead_letters_kept", self.dead_letters_kept as u64, 0, 1_000_000)?;
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(config_err("webhooks.jitter", "must be between 0 and 1"));
        }
        Ok(())
    }
}

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter directive.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// OTLP/HTTP collector base URL (spans go to `<url>/v1/traces`); empty means no export.
    /// Needs a build with `--features otlp`.
    pub otlp_endpoint: String,
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Journal and snapshots.
    pub storage: StorageConfig,
    /// Routing.
    pub routing: RoutingConfig,
    /// Conversion model training.
    pub model: ModelConfig,
    /// Embeddings and the vector index.
    pub semantic: SemanticConfig,
    /// The OpenAI-compatible embeddings endpoint (`semantic.encoder = "openai"`).
    pub openai: OpenAiConfig,
    /// Access control.
    pub security: SecurityConfig,
    /// Outbound webhooks.
    pub webhooks: WebhooksConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Command-line overrides (highest precedence).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--port`.
    pub port: Option<u16>,
    /// `--bind`.
    pub bind: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--no-demo`.
    pub no_demo: bool,
}

fn config_err(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Config { field: field.into(), reason: reason.into() }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut t = table;
    for p in parents {
        let next = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !next.is_table() {
            *next = toml::Value::Table(toml::Table::new());
        }
        t = next.as_table_mut().expect("just made a table");
    }
    t.insert(last.clone(), value);
}

/// An environment value as TOML when it parses as a scalar or array, else as a string.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

impl Config {
    /// Loads and validates: defaults, then `file`, then `env` (`LEADROUTER__*` pairs), then
    /// `overrides`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>, overrides: &Overrides) -> Result<Self> {
        let mut table: toml::Table = DEFAULT_TOML.parse().map_err(|e| config_err("default.toml", format!("{e}")))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| config_err(path.display().to_string(), format!("cannot read: {e}")))?;
            let over: toml::Table = text.parse().map_err(|e| config_err(path.display().to_string(), format!("{e}")))?;
            merge(&mut table, over);
        }
        for (k, v) in env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else { continue };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return Err(config_err(k, "empty path segment"));
            }
            set(&mut table, &path, env_value(&v));
        }
        if let Some(p) = overrides.port {
            set(&mut table, &["server".into(), "port".into()], toml::Value::Integer(p.into()));
        }
        if let Some(b) = &overrides.bind {
            set(&mut table, &["server".into(), "bind".into()], toml::Value::String(b.clone()));
        }
        if let Some(d) = &overrides.data_dir {
            set(&mut table, &["storage".into(), "data_dir".into()], toml::Value::String(d.display().to_string()));
        }
        if overrides.no_demo {
            set(&mut table, &["storage".into(), "demo".into()], toml::Value::Boolean(false));
        }
        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            config_err(path, e.into_inner().to_string().trim().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        if self.server.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(config_err("server.bind", format!("'{}' is not an IP address", self.server.bind)));
        }
        if self.server.max_batch == 0 || self.server.max_batch > 100_000 {
            return Err(config_err("server.max_batch", "must be between 1 and 100000"));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(config_err("server.body_limit_bytes", "must be at least 1024"));
        }
        if self.server.workers > 256 {
            return Err(config_err("server.workers", "must be at most 256"));
        }
        if self.security.max_in_flight == 0 {
            return Err(config_err("security.max_in_flight", "must be at least 1"));
        }
        let r = &self.security;
        if !(r.rate_limit_per_second.is_finite() && (0.0..=1e6).contains(&r.rate_limit_per_second)) {
            return Err(config_err("security.rate_limit_per_second", "must be between 0 (off) and 1000000"));
        }
        if !(r.rate_limit_burst.is_finite() && (1.0..=1e7).contains(&r.rate_limit_burst)) {
            return Err(config_err("security.rate_limit_burst", "must be between 1 and 10000000"));
        }
        if self.security.api_keys.iter().any(|k| k.len() < 16) {
            return Err(config_err("security.api_keys", "every key must be at least 16 characters"));
        }
        if !self.security.admin_token.is_empty() && self.security.admin_token.len() < 16 {
            return Err(config_err("security.admin_token", "must be at least 16 characters (or empty to disable /admin)"));
        }
        let otlp = &self.log.otlp_endpoint;
        if !otlp.is_empty() {
            if !(otlp.starts_with("http://") || otlp.starts_with("https://")) {
                return Err(config_err("log.otlp_endpoint", "must be an http:// or https:// URL, or empty"));
            }
            if !cfg!(feature = "otlp") {
                return Err(config_err("log.otlp_endpoint", "trace export needs a build with `--features otlp`"));
            }
        }
        if self.semantic.encoder == leadrouter_actors::config::EncoderKind::External {
            let o = &self.openai;
            let https = o.url.starts_with("https://");
            if !(https || o.url.starts_with("http://")) {
                return Err(config_err("openai.url", "must be an http:// or https:// URL"));
            }
            if https && !cfg!(feature = "tls") {
                return Err(config_err("openai.url", "an https:// endpoint needs a build with `--features tls`"));
            }
            if o.model.trim().is_empty() {
                return Err(config_err("openai.model", "must not be empty"));
            }
            if !(1..=65_536).contains(&o.dimension) {
                return Err(config_err("openai.dimension", "must be between 1 and 65536"));
            }
            if !(1..=600_000).contains(&o.timeout_ms) {
                return Err(config_err("openai.timeout_ms", "must be between 1 and 600000"));
            }
        }
        self.webhooks.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(config_err("log.level", format!("'{}' is not a tracing filter", self.log.level)));
        }
        self.engine().validate().map_err(|e| match e {
            leadrouter_models::ModelError::Invalid { field, reason } => config_err(field, reason),
            other => config_err("config", other.to_string()),
        })
    }

    /// The engine's part.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            storage: self.storage.clone(),
            routing: self.routing.clone(),
            model: self.model.clone(),
            semantic: self.semantic.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.server.port, 3005);
        assert_eq!(c.routing.top_k, 8);
        assert_eq!((c.storage.durability, c.storage.commit_delay_us), (leadrouter_actors::Durability::Fsync, 200));
        // Arbiters: one per two cores unless set.
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!((c.routing.arbiters, c.routing.arbiter_threads()), (0, (cores / 2).max(1)));
        assert_eq!(c.webhooks, WebhooksConfig::default());
        let c = Config::load(None, env(&[("LEADROUTER__ROUTING__ARBITERS", "3")]), &Overrides::default()).unwrap();
        assert_eq!(c.routing.arbiter_threads(), 3);
    }

    #[test]
    fn precedence_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nport = 4000\nworkers = 3\n[routing]\ntop_k = 16\n").unwrap();
        let c = Config::load(
            Some(&f),
            env(&[("LEADROUTER__SERVER__PORT", "5000"), ("LEADROUTER__STORAGE__DURABILITY", "batch"), ("OTHER", "x")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!((c.server.port, c.server.workers, c.routing.top_k), (5000, 3, 16));
        assert_eq!(c.storage.durability, leadrouter_actors::Durability::Batch);
        let o = Overrides { port: Some(6000), no_demo: true, ..Overrides::default() };
        let c = Config::load(Some(&f), env(&[("LEADROUTER__SERVER__PORT", "5000")]), &o).unwrap();
        assert_eq!(c.server.port, 6000);
        assert!(!c.storage.demo);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err = |pairs: &[(&str, &str)]| match Config::load(None, env(pairs), &Overrides::default()) {
            Err(Error::Config { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(&[("LEADROUTER__ROUTING__TOP_K", "0")]), "routing.top_k");
        assert_eq!(err(&[("LEADROUTER__ROUTING__ARBITERS", "65")]), "routing.arbiters");
        let eleven_years = (11 * 365 * 86_400).to_string();
        assert_eq!(
            err(&[("LEADROUTER__STORAGE__FINISHED_LEAD_RETENTION_SECONDS", &eleven_years)]),
            "storage.finished_lead_retention_seconds"
        );
        assert_eq!(err(&[("LEADROUTER__STORAGE__MAX_FINISHED_LEADS", "0")]), "storage.max_finished_leads");
        assert_eq!(err(&[("LEADROUTER__STORAGE__COMMIT_DELAY_US", "10001")]), "storage.commit_delay_us");
        assert_eq!(err(&[("LEADROUTER__LOG__OTLP_ENDPOINT", "collector:4318")]), "log.otlp_endpoint");
        // Export asked for in a build that cannot do it: refused at start-up, not ignored.
        let url = Config::load(None, env(&[("LEADROUTER__LOG__OTLP_ENDPOINT", "http://127.0.0.1:4318")]), &Overrides::default());
        assert_eq!(url.is_ok(), cfg!(feature = "otlp"), "{url:?}");
        assert_eq!(err(&[("LEADROUTER__SERVER__PORT", "\"high\"")]), "server.port");
        assert_eq!(err(&[("LEADROUTER__SERVER__BIND", "localhost")]), "server.bind");
        assert_eq!(err(&[("LEADROUTER__WEBHOOKS__RETRY_MAX_MS", "10")]), "webhooks.retry_max_ms");
        assert_eq!(err(&[("LEADROUTER__WEBHOOKS__JITTER", "1.5")]), "webhooks.jitter");
        assert_eq!(err(&[("LEADROUTER__ROUTING__WEIGHTS__FAST__SLA", "1")]), "routing.weights.fast");
        assert!(err(&[("LEADROUTER__SERVER__COLOUR", "1")]).starts_with("server"));
    }
}
