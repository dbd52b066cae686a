//! PC/SC back end, beside token/ below the service layer: a monitor on its own thread that
//! watches every reader (and the PnP pseudo-reader, so readers that come and go are seen)
//! with `SCardGetStatusChange`, keeps the current picture (readers, card present, ATR) and
//! broadcasts changes to the services. pcscd going away is survived: the context is thrown
//! away and re-established with a backoff capped at one second, so the readers are back within
//! about a second of pcscd, and a stopped pcscd costs one failed connect per second.

pub mod piv;

use pcsc::{
    Context, Disposition, Error as PcscError, PNP_NOTIFICATION, Protocols, ReaderState, Scope, ShareMode,
    State,
};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// First and longest wait before re-establishing the PC/SC context.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Events a slow watcher may fall behind by before it is told it lagged.
const EVENT_BUFFER: usize = 256;

/// One reader as the monitor last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
    /// The card's ATR; empty when no card is present.
    pub atr: Vec<u8>,
    /// The card's PKCS#11 token serial as OpenSC shows it, when the card is a PIV card whose
    /// CHUID could be read ([`piv_token_serial`]); empty otherwise.
    pub card_serial: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderEventKind {
    ReaderAdded,
    ReaderRemoved,
    CardInserted,
    CardRemoved,
}

/// A change the monitor saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderEvent {
    pub kind: ReaderEventKind,
    pub reader: String,
    /// CardInserted: the card's ATR; empty otherwise.
    pub atr: Vec<u8>,
    /// CardInserted: the card's token serial when known (see [`ReaderInfo::card_serial`]).
    pub card_serial: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

struct Shared {
    readers: Mutex<BTreeMap<String, ReaderInfo>>,
    events: broadcast::Sender<ReaderEvent>,
    stop: AtomicBool,
    /// The live context, so `Drop` can cancel a blocking status-change wait.
    context: Mutex<Option<Context>>,
    /// Whether pcscd answered the last time we asked.
    service_up: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shared {
    /// Applies a change to the picture and broadcasts it, under one lock so that a subscriber
    /// taking a snapshot never misses or doubles an event.
    fn apply(&self, kind: ReaderEventKind, reader: &str, atr: &[u8], card_serial: &str) {
        let mut readers = lock(&self.readers);
        match kind {
            ReaderEventKind::ReaderAdded => {
                readers.insert(
                    reader.to_owned(),
                    ReaderInfo {
                        name: reader.to_owned(),
                        card_present: false,
                        atr: Vec::new(),
                        card_serial: String::new(),
                    },
                );
            }
            ReaderEventKind::ReaderRemoved => {
                readers.remove(reader);
            }
            ReaderEventKind::CardInserted | ReaderEventKind::CardRemoved => {
                if let Some(r) = readers.get_mut(reader) {
                    r.card_present = kind == ReaderEventKind::CardInserted;
                    r.atr = atr.to_vec();
                    r.card_serial = card_serial.to_owned();
                }
            }
        }
        tracing::info!(reader, event = ?kind, atr = %hex(atr), card_serial, "PC/SC");
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(ReaderEvent {
            kind,
            reader: reader.to_owned(),
            atr: atr.to_vec(),
            card_serial: card_serial.to_owned(),
            at_ms: now_ms(),
        });
    }

    /// pcscd went away: every reader (and card) is gone from our picture.
    fn forget_all(&self) {
        let names: Vec<(String, bool)> =
            lock(&self.readers).values().map(|r| (r.name.clone(), r.card_present)).collect();
        for (name, present) in names {
            if present {
                self.apply(ReaderEventKind::CardRemoved, &name, &[], "");
            }
            self.apply(ReaderEventKind::ReaderRemoved, &name, &[], "");
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The PC/SC monitor. Dropping it stops the thread.
pub struct ReaderMonitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReaderMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderMonitor")
            .field("readers", &lock(&self.shared.readers).len())
            .field("service_up", &self.shared.service_up.load(Ordering::Relaxed))
            .finish()
    }
}

impl ReaderMonitor {
    /// Starts the monitor thread. pcscd need not be running yet.
    pub fn start() -> std::io::Result<ReaderMonitor> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            readers: Mutex::new(BTreeMap::new()),
            events,
            stop: AtomicBool::new(false),
            context: Mutex::new(None),
            service_up: AtomicBool::new(false),
        });
        let worker = shared.clone();
        std::thread::Builder::new().name("pcsc-monitor".into()).spawn(move || monitor(&worker))?;
        Ok(ReaderMonitor { shared })
    }

    /// The readers now.
    pub fn readers(&self) -> Vec<ReaderInfo> {
        lock(&self.shared.readers).values().cloned().collect()
    }

    /// The readers now, and every change after that picture.
    pub fn subscribe(&self) -> (Vec<ReaderInfo>, broadcast::Receiver<ReaderEvent>) {
        let readers = lock(&self.shared.readers);
        let rx = self.shared.events.subscribe();
        (readers.values().cloned().collect(), rx)
    }

    /// Whether pcscd answered the monitor's last call.
    pub fn service_available(&self) -> bool {
        self.shared.service_up.load(Ordering::Relaxed)
    }
}

impl Drop for ReaderMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(ctx) = lock(&self.shared.context).as_ref() {
            let _ = ctx.cancel();
        }
    }
}

/// Whether an error means "pcscd is gone": throw the context away and start again.
fn service_lost(e: PcscError) -> bool {
    matches!(
        e,
        PcscError::NoService | PcscError::ServiceStopped | PcscError::InvalidHandle | PcscError::CommError
    )
}

fn monitor(shared: &Shared) {
    let mut backoff = BACKOFF_START;
    let mut logged_down = false;
    while !shared.stop.load(Ordering::SeqCst) {
        let ctx = match Context::establish(Scope::User) {
            Ok(c) => c,
            Err(e) => {
                if shared.service_up.swap(false, Ordering::SeqCst) || !logged_down {
                    tracing::warn!(error = %e, "PC/SC service unavailable; retrying");
                    logged_down = true;
                }
                shared.forget_all();
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        *lock(&shared.context) = Some(ctx.clone());
        shared.service_up.store(true, Ordering::SeqCst);
        if logged_down {
            tracing::info!("PC/SC service available");
            logged_down = false;
        }
        backoff = BACKOFF_START;
        let result = watch(shared, &ctx);
        *lock(&shared.context) = None;
        match result {
            Ok(()) => break,
            Err(e) if service_lost(e) => {
                tracing::warn!(error = %e, "PC/SC service lost; re-establishing");
                shared.service_up.store(false, Ordering::SeqCst);
                logged_down = true;
                shared.forget_all();
            }
            Err(e) => {
                // Anything else: start again with a fresh context after a pause.
                tracing::warn!(error = %e, "PC/SC monitor error; restarting it");
                shared.forget_all();
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Watches until the service goes away (Err) or the monitor is stopped (Ok).
fn watch(shared: &Shared, ctx: &Context) -> Result<(), PcscError> {
    let pnp: CString = PNP_NOTIFICATION().to_owned();
    let mut states = vec![ReaderState::new(pnp.clone(), State::UNAWARE)];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        // The reader list: drop states of readers that went, add those that came.
        let names = match ctx.list_readers_owned() {
            Ok(n) => n,
            Err(PcscError::NoReadersAvailable) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut kept = vec![states.remove(0)];
        for rs in states.drain(..) {
            if names.iter().any(|n| n.as_c_str() == rs.name()) {
                kept.push(rs);
            } else {
                let name = rs.name().to_string_lossy().into_owned();
                if lock(&shared.readers).get(&name).is_some_and(|r| r.card_present) {
                    shared.apply(ReaderEventKind::CardRemoved, &name, &[], "");
                }
                shared.apply(ReaderEventKind::ReaderRemoved, &name, &[], "");
            }
        }
        for n in &names {
            if !kept.iter().any(|rs| rs.name() == n.as_c_str()) {
                shared.apply(ReaderEventKind::ReaderAdded, &n.to_string_lossy(), &[], "");
                kept.push(ReaderState::new(n.clone(), State::UNAWARE));
            }
        }
        states = kept;
        // Wait for a change (cancelled by Drop). Readers whose state is UNAWARE answer at once.
        match ctx.get_status_change(None, &mut states) {
            Ok(()) => {}
            Err(PcscError::Timeout) => continue,
            Err(PcscError::Cancelled) => return Ok(()),
            Err(PcscError::UnknownReader) => continue,
            Err(e) => return Err(e),
        }
        for rs in states.iter_mut() {
            let event = rs.event_state();
            if !event.contains(State::CHANGED) {
                continue;
            }
            if rs.name() != pnp.as_c_str() {
                let name = rs.name().to_string_lossy().into_owned();
                let present = event.contains(State::PRESENT) && !event.contains(State::MUTE);
                let was = lock(&shared.readers).get(&name).map(|r| (r.card_present, r.atr.clone()));
                match (was, present) {
                    (Some((false, _)), true) => {
                        let serial = piv_token_serial(ctx, rs.name()).unwrap_or_default();
                        shared.apply(ReaderEventKind::CardInserted, &name, rs.atr(), &serial);
                    }
                    (Some((true, _)), false) => shared.apply(ReaderEventKind::CardRemoved, &name, &[], ""),
                    // Removed and re-inserted between two looks: say both.
                    (Some((true, old)), true) if old != rs.atr() => {
                        shared.apply(ReaderEventKind::CardRemoved, &name, &[], "");
                        let serial = piv_token_serial(ctx, rs.name()).unwrap_or_default();
                        shared.apply(ReaderEventKind::CardInserted, &name, rs.atr(), &serial);
                    }
                    _ => {}
                }
            }
            rs.sync_current_state();
        }
    }
}

/// The token serial OpenSC's PKCS#11 module gives the PIV card in `reader`, read from the
/// card's CHUID: the GUID when the FASC-N says agency 9999 (a "PIV compatible" card) and the
/// GUID is not zero, else the FASC-N; OpenSC writes it in hex and PKCS#11 keeps the last 16
/// characters. None for a card that is not PIV or cannot be read now (logged, not fatal: the
/// reader still reports the card and its ATR).
fn piv_token_serial(ctx: &Context, reader: &std::ffi::CStr) -> Option<String> {
    let card = match ctx.connect(reader, ShareMode::Shared, Protocols::ANY) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "cannot connect to the card to read its CHUID");
            return None;
        }
    };
    let chuid = piv::read_chuid(&card);
    let _ = card.disconnect(Disposition::LeaveCard);
    let chuid = chuid.map_err(|e| tracing::debug!(error = %e, "cannot read the card's CHUID")).ok()?;
    let body = find_tlv(&chuid, 0x53)?;
    let fascn = find_tlv(body, 0x30);
    let guid = find_tlv(body, 0x34).filter(|g| g.len() == 16 && g.iter().any(|b| *b != 0));
    let agency_9999 =
        fascn.is_some_and(|f| f.len() == 25 && f[..3] == [0xD4, 0xE7, 0x39] && f[3] & 0x80 != 0);
    let id = match (fascn, guid) {
        (Some(f), _) if f.len() == 25 && !(agency_9999 && guid.is_some()) => f,
        (_, Some(g)) => g,
        _ => return None,
    };
    let hex = hex(id);
    Some(hex[hex.len().saturating_sub(16)..].to_owned())
}

/// The value of the first BER-TLV with one-byte tag `tag` at the top level of `b`.
fn find_tlv(mut b: &[u8], tag: u8) -> Option<&[u8]> {
    while !b.is_empty() {
        let t = *b.first()?;
        let (len, header) = match *b.get(1)? {
            n if n < 0x80 => (usize::from(n), 2),
            0x81 => (usize::from(*b.get(2)?), 3),
            0x82 => ((usize::from(*b.get(2)?) << 8) | usize::from(*b.get(3)?), 4),
            _ => return None,
        };
        let value = b.get(header..header + len)?;
        if t == tag {
            return Some(value);
        }
        b = &b[header + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_top_level_tlvs_and_stops_at_truncation() {
        let chuid = [0x53, 0x08, 0x30, 0x01, 0xAA, 0x34, 0x02, 0x01, 0x02, 0xFE];
        let body = find_tlv(&chuid, 0x53).expect("53");
        assert_eq!(find_tlv(body, 0x30), Some(&[0xAA][..]));
        assert_eq!(find_tlv(body, 0x34), Some(&[0x01, 0x02][..]));
        assert_eq!(find_tlv(body, 0x35), None);
        assert_eq!(find_tlv(&[0x53, 0x05, 0x01], 0x53), None, "truncated value");
        let long: Vec<u8> = [&[0x53, 0x81, 0x80][..], &[0u8; 0x80]].concat();
        assert_eq!(find_tlv(&long, 0x53).map(<[u8]>::len), Some(0x80));
    }
}
