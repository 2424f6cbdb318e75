//! Integration tests: the real binary against the sandbox over HTTP on 127.0.0.1.
//! One test binary; shared helpers in `helpers`.

mod bad_input;
mod crash;
mod enrich;
mod faults;
mod helpers;
mod refresh;
mod secrets;
mod stops;
