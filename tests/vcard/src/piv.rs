//! The card itself: a PIV application (NIST SP 800-73-4) close enough to a real card that
//! OpenSC's PIV driver exposes it as a PKCS#11 token. SELECT, GET DATA (CHUID, CCC, discovery
//! object, certificate objects), VERIFY with a retry counter that blocks at zero, CHANGE
//! REFERENCE DATA, RESET RETRY COUNTER with the PUK, GENERATE ASYMMETRIC KEY PAIR (EC P-256),
//! GENERAL AUTHENTICATE (ECDSA signing), PUT DATA, with command chaining and GET RESPONSE.
//!
//! It is a test fixture and deliberately lax where a real card is strict: GENERATE and PUT DATA
//! need no management-key authentication (OpenSC cannot provision PIV cards anyway; a card
//! management system does it with these APDUs). Its state can live in a JSON file so that a
//! card "pulled out" (the process stopped) and "put back" keeps its keys and certificates.

use crate::apdu::*;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The PIV application identifier (its first nine bytes are what SELECT names).
pub const PIV_AID: [u8; 11] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00];
/// A T=1 ATR whose historical bytes say "cardhsm!": no OpenSC ATR table knows it (the minimal
/// 3B:80:80:01:01 is claimed by several drivers), so OpenSC's PIV driver finds the card the
/// way it finds any PIV card, by selecting the PIV application.
pub const ATR: [u8; 13] = [0x3B, 0x88, 0x80, 0x01, b'c', b'a', b'r', b'd', b'h', b's', b'm', b'!', 0x4A];
/// Tries before the PIN (and PUK) block.
pub const MAX_TRIES: u8 = 3;

const ALG_ECC_P256: u8 = 0x11;
const TAG_CHUID: &str = "5fc102";
const TAG_CCC: &str = "5fc107";
/// Certificate object of each key slot: 9A authentication, 9C signature, 9D key management,
/// 9E card authentication.
const SLOTS: [(u8, &str); 4] = [(0x9A, "5fc105"), (0x9C, "5fc10a"), (0x9D, "5fc10b"), (0x9E, "5fc101")];

/// Everything the card remembers (persisted as JSON when a state file is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardState {
    /// The CHUID GUID, hex: OpenSC derives the token serial from it.
    pub guid: String,
    pub pin: String,
    pub puk: String,
    pub pin_tries_left: u8,
    pub puk_tries_left: u8,
    /// Data object tag (hex) → contents (hex, what goes inside tag 53).
    pub objects: BTreeMap<String, String>,
    /// Key slot (hex) → P-256 private scalar (hex). A test card: keys in a file are fine.
    pub keys: BTreeMap<String, String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

impl CardState {
    /// A fresh card: CHUID with `guid`, a CCC, no keys, no certificates.
    pub fn new(guid: [u8; 16], pin: &str, puk: &str) -> CardState {
        // FASC-N with agency code 9999 (a non-federal, "PIV compatible" issuer): that tells
        // OpenSC to take the card's serial from the GUID instead.
        const FASCN_9999: [u8; 25] = [
            0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68, 0x58, 0x21, 0x08,
            0x42, 0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB,
        ];
        let mut chuid = tlv(&[0x30], &FASCN_9999);
        chuid.extend(tlv(&[0x34], &guid));
        chuid.extend(tlv(&[0x35], b"20451231"));
        chuid.extend(tlv(&[0x3E], &[]));
        chuid.extend(tlv(&[0xFE], &[]));
        let mut card_id = vec![0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02];
        card_id.extend_from_slice(&guid[..14]);
        let mut ccc = tlv(&[0xF0], &card_id);
        for (tag, value) in [
            (0xF1u8, &[0x21u8][..]),
            (0xF2, &[0x21]),
            (0xF3, &[]),
            (0xF4, &[0x00]),
            (0xF5, &[0x10]),
            (0xF6, &[]),
            (0xF7, &[]),
            (0xFA, &[]),
            (0xFB, &[]),
            (0xFC, &[]),
            (0xFD, &[]),
            (0xFE, &[]),
        ] {
            ccc.extend(tlv(&[tag], value));
        }
        CardState {
            guid: hex(&guid),
            pin: pin.to_owned(),
            puk: puk.to_owned(),
            pin_tries_left: MAX_TRIES,
            puk_tries_left: MAX_TRIES,
            objects: BTreeMap::from([(TAG_CHUID.to_owned(), hex(&chuid)), (TAG_CCC.to_owned(), hex(&ccc))]),
            keys: BTreeMap::new(),
        }
    }
}

/// The card with its volatile state (what a power cycle forgets).
#[derive(Debug)]
pub struct PivCard {
    pub state: CardState,
    state_file: Option<PathBuf>,
    selected: bool,
    pin_verified: bool,
    /// Data of a chained command so far, and its instruction.
    chain: Vec<u8>,
    chain_ins: Option<u8>,
    /// Response bytes still to be fetched with GET RESPONSE.
    pending: Vec<u8>,
}

impl PivCard {
    pub fn new(state: CardState, state_file: Option<PathBuf>) -> PivCard {
        // The PIV application is the card's default application: selected at power-up, as on
        // most PIV cards (OpenSC reads the discovery object before it selects anything).
        PivCard {
            state,
            state_file,
            selected: true,
            pin_verified: false,
            chain: Vec::new(),
            chain_ins: None,
            pending: Vec::new(),
        }
    }

    /// Power off / reset: the security status and any half-done exchange are gone.
    pub fn reset(&mut self) {
        self.selected = true;
        self.pin_verified = false;
        self.chain.clear();
        self.chain_ins = None;
        self.pending.clear();
    }

    /// Writes the state file (when there is one), e.g. for a card just made.
    pub fn persist(&self) {
        self.save();
    }

    fn save(&self) {
        if let Some(path) = &self.state_file
            && let Ok(json) = serde_json::to_vec_pretty(&self.state)
            && let Err(e) = std::fs::write(path, json)
        {
            eprintln!("cardhsm-vcard: cannot save {}: {e}", path.display());
        }
    }

    /// One command APDU in, one response APDU out.
    pub fn process(&mut self, raw: &[u8]) -> Vec<u8> {
        let cmd = match Command::parse(raw) {
            Ok(c) => c,
            Err(sw) => return respond(Vec::new(), sw),
        };
        if cmd.cla & !0x10 != 0 {
            return respond(Vec::new(), SW_CLA_NOT_SUPPORTED);
        }
        if cmd.ins == 0xC0 {
            return self.get_response(cmd.le.unwrap_or(256));
        }
        self.pending.clear();
        // Command chaining: collect, acknowledge, and act on the last one. OpenSC re-selects the
        // PIV application whenever it takes the card lock (every `opensc-tool -s`), so a
        // SELECT in the middle of a chain is answered without breaking the chain; any other
        // command abandons it.
        if cmd.ins == 0xA4 && !self.chain.is_empty() {
            return match self.select(&cmd) {
                (data, SW_OK) => respond(data, SW_OK),
                (_, sw) => {
                    self.chain.clear();
                    self.chain_ins = None;
                    respond(Vec::new(), sw)
                }
            };
        }
        if self.chain_ins.is_some_and(|ins| ins != cmd.ins) {
            self.chain.clear();
            self.chain_ins = None;
        }
        if cmd.chained() {
            self.chain.extend_from_slice(&cmd.data);
            self.chain_ins = Some(cmd.ins);
            return respond(Vec::new(), SW_OK);
        }
        let mut cmd = cmd;
        if self.chain_ins.take().is_some() {
            let mut all = std::mem::take(&mut self.chain);
            all.extend_from_slice(&cmd.data);
            cmd.data = all;
        }
        let (data, sw) = match cmd.ins {
            0xA4 => self.select(&cmd),
            _ if !self.selected => (Vec::new(), SW_CONDITIONS_NOT_SATISFIED),
            0xCB => self.get_data(&cmd),
            0x20 => self.verify(&cmd),
            0x24 => self.change_reference_data(&cmd),
            0x2C => self.reset_retry_counter(&cmd),
            0x47 => self.generate(&cmd),
            0x87 => self.general_authenticate(&cmd),
            0xDB => self.put_data(&cmd),
            _ => (Vec::new(), SW_INS_NOT_SUPPORTED),
        };
        if sw != SW_OK {
            return respond(Vec::new(), sw);
        }
        self.pending = data;
        self.get_response(cmd.le.unwrap_or(256))
    }

    /// Hands out up to `le` bytes of the pending response; 61xx says how much is left.
    fn get_response(&mut self, le: usize) -> Vec<u8> {
        let n = le.min(self.pending.len());
        let chunk: Vec<u8> = self.pending.drain(..n).collect();
        let sw = match self.pending.len() {
            0 => SW_OK,
            left if left >= 256 => 0x6100,
            left => 0x6100 | left as u16,
        };
        respond(chunk, sw)
    }

    fn select(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if cmd.p1 != 0x04 || cmd.data.len() < 5 || !PIV_AID.starts_with(&cmd.data[..cmd.data.len().min(11)]) {
            // Another application: the PIV one is no longer selected.
            self.selected = false;
            return (Vec::new(), SW_FILE_NOT_FOUND);
        }
        self.selected = true;
        // Application property template: the AID's PIX, the coexistent tag allocation
        // authority, an application label and the algorithms supported.
        let mut apt = tlv(&[0x4F], &PIV_AID[5..]);
        apt.extend(tlv(&[0x79], &tlv(&[0x4F], &PIV_AID[..5])));
        apt.extend(tlv(&[0x50], b"cardhsm virtual PIV"));
        let mut algs = tlv(&[0x80], &[ALG_ECC_P256]);
        algs.extend(tlv(&[0x06], &[]));
        apt.extend(tlv(&[0xAC], &algs));
        (tlv(&[0x61], &apt), SW_OK)
    }

    fn get_data(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return (Vec::new(), SW_INCORRECT_P1P2);
        }
        let Some((&[0x5C], tag, _)) = read_tlv(&cmd.data) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        if tag == [0x7E] {
            // Discovery object: the PIV AID, and a PIN usage policy of "PIV PIN only".
            let mut d = tlv(&[0x4F], &PIV_AID);
            d.extend(tlv(&[0x5F, 0x2F], &[0x40, 0x00]));
            return (tlv(&[0x7E], &d), SW_OK);
        }
        match self.state.objects.get(&hex(tag)) {
            Some(contents) => (tlv(&[0x53], &unhex(contents)), SW_OK),
            None => (Vec::new(), SW_FILE_NOT_FOUND),
        }
    }

    fn put_data(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return (Vec::new(), SW_INCORRECT_P1P2);
        }
        let Some((&[0x5C], tag, rest)) = read_tlv(&cmd.data) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let Some((&[0x53], contents, _)) = read_tlv(rest) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let key = hex(tag);
        if contents.is_empty() {
            self.state.objects.remove(&key);
        } else {
            self.state.objects.insert(key, hex(contents));
        }
        self.save();
        (Vec::new(), SW_OK)
    }

    /// The PIN as the card compares it: the 8-byte field without its 0xFF padding.
    fn pin_field(field: &[u8]) -> Option<String> {
        if field.len() != 8 {
            return None;
        }
        let end = field.iter().position(|b| *b == 0xFF).unwrap_or(8);
        String::from_utf8(field[..end].to_vec()).ok()
    }

    fn tries_sw(left: u8) -> u16 {
        if left == 0 { SW_AUTH_BLOCKED } else { 0x63C0 | u16::from(left) }
    }

    fn verify(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if cmd.p2 != 0x80 {
            return (Vec::new(), SW_REF_NOT_FOUND);
        }
        if cmd.p1 == 0xFF {
            self.pin_verified = false;
            return (Vec::new(), SW_OK);
        }
        if cmd.data.is_empty() {
            // The status query: verified, or how many tries are left.
            return if self.pin_verified {
                (Vec::new(), SW_OK)
            } else {
                (Vec::new(), Self::tries_sw(self.state.pin_tries_left))
            };
        }
        if self.state.pin_tries_left == 0 {
            return (Vec::new(), SW_AUTH_BLOCKED);
        }
        let Some(pin) = Self::pin_field(&cmd.data) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        if pin == self.state.pin {
            self.state.pin_tries_left = MAX_TRIES;
            self.pin_verified = true;
            self.save();
            (Vec::new(), SW_OK)
        } else {
            self.state.pin_tries_left -= 1;
            self.pin_verified = false;
            self.save();
            (Vec::new(), Self::tries_sw(self.state.pin_tries_left))
        }
    }

    fn change_reference_data(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if cmd.data.len() != 16 || !matches!(cmd.p2, 0x80 | 0x81) {
            return (Vec::new(), SW_WRONG_DATA);
        }
        let (Some(old), Some(new)) = (Self::pin_field(&cmd.data[..8]), Self::pin_field(&cmd.data[8..]))
        else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let puk = cmd.p2 == 0x81;
        let (secret, left) = if puk {
            (&mut self.state.puk, &mut self.state.puk_tries_left)
        } else {
            (&mut self.state.pin, &mut self.state.pin_tries_left)
        };
        if *left == 0 {
            return (Vec::new(), SW_AUTH_BLOCKED);
        }
        if old != *secret {
            *left -= 1;
            let sw = Self::tries_sw(*left);
            self.save();
            return (Vec::new(), sw);
        }
        *secret = new;
        *left = MAX_TRIES;
        self.save();
        (Vec::new(), SW_OK)
    }

    fn reset_retry_counter(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if cmd.p2 != 0x80 || cmd.data.len() != 16 {
            return (Vec::new(), SW_WRONG_DATA);
        }
        let (Some(puk), Some(new)) = (Self::pin_field(&cmd.data[..8]), Self::pin_field(&cmd.data[8..]))
        else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        if self.state.puk_tries_left == 0 {
            return (Vec::new(), SW_AUTH_BLOCKED);
        }
        if puk != self.state.puk {
            self.state.puk_tries_left -= 1;
            self.save();
            return (Vec::new(), Self::tries_sw(self.state.puk_tries_left));
        }
        self.state.puk_tries_left = MAX_TRIES;
        self.state.pin = new;
        self.state.pin_tries_left = MAX_TRIES;
        self.save();
        (Vec::new(), SW_OK)
    }

    fn generate(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if !SLOTS.iter().any(|(s, _)| *s == cmd.p2) {
            return (Vec::new(), SW_INCORRECT_P1P2);
        }
        let Some((&[0xAC], template, _)) = read_tlv(&cmd.data) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let Some((&[0x80], &[alg], _)) = read_tlv(template) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        if alg != ALG_ECC_P256 {
            return (Vec::new(), SW_WRONG_DATA);
        }
        let key = loop {
            let mut scalar = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut scalar);
            if let Ok(k) = SigningKey::from_slice(&scalar) {
                break k;
            }
        };
        let point = key.verifying_key().to_sec1_point(false);
        self.state.keys.insert(format!("{:02x}", cmd.p2), hex(&key.to_bytes()));
        self.save();
        (tlv(&[0x7F, 0x49], &tlv(&[0x86], point.as_bytes())), SW_OK)
    }

    fn general_authenticate(&mut self, cmd: &Command) -> (Vec<u8>, u16) {
        if cmd.p1 != ALG_ECC_P256 {
            return (Vec::new(), SW_INCORRECT_P1P2);
        }
        let Some(scalar) = self.state.keys.get(&format!("{:02x}", cmd.p2)) else {
            return (Vec::new(), SW_REF_NOT_FOUND);
        };
        // Card authentication (9E) works without the PIN; the others need it.
        if cmd.p2 != 0x9E && !self.pin_verified {
            return (Vec::new(), SW_SECURITY_NOT_SATISFIED);
        }
        let Some((&[0x7C], mut template, _)) = read_tlv(&cmd.data) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let mut challenge = None;
        while let Some((tag, value, rest)) = read_tlv(template) {
            if tag == [0x81] {
                challenge = Some(value);
            }
            template = rest;
        }
        let Some(digest) = challenge else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let Ok(key) = SigningKey::from_slice(&unhex(scalar)) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let signature: Signature = match key.sign_prehash(digest) {
            Ok(s) => s,
            Err(_) => return (Vec::new(), SW_WRONG_DATA),
        };
        (tlv(&[0x7C], &tlv(&[0x82], &der_signature(&signature))), SW_OK)
    }
}

/// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, as PIV returns it.
fn der_signature(sig: &Signature) -> Vec<u8> {
    let int = |b: &[u8]| {
        let first = b.iter().position(|x| *x != 0).unwrap_or(b.len() - 1);
        let mut v = b[first..].to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        tlv(&[0x02], &v)
    };
    let bytes = sig.to_bytes();
    let mut seq = int(&bytes[..32]);
    seq.extend(int(&bytes[32..]));
    tlv(&[0x30], &seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> PivCard {
        PivCard::new(CardState::new([7; 16], "123456", "12345678"), None)
    }

    fn sw(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
    }

    fn pin(p: &str) -> Vec<u8> {
        let mut v = p.as_bytes().to_vec();
        v.resize(8, 0xFF);
        v
    }

    fn apdu(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, ins, p1, p2, data.len() as u8];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn select_then_pin_tries_block_at_zero_and_the_puk_unblocks() {
        let mut c = card();
        // Selecting another application deselects PIV; selecting PIV again works.
        assert_eq!(sw(&c.process(&apdu(0xA4, 4, 0, &[0xA0, 0, 0, 0, 0x62]))), SW_FILE_NOT_FOUND);
        assert_eq!(sw(&c.process(&apdu(0x20, 0, 0x80, &pin("123456")))), SW_CONDITIONS_NOT_SATISFIED);
        assert_eq!(sw(&c.process(&apdu(0xA4, 4, 0, &PIV_AID[..9]))), SW_OK);
        assert_eq!(sw(&c.process(&[0, 0x20, 0, 0x80])), 0x63C3);
        assert_eq!(sw(&c.process(&apdu(0x20, 0, 0x80, &pin("000000")))), 0x63C2);
        assert_eq!(sw(&c.process(&apdu(0x20, 0, 0x80, &pin("000000")))), 0x63C1);
        assert_eq!(sw(&c.process(&apdu(0x20, 0, 0x80, &pin("000000")))), SW_AUTH_BLOCKED);
        assert_eq!(sw(&c.process(&apdu(0x20, 0, 0x80, &pin("123456")))), SW_AUTH_BLOCKED);
        let mut unblock = pin("12345678");
        unblock.extend(pin("654321"));
        assert_eq!(sw(&c.process(&apdu(0x2C, 0, 0x80, &unblock))), SW_OK);
        assert_eq!(sw(&c.process(&apdu(0x20, 0, 0x80, &pin("654321")))), SW_OK);
        assert_eq!(sw(&c.process(&[0, 0x20, 0, 0x80])), SW_OK);
    }

    #[test]
    fn generate_sign_and_store_a_certificate() {
        let mut c = card();
        c.process(&apdu(0xA4, 4, 0, &PIV_AID[..9]));
        let r = c.process(&apdu(0x47, 0, 0x9A, &[0xAC, 3, 0x80, 1, 0x11]));
        assert_eq!(sw(&r), SW_OK);
        let (tag, inner, _) = read_tlv(&r[..r.len() - 2]).expect("7F49");
        assert_eq!(tag, [0x7F, 0x49]);
        let (_, point, _) = read_tlv(inner).expect("86");
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).expect("point");
        let digest = [0x5A; 32];
        let mut ga = vec![0x7C, 36, 0x82, 0, 0x81, 32];
        ga.extend_from_slice(&digest);
        assert_eq!(sw(&c.process(&apdu(0x87, 0x11, 0x9A, &ga))), SW_SECURITY_NOT_SATISFIED);
        c.process(&apdu(0x20, 0, 0x80, &pin("123456")));
        let r = c.process(&apdu(0x87, 0x11, 0x9A, &ga));
        assert_eq!(sw(&r), SW_OK);
        let (_, inner, _) = read_tlv(&r[..r.len() - 2]).expect("7C");
        let (_, der, _) = read_tlv(inner).expect("82");
        let (_, seq, _) = read_tlv(der).expect("SEQUENCE");
        let (_, r, rest) = read_tlv(seq).expect("r");
        let (_, s, _) = read_tlv(rest).expect("s");
        let mut rs = [0u8; 64];
        let r = &r[r.len().saturating_sub(32)..];
        let s = &s[s.len().saturating_sub(32)..];
        rs[32 - r.len()..32].copy_from_slice(r);
        rs[64 - s.len()..].copy_from_slice(s);
        let sig = Signature::from_slice(&rs).expect("r and s");
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        vk.verify_prehash(&digest, &sig).expect("verifies");

        // PUT DATA a large certificate object through chaining, read it back through 61xx.
        let cert = vec![0x30; 700];
        let mut contents = tlv(&[0x70], &cert);
        contents.extend(tlv(&[0x71], &[0]));
        contents.extend(tlv(&[0xFE], &[]));
        let mut body = tlv(&[0x5C], &[0x5F, 0xC1, 0x05]);
        body.extend(tlv(&[0x53], &contents));
        let (first, second) = body.split_at(200);
        let mut chained = apdu(0xDB, 0x3F, 0xFF, first);
        chained[0] = 0x10;
        assert_eq!(sw(&c.process(&chained)), SW_OK);
        let mut last = vec![0, 0xDB, 0x3F, 0xFF, 0, (second.len() >> 8) as u8, second.len() as u8];
        last.extend_from_slice(second);
        assert_eq!(sw(&c.process(&last)), SW_OK);
        let mut got = Vec::new();
        let mut r = c.process(&[0, 0xCB, 0x3F, 0xFF, 5, 0x5C, 3, 0x5F, 0xC1, 0x05, 0]);
        while sw(&r) & 0xFF00 == 0x6100 {
            got.extend_from_slice(&r[..r.len() - 2]);
            r = c.process(&[0, 0xC0, 0, 0, 0]);
        }
        assert_eq!(sw(&r), SW_OK);
        got.extend_from_slice(&r[..r.len() - 2]);
        assert_eq!(got, tlv(&[0x53], &contents));
    }
}
