//! The CA key as the pki layer sees it, between the builders (`cert.rs`, `csr.rs`, `crl.rs`)
//! and the token layer: a `CaSigner` signs the DER a builder made — `TokenSigner` through
//! `TokenManager::sign` on the HSM — and `sign_checked` verifies every signature against the
//! CA public key before a builder may use it, so a bad HSM signature is an error, never a
//! certificate.

use super::PkiError;
use super::keys::{PublicKey, SignatureAlgorithm, ecdsa_raw_to_der};
use crate::token::{SignMechanism, TokenManager};
use der::asn1::BitString;
use der::{AnyRef, Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use std::future::Future;
use std::pin::Pin;

/// What `CaSigner::sign` returns: a boxed future, so signers can be used as `dyn CaSigner`.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, PkiError>> + Send + 'a>>;

/// A CA private key that signs X.509 structures.
///
/// Implementations only sign; the builders verify each signature against `public_key()`
/// (see `sign_checked`), so an implementation need not (and a buggy one cannot slip a bad
/// signature through).
pub trait CaSigner: Send + Sync {
    /// The CA public key (with its kind, for verification).
    fn public_key(&self) -> &PublicKey;

    /// The signature algorithm. Must be the one `SignatureAlgorithm::for_key` gives for the
    /// key (checked by the builders).
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::for_key(self.public_key().kind())
    }

    /// Signs `tbs_der` (the DER to be signed: a TBSCertificate, CertificationRequestInfo or
    /// TBSCertList) with `algorithm()`, hashing included. Returns the signature in its X.509
    /// encoding: ECDSA as DER `Ecdsa-Sig-Value`, RSA as the modulus-sized block.
    fn sign(&self, tbs_der: Vec<u8>) -> SignFuture<'_>;

    /// The CA public key as SubjectPublicKeyInfo DER.
    fn public_key_der(&self) -> &[u8] {
        self.public_key().spki_der()
    }
}

/// A CA key on a PKCS#11 token, used through the token layer (session pool, blocking thread,
/// "token gone" handling all there).
///
/// ECDSA: the digest (SHA-256 for P-256, SHA-384 for P-384) is computed here and signed with
/// CKM_ECDSA (`SignMechanism::EcdsaPrehashed`); the raw r‖s is converted to DER. RSA:
/// CKM_SHA256_RSA_PKCS on the token.
#[derive(Debug, Clone)]
pub struct TokenSigner {
    tokens: TokenManager,
    token_serial: String,
    key_id: Vec<u8>,
    public_key: PublicKey,
    algorithm: SignatureAlgorithm,
}

impl TokenSigner {
    /// A signer for the private key with CKA_ID `key_id` on the token with serial
    /// `token_serial`, whose public half is `public_key_der` (SubjectPublicKeyInfo, as
    /// `TokenManager::generate_key_pair` returned it). The key must pass the key policy.
    pub fn new(
        tokens: TokenManager,
        token_serial: impl Into<String>,
        key_id: Vec<u8>,
        public_key_der: &[u8],
    ) -> Result<TokenSigner, PkiError> {
        let public_key = PublicKey::from_spki_der(public_key_der)?;
        let algorithm = SignatureAlgorithm::for_key(public_key.kind());
        Ok(TokenSigner { tokens, token_serial: token_serial.into(), key_id, public_key, algorithm })
    }

    pub fn token_serial(&self) -> &str {
        &self.token_serial
    }

    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }
}

impl CaSigner for TokenSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn sign(&self, tbs_der: Vec<u8>) -> SignFuture<'_> {
        Box::pin(async move {
            let (mechanism, data, field_len) = match self.algorithm {
                SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP384Sha384 => {
                    let digest = self.algorithm.verify_alg().hash.digest(&tbs_der);
                    let field_len =
                        if self.algorithm == SignatureAlgorithm::EcdsaP256Sha256 { 32 } else { 48 };
                    (SignMechanism::EcdsaPrehashed, digest, Some(field_len))
                }
                SignatureAlgorithm::RsaPkcs1Sha256 => (SignMechanism::RsaPkcs1Sha256, tbs_der, None),
            };
            let raw = self.tokens.sign(&self.token_serial, self.key_id.clone(), mechanism, data).await?;
            match field_len {
                Some(n) => ecdsa_raw_to_der(&raw, n),
                None => Ok(raw),
            }
        })
    }
}

/// Signs `tbs_der` with `signer` and verifies the signature against the signer's public key.
/// Returns the AlgorithmIdentifier and the signature BIT STRING to put next to the TBS.
pub(crate) async fn sign_checked<S: CaSigner + ?Sized>(
    signer: &S,
    tbs_der: &[u8],
) -> Result<(AlgorithmIdentifierOwned, BitString), PkiError> {
    let algorithm = signer.algorithm();
    let key = signer.public_key();
    if !algorithm.matches_key(key.kind()) {
        return Err(PkiError::Internal(format!(
            "signer algorithm {algorithm:?} does not match its {} key",
            key.kind()
        )));
    }
    let verify = algorithm.verify_alg();
    let signature = signer.sign(tbs_der.to_vec()).await?;
    if !key.verify(verify, tbs_der, &signature) {
        tracing::error!(algorithm = ?algorithm, "a CA signature did not verify with the CA public key");
        return Err(PkiError::SignatureMismatch);
    }
    let bits = BitString::from_bytes(&signature).map_err(|e| PkiError::encoding("the signature", e))?;
    Ok((algorithm.algorithm_identifier(), bits))
}

/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue }`: the outer shape shared by
/// Certificate, CertificationRequest and CertificateList.
#[derive(Sequence)]
struct SignedEnvelope<'a> {
    tbs: AnyRef<'a>,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// The parts of a signed structure (certificate, CSR, CRL) as they are on the wire: the exact
/// TBS bytes that were signed, the outer algorithm, and the signature bytes.
pub(crate) struct OpenedEnvelope<'a> {
    pub(crate) tbs_der: &'a [u8],
    pub(crate) algorithm: AlgorithmIdentifierOwned,
    pub(crate) signature: Vec<u8>,
}

/// Splits signed DER into its parts without interpreting the TBS.
pub(crate) fn open_envelope<'a>(der: &'a [u8], what: &'static str) -> Result<OpenedEnvelope<'a>, PkiError> {
    let env = SignedEnvelope::from_der(der).map_err(|e| PkiError::malformed(what, e))?;
    let signature = env
        .signature
        .as_bytes()
        .ok_or_else(|| PkiError::malformed(what, "the signature bit string is not octet-aligned"))?
        .to_vec();
    // The TBS is the first element of the outer SEQUENCE: its exact bytes are the first
    // `encoded_len` bytes of the outer value (DER lengths are minimal, so they re-encode alike).
    let tbs_len =
        env.tbs.encoded_len().and_then(usize::try_from).map_err(|e| PkiError::malformed(what, e))?;
    let outer = AnyRef::from_der(der).map_err(|e| PkiError::malformed(what, e))?;
    let tbs_der = outer.value().get(..tbs_len).ok_or_else(|| PkiError::malformed(what, "truncated"))?;
    Ok(OpenedEnvelope { tbs_der, algorithm: env.algorithm, signature })
}

/// Signs `tbs_der` (checked) and wraps it into the signed envelope.
pub(crate) async fn sign_envelope<S: CaSigner + ?Sized>(
    signer: &S,
    tbs_der: &[u8],
) -> Result<Vec<u8>, PkiError> {
    let (algorithm, signature) = sign_checked(signer, tbs_der).await?;
    let tbs = AnyRef::from_der(tbs_der).map_err(|e| PkiError::encoding("the signed structure", e))?;
    SignedEnvelope { tbs, algorithm, signature }
        .to_der()
        .map_err(|e| PkiError::encoding("the signed structure", e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pki::keys::tests::{p256_key, p256_spki};
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use sha2::{Digest, Sha256};

    /// An in-memory P-256 CA key for unit tests (production CA keys live in the HSM).
    pub(crate) struct SoftP256 {
        key: p256::ecdsa::SigningKey,
        public: PublicKey,
        /// Flip a bit in every signature (a misbehaving HSM).
        pub(crate) corrupt: bool,
    }

    impl SoftP256 {
        pub(crate) fn new(seed: u8) -> SoftP256 {
            let key = if seed == 0x11 {
                p256_key()
            } else {
                p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("key")
            };
            let public = PublicKey::from_spki_der(&p256_spki(&key)).expect("public");
            SoftP256 { key, public, corrupt: false }
        }
    }

    impl CaSigner for SoftP256 {
        fn public_key(&self) -> &PublicKey {
            &self.public
        }

        fn sign(&self, tbs_der: Vec<u8>) -> SignFuture<'_> {
            Box::pin(async move {
                let sig: p256::ecdsa::Signature = self
                    .key
                    .sign_prehash(&Sha256::digest(&tbs_der))
                    .map_err(|e| PkiError::Internal(e.to_string()))?;
                let mut raw = sig.to_bytes().to_vec();
                if self.corrupt {
                    raw[40] ^= 1;
                }
                ecdsa_raw_to_der(&raw, 32)
            })
        }
    }

    pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
    }

    #[test]
    fn checked_signature_verifies() {
        let signer = SoftP256::new(0x11);
        let (alg, sig) = block_on(sign_checked(&signer, b"\x30\x00")).expect("signs");
        assert_eq!(alg, SignatureAlgorithm::EcdsaP256Sha256.algorithm_identifier());
        assert!(sig.as_bytes().is_some());
    }

    #[test]
    fn bad_signature_is_an_error_not_a_result() {
        let mut signer = SoftP256::new(0x11);
        signer.corrupt = true;
        assert!(matches!(block_on(sign_checked(&signer, b"\x30\x00")), Err(PkiError::SignatureMismatch)));
        assert!(matches!(block_on(sign_envelope(&signer, b"\x30\x00")), Err(PkiError::SignatureMismatch)));
    }

    #[test]
    fn works_as_dyn() {
        let signer: Box<dyn CaSigner> = Box::new(SoftP256::new(0x22));
        let env = block_on(sign_envelope(signer.as_ref(), b"\x30\x00")).expect("signs");
        assert_eq!(env[0], 0x30);
    }
}
