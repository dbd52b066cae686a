//! Public keys and signature checks, under everything else in `pki/`: a subject key from a CSR
//! or a template passes the key policy here (P-256, P-384, RSA ≥ 2048) before it is certified,
//! and every signature — a CSR's self-signature, and every signature the CA key makes in the
//! HSM — is verified here (p256 / p384 / rsa) before anything built with it leaves the layer.

use super::PkiError;
use der::asn1::{ObjectIdentifier, Uint};
use der::{Any, Decode, Encode, Sequence};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};

pub(crate) const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub(crate) const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// The smallest RSA modulus we certify or sign with.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus we accept (bigger ones make verification a denial-of-service lever).
pub const MAX_RSA_BITS: usize = 8192;

/// The kind of a public key that passed the key policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    EcP256,
    EcP384,
    /// RSA with this many modulus bits (2048 ≤ bits ≤ 8192).
    Rsa {
        bits: usize,
    },
}

impl std::fmt::Display for KeyKind {
    /// The `FAMILY:PARAM` form profiles use: `EC:P-256`, `EC:P-384`, `RSA:2048`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::EcP256 => f.write_str("EC:P-256"),
            KeyKind::EcP384 => f.write_str("EC:P-384"),
            KeyKind::Rsa { bits } => write!(f, "RSA:{bits}"),
        }
    }
}

/// How a CA signs: fixed by its key (P-256 → ECDSA with SHA-256, P-384 → ECDSA with SHA-384,
/// RSA → sha256WithRSAEncryption, PKCS#1 v1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    RsaPkcs1Sha256,
}

impl SignatureAlgorithm {
    /// The algorithm a CA with this key signs with.
    pub fn for_key(kind: KeyKind) -> SignatureAlgorithm {
        match kind {
            KeyKind::EcP256 => SignatureAlgorithm::EcdsaP256Sha256,
            KeyKind::EcP384 => SignatureAlgorithm::EcdsaP384Sha384,
            KeyKind::Rsa { .. } => SignatureAlgorithm::RsaPkcs1Sha256,
        }
    }

    /// The AlgorithmIdentifier written into certificates, CSRs and CRLs: no parameters for
    /// ECDSA (RFC 5758), NULL for RSA (RFC 4055).
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None }
            }
            SignatureAlgorithm::EcdsaP384Sha384 => {
                AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA384, parameters: None }
            }
            SignatureAlgorithm::RsaPkcs1Sha256 => {
                AlgorithmIdentifierOwned { oid: SHA256_WITH_RSA, parameters: Some(Any::null()) }
            }
        }
    }

    pub(crate) fn verify_alg(self) -> VerifyAlg {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => VerifyAlg { scheme: Scheme::Ecdsa, hash: Hash::Sha256 },
            SignatureAlgorithm::EcdsaP384Sha384 => VerifyAlg { scheme: Scheme::Ecdsa, hash: Hash::Sha384 },
            SignatureAlgorithm::RsaPkcs1Sha256 => VerifyAlg { scheme: Scheme::RsaPkcs1, hash: Hash::Sha256 },
        }
    }

    /// Does a key of this kind sign with this algorithm?
    pub fn matches_key(self, kind: KeyKind) -> bool {
        SignatureAlgorithm::for_key(kind) == self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Ecdsa,
    RsaPkcs1,
}

/// A signature algorithm we can verify (a superset of what we sign with: CSRs from other
/// tools may use SHA-512, or SHA-384 with RSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerifyAlg {
    pub(crate) scheme: Scheme,
    pub(crate) hash: Hash,
}

impl VerifyAlg {
    /// From an AlgorithmIdentifier: ECDSA with SHA-256/384/512 (parameters absent), PKCS#1 v1.5
    /// RSA with SHA-256/384/512 (parameters NULL or absent). Anything else (SHA-1, RSA-PSS,
    /// EdDSA) is `UnsupportedSignatureAlgorithm`.
    pub(crate) fn from_identifier(
        oid: ObjectIdentifier,
        parameters: Option<&Any>,
    ) -> Result<VerifyAlg, PkiError> {
        let (scheme, hash) = match oid {
            o if o == ECDSA_WITH_SHA256 => (Scheme::Ecdsa, Hash::Sha256),
            o if o == ECDSA_WITH_SHA384 => (Scheme::Ecdsa, Hash::Sha384),
            o if o == ECDSA_WITH_SHA512 => (Scheme::Ecdsa, Hash::Sha512),
            o if o == SHA256_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha256),
            o if o == SHA384_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha384),
            o if o == SHA512_WITH_RSA => (Scheme::RsaPkcs1, Hash::Sha512),
            other => return Err(PkiError::UnsupportedSignatureAlgorithm { oid: other.to_string() }),
        };
        let params_ok = match (scheme, parameters) {
            (_, None) => true,
            (Scheme::RsaPkcs1, Some(p)) => p.is_null(),
            (Scheme::Ecdsa, Some(_)) => false,
        };
        if !params_ok {
            return Err(PkiError::malformed(
                "signature algorithm",
                format!("unexpected parameters for {oid}"),
            ));
        }
        Ok(VerifyAlg { scheme, hash })
    }
}

/// A parsed public key that passed the key policy, ready to verify signatures.
#[derive(Debug, Clone)]
pub(crate) enum VerifyingKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(Box<rsa::PublicKey>),
}

/// A subject or CA public key: its kind, the key for verification, and its SPKI DER.
#[derive(Debug, Clone)]
pub struct PublicKey {
    kind: KeyKind,
    key: VerifyingKey,
    spki_der: Vec<u8>,
    /// EC keys: the SEC1 point as the SPKI carries it, for ring's verifier.
    ec_point: Vec<u8>,
}

#[derive(Sequence)]
struct RsaPublicKeyDer {
    modulus: Uint,
    public_exponent: Uint,
}

#[derive(Sequence)]
struct EcdsaSigValue {
    r: Uint,
    s: Uint,
}

fn bits(magnitude: &[u8]) -> usize {
    match magnitude.iter().position(|b| *b != 0) {
        Some(i) => (magnitude.len() - i - 1) * 8 + (8 - magnitude[i].leading_zeros() as usize),
        None => 0,
    }
}

fn curve_name(oid: &ObjectIdentifier) -> String {
    let known = [
        ("1.3.132.0.10", "secp256k1"),
        ("1.3.132.0.35", "P-521"),
        ("1.2.840.10045.3.1.1", "P-192"),
        ("1.3.132.0.33", "P-224"),
        ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
        ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"),
        ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"),
    ];
    let s = oid.to_string();
    match known.iter().find(|(o, _)| *o == s) {
        Some((_, name)) => format!("{name} ({s})"),
        None => s,
    }
}

impl PublicKey {
    /// Parses SubjectPublicKeyInfo DER and applies the key policy: EC keys on P-256 or P-384
    /// (named curve) with a valid point; RSA keys of 2048–8192 bits with an odd exponent ≥ 3.
    /// Other curves and short RSA keys are `WeakKey`; other algorithms
    /// `UnsupportedKeyAlgorithm`; broken encodings `Malformed`.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<PublicKey, PkiError> {
        let spki =
            SubjectPublicKeyInfoRef::try_from(spki_der).map_err(|e| PkiError::malformed("public key", e))?;
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| PkiError::malformed("public key", "the key bit string is not octet-aligned"))?;
        let (kind, key) = match spki.algorithm.oid {
            ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| PkiError::malformed("public key", "EC key without a named curve"))?;
                match curve {
                    SECP256R1 => {
                        let k = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                            .map_err(|_| PkiError::malformed("public key", "not a valid P-256 point"))?;
                        (KeyKind::EcP256, VerifyingKey::P256(k))
                    }
                    SECP384R1 => {
                        let k = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                            .map_err(|_| PkiError::malformed("public key", "not a valid P-384 point"))?;
                        (KeyKind::EcP384, VerifyingKey::P384(k))
                    }
                    other => {
                        return Err(PkiError::WeakKey {
                            detail: format!(
                                "EC curve {} is not accepted: use P-256 or P-384",
                                curve_name(&other)
                            ),
                        });
                    }
                }
            }
            RSA_ENCRYPTION => {
                let parsed = RsaPublicKeyDer::from_der(key_bytes)
                    .map_err(|e| PkiError::malformed("public key", format!("RSAPublicKey: {e}")))?;
                let n_bits = bits(parsed.modulus.as_bytes());
                if n_bits < MIN_RSA_BITS {
                    return Err(PkiError::WeakKey {
                        detail: format!("RSA key of {n_bits} bits: at least {MIN_RSA_BITS} required"),
                    });
                }
                if n_bits > MAX_RSA_BITS {
                    return Err(PkiError::WeakKey {
                        detail: format!("RSA key of {n_bits} bits: at most {MAX_RSA_BITS} accepted"),
                    });
                }
                let e = parsed.public_exponent.as_bytes();
                let e_odd = e.last().is_some_and(|b| b & 1 == 1);
                if !e_odd || bits(e) < 2 {
                    return Err(PkiError::WeakKey {
                        detail: "RSA public exponent must be odd and at least 3".into(),
                    });
                }
                let k = rsa::PublicKey::try_from(spki)
                    .map_err(|e| PkiError::malformed("public key", format!("RSA key: {e}")))?;
                (KeyKind::Rsa { bits: n_bits }, VerifyingKey::Rsa(Box::new(k)))
            }
            other => return Err(PkiError::UnsupportedKeyAlgorithm { oid: other.to_string() }),
        };
        let ec_point = match key {
            VerifyingKey::P256(_) | VerifyingKey::P384(_) => key_bytes.to_vec(),
            VerifyingKey::Rsa(_) => Vec::new(),
        };
        Ok(PublicKey { kind, key, spki_der: spki_der.to_vec(), ec_point })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// SubjectPublicKeyInfo DER, as given.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Verifies a signature in its X.509 encoding (ECDSA: DER `Ecdsa-Sig-Value`; RSA: the
    /// raw modulus-sized block) over `message`.
    pub(crate) fn verify(&self, alg: VerifyAlg, message: &[u8], signature: &[u8]) -> bool {
        // ECDSA with SHA-256/384 goes through ring, whose P-256/P-384 arithmetic is assembly:
        // verifying was a third of the daemon's CPU in the issuance benchmark with the
        // pure-Rust curves (every certificate verifies its CSR and the HSM's signature).
        // ring takes uncompressed points only; anything else takes the portable path.
        if let Some(ring_alg) = self.ring_ecdsa(alg)
            && self.ec_point.first() == Some(&0x04)
        {
            return ring::signature::UnparsedPublicKey::new(ring_alg, &self.ec_point)
                .verify(message, signature)
                .is_ok();
        }
        let digest = alg.hash.digest(message);
        self.verify_prehash(alg, &digest, signature)
    }

    fn ring_ecdsa(&self, alg: VerifyAlg) -> Option<&'static ring::signature::EcdsaVerificationAlgorithm> {
        use ring::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1,
        };
        match (&self.key, alg.scheme, alg.hash) {
            (VerifyingKey::P256(_), Scheme::Ecdsa, Hash::Sha256) => Some(&ECDSA_P256_SHA256_ASN1),
            (VerifyingKey::P256(_), Scheme::Ecdsa, Hash::Sha384) => Some(&ECDSA_P256_SHA384_ASN1),
            (VerifyingKey::P384(_), Scheme::Ecdsa, Hash::Sha256) => Some(&ECDSA_P384_SHA256_ASN1),
            (VerifyingKey::P384(_), Scheme::Ecdsa, Hash::Sha384) => Some(&ECDSA_P384_SHA384_ASN1),
            _ => None,
        }
    }

    pub(crate) fn verify_prehash(&self, alg: VerifyAlg, digest: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        match (&self.key, alg.scheme) {
            (VerifyingKey::P256(k), Scheme::Ecdsa) => ecdsa_der_to_raw(signature, 32)
                .and_then(|raw| p256::ecdsa::Signature::from_slice(&raw).ok())
                .is_some_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
            (VerifyingKey::P384(k), Scheme::Ecdsa) => ecdsa_der_to_raw(signature, 48)
                .and_then(|raw| p384::ecdsa::Signature::from_slice(&raw).ok())
                .is_some_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
            (VerifyingKey::Rsa(k), Scheme::RsaPkcs1) => {
                use rsa::sha2::{Sha256 as S256, Sha384 as S384, Sha512 as S512};
                let scheme = match alg.hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<S256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<S384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<S512>(),
                };
                k.verify(scheme, digest, signature).is_ok()
            }
            // An ECDSA algorithm with an RSA key or the other way round.
            _ => false,
        }
    }
}

/// The kind of the key in this SubjectPublicKeyInfo, after the key policy.
pub fn public_key_kind(spki_der: &[u8]) -> Result<KeyKind, PkiError> {
    Ok(PublicKey::from_spki_der(spki_der)?.kind())
}

/// Key identifier per RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING
/// contents. Used for the SubjectKeyIdentifier of a certificate and the AuthorityKeyIdentifier
/// of what its key signs.
pub fn key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let spki =
        SubjectPublicKeyInfoRef::try_from(spki_der).map_err(|e| PkiError::malformed("public key", e))?;
    Ok(Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec())
}

/// Raw r‖s (as PKCS#11 returns it) → DER `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
pub(crate) fn ecdsa_raw_to_der(raw: &[u8], field_len: usize) -> Result<Vec<u8>, PkiError> {
    if raw.len() != 2 * field_len {
        return Err(PkiError::Internal(format!(
            "the token returned an ECDSA signature of {} bytes, expected {}",
            raw.len(),
            2 * field_len
        )));
    }
    let (r, s) = raw.split_at(field_len);
    let enc = |e| PkiError::encoding("an ECDSA signature", e);
    EcdsaSigValue { r: Uint::new(r).map_err(enc)?, s: Uint::new(s).map_err(enc)? }.to_der().map_err(enc)
}

/// DER `Ecdsa-Sig-Value` → raw r‖s, each left-padded to the field size. None when it is not
/// strict DER or a number is too long for the curve.
pub(crate) fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Option<Vec<u8>> {
    let v = EcdsaSigValue::from_der(der).ok()?;
    let mut raw = vec![0u8; 2 * field_len];
    for (i, n) in [v.r.as_bytes(), v.s.as_bytes()].into_iter().enumerate() {
        if n.len() > field_len {
            return None;
        }
        let end = (i + 1) * field_len;
        raw[end - n.len()..end].copy_from_slice(n);
    }
    Some(raw)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use der::asn1::BitString;
    use spki::SubjectPublicKeyInfoOwned;

    pub(crate) fn ec_spki(curve: ObjectIdentifier, point: &[u8]) -> Vec<u8> {
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ID_EC_PUBLIC_KEY,
                parameters: Some(Any::encode_from(&curve).expect("curve")),
            },
            subject_public_key: BitString::from_bytes(point).expect("bits"),
        }
        .to_der()
        .expect("der")
    }

    pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
        let key = RsaPublicKeyDer {
            modulus: Uint::new(modulus).expect("n"),
            public_exponent: Uint::new(exponent).expect("e"),
        }
        .to_der()
        .expect("der");
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid: RSA_ENCRYPTION, parameters: Some(Any::null()) },
            subject_public_key: BitString::from_bytes(&key).expect("bits"),
        }
        .to_der()
        .expect("der")
    }

    pub(crate) fn p256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).expect("key")
    }

    pub(crate) fn p256_spki(key: &p256::ecdsa::SigningKey) -> Vec<u8> {
        let point = key.verifying_key().to_sec1_point(false);
        ec_spki(SECP256R1, point.as_bytes())
    }

    #[test]
    fn ecdsa_der_round_trip() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r with the top bit set: INTEGER needs a leading zero
        raw[31] = 1;
        raw[62] = 0x01; // s small: leading zeros dropped
        raw[63] = 0x02;
        let der = ecdsa_raw_to_der(&raw, 32).expect("der");
        assert_eq!(&der[..4], &[0x30, der.len() as u8 - 2, 0x02, 33]);
        assert_eq!(ecdsa_der_to_raw(&der, 32).expect("raw"), raw);
        assert!(ecdsa_der_to_raw(&der, 16).is_none());
        assert!(ecdsa_raw_to_der(&raw[1..], 32).is_err());
        assert!(ecdsa_der_to_raw(&[0x30, 0x00], 32).is_none());
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(ecdsa_der_to_raw(&trailing, 32).is_none());
    }

    #[test]
    fn p256_key_parses_and_verifies() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let sk = p256_key();
        let spki = p256_spki(&sk);
        let pk = PublicKey::from_spki_der(&spki).expect("parses");
        assert_eq!(pk.kind(), KeyKind::EcP256);
        assert_eq!(pk.kind().to_string(), "EC:P-256");
        let msg = b"to be signed";
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&Sha256::digest(msg)).expect("sign");
        let der = ecdsa_raw_to_der(&sig.to_bytes(), 32).expect("der");
        let alg = SignatureAlgorithm::EcdsaP256Sha256.verify_alg();
        assert!(pk.verify(alg, msg, &der));
        assert!(!pk.verify(alg, b"something else", &der));
        // The same signature claimed as RSA, or with the wrong hash, fails.
        assert!(!pk.verify(VerifyAlg { scheme: Scheme::RsaPkcs1, hash: Hash::Sha256 }, msg, &der));
        assert!(!pk.verify(VerifyAlg { scheme: Scheme::Ecdsa, hash: Hash::Sha384 }, msg, &der));
        assert_eq!(key_identifier(&spki).expect("ski").len(), 20);
    }

    #[test]
    fn key_policy() {
        // Other curves are refused as weak / disallowed.
        let k1 = ObjectIdentifier::new_unwrap("1.3.132.0.10");
        match PublicKey::from_spki_der(&ec_spki(k1, &[4; 65])) {
            Err(PkiError::WeakKey { detail }) => assert!(detail.contains("secp256k1"), "{detail}"),
            other => panic!("{other:?}"),
        }
        // A point not on the curve.
        assert!(matches!(
            PublicKey::from_spki_der(&ec_spki(SECP256R1, &[4; 65])),
            Err(PkiError::Malformed { .. })
        ));
        // RSA-1024 is weak, whatever the numbers.
        let mut n1024 = vec![0xC5; 128];
        n1024[127] |= 1;
        match PublicKey::from_spki_der(&rsa_spki(&n1024, &[1, 0, 1])) {
            Err(PkiError::WeakKey { detail }) => assert!(detail.contains("1024 bits"), "{detail}"),
            other => panic!("{other:?}"),
        }
        // 2047 bits: still weak.
        let mut n2047 = vec![0xFF; 256];
        n2047[0] = 0x7F;
        assert!(matches!(
            PublicKey::from_spki_der(&rsa_spki(&n2047, &[1, 0, 1])),
            Err(PkiError::WeakKey { .. })
        ));
        // Even exponent.
        let n2048 = vec![0xC7; 256];
        assert!(matches!(PublicKey::from_spki_der(&rsa_spki(&n2048, &[2])), Err(PkiError::WeakKey { .. })));
        // Unknown algorithm (Ed25519).
        let ed = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.3.101.112"),
                parameters: None,
            },
            subject_public_key: BitString::from_bytes(&[0; 32]).expect("bits"),
        }
        .to_der()
        .expect("der");
        assert!(matches!(PublicKey::from_spki_der(&ed), Err(PkiError::UnsupportedKeyAlgorithm { .. })));
        // Garbage.
        assert!(matches!(PublicKey::from_spki_der(b"\x30\x03\x02\x01"), Err(PkiError::Malformed { .. })));
        assert!(matches!(PublicKey::from_spki_der(&[]), Err(PkiError::Malformed { .. })));
    }

    #[test]
    fn algorithm_identifiers() {
        let null = Any::null();
        assert!(VerifyAlg::from_identifier(SHA256_WITH_RSA, Some(&null)).is_ok());
        assert!(VerifyAlg::from_identifier(SHA256_WITH_RSA, None).is_ok());
        assert!(VerifyAlg::from_identifier(ECDSA_WITH_SHA256, Some(&null)).is_err());
        let sha1_rsa = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
        assert!(matches!(
            VerifyAlg::from_identifier(sha1_rsa, Some(&null)),
            Err(PkiError::UnsupportedSignatureAlgorithm { .. })
        ));
        for alg in [
            SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::RsaPkcs1Sha256,
        ] {
            let id = alg.algorithm_identifier();
            assert_eq!(
                VerifyAlg::from_identifier(id.oid, id.parameters.as_ref()).expect("known"),
                alg.verify_alg()
            );
        }
        assert!(SignatureAlgorithm::RsaPkcs1Sha256.matches_key(KeyKind::Rsa { bits: 3072 }));
        assert!(!SignatureAlgorithm::EcdsaP256Sha256.matches_key(KeyKind::EcP384));
    }

    #[test]
    fn bit_counting() {
        assert_eq!(bits(&[]), 0);
        assert_eq!(bits(&[0, 0]), 0);
        assert_eq!(bits(&[1]), 1);
        assert_eq!(bits(&[0, 0x80, 0]), 16);
        assert_eq!(bits(&[0x7F, 0xFF]), 15);
    }
}
