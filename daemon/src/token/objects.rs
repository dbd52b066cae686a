//! Token objects other than generated key pairs, run on a pooled session like `keys.rs`:
//! X.509 certificate objects (create, list, delete by CKA_ID), key pairs imported from outside
//! (C_CreateObject), and a key pair's public half read back by CKA_ID. The card service writes
//! issued certificates with these; the certificate store lists, imports and deletes with them.

use super::error::{OpError, TokenError, counted};
use super::keys::{ID_EC_PUBLIC_KEY, KeyShape, RSA_ENCRYPTION, public_key_der};
use super::pool::OpCtx;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use zeroize::{Zeroize, Zeroizing};

/// A certificate to write onto a token: CKO_CERTIFICATE / CKC_X_509, public, persistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateObject {
    /// CKA_ID: the same as the private key's, which is how PKCS#11 applications pair them.
    pub id: Vec<u8>,
    pub label: String,
    /// CKA_VALUE: the certificate, DER.
    pub value: Vec<u8>,
    /// CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER: DER of the Name / INTEGER, as PKCS#11 says.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub serial_number: Vec<u8>,
}

/// A certificate object found on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCertificate {
    pub id: Vec<u8>,
    pub label: String,
    /// The certificate, DER.
    pub value: Vec<u8>,
}

/// The secret half of a key pair to import. Zeroized when dropped; its Debug says nothing.
pub enum ImportedPrivateKey {
    /// CKA_EC_PARAMS (DER of the curve OID) and CKA_VALUE (the scalar).
    Ec { ec_params: Vec<u8>, value: Zeroizing<Vec<u8>> },
    /// The CRT form PKCS#11 takes.
    Rsa {
        modulus: Vec<u8>,
        public_exponent: Vec<u8>,
        private_exponent: Zeroizing<Vec<u8>>,
        prime_1: Zeroizing<Vec<u8>>,
        prime_2: Zeroizing<Vec<u8>>,
        exponent_1: Zeroizing<Vec<u8>>,
        exponent_2: Zeroizing<Vec<u8>>,
        coefficient: Zeroizing<Vec<u8>>,
    },
}

impl std::fmt::Debug for ImportedPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportedPrivateKey::Ec { .. } => f.write_str("ImportedPrivateKey::Ec([redacted])"),
            ImportedPrivateKey::Rsa { .. } => f.write_str("ImportedPrivateKey::Rsa([redacted])"),
        }
    }
}

/// A key pair to create on a token from outside material.
#[derive(Debug)]
pub struct ImportedKeyPair {
    pub id: Vec<u8>,
    pub label: String,
    /// SubjectPublicKeyInfo DER of the pair; becomes the public key object.
    pub public_key_der: Vec<u8>,
    pub private: ImportedPrivateKey,
}

/// Writes a certificate object. Anything already there under the same CKA_ID is the caller's
/// business (the certificate store replaces; the card service deletes first).
pub(super) fn create_certificate(session: &Session, cert: &CertificateObject) -> Result<(), OpError> {
    let template = vec![
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Token(true),
        // Certificates are public: OpenSC, browsers and pkcs11-tool list them before login.
        Attribute::Private(false),
        Attribute::Id(cert.id.clone()),
        Attribute::Label(cert.label.as_bytes().to_vec()),
        Attribute::Subject(cert.subject.clone()),
        Attribute::Issuer(cert.issuer.clone()),
        Attribute::SerialNumber(cert.serial_number.clone()),
        Attribute::Value(cert.value.clone()),
    ];
    counted("C_CreateObject", session.create_object(&template))?;
    Ok(())
}

/// Every X.509 certificate object on the token, or those with this CKA_ID.
pub(super) fn list_certificates(
    session: &Session,
    id: Option<&[u8]>,
) -> Result<Vec<TokenCertificate>, OpError> {
    let mut template =
        vec![Attribute::Class(ObjectClass::CERTIFICATE), Attribute::CertificateType(CertificateType::X_509)];
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    let mut out = Vec::new();
    for handle in counted("C_FindObjects", session.find_objects(&template))? {
        let attrs = match counted(
            "C_GetAttributeValue",
            session.get_attributes(handle, &[AttributeType::Id, AttributeType::Label, AttributeType::Value]),
        ) {
            Ok(a) => a,
            // Destroyed by another session between the find and the read.
            Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut cert = TokenCertificate { id: Vec::new(), label: String::new(), value: Vec::new() };
        for a in attrs {
            match a {
                Attribute::Id(v) => cert.id = v,
                Attribute::Label(v) => cert.label = String::from_utf8_lossy(&v).into_owned(),
                Attribute::Value(v) => cert.value = v,
                _ => {}
            }
        }
        out.push(cert);
    }
    Ok(out)
}

/// Destroys the certificate objects with this CKA_ID; returns how many went.
pub(super) fn delete_certificates(session: &Session, id: &[u8]) -> Result<usize, OpError> {
    let handles = counted(
        "C_FindObjects",
        session.find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), Attribute::Id(id.to_vec())]),
    )?;
    destroy_all(session, handles)
}

fn destroy_all(session: &Session, handles: Vec<ObjectHandle>) -> Result<usize, OpError> {
    let mut destroyed = 0;
    for h in handles {
        match counted("C_DestroyObject", session.destroy_object(h)) {
            Ok(()) => destroyed += 1,
            Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(destroyed)
}

fn bad_input(what: &str) -> OpError {
    TokenError::Internal(what.to_owned()).into()
}

/// Creates the public and private key objects of an imported pair under one CKA_ID. The
/// private key gets the house policy of generated keys: sensitive, not extractable, private,
/// sign-only. If the second object cannot be made, the first is removed again.
pub(super) fn import_key_pair(
    session: &Session,
    ctx: &OpCtx<'_>,
    key: &ImportedKeyPair,
) -> Result<(), OpError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(&key.public_key_der)
        .map_err(|e| bad_input(&format!("the public key is not SubjectPublicKeyInfo: {e}")))?;
    let common = |class: ObjectClass, key_type: KeyType| {
        vec![
            Attribute::Class(class),
            Attribute::KeyType(key_type),
            Attribute::Token(true),
            Attribute::Id(key.id.clone()),
            Attribute::Label(key.label.as_bytes().to_vec()),
        ]
    };
    let (mut public, mut private) = match (&key.private, spki.algorithm.oid) {
        (ImportedPrivateKey::Ec { ec_params, value }, ID_EC_PUBLIC_KEY) => {
            let point = spki
                .subject_public_key
                .as_bytes()
                .ok_or_else(|| bad_input("EC point is not octet-aligned"))?;
            let ec_point = OctetString::new(point)
                .and_then(|o| o.to_der())
                .map_err(|e| bad_input(&format!("encoding CKA_EC_POINT: {e}")))?;
            let mut public = common(ObjectClass::PUBLIC_KEY, KeyType::EC);
            public.push(Attribute::EcParams(ec_params.clone()));
            public.push(Attribute::EcPoint(ec_point));
            let mut private = common(ObjectClass::PRIVATE_KEY, KeyType::EC);
            private.push(Attribute::EcParams(ec_params.clone()));
            private.push(Attribute::Value(value.to_vec()));
            (public, private)
        }
        (
            ImportedPrivateKey::Rsa {
                modulus,
                public_exponent,
                private_exponent,
                prime_1,
                prime_2,
                exponent_1,
                exponent_2,
                coefficient,
            },
            RSA_ENCRYPTION,
        ) => {
            let mut public = common(ObjectClass::PUBLIC_KEY, KeyType::RSA);
            public.push(Attribute::Modulus(modulus.clone()));
            public.push(Attribute::PublicExponent(public_exponent.clone()));
            let mut private = common(ObjectClass::PRIVATE_KEY, KeyType::RSA);
            private.extend([
                Attribute::Modulus(modulus.clone()),
                Attribute::PublicExponent(public_exponent.clone()),
                Attribute::PrivateExponent(private_exponent.to_vec()),
                Attribute::Prime1(prime_1.to_vec()),
                Attribute::Prime2(prime_2.to_vec()),
                Attribute::Exponent1(exponent_1.to_vec()),
                Attribute::Exponent2(exponent_2.to_vec()),
                Attribute::Coefficient(coefficient.to_vec()),
            ]);
            (public, private)
        }
        _ => return Err(bad_input("the private key and the public key are of different algorithms")),
    };
    public.extend([
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ]);
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    // A cached handle for this id would now sign with the wrong (replaced) key.
    ctx.forget_key(&key.id);
    let created = counted("C_CreateObject", session.create_object(&private));
    wipe(&mut private);
    let private_handle = created?;
    if let Err(e) = counted("C_CreateObject", session.create_object(&public)) {
        if let Err(del) = counted("C_DestroyObject", session.destroy_object(private_handle)) {
            tracing::warn!(serial = ctx.serial(), error = %del, "could not remove an imported private key whose public half failed");
        }
        return Err(e.into());
    }
    Ok(())
}

/// Zeroizes the byte values of a template that held secret material.
fn wipe(template: &mut [Attribute]) {
    for a in template {
        match a {
            Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
}

/// The SubjectPublicKeyInfo DER of the public key object with this CKA_ID, if there is one.
pub(super) fn public_key(session: &Session, id: &[u8]) -> Result<Option<Vec<u8>>, OpError> {
    let handles = counted(
        "C_FindObjects",
        session.find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(id.to_vec())]),
    )?;
    let Some(&handle) = handles.first() else {
        return Ok(None);
    };
    let attrs = counted("C_GetAttributeValue", session.get_attributes(handle, &[AttributeType::KeyType]))?;
    let key_type = attrs.into_iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(k),
        _ => None,
    });
    let shape = match key_type {
        Some(KeyType::EC) => {
            let params =
                counted("C_GetAttributeValue", session.get_attributes(handle, &[AttributeType::EcParams]))?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::EcParams(v) => Some(v),
                        _ => None,
                    })
                    .ok_or_else(|| bad_input("the EC public key has no CKA_EC_PARAMS"))?;
            let curve = ObjectIdentifier::from_der(&params)
                .map_err(|e| bad_input(&format!("CKA_EC_PARAMS is not a named curve: {e}")))?;
            KeyShape::ec(curve).ok_or_else(|| bad_input(&format!("unsupported curve {curve}")))?
        }
        // The size plays no part in reading the key back.
        Some(KeyType::RSA) => KeyShape::Rsa { bits: 0 },
        other => return Err(bad_input(&format!("unsupported key type {other:?}"))),
    };
    public_key_der(session, handle, shape).map(Some)
}
