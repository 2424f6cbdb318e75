//! Integration tests: greenrich against the sandbox over HTTP on 127.0.0.1, run in-process
//! (`app::run`) or as the real binary where the process is the point. One test binary; shared
//! helpers in `helpers`.

#![allow(
    unused_crate_dependencies,
    reason = "the test binary sees every dependency of the package as its own"
)]
#![allow(
    unreachable_pub,
    reason = "helpers are shared by the modules of this one test binary"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected fails loudly"
)]

mod bad_input;
mod changes;
mod commands;
mod crash;
mod docs;
mod enrich;
mod faults;
mod forget;
mod helpers;
mod privacy;
mod refresh;
mod report;
mod rows;
mod secrets;
mod servers;
mod shared_store;
mod stops;
mod telegram;
