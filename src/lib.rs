//! LeadRouter server crate: configuration, the HTTP JSON API, service start-up and the
//! routing-quality simulator. The only crate that knows HTTP, routes, config files and the
//! command line.

pub mod api;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod json;
pub mod openai;
pub mod path;
pub mod process;
pub mod resume;
pub mod security;
pub mod server;
pub mod sim;
pub mod webhooks;

pub use config::{Config, Overrides};
pub use error::{Error, Result};
