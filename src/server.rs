//! Starting and stopping the whole service: engine first, then the HTTP server; on stop the
//! HTTP server drains first, then the engine flushes its journal and writes a snapshot.

use std::net::SocketAddr;

use actix_cors::Cors;
use actix_web::dev::ServerHandle;
use actix_web::{middleware, web, App, HttpServer};
use leadrouter_actors::Engine;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::security::{self, Guard};

/// The demo brokers, compiled in from `data/brokers.json`.
pub const DEMO_BROKERS: &str = include_str!("../data/brokers.json");

/// Parses the embedded demo brokers.
pub fn demo_brokers() -> Result<Vec<leadrouter_models::Broker>> {
    serde_json::from_str(DEMO_BROKERS).map_err(|e| Error::Config { field: "data/brokers.json".into(), reason: e.to_string() })
}

/// A running service.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    engine: Engine,
    handle: ServerHandle,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
    webhooks: std::sync::Arc<crate::webhooks::Webhooks>,
}

/// Starts the engine and the HTTP server (call inside an actix system).
pub async fn start(cfg: Config) -> Result<Running> {
    let engine = Engine::start(cfg.engine(), demo_brokers()?).await?;
    if cfg.semantic.encoder == leadrouter_actors::config::EncoderKind::External && cfg.semantic.enabled {
        let enc = crate::openai::OpenAiEncoder::new(&cfg.openai, std::env::var("OPENAI_API_KEY").ok());
        let r = engine.router();
        r.semantic().install_encoder(std::sync::Arc::new(enc), r.broker_configs());
    }
    let webhooks = std::sync::Arc::new(crate::webhooks::Webhooks::start(cfg.webhooks.clone(), &cfg.storage.data_dir, engine.router())?);
    let state = web::Data::new(AppState {
        webhooks: webhooks.clone(),
        router: engine.router().clone(),
        max_batch: cfg.server.max_batch,
        body_limit: cfg.server.body_limit_bytes,
        snapshots: engine.snapshots()?,
        openapi: api::docs::document(&api::contract::Settings {
            api_keys: !cfg.security.api_keys.is_empty(),
            max_batch: cfg.server.max_batch,
        })
        .into(),
    });
    let guard = web::Data::new(Guard::new(cfg.security.clone()));
    let origins = cfg.security.cors_origins.clone();
    let mut server = HttpServer::new(move || {
        let cors = origins.iter().fold(Cors::default(), |c, o| c.allowed_origin(o)).allow_any_header().allow_any_method().max_age(3600);
        App::new()
            .app_data(state.clone())
            .app_data(guard.clone())
            .wrap(middleware::from_fn(security::guard))
            .wrap(cors)
            .configure(api::configure)
    })
    .shutdown_timeout(10)
    // Signals are handled in `Running::wait`, so shutdown runs in a known order.
    .disable_signals()
    .bind((cfg.server.bind.as_str(), cfg.server.port))?;
    if cfg.server.workers > 0 {
        server = server.workers(cfg.server.workers);
    }
    let addr = *server.addrs().first().ok_or_else(|| Error::Config { field: "server.bind".into(), reason: "no address bound".into() })?;
    let server = server.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    tracing::info!(%addr, "listening");
    Ok(Running { addr, engine, handle, task, webhooks })
}

impl Running {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully (see [`Running::stop`]).
    pub async fn wait(self) -> Result<()> {
        let mut term = actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = actix_rt::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
        self.stop().await
    }

    /// Stops gracefully: websocket feeds are closed ("going away"), in-flight requests finish,
    /// then the engine flushes its journal and writes a snapshot.
    pub async fn stop(self) -> Result<()> {
        self.engine.router().feed().close();
        self.handle.stop(true).await;
        let served = self.task.await;
        // Deliveries stop before the journal they follow; their cursors are saved.
        self.webhooks.stop();
        let stopped = self.engine.shutdown().await;
        served.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
        Ok(stopped?)
    }
}
