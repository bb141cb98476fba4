//! Group commit: many tasks each hand in one item and wait for its answer, while one task takes whatever has queued
//! up and handles it in one go.
//!
//! Under a burst, a database round trip per slot would cost more than the slots themselves; one statement or one
//! transaction for all that queued meanwhile costs about as much as one. The stores use it to mark slots `sending`
//! and to record results.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

pub struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<(I, oneshot::Sender<O>)>,
    hurry: Arc<Notify>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the task on the current runtime. It waits `gather` after the first item of a batch for more to queue
    /// (zero: takes only what is already there), takes at most `max` items at once, and has at most `parallel`
    /// batches in hand at once: a database with a pool of connections commits several together (PostgreSQL flushes
    /// their commits to disk in one go), one with a single connection takes them in turn. `work` answers a batch
    /// with one output per item, in order.
    pub fn spawn<F, Fut>(gather: Duration, max: usize, parallel: usize, mut work: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (queue, mut items) = mpsc::unbounded_channel::<(I, oneshot::Sender<O>)>();
        let hurry = Arc::new(Notify::new());
        let hurried = hurry.clone();
        let workers = Arc::new(Semaphore::new(parallel.max(1)));
        tokio::spawn(async move {
            // While every worker is busy, items queue up into the next batch.
            while let Ok(worker) = workers.clone().acquire_owned().await
                && let Some(first) = items.recv().await
            {
                if !gather.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(gather) => {}
                        _ = hurried.notified() => {}
                    }
                }
                let mut batch = vec![first];
                while batch.len() < max
                    && let Ok(next) = items.try_recv()
                {
                    batch.push(next);
                }
                let (inputs, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
                let answers = work(inputs);
                tokio::spawn(async move {
                    for (reply, answer) in replies.into_iter().zip(answers.await) {
                        let _ = reply.send(answer);
                    }
                    drop(worker);
                });
            }
        });
        Batcher { queue, hurry }
    }

    /// Ends the current (or the next) gathering at once: someone waits on what this batch will free.
    pub fn hurry(&self) {
        self.hurry.notify_one();
    }

    /// Hands in one item and waits for its answer; `None` if the task has stopped.
    pub async fn submit(&self, item: I) -> Option<O> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn items_that_queue_together_are_handled_in_one_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::spawn(Duration::from_millis(5), 100, 1, move |items: Vec<u32>| {
            seen.lock().expect("not poisoned").push(items.len());
            async move { items.into_iter().map(|i| i * 2).collect() }
        }));
        let answers: Vec<_> = (0..10)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.expect("joins"), Some(i as u32 * 2));
        }
        assert_eq!(*sizes.lock().expect("not poisoned"), [10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hurried_batch_is_handled_before_its_gathering_time() {
        let batcher = Arc::new(Batcher::spawn(Duration::from_secs(10), 100, 1, |items: Vec<u32>| async move { items }));
        let waiting = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(7).await })
        };
        tokio::task::yield_now().await;
        let t0 = tokio::time::Instant::now();
        batcher.hurry();
        assert_eq!(waiting.await.expect("joins"), Some(7));
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
}
