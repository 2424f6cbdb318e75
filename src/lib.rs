//! greenrich: enriches CRM contacts through GREEN-API `getContactInfo`.
//!
//! The pipeline is `source → plan → fetch → normalise → store → export`; [`job::enrich`] runs it.
//! The binary (`main.rs`) only parses flags, sets up logging and maps the outcome to an exit code.

pub mod api;
pub mod chat_id;
pub mod cli;
pub mod demo;
pub mod export;
pub mod fetch;
pub mod inspect;
pub mod job;
pub mod normalise;
pub mod progress;
pub mod redact;
pub mod report;
pub mod sandbox;
pub mod source;
pub mod stats;
pub mod store;
