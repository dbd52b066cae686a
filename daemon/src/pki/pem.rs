//! PEM and fingerprints, at the edges of the pki layer: uploads (CSRs, certificates) arrive as
//! PEM or DER and pass through `der_from_pem_or_der` before parsing; answers leave as PEM
//! (`pem_encode`) and are listed by `sha1_fingerprint` / `sha256_fingerprint`.

use super::PkiError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// PEM label of an X.509 certificate (RFC 7468).
pub const PEM_CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of a PKCS#10 certificate request (RFC 7468).
pub const PEM_CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";
/// The label some older tools (Netscape, MS) write for a PKCS#10 request.
pub const PEM_NEW_CERTIFICATE_REQUEST: &str = "NEW CERTIFICATE REQUEST";
/// PEM label of a CRL (RFC 7468).
pub const PEM_X509_CRL: &str = "X509 CRL";

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// Lower-case hex, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-1 of the DER, lower-case hex (the `fingerprint` device APIs show).
pub fn sha1_fingerprint(der: &[u8]) -> String {
    to_hex(&Sha1::digest(der))
}

/// SHA-256 of the DER, lower-case hex.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    to_hex(&Sha256::digest(der))
}

/// One PEM block: `-----BEGIN label-----`, base64 in 64-character lines, `-----END label-----`,
/// each line ending in `\n`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str(BEGIN);
    out.push_str(label);
    out.push_str(DASHES);
    out.push('\n');
    // Base64 is ASCII: splitting its bytes in 64s keeps every piece valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(END);
    out.push_str(label);
    out.push_str(DASHES);
    out.push('\n');
    out
}

/// Does this input contain a PEM block (rather than being DER)?
pub fn looks_like_pem(input: &[u8]) -> bool {
    find(input, BEGIN.as_bytes(), 0).is_some()
}

/// Every PEM block in `input`, in order, as (label, DER). Text around and between the blocks
/// (`openssl x509 -text` output, comments) is ignored; line length and CRLF line ends are
/// accepted; RFC 1421 header lines (`Proc-Type: …`) are not (an encrypted block is an error).
pub fn pem_decode_all(input: &[u8]) -> Result<Vec<(String, Vec<u8>)>, PkiError> {
    let mut blocks = Vec::new();
    let mut pos = 0;
    while let Some(begin) = find(input, BEGIN.as_bytes(), pos) {
        let label_start = begin + BEGIN.len();
        let label_end = find(input, DASHES.as_bytes(), label_start)
            .ok_or_else(|| PkiError::malformed("PEM", "unterminated BEGIN line"))?;
        let label = std::str::from_utf8(&input[label_start..label_end])
            .map_err(|_| PkiError::malformed("PEM", "the label is not UTF-8"))?
            .to_owned();
        if label.contains('\n') || label.contains('\r') {
            return Err(PkiError::malformed("PEM", "unterminated BEGIN line"));
        }
        let body_start = label_end + DASHES.len();
        let end_marker = format!("{END}{label}{DASHES}");
        let body_end = find(input, end_marker.as_bytes(), body_start)
            .ok_or_else(|| PkiError::malformed("PEM", format!("no END line for {label:?}")))?;
        let body = &input[body_start..body_end];
        if body.contains(&b':') {
            return Err(PkiError::malformed("PEM", format!("block {label:?} has headers (encrypted?)")));
        }
        let b64: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        let der = STANDARD
            .decode(&b64)
            .map_err(|e| PkiError::malformed("PEM", format!("block {label:?}: bad base64: {e}")))?;
        if der.is_empty() {
            return Err(PkiError::malformed("PEM", format!("block {label:?} is empty")));
        }
        blocks.push((label, der));
        pos = body_end + end_marker.len();
    }
    Ok(blocks)
}

/// The first PEM block in `input` as (label, DER).
pub fn pem_decode(input: &[u8]) -> Result<(String, Vec<u8>), PkiError> {
    pem_decode_all(input)?.into_iter().next().ok_or_else(|| PkiError::malformed("PEM", "no -----BEGIN line"))
}

/// DER from an upload that is either DER or PEM. PEM must carry one of `labels` (the first
/// is the one named in errors); DER must at least start like a SEQUENCE. `what` names the
/// object in errors ("CSR", "certificate").
pub fn der_from_pem_or_der(input: &[u8], labels: &[&str], what: &'static str) -> Result<Vec<u8>, PkiError> {
    if looks_like_pem(input) {
        let (label, der) = pem_decode(input)?;
        if labels.iter().any(|l| *l == label) {
            Ok(der)
        } else {
            Err(PkiError::PemLabel {
                expected: labels.first().copied().unwrap_or_default().to_owned(),
                found: label,
            })
        }
    } else if input.first() == Some(&0x30) {
        Ok(input.to_vec())
    } else if input.is_empty() {
        Err(PkiError::malformed(what, "empty input"))
    } else {
        Err(PkiError::malformed(what, "neither PEM nor DER"))
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= haystack.len() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = pem_encode(PEM_CERTIFICATE, &der);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        let (label, back) = pem_decode(pem.as_bytes()).expect("decodes");
        assert_eq!(label, PEM_CERTIFICATE);
        assert_eq!(back, der);
    }

    #[test]
    fn pem_lenient_about_layout() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let b64 = STANDARD.encode(&der);
        // CRLF, text before and after, one long line.
        let text = format!(
            "Certificate:\n  blah\r\n-----BEGIN X509 CRL-----\r\n{b64}\r\n-----END X509 CRL-----\r\ntrailer"
        );
        let (label, back) = pem_decode(text.as_bytes()).expect("decodes");
        assert_eq!((label.as_str(), back), (PEM_X509_CRL, der));
    }

    #[test]
    fn pem_chain() {
        let a = pem_encode("CERTIFICATE", &[0x30, 0x00]);
        let b = pem_encode("CERTIFICATE", &[0x30, 0x01, 0x00]);
        let blocks = pem_decode_all(format!("{a}\n{b}").as_bytes()).expect("decodes");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].1, vec![0x30, 0x01, 0x00]);
    }

    #[test]
    fn pem_errors() {
        assert!(matches!(pem_decode(b"no pem here"), Err(PkiError::Malformed { .. })));
        assert!(matches!(
            pem_decode(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            Err(PkiError::Malformed { .. })
        ));
        assert!(matches!(
            pem_decode(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(PkiError::Malformed { .. })
        ));
        assert!(matches!(
            pem_decode(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
            Err(PkiError::Malformed { .. })
        ));
        let enc = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(pem_decode(enc), Err(PkiError::Malformed { .. })));
    }

    #[test]
    fn pem_or_der() {
        let der = vec![0x30, 0x00];
        assert_eq!(der_from_pem_or_der(&der, &[PEM_CERTIFICATE], "certificate").expect("der"), der);
        let pem = pem_encode(PEM_NEW_CERTIFICATE_REQUEST, &der);
        let labels = [PEM_CERTIFICATE_REQUEST, PEM_NEW_CERTIFICATE_REQUEST];
        assert_eq!(der_from_pem_or_der(pem.as_bytes(), &labels, "CSR").expect("pem"), der);
        match der_from_pem_or_der(pem.as_bytes(), &[PEM_CERTIFICATE], "certificate") {
            Err(PkiError::PemLabel { expected, found }) => {
                assert_eq!((expected.as_str(), found.as_str()), ("CERTIFICATE", "NEW CERTIFICATE REQUEST"));
            }
            other => panic!("{other:?}"),
        }
        assert!(der_from_pem_or_der(b"", &[PEM_CERTIFICATE], "certificate").is_err());
        assert!(der_from_pem_or_der(b"hello", &[PEM_CERTIFICATE], "certificate").is_err());
    }

    #[test]
    fn fingerprints() {
        assert_eq!(sha1_fingerprint(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
