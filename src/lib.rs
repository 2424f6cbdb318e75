//! greenrich: enriches CRM contacts through GREEN-API `getContactInfo`.
//!
//! The pipeline is `source → stage → plan → preflight → fetch → normalise → write → export`;
//! [`enrich`] runs it on a validated [`config::Config`]. The binary (`main.rs`) parses flags,
//! sets up logging and signals, and calls [`app::run`], which the tests call in-process too.

pub mod app;
pub mod chat_id;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod domain;
pub mod normalise;
pub mod reason;
pub mod redact;
pub mod report;
pub mod sandbox;
pub mod store;

mod api;
mod credentials;
mod demo;
mod error;
mod export;
mod inspect;
mod job;
mod metrics;
mod pipeline;
mod progress;
mod source;
mod stats;

pub use api::{ApiUrl, ClientError, Instance, InvalidInstance};
pub use error::JobError;
pub use job::enrich;
pub use pipeline::output::OutputError;
pub use pipeline::stop::{Stop, StopReason};
pub use pipeline::task::TaskDied;
pub use source::{Source, SourceError};
