//! Inside the issuance service, between IssueCertificate and the store: group commit. Every
//! issued certificate is recorded (row, authority counter, audit row) before it is returned,
//! but concurrent issuances share one write transaction: a recorder task takes whatever is
//! queued (up to [`MAX_BATCH`]) and writes it in one commit, each certificate under its own
//! savepoint so that one failure (a repeated serial) fails that certificate alone. Under load
//! this turns one store round trip and one WAL commit per certificate into one per batch.

use super::record_issued;
use crate::store::certificates::CertificateRecord;
use crate::store::{Store, StoreError};
use std::sync::OnceLock;
use tokio::sync::{mpsc, oneshot};

/// The most certificates one transaction records.
const MAX_BATCH: usize = 256;
/// Queued certificates waiting for the recorder; senders wait when it is full.
const QUEUE: usize = 1024;

struct Job {
    actor: String,
    record: CertificateRecord,
    key_origin: &'static str,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Records issued certificates in batched transactions.
#[derive(Debug)]
pub(super) struct Recorder {
    store: Store,
    /// Started on first use, from inside the runtime.
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Recorder {
    pub(super) fn new(store: Store) -> Recorder {
        Recorder { store, queue: OnceLock::new() }
    }

    /// Records one certificate; returns once the transaction holding it has committed.
    pub(super) async fn record(
        &self,
        actor: &str,
        record: CertificateRecord,
        key_origin: &'static str,
    ) -> Result<(), StoreError> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.store.clone(), rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        let job = Job { actor: actor.to_owned(), record, key_origin, done };
        queue.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let work: Vec<(String, CertificateRecord, &'static str)> =
            batch.iter().map(|j| (j.actor.clone(), j.record.clone(), j.key_origin)).collect();
        let outcome = store
            .write(move |tx| {
                let mut results = Vec::with_capacity(work.len());
                for (actor, record, origin) in &work {
                    tx.execute_batch("SAVEPOINT issue")?;
                    match record_issued(tx, actor, record, origin) {
                        Ok(()) => {
                            tx.execute_batch("RELEASE issue")?;
                            results.push(Ok(()));
                        }
                        Err(e) => {
                            tx.execute_batch("ROLLBACK TO issue; RELEASE issue")?;
                            results.push(Err(e));
                        }
                    }
                }
                Ok::<_, StoreError>(results)
            })
            .await;
        match outcome {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    // A caller that went away (cancelled request) has nothing to hear.
                    let _ = job.done.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, certificates = batch.len(), "recording issued certificates failed");
                for job in batch {
                    let _ = job.done.send(Err(StoreError::Task(message.clone())));
                }
            }
        }
    }
}
