//! Preflight: every instance is checked with `getStateInstance` (all at once) before calls are
//! spent; unusable ones are reported with advice and left out of the pool.

use std::time::Duration;

use crate::api::{state, Client, Instance, InstanceState, Verdict};

/// Why an instance is left out.
struct Unusable(String);

/// No instance of the pool can be used; the message lists why, instance by instance.
#[derive(Debug)]
pub(crate) struct NoUsableInstance(pub(crate) String);

/// The usable instances, or why none is.
pub(crate) async fn usable_instances(
    client: &Client,
    instances: &[Instance],
) -> Result<Vec<Instance>, NoUsableInstance> {
    let checks =
        futures::future::join_all(instances.iter().map(|i| check_instance(client, i))).await;
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for (instance, check) in instances.iter().zip(checks) {
        match check {
            Ok(()) => usable.push(instance.clone()),
            Err(Unusable(problem)) => {
                let problem = format!("instance {}: {problem}", instance.id);
                tracing::warn!("{problem}; left out of the pool");
                problems.push(problem);
            }
        }
    }
    if usable.is_empty() {
        return Err(NoUsableInstance(format!(
            "no usable instance: {}",
            problems.join("; ")
        )));
    }
    Ok(usable)
}

async fn check_instance(client: &Client, instance: &Instance) -> Result<(), Unusable> {
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
            Ok(InstanceState::Unusable(other)) => return Err(Unusable(state::advice(&other))),
            Err(Verdict::Transient(problem)) => last = problem.message,
            Err(other) => {
                return Err(Unusable(
                    other
                        .problem()
                        .map(|p| p.message.clone())
                        .unwrap_or_default(),
                ))
            }
        }
    }
    Err(Unusable(last))
}
