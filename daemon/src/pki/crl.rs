//! CRLs, called by the issuance service (GetCrl, and after each revocation): revocation
//! reasons as RFC 5280 codes (`RevocationReason::from_code` is where a request's reason code is
//! checked), and `build_crl` which signs a full v2 CRL with the CA key through a `CaSigner`.
//!
//! Decisions:
//! - reasonCode entry extension: written for every reason except `unspecified` (0), which RFC
//!   5280 5.3.1 says SHOULD be expressed by leaving the extension out.
//! - certificateHold (6) entries are listed like any other revocation. Releasing a hold is not
//!   an entry: the service drops the certificate from the revoked set, and the next CRL simply
//!   does not list it. removeFromCRL (8) is only meaningful in delta CRLs (RFC 5280 5.3.1),
//!   which we do not issue: `build_crl` refuses it, so a service bug cannot publish a CRL that
//!   lists a certificate as "removed".
//! - Every CRL carries cRLNumber and authorityKeyIdentifier (both non-critical) and a
//!   nextUpdate.

use super::PkiError;
use super::cert::{ID_CE_AUTHORITY_KEY_ID, authority_key_identifier, extension, x509_time};
use super::keys::{PublicKey, VerifyAlg, key_identifier};
use super::name::Name;
use super::pem::{PEM_X509_CRL, der_from_pem_or_der};
use super::serial::CertSerial;
use super::signer::{CaSigner, open_envelope, sign_envelope};
use der::asn1::{ObjectIdentifier, Uint};
use der::{Decode, Encode};
use std::collections::HashSet;
use std::time::SystemTime;
use x509_cert::certificate::Version;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, CrlReason};

const ID_CE_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const ID_CE_CRL_REASONS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");

/// RFC 5280 CRLReason. Code 7 is unused and has no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    /// Delta CRLs only; see the module notes.
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 code: 0–6, 8–10.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::RemoveFromCrl => 8,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// From a request's reason code; 7 and anything outside 0–10 is `InvalidReason`.
    pub fn from_code(code: i64) -> Result<RevocationReason, PkiError> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| i64::from(r.code()) == code)
            .ok_or(PkiError::InvalidReason { code })
    }

    /// The RFC 5280 ASN.1 name: `keyCompromise`, `cACompromise`, `removeFromCRL`, ….
    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::RemoveFromCrl => "removeFromCRL",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aACompromise",
        }
    }

    /// From the ASN.1 name, case-insensitive, `_`/`-` ignored (`key_compromise`,
    /// `KEY-COMPROMISE`, `keyCompromise`), or a decimal code.
    pub fn from_name(s: &str) -> Option<RevocationReason> {
        let norm: String =
            s.trim().chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_lowercase();
        if let Ok(code) = norm.parse::<i64>() {
            return RevocationReason::from_code(code).ok();
        }
        RevocationReason::ALL.into_iter().find(|r| r.name().to_ascii_lowercase() == norm)
    }

    fn to_x509(self) -> CrlReason {
        match self {
            RevocationReason::Unspecified => CrlReason::Unspecified,
            RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
            RevocationReason::CaCompromise => CrlReason::CaCompromise,
            RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
            RevocationReason::Superseded => CrlReason::Superseded,
            RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
            RevocationReason::CertificateHold => CrlReason::CertificateHold,
            RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
            RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => CrlReason::AaCompromise,
        }
    }

    fn from_x509(r: CrlReason) -> RevocationReason {
        match r {
            CrlReason::Unspecified => RevocationReason::Unspecified,
            CrlReason::KeyCompromise => RevocationReason::KeyCompromise,
            CrlReason::CaCompromise => RevocationReason::CaCompromise,
            CrlReason::AffiliationChanged => RevocationReason::AffiliationChanged,
            CrlReason::Superseded => RevocationReason::Superseded,
            CrlReason::CessationOfOperation => RevocationReason::CessationOfOperation,
            CrlReason::CertificateHold => RevocationReason::CertificateHold,
            CrlReason::RemoveFromCRL => RevocationReason::RemoveFromCrl,
            CrlReason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
            CrlReason::AaCompromise => RevocationReason::AaCompromise,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    pub serial: CertSerial,
    pub revocation_time: SystemTime,
    pub reason: RevocationReason,
}

/// A full CRL to sign.
#[derive(Debug, Clone)]
pub struct CrlTemplate {
    /// The CA's subject name.
    pub issuer: Name,
    /// The CA certificate's SubjectKeyIdentifier. None: computed from the signer's key (right
    /// for every CA certificate we made; see `CertificateTemplate::authority_key_id`).
    pub authority_key_id: Option<Vec<u8>>,
    /// Monotonically increasing per CA (the service keeps the counter).
    pub crl_number: u64,
    pub this_update: SystemTime,
    pub next_update: SystemTime,
    /// Currently revoked (or held) certificates; serials must be distinct; no removeFromCRL.
    pub entries: Vec<CrlEntry>,
}

/// Builds and signs a full v2 CRL (see the module notes for what is written). The signature
/// is verified against the CA public key before the DER is returned.
pub async fn build_crl<S: CaSigner + ?Sized>(
    signer: &S,
    template: &CrlTemplate,
) -> Result<Vec<u8>, PkiError> {
    let t = template;
    if t.this_update >= t.next_update {
        return Err(PkiError::invalid("next_update", "must be later than this_update"));
    }
    let mut seen = HashSet::new();
    let mut revoked = Vec::with_capacity(t.entries.len());
    for e in &t.entries {
        if e.reason == RevocationReason::RemoveFromCrl {
            return Err(PkiError::invalid(
                "entries",
                format!(
                    "serial {}: removeFromCRL belongs in delta CRLs; a full CRL releases a hold by not listing the certificate",
                    e.serial
                ),
            ));
        }
        if !seen.insert(&e.serial) {
            return Err(PkiError::invalid("entries", format!("serial {} is listed twice", e.serial)));
        }
        let crl_entry_extensions = if e.reason == RevocationReason::Unspecified {
            None
        } else {
            Some(vec![extension(ID_CE_CRL_REASONS, false, &e.reason.to_x509())?])
        };
        revoked.push(RevokedCert {
            serial_number: e.serial.to_x509()?,
            revocation_date: x509_time(e.revocation_time, "revocation_time")?,
            crl_entry_extensions,
        });
    }
    let aki = match &t.authority_key_id {
        Some(id) if id.is_empty() => return Err(PkiError::invalid("authority_key_id", "empty")),
        Some(id) => id.clone(),
        None => key_identifier(signer.public_key_der())?,
    };
    let number = Uint::try_from(t.crl_number).map_err(|e| PkiError::encoding("the CRL number", e))?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: signer.algorithm().algorithm_identifier(),
        issuer: t.issuer.clone(),
        this_update: x509_time(t.this_update, "this_update")?,
        next_update: Some(x509_time(t.next_update, "next_update")?),
        // An empty SEQUENCE OF is not allowed: no entries, no field.
        revoked_certificates: if revoked.is_empty() { None } else { Some(revoked) },
        crl_extensions: Some(vec![
            extension(ID_CE_AUTHORITY_KEY_ID, false, &authority_key_identifier(aki)?)?,
            extension(ID_CE_CRL_NUMBER, false, &CrlNumber(number))?,
        ]),
    };
    let tbs_der = tbs.to_der().map_err(|e| PkiError::encoding("the TBSCertList", e))?;
    let der = sign_envelope(signer, &tbs_der).await?;
    CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der)
        .map_err(|e| PkiError::Internal(format!("the built CRL does not parse: {e}")))?;
    Ok(der)
}

/// One entry of a parsed CRL. `reason` is None when the entry has no reasonCode (which
/// means unspecified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCrlEntry {
    /// Hex of the serial's INTEGER content octets, lower case.
    pub serial_hex: String,
    pub revocation_time: SystemTime,
    pub reason: Option<RevocationReason>,
}

/// What a CRL says.
#[derive(Debug, Clone)]
pub struct ParsedCrl {
    pub der: Vec<u8>,
    pub issuer: Name,
    pub this_update: SystemTime,
    pub next_update: Option<SystemTime>,
    pub crl_number: Option<u64>,
    pub authority_key_id: Option<Vec<u8>>,
    pub entries: Vec<ParsedCrlEntry>,
}

/// Parses a CRL (PEM `X509 CRL` or DER) without checking its signature.
pub fn parse_crl(pem_or_der: &[u8]) -> Result<ParsedCrl, PkiError> {
    let der = der_from_pem_or_der(pem_or_der, &[PEM_X509_CRL], "CRL")?;
    let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der)
        .map_err(|e| PkiError::malformed("CRL", e))?;
    let bad = |e: der::Error| PkiError::malformed("CRL", e);
    let tbs = &crl.tbs_cert_list;
    let mut crl_number = None;
    let mut authority_key_id = None;
    for ext in tbs.crl_extensions.iter().flatten() {
        if ext.extn_id == ID_CE_CRL_NUMBER {
            let n = Uint::from_der(ext.extn_value.as_bytes()).map_err(bad)?;
            let b = n.as_bytes();
            if b.len() > 8 {
                return Err(PkiError::malformed("CRL", "CRL number larger than 64 bits"));
            }
            let mut buf = [0u8; 8];
            buf[8 - b.len()..].copy_from_slice(b);
            crl_number = Some(u64::from_be_bytes(buf));
        } else if ext.extn_id == ID_CE_AUTHORITY_KEY_ID {
            let aki = AuthorityKeyIdentifier::from_der(ext.extn_value.as_bytes()).map_err(bad)?;
            authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
        }
    }
    let mut entries = Vec::new();
    for rc in tbs.revoked_certificates.iter().flatten() {
        let mut reason = None;
        for ext in rc.crl_entry_extensions.iter().flatten().filter(|e| e.extn_id == ID_CE_CRL_REASONS) {
            reason = Some(RevocationReason::from_x509(
                CrlReason::from_der(ext.extn_value.as_bytes()).map_err(bad)?,
            ));
        }
        entries.push(ParsedCrlEntry {
            serial_hex: super::pem::to_hex(rc.serial_number.as_bytes()),
            revocation_time: rc.revocation_date.to_system_time(),
            reason,
        });
    }
    Ok(ParsedCrl {
        issuer: tbs.issuer.clone(),
        this_update: tbs.this_update.to_system_time(),
        next_update: tbs.next_update.map(|t| t.to_system_time()),
        crl_number,
        authority_key_id,
        entries,
        der,
    })
}

/// Checks that the CRL was signed by `issuer_public_key_der` (SubjectPublicKeyInfo).
pub fn verify_crl_signature(crl_pem_or_der: &[u8], issuer_public_key_der: &[u8]) -> Result<(), PkiError> {
    let der = der_from_pem_or_der(crl_pem_or_der, &[PEM_X509_CRL], "CRL")?;
    let env = open_envelope(&der, "CRL")?;
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
    use crate::pki::name::parse_name;
    use crate::pki::signer::tests::{SoftP256, block_on};
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn template(entries: Vec<CrlEntry>) -> CrlTemplate {
        CrlTemplate {
            issuer: parse_name("CN=Test Root,O=Acme,C=CZ").expect("name"),
            authority_key_id: None,
            crl_number: 42,
            this_update: at(1_750_000_000),
            next_update: at(1_750_000_000 + 7 * 86400),
            entries,
        }
    }

    fn entry(hex: &str, reason: RevocationReason) -> CrlEntry {
        CrlEntry {
            serial: CertSerial::from_hex(hex).expect("serial"),
            revocation_time: at(1_749_000_000),
            reason,
        }
    }

    #[test]
    fn reason_codes() {
        for code in [0, 1, 2, 3, 4, 5, 6, 8, 9, 10] {
            let r = RevocationReason::from_code(code).expect("valid");
            assert_eq!(i64::from(r.code()), code);
            assert_eq!(RevocationReason::from_name(r.name()), Some(r));
            assert_eq!(RevocationReason::from_x509(r.to_x509()), r);
        }
        for code in [7, -1, 11, 255, i64::MAX] {
            assert!(
                matches!(RevocationReason::from_code(code), Err(PkiError::InvalidReason { code: c }) if c == code)
            );
        }
        assert_eq!(RevocationReason::from_name("key_compromise"), Some(RevocationReason::KeyCompromise));
        assert_eq!(RevocationReason::from_name("CERTIFICATE-HOLD"), Some(RevocationReason::CertificateHold));
        assert_eq!(RevocationReason::from_name("6"), Some(RevocationReason::CertificateHold));
        assert_eq!(RevocationReason::from_name("7"), None);
        assert_eq!(RevocationReason::from_name("nope"), None);
    }

    #[test]
    fn crl_lists_entries_with_reasons() {
        let signer = SoftP256::new(0x11);
        let t = template(vec![
            entry("0a01", RevocationReason::KeyCompromise),
            entry("0a02", RevocationReason::Unspecified),
            entry("0a03", RevocationReason::CertificateHold),
            entry("7fffffffffffffffffffffffffffffff", RevocationReason::AaCompromise),
        ]);
        let der = block_on(build_crl(&signer, &t)).expect("builds");
        verify_crl_signature(&der, signer.public_key_der()).expect("verifies");
        let p = parse_crl(&der).expect("parses");
        assert_eq!(p.crl_number, Some(42));
        assert_eq!(p.this_update, t.this_update);
        assert_eq!(p.next_update, Some(t.next_update));
        assert_eq!(p.authority_key_id, Some(key_identifier(signer.public_key_der()).expect("ski")));
        let got: Vec<(&str, Option<RevocationReason>)> =
            p.entries.iter().map(|e| (e.serial_hex.as_str(), e.reason)).collect();
        assert_eq!(
            got,
            vec![
                ("0a01", Some(RevocationReason::KeyCompromise)),
                ("0a02", None),
                ("0a03", Some(RevocationReason::CertificateHold)),
                ("7fffffffffffffffffffffffffffffff", Some(RevocationReason::AaCompromise)),
            ]
        );
        assert!(p.entries.iter().all(|e| e.revocation_time == at(1_749_000_000)));
        let other = SoftP256::new(0x22);
        assert!(verify_crl_signature(&der, other.public_key_der()).is_err());
    }

    #[test]
    fn empty_crl_has_no_revoked_list() {
        let signer = SoftP256::new(0x11);
        let der = block_on(build_crl(&signer, &template(vec![]))).expect("builds");
        let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der).expect("parses");
        assert!(crl.tbs_cert_list.revoked_certificates.is_none());
        assert!(parse_crl(&der).expect("parses").entries.is_empty());
    }

    #[test]
    fn crl_template_checks() {
        let signer = SoftP256::new(0x11);
        let bad = |t: CrlTemplate, field: &str| match block_on(build_crl(&signer, &t)) {
            Err(PkiError::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        };
        bad(template(vec![entry("01", RevocationReason::RemoveFromCrl)]), "entries");
        bad(
            template(vec![
                entry("01", RevocationReason::Superseded),
                entry("0001", RevocationReason::KeyCompromise),
            ]),
            "entries",
        );
        let mut t = template(vec![]);
        t.next_update = t.this_update;
        bad(t, "next_update");
        let mut t = template(vec![]);
        t.authority_key_id = Some(vec![]);
        bad(t, "authority_key_id");
    }

    #[test]
    fn bad_hsm_signature_makes_no_crl() {
        let mut signer = SoftP256::new(0x11);
        signer.corrupt = true;
        assert!(matches!(block_on(build_crl(&signer, &template(vec![]))), Err(PkiError::SignatureMismatch)));
    }
}
