//! The stages of an `enrich` run, in the order [`crate::job::enrich`] runs them: output checks,
//! staging the input, planning, preflight, sharing the store with other workers, fetching and
//! writing.

pub(crate) mod fetch;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod preflight;
pub(crate) mod share;
pub(crate) mod stage;
pub(crate) mod stop;
pub(crate) mod task;
pub(crate) mod write;
