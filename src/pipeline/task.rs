//! Tasks of the pipeline: a task that dies (panics or is cancelled) fails the run with a message;
//! it is never silently taken for "done".

use tokio::task::JoinError;

/// A pipeline task ended without finishing its work.
#[derive(Debug, thiserror::Error)]
#[error("{task} stopped unexpectedly: {message}; what was committed is kept")]
pub struct TaskDied {
    /// Which task.
    pub task: &'static str,
    /// The panic message, or why it was cancelled.
    pub message: String,
}

impl TaskDied {
    /// Describes `error`, the way `task` ended.
    pub(crate) fn new(task: &'static str, error: JoinError) -> TaskDied {
        let message = if error.is_panic() {
            let payload = error.into_panic();
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .map_or_else(
                    || "it panicked".to_string(),
                    |m| format!("it panicked: {m}"),
                )
        } else {
            "it was cancelled".to_string()
        };
        TaskDied { task, message }
    }
}

/// Waits for `handle`; a task that died becomes an error naming `task`.
pub(crate) async fn join<T>(
    task: &'static str,
    handle: tokio::task::JoinHandle<T>,
) -> Result<T, TaskDied> {
    handle.await.map_err(|e| TaskDied::new(task, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        let handle = tokio::spawn(async { panic!("boom") });
        let died = join("the test task", handle).await.unwrap_err();
        assert_eq!(died.task, "the test task");
        assert!(died.to_string().contains("it panicked: boom"), "{died}");
        assert_eq!(join("fine", tokio::spawn(async { 7 })).await.unwrap(), 7);
    }
}
