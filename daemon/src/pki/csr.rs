//! PKCS#10 certificate requests. `parse_csr` is the gate an uploaded CSR passes before the
//! issuance service (IssueCertificate, batches of CSRs) looks at it: structure, key policy,
//! self-signature. `build_csr` makes the CSR for a key on a token (CreateAuthority for an
//! external root, the certificate store's CreateCsr).

use super::PkiError;
use super::cert::{SubjectAltName, extension};
use super::keys::{KeyKind, PublicKey, VerifyAlg};
use super::name::Name;
use super::pem::{PEM_CERTIFICATE_REQUEST, PEM_NEW_CERTIFICATE_REQUEST, der_from_pem_or_der};
use super::signer::{CaSigner, open_envelope, sign_envelope};
use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::SubjectAltName as SanExt;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

/// PKCS#9 extensionRequest.
const EXTENSION_REQUEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
const ID_CE_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// A CSR that passed `parse_csr`: well-formed, an acceptable key, a valid self-signature.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    /// The request, DER.
    pub der: Vec<u8>,
    pub subject: Name,
    /// SubjectPublicKeyInfo DER of the requested key.
    pub public_key_der: Vec<u8>,
    pub key_kind: KeyKind,
    /// DNS / IP / e-mail / URI entries of a requested subjectAltName extension, in order.
    /// Other kinds of names are not returned (they are never issued). The CA decides what to
    /// issue: these are only requests.
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// Parses and checks a PKCS#10 request, PEM (`CERTIFICATE REQUEST` or
/// `NEW CERTIFICATE REQUEST`) or DER:
/// - structure → `Malformed { what: "CSR" }` / `PemLabel`;
/// - key policy (P-256, P-384, RSA ≥ 2048) → `WeakKey` / `UnsupportedKeyAlgorithm`;
/// - signature algorithm (ECDSA or PKCS#1 v1.5 RSA with SHA-256/384/512) →
///   `UnsupportedSignatureAlgorithm`;
/// - self-signature → `BadCsrSignature`.
pub fn parse_csr(pem_or_der: &[u8]) -> Result<ParsedCsr, PkiError> {
    let der =
        der_from_pem_or_der(pem_or_der, &[PEM_CERTIFICATE_REQUEST, PEM_NEW_CERTIFICATE_REQUEST], "CSR")?;
    let req = CertReq::from_der(&der).map_err(|e| PkiError::malformed("CSR", e))?;
    let env = open_envelope(&der, "CSR")?;
    let public_key_der = req.info.public_key.to_der().map_err(|e| PkiError::malformed("CSR", e))?;
    let key = PublicKey::from_spki_der(&public_key_der)?;
    let alg = VerifyAlg::from_identifier(env.algorithm.oid, env.algorithm.parameters.as_ref())?;
    if !key.verify(alg, env.tbs_der, &env.signature) {
        return Err(PkiError::BadCsrSignature);
    }
    let subject_alt_names = requested_sans(&req.info)?;
    Ok(ParsedCsr {
        subject: req.info.subject.clone(),
        public_key_der,
        key_kind: key.kind(),
        subject_alt_names,
        der,
    })
}

fn requested_sans(info: &CertReqInfo) -> Result<Vec<SubjectAltName>, PkiError> {
    let mut sans = Vec::new();
    for attr in info.attributes.iter().filter(|a| a.oid == EXTENSION_REQUEST) {
        for value in attr.values.iter() {
            let der = value.to_der().map_err(|e| PkiError::malformed("CSR", e))?;
            let req = ExtensionReq::from_der(&der)
                .map_err(|e| PkiError::malformed("CSR", format!("extensionRequest: {e}")))?;
            for ext in req.0.iter().filter(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME) {
                let san = SanExt::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| PkiError::malformed("CSR", format!("subjectAltName: {e}")))?;
                sans.extend(SubjectAltName::from_general_names(&san.0)?);
            }
        }
    }
    Ok(sans)
}

/// Builds a PKCS#10 request for the key behind `signer`, signed by it: `subject`, and when
/// `subject_alt_names` is not empty an extensionRequest with a subjectAltName. The signature
/// is verified before the DER is returned.
pub async fn build_csr<S: CaSigner + ?Sized>(
    signer: &S,
    subject: &Name,
    subject_alt_names: &[SubjectAltName],
) -> Result<Vec<u8>, PkiError> {
    if subject.is_empty() && subject_alt_names.is_empty() {
        return Err(PkiError::invalid("subject", "empty, and there is no subject alternative name"));
    }
    let mut attributes = SetOfVec::new();
    if !subject_alt_names.is_empty() {
        let names =
            subject_alt_names.iter().map(SubjectAltName::to_general_name).collect::<Result<Vec<_>, _>>()?;
        let ext = extension(ID_CE_SUBJECT_ALT_NAME, subject.is_empty(), &SanExt(names))?;
        let attr = Attribute::try_from(ExtensionReq(vec![ext]))
            .map_err(|e| PkiError::encoding("extensionRequest", e))?;
        attributes.insert(attr).map_err(|e| PkiError::encoding("CSR attributes", e))?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject.clone(),
        public_key: SubjectPublicKeyInfoOwned::from_der(signer.public_key_der())
            .map_err(|e| PkiError::malformed("public key", e))?,
        attributes,
    };
    let info_der = info.to_der().map_err(|e| PkiError::encoding("CertificationRequestInfo", e))?;
    let der = sign_envelope(signer, &info_der).await?;
    // Our own CSR must pass our own gate.
    parse_csr(&der).map_err(|e| PkiError::Internal(format!("the built CSR does not parse: {e}")))?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::name::{format_name, parse_name};
    use crate::pki::pem::pem_encode;
    use crate::pki::signer::tests::{SoftP256, block_on};

    #[test]
    fn build_then_parse() {
        let signer = SoftP256::new(0x55);
        let subject = parse_name("CN=device 7,O=Acme,C=CZ").expect("name");
        let sans = vec![
            SubjectAltName::Dns("d7.example.com".into()),
            SubjectAltName::Ip("10.0.0.7".parse().expect("ip")),
        ];
        let der = block_on(build_csr(&signer, &subject, &sans)).expect("builds");
        let pem = pem_encode(PEM_CERTIFICATE_REQUEST, &der);
        let csr = parse_csr(pem.as_bytes()).expect("parses");
        assert_eq!(format_name(&csr.subject), "CN=device 7,O=Acme,C=CZ");
        assert_eq!(csr.key_kind, KeyKind::EcP256);
        assert_eq!(csr.public_key_der, signer.public_key_der());
        assert_eq!(csr.subject_alt_names, sans);
        assert_eq!(csr.der, der);

        let plain = block_on(build_csr(&signer, &subject, &[])).expect("builds");
        assert!(parse_csr(&plain).expect("parses").subject_alt_names.is_empty());
    }

    #[test]
    fn tampered_csr_is_refused() {
        let signer = SoftP256::new(0x55);
        let subject = parse_name("CN=device 7").expect("name");
        let der = block_on(build_csr(&signer, &subject, &[])).expect("builds");
        let mut tampered = der.clone();
        let pos = tampered.windows(6).position(|w| w == b"device").expect("CN in DER");
        tampered[pos] = b'D';
        assert!(matches!(parse_csr(&tampered), Err(PkiError::BadCsrSignature)));
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let signer = SoftP256::new(0x55);
        let der = block_on(build_csr(&signer, &parse_name("CN=x").expect("name"), &[])).expect("builds");
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert!(matches!(parse_csr(&der[..cut]), Err(PkiError::Malformed { .. })), "cut at {cut}");
        }
        assert!(matches!(parse_csr(b"hello"), Err(PkiError::Malformed { .. })));
        assert!(matches!(parse_csr(&[]), Err(PkiError::Malformed { .. })));
        let cert_pem = pem_encode("CERTIFICATE", &der);
        assert!(matches!(parse_csr(cert_pem.as_bytes()), Err(PkiError::PemLabel { .. })));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(parse_csr(&trailing), Err(PkiError::Malformed { .. })));
    }

    #[test]
    fn empty_subject_needs_sans() {
        let signer = SoftP256::new(0x55);
        assert!(matches!(
            block_on(build_csr(&signer, &Name::default(), &[])),
            Err(PkiError::InvalidField { field: "subject", .. })
        ));
    }
}
