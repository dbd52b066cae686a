//! PKCS#12 (RFC 7292) files, at the exit of issuance and the entry of the certificate store:
//! IssueCertificate with a server-generated key (and the batch ZIP) returns the certificate,
//! its chain and the key as a PFX protected by the caller's password (`build_pkcs12`);
//! ImportCertificate of a `.p12` reads one back (`parse_pkcs12`).
//!
//! What we write, readable by OpenSSL 3 without the legacy provider:
//! - the key in a pkcs8ShroudedKeyBag, PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC);
//! - the certificates in certBags inside an encryptedData safe, same PBES2 scheme (as
//!   `openssl pkcs12 -export` does in 3.x), so the file reveals nothing without the password;
//! - the key bag and the leaf's cert bag carry `friendlyName` and `localKeyId` (SHA-1 of the
//!   certificate DER) so tools pair them;
//! - an HMAC-SHA-256 MAC with the RFC 7292 appendix B key derivation (ID 3), 2048 iterations.
//!
//! What we read: DER PFX version 3 with password integrity (MAC with SHA-1/SHA-256/384/512, or
//! none), data and PBES2 encryptedData safes, shrouded and plain key bags, X.509 cert bags.
//! Not read: the legacy PKCS#12 PBE algorithms (RC2/3DES, OpenSSL 1.x defaults), public-key
//! integrity/privacy modes, BER indefinite lengths.

use super::private_key::{check_pbe_cost, decrypt_pbes2, parse_private_key};
use super::{PkiError, PrivateKeyMaterial};
use der::asn1::{BmpString, ObjectIdentifier, OctetString, OctetStringRef};
use der::{Any, Decode, Encode, Sequence};
use hmac::{Hmac, Mac};
use pkcs8::EncryptedPrivateKeyInfoRef;
use pkcs8::pkcs5;
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::der::asn1::SetOfVec;
use zeroize::Zeroizing;

const WHAT: &str = "PKCS#12";

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.1");
const SHROUDED_KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const CERT_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
const X509_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");
const FRIENDLY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.20");
const LOCAL_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");
const SHA1_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// PBKDF2 and MAC iterations we write (OpenSSL's PKCS12_DEFAULT_ITER).
pub const PKCS12_ITERATIONS: u32 = 2048;
/// The fewest iterations we write (profiles may ask for more, never less).
pub const MIN_PKCS12_ITERATIONS: u32 = 1000;
/// Upper bound on MAC iterations we run for an uploaded file.
const MAX_MAC_ITERATIONS: u32 = 1_000_000;

#[derive(Sequence)]
struct Pfx {
    version: u8,
    auth_safe: ContentInfo,
    mac_data: Option<MacData>,
}

#[derive(Sequence)]
struct ContentInfo {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    content: Option<Any>,
}

#[derive(Sequence)]
struct MacData {
    mac: DigestInfo,
    mac_salt: OctetString,
    #[asn1(default = "one")]
    iterations: u32,
}

fn one() -> u32 {
    1
}

#[derive(Sequence)]
struct DigestInfo {
    digest_algorithm: AlgorithmIdentifierOwned,
    digest: OctetString,
}

#[derive(Sequence)]
struct EncryptedData {
    version: u8,
    encrypted_content_info: EncryptedContentInfo,
}

#[derive(Sequence)]
struct EncryptedContentInfo {
    content_type: ObjectIdentifier,
    content_encryption_algorithm: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    encrypted_content: Option<OctetString>,
}

#[derive(Sequence)]
struct SafeBag {
    bag_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    bag_value: Any,
    bag_attributes: Option<SetOfVec<Attribute>>,
}

#[derive(Sequence)]
struct CertBag {
    cert_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    cert_value: OctetString,
}

/// What a PKCS#12 file holds: the certificate of the key, the other certificates in file
/// order, the key, and the friendly name when one was given.
#[derive(Debug)]
pub struct Pkcs12Contents {
    pub certificate: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKeyMaterial,
    pub friendly_name: Option<String>,
}

#[derive(Clone, Copy)]
enum MacHash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl MacHash {
    fn from_oid(oid: ObjectIdentifier) -> Option<MacHash> {
        match oid {
            SHA1_OID => Some(MacHash::Sha1),
            SHA256_OID => Some(MacHash::Sha256),
            SHA384_OID => Some(MacHash::Sha384),
            SHA512_OID => Some(MacHash::Sha512),
            _ => None,
        }
    }

    /// (u, v): output and block size in bytes.
    fn sizes(self) -> (usize, usize) {
        match self {
            MacHash::Sha1 => (20, 64),
            MacHash::Sha256 => (32, 64),
            MacHash::Sha384 => (48, 128),
            MacHash::Sha512 => (64, 128),
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            Zeroizing::new(d.finalize().to_vec())
        }
        match self {
            MacHash::Sha1 => run::<Sha1>(parts),
            MacHash::Sha256 => run::<Sha256>(parts),
            MacHash::Sha384 => run::<Sha384>(parts),
            MacHash::Sha512 => run::<Sha512>(parts),
        }
    }

    /// `a = H(a)`, `times` times: the inner loop of the key derivation (2048 rounds per file
    /// written). One hasher reused and no allocation per round; sha2 picks the CPU's SHA
    /// extensions at run time. (ring's SHA-256 measured slower here: see `pkcs12_cost`.)
    fn rehash(self, a: &mut [u8], times: u32) {
        fn run<D: Digest + sha2::digest::FixedOutputReset>(a: &mut [u8], times: u32) {
            let mut d = D::new();
            for _ in 0..times {
                Digest::update(&mut d, &*a);
                let out = d.finalize_reset();
                a.copy_from_slice(&out);
            }
        }
        match self {
            MacHash::Sha1 => run::<Sha1>(a, times),
            MacHash::Sha256 => run::<Sha256>(a, times),
            MacHash::Sha384 => run::<Sha384>(a, times),
            MacHash::Sha512 => run::<Sha512>(a, times),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, PkiError> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, PkiError> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .map_err(|e| PkiError::Internal(format!("HMAC key: {e}")))?;
            m.update(data);
            Ok(m.finalize().into_bytes().to_vec())
        }
        match self {
            MacHash::Sha1 => run::<Hmac<Sha1>>(key, data),
            MacHash::Sha256 => run::<Hmac<Sha256>>(key, data),
            MacHash::Sha384 => run::<Hmac<Sha384>>(key, data),
            MacHash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }
}

/// The RFC 7292 appendix B.2 key derivation: `id` 1 = key, 2 = IV, 3 = MAC key. The password
/// is a BMPString with its two-byte terminator.
fn pkcs12_kdf(
    hash: MacHash,
    password: &str,
    salt: &[u8],
    id: u8,
    iterations: u32,
    out_len: usize,
) -> Zeroizing<Vec<u8>> {
    let (u, v) = hash.sizes();
    let mut pw = Zeroizing::new(Vec::with_capacity(2 * password.len() + 2));
    for c in password.encode_utf16() {
        pw.extend_from_slice(&c.to_be_bytes());
    }
    pw.extend_from_slice(&[0, 0]);
    let d = vec![id; v];
    let mut i = Zeroizing::new(Vec::new());
    for src in [salt, pw.as_slice()] {
        if !src.is_empty() {
            let len = v * src.len().div_ceil(v);
            i.extend((0..len).map(|k| src[k % src.len()]));
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(out_len));
    loop {
        let mut a = hash.digest(&[&d, &i]);
        hash.rehash(&mut a, iterations.max(1) - 1);
        let take = u.min(out_len - out.len());
        out.extend_from_slice(&a[..take]);
        if out.len() >= out_len {
            return out;
        }
        let b: Zeroizing<Vec<u8>> = Zeroizing::new((0..v).map(|k| a[k % u]).collect());
        for block in i.chunks_mut(v) {
            let mut carry: u16 = 1;
            for k in (0..block.len()).rev() {
                let sum = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = (sum & 0xFF) as u8;
                carry = sum >> 8;
            }
        }
    }
}

fn enc(e: der::Error) -> PkiError {
    PkiError::encoding("a PKCS#12 file", e)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) encryption of `plaintext` under `password` with
/// fresh salt and IV: the parameters to write and the ciphertext. The pkcs5 crate derives the
/// key with RustCrypto's PBKDF2 over sha2, which uses the CPU's SHA extensions; measured
/// against ring's PBKDF2 in a release build it was the faster of the two (`pkcs12_cost`).
fn pbes2_encrypt(
    password: &str,
    plaintext: &[u8],
    iterations: u32,
) -> Result<(pkcs5::pbes2::Parameters, Vec<u8>), PkiError> {
    let params = pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
        iterations,
        &random::<16>(),
        random::<16>(),
    )
    .map_err(|e| PkiError::Internal(format!("PBES2 parameters: {e}")))?;
    let ciphertext = params
        .encrypt(password.as_bytes(), plaintext)
        .map_err(|e| PkiError::Internal(format!("PBES2 encryption: {e}")))?;
    Ok((params, ciphertext))
}

fn attributes(friendly_name: &str, local_key_id: &[u8]) -> Result<SetOfVec<Attribute>, PkiError> {
    let name = BmpString::from_utf8(friendly_name)
        .map_err(|_| PkiError::invalid("friendly_name", "only characters of the Basic Multilingual Plane"))?;
    let name_attr = Attribute {
        oid: FRIENDLY_NAME,
        values: SetOfVec::try_from(vec![Any::encode_from(&name).map_err(enc)?]).map_err(enc)?,
    };
    let id_attr = Attribute {
        oid: LOCAL_KEY_ID,
        values: SetOfVec::try_from(vec![
            Any::encode_from(&OctetStringRef::new(local_key_id).map_err(enc)?).map_err(enc)?,
        ])
        .map_err(enc)?,
    };
    SetOfVec::try_from(vec![name_attr, id_attr]).map_err(enc)
}

fn cert_bag(cert_der: &[u8], attrs: Option<SetOfVec<Attribute>>) -> Result<SafeBag, PkiError> {
    let bag = CertBag { cert_id: X509_CERTIFICATE, cert_value: OctetString::new(cert_der).map_err(enc)? };
    Ok(SafeBag { bag_id: CERT_BAG, bag_value: Any::encode_from(&bag).map_err(enc)?, bag_attributes: attrs })
}

fn data_content(bytes: &[u8]) -> Result<ContentInfo, PkiError> {
    Ok(ContentInfo {
        content_type: ID_DATA,
        content: Some(Any::encode_from(&OctetStringRef::new(bytes).map_err(enc)?).map_err(enc)?),
    })
}

/// Builds a PFX holding `cert_der`, the `chain` certificates (DER, issuer first or in any
/// order) and `key`, protected by `password` (see the module documentation for the
/// algorithms). The key must match the certificate (`InvalidField { field: "private_key" }`);
/// the password must not be empty (`InvalidField { field: "password" }`); every certificate
/// must parse (`Malformed`).
pub fn build_pkcs12(
    cert_der: &[u8],
    chain: &[Vec<u8>],
    key: &PrivateKeyMaterial,
    friendly_name: &str,
    password: &str,
) -> Result<Vec<u8>, PkiError> {
    build_pkcs12_with(cert_der, chain, key, friendly_name, password, PKCS12_ITERATIONS)
}

/// [`build_pkcs12`] with `iterations` for PBKDF2 and the MAC (a profile's
/// `pkcs12_iterations`; at least [`MIN_PKCS12_ITERATIONS`]).
pub fn build_pkcs12_with(
    cert_der: &[u8],
    chain: &[Vec<u8>],
    key: &PrivateKeyMaterial,
    friendly_name: &str,
    password: &str,
    iterations: u32,
) -> Result<Vec<u8>, PkiError> {
    if iterations < MIN_PKCS12_ITERATIONS {
        return Err(PkiError::invalid("iterations", format!("at least {MIN_PKCS12_ITERATIONS}")));
    }
    if password.is_empty() {
        return Err(PkiError::invalid("password", "a PKCS#12 password must not be empty"));
    }
    for c in std::iter::once(cert_der).chain(chain.iter().map(Vec::as_slice)) {
        x509_cert::Certificate::from_der(c).map_err(|e| PkiError::malformed("certificate", e))?;
    }
    if !key.matches_certificate(cert_der) {
        return Err(PkiError::invalid("private_key", "the private key does not match the certificate"));
    }
    let local_key_id = Sha1::digest(cert_der).to_vec();

    // The certificates, in an encryptedData safe.
    let mut cert_bags = vec![cert_bag(cert_der, Some(attributes(friendly_name, &local_key_id)?))?];
    for c in chain {
        cert_bags.push(cert_bag(c, None)?);
    }
    let cert_safe = cert_bags.to_der().map_err(enc)?;
    let (params, encrypted) = pbes2_encrypt(password, &cert_safe, iterations)?;
    let scheme = pkcs5::EncryptionScheme::Pbes2(params);
    let algorithm = AlgorithmIdentifierOwned::from_der(&scheme.to_der().map_err(enc)?).map_err(enc)?;
    let encrypted_data = EncryptedData {
        version: 0,
        encrypted_content_info: EncryptedContentInfo {
            content_type: ID_DATA,
            content_encryption_algorithm: algorithm,
            encrypted_content: Some(OctetString::new(encrypted).map_err(enc)?),
        },
    };
    let cert_info = ContentInfo {
        content_type: ID_ENCRYPTED_DATA,
        content: Some(Any::encode_from(&encrypted_data).map_err(enc)?),
    };

    // The key, shrouded, in a data safe.
    let pkcs8 = key.to_pkcs8_der()?;
    let (params, encrypted_key) = pbes2_encrypt(password, &pkcs8, iterations)?;
    let shrouded = EncryptedPrivateKeyInfoRef {
        encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(params),
        encrypted_data: OctetStringRef::new(&encrypted_key).map_err(enc)?,
    };
    let key_bag = SafeBag {
        bag_id: SHROUDED_KEY_BAG,
        bag_value: Any::encode_from(&shrouded).map_err(enc)?,
        bag_attributes: Some(attributes(friendly_name, &local_key_id)?),
    };
    let key_safe = vec![key_bag].to_der().map_err(enc)?;
    let auth_safe = vec![cert_info, data_content(&key_safe)?].to_der().map_err(enc)?;

    // Password integrity.
    let salt = random::<16>();
    let mac_key = pkcs12_kdf(MacHash::Sha256, password, &salt, 3, iterations, 32);
    let mac = MacHash::Sha256.hmac(&mac_key, &auth_safe)?;
    let pfx = Pfx {
        version: 3,
        auth_safe: data_content(&auth_safe)?,
        mac_data: Some(MacData {
            mac: DigestInfo {
                digest_algorithm: AlgorithmIdentifierOwned { oid: SHA256_OID, parameters: Some(Any::null()) },
                digest: OctetString::new(mac).map_err(enc)?,
            },
            mac_salt: OctetString::new(salt.to_vec()).map_err(enc)?,
            iterations,
        }),
    };
    pfx.to_der().map_err(enc)
}

fn malformed(detail: impl std::fmt::Display) -> PkiError {
    PkiError::malformed(WHAT, detail)
}

fn octets(content: Option<&Any>) -> Result<Vec<u8>, PkiError> {
    let any = content.ok_or_else(|| malformed("a content without data"))?;
    let os: OctetString = any.decode_as().map_err(|e| malformed(format!("content: {e}")))?;
    Ok(os.into_bytes().into_vec())
}

fn verify_mac(mac: &MacData, password: &str, auth_safe: &[u8]) -> Result<(), PkiError> {
    let alg = mac.mac.digest_algorithm.oid;
    let hash = MacHash::from_oid(alg).ok_or_else(|| malformed(format!("unsupported MAC digest {alg}")))?;
    if mac.iterations == 0 || mac.iterations > MAX_MAC_ITERATIONS {
        return Err(malformed(format!(
            "MAC iteration count {} outside 1..={MAX_MAC_ITERATIONS}",
            mac.iterations
        )));
    }
    let (u, _) = hash.sizes();
    let key = pkcs12_kdf(hash, password, mac.mac_salt.as_bytes(), 3, mac.iterations, u);
    let expected = hash.hmac(&key, auth_safe)?;
    use subtle::ConstantTimeEq;
    if bool::from(expected.as_slice().ct_eq(mac.mac.digest.as_bytes())) {
        Ok(())
    } else {
        Err(PkiError::WrongPassword { what: WHAT })
    }
}

struct FoundCert {
    der: Vec<u8>,
    local_key_id: Option<Vec<u8>>,
    friendly_name: Option<String>,
}

fn bag_attribute(bag: &SafeBag, oid: ObjectIdentifier) -> Option<&Any> {
    bag.bag_attributes.as_ref()?.iter().find(|a| a.oid == oid)?.values.iter().next()
}

fn local_key_id(bag: &SafeBag) -> Option<Vec<u8>> {
    bag_attribute(bag, LOCAL_KEY_ID)?.decode_as::<OctetString>().ok().map(|o| o.into_bytes().into_vec())
}

fn friendly_name(bag: &SafeBag) -> Option<String> {
    bag_attribute(bag, FRIENDLY_NAME)?.decode_as::<BmpString>().ok().map(|s| s.to_string())
}

/// Reads a PFX (DER) with `password`: checks the MAC first (`WrongPassword` when it does not
/// verify), decrypts the safes, and returns the one private key with its certificate (the
/// one whose localKeyId matches the key's, else the one whose public key matches) and the
/// other certificates as the chain. Errors: `WrongPassword { what: "PKCS#12" }`,
/// `Malformed { what: "PKCS#12" }` (including no key, several keys, no matching certificate),
/// and the `parse_private_key` errors for the key inside.
pub fn parse_pkcs12(pfx: &[u8], password: &str) -> Result<Pkcs12Contents, PkiError> {
    let pfx = Pfx::from_der(pfx).map_err(malformed)?;
    if pfx.version != 3 {
        return Err(malformed(format!("version {} (expected 3)", pfx.version)));
    }
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(malformed("only password integrity (data content) is supported"));
    }
    let auth_safe = octets(pfx.auth_safe.content.as_ref())?;
    if let Some(mac) = &pfx.mac_data {
        verify_mac(mac, password, &auth_safe)?;
    }
    let safes =
        Vec::<ContentInfo>::from_der(&auth_safe).map_err(|e| malformed(format!("AuthenticatedSafe: {e}")))?;
    let mut bags = Vec::new();
    for safe in safes {
        let contents: Zeroizing<Vec<u8>> = match safe.content_type {
            ID_DATA => Zeroizing::new(octets(safe.content.as_ref())?),
            ID_ENCRYPTED_DATA => {
                let any = safe.content.as_ref().ok_or_else(|| malformed("encryptedData without content"))?;
                let ed: EncryptedData =
                    any.decode_as().map_err(|e| malformed(format!("encryptedData: {e}")))?;
                let eci = ed.encrypted_content_info;
                let alg = eci.content_encryption_algorithm;
                let scheme =
                    alg.to_der().ok().and_then(|d| pkcs5::EncryptionScheme::from_der(&d).ok()).ok_or_else(
                        || malformed(format!("unsupported encryption {} (PBES2 only)", alg.oid)),
                    )?;
                check_pbe_cost(&scheme, WHAT)?;
                let ct =
                    eci.encrypted_content.ok_or_else(|| malformed("encryptedData without ciphertext"))?;
                decrypt_pbes2(&scheme, password, ct.as_bytes(), WHAT)?
            }
            other => return Err(malformed(format!("unsupported safe content type {other}"))),
        };
        let safe_bags = Vec::<SafeBag>::from_der(&contents).map_err(|_| {
            // Decrypted garbage (no MAC and a wrong password) or a broken file.
            if safe.content_type == ID_ENCRYPTED_DATA {
                PkiError::WrongPassword { what: WHAT }
            } else {
                malformed("SafeContents")
            }
        })?;
        bags.extend(safe_bags);
    }

    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for bag in &bags {
        match bag.bag_id {
            CERT_BAG => {
                let cb: CertBag =
                    bag.bag_value.decode_as().map_err(|e| malformed(format!("certBag: {e}")))?;
                if cb.cert_id == X509_CERTIFICATE {
                    certs.push(FoundCert {
                        der: cb.cert_value.into_bytes().into_vec(),
                        local_key_id: local_key_id(bag),
                        friendly_name: friendly_name(bag),
                    });
                }
            }
            SHROUDED_KEY_BAG => {
                let der = bag.bag_value.to_der().map_err(malformed)?;
                let info = EncryptedPrivateKeyInfoRef::from_der(&der)
                    .map_err(|e| malformed(format!("key bag: {e}")))?;
                check_pbe_cost(&info.encryption_algorithm, WHAT)?;
                let plain = decrypt_pbes2(
                    &info.encryption_algorithm,
                    password,
                    info.encrypted_data.as_bytes(),
                    WHAT,
                )?;
                if pkcs8::PrivateKeyInfoRef::from_der(&plain).is_err() {
                    return Err(PkiError::WrongPassword { what: WHAT });
                }
                keys.push((parse_private_key(&plain, None)?, local_key_id(bag), friendly_name(bag)));
            }
            KEY_BAG => {
                let der = Zeroizing::new(bag.bag_value.to_der().map_err(malformed)?);
                keys.push((parse_private_key(&der, None)?, local_key_id(bag), friendly_name(bag)));
            }
            _ => {}
        }
    }
    if keys.len() != 1 {
        return Err(malformed(format!("expected exactly one private key, found {}", keys.len())));
    }
    let Some((key, key_id, key_name)) = keys.pop() else {
        return Err(malformed("no private key"));
    };
    let by_id = key_id.as_ref().and_then(|id| certs.iter().position(|c| c.local_key_id.as_ref() == Some(id)));
    let leaf = by_id
        .filter(|&i| key.matches_certificate(&certs[i].der))
        .or_else(|| certs.iter().position(|c| key.matches_certificate(&c.der)))
        .ok_or_else(|| malformed("no certificate matches the private key"))?;
    let leaf = certs.remove(leaf);
    Ok(Pkcs12Contents {
        certificate: leaf.der,
        chain: certs.into_iter().map(|c| c.der).collect(),
        key,
        friendly_name: key_name.or(leaf.friendly_name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::private_key::tests::sec1_p256;
    use crate::pki::signer::tests::{SoftP256, block_on};
    use crate::pki::{CaSigner, CertSerial, CertificateTemplate, KeyUsage, build_certificate, parse_name};
    use std::time::{Duration, SystemTime};

    fn hex(s: &str) -> Vec<u8> {
        s.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect()
    }

    #[test]
    fn kdf_matches_openssl() {
        // `openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexsalt:0102030405060708
        //   -kdfopt hexpass:00700061007300730077006f007200640000 (BMPString "password")
        //   -kdfopt iter:2048 -kdfopt id:3 PKCS12KDF`
        let k = pkcs12_kdf(MacHash::Sha256, "password", &[1, 2, 3, 4, 5, 6, 7, 8], 3, 2048, 32);
        assert_eq!(
            k.as_slice(),
            hex(
                "4F:51:0E:1B:54:28:CB:3A:1B:78:4C:EE:E7:B1:A9:56:70:F6:0E:82:51:99:C1:21:BD:17:52:EE:9E:1C:83:F2"
            )
        );
        // Several output blocks (50 bytes of SHA-1, ID 1, hexpass of BMPString "smeg"):
        // exercises the I += B + 1 step.
        let k = pkcs12_kdf(MacHash::Sha1, "smeg", &hex("0A:58:CF:64:53:0D:82:3F"), 1, 1, 50);
        assert_eq!(
            k.as_slice(),
            hex(
                "8A:AA:E6:29:7B:6C:B0:46:42:AB:5B:07:78:51:28:4E:B7:12:8F:1A:2A:7F:BC:A3:40:83:0D:0C:E0:D7:87:9D:3E:FE:DB:33:C8:AE:75:5C:95:B9:DE:FA:F5:1C:F7:97:FC:A4"
            )
        );
    }

    fn cert_for(signer: &SoftP256, cn: &str) -> Vec<u8> {
        let name = parse_name(&format!("CN={cn}")).expect("name");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let t = CertificateTemplate {
            serial: CertSerial::random(),
            issuer: name.clone(),
            subject: name,
            subject_public_key_der: signer.public_key_der().to_vec(),
            not_before: now,
            not_after: now + Duration::from_secs(86400),
            is_ca: false,
            path_len: None,
            key_usage: vec![KeyUsage::DigitalSignature],
            extended_key_usage: vec![],
            subject_alt_names: vec![],
            authority_key_id: None,
            crl_distribution_point: None,
        };
        block_on(build_certificate(signer, &t)).expect("cert")
    }

    /// A figure, not a check: what one PKCS#12 costs in this build (the batch engine makes
    /// one per device). `cargo test -p cardhsmd pkcs12_cost -- --nocapture` prints it.
    #[test]
    fn pkcs12_cost() {
        let signer = SoftP256::new(0x22);
        let cert = cert_for(&signer, "device");
        let key = parse_private_key(&sec1_p256(0x22), None).expect("key");
        let n = 20;
        let start = std::time::Instant::now();
        for _ in 0..n {
            build_pkcs12(&cert, &[], &key, "device", "batch-password").expect("pfx");
        }
        let each = start.elapsed() / n;
        println!("build_pkcs12 at {PKCS12_ITERATIONS} iterations: {each:?} each");
        // The two 2048-round derivations of a file, next to ring's, same run: PBKDF2 (twice a
        // file) and the PKCS#12 MAC key derivation (once).
        let start = std::time::Instant::now();
        for _ in 0..n {
            pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
                PKCS12_ITERATIONS,
                &random::<16>(),
                random::<16>(),
            )
            .expect("params")
            .encrypt(b"batch-password", &[7u8; 200])
            .expect("encrypt");
        }
        let ours = start.elapsed() / n;
        let rounds = std::num::NonZeroU32::new(PKCS12_ITERATIONS).expect("rounds");
        let start = std::time::Instant::now();
        for _ in 0..n {
            let mut key = [0u8; 32];
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                rounds,
                &[1; 16],
                b"batch-password",
                &mut key,
            );
        }
        let ring_pbkdf2 = start.elapsed() / n;
        println!(
            "PBKDF2-HMAC-SHA256 x{PKCS12_ITERATIONS}: {ours:?} (pkcs5/sha2, with AES) vs {ring_pbkdf2:?} (ring)"
        );
        let start = std::time::Instant::now();
        for _ in 0..n {
            pkcs12_kdf(MacHash::Sha256, "batch-password", &[1; 16], 3, PKCS12_ITERATIONS, 32);
        }
        let ours = start.elapsed() / n;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let mut a = [0u8; 32];
            for _ in 0..PKCS12_ITERATIONS {
                let next = ring::digest::digest(&ring::digest::SHA256, &a);
                a.copy_from_slice(next.as_ref());
            }
        }
        let ring_kdf = start.elapsed() / n;
        // The loop as it was: a fresh hasher and a heap buffer every round.
        let start = std::time::Instant::now();
        for _ in 0..n {
            let mut a = MacHash::Sha256.digest(&[&[3u8; 64], &[1u8; 64]]);
            for _ in 1..PKCS12_ITERATIONS {
                a = MacHash::Sha256.digest(&[&a]);
            }
        }
        let before = start.elapsed() / n;
        println!(
            "PKCS#12 MAC key derivation x{PKCS12_ITERATIONS}: {ours:?} (sha2, reused hasher) vs {before:?} \
             (sha2, a hasher a round: before) vs {ring_kdf:?} (ring)"
        );
        let data = [7u8; 200];
        // And the ciphertext is what pkcs5 makes from the same parameters.
        let (params, ct) = pbes2_encrypt("batch-password", &data, PKCS12_ITERATIONS).expect("encrypt");
        assert_eq!(params.decrypt(b"batch-password", &ct).expect("decrypt"), data);
    }

    #[test]
    fn round_trip_and_errors() {
        let signer = SoftP256::new(0x22);
        let cert = cert_for(&signer, "device");
        let other = cert_for(&SoftP256::new(0x44), "ca");
        let key = parse_private_key(&sec1_p256(0x22), None).expect("key");
        let pfx = build_pkcs12(&cert, std::slice::from_ref(&other), &key, "ünïcode name", "pw").expect("pfx");
        let back = parse_pkcs12(&pfx, "pw").expect("parses");
        assert_eq!(back.certificate, cert);
        assert_eq!(back.chain, vec![other.clone()]);
        assert_eq!(back.friendly_name.as_deref(), Some("ünïcode name"));
        assert_eq!(back.key.public_key_spki_der(), key.public_key_spki_der());
        assert!(format!("{back:?}").contains("<redacted>"));
        // Two builds differ (fresh salts and IVs) but both open.
        let pfx2 = build_pkcs12(&cert, &[], &key, "n", "pw").expect("pfx");
        assert_ne!(pfx, pfx2);
        assert!(parse_pkcs12(&pfx2, "pw").expect("parses").chain.is_empty());

        assert!(matches!(parse_pkcs12(&pfx, "pW"), Err(PkiError::WrongPassword { what: WHAT })));
        assert!(matches!(parse_pkcs12(b"junk", "pw"), Err(PkiError::Malformed { what: WHAT, .. })));
        assert!(matches!(parse_pkcs12(&pfx[..pfx.len() - 3], "pw"), Err(PkiError::Malformed { .. })));
        // A flipped bit in the content breaks the MAC.
        let mut tampered = pfx.clone();
        let mid = tampered.len() / 2;
        tampered[mid] ^= 1;
        assert!(parse_pkcs12(&tampered, "pw").is_err());

        assert!(matches!(
            build_pkcs12(&other, &[], &key, "n", "pw"),
            Err(PkiError::InvalidField { field: "private_key", .. })
        ));
        assert!(matches!(
            build_pkcs12(&cert, &[], &key, "n", ""),
            Err(PkiError::InvalidField { field: "password", .. })
        ));
        assert!(matches!(
            build_pkcs12(&cert, &[b"junk".to_vec()], &key, "n", "pw"),
            Err(PkiError::Malformed { .. })
        ));
        assert!(matches!(
            build_pkcs12(&cert, &[], &key, "emoji 🔑", "pw"),
            Err(PkiError::InvalidField { field: "friendly_name", .. })
        ));
    }

    #[test]
    fn a_profile_iteration_count_is_written_into_the_mac_and_both_pbes2_blocks() {
        let cert = cert_for(&SoftP256::new(0x22), "device");
        let key = parse_private_key(&sec1_p256(0x22), None).expect("key");
        let pfx = build_pkcs12_with(&cert, &[], &key, "n", "pw", 10_000).expect("pfx");
        let parsed = parse_pkcs12(&pfx, "pw").expect("read back");
        assert_eq!(parsed.certificate, cert);
        // 10000 is 0x2710: it appears as an INTEGER in the MAC data and in each PBKDF2 block.
        let count = pfx.windows(4).filter(|w| *w == [0x02, 0x02, 0x27, 0x10]).count();
        assert_eq!(count, 3, "MAC and the two PBKDF2 parameter blocks");
        assert!(build_pkcs12_with(&cert, &[], &key, "n", "pw", 999).is_err(), "below the floor");
    }
}
