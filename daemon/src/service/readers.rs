//! Readers service, between the wire and reader/: the PC/SC readers and the cards in them as
//! the monitor sees them, and a stream of changes that starts with the current picture (so a
//! watcher never has to list and watch separately and race between the two).

use super::ServiceError;
use crate::reader::piv::{self, PivError, PivSlot};
use crate::reader::{ReaderEvent, ReaderEventKind, ReaderInfo, ReaderMonitor};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

/// How many events a watch stream buffers for a slow client.
const WATCH_BUFFER: usize = 64;

#[derive(Debug)]
pub struct ReaderService {
    /// None when `[readers] enabled = false`.
    monitor: Option<ReaderMonitor>,
    /// Set when the daemon stops: watch streams end, since a graceful shutdown waits for every
    /// open call and a watch never ends by itself.
    closing: watch::Sender<bool>,
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
        Ok(ReaderService { monitor, closing: watch::Sender::new(false) })
    }

    /// The daemon is stopping: ends every watch stream (cleanly, as if the watcher hung up).
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
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

    /// The card in reader `name`, or why not: NOT_FOUND for an unknown reader,
    /// FAILED_PRECONDITION for an empty one or a card that is not a readable PIV card.
    pub fn card_in(&self, field: &str, name: &str) -> Result<ReaderInfo, ServiceError> {
        let reader = self
            .monitor()?
            .readers()
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("no card reader named {name:?} ({field})")))?;
        if !reader.card_present {
            return Err(ServiceError::FailedPrecondition(format!("there is no card in reader {name:?}")));
        }
        if reader.card_serial.is_empty() {
            return Err(ServiceError::FailedPrecondition(format!(
                "the card in reader {name:?} is not a PIV card whose CHUID could be read"
            )));
        }
        Ok(reader)
    }

    /// The reader holding the identified PIV card whose token serial is `token_serial`.
    pub fn reader_of(&self, token_serial: &str) -> Option<String> {
        self.monitor.as_ref().and_then(|m| {
            m.readers().into_iter().find(|r| r.card_present && r.card_serial == token_serial).map(|r| r.name)
        })
    }

    /// Generates an EC P-256 key in `slot` of the PIV card in `reader`; its public key (SPKI).
    pub async fn piv_generate(&self, reader: &str, slot: PivSlot) -> Result<Vec<u8>, ServiceError> {
        let name = reader.to_owned();
        tokio::task::spawn_blocking(move || piv::generate_p256(&name, slot))
            .await
            .map_err(|e| ServiceError::Internal(format!("PIV task: {e}")))?
            .map_err(|e| piv_error(reader, e))
    }

    /// Writes (or, with None, clears) the certificate of `slot` on the PIV card in `reader`.
    pub async fn piv_put_certificate(
        &self,
        reader: &str,
        slot: PivSlot,
        der: Option<Vec<u8>>,
    ) -> Result<(), ServiceError> {
        let name = reader.to_owned();
        tokio::task::spawn_blocking(move || piv::put_certificate(&name, slot, der.as_deref()))
            .await
            .map_err(|e| ServiceError::Internal(format!("PIV task: {e}")))?
            .map_err(|e| piv_error(reader, e))
    }

    /// Changes the PIN of the PIV card in `reader`.
    pub async fn piv_change_pin(
        &self,
        reader: &str,
        old: Zeroizing<String>,
        new: Zeroizing<String>,
    ) -> Result<(), ServiceError> {
        let name = reader.to_owned();
        tokio::task::spawn_blocking(move || piv::change_pin(&name, &old, &new))
            .await
            .map_err(|e| ServiceError::Internal(format!("PIV task: {e}")))?
            .map_err(|e| piv_error(reader, e))
    }

    /// Sets a new PIN (and unblocks it) with the PUK on the PIV card in `reader`.
    pub async fn piv_unblock_pin(
        &self,
        reader: &str,
        puk: Zeroizing<String>,
        new: Zeroizing<String>,
    ) -> Result<(), ServiceError> {
        let name = reader.to_owned();
        tokio::task::spawn_blocking(move || piv::unblock_pin(&name, &puk, &new))
            .await
            .map_err(|e| ServiceError::Internal(format!("PIV task: {e}")))?
            .map_err(|e| piv_error(reader, e))
    }

    /// Token serials of the identified cards in the readers now (none when readers are
    /// disabled).
    pub fn card_serials(&self) -> Vec<String> {
        self.monitor
            .as_ref()
            .map(|m| {
                m.readers()
                    .into_iter()
                    .filter(|r| r.card_present && !r.card_serial.is_empty())
                    .map(|r| r.card_serial)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The current picture as events, then every change, until the receiver is dropped. A
    /// watcher too slow to keep up is ended with an error rather than silently skipping events.
    pub fn watch(&self) -> Result<mpsc::Receiver<Result<ReaderEvent, ServiceError>>, ServiceError> {
        let (snapshot, mut rx) = self.monitor()?.subscribe();
        let (tx, out) = mpsc::channel(WATCH_BUFFER);
        let mut closing = self.closing.subscribe();
        let forward = async move {
            for r in snapshot {
                let added = ReaderEvent {
                    kind: ReaderEventKind::ReaderAdded,
                    reader: r.name.clone(),
                    atr: Vec::new(),
                    card_serial: String::new(),
                    at_ms: 0,
                };
                if tx.send(Ok(added)).await.is_err() {
                    return;
                }
                if r.card_present {
                    let inserted = ReaderEvent {
                        kind: ReaderEventKind::CardInserted,
                        reader: r.name,
                        atr: r.atr,
                        card_serial: r.card_serial,
                        at_ms: 0,
                    };
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
        };
        tokio::spawn(async move {
            tokio::select! {
                () = forward => {}
                // Closing (or the service gone): dropping `forward` drops the sender, which
                // ends the stream.
                _ = closing.wait_for(|c| *c) => {}
            }
        });
        Ok(out)
    }
}

/// A card pulled out or a reader gone is something to retry; a card that refuses is not.
fn piv_error(reader: &str, e: PivError) -> ServiceError {
    match e {
        PivError::Pcsc(
            pcsc::Error::RemovedCard
            | pcsc::Error::NoSmartcard
            | pcsc::Error::ResetCard
            | pcsc::Error::UnknownReader
            | pcsc::Error::ReaderUnavailable
            | pcsc::Error::NoService
            | pcsc::Error::ServiceStopped
            | pcsc::Error::SharingViolation
            | pcsc::Error::CommError
            | pcsc::Error::UnpoweredCard
            | pcsc::Error::UnresponsiveCard
            | pcsc::Error::NotTransacted
            | pcsc::Error::NoReadersAvailable
            | pcsc::Error::Timeout,
        )
        | PivError::NoAnswer(_) => {
            ServiceError::Unavailable(format!("the card in reader {reader:?} cannot be used now: {e}"))
        }
        PivError::Status { .. } => {
            ServiceError::FailedPrecondition(format!("the card in reader {reader:?} refused: {e}"))
        }
        PivError::WrongSecret { what, tries_left } => ServiceError::invalid(
            if what == "PUK" { "puk" } else { "old_pin" },
            format!("wrong {what}: {tries_left} {} left", if tries_left == 1 { "try" } else { "tries" }),
        ),
        PivError::Blocked(what) => ServiceError::FailedPrecondition(format!(
            "the {what} of the card in reader {reader:?} is blocked{}",
            if what == "PIN" { "; unblock it with the PUK" } else { "" }
        )),
        other => ServiceError::Internal(format!("reader {reader:?}: {other}")),
    }
}
