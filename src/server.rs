//! Starting and stopping the whole service: engine first, then the HTTP server; on stop the
//! HTTP server drains first, then the engine flushes its journal and writes a snapshot.

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use leadrouter_actors::Engine;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::error::{Error, Result};

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
}

/// Starts the engine and the HTTP server (call inside an actix system).
pub async fn start(cfg: Config) -> Result<Running> {
    let engine = Engine::start(cfg.engine(), demo_brokers()?).await?;
    let state = web::Data::new(AppState {
        router: engine.router().clone(),
        max_batch: cfg.server.max_batch,
        body_limit: cfg.server.body_limit_bytes,
    });
    let mut server = HttpServer::new(move || App::new().app_data(state.clone()).configure(api::configure))
        .shutdown_timeout(10)
        .bind((cfg.server.bind.as_str(), cfg.server.port))?;
    if cfg.server.workers > 0 {
        server = server.workers(cfg.server.workers);
    }
    let addr = *server.addrs().first().ok_or_else(|| Error::Config { field: "server.bind".into(), reason: "no address bound".into() })?;
    let server = server.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    tracing::info!(%addr, "listening");
    Ok(Running { addr, engine, handle, task })
}

impl Running {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Waits until the server stops (SIGINT or SIGTERM), then shuts the engine down.
    pub async fn wait(self) -> Result<()> {
        let served = self.task.await;
        let stopped = self.engine.shutdown().await;
        served.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
        Ok(stopped?)
    }

    /// Stops gracefully: in-flight requests finish, then the engine shuts down.
    pub async fn stop(self) -> Result<()> {
        self.handle.stop(true).await;
        self.wait().await
    }
}
