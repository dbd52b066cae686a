//! Certificate serial numbers, from the issuance service into certificates and CRL entries:
//! `CertSerial::random()` makes the 128-bit random positive serial a new certificate gets (the
//! store's unique constraint catches the astronomically unlikely repeat); `from_hex` reads one
//! back from a request or the store.

use super::PkiError;
use super::pem::to_hex;
use rand::RngCore;
use x509_cert::serial_number::SerialNumber;

/// A positive, non-zero certificate serial number of at most 20 octets (RFC 5280 4.1.2.2),
/// held as its big-endian magnitude without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertSerial(Vec<u8>);

impl CertSerial {
    /// 128 random bits with the top bit cleared (so the DER INTEGER needs no sign octet and
    /// stays 16 bytes at most), never zero. From the thread-local CSPRNG.
    pub fn random() -> CertSerial {
        let mut rng = rand::rng();
        loop {
            let mut bytes = [0u8; 16];
            rng.fill_bytes(&mut bytes);
            bytes[0] &= 0x7F;
            if let Ok(serial) = CertSerial::from_bytes(&bytes) {
                return serial;
            }
        }
    }

    /// From a big-endian unsigned magnitude; leading zero bytes are dropped. Zero and more
    /// than 20 significant octets are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<CertSerial, PkiError> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let magnitude = &bytes[start..];
        if magnitude.is_empty() {
            return Err(PkiError::invalid("serial_number", "must not be zero"));
        }
        // The DER INTEGER adds a sign octet when the top bit is set; 20 octets is the limit
        // of the encoding (RFC 5280 4.1.2.2).
        let encoded_len = magnitude.len() + usize::from(magnitude[0] & 0x80 != 0);
        if encoded_len > 20 {
            return Err(PkiError::invalid("serial_number", "longer than 20 octets"));
        }
        Ok(CertSerial(magnitude.to_vec()))
    }

    /// From hex as people and tools write it: either case, optional `0x` prefix, optional
    /// `:` or space separators between bytes (`01:A2:…`, as `openssl x509 -serial` prints
    /// without them).
    pub fn from_hex(s: &str) -> Result<CertSerial, PkiError> {
        let t = s.trim();
        let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        let digits: String = t.chars().filter(|c| *c != ':' && *c != ' ').collect();
        if digits.is_empty() {
            return Err(PkiError::invalid("serial_number", "empty"));
        }
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(PkiError::invalid("serial_number", "not hexadecimal"));
        }
        if digits.len() > 80 {
            return Err(PkiError::invalid("serial_number", "longer than 20 octets"));
        }
        let padded = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits };
        let mut bytes = Vec::with_capacity(padded.len() / 2);
        for pair in padded.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair)
                .map_err(|_| PkiError::invalid("serial_number", "not hexadecimal"))?;
            bytes.push(
                u8::from_str_radix(pair, 16)
                    .map_err(|_| PkiError::invalid("serial_number", "not hexadecimal"))?,
            );
        }
        CertSerial::from_bytes(&bytes)
    }

    /// From a certificate's or CRL entry's serial. Zero and negative serials (which some
    /// non-conforming CAs issue) are refused.
    pub fn from_x509(serial: &SerialNumber) -> Result<CertSerial, PkiError> {
        let bytes = serial.as_bytes();
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(PkiError::invalid("serial_number", "negative"));
        }
        CertSerial::from_bytes(bytes)
    }

    /// Lower-case hex of the magnitude, no separators, even length (`5fa1…`). The form the
    /// store keeps and `FindCertificates` returns.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Big-endian magnitude, no leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn to_x509(&self) -> Result<SerialNumber, PkiError> {
        SerialNumber::new(&self.0).map_err(|e| PkiError::encoding("a serial number", e))
    }
}

impl std::fmt::Display for CertSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for CertSerial {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CertSerial::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Encode};

    #[test]
    fn random_serials_are_positive_128_bit_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let s = CertSerial::random();
            assert!(!s.as_bytes().is_empty() && s.as_bytes().len() <= 16);
            if s.as_bytes().len() == 16 {
                assert!(s.as_bytes()[0] < 0x80, "top bit cleared");
            }
            assert_ne!(s.as_bytes()[0], 0, "no leading zero");
            // DER: INTEGER, at most 16 content bytes, positive.
            let der = s.to_x509().expect("x509").to_der().expect("der");
            assert_eq!(der[0], 0x02);
            assert!(der[1] <= 16);
            assert!(der[2] & 0x80 == 0);
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn hex_forms() {
        let s = CertSerial::from_hex("00:0A:bc:01").expect("parses");
        assert_eq!(s.as_bytes(), &[0x0A, 0xBC, 0x01]);
        assert_eq!(s.to_hex(), "0abc01");
        assert_eq!(s.to_string(), "0abc01");
        assert_eq!("0xABC01".parse::<CertSerial>().expect("parses"), s);
        assert_eq!(CertSerial::from_hex(&s.to_hex()).expect("round trip"), s);
        for bad in ["", "  ", "0", "00:00", "xyz", "12-34", &"f".repeat(41)] {
            assert!(
                matches!(CertSerial::from_hex(bad), Err(PkiError::InvalidField { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(CertSerial::from_hex(&format!("7{}", "f".repeat(39))).is_ok());
        assert!(CertSerial::from_hex(&"f".repeat(40)).is_err());
    }

    #[test]
    fn x509_round_trip() {
        // The largest serial: 20 octets in DER. With the top bit set it would need 21.
        let s = CertSerial::from_bytes(&[0x7F; 20]).expect("serial");
        assert!(CertSerial::from_bytes(&[0xFF; 20]).is_err());
        let x = s.to_x509().expect("x509");
        let back = SerialNumber::from_der(&x.to_der().expect("der")).expect("decodes");
        assert_eq!(CertSerial::from_x509(&back).expect("positive"), s);
        assert!(CertSerial::from_bytes(&[0]).is_err());
        assert!(CertSerial::from_bytes(&[1; 21]).is_err());
    }
}
