//! Preflight: each instance is checked with `getStateInstance` before its first call (by its own
//! dispatcher, so an instance starts calling as soon as it answers, not when the slowest one
//! does); an unusable one is reported with advice and left out of the pool.

use std::time::Duration;

use crate::api::{state, Client, Instance, InstanceState, Verdict};

/// Whether `instance` can be called; why not, with advice, when it cannot.
pub(crate) async fn check_instance(client: &Client, instance: &Instance) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            // getStateInstance is limited to one call per second per instance.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        match client.state(instance).await {
            Ok(InstanceState::Authorized) => {
                tracing::info!("instance {}: authorized", instance.id);
                return Ok(());
            }
            Ok(InstanceState::Starting) => {
                tracing::warn!("instance {}: starting; calls will wait for it", instance.id);
                return Ok(());
            }
            Ok(InstanceState::Unusable(other)) => return Err(state::advice(&other)),
            Err(Verdict::Transient(problem)) => last = problem.message,
            Err(other) => {
                return Err(other
                    .problem()
                    .map(|p| p.message.clone())
                    .unwrap_or_default())
            }
        }
    }
    Err(last)
}
