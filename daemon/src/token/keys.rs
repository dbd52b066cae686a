//! Key operations run on a pooled, logged-in session (inside `pool::Inner::exec`, off the async
//! executor): key-pair generation with the house attribute policy, SubjectPublicKeyInfo
//! building from the public key's attributes, find/delete by CKA_ID, and signing with a cached
//! private-key handle.

use super::error::{OpError, TokenError, counted, hex};
use super::pool::OpCtx;
use super::{GeneratedKeyPair, KeyPairRequest, SignMechanism};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use der::asn1::{BitString, ObjectIdentifier, OctetString, Uint};
use der::{Any, Decode, Encode};
use hsm_config::KeyAlgorithm;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// id-ecPublicKey (RFC 5480).
pub(super) const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1.
pub(super) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub(super) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption (RFC 8017).
pub(super) const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The public exponent of every RSA key we generate: F4.
const RSA_PUBLIC_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// How the token generates a key of this algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyShape {
    Ec { curve: ObjectIdentifier, field_len: usize },
    Rsa { bits: u64 },
}

impl KeyShape {
    /// The EC shape of a named curve we support (from CKA_EC_PARAMS), if it is one.
    pub(super) fn ec(curve: ObjectIdentifier) -> Option<KeyShape> {
        match curve {
            SECP256R1 => Some(KeyShape::Ec { curve, field_len: 32 }),
            SECP384R1 => Some(KeyShape::Ec { curve, field_len: 48 }),
            _ => None,
        }
    }
}

fn shape(algorithm: KeyAlgorithm) -> KeyShape {
    match algorithm {
        KeyAlgorithm::EcP256 => KeyShape::Ec { curve: SECP256R1, field_len: 32 },
        KeyAlgorithm::EcP384 => KeyShape::Ec { curve: SECP384R1, field_len: 48 },
        KeyAlgorithm::Rsa2048 => KeyShape::Rsa { bits: 2048 },
        KeyAlgorithm::Rsa3072 => KeyShape::Rsa { bits: 3072 },
        KeyAlgorithm::Rsa4096 => KeyShape::Rsa { bits: 4096 },
    }
}

fn der_err(what: &str, e: der::Error) -> TokenError {
    TokenError::Internal(format!("{what}: {e}"))
}

/// Generates the key pair and reads back its public half as SubjectPublicKeyInfo DER.
pub(super) fn generate(
    session: &Session,
    ctx: &OpCtx<'_>,
    req: &KeyPairRequest,
) -> Result<GeneratedKeyPair, OpError> {
    let shape = shape(req.algorithm);
    // Policy (DESIGN.md): the private key never leaves the token — sensitive, not extractable,
    // private (needs login to use), and only good for signing.
    let private = vec![
        Attribute::Token(req.persistent),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        // Tokens default the other usages differently (SoftHSM turns decrypt and unwrap on);
        // a signing key says so explicitly.
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(req.id.clone()),
        Attribute::Label(req.label.as_bytes().to_vec()),
    ];
    // The public key is readable without login so certificates can be matched to it later.
    let mut public = vec![
        Attribute::Token(req.persistent),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Id(req.id.clone()),
        Attribute::Label(req.label.as_bytes().to_vec()),
    ];
    let mechanism = match shape {
        KeyShape::Ec { curve, .. } => {
            let params = curve.to_der().map_err(|e| der_err("encoding the curve OID", e))?;
            public.push(Attribute::EcParams(params));
            Mechanism::EccKeyPairGen
        }
        KeyShape::Rsa { bits } => {
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (pub_handle, priv_handle) =
        counted("C_GenerateKeyPair", session.generate_key_pair(&mechanism, &public, &private))?;
    // A cached handle for this id (an older key) would now sign with the wrong key.
    ctx.forget_key(&req.id);

    match public_key_der(session, pub_handle, shape) {
        Ok(public_key_der) => Ok(GeneratedKeyPair {
            id: req.id.clone(),
            label: req.label.clone(),
            algorithm: req.algorithm,
            public_key_der,
        }),
        Err(e) => {
            // Do not leave a half-reported key pair behind: the caller never learns about it.
            for h in [priv_handle, pub_handle] {
                if let Err(del) = counted("C_DestroyObject", session.destroy_object(h)) {
                    tracing::warn!(serial = ctx.serial(), error = %del, "could not remove a key pair whose public key was unreadable");
                }
            }
            Err(e)
        }
    }
}

/// SubjectPublicKeyInfo DER of the public key object `handle`, read from its attributes.
pub(super) fn public_key_der(
    session: &Session,
    handle: ObjectHandle,
    shape: KeyShape,
) -> Result<Vec<u8>, OpError> {
    match shape {
        KeyShape::Ec { curve, field_len } => {
            let attrs =
                counted("C_GetAttributeValue", session.get_attributes(handle, &[AttributeType::EcPoint]))?;
            let point = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(|| TokenError::Internal("the token returned no CKA_EC_POINT".into()))?;
            Ok(ec_spki(curve, field_len, &point)?)
        }
        KeyShape::Rsa { .. } => {
            let attrs = counted(
                "C_GetAttributeValue",
                session.get_attributes(handle, &[AttributeType::Modulus, AttributeType::PublicExponent]),
            )?;
            let (mut modulus, mut exponent) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => modulus = Some(m),
                    Attribute::PublicExponent(e) => exponent = Some(e),
                    _ => {}
                }
            }
            match (modulus, exponent) {
                (Some(m), Some(e)) => Ok(rsa_spki(&m, &e)?),
                _ => Err(TokenError::Internal(
                    "the token returned no CKA_MODULUS / CKA_PUBLIC_EXPONENT".into(),
                )
                .into()),
            }
        }
    }
}

/// The uncompressed point from CKA_EC_POINT. PKCS#11 says the attribute is the DER encoding of
/// an OCTET STRING (SoftHSM does that); some modules return the bare point, so accept both.
pub(super) fn unwrap_ec_point(attr: &[u8], field_len: usize) -> Result<Vec<u8>, TokenError> {
    let point_len = 1 + 2 * field_len;
    let is_point = |b: &[u8]| b.len() == point_len && b.first() == Some(&0x04);
    // A bare point also starts with 0x04 (the OCTET STRING tag), so the length decides first.
    if is_point(attr) {
        return Ok(attr.to_vec());
    }
    let inner = OctetString::from_der(attr).map_err(|e| der_err("CKA_EC_POINT is not an OCTET STRING", e))?;
    if is_point(inner.as_bytes()) {
        Ok(inner.as_bytes().to_vec())
    } else {
        Err(TokenError::Internal(format!(
            "CKA_EC_POINT holds {} bytes, expected an uncompressed point of {point_len}",
            inner.as_bytes().len()
        )))
    }
}

/// SubjectPublicKeyInfo for an EC key: id-ecPublicKey with the namedCurve parameter (RFC 5480).
pub(super) fn ec_spki(
    curve: ObjectIdentifier,
    field_len: usize,
    ec_point_attr: &[u8],
) -> Result<Vec<u8>, TokenError> {
    let point = unwrap_ec_point(ec_point_attr, field_len)?;
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&curve).map_err(|e| der_err("encoding the curve", e))?),
        },
        subject_public_key: BitString::from_bytes(&point).map_err(|e| der_err("encoding the point", e))?,
    };
    spki.to_der().map_err(|e| der_err("encoding SubjectPublicKeyInfo", e))
}

/// SubjectPublicKeyInfo for an RSA key: rsaEncryption, NULL parameters, and the bit string
/// holding RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017).
pub(super) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, TokenError> {
    let rsa_public_key = [
        Uint::new(modulus).map_err(|e| der_err("encoding the modulus", e))?,
        Uint::new(exponent).map_err(|e| der_err("encoding the exponent", e))?,
    ]
    .to_der()
    .map_err(|e| der_err("encoding RSAPublicKey", e))?;
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned { oid: RSA_ENCRYPTION, parameters: Some(Any::null()) },
        subject_public_key: BitString::from_bytes(&rsa_public_key)
            .map_err(|e| der_err("encoding the key", e))?,
    };
    spki.to_der().map_err(|e| der_err("encoding SubjectPublicKeyInfo", e))
}

/// C_FindObjects, but an empty answer is checked against the session's login state: private
/// objects are invisible to a logged-out session, and a token reset logs us out without any
/// call failing — "no such key" would then be a lie (and delete would silently do nothing).
fn find(session: &Session, template: &[Attribute]) -> Result<Vec<ObjectHandle>, OpError> {
    let found = counted("C_FindObjects", session.find_objects(template))?;
    if found.is_empty() {
        let state = counted("C_GetSessionInfo", session.get_session_info())?.session_state();
        if !matches!(state, SessionState::RwUser | SessionState::RoUser) {
            return Err(OpError::Gone(format!("the session is no longer logged in ({state:?})")));
        }
    }
    Ok(found)
}

/// Destroys the private and public key objects with this CKA_ID; returns how many went.
pub(super) fn delete(session: &Session, ctx: &OpCtx<'_>, key_id: &[u8]) -> Result<usize, OpError> {
    // Forget first: even if a destroy fails half-way, no later sign may use a dead handle.
    ctx.forget_key(key_id);
    let mut destroyed = 0;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let handles = find(session, &[Attribute::Class(class), Attribute::Id(key_id.to_vec())])?;
        for h in handles {
            match counted("C_DestroyObject", session.destroy_object(h)) {
                Ok(()) => destroyed += 1,
                // Destroyed concurrently by another session: the goal is reached.
                Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(destroyed)
}

/// Finds the private key with this CKA_ID (through the per-token handle cache).
fn private_key(session: &Session, ctx: &OpCtx<'_>, key_id: &[u8]) -> Result<ObjectHandle, OpError> {
    if let Some(h) = ctx.cached_key(key_id) {
        return Ok(h);
    }
    let handles =
        find(session, &[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(key_id.to_vec())])?;
    let Some(&handle) = handles.first() else {
        return Err(TokenError::KeyNotFound { serial: ctx.serial().to_owned(), key_id: hex(key_id) }.into());
    };
    if handles.len() > 1 {
        tracing::warn!(serial = ctx.serial(), key_id = %hex(key_id), count = handles.len(), "several private keys share one CKA_ID; using the first");
    }
    ctx.remember_key(key_id, handle);
    Ok(handle)
}

/// Signs `data` with the private key `key_id`. One retry when a cached handle went stale
/// (the key was deleted and re-created by someone else): the cache is only an accelerator.
pub(super) fn sign(
    session: &Session,
    ctx: &OpCtx<'_>,
    key_id: &[u8],
    mechanism: SignMechanism,
    data: &[u8],
) -> Result<Vec<u8>, OpError> {
    let digest;
    let (mech, input): (Mechanism<'_>, &[u8]) = match mechanism {
        // SoftHSM (and many cards) have no CKM_ECDSA_SHA256: hash here, sign the digest.
        SignMechanism::EcdsaSha256 => {
            digest = Sha256::digest(data);
            (Mechanism::Ecdsa, digest.as_slice())
        }
        SignMechanism::EcdsaPrehashed => (Mechanism::Ecdsa, data),
        SignMechanism::RsaPkcs1Sha256 => (Mechanism::Sha256RsaPkcs, data),
    };
    let was_cached = ctx.cached_key(key_id).is_some();
    let handle = private_key(session, ctx, key_id)?;
    match counted("C_Sign", session.sign(&mech, handle, input)) {
        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)) if was_cached => {
            ctx.forget_key(key_id);
            let handle = private_key(session, ctx, key_id)?;
            Ok(counted("C_Sign", session.sign(&mech, handle, input))?)
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::BitStringRef;
    use spki::SubjectPublicKeyInfoRef;

    fn p256_point() -> Vec<u8> {
        let mut p = vec![0x04];
        p.extend((1..=64).map(|i| i as u8));
        p
    }

    #[test]
    fn ec_point_wrapped_or_bare() {
        let point = p256_point();
        let wrapped = OctetString::new(point.clone()).expect("octet string").to_der().expect("der");
        assert_eq!(wrapped[..2], [0x04, 0x41]);
        assert_eq!(unwrap_ec_point(&wrapped, 32).expect("wrapped"), point);
        assert_eq!(unwrap_ec_point(&point, 32).expect("bare"), point);
    }

    #[test]
    fn ec_point_rejects_garbage() {
        assert!(unwrap_ec_point(&[], 32).is_err());
        assert!(unwrap_ec_point(&[0x04, 0x02, 0x04, 0x01], 32).is_err());
        // A compressed point inside the OCTET STRING is not what we generated.
        let compressed = OctetString::new(vec![0x02; 33]).expect("os").to_der().expect("der");
        assert!(unwrap_ec_point(&compressed, 32).is_err());
        // Right size, wrong curve.
        let p384 = OctetString::new(vec![0x04; 97]).expect("os").to_der().expect("der");
        assert!(unwrap_ec_point(&p384, 32).is_err());
        assert!(unwrap_ec_point(&p384, 48).is_ok());
    }

    #[test]
    fn ec_spki_has_named_curve() {
        let point = p256_point();
        let der = ec_spki(SECP256R1, 32, &point).expect("spki");
        let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice()).expect("parses");
        assert_eq!(spki.algorithm.oid, ID_EC_PUBLIC_KEY);
        assert_eq!(spki.algorithm.parameters_oid().expect("curve"), SECP256R1);
        assert_eq!(spki.subject_public_key.as_bytes(), Some(point.as_slice()));
    }

    #[test]
    fn rsa_spki_round_trips() {
        // A modulus with the high bit set needs a leading zero in INTEGER: Uint adds it.
        let modulus: Vec<u8> = std::iter::once(0xC3).chain((0..255).map(|i| i as u8)).collect();
        let der = rsa_spki(&modulus, &RSA_PUBLIC_EXPONENT).expect("spki");
        let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice()).expect("parses");
        assert_eq!(spki.algorithm.oid, RSA_ENCRYPTION);
        assert!(spki.algorithm.parameters.is_some_and(|p| p.is_null()));
        let key: BitStringRef<'_> = spki.subject_public_key;
        let body = key.as_bytes().expect("octet aligned");
        let (m, e) = der::AnyRef::try_from(body)
            .expect("DER")
            .sequence(|r| Ok::<_, der::Error>((Uint::decode(r)?, Uint::decode(r)?)))
            .expect("RSAPublicKey");
        assert_eq!(m.as_bytes(), modulus.as_slice());
        assert_eq!(e.as_bytes(), &RSA_PUBLIC_EXPONENT);
    }

    #[test]
    fn every_algorithm_has_a_shape() {
        for alg in KeyAlgorithm::ALL {
            match shape(alg) {
                KeyShape::Ec { field_len, .. } => assert!(field_len == 32 || field_len == 48),
                KeyShape::Rsa { bits } => assert!(bits >= 2048),
            }
        }
    }
}
