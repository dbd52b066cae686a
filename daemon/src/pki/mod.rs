//! X.509 toolkit, beside `store/` and `token/` under the service layer: the issuance and
//! certificate-store services call these pure functions to parse what users upload (CSRs,
//! certificates, DNs) and to build what the CA signs (certificates, CSRs, CRLs); signing goes
//! through a `CaSigner` (`TokenSigner`: the CA key in the HSM via `token::TokenManager`). No
//! store, no gRPC here.
//!
//! Layout: `error.rs` (PkiError), `name.rs` (RFC 4514 DNs ↔ `Name`, CN/O/OU/L/S/C parts),
//! `pem.rs` (PEM, fingerprints), `serial.rs` (128-bit random serials), `keys.rs` (key policy,
//! signature verification, key identifiers), `signer.rs` (`CaSigner`, `TokenSigner`, the
//! verify-every-signature rule), `cert.rs` (certificate templates, building, parsing),
//! `csr.rs` (PKCS#10 parse with checks, build), `crl.rs` (reasons, CRL building, parsing),
//! `private_key.rs` (uploaded private keys: PKCS#8, encrypted PKCS#8, PKCS#1, SEC1 →
//! `PrivateKeyMaterial`, zeroized, with its PKCS#11 attributes), `pkcs12.rs` (PFX build and
//! parse: PBES2/AES-256-CBC bags, HMAC-SHA-256 MAC), `zip.rs` (streaming ZIP writer for batch
//! downloads, bounded reader for uploaded ZIPs of CSRs).
//!
//! Rules kept here: every signature the CA key makes is verified against the CA public key
//! before anything built with it is returned (`SignatureMismatch` otherwise); keys below
//! policy (RSA < 2048, curves other than P-256/P-384) are refused (`WeakKey`), both in CSRs and
//! in certificate templates.

mod cert;
mod crl;
mod csr;
mod error;
mod keys;
mod name;
mod pem;
mod pkcs12;
mod private_key;
mod serial;
mod signer;
mod zip;

pub use cert::{
    CertificateTemplate, ExtendedKeyUsage, KeyUsage, ParsedCertificate, SubjectAltName, build_certificate,
    parse_certificate, verify_certificate_signature,
};
pub use crl::{
    CrlEntry, CrlTemplate, ParsedCrl, ParsedCrlEntry, RevocationReason, build_crl, parse_crl,
    verify_crl_signature,
};
pub use csr::{ParsedCsr, build_csr, parse_csr};
pub use error::PkiError;
pub use keys::{
    KeyKind, MAX_RSA_BITS, MIN_RSA_BITS, PublicKey, SignatureAlgorithm, key_identifier, public_key_kind,
};
pub use name::{Name, NameParts, common_name, format_name, format_parts, name_parts, parse_name};
pub use pem::{
    PEM_CERTIFICATE, PEM_CERTIFICATE_REQUEST, PEM_NEW_CERTIFICATE_REQUEST, PEM_X509_CRL, der_from_pem_or_der,
    looks_like_pem, pem_decode, pem_decode_all, pem_encode, sha1_fingerprint, sha256_fingerprint, to_hex,
};
pub use pkcs12::{
    MIN_PKCS12_ITERATIONS, PKCS12_ITERATIONS, Pkcs12Contents, build_pkcs12, build_pkcs12_with, parse_pkcs12,
};
pub use private_key::{
    PEM_EC_PRIVATE_KEY, PEM_ENCRYPTED_PRIVATE_KEY, PEM_PRIVATE_KEY, PEM_RSA_PRIVATE_KEY, Pkcs11KeyParts,
    PrivateKeyMaterial, parse_private_key,
};
pub use serial::CertSerial;
pub use signer::{CaSigner, SignFuture, TokenSigner};
pub use zip::{ZipEntry, ZipStreamWriter, looks_like_zip, read_zip};
