//! Certificates, called by the issuance service (CreateAuthority, IssueCertificate, cards)
//! and the certificate store: `build_certificate` turns a validated `CertificateTemplate` into
//! a signed certificate (self-signed root, intermediate or leaf) through a `CaSigner`;
//! `parse_certificate` and `verify_certificate_signature` read certificates that come back in
//! (imports, authority chains).

use super::PkiError;
use super::keys::{PublicKey, VerifyAlg, key_identifier};
use super::name::{Name, format_name};
use super::pem::{PEM_CERTIFICATE, der_from_pem_or_der, sha1_fingerprint, sha256_fingerprint, to_hex};
use super::serial::CertSerial;
use super::signer::{CaSigner, open_envelope, sign_envelope};
use der::asn1::{BitString, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use std::net::IpAddr;
use std::time::SystemTime;
use x509_cert::Certificate;
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage as EkuExt,
    SubjectAltName as SanExt, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, Extensions};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_CE_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const ID_CE_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
pub(crate) const ID_CE_AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const ID_CE_CRL_DISTRIBUTION_POINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");

/// One subjectAltName entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// dNSName: ASCII (A-labels for IDNs), optionally with a leading `*.` wildcard.
    Dns(String),
    /// iPAddress, v4 or v6.
    Ip(IpAddr),
    /// rfc822Name: an ASCII e-mail address.
    Email(String),
    /// uniformResourceIdentifier: an ASCII URI with a scheme.
    Uri(String),
}

impl SubjectAltName {
    /// Checks the value's syntax; `field` is the name errors carry.
    pub fn validate(&self) -> Result<(), PkiError> {
        let bad = |reason: String| Err(PkiError::invalid("subject_alt_names", reason));
        match self {
            SubjectAltName::Dns(d) => {
                let host = d.strip_prefix("*.").unwrap_or(d);
                if d.len() > 253 || host.is_empty() {
                    return bad(format!("DNS name {d:?} is empty or longer than 253 characters"));
                }
                for label in host.split('.') {
                    let ok = !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-');
                    if !ok {
                        return bad(format!("DNS name {d:?} is not a valid host name"));
                    }
                }
                Ok(())
            }
            SubjectAltName::Ip(_) => Ok(()),
            SubjectAltName::Email(e) => {
                let ok = e.is_ascii()
                    && e.len() <= 255
                    && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                    && matches!(e.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
                if ok { Ok(()) } else { bad(format!("e-mail address {e:?} is not valid")) }
            }
            SubjectAltName::Uri(u) => {
                let scheme_ok = u.split_once(':').is_some_and(|(scheme, rest)| {
                    !rest.is_empty()
                        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                });
                let ok = scheme_ok && u.is_ascii() && !u.chars().any(|c| c.is_whitespace() || c.is_control());
                if ok {
                    Ok(())
                } else {
                    bad(format!("URI {u:?} is not valid (needs a scheme, ASCII, no spaces)"))
                }
            }
        }
    }

    pub(crate) fn to_general_name(&self) -> Result<GeneralName, PkiError> {
        self.validate()?;
        let ia5 =
            |s: &str| Ia5String::new(s).map_err(|e| PkiError::invalid("subject_alt_names", e.to_string()));
        Ok(match self {
            SubjectAltName::Dns(d) => GeneralName::DnsName(ia5(d)?),
            SubjectAltName::Email(e) => GeneralName::Rfc822Name(ia5(e)?),
            SubjectAltName::Uri(u) => GeneralName::UniformResourceIdentifier(ia5(u)?),
            SubjectAltName::Ip(ip) => GeneralName::from(*ip),
        })
    }

    /// The entries of a GeneralNames we represent; other kinds (directoryName, otherName, …)
    /// are skipped.
    pub(crate) fn from_general_names(names: &[GeneralName]) -> Result<Vec<SubjectAltName>, PkiError> {
        let mut out = Vec::new();
        for n in names {
            match n {
                GeneralName::DnsName(s) => out.push(SubjectAltName::Dns(s.to_string())),
                GeneralName::Rfc822Name(s) => out.push(SubjectAltName::Email(s.to_string())),
                GeneralName::UniformResourceIdentifier(s) => out.push(SubjectAltName::Uri(s.to_string())),
                GeneralName::IpAddress(o) => {
                    let b = o.as_bytes();
                    let ip = if let Ok(v4) = <[u8; 4]>::try_from(b) {
                        IpAddr::from(v4)
                    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                        IpAddr::from(v6)
                    } else {
                        return Err(PkiError::malformed(
                            "subjectAltName",
                            format!("an IP address of {} bytes", b.len()),
                        ));
                    };
                    out.push(SubjectAltName::Ip(ip));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for SubjectAltName {
    /// `DNS:host`, `IP:addr`, `email:addr`, `URI:uri` — openssl's spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectAltName::Dns(d) => write!(f, "DNS:{d}"),
            SubjectAltName::Ip(ip) => write!(f, "IP:{ip}"),
            SubjectAltName::Email(e) => write!(f, "email:{e}"),
            SubjectAltName::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

/// The keyUsage bits of RFC 5280 4.2.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyUsage {
    DigitalSignature = 0,
    /// contentCommitment (formerly nonRepudiation).
    ContentCommitment = 1,
    KeyEncipherment = 2,
    DataEncipherment = 3,
    KeyAgreement = 4,
    KeyCertSign = 5,
    CrlSign = 6,
    EncipherOnly = 7,
    DecipherOnly = 8,
}

impl KeyUsage {
    pub const ALL: [KeyUsage; 9] = [
        KeyUsage::DigitalSignature,
        KeyUsage::ContentCommitment,
        KeyUsage::KeyEncipherment,
        KeyUsage::DataEncipherment,
        KeyUsage::KeyAgreement,
        KeyUsage::KeyCertSign,
        KeyUsage::CrlSign,
        KeyUsage::EncipherOnly,
        KeyUsage::DecipherOnly,
    ];

    fn bit(self) -> usize {
        self as usize
    }
}

/// The KeyUsage BIT STRING in DER: named bits, trailing zero bits dropped (X.690 11.2.2).
pub(crate) fn key_usage_bits(usages: &[KeyUsage]) -> Result<BitString, PkiError> {
    let Some(max) = usages.iter().map(|u| u.bit()).max() else {
        return Err(PkiError::invalid("key_usage", "empty"));
    };
    let mut bytes = vec![0u8; max / 8 + 1];
    for u in usages {
        bytes[u.bit() / 8] |= 0x80 >> (u.bit() % 8);
    }
    // max % 8 < 8, so the cast cannot truncate.
    let unused = (7 - max % 8) as u8;
    BitString::new(unused, bytes).map_err(|e| PkiError::encoding("keyUsage", e))
}

pub(crate) fn key_usage_from_bits(bits: &BitString) -> Vec<KeyUsage> {
    let raw = bits.raw_bytes();
    KeyUsage::ALL
        .into_iter()
        .filter(|u| raw.get(u.bit() / 8).is_some_and(|b| b & (0x80 >> (u.bit() % 8)) != 0))
        .collect()
}

/// extendedKeyUsage purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtendedKeyUsage {
    ServerAuth,
    ClientAuth,
    CodeSigning,
    EmailProtection,
    TimeStamping,
    OcspSigning,
    /// Microsoft smart card logon (1.3.6.1.4.1.311.20.2.2).
    SmartcardLogon,
    Other(ObjectIdentifier),
}

impl ExtendedKeyUsage {
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            ExtendedKeyUsage::ServerAuth => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1"),
            ExtendedKeyUsage::ClientAuth => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2"),
            ExtendedKeyUsage::CodeSigning => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3"),
            ExtendedKeyUsage::EmailProtection => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4"),
            ExtendedKeyUsage::TimeStamping => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8"),
            ExtendedKeyUsage::OcspSigning => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9"),
            ExtendedKeyUsage::SmartcardLogon => ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.2"),
            ExtendedKeyUsage::Other(oid) => oid,
        }
    }

    pub fn from_oid(oid: ObjectIdentifier) -> ExtendedKeyUsage {
        [
            ExtendedKeyUsage::ServerAuth,
            ExtendedKeyUsage::ClientAuth,
            ExtendedKeyUsage::CodeSigning,
            ExtendedKeyUsage::EmailProtection,
            ExtendedKeyUsage::TimeStamping,
            ExtendedKeyUsage::OcspSigning,
            ExtendedKeyUsage::SmartcardLogon,
        ]
        .into_iter()
        .find(|e| e.oid() == oid)
        .unwrap_or(ExtendedKeyUsage::Other(oid))
    }
}

/// Everything a certificate says, decided by the caller (profile, authority, request).
#[derive(Debug, Clone)]
pub struct CertificateTemplate {
    /// Usually `CertSerial::random()`.
    pub serial: CertSerial,
    /// The issuing CA's subject (for a self-signed root: the same as `subject`).
    pub issuer: Name,
    /// May be empty only when `subject_alt_names` is not (the SAN is then critical).
    pub subject: Name,
    /// SubjectPublicKeyInfo DER of the certified key; must pass the key policy.
    pub subject_public_key_der: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// basicConstraints cA. A CA certificate must have `KeyUsage::KeyCertSign`.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint; only for a CA.
    pub path_len: Option<u8>,
    /// Empty: no keyUsage extension (end entities only).
    pub key_usage: Vec<KeyUsage>,
    /// Empty: no extendedKeyUsage extension.
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    pub subject_alt_names: Vec<SubjectAltName>,
    /// The issuer's SubjectKeyIdentifier for the AuthorityKeyIdentifier. None: computed from
    /// the signer's public key (SHA-1 method), which is right for every CA whose certificate
    /// we made; an imported external root may carry another SKI, which must be passed here.
    pub authority_key_id: Option<Vec<u8>>,
    /// A URL for the cRLDistributionPoints extension.
    pub crl_distribution_point: Option<String>,
}

/// TBSCertificate with the fields we write (x509-cert keeps its fields crate-private).
#[derive(Sequence)]
struct TbsCertificateOut {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

pub(crate) fn extension<T: Encode>(
    oid: ObjectIdentifier,
    critical: bool,
    value: &T,
) -> Result<Extension, PkiError> {
    let der = value.to_der().map_err(|e| PkiError::encoding("an extension", e))?;
    let extn_value = OctetString::new(der).map_err(|e| PkiError::encoding("an extension", e))?;
    Ok(Extension { extn_id: oid, critical, extn_value })
}

/// RFC 5280 time: UTCTime through 2049, GeneralizedTime after; whole seconds.
pub(crate) fn x509_time(t: SystemTime, field: &'static str) -> Result<Time, PkiError> {
    Time::try_from(t).map_err(|_| PkiError::invalid(field, "not representable (before 1970 or after 9999)"))
}

pub(crate) fn authority_key_identifier(key_id: Vec<u8>) -> Result<AuthorityKeyIdentifier, PkiError> {
    Ok(AuthorityKeyIdentifier {
        key_identifier: Some(
            OctetString::new(key_id).map_err(|e| PkiError::encoding("a key identifier", e))?,
        ),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    })
}

/// Checks the template and builds the extensions, in the order they appear.
fn extensions_for<S: CaSigner + ?Sized>(signer: &S, t: &CertificateTemplate) -> Result<Extensions, PkiError> {
    let mut exts = Vec::new();
    // basicConstraints: always present, critical (RFC 5280 requires it critical for CAs;
    // for end entities it states cA=FALSE explicitly).
    if t.path_len.is_some() && !t.is_ca {
        return Err(PkiError::invalid("path_len", "only a CA certificate has a path length constraint"));
    }
    exts.push(extension(
        ID_CE_BASIC_CONSTRAINTS,
        true,
        &BasicConstraints { ca: t.is_ca, path_len_constraint: t.path_len },
    )?);
    // keyUsage: critical.
    if t.is_ca && !t.key_usage.contains(&KeyUsage::KeyCertSign) {
        return Err(PkiError::invalid("key_usage", "a CA certificate needs keyCertSign"));
    }
    if !t.is_ca && t.key_usage.contains(&KeyUsage::KeyCertSign) {
        return Err(PkiError::invalid("key_usage", "keyCertSign is only for CA certificates"));
    }
    if !t.key_usage.is_empty() {
        exts.push(extension(ID_CE_KEY_USAGE, true, &key_usage_bits(&t.key_usage)?)?);
    }
    if !t.extended_key_usage.is_empty() {
        let mut oids: Vec<ObjectIdentifier> = Vec::new();
        for e in &t.extended_key_usage {
            if !oids.contains(&e.oid()) {
                oids.push(e.oid());
            }
        }
        exts.push(extension(ID_CE_EXT_KEY_USAGE, false, &EkuExt(oids))?);
    }
    let ski = key_identifier(&t.subject_public_key_der)?;
    exts.push(extension(ID_CE_SUBJECT_KEY_ID, false, &SubjectKeyIdentifier(octets(ski)?))?);
    let aki = match &t.authority_key_id {
        Some(id) if id.is_empty() => return Err(PkiError::invalid("authority_key_id", "empty")),
        Some(id) => id.clone(),
        None => key_identifier(signer.public_key_der())?,
    };
    exts.push(extension(ID_CE_AUTHORITY_KEY_ID, false, &authority_key_identifier(aki)?)?);
    if t.subject.is_empty() && t.subject_alt_names.is_empty() {
        return Err(PkiError::invalid("subject", "empty, and there is no subject alternative name"));
    }
    if !t.subject_alt_names.is_empty() {
        let names =
            t.subject_alt_names.iter().map(SubjectAltName::to_general_name).collect::<Result<Vec<_>, _>>()?;
        // RFC 5280 4.2.1.6: critical when the subject is empty.
        exts.push(extension(ID_CE_SUBJECT_ALT_NAME, t.subject.is_empty(), &SanExt(names))?);
    }
    if let Some(url) = &t.crl_distribution_point {
        let uri = SubjectAltName::Uri(url.clone());
        uri.validate().map_err(|_| {
            PkiError::invalid("crl_distribution_point", format!("{url:?} is not a valid URI"))
        })?;
        let dp = DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![uri.to_general_name()?])),
            reasons: None,
            crl_issuer: None,
        };
        exts.push(extension(ID_CE_CRL_DISTRIBUTION_POINTS, false, &CrlDistributionPoints(vec![dp]))?);
    }
    Ok(exts)
}

fn octets(bytes: Vec<u8>) -> Result<OctetString, PkiError> {
    OctetString::new(bytes).map_err(|e| PkiError::encoding("an octet string", e))
}

/// Builds and signs a v3 certificate from `template` with the CA key behind `signer`.
///
/// Checks first (nothing is signed when a check fails): the subject key passes the key
/// policy, `not_before < not_after`, CA/keyCertSign/path length consistency, SAN and URL
/// syntax. Extensions written: basicConstraints (critical), keyUsage (critical, if any),
/// extendedKeyUsage, subjectKeyIdentifier (SHA-1 of the key), authorityKeyIdentifier (see
/// `CertificateTemplate::authority_key_id`), subjectAltName, cRLDistributionPoints. The
/// signature is verified against the CA public key before the DER is returned.
pub async fn build_certificate<S: CaSigner + ?Sized>(
    signer: &S,
    template: &CertificateTemplate,
) -> Result<Vec<u8>, PkiError> {
    let t = template;
    PublicKey::from_spki_der(&t.subject_public_key_der)?;
    if t.not_before >= t.not_after {
        return Err(PkiError::invalid("not_after", "must be later than not_before"));
    }
    let validity =
        Validity::new(x509_time(t.not_before, "not_before")?, x509_time(t.not_after, "not_after")?);
    let extensions = extensions_for(signer, t)?;
    let tbs = TbsCertificateOut {
        version: Version::V3,
        serial_number: t.serial.to_x509()?,
        signature: signer.algorithm().algorithm_identifier(),
        issuer: t.issuer.clone(),
        validity,
        subject: t.subject.clone(),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&t.subject_public_key_der)
            .map_err(|e| PkiError::malformed("public key", e))?,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(|e| PkiError::encoding("the TBSCertificate", e))?;
    let der = sign_envelope(signer, &tbs_der).await?;
    // What we hand out must read back as a certificate.
    Certificate::from_der(&der)
        .map_err(|e| PkiError::Internal(format!("the built certificate does not parse: {e}")))?;
    Ok(der)
}

/// What the store and the services need to know about a certificate.
#[derive(Debug, Clone)]
pub struct ParsedCertificate {
    pub der: Vec<u8>,
    /// The serial as written (hex of the INTEGER's content octets, lower case); certificates
    /// of other CAs may carry serials `CertSerial` refuses (zero, negative).
    pub serial_hex: String,
    pub subject: Name,
    pub issuer: Name,
    /// RFC 4514 renderings of subject and issuer.
    pub subject_dn: String,
    pub issuer_dn: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SubjectPublicKeyInfo DER.
    pub public_key_der: Vec<u8>,
    pub is_ca: bool,
    pub path_len: Option<u8>,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    pub subject_alt_names: Vec<SubjectAltName>,
    /// SHA-1 of the DER, lower-case hex.
    pub sha1_fingerprint: String,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256_fingerprint: String,
    /// DER of the subject Name, the issuer Name and the serialNumber INTEGER: what PKCS#11
    /// stores as CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER of a certificate object.
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    pub serial_der: Vec<u8>,
}

impl ParsedCertificate {
    pub fn is_self_issued(&self) -> bool {
        self.subject == self.issuer
    }
}

/// Parses a certificate (PEM `CERTIFICATE` or DER). Does not check its signature or validity
/// period; does not apply the key policy (a stored certificate may hold any key).
pub fn parse_certificate(pem_or_der: &[u8]) -> Result<ParsedCertificate, PkiError> {
    let der = der_from_pem_or_der(pem_or_der, &[PEM_CERTIFICATE], "certificate")?;
    let cert = Certificate::from_der(&der).map_err(|e| PkiError::malformed("certificate", e))?;
    let tbs = cert.tbs_certificate();
    let bad = |e: der::Error| PkiError::malformed("certificate", e);
    let mut is_ca = false;
    let mut path_len = None;
    if let Some((_, bc)) = tbs.get_extension::<BasicConstraints>().map_err(bad)? {
        is_ca = bc.ca;
        path_len = bc.path_len_constraint;
    }
    let subject_key_id =
        tbs.get_extension::<SubjectKeyIdentifier>().map_err(bad)?.map(|(_, s)| s.0.as_bytes().to_vec());
    let authority_key_id = tbs
        .get_extension::<AuthorityKeyIdentifier>()
        .map_err(bad)?
        .and_then(|(_, a)| a.key_identifier.map(|k| k.as_bytes().to_vec()));
    let key_usage = key_usage_of(tbs.extensions())?;
    let extended_key_usage = tbs
        .get_extension::<EkuExt>()
        .map_err(bad)?
        .map(|(_, e)| e.0.into_iter().map(ExtendedKeyUsage::from_oid).collect())
        .unwrap_or_default();
    let subject_alt_names = match tbs.get_extension::<SanExt>().map_err(bad)? {
        Some((_, san)) => SubjectAltName::from_general_names(&san.0)?,
        None => Vec::new(),
    };
    let public_key_der = tbs.subject_public_key_info().to_der().map_err(bad)?;
    let subject_der = tbs.subject().to_der().map_err(bad)?;
    let issuer_der = tbs.issuer().to_der().map_err(bad)?;
    let serial_der = tbs.serial_number().to_der().map_err(bad)?;
    Ok(ParsedCertificate {
        subject_der,
        issuer_der,
        serial_der,
        serial_hex: to_hex(tbs.serial_number().as_bytes()),
        subject: tbs.subject().clone(),
        issuer: tbs.issuer().clone(),
        subject_dn: format_name(tbs.subject()),
        issuer_dn: format_name(tbs.issuer()),
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
        public_key_der,
        is_ca,
        path_len,
        subject_key_id,
        authority_key_id,
        key_usage,
        extended_key_usage,
        subject_alt_names,
        sha1_fingerprint: sha1_fingerprint(&der),
        sha256_fingerprint: sha256_fingerprint(&der),
        der,
    })
}

fn key_usage_of(exts: Option<&Extensions>) -> Result<Vec<KeyUsage>, PkiError> {
    let Some(ext) = exts.into_iter().flatten().find(|e| e.extn_id == ID_CE_KEY_USAGE) else {
        return Ok(Vec::new());
    };
    let bits =
        BitString::from_der(ext.extn_value.as_bytes()).map_err(|e| PkiError::malformed("certificate", e))?;
    Ok(key_usage_from_bits(&bits))
}

/// Checks that the certificate (PEM or DER) was signed by the key `issuer_public_key_der`
/// (SubjectPublicKeyInfo). `BadCertificateSignature` when it was not.
pub fn verify_certificate_signature(
    cert_pem_or_der: &[u8],
    issuer_public_key_der: &[u8],
) -> Result<(), PkiError> {
    let der = der_from_pem_or_der(cert_pem_or_der, &[PEM_CERTIFICATE], "certificate")?;
    let cert = Certificate::from_der(&der).map_err(|e| PkiError::malformed("certificate", e))?;
    let env = open_envelope(&der, "certificate")?;
    if cert.tbs_certificate().signature() != &env.algorithm {
        return Err(PkiError::malformed("certificate", "inner and outer signature algorithms differ"));
    }
    let alg = VerifyAlg::from_identifier(env.algorithm.oid, env.algorithm.parameters.as_ref())?;
    let issuer = PublicKey::from_spki_der(issuer_public_key_der)?;
    if issuer.verify(alg, env.tbs_der, &env.signature) {
        Ok(())
    } else {
        Err(PkiError::BadCertificateSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::name::{name_parts, parse_name};
    use crate::pki::signer::tests::{SoftP256, block_on};
    use std::time::Duration;

    pub(crate) fn root_template(signer: &SoftP256) -> CertificateTemplate {
        let name = parse_name("CN=Test Root,O=Acme,C=CZ").expect("name");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        CertificateTemplate {
            serial: CertSerial::random(),
            issuer: name.clone(),
            subject: name,
            subject_public_key_der: signer.public_key_der().to_vec(),
            not_before: now,
            not_after: now + Duration::from_secs(10 * 365 * 86400),
            is_ca: true,
            path_len: Some(1),
            key_usage: vec![KeyUsage::KeyCertSign, KeyUsage::CrlSign],
            extended_key_usage: vec![],
            subject_alt_names: vec![],
            authority_key_id: None,
            crl_distribution_point: None,
        }
    }

    #[test]
    fn self_signed_root() {
        let signer = SoftP256::new(0x11);
        let t = root_template(&signer);
        let der = block_on(build_certificate(&signer, &t)).expect("builds");
        let p = parse_certificate(&der).expect("parses");
        assert!(p.is_ca && p.is_self_issued());
        assert_eq!(p.path_len, Some(1));
        assert_eq!(p.serial_hex, t.serial.to_hex());
        assert_eq!(p.subject_dn, "CN=Test Root,O=Acme,C=CZ");
        assert_eq!(p.subject_key_id, p.authority_key_id);
        assert_eq!(p.subject_key_id, Some(key_identifier(signer.public_key_der()).expect("ski")));
        assert_eq!(p.key_usage, vec![KeyUsage::KeyCertSign, KeyUsage::CrlSign]);
        assert_eq!(p.not_before, t.not_before);
        assert_eq!(p.not_after, t.not_after);
        verify_certificate_signature(&der, signer.public_key_der()).expect("verifies");
        let other = SoftP256::new(0x33);
        assert!(matches!(
            verify_certificate_signature(&der, other.public_key_der()),
            Err(PkiError::BadCertificateSignature)
        ));
        // Tampering with the TBS breaks the signature.
        let mut tampered = der.clone();
        let pos = tampered.windows(4).position(|w| w == b"Test").expect("CN in DER");
        tampered[pos] = b'B';
        assert!(matches!(
            verify_certificate_signature(&tampered, signer.public_key_der()),
            Err(PkiError::BadCertificateSignature)
        ));
    }

    #[test]
    fn leaf_with_everything() {
        let ca = SoftP256::new(0x11);
        let leaf_key = SoftP256::new(0x44);
        let mut t = root_template(&ca);
        t.subject = parse_name("CN=device 1,O=Acme").expect("name");
        t.subject_public_key_der = leaf_key.public_key_der().to_vec();
        t.is_ca = false;
        t.path_len = None;
        t.key_usage = vec![KeyUsage::DigitalSignature, KeyUsage::KeyAgreement];
        t.extended_key_usage =
            vec![ExtendedKeyUsage::ClientAuth, ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth];
        t.subject_alt_names = vec![
            SubjectAltName::Dns("device1.example.com".into()),
            SubjectAltName::Dns("*.devices.example.com".into()),
            SubjectAltName::Ip("192.0.2.7".parse().expect("ip")),
            SubjectAltName::Ip("2001:db8::7".parse().expect("ip")),
            SubjectAltName::Email("ops@example.com".into()),
            SubjectAltName::Uri("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66".into()),
        ];
        t.crl_distribution_point = Some("http://pki.example.com/root.crl".into());
        let der = block_on(build_certificate(&ca, &t)).expect("builds");
        let p = parse_certificate(&der).expect("parses");
        assert!(!p.is_ca);
        assert_eq!(p.key_usage, t.key_usage);
        assert_eq!(p.extended_key_usage, vec![ExtendedKeyUsage::ClientAuth, ExtendedKeyUsage::ServerAuth]);
        assert_eq!(p.subject_alt_names, t.subject_alt_names);
        assert_eq!(p.authority_key_id, Some(key_identifier(ca.public_key_der()).expect("aki")));
        assert_eq!(p.subject_key_id, Some(key_identifier(leaf_key.public_key_der()).expect("ski")));
        assert_eq!(name_parts(&p.subject).cn.as_deref(), Some("device 1"));
        assert_eq!(p.sha1_fingerprint.len(), 40);
        assert_eq!(p.sha256_fingerprint.len(), 64);
        // PEM in, same answer.
        let pem = crate::pki::pem::pem_encode(PEM_CERTIFICATE, &der);
        assert_eq!(parse_certificate(pem.as_bytes()).expect("pem").sha256_fingerprint, p.sha256_fingerprint);
    }

    #[test]
    fn template_checks() {
        let ca = SoftP256::new(0x11);
        let check = |edit: &dyn Fn(&mut CertificateTemplate), field: &str| {
            let mut t = root_template(&ca);
            edit(&mut t);
            match block_on(build_certificate(&ca, &t)) {
                Err(PkiError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        };
        check(&|t| t.not_after = t.not_before, "not_after");
        check(&|t| t.key_usage = vec![KeyUsage::CrlSign], "key_usage");
        check(
            &|t| {
                t.is_ca = false;
            },
            "path_len",
        );
        check(
            &|t| {
                t.is_ca = false;
                t.path_len = None;
            },
            "key_usage",
        );
        check(&|t| t.subject_alt_names = vec![SubjectAltName::Dns("bad host".into())], "subject_alt_names");
        check(&|t| t.subject_alt_names = vec![SubjectAltName::Dns("-x.example".into())], "subject_alt_names");
        check(&|t| t.subject_alt_names = vec![SubjectAltName::Email("nobody".into())], "subject_alt_names");
        check(&|t| t.subject_alt_names = vec![SubjectAltName::Uri("no scheme".into())], "subject_alt_names");
        check(&|t| t.crl_distribution_point = Some("not a url".into()), "crl_distribution_point");
        check(&|t| t.authority_key_id = Some(vec![]), "authority_key_id");
        check(&|t| t.subject = Name::default(), "subject");
        check(&|t| t.not_before = SystemTime::UNIX_EPOCH - Duration::from_secs(1), "not_before");
        // A weak subject key is refused before anything is signed.
        let mut t = root_template(&ca);
        t.subject_public_key_der = crate::pki::keys::tests::rsa_spki(&[0xC5; 128], &[1, 0, 1]);
        assert!(matches!(block_on(build_certificate(&ca, &t)), Err(PkiError::WeakKey { .. })));
    }

    #[test]
    fn empty_subject_makes_san_critical() {
        let ca = SoftP256::new(0x11);
        let mut t = root_template(&ca);
        t.subject = Name::default();
        t.is_ca = false;
        t.path_len = None;
        t.key_usage = vec![KeyUsage::DigitalSignature];
        t.subject_alt_names = vec![SubjectAltName::Dns("a.example".into())];
        let der = block_on(build_certificate(&ca, &t)).expect("builds");
        let cert = Certificate::from_der(&der).expect("parses");
        let (critical, _) = cert.tbs_certificate().get_extension::<SanExt>().expect("ok").expect("present");
        assert!(critical);
    }

    #[test]
    fn times_follow_rfc5280() {
        let before_2050 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_607_999); // 2049-12-31T23:59:59Z
        let after_2050 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_608_000); // 2050-01-01
        assert!(matches!(x509_time(before_2050, "t").expect("t"), Time::UtcTime(_)));
        assert!(matches!(x509_time(after_2050, "t").expect("t"), Time::GeneralTime(_)));
        // Sub-second precision is dropped, not refused.
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_750_000_000_750);
        assert_eq!(
            x509_time(t, "t").expect("t").to_system_time(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
        );
    }

    #[test]
    fn key_usage_der() {
        // digitalSignature only: 03 02 07 80
        let ku = key_usage_bits(&[KeyUsage::DigitalSignature]).expect("bits");
        assert_eq!(ku.to_der().expect("der"), vec![0x03, 0x02, 0x07, 0x80]);
        // keyCertSign + cRLSign: 03 02 01 06
        let ku = key_usage_bits(&[KeyUsage::KeyCertSign, KeyUsage::CrlSign]).expect("bits");
        assert_eq!(ku.to_der().expect("der"), vec![0x03, 0x02, 0x01, 0x06]);
        // decipherOnly needs a second byte: 03 03 07 00 80
        let ku = key_usage_bits(&[KeyUsage::DecipherOnly]).expect("bits");
        assert_eq!(ku.to_der().expect("der"), vec![0x03, 0x03, 0x07, 0x00, 0x80]);
        assert_eq!(key_usage_from_bits(&ku), vec![KeyUsage::DecipherOnly]);
        assert_eq!(
            key_usage_from_bits(&key_usage_bits(&KeyUsage::ALL).expect("bits")),
            KeyUsage::ALL.to_vec()
        );
        assert!(key_usage_bits(&[]).is_err());
    }

    #[test]
    fn garbage_is_malformed() {
        for input in [
            &b""[..],
            b"\x30\x03\x02\x01\x01",
            b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(parse_certificate(input), Err(PkiError::Malformed { .. })), "{input:?}");
        }
        let csr_pem = crate::pki::pem::pem_encode("CERTIFICATE REQUEST", b"\x30\x00");
        assert!(matches!(parse_certificate(csr_pem.as_bytes()), Err(PkiError::PemLabel { .. })));
    }
}
