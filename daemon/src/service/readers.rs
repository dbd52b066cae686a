//! Readers service, between the wire and reader/: the PC/SC readers and the cards in them as
//! the monitor sees them, and a stream of changes that starts with the current picture (so a
//! watcher never has to list and watch separately and race between the two).

use super::ServiceError;
use crate::reader::{ReaderEvent, ReaderEventKind, ReaderInfo, ReaderMonitor};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// How many events a watch stream buffers for a slow client.
const WATCH_BUFFER: usize = 64;

#[derive(Debug)]
pub struct ReaderService {
    /// None when `[readers] enabled = false`.
    monitor: Option<ReaderMonitor>,
}

impl ReaderService {
    /// Starts the PC/SC monitor when `enabled` (pcscd need not be running).
    pub fn new(config: &hsm_config::ReadersConfig) -> Result<ReaderService, ServiceError> {
        let monitor = if config.enabled {
            Some(
                ReaderMonitor::start()
                    .map_err(|e| ServiceError::Internal(format!("starting the PC/SC monitor: {e}")))?,
            )
        } else {
            None
        };
        Ok(ReaderService { monitor })
    }

    fn monitor(&self) -> Result<&ReaderMonitor, ServiceError> {
        self.monitor.as_ref().ok_or_else(|| {
            ServiceError::FailedPrecondition("card readers are disabled ([readers] enabled = false)".into())
        })
    }

    /// The readers now, and whether pcscd is answering.
    pub fn list(&self) -> Result<(Vec<ReaderInfo>, bool), ServiceError> {
        let m = self.monitor()?;
        Ok((m.readers(), m.service_available()))
    }

    /// The current picture as events, then every change, until the receiver is dropped. A
    /// watcher too slow to keep up is ended with an error rather than silently skipping events.
    pub fn watch(&self) -> Result<mpsc::Receiver<Result<ReaderEvent, ServiceError>>, ServiceError> {
        let (snapshot, mut rx) = self.monitor()?.subscribe();
        let (tx, out) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            for r in snapshot {
                let added = ReaderEvent { kind: ReaderEventKind::ReaderAdded, reader: r.name.clone(), atr: Vec::new(), at_ms: 0 };
                if tx.send(Ok(added)).await.is_err() {
                    return;
                }
                if r.card_present {
                    let inserted = ReaderEvent { kind: ReaderEventKind::CardInserted, reader: r.name, atr: r.atr, at_ms: 0 };
                    if tx.send(Ok(inserted)).await.is_err() {
                        return;
                    }
                }
            }
            loop {
                let next = match rx.recv().await {
                    Ok(event) => Ok(event),
                    Err(RecvError::Lagged(n)) => Err(ServiceError::Unavailable(format!(
                        "the watcher fell {n} reader events behind; watch again"
                    ))),
                    Err(RecvError::Closed) => return,
                };
                let stop = next.is_err();
                if tx.send(next).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(out)
    }
}
