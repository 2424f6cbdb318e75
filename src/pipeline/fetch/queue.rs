//! The queue between the planner and the dispatchers. Every key handed to the fetch stage holds a
//! ticket until its final outcome; the feeder holds the queue open while it feeds. Both are drop
//! guards, so the queue closes exactly when the last key is settled and feeding is over: there is
//! no count to keep by hand, and a key that is dropped anywhere (outcome sent, run stopped, a
//! channel closed) is settled by that drop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// A key on its way through the fetch stage.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) chat_id: String,
    pub(crate) phone: Option<String>,
    pub(crate) attempts: u32,
    /// The Telegram phone number or username `chat_id` was resolved from in this run.
    pub(crate) handle: Option<String>,
    _ticket: Ticket,
}

/// The queue the feeder fills and the dispatchers drain; retries come before fresh keys.
pub(crate) struct Queue {
    fresh_tx: async_channel::Sender<Job>,
    fresh_rx: async_channel::Receiver<Job>,
    retry_tx: async_channel::Sender<Job>,
    retry_rx: async_channel::Receiver<Job>,
    /// Keys handed to the fetch stage that have no final outcome yet.
    unsettled: AtomicUsize,
    feeding: AtomicBool,
    closed: AtomicBool,
}

/// Held by a job until it is dropped.
#[derive(Debug)]
struct Ticket(Arc<Queue>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.unsettled.fetch_sub(1, SeqCst);
        self.0.close_if_drained();
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

/// Pushes keys into the queue; the queue can close only once the feeder is dropped.
pub(crate) struct Feeder(Arc<Queue>);

impl Drop for Feeder {
    fn drop(&mut self) {
        self.0.feeding.store(false, SeqCst);
        self.0.close_if_drained();
    }
}

impl Feeder {
    /// Adds a key; false when the fetch stage has stopped taking keys.
    pub(crate) async fn push(&self, chat_id: String, phone: Option<String>) -> bool {
        self.0.unsettled.fetch_add(1, SeqCst);
        let job = Job {
            chat_id,
            phone,
            attempts: 0,
            handle: None,
            _ticket: Ticket(self.0.clone()),
        };
        self.0.fresh_tx.send(job).await.is_ok()
    }
}

impl Queue {
    /// A queue holding up to `capacity` fresh keys, and its feeder.
    pub(crate) fn new(capacity: usize) -> (Arc<Queue>, Feeder) {
        let (fresh_tx, fresh_rx) = async_channel::bounded(capacity);
        let (retry_tx, retry_rx) = async_channel::unbounded();
        let queue = Arc::new(Queue {
            fresh_tx,
            fresh_rx,
            retry_tx,
            retry_rx,
            unsettled: AtomicUsize::new(0),
            feeding: AtomicBool::new(true),
            closed: AtomicBool::new(false),
        });
        (queue.clone(), Feeder(queue))
    }

    fn close_if_drained(&self) {
        if !self.feeding.load(SeqCst) && self.unsettled.load(SeqCst) == 0 {
            self.close();
        }
    }

    /// Takes no more keys; keys still waiting are dropped (they stay due for the next run).
    pub(crate) fn close(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        self.fresh_tx.close();
        self.retry_tx.close();
        while self.fresh_rx.try_recv().is_ok() || self.retry_rx.try_recv().is_ok() {}
    }

    /// The next key: a retry if one is waiting, else a fresh key; `None` once the queue closed.
    pub(crate) async fn next(&self) -> Option<Job> {
        if let Ok(job) = self.retry_rx.try_recv() {
            return Some(job);
        }
        tokio::select! {
            biased;
            job = self.retry_rx.recv() => job.ok(),
            job = self.fresh_rx.recv() => match job {
                Ok(job) => Some(job),
                // Fresh keys are done; retries may still come until the queue closes.
                Err(_) => self.retry_rx.recv().await.ok(),
            },
        }
    }

    /// Puts a key back for another attempt (a closed queue drops it, which settles it).
    pub(crate) async fn requeue(&self, job: Job) {
        let _ = self.retry_tx.send(job).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_closes_when_the_last_key_is_settled() {
        let (queue, feeder) = Queue::new(4);
        assert!(feeder.push("a".into(), None).await);
        assert!(feeder.push("b".into(), None).await);
        drop(feeder);
        let a = queue.next().await.unwrap();
        let b = queue.next().await.unwrap();
        drop(a);
        queue.requeue(b).await;
        let b = queue.next().await.unwrap();
        assert_eq!(b.chat_id, "b");
        drop(b);
        assert!(
            queue.next().await.is_none(),
            "closed once every key is settled"
        );
    }

    #[tokio::test]
    async fn an_empty_feed_closes_at_once_and_a_closed_queue_refuses_keys() {
        let (queue, feeder) = Queue::new(4);
        drop(feeder);
        assert!(queue.next().await.is_none());
        let (queue, feeder) = Queue::new(4);
        queue.close();
        assert!(!feeder.push("a".into(), None).await);
    }
}
