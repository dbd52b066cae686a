//! The pki layer's one error type: every function the issuance and certificate-store services
//! call in `pki/` fails with a `PkiError`, which the service layer maps to a status at its
//! boundary (bad input → InvalidArgument naming the field, `Token` → the token layer's mapping).

use crate::token::TokenError;

/// What went wrong while building or parsing X.509 objects. Variants name the problem, so the
/// service can tell "the caller sent a bad CSR" from "our HSM misbehaved".
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Input that is not what it claims to be: bad DER, bad PEM, wrong structure.
    /// `what` names the object ("CSR", "certificate", "PEM", …).
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// A PEM block with another label than the one expected.
    #[error("expected a PEM block labelled {expected:?}, found {found:?}")]
    PemLabel { expected: String, found: String },
    /// The CSR's self-signature does not verify with the public key inside it.
    #[error("the CSR's signature does not verify with its public key")]
    BadCsrSignature,
    /// A certificate's signature does not verify with the given issuer key.
    #[error("the certificate's signature does not verify with the issuer's public key")]
    BadCertificateSignature,
    /// A key we refuse to certify or use: RSA below 2048 bits, a curve other than P-256/P-384.
    #[error("weak or disallowed key: {detail}")]
    WeakKey { detail: String },
    /// A key algorithm we do not handle at all (Ed25519, DSA, …), by OID.
    #[error("unsupported public key algorithm {oid}")]
    UnsupportedKeyAlgorithm { oid: String },
    /// A signature algorithm we do not verify (RSA-PSS, SHA-1 based, …), by OID.
    #[error("unsupported signature algorithm {oid}")]
    UnsupportedSignatureAlgorithm { oid: String },
    /// A distinguished name string that cannot be used as a subject or issuer.
    #[error("invalid distinguished name: {detail}")]
    InvalidName { detail: String },
    /// A template field (certificate, CRL, serial) that is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// An RFC 5280 CRLReason code outside 0–10, or the unused value 7.
    #[error("invalid revocation reason code {code}: expected 0-10 except 7")]
    InvalidReason { code: i64 },
    /// The signer (the HSM) returned a signature that does not verify with the CA public key.
    /// Nothing built with it is returned.
    #[error("the signature made by the CA key does not verify with the CA public key")]
    SignatureMismatch,
    /// The password does not decrypt the object (`what`: "private_key", "PKCS#12"). The
    /// service reports it on the `password` field.
    #[error("wrong password for the {what}")]
    WrongPassword { what: &'static str },
    /// The token layer failed (token unavailable, key not found, …).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Encoding one of our own structures failed: a bug, not bad input.
    #[error("internal pki error: {0}")]
    Internal(String),
}

impl PkiError {
    pub(crate) fn malformed(what: &'static str, detail: impl std::fmt::Display) -> PkiError {
        PkiError::Malformed { what, detail: detail.to_string() }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> PkiError {
        PkiError::InvalidField { field, reason: reason.into() }
    }

    /// For DER encoding of structures this layer built itself.
    pub(crate) fn encoding(what: &str, e: der::Error) -> PkiError {
        PkiError::Internal(format!("encoding {what}: {e}"))
    }
}
