//! Private keys users hand us, under the certificate-store and issuance services: the
//! `private_key` of ImportCertificate (PKCS#8, encrypted PKCS#8, PKCS#1, SEC1; PEM or DER) is
//! parsed here into `PrivateKeyMaterial`, checked against the key policy and the certificate,
//! and handed to the token layer (`pkcs11_parts`) for C_CreateObject; server-generated keys
//! leave through `pkcs12.rs` (`to_pkcs8_der`).
//!
//! The key stays in `Zeroizing` buffers and its Debug shows only its kind and public key
//! fingerprint. Every key is normalised: RSA keys are validated (n = p·q, d consistent with
//! e) and their CRT values recomputed; EC scalars are checked to be in range and an embedded
//! public key must match the scalar.

use super::keys::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP256R1, SECP384R1};
use super::pem::{looks_like_pem, pem_decode_all, sha256_fingerprint};
use super::{KeyKind, PkiError, PublicKey};
use der::asn1::{BitString, ObjectIdentifier, OctetStringRef};
use der::{Any, AnyRef, Decode, Encode};
use pkcs8::pkcs5;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use spki::{
    AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use zeroize::{Zeroize, Zeroizing};

/// PEM label of an unencrypted PKCS#8 private key (RFC 7468).
pub const PEM_PRIVATE_KEY: &str = "PRIVATE KEY";
/// PEM label of an encrypted PKCS#8 private key (RFC 7468).
pub const PEM_ENCRYPTED_PRIVATE_KEY: &str = "ENCRYPTED PRIVATE KEY";
/// PEM label of a PKCS#1 RSA private key (`openssl rsa -traditional`).
pub const PEM_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
/// PEM label of a SEC1 EC private key (`openssl ec`).
pub const PEM_EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
/// The block `openssl ecparam -genkey` writes before the key; skipped.
const PEM_EC_PARAMETERS: &str = "EC PARAMETERS";

/// What malformed-key errors name (the request field).
pub(crate) const WHAT_KEY: &str = "private_key";

/// Upper bound on PBKDF2 iterations we run for an uploaded file (OpenSSL writes 2048).
pub(crate) const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
/// Upper bound on scrypt memory (128 · r · N bytes) we spend on an uploaded file.
const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;

/// The private half of a key, as PKCS#11 wants it, plus what we derive from it.
pub struct PrivateKeyMaterial {
    kind: KeyKind,
    spki_der: Vec<u8>,
    secret: Secret,
}

enum Secret {
    Ec {
        /// DER of the named-curve OID (CKA_EC_PARAMS).
        ec_params: Vec<u8>,
        curve: ObjectIdentifier,
        /// The private scalar, big-endian, padded to the field size (CKA_VALUE).
        scalar: Zeroizing<Vec<u8>>,
        /// Uncompressed public point.
        point: Vec<u8>,
    },
    /// Canonical PKCS#1 `RSAPrivateKey` DER (two primes, CRT values recomputed).
    Rsa { pkcs1_der: Zeroizing<Vec<u8>> },
}

/// The attributes a PKCS#11 `C_CreateObject` of a private key needs, big-endian without
/// leading zeros for RSA integers.
#[derive(Clone, Copy)]
pub enum Pkcs11KeyParts<'a> {
    /// CKK_EC: `ec_params` is CKA_EC_PARAMS (DER of the curve OID), `value` CKA_VALUE.
    Ec { ec_params: &'a [u8], value: &'a [u8] },
    /// CKK_RSA: CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1/2,
    /// CKA_EXPONENT_1/2, CKA_COEFFICIENT.
    Rsa {
        modulus: &'a [u8],
        public_exponent: &'a [u8],
        private_exponent: &'a [u8],
        prime_1: &'a [u8],
        prime_2: &'a [u8],
        exponent_1: &'a [u8],
        exponent_2: &'a [u8],
        coefficient: &'a [u8],
    },
}

impl std::fmt::Debug for Pkcs11KeyParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pkcs11KeyParts::Ec { .. } => f.write_str("Pkcs11KeyParts::Ec(<redacted>)"),
            Pkcs11KeyParts::Rsa { .. } => f.write_str("Pkcs11KeyParts::Rsa(<redacted>)"),
        }
    }
}

impl std::fmt::Debug for PrivateKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeyMaterial")
            .field("kind", &self.kind)
            .field("spki_sha256", &sha256_fingerprint(&self.spki_der))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl PrivateKeyMaterial {
    /// The key's kind after the key policy (EC P-256/P-384, RSA ≥ 2048).
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The public key as SubjectPublicKeyInfo DER (the form `openssl pkey -pubout` writes).
    pub fn public_key_spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// What a PKCS#11 C_CreateObject of this private key needs.
    pub fn pkcs11_parts(&self) -> Result<Pkcs11KeyParts<'_>, PkiError> {
        match &self.secret {
            Secret::Ec { ec_params, scalar, .. } => Ok(Pkcs11KeyParts::Ec { ec_params, value: scalar }),
            Secret::Rsa { pkcs1_der } => {
                let k = pkcs1::RsaPrivateKeyRef::from_der(pkcs1_der)
                    .map_err(|e| PkiError::Internal(format!("re-reading our RSA key: {e}")))?;
                Ok(Pkcs11KeyParts::Rsa {
                    modulus: k.modulus.as_bytes(),
                    public_exponent: k.public_exponent.as_bytes(),
                    private_exponent: k.private_exponent.as_bytes(),
                    prime_1: k.prime1.as_bytes(),
                    prime_2: k.prime2.as_bytes(),
                    exponent_1: k.exponent1.as_bytes(),
                    exponent_2: k.exponent2.as_bytes(),
                    coefficient: k.coefficient.as_bytes(),
                })
            }
        }
    }

    /// The key as unencrypted PKCS#8 `PrivateKeyInfo` DER (v1, no attributes). EC keys carry
    /// the curve in the algorithm parameters and the public point inside the SEC1 structure,
    /// as OpenSSL writes them.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let enc = |e: der::Error| PkiError::encoding("a PKCS#8 private key", e);
        let (algorithm, inner) = match &self.secret {
            Secret::Ec { curve, scalar, point, .. } => {
                let sec1 =
                    sec1::EcPrivateKey { private_key: scalar, parameters: None, public_key: Some(point) };
                let inner = Zeroizing::new(sec1.to_der().map_err(enc)?);
                (
                    AlgorithmIdentifierOwned {
                        oid: ID_EC_PUBLIC_KEY,
                        parameters: Some(Any::encode_from(curve).map_err(enc)?),
                    },
                    inner,
                )
            }
            Secret::Rsa { pkcs1_der } => (
                AlgorithmIdentifierOwned { oid: RSA_ENCRYPTION, parameters: Some(Any::null()) },
                pkcs1_der.clone(),
            ),
        };
        let params = algorithm.parameters.as_ref().map(AnyRef::from);
        let alg_ref = AlgorithmIdentifierRef { oid: algorithm.oid, parameters: params };
        let info = PrivateKeyInfoRef::new(alg_ref, OctetStringRef::new(&inner).map_err(enc)?);
        Ok(Zeroizing::new(info.to_der().map_err(enc)?))
    }

    /// Does this certificate (DER or PEM) carry this key's public key? Compares the public
    /// keys themselves (algorithm, curve, point or modulus and exponent), not their encodings.
    /// A certificate that cannot be parsed does not match.
    pub fn matches_certificate(&self, cert: &[u8]) -> bool {
        let Ok(der) = super::der_from_pem_or_der(cert, &[super::PEM_CERTIFICATE], "certificate") else {
            return false;
        };
        let Ok(cert) = x509_cert::Certificate::from_der(&der) else {
            return false;
        };
        let Ok(spki) = cert.tbs_certificate().subject_public_key_info().to_der() else {
            return false;
        };
        canonical_spki(&spki).is_some_and(|c| c == self.spki_der)
    }
}

/// The canonical SPKI (uncompressed EC point, NULL RSA parameters) of a public key, or None
/// when it is not one we handle.
fn canonical_spki(spki_der: &[u8]) -> Option<Vec<u8>> {
    let spki = SubjectPublicKeyInfoRef::try_from(spki_der).ok()?;
    let bytes = spki.subject_public_key.as_bytes()?;
    match spki.algorithm.oid {
        ID_EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters_oid().ok()?;
            let point = match curve {
                SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .ok()?
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
                SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .ok()?
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
                _ => return None,
            };
            ec_spki(curve, &point).ok()
        }
        RSA_ENCRYPTION => {
            let k = pkcs1::RsaPublicKeyRef::from_der(bytes).ok()?;
            rsa_spki(&k).ok()
        }
        _ => None,
    }
}

fn ec_spki(curve: ObjectIdentifier, point: &[u8]) -> Result<Vec<u8>, PkiError> {
    let enc = |e| PkiError::encoding("a public key", e);
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&curve).map_err(enc)?),
        },
        subject_public_key: BitString::from_bytes(point).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

fn rsa_spki(k: &pkcs1::RsaPublicKeyRef<'_>) -> Result<Vec<u8>, PkiError> {
    let enc = |e| PkiError::encoding("a public key", e);
    let key = k.to_der().map_err(enc)?;
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned { oid: RSA_ENCRYPTION, parameters: Some(Any::null()) },
        subject_public_key: BitString::from_bytes(&key).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

/// Parses a private key upload: PEM (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`,
/// `RSA PRIVATE KEY`, `EC PRIVATE KEY`; an `EC PARAMETERS` block before it is skipped) or DER
/// of any of those. Encrypted PKCS#8 must be PBES2 (PBKDF2 or scrypt, AES-CBC/GCM), as
/// OpenSSL 3 writes it; the password is used as its UTF-8 bytes.
///
/// Errors: `WrongPassword` when the password does not decrypt the key; `InvalidField
/// { field: "password" }` when an encrypted key comes without one; `WeakKey` for RSA < 2048
/// or other curves; `UnsupportedKeyAlgorithm` for Ed25519, DSA…; `Malformed { what:
/// "private_key" }` for anything else (garbage, truncation, legacy `Proc-Type` encryption,
/// inconsistent key material); `PemLabel` for a PEM block of another kind.
pub fn parse_private_key(input: &[u8], password: Option<&str>) -> Result<PrivateKeyMaterial, PkiError> {
    if looks_like_pem(input) {
        if find_bytes(input, b"Proc-Type:") {
            return Err(PkiError::malformed(
                WHAT_KEY,
                "legacy encrypted PEM (Proc-Type) is not supported: use encrypted PKCS#8 (openssl pkcs8 -topk8)",
            ));
        }
        let blocks = pem_decode_all(input).map_err(|e| PkiError::malformed(WHAT_KEY, e))?;
        let Some((label, der)) = blocks.into_iter().find(|(l, _)| l != PEM_EC_PARAMETERS) else {
            return Err(PkiError::malformed(WHAT_KEY, "no private key PEM block"));
        };
        let der = Zeroizing::new(der);
        match label.as_str() {
            PEM_PRIVATE_KEY => from_pkcs8(&der),
            PEM_ENCRYPTED_PRIVATE_KEY => from_encrypted_pkcs8(&der, password),
            PEM_RSA_PRIVATE_KEY => from_pkcs1(&der),
            PEM_EC_PRIVATE_KEY => from_sec1(&der, None),
            _ => Err(PkiError::PemLabel { expected: PEM_PRIVATE_KEY.to_owned(), found: label }),
        }
    } else if input.is_empty() {
        Err(PkiError::malformed(WHAT_KEY, "empty input"))
    } else if input.first() != Some(&0x30) {
        Err(PkiError::malformed(WHAT_KEY, "neither PEM nor DER"))
    } else if EncryptedPrivateKeyInfoRef::from_der(input).is_ok() {
        from_encrypted_pkcs8(input, password)
    } else if PrivateKeyInfoRef::from_der(input).is_ok() {
        from_pkcs8(input)
    } else if pkcs1::RsaPrivateKeyRef::from_der(input).is_ok() {
        from_pkcs1(input)
    } else if sec1::EcPrivateKey::from_der(input).is_ok() {
        from_sec1(input, None)
    } else {
        Err(PkiError::malformed(WHAT_KEY, "not a PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1 private key"))
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Refuses password-based encryption parameters that would make us spend unreasonable time
/// or memory on an upload. `what` names the object in errors.
pub(crate) fn check_pbe_cost(scheme: &pkcs5::EncryptionScheme, what: &'static str) -> Result<(), PkiError> {
    let Some(params) = scheme.pbes2() else {
        return Err(PkiError::malformed(
            what,
            format!("encryption {} is not supported: use PBES2", scheme.oid()),
        ));
    };
    if let Some(p) = params.kdf.pbkdf2() {
        if p.iteration_count > MAX_PBKDF2_ITERATIONS {
            return Err(PkiError::malformed(
                what,
                format!(
                    "PBKDF2 iteration count {} above the limit {MAX_PBKDF2_ITERATIONS}",
                    p.iteration_count
                ),
            ));
        }
    } else if let Some(s) = params.kdf.scrypt() {
        let memory = 128u64.saturating_mul(u64::from(s.block_size)).saturating_mul(s.cost_parameter);
        if memory.saturating_mul(u64::from(s.parallelization.max(1))) > MAX_SCRYPT_MEMORY {
            return Err(PkiError::malformed(what, "scrypt parameters above the memory limit"));
        }
    }
    Ok(())
}

fn from_encrypted_pkcs8(der: &[u8], password: Option<&str>) -> Result<PrivateKeyMaterial, PkiError> {
    let info = EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| PkiError::malformed(WHAT_KEY, format!("encrypted PKCS#8: {e}")))?;
    let Some(password) = password else {
        return Err(PkiError::invalid("password", "the private key is encrypted: a password is required"));
    };
    check_pbe_cost(&info.encryption_algorithm, WHAT_KEY)?;
    let plain =
        decrypt_pbes2(&info.encryption_algorithm, password, info.encrypted_data.as_bytes(), WHAT_KEY)?;
    // A wrong password passes the CBC padding check about once in 256 tries: what comes out
    // is then noise, not a PrivateKeyInfo.
    if PrivateKeyInfoRef::from_der(&plain).is_err() {
        return Err(PkiError::WrongPassword { what: WHAT_KEY });
    }
    from_pkcs8(&plain)
}

/// PBES2 decryption; a failure to decrypt (bad padding, GCM tag) is `WrongPassword`, an
/// unsupported algorithm `Malformed`, both naming `what`.
pub(crate) fn decrypt_pbes2(
    scheme: &pkcs5::EncryptionScheme,
    password: &str,
    ciphertext: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    match scheme.decrypt(password.as_bytes(), ciphertext) {
        Ok(plain) => Ok(Zeroizing::new(plain)),
        Err(pkcs5::Error::DecryptFailed) => Err(PkiError::WrongPassword { what }),
        Err(e) => Err(PkiError::malformed(what, e)),
    }
}

fn from_pkcs8(der: &[u8]) -> Result<PrivateKeyMaterial, PkiError> {
    let info = PrivateKeyInfoRef::from_der(der)
        .map_err(|e| PkiError::malformed(WHAT_KEY, format!("PKCS#8: {e}")))?;
    match info.algorithm.oid {
        RSA_ENCRYPTION => from_pkcs1(info.private_key.as_bytes()),
        ID_EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| PkiError::malformed(WHAT_KEY, "EC key without a named curve"))?;
            from_sec1(info.private_key.as_bytes(), Some(curve))
        }
        other => Err(PkiError::UnsupportedKeyAlgorithm { oid: other.to_string() }),
    }
}

fn from_pkcs1(der: &[u8]) -> Result<PrivateKeyMaterial, PkiError> {
    let key = pkcs1::RsaPrivateKeyRef::from_der(der)
        .map_err(|e| PkiError::malformed(WHAT_KEY, format!("PKCS#1: {e}")))?;
    if key.other_prime_infos.is_some() {
        return Err(PkiError::malformed(WHAT_KEY, "multi-prime RSA keys are not supported"));
    }
    // The key policy first, on the public half: RSA-1024 is WeakKey whatever else is wrong.
    let spki_der = rsa_spki(&key.public_key())?;
    let public = PublicKey::from_spki_der(&spki_der)?;
    let parsed =
        rsa::PrivateKey::try_from(key).map_err(|e| PkiError::malformed(WHAT_KEY, format!("RSA key: {e}")))?;
    parsed.validate().map_err(|e| PkiError::malformed(WHAT_KEY, format!("inconsistent RSA key: {e}")))?;
    let canonical = pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&parsed)
        .map_err(|e| PkiError::Internal(format!("encoding an RSA key: {e}")))?;
    let pkcs1_der = Zeroizing::new(canonical.as_bytes().to_vec());
    // The re-encoded key must still be the one whose public half passed the policy.
    let again = pkcs1::RsaPrivateKeyRef::from_der(&pkcs1_der)
        .map_err(|e| PkiError::Internal(format!("re-reading an RSA key: {e}")))?;
    if rsa_spki(&again.public_key())? != spki_der {
        return Err(PkiError::malformed(WHAT_KEY, "inconsistent RSA key"));
    }
    Ok(PrivateKeyMaterial { kind: public.kind(), spki_der, secret: Secret::Rsa { pkcs1_der } })
}

/// Copies a secret out of a temporary and wipes the temporary.
fn secret_bytes(temporary: &mut [u8]) -> Zeroizing<Vec<u8>> {
    let copy = Zeroizing::new(temporary.to_vec());
    temporary.zeroize();
    copy
}

fn from_sec1(der: &[u8], outer_curve: Option<ObjectIdentifier>) -> Result<PrivateKeyMaterial, PkiError> {
    let key =
        sec1::EcPrivateKey::from_der(der).map_err(|e| PkiError::malformed(WHAT_KEY, format!("SEC1: {e}")))?;
    let inner_curve = key.parameters.and_then(|p| p.named_curve());
    let curve = match (outer_curve, inner_curve) {
        (Some(a), Some(b)) if a != b => {
            return Err(PkiError::malformed(WHAT_KEY, "the curve in the key disagrees with its algorithm"));
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => return Err(PkiError::malformed(WHAT_KEY, "EC key without a named curve")),
    };
    let (scalar, point) = match curve {
        SECP256R1 => {
            let sk = p256::ecdsa::SigningKey::from_slice(key.private_key)
                .map_err(|_| PkiError::malformed(WHAT_KEY, "not a valid P-256 private scalar"))?;
            (
                secret_bytes(sk.to_bytes().as_mut_slice()),
                sk.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            )
        }
        SECP384R1 => {
            let sk = p384::ecdsa::SigningKey::from_slice(key.private_key)
                .map_err(|_| PkiError::malformed(WHAT_KEY, "not a valid P-384 private scalar"))?;
            (
                secret_bytes(sk.to_bytes().as_mut_slice()),
                sk.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            )
        }
        other => {
            // Let the public-key policy word the refusal (WeakKey naming the curve).
            let dummy = ec_spki(other, &[4])?;
            return match PublicKey::from_spki_der(&dummy) {
                Err(e) => Err(e),
                Ok(_) => Err(PkiError::WeakKey { detail: format!("EC curve {other} is not accepted") }),
            };
        }
    };
    if let Some(embedded) = key.public_key {
        let embedded_spki = ec_spki(curve, embedded)?;
        if canonical_spki(&embedded_spki).as_deref() != Some(ec_spki(curve, &point)?.as_slice()) {
            return Err(PkiError::malformed(
                WHAT_KEY,
                "the public key in the file does not match the private key",
            ));
        }
    }
    let spki_der = ec_spki(curve, &point)?;
    let public = PublicKey::from_spki_der(&spki_der)?;
    let ec_params = curve.to_der().map_err(|e| PkiError::encoding("a curve OID", e))?;
    Ok(PrivateKeyMaterial {
        kind: public.kind(),
        spki_der,
        secret: Secret::Ec { ec_params, curve, scalar, point },
    })
}

/// The operating system's RNG in the `rand_core` 0.10 traits the `rsa` crate takes (our
/// `rand` 0.9 speaks `rand_core` 0.9; the two traits are distinct types).
struct OsRng10;

impl rsa::rand_core::TryRng for OsRng10 {
    type Error = rand::rand_core::OsError;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        rand::rand_core::TryRngCore::try_next_u32(&mut rand::rngs::OsRng)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        rand::rand_core::TryRngCore::try_next_u64(&mut rand::rngs::OsRng)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::rand_core::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, dst)
    }
}

impl rsa::rand_core::TryCryptoRng for OsRng10 {}

impl PrivateKeyMaterial {
    /// A fresh key pair of `kind` from the OS RNG, in software: for server-generated keys that
    /// leave the daemon in a PKCS#12 (an HSM key could not, being non-extractable). The key
    /// goes through the same parser and policy as an uploaded one. RSA generation is CPU-bound
    /// for up to seconds (4096 bits): call it off the async executor.
    pub fn generate(kind: KeyKind) -> Result<PrivateKeyMaterial, PkiError> {
        let rng_error = |e: rand::rand_core::OsError| PkiError::Internal(format!("OS RNG: {e}"));
        match kind {
            KeyKind::EcP256 | KeyKind::EcP384 => {
                let (curve, len) = if kind == KeyKind::EcP256 { (SECP256R1, 32) } else { (SECP384R1, 48) };
                // Rejection sampling: a uniform scalar in [1, n), retrying the (≈2^-32 likely)
                // draws that are zero or not below the group order.
                let mut scalar = Zeroizing::new(vec![0u8; len]);
                loop {
                    rand::rand_core::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut scalar)
                        .map_err(rng_error)?;
                    let valid = match kind {
                        KeyKind::EcP256 => p256::ecdsa::SigningKey::from_slice(&scalar).is_ok(),
                        _ => p384::ecdsa::SigningKey::from_slice(&scalar).is_ok(),
                    };
                    if valid {
                        break;
                    }
                }
                let sec1 = sec1::EcPrivateKey { private_key: &scalar, parameters: None, public_key: None };
                let der = Zeroizing::new(
                    sec1.to_der().map_err(|e| PkiError::encoding("a generated EC private key", e))?,
                );
                from_sec1(&der, Some(curve))
            }
            KeyKind::Rsa { bits } => {
                let key = rsa::PrivateKey::new(&mut OsRng10, bits)
                    .map_err(|e| PkiError::Internal(format!("generating an RSA-{bits} key: {e}")))?;
                // SecretDocument wipes itself on drop; rsa::PrivateKey zeroizes on drop.
                let der = pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&key)
                    .map_err(|e| PkiError::Internal(format!("encoding a generated RSA key: {e}")))?;
                from_pkcs1(der.as_bytes())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SEC1 DER of the P-256 key with scalar `[seed; 32]` (the key `SoftP256::new(seed)` signs
    /// with), curve named inside, no public key.
    pub(crate) fn sec1_p256(seed: u8) -> Vec<u8> {
        let scalar = [seed; 32];
        sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(SECP256R1)),
            public_key: None,
        }
        .to_der()
        .expect("der")
    }

    #[test]
    fn sec1_and_pkcs8_agree_and_round_trip() {
        let key = parse_private_key(&sec1_p256(0x22), None).expect("sec1");
        assert_eq!(key.kind(), KeyKind::EcP256);
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).expect("key");
        let point = sk.verifying_key().to_sec1_point(false);
        assert_eq!(key.public_key_spki_der(), ec_spki(SECP256R1, point.as_bytes()).expect("spki"));
        let pkcs8 = key.to_pkcs8_der().expect("pkcs8");
        let again = parse_private_key(&pkcs8, None).expect("pkcs8 parses");
        assert_eq!(again.public_key_spki_der(), key.public_key_spki_der());
        let pem = super::super::pem_encode(PEM_PRIVATE_KEY, &pkcs8);
        let from_pem = parse_private_key(pem.as_bytes(), None).expect("pem parses");
        assert_eq!(from_pem.public_key_spki_der(), key.public_key_spki_der());
        match key.pkcs11_parts().expect("parts") {
            Pkcs11KeyParts::Ec { ec_params, value } => {
                assert_eq!(ec_params, SECP256R1.to_der().expect("oid").as_slice());
                assert_eq!(value, &[0x22; 32]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = parse_private_key(&sec1_p256(0x22), None).expect("sec1");
        let dbg = format!("{key:?}");
        assert!(dbg.contains("<redacted>") && dbg.contains("EcP256"), "{dbg}");
        assert!(!dbg.contains("2222") && !dbg.contains("34, 34"), "{dbg}");
        let parts = format!("{:?}", key.pkcs11_parts().expect("parts"));
        assert!(parts.contains("redacted") && !parts.contains("34"), "{parts}");
    }

    #[test]
    fn encrypted_pkcs8_and_wrong_password() {
        let key = parse_private_key(&sec1_p256(0x22), None).expect("sec1");
        let plain = key.to_pkcs8_der().expect("pkcs8");
        let params =
            pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(1000, &[7; 16], [9; 16]).expect("p");
        let ct = params.encrypt(b"secret", &plain).expect("encrypt");
        let enc = EncryptedPrivateKeyInfoRef {
            encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(params),
            encrypted_data: OctetStringRef::new(&ct).expect("os"),
        }
        .to_der()
        .expect("der");
        let back = parse_private_key(&enc, Some("secret")).expect("decrypts");
        assert_eq!(back.public_key_spki_der(), key.public_key_spki_der());
        assert!(matches!(
            parse_private_key(&enc, Some("Secret")),
            Err(PkiError::WrongPassword { what: WHAT_KEY })
        ));
        assert!(matches!(
            parse_private_key(&enc, None),
            Err(PkiError::InvalidField { field: "password", .. })
        ));
        // Too many iterations: refused before any work.
        let costly = pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
            MAX_PBKDF2_ITERATIONS + 1,
            &[7; 16],
            [9; 16],
        )
        .expect("p");
        let enc = EncryptedPrivateKeyInfoRef {
            encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(costly),
            encrypted_data: OctetStringRef::new(&ct).expect("os"),
        }
        .to_der()
        .expect("der");
        match parse_private_key(&enc, Some("secret")) {
            Err(PkiError::Malformed { what: WHAT_KEY, detail }) => {
                assert!(detail.contains("iteration"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_keys() {
        // Scalar zero and scalar ≥ n are not keys.
        for scalar in [[0u8; 32], [0xFF; 32]] {
            let der = sec1::EcPrivateKey {
                private_key: &scalar,
                parameters: Some(sec1::EcParameters::NamedCurve(SECP256R1)),
                public_key: None,
            }
            .to_der()
            .expect("der");
            assert!(matches!(parse_private_key(&der, None), Err(PkiError::Malformed { .. })));
        }
        // An embedded public key that belongs to another scalar.
        let other = p256::ecdsa::SigningKey::from_slice(&[0x33; 32]).expect("key");
        let point = other.verifying_key().to_sec1_point(false);
        let der = sec1::EcPrivateKey {
            private_key: &[0x22; 32],
            parameters: Some(sec1::EcParameters::NamedCurve(SECP256R1)),
            public_key: Some(point.as_bytes()),
        }
        .to_der()
        .expect("der");
        match parse_private_key(&der, None) {
            Err(PkiError::Malformed { detail, .. }) => assert!(detail.contains("does not match"), "{detail}"),
            other => panic!("{other:?}"),
        }
        // No curve anywhere.
        let der = sec1::EcPrivateKey { private_key: &[0x22; 32], parameters: None, public_key: None }
            .to_der()
            .expect("der");
        assert!(matches!(parse_private_key(&der, None), Err(PkiError::Malformed { .. })));
        // secp256k1 is refused by the key policy.
        let der = sec1::EcPrivateKey {
            private_key: &[0x22; 32],
            parameters: Some(sec1::EcParameters::NamedCurve(ObjectIdentifier::new_unwrap("1.3.132.0.10"))),
            public_key: None,
        }
        .to_der()
        .expect("der");
        assert!(matches!(parse_private_key(&der, None), Err(PkiError::WeakKey { .. })));
        // Garbage and a PEM of another kind.
        assert!(matches!(parse_private_key(b"", None), Err(PkiError::Malformed { what: WHAT_KEY, .. })));
        assert!(matches!(
            parse_private_key(b"\x30\x00", None),
            Err(PkiError::Malformed { what: WHAT_KEY, .. })
        ));
        let pem = super::super::pem_encode("CERTIFICATE", &[0x30, 0x00]);
        assert!(matches!(parse_private_key(pem.as_bytes(), None), Err(PkiError::PemLabel { .. })));
    }

    #[test]
    fn matching_ignores_point_compression() {
        let key = parse_private_key(&sec1_p256(0x22), None).expect("sec1");
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).expect("key");
        let compressed = ec_spki(SECP256R1, sk.verifying_key().to_sec1_point(true).as_bytes()).expect("spki");
        assert_eq!(canonical_spki(&compressed).as_deref(), Some(key.public_key_spki_der()));
        assert!(canonical_spki(b"junk").is_none());
        assert!(!key.matches_certificate(b"not a certificate"));
    }

    #[test]
    fn generated_keys_are_fresh_and_pass_the_parser() {
        for kind in [KeyKind::EcP256, KeyKind::EcP384] {
            let a = PrivateKeyMaterial::generate(kind).expect("generate");
            let b = PrivateKeyMaterial::generate(kind).expect("generate");
            assert_eq!(a.kind(), kind);
            assert_ne!(a.public_key_spki_der(), b.public_key_spki_der(), "two draws, two keys");
            // What leaves in the PKCS#12 reads back as the same key.
            let again = parse_private_key(&a.to_pkcs8_der().expect("pkcs8"), None).expect("parse");
            assert_eq!(again.public_key_spki_der(), a.public_key_spki_der());
        }
    }

    #[test]
    fn generated_rsa_key() {
        let k = PrivateKeyMaterial::generate(KeyKind::Rsa { bits: 2048 }).expect("generate");
        assert_eq!(k.kind(), KeyKind::Rsa { bits: 2048 });
        let again = parse_private_key(&k.to_pkcs8_der().expect("pkcs8"), None).expect("parse");
        assert_eq!(again.public_key_spki_der(), k.public_key_spki_der());
    }
}
