//! LeadRouter server crate: configuration, the HTTP JSON API and service start-up. The only
//! crate that knows HTTP, routes, config files and the command line.

pub mod api;
pub mod config;
pub mod error;
pub mod json;
pub mod security;
pub mod server;

pub use config::{Config, Overrides};
pub use error::{Error, Result};
