//! Integration tests: the real binary against the sandbox over HTTP on 127.0.0.1.
//! One test binary; shared helpers in `helpers`.

mod enrich;
mod helpers;
mod secrets;
