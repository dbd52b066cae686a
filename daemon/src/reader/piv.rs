//! Provisioning a PIV card in a reader, below the card service: what a card management system
//! does with APDUs because PKCS#11 cannot (OpenSC's PIV module is read-only for keys and
//! objects): GENERATE ASYMMETRIC KEY PAIR in a key slot, and PUT DATA of the slot's
//! certificate object (NIST SP 800-73-4). Each call opens its own PC/SC context and exclusive
//! transaction, selects the PIV application and runs on the caller's (blocking) thread.
//!
//! Not done: management-key (9B) authentication, which real PIV cards require before GENERATE
//! and PUT DATA; the test card does not ask for it. The reconnect after a card reset is not
//! covered by a test (nothing in the test setup resets a card between two APDUs on demand).

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use std::ffi::CString;

/// The key slots in the order a card policy's keys fill them, with their certificate object
/// tags and the CKA_ID OpenSC gives each slot's key and certificate.
pub const SLOTS: [PivSlot; 4] = [
    PivSlot { key_ref: 0x9A, object: [0x5F, 0xC1, 0x05], pkcs11_id: 0x01 },
    PivSlot { key_ref: 0x9C, object: [0x5F, 0xC1, 0x0A], pkcs11_id: 0x02 },
    PivSlot { key_ref: 0x9D, object: [0x5F, 0xC1, 0x0B], pkcs11_id: 0x03 },
    PivSlot { key_ref: 0x9E, object: [0x5F, 0xC1, 0x01], pkcs11_id: 0x04 },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PivSlot {
    pub key_ref: u8,
    pub object: [u8; 3],
    pub pkcs11_id: u8,
}

impl PivSlot {
    /// The slot whose key and certificate OpenSC shows with this CKA_ID.
    pub fn by_pkcs11_id(id: &[u8]) -> Option<PivSlot> {
        SLOTS.into_iter().find(|s| id == [s.pkcs11_id])
    }
}

/// Why a PIV operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PivError {
    #[error("PC/SC: {0}")]
    Pcsc(#[from] pcsc::Error),
    #[error("reader name {0:?} is not valid")]
    ReaderName(String),
    #[error("the card answered {what} with status {sw:04X}")]
    Status { what: &'static str, sw: u16 },
    #[error("the card's answer to {0} is malformed")]
    Malformed(&'static str),
    /// No status word at all: the card went away during the exchange (vpcd answers so).
    #[error("the card did not answer {0} (removed?)")]
    NoAnswer(&'static str),
    #[error("wrong {what}: {tries_left} tries left")]
    WrongSecret { what: &'static str, tries_left: u8 },
    #[error("the {0} is blocked")]
    Blocked(&'static str),
}

/// The PIV application identifier, as SELECT names it.
const PIV_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];
/// The algorithm identifier of EC P-256 keys (SP 800-78-4).
const ALG_EC_P256: u8 = 0x11;
/// SubjectPublicKeyInfo DER of a P-256 key, up to the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86,
    0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A PIV card being talked to: connected exclusively, application selected. Dropping it
/// disconnects with a card reset, which also clears any security status.
struct Session {
    card: pcsc::Card,
}

impl Session {
    fn open(reader: &str) -> Result<Session, PivError> {
        let ctx = Context::establish(Scope::User)?;
        let name = CString::new(reader).map_err(|_| PivError::ReaderName(reader.to_owned()))?;
        let card = ctx.connect(&name, ShareMode::Exclusive, Protocols::ANY)?;
        let mut s = Session { card };
        s.command(0xA4, 0x04, 0x00, &PIV_AID, true, "SELECT PIV")?;
        Ok(s)
    }

    /// [`Session::exchange`], surviving a card reset by someone else (SCARD_W_RESET_CARD):
    /// reconnect, select the PIV application again and send the command once more. (The
    /// commands used here need no earlier PIN verification, which a reset clears.)
    fn command(
        &mut self,
        ins: u8,
        p1: u8,
        p2: u8,
        data: &[u8],
        answer_expected: bool,
        what: &'static str,
    ) -> Result<Vec<u8>, PivError> {
        match self.exchange(ins, p1, p2, data, answer_expected, what) {
            Err(PivError::Pcsc(pcsc::Error::ResetCard)) => {
                tracing::info!(what, "the card was reset; reconnecting");
                self.card.reconnect(ShareMode::Exclusive, Protocols::ANY, Disposition::LeaveCard)?;
                if ins != 0xA4 {
                    self.exchange(0xA4, 0x04, 0x00, &PIV_AID, true, "SELECT PIV")?;
                }
                self.exchange(ins, p1, p2, data, answer_expected, what)
            }
            other => other,
        }
    }

    /// One command with `data` (chained in pieces of at most 255 bytes, ISO 7816-4 5.1.1),
    /// and its whole answer (61xx followed with GET RESPONSE). The final status must be 9000.
    fn exchange(
        &self,
        ins: u8,
        p1: u8,
        p2: u8,
        data: &[u8],
        answer_expected: bool,
        what: &'static str,
    ) -> Result<Vec<u8>, PivError> {
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(255).collect() };
        let last = chunks.len() - 1;
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let cla = if i < last { 0x10 } else { 0x00 };
            let mut apdu = vec![cla, ins, p1, p2];
            if !chunk.is_empty() {
                apdu.push(chunk.len() as u8);
                apdu.extend_from_slice(chunk);
            }
            if i == last && answer_expected {
                apdu.push(0x00);
            }
            out.extend(transmit(&self.card, &apdu, what)?);
        }
        Ok(out)
    }
}

/// Sends one APDU and collects its whole answer, following 61xx with GET RESPONSE; the final
/// status must be 9000. Returns the data without the status word.
fn transmit(card: &pcsc::Card, apdu: &[u8], what: &'static str) -> Result<Vec<u8>, PivError> {
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    let mut next = apdu.to_vec();
    loop {
        let answer = card.transmit(&next, &mut buf)?;
        let (body, sw) = answer.split_at(answer.len().checked_sub(2).ok_or(PivError::NoAnswer(what))?);
        out.extend_from_slice(body);
        match (sw[0], sw[1]) {
            (0x90, 0x00) => return Ok(out),
            (0x61, n) if out.len() < 65536 => next = vec![0x00, 0xC0, 0x00, 0x00, n],
            (a, b) => return Err(PivError::Status { what, sw: u16::from_be_bytes([a, b]) }),
        }
    }
}

/// The CHUID of the PIV card on `card` (a connection the caller owns, shared or not): SELECT
/// of the PIV application, then GET DATA of the CHUID object; the answer with its 53 wrapper.
pub(super) fn read_chuid(card: &pcsc::Card) -> Result<Vec<u8>, PivError> {
    let mut select = vec![0x00, 0xA4, 0x04, 0x00, PIV_AID.len() as u8];
    select.extend_from_slice(&PIV_AID);
    select.push(0x00);
    transmit(card, &select, "SELECT PIV")?;
    transmit(card, &[0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00], "GET DATA CHUID")
}

fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

/// Generates an EC P-256 key pair in `slot` of the PIV card in `reader` (replacing the slot's
/// key) and returns its SubjectPublicKeyInfo DER.
pub fn generate_p256(reader: &str, slot: PivSlot) -> Result<Vec<u8>, PivError> {
    let mut s = Session::open(reader)?;
    let template = tlv(&[0xAC], &tlv(&[0x80], &[ALG_EC_P256]));
    let answer = s.command(0x47, 0x00, slot.key_ref, &template, true, "GENERATE ASYMMETRIC KEY PAIR")?;
    // 7F49 { 86: uncompressed point }
    let point = answer
        .windows(3)
        .position(|w| w == [0x86, 0x41, 0x04])
        .and_then(|i| answer.get(i + 2..i + 2 + 65))
        .ok_or(PivError::Malformed("GENERATE ASYMMETRIC KEY PAIR"))?;
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point);
    Ok(spki)
}

/// Writes (`Some`) or clears (`None`) the certificate object of `slot`.
pub fn put_certificate(reader: &str, slot: PivSlot, der: Option<&[u8]>) -> Result<(), PivError> {
    let mut s = Session::open(reader)?;
    let contents = match der {
        Some(der) => {
            let mut c = tlv(&[0x70], der);
            c.extend(tlv(&[0x71], &[0x00])); // CertInfo: not compressed
            c.extend(tlv(&[0xFE], &[])); // error detection code
            c
        }
        None => Vec::new(),
    };
    let mut data = tlv(&[0x5C], &slot.object);
    data.extend(tlv(&[0x53], &contents));
    s.command(0xDB, 0x3F, 0xFF, &data, false, "PUT DATA")?;
    Ok(())
}

/// A PIN or PUK in the 8-byte field PIV takes: the digits, padded with 0xFF.
fn pin_field(pin: &str) -> [u8; 8] {
    let mut field = [0xFF; 8];
    for (f, b) in field.iter_mut().zip(pin.bytes()) {
        *f = b;
    }
    field
}

/// What a status word says about a PIN or PUK check.
fn secret_result(r: Result<Vec<u8>, PivError>, what: &'static str) -> Result<(), PivError> {
    match r {
        Ok(_) => Ok(()),
        Err(PivError::Status { sw, .. }) if sw & 0xFFF0 == 0x63C0 => {
            let tries_left = (sw & 0x0F) as u8;
            if tries_left == 0 {
                Err(PivError::Blocked(what))
            } else {
                Err(PivError::WrongSecret { what, tries_left })
            }
        }
        Err(PivError::Status { sw: 0x6983, .. }) => Err(PivError::Blocked(what)),
        Err(e) => Err(e),
    }
}

/// CHANGE REFERENCE DATA of the PIV card application PIN (80): old PIN, new PIN.
pub fn change_pin(reader: &str, old: &str, new: &str) -> Result<(), PivError> {
    let mut s = Session::open(reader)?;
    let mut data = pin_field(old).to_vec();
    data.extend_from_slice(&pin_field(new));
    secret_result(s.command(0x24, 0x00, 0x80, &data, false, "CHANGE REFERENCE DATA"), "PIN")
}

/// RESET RETRY COUNTER of the PIN with the PUK: sets `new` and unblocks.
pub fn unblock_pin(reader: &str, puk: &str, new: &str) -> Result<(), PivError> {
    let mut s = Session::open(reader)?;
    let mut data = pin_field(puk).to_vec();
    data.extend_from_slice(&pin_field(new));
    secret_result(s.command(0x2C, 0x00, 0x80, &data, false, "RESET RETRY COUNTER"), "PUK")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_apdus() {
        assert_eq!(PivSlot::by_pkcs11_id(&[0x02]).map(|s| s.key_ref), Some(0x9C));
        assert_eq!(PivSlot::by_pkcs11_id(&[0x05]), None);
        assert_eq!(tlv(&[0x53], &[0; 300])[..4], [0x53, 0x82, 0x01, 0x2C]);
        assert_eq!(pin_field("123456"), [b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF]);
        let status = |sw| Err(PivError::Status { what: "VERIFY", sw });
        assert!(matches!(
            secret_result(status(0x63C2), "PIN"),
            Err(PivError::WrongSecret { tries_left: 2, .. })
        ));
        assert!(matches!(secret_result(status(0x63C0), "PIN"), Err(PivError::Blocked("PIN"))));
        assert!(matches!(secret_result(status(0x6983), "PUK"), Err(PivError::Blocked("PUK"))));
        assert!(secret_result(Ok(Vec::new()), "PIN").is_ok());
    }
}
