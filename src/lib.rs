//! greenrich: enriches CRM contacts through GREEN-API `getContactInfo`.
//!
//! The pipeline is `source → stage → plan → preflight → fetch → normalise → write → export`
//! (`job::enrich` runs it on a validated configuration). The binary (`main.rs`) sets up logging and
//! signals around [`parse`], [`run`] and [`finish`], which the tests call in-process too.
//!
//! Every module is private; what the binary, the tests and the benchmark use is re-exported
//! here. The sandbox (a GREEN-API simulator) is public as a whole: tests configure it field by
//! field.

mod api;
mod app;
mod change;
mod chat_id;
mod cli;
mod config;
mod config_file;
mod credentials;
mod demo;
mod domain;
mod error;
mod export;
mod forget;
mod inspect;
mod job;
mod metrics;
mod normalise;
mod page;
mod pipeline;
mod private;
mod progress;
mod reason;
mod redact;
mod refresh;
mod report;
pub mod sandbox;
mod source;
mod stats;
mod store;
mod suppression;

pub use app::{finish, log_subscriber, parse, run, Done, Error};
pub use chat_id::Messenger;
pub use cli::Cli;
pub use config::LogFormat;
pub use domain::Rate;
pub use normalise::{ContactRow, Enriched, ProductRow};
pub use pipeline::stop::{Stop, StopReason};
pub use redact::{install_panic_hook, MaskingWriter};
pub use refresh::{computed_freshness, freshness};
pub use report::{exit, Outcome, Report};
pub use store::writer::{KeyOutcome, RetryDelays, Writer};
pub use store::{Store, StoreError, StoreLocation};
