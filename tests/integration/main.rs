//! Integration tests: the real server on port 0 over real HTTP, with real files in temp dirs.

mod analytics;
mod capacity;
mod common;
mod crash_loop;
mod dashboard;
mod decide;
mod disk_faults;
mod docs;
mod experiments;
mod exploration;
mod golden;
mod hardening;
mod lifecycle;
mod model;
mod ops;
#[cfg(feature = "otlp")]
mod otlp;
mod restart;
mod roi;
mod security;
mod semantic;
mod simulate;
mod webdriver;
mod webhooks;
mod why_not;
