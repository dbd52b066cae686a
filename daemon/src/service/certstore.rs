//! Certificate-store service, between the gRPC handlers (`grpc/certstore.rs`) and the token,
//! store and pki layers: the certificates on one token (named by serial or label), their
//! private keys, and CSRs whose key pair the token generates.
//!
//! The token is the truth for which certificates exist; `store::token_certificates` holds what
//! the token cannot (protected / system-use flags, where a certificate came from) and
//! `store::token_csrs` the pending CSRs. Every request is checked in full before the token is
//! touched; the token writes come next, and the store transaction with the audit record last.
//! When a later write fails, the earlier ones of the same request are undone (a key pair
//! imported for a certificate whose object could not be written is deleted again). Replacing
//! deletes the old objects first (a token cannot hold two key pairs under one CKA_ID and tell
//! them apart): if the new ones then cannot be written, the old ones stay deleted, which the
//! error says.

use super::issuance::Password;
use super::{Principal, Role, ServiceError, validate};
use crate::pki::{self, Pkcs11KeyParts, PkiError, TokenSigner};
use crate::store::token_certificates::{self as cert_rows, CertificateSource, TokenCertificateRecord};
use crate::store::token_csrs::{self as csr_rows, TokenCsrRecord};
use crate::store::{self, Store, audit};
use crate::token::{
    CertificateObject, ImportedKeyPair, ImportedPrivateKey, KeyPairRequest, TokenError, TokenManager,
};
use hsm_config::KeyAlgorithm;
use std::collections::{BTreeSet, HashMap};
use zeroize::Zeroizing;

/// The longest CKA_LABEL we write.
const MAX_LABEL_CHARS: usize = 64;
/// The longest CKA_ID a caller may choose.
const MAX_ID_BYTES: usize = 64;

/// A certificate on a token with what the daemon knows about it.
#[derive(Debug, Clone)]
pub struct StoredCertificate {
    pub cert: pki::ParsedCertificate,
    /// CKA_ID of the certificate object (and of its key pair).
    pub id: Vec<u8>,
    pub label: String,
    pub protected: bool,
    pub system_use_only: bool,
    pub has_private_key: bool,
    /// None: not written by cardhsm (no row in the store).
    pub source: Option<CertificateSource>,
}

/// Input of ImportCertificate. Debug shows neither the key nor the password.
pub struct ImportRequest {
    pub token: String,
    pub cert: Vec<u8>,
    pub private_key: Zeroizing<Vec<u8>>,
    pub password: Password,
    pub id: String,
    pub label: String,
    pub protected: bool,
    pub system_use_only: bool,
}

impl std::fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportRequest")
            .field("token", &self.token)
            .field("cert_len", &self.cert.len())
            .field("private_key", &"[redacted]")
            .field("password", &self.password)
            .field("id", &self.id)
            .field("label", &self.label)
            .field("protected", &self.protected)
            .field("system_use_only", &self.system_use_only)
            .finish()
    }
}

/// What ImportCertificate did.
#[derive(Debug, Clone)]
pub struct Imported {
    pub certificate: StoredCertificate,
    /// The fingerprint of the certificate it replaced.
    pub replaced: Option<String>,
}

/// The key family of CreateCsr; None on the wire side means "not given".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrKeyType {
    Ecdsa,
    Rsa,
}

/// The curve of an ECDSA CreateCsr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    /// A number the API does not define.
    Unknown(i32),
}

/// Input of CreateCsr.
#[derive(Debug, Clone)]
pub struct CsrRequest {
    pub token: String,
    pub subject: String,
    pub key_type: Option<CsrKeyType>,
    pub curve: Option<Curve>,
    pub rsa_bits: u32,
}

/// Which certificates of a token a request addresses: those stored with their private key
/// (the device API's "user" certificates) or those stored alone (its "ca" certificates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    WithPrivateKey,
    CertificateOnly,
}

impl Holding {
    fn holds(self, c: &StoredCertificate) -> bool {
        c.has_private_key == (self == Holding::WithPrivateKey)
    }
}

/// What DeleteCertificateBySubject deleted.
#[derive(Debug, Clone, Default)]
pub struct DeletedBySubject {
    pub certificates: Vec<String>,
    pub csrs: Vec<String>,
}

#[derive(Debug)]
pub struct CertStoreService {
    store: Store,
    tokens: TokenManager,
    /// `server.max_upload_bytes`: the largest certificate or key file accepted.
    max_upload_bytes: usize,
    /// One change at a time: a change reads the token's certificates, decides, then writes
    /// token objects by CKA_ID. Two interleaved changes could each delete what the other just
    /// wrote (undo deletes by CKA_ID). Changes are rare; reads do not take it.
    write_lock: tokio::sync::Mutex<()>,
}

/// A pki error about the caller's key, on the field it concerns.
fn key_error(e: PkiError) -> ServiceError {
    match e {
        PkiError::WrongPassword { .. } => {
            ServiceError::invalid("password", "does not decrypt the private key (wrong password)")
        }
        PkiError::InvalidField { field, reason } => ServiceError::invalid(field, reason),
        PkiError::Token(t) => ServiceError::from(t),
        PkiError::Internal(_) | PkiError::SignatureMismatch => ServiceError::Internal(e.to_string()),
        other => ServiceError::invalid("private_key", format!("invalid private key: {other}")),
    }
}

/// A certificate upload that does not parse, on `field`.
fn cert_error(field: &str, e: PkiError) -> ServiceError {
    ServiceError::invalid(field, format!("invalid certificate: {e}"))
}

fn pki_internal(e: PkiError) -> ServiceError {
    match e {
        PkiError::Token(t) => ServiceError::from(t),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// Hex as people write it (either case, optional `:` separators) → bytes; `None` when it is
/// not hexadecimal or has an odd number of digits.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.trim().bytes().filter(|b| *b != b':').collect();
    if digits.is_empty() || digits.len() % 2 == 1 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// A certificate selector (`id` or fingerprint) in the lower-case, separator-free form both
/// are compared in.
fn selector(field: &str, value: &str) -> Result<String, ServiceError> {
    if value.trim().is_empty() {
        return Err(ServiceError::invalid(field, "is required (a certificate id or SHA-1 fingerprint)"));
    }
    let bytes = decode_hex(value).ok_or_else(|| {
        ServiceError::invalid(field, "is not hexadecimal (a certificate id or SHA-1 fingerprint)")
    })?;
    Ok(pki::to_hex(&bytes))
}

impl StoredCertificate {
    fn matches(&self, selector: &str) -> bool {
        self.cert.sha1_fingerprint == selector
            || self.cert.sha256_fingerprint == selector
            || pki::to_hex(&self.id) == selector
    }

    fn common_name(&self) -> Option<String> {
        pki::common_name(&self.cert.subject)
    }
}

/// The token objects to write for an uploaded key.
fn imported_key_pair(
    key: &pki::PrivateKeyMaterial,
    id: Vec<u8>,
    label: String,
) -> Result<ImportedKeyPair, ServiceError> {
    let private = match key.pkcs11_parts().map_err(pki_internal)? {
        Pkcs11KeyParts::Ec { ec_params, value } => {
            ImportedPrivateKey::Ec { ec_params: ec_params.to_vec(), value: Zeroizing::new(value.to_vec()) }
        }
        Pkcs11KeyParts::Rsa {
            modulus,
            public_exponent,
            private_exponent,
            prime_1,
            prime_2,
            exponent_1,
            exponent_2,
            coefficient,
        } => ImportedPrivateKey::Rsa {
            modulus: modulus.to_vec(),
            public_exponent: public_exponent.to_vec(),
            private_exponent: Zeroizing::new(private_exponent.to_vec()),
            prime_1: Zeroizing::new(prime_1.to_vec()),
            prime_2: Zeroizing::new(prime_2.to_vec()),
            exponent_1: Zeroizing::new(exponent_1.to_vec()),
            exponent_2: Zeroizing::new(exponent_2.to_vec()),
            coefficient: Zeroizing::new(coefficient.to_vec()),
        },
    };
    Ok(ImportedKeyPair { id, label, public_key_der: key.public_key_spki_der().to_vec(), private })
}

/// The certificate object to write: CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER are DER,
/// as PKCS#11 says.
fn certificate_object(cert: &pki::ParsedCertificate, id: Vec<u8>, label: String) -> CertificateObject {
    CertificateObject {
        id,
        label,
        value: cert.der.clone(),
        subject: cert.subject_der.clone(),
        issuer: cert.issuer_der.clone(),
        serial_number: cert.serial_der.clone(),
    }
}

/// A certificate's row and its audit record, in the caller's transaction.
fn put_with_audit(
    tx: &rusqlite::Transaction<'_>,
    who: &str,
    row: &TokenCertificateRecord,
    action: &str,
    detail: String,
) -> Result<(), ServiceError> {
    cert_rows::put(tx, row)?;
    audit::append(
        tx,
        audit::AuditEntry {
            actor: who,
            action,
            target_type: "token_certificate",
            target_id: &row.fingerprint,
            detail,
        },
    )?;
    Ok(())
}

/// An import's row and audit record, in the caller's transaction; the row of the other
/// certificate it replaced (`gone`) leaves with it.
fn record_import(
    tx: &rusqlite::Transaction<'_>,
    who: &str,
    row: &TokenCertificateRecord,
    gone: Option<&str>,
    detail: String,
) -> Result<(), ServiceError> {
    if let Some(old) = gone {
        cert_rows::delete(tx, &row.token_serial, old)?;
    }
    put_with_audit(tx, who, row, "token_certificate.import", detail)
}

/// The CKA_ID a caller chose (hex, at most [`MAX_ID_BYTES`]), or None when they chose none.
fn chosen_id(id: &str) -> Result<Option<Vec<u8>>, ServiceError> {
    if id.trim().is_empty() {
        return Ok(None);
    }
    let id = decode_hex(id)
        .ok_or_else(|| ServiceError::invalid("id", "is not hexadecimal (the CKA_ID in hex)"))?;
    if id.len() > MAX_ID_BYTES {
        return Err(ServiceError::invalid("id", format!("is longer than {MAX_ID_BYTES} bytes")));
    }
    Ok(Some(id))
}

/// The certificates an import of `fingerprint` under `id` replaces (the same certificate, or
/// whatever is under that id); refused when one of them is protected.
fn replaceable<'a>(
    present: &'a [StoredCertificate],
    fingerprint: &str,
    id: &[u8],
    serial: &str,
) -> Result<Vec<&'a StoredCertificate>, ServiceError> {
    let replaced: Vec<&StoredCertificate> =
        present.iter().filter(|c| c.cert.sha1_fingerprint == fingerprint || c.id == id).collect();
    if let Some(p) = replaced.iter().find(|c| c.protected) {
        return Err(ServiceError::FailedPrecondition(format!(
            "certificate {} on token {serial} is protected: it cannot be replaced",
            p.cert.sha1_fingerprint
        )));
    }
    Ok(replaced)
}

/// The fingerprint of the one certificate other than `fingerprint` an import replaces (the
/// one under its id), or None. An import that would replace two is refused on `id`.
fn other_replaced(
    replaced: &[&StoredCertificate],
    fingerprint: &str,
) -> Result<Option<String>, ServiceError> {
    let others: BTreeSet<&str> =
        replaced.iter().map(|c| c.cert.sha1_fingerprint.as_str()).filter(|f| *f != fingerprint).collect();
    if others.len() > 1 {
        return Err(ServiceError::invalid(
            "id",
            format!(
                "importing under this id would replace {} certificates ({}): delete one first",
                others.len(),
                others.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(others.into_iter().next().map(str::to_owned))
}

/// CKA_LABEL when the caller gave none: the subject CN, else the start of the fingerprint.
fn default_label(cert: &pki::ParsedCertificate) -> String {
    pki::common_name(&cert.subject)
        .map(|cn| cn.chars().take(MAX_LABEL_CHARS).collect())
        .unwrap_or_else(|| format!("cert-{}", cert.sha1_fingerprint.get(..16).unwrap_or_default()))
}

impl CertStoreService {
    pub fn new(config: &hsm_config::Config, store: Store, tokens: TokenManager) -> Self {
        CertStoreService {
            store,
            tokens,
            max_upload_bytes: usize::try_from(config.server.max_upload_bytes).unwrap_or(usize::MAX),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The serial of the present token whose serial, else whose label, is `token`.
    async fn resolve_token(&self, token: &str) -> Result<String, ServiceError> {
        let t = token.trim();
        if t.is_empty() {
            return Err(ServiceError::invalid("token", "is required (a token serial number or label)"));
        }
        let present: Vec<_> = self
            .tokens
            .list_tokens()
            .await?
            .into_iter()
            .filter(|s| s.present && !s.serial.is_empty())
            .collect();
        if let Some(s) = present.iter().find(|s| s.serial == t) {
            return Ok(s.serial.clone());
        }
        let labelled: Vec<&str> =
            present.iter().filter(|s| s.label == t).map(|s| s.serial.as_str()).collect();
        match labelled.as_slice() {
            [] => Err(ServiceError::NotFound(format!("no token with serial number or label {t:?}"))),
            [serial] => Ok((*serial).to_owned()),
            several => Err(ServiceError::invalid(
                "token",
                format!(
                    "{} tokens are labelled {t:?}: name one by its serial number ({})",
                    several.len(),
                    several.join(", ")
                ),
            )),
        }
    }

    /// Whether a key pair with this CKA_ID is on the token (read through its public half).
    async fn has_key_pair(&self, serial: &str, id: &[u8]) -> Result<bool, ServiceError> {
        match self.tokens.public_key(serial, id.to_vec()).await {
            Ok(found) => Ok(found.is_some()),
            // A public key of a kind we cannot render (another curve) is still a key pair.
            Err(TokenError::Internal(_)) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Every certificate object on the token that parses, with its flags.
    async fn certificates(&self, serial: &str) -> Result<Vec<StoredCertificate>, ServiceError> {
        let objects = self.tokens.list_certificates(serial, None).await?;
        let key = serial.to_owned();
        let rows = self.store.read(move |c| cert_rows::list(c, &key).map_err(ServiceError::from)).await?;
        let rows: HashMap<&str, &TokenCertificateRecord> =
            rows.iter().map(|r| (r.fingerprint.as_str(), r)).collect();
        let mut keys: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let cert = match pki::parse_certificate(&object.value) {
                Ok(c) => c,
                Err(e) => {
                    // Written by someone else; listing the rest is more useful than failing.
                    tracing::warn!(token = serial, id = %pki::to_hex(&object.id), error = %e, "skipping a certificate object that does not parse");
                    continue;
                }
            };
            let has_private_key = match keys.get(&object.id) {
                Some(k) => *k,
                None => {
                    let k = self.has_key_pair(serial, &object.id).await?;
                    keys.insert(object.id.clone(), k);
                    k
                }
            };
            let row = rows.get(cert.sha1_fingerprint.as_str());
            out.push(StoredCertificate {
                protected: row.is_some_and(|r| r.protected),
                system_use_only: row.is_some_and(|r| r.system_use_only),
                source: row.map(|r| r.source),
                id: object.id,
                label: object.label,
                has_private_key,
                cert,
            });
        }
        Ok(out)
    }

    /// ListCertificates: every certificate on the token, or those `id` names (NOT_FOUND when
    /// none does).
    pub async fn list(&self, token: &str, id: &str) -> Result<Vec<StoredCertificate>, ServiceError> {
        self.list_holding(token, id, None).await
    }

    /// ListCertificates restricted to one [`Holding`] (None: every certificate): the device
    /// API's "user" and "ca" stores are the two halves of one token.
    pub async fn list_holding(
        &self,
        token: &str,
        id: &str,
        holding: Option<Holding>,
    ) -> Result<Vec<StoredCertificate>, ServiceError> {
        let wanted = if id.trim().is_empty() { None } else { Some(selector("id", id)?) };
        let serial = self.resolve_token(token).await?;
        let mut all = self.certificates(&serial).await?;
        all.retain(|c| holding.is_none_or(|h| h.holds(c)));
        match wanted {
            None => Ok(all),
            Some(sel) => {
                let found: Vec<_> = all.into_iter().filter(|c| c.matches(&sel)).collect();
                if found.is_empty() {
                    Err(ServiceError::NotFound(format!("no certificate {sel} on token {serial}")))
                } else {
                    Ok(found)
                }
            }
        }
    }

    /// ImportCertificate.
    pub async fn import(&self, actor: &Principal, req: ImportRequest) -> Result<Imported, ServiceError> {
        // Everything about the input first: nothing is read from the token for a bad request.
        if req.cert.is_empty() {
            return Err(ServiceError::invalid("cert", "is required (a certificate, DER or PEM)"));
        }
        validate::upload("cert", req.cert.len(), self.max_upload_bytes)?;
        if req.private_key.is_empty() {
            return Err(ServiceError::invalid("private_key", "is required (the certificate's private key)"));
        }
        validate::upload("private_key", req.private_key.len(), self.max_upload_bytes)?;
        let cert = pki::parse_certificate(&req.cert).map_err(|e| cert_error("cert", e))?;
        let password = Some(req.password.0.as_str()).filter(|p| !p.is_empty());
        let key = pki::parse_private_key(&req.private_key, password).map_err(key_error)?;
        if !key.matches_certificate(&cert.der) {
            return Err(ServiceError::invalid(
                "private_key",
                "does not match the certificate (their public keys differ)",
            ));
        }
        let id = match chosen_id(&req.id)? {
            Some(id) => id,
            // The common PKCS#11 convention; the same certificate always lands on the same id.
            None => pki::key_identifier(key.public_key_spki_der()).map_err(pki_internal)?,
        };
        let label = match validate::text("label", &req.label, MAX_LABEL_CHARS)? {
            l if l.is_empty() => default_label(&cert),
            l => l,
        };
        // A protected certificate can never be deleted or replaced through this API again,
        // so locking one in is an administrator's decision (see authz.rs).
        if req.protected && !actor.has_role(Role::Admin) {
            return Err(ServiceError::PermissionDenied(
                "only an administrator may import a protected certificate".into(),
            ));
        }

        let serial = self.resolve_token(&req.token).await?;
        let _changing = self.write_lock.lock().await;
        let present = self.certificates(&serial).await?;
        let replaced = replaceable(&present, &cert.sha1_fingerprint, &id, &serial)?;
        let other_fp = other_replaced(&replaced, &cert.sha1_fingerprint)?;
        let mut old_ids: BTreeSet<Vec<u8>> = replaced.iter().map(|c| c.id.clone()).collect();
        let (key_serial, key_id) = (serial.clone(), id.clone());
        let pending = self
            .store
            .read(move |c| csr_rows::list(c, &key_serial).map_err(ServiceError::from))
            .await?
            .into_iter()
            .find(|c| c.object_id == key_id);
        if let Some(csr) = pending {
            return Err(ServiceError::invalid(
                "id",
                format!("is the key pair of pending CSR {}: complete or delete it first", csr.id),
            ));
        }
        if !present.iter().any(|c| c.id == id) {
            // A key pair under the id without a certificate (a card key, another
            // application's) is not ours to replace, unless it is this very key.
            match self.tokens.public_key(&serial, id.clone()).await {
                Ok(None) => {}
                Ok(Some(spki)) if spki == key.public_key_spki_der() => {
                    old_ids.insert(id.clone());
                }
                Ok(Some(_)) | Err(TokenError::Internal(_)) => {
                    return Err(ServiceError::invalid(
                        "id",
                        format!("{} is the id of another key pair on the token", pki::to_hex(&id)),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let object = certificate_object(&cert, id.clone(), label.clone());
        let pair = imported_key_pair(&key, id.clone(), label.clone())?;
        drop(key);

        for old in &old_ids {
            self.tokens.delete_certificates(&serial, old.clone()).await?;
            self.tokens.delete_key_pair(&serial, old.clone()).await?;
        }
        let lost = |e: ServiceError| {
            if !old_ids.is_empty() {
                tracing::error!(token = %serial, error = %e, "a replaced certificate was deleted and its replacement could not be written");
            }
            e
        };
        self.tokens.import_key_pair(&serial, pair).await.map_err(|e| lost(e.into()))?;
        if let Err(e) = self.tokens.create_certificate(&serial, object).await {
            self.undo(&serial, &id, false).await;
            return Err(lost(e.into()));
        }
        // Another certificate under the id, or else this very certificate imported again.
        let replaced_fp =
            other_fp.clone().or_else(|| (!replaced.is_empty()).then(|| cert.sha1_fingerprint.clone()));
        let record = TokenCertificateRecord {
            token_serial: serial.clone(),
            fingerprint: cert.sha1_fingerprint.clone(),
            object_id: id.clone(),
            source: CertificateSource::Import,
            protected: req.protected,
            system_use_only: req.system_use_only,
            created_at: store::now(),
        };
        let who = actor.username.clone();
        let detail = serde_json::json!({
            "token": serial,
            "id": pki::to_hex(&id),
            "label": label,
            "subject": cert.subject_dn,
            "sha256": cert.sha256_fingerprint,
            "replaced": replaced_fp,
            "protected": req.protected,
            "system_use_only": req.system_use_only,
        })
        .to_string();
        let (row, gone) = (record.clone(), other_fp);
        let written =
            self.store.write(move |tx| record_import(tx, &who, &row, gone.as_deref(), detail)).await;
        if let Err(e) = written {
            self.undo(&serial, &id, true).await;
            return Err(lost(e));
        }
        Ok(Imported {
            certificate: StoredCertificate {
                cert,
                id,
                label,
                protected: record.protected,
                system_use_only: record.system_use_only,
                has_private_key: true,
                source: Some(CertificateSource::Import),
            },
            replaced: replaced_fp,
        })
    }

    /// ImportCertificate with `certificate_only`: the request's key-pair fields must be empty
    /// (they would be silently ignored otherwise), then [`Self::import_certificate_only`].
    pub async fn import_without_key(
        &self,
        actor: &Principal,
        req: ImportRequest,
    ) -> Result<Imported, ServiceError> {
        let set = [
            ("private_key", !req.private_key.is_empty()),
            ("password", !req.password.0.is_empty()),
            ("label", !req.label.is_empty()),
            ("protected", req.protected),
            ("system_use_only", req.system_use_only),
        ];
        if let Some((field, _)) = set.into_iter().find(|(_, given)| *given) {
            return Err(ServiceError::invalid(
                field,
                "does not apply to a certificate imported without its key",
            ));
        }
        self.import_certificate_only(actor, &req.token, &req.cert, &req.id).await
    }

    /// ImportCertificate without a private key (a CA certificate the token should trust): the
    /// certificate object alone, under `id` (hex; default the key identifier of its public
    /// key). It may replace only another key-less certificate: an id or certificate already
    /// stored with a key pair is refused on `id`, so no key is ever deleted by this import.
    pub async fn import_certificate_only(
        &self,
        actor: &Principal,
        token: &str,
        cert: &[u8],
        id: &str,
    ) -> Result<Imported, ServiceError> {
        if cert.is_empty() {
            return Err(ServiceError::invalid("cert", "is required (a certificate, DER or PEM)"));
        }
        validate::upload("cert", cert.len(), self.max_upload_bytes)?;
        let cert = pki::parse_certificate(cert).map_err(|e| cert_error("cert", e))?;
        let id = match chosen_id(id)? {
            Some(id) => id,
            None => pki::key_identifier(&cert.public_key_der).map_err(|e| cert_error("cert", e))?,
        };
        let label = default_label(&cert);
        let serial = self.resolve_token(token).await?;
        let _changing = self.write_lock.lock().await;
        let present = self.certificates(&serial).await?;
        let replaced = replaceable(&present, &cert.sha1_fingerprint, &id, &serial)?;
        if replaced.iter().any(|c| c.has_private_key) || self.has_key_pair(&serial, &id).await? {
            return Err(ServiceError::invalid(
                "id",
                format!(
                    "{} is the id of a key pair on the token: a certificate without a key cannot go there",
                    pki::to_hex(&id)
                ),
            ));
        }
        let other_fp = other_replaced(&replaced, &cert.sha1_fingerprint)?;
        let old_ids: BTreeSet<Vec<u8>> = replaced.iter().map(|c| c.id.clone()).collect();
        for old in &old_ids {
            self.tokens.delete_certificates(&serial, old.clone()).await?;
        }
        let object = certificate_object(&cert, id.clone(), label.clone());
        self.tokens.create_certificate(&serial, object).await?;
        let replaced_fp =
            other_fp.clone().or_else(|| (!replaced.is_empty()).then(|| cert.sha1_fingerprint.clone()));
        let record = TokenCertificateRecord {
            token_serial: serial.clone(),
            fingerprint: cert.sha1_fingerprint.clone(),
            object_id: id.clone(),
            source: CertificateSource::Import,
            protected: false,
            system_use_only: false,
            created_at: store::now(),
        };
        let who = actor.username.clone();
        let detail = serde_json::json!({
            "token": serial,
            "id": pki::to_hex(&id),
            "label": label,
            "subject": cert.subject_dn,
            "sha256": cert.sha256_fingerprint,
            "replaced": replaced_fp,
            "private_key": false,
        })
        .to_string();
        let (row, gone) = (record.clone(), other_fp);
        let written =
            self.store.write(move |tx| record_import(tx, &who, &row, gone.as_deref(), detail)).await;
        if let Err(e) = written {
            if let Err(undo) = self.tokens.delete_certificates(&serial, id.clone()).await {
                tracing::warn!(token = %serial, error = %undo, "could not remove a certificate object of a failed request");
            }
            return Err(e);
        }
        Ok(Imported {
            certificate: StoredCertificate {
                cert,
                id,
                label,
                protected: false,
                system_use_only: false,
                has_private_key: false,
                source: Some(CertificateSource::Import),
            },
            replaced: replaced_fp,
        })
    }

    /// Takes what a failed request wrote under `id` off the token again: the key pair, and
    /// the certificate objects when `certificate` is set.
    async fn undo(&self, serial: &str, id: &[u8], certificate: bool) {
        if certificate && let Err(e) = self.tokens.delete_certificates(serial, id.to_vec()).await {
            tracing::warn!(token = serial, error = %e, "could not remove a certificate object of a failed request");
        }
        if let Err(e) = self.tokens.delete_key_pair(serial, id.to_vec()).await {
            tracing::warn!(token = serial, error = %e, "could not remove a key pair of a failed request");
        }
    }

    /// Refuses when one of `doomed` is protected; otherwise deletes the certificate objects and
    /// key pairs under their ids from the token.
    async fn delete_from_token(
        &self,
        serial: &str,
        doomed: &[&StoredCertificate],
    ) -> Result<(), ServiceError> {
        if let Some(p) = doomed.iter().find(|c| c.protected) {
            return Err(ServiceError::FailedPrecondition(format!(
                "certificate {} on token {serial} is protected: it cannot be deleted",
                p.cert.sha1_fingerprint
            )));
        }
        let ids: BTreeSet<&Vec<u8>> = doomed.iter().map(|c| &c.id).collect();
        for id in ids {
            self.tokens.delete_certificates(serial, id.clone()).await?;
            self.tokens.delete_key_pair(serial, id.clone()).await?;
        }
        Ok(())
    }

    /// DeleteCertificate: the certificate `id` names and its key pair. Other certificates under
    /// the same CKA_ID go too (their key pair is gone).
    pub async fn delete(
        &self,
        actor: &Principal,
        token: &str,
        id: &str,
    ) -> Result<Vec<String>, ServiceError> {
        self.delete_holding(actor, token, id, None).await
    }

    /// DeleteCertificate restricted to one [`Holding`]: a selector naming only certificates
    /// of the other half is NOT_FOUND, so the device API's "ca" store never deletes a key.
    pub async fn delete_holding(
        &self,
        actor: &Principal,
        token: &str,
        id: &str,
        holding: Option<Holding>,
    ) -> Result<Vec<String>, ServiceError> {
        let sel = selector("id", id)?;
        let serial = self.resolve_token(token).await?;
        let _changing = self.write_lock.lock().await;
        let present = self.certificates(&serial).await?;
        let ids: BTreeSet<&Vec<u8>> = present
            .iter()
            .filter(|c| c.matches(&sel) && holding.is_none_or(|h| h.holds(c)))
            .map(|c| &c.id)
            .collect();
        if ids.is_empty() {
            return Err(ServiceError::NotFound(format!("no certificate {sel} on token {serial}")));
        }
        let doomed: Vec<&StoredCertificate> = present.iter().filter(|c| ids.contains(&c.id)).collect();
        self.delete_from_token(&serial, &doomed).await?;
        let deleted: Vec<String> = doomed.iter().map(|c| c.cert.sha1_fingerprint.clone()).collect();
        self.record_deletions(actor, &serial, &doomed, &[], "token_certificate.delete").await?;
        Ok(deleted)
    }

    /// The store half of a deletion: the rows of `certs` and `csrs` and one audit record each.
    async fn record_deletions(
        &self,
        actor: &Principal,
        serial: &str,
        certs: &[&StoredCertificate],
        csrs: &[TokenCsrRecord],
        action: &'static str,
    ) -> Result<(), ServiceError> {
        let certs: Vec<(String, String, String)> = certs
            .iter()
            .map(|c| (c.cert.sha1_fingerprint.clone(), pki::to_hex(&c.id), c.cert.subject_dn.clone()))
            .collect();
        let csrs: Vec<(String, String)> = csrs.iter().map(|c| (c.id.clone(), c.subject_dn.clone())).collect();
        let (who, serial) = (actor.username.clone(), serial.to_owned());
        self.store
            .write(move |tx| {
                for (fp, id, subject) in &certs {
                    cert_rows::delete(tx, &serial, fp)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &who,
                            action,
                            target_type: "token_certificate",
                            target_id: fp,
                            detail: serde_json::json!({ "token": serial, "id": id, "subject": subject })
                                .to_string(),
                        },
                    )?;
                }
                for (id, subject) in &csrs {
                    csr_rows::delete(tx, id)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &who,
                            action: "token_csr.delete",
                            target_type: "token_csr",
                            target_id: id,
                            detail: serde_json::json!({ "token": serial, "subject": subject }).to_string(),
                        },
                    )?;
                }
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// CreateCsr: a key pair generated on the token, a CSR it signs, recorded as pending.
    pub async fn create_csr(
        &self,
        actor: &Principal,
        req: CsrRequest,
    ) -> Result<TokenCsrRecord, ServiceError> {
        if req.subject.trim().is_empty() {
            return Err(ServiceError::invalid(
                "subject",
                "is required (an RFC 4514 DN such as CN=device1,O=Acme)",
            ));
        }
        let subject =
            pki::parse_name(&req.subject).map_err(|e| ServiceError::invalid("subject", e.to_string()))?;
        if subject.is_empty() {
            return Err(ServiceError::invalid("subject", "is empty"));
        }
        let algorithm = match req.key_type {
            None => return Err(ServiceError::invalid("key_type", "is required: ECDSA or RSA")),
            Some(CsrKeyType::Ecdsa) => {
                if req.rsa_bits != 0 {
                    return Err(ServiceError::invalid("rsa_bits", "is only for RSA keys"));
                }
                match req.curve {
                    None | Some(Curve::P256) => KeyAlgorithm::EcP256,
                    Some(Curve::P384) => KeyAlgorithm::EcP384,
                    Some(Curve::Unknown(n)) => {
                        return Err(ServiceError::invalid("curve", format!("{n} is not P-256 or P-384")));
                    }
                }
            }
            Some(CsrKeyType::Rsa) => {
                if req.curve.is_some() {
                    return Err(ServiceError::invalid("curve", "is only for ECDSA keys"));
                }
                match req.rsa_bits {
                    0 | 2048 => KeyAlgorithm::Rsa2048,
                    3072 => KeyAlgorithm::Rsa3072,
                    4096 => KeyAlgorithm::Rsa4096,
                    n => {
                        return Err(ServiceError::invalid(
                            "rsa_bits",
                            format!("{n} is not 2048, 3072 or 4096"),
                        ));
                    }
                }
            }
        };
        let serial = self.resolve_token(&req.token).await?;
        let _changing = self.write_lock.lock().await;
        let csr_id = uuid::Uuid::new_v4();
        let key_id = csr_id.as_bytes().to_vec();
        let csr_id = csr_id.to_string();
        let common_name = pki::common_name(&subject).unwrap_or_default();
        let label = if common_name.is_empty() {
            format!("csr-{csr_id}")
        } else {
            common_name.chars().take(MAX_LABEL_CHARS).collect()
        };
        let generated = self
            .tokens
            .generate_key_pair(
                &serial,
                KeyPairRequest { label, id: key_id.clone(), algorithm, persistent: true },
            )
            .await?;
        let made = async {
            let signer =
                TokenSigner::new(self.tokens.clone(), &serial, key_id.clone(), &generated.public_key_der)
                    .map_err(pki_internal)?;
            let csr_der = pki::build_csr(&signer, &subject, &[]).await.map_err(pki_internal)?;
            let record = TokenCsrRecord {
                id: csr_id.clone(),
                token_serial: serial.clone(),
                object_id: key_id.clone(),
                subject_dn: pki::format_name(&subject),
                common_name,
                key_algorithm: algorithm.as_str().to_owned(),
                public_key_der: generated.public_key_der.clone(),
                csr_der,
                created_at: store::now(),
            };
            let row = record.clone();
            let who = actor.username.clone();
            self.store
                .write(move |tx| {
                    csr_rows::insert(tx, &row)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &who,
                            action: "token_csr.create",
                            target_type: "token_csr",
                            target_id: &row.id,
                            detail: serde_json::json!({
                                "token": row.token_serial,
                                "id": pki::to_hex(&row.object_id),
                                "subject": row.subject_dn,
                                "key_algorithm": row.key_algorithm,
                            })
                            .to_string(),
                        },
                    )?;
                    Ok::<_, ServiceError>(())
                })
                .await?;
            Ok::<_, ServiceError>(record)
        }
        .await;
        if made.is_err() {
            // Nothing refers to the key: take it off the token again.
            self.undo(&serial, &key_id, false).await;
        }
        made
    }

    /// CompleteCsr: stores the certificate for a pending CSR's key under the key's CKA_ID.
    pub async fn complete_csr(
        &self,
        actor: &Principal,
        token: &str,
        csr_id: &str,
        certificate: &[u8],
    ) -> Result<StoredCertificate, ServiceError> {
        let csr_id = validate::id("csr_id", csr_id)?;
        if certificate.is_empty() {
            return Err(ServiceError::invalid("certificate", "is required (DER or PEM)"));
        }
        validate::upload("certificate", certificate.len(), self.max_upload_bytes)?;
        let cert = pki::parse_certificate(certificate).map_err(|e| cert_error("certificate", e))?;
        let serial = self.resolve_token(token).await?;
        let _changing = self.write_lock.lock().await;
        let (key_serial, key_id) = (serial.clone(), csr_id.clone());
        let csr = self
            .store
            .read(move |c| csr_rows::get(c, &key_serial, &key_id).map_err(ServiceError::from))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no pending CSR {csr_id} on token {serial}")))?;
        if cert.public_key_der != csr.public_key_der {
            return Err(ServiceError::invalid(
                "certificate",
                format!("does not certify the key of CSR {csr_id} (their public keys differ)"),
            ));
        }
        match self.tokens.public_key(&serial, csr.object_id.clone()).await? {
            Some(spki) if spki == csr.public_key_der => {}
            _ => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "the key pair of CSR {csr_id} is no longer on token {serial}"
                )));
            }
        }
        let label = default_label(&cert);
        let object = certificate_object(&cert, csr.object_id.clone(), label.clone());
        self.tokens.create_certificate(&serial, object).await?;
        let record = TokenCertificateRecord {
            token_serial: serial.clone(),
            fingerprint: cert.sha1_fingerprint.clone(),
            object_id: csr.object_id.clone(),
            source: CertificateSource::Csr,
            protected: false,
            system_use_only: false,
            created_at: store::now(),
        };
        let (row, who, csr_key) = (record.clone(), actor.username.clone(), csr_id.clone());
        let detail = serde_json::json!({
            "token": serial,
            "csr_id": csr_id,
            "id": pki::to_hex(&csr.object_id),
            "subject": cert.subject_dn,
            "sha256": cert.sha256_fingerprint,
        })
        .to_string();
        let written = self
            .store
            .write(move |tx| {
                if !csr_rows::delete(tx, &csr_key)? {
                    return Err(ServiceError::NotFound(format!("no pending CSR {csr_key}")));
                }
                put_with_audit(tx, &who, &row, "token_csr.complete", detail)
            })
            .await;
        if let Err(e) = written {
            if let Err(d) = self.tokens.delete_certificates(&serial, csr.object_id.clone()).await {
                tracing::warn!(token = %serial, error = %d, "could not remove the certificate object of a failed CompleteCsr");
            }
            return Err(e);
        }
        Ok(StoredCertificate {
            cert,
            id: csr.object_id,
            label,
            protected: false,
            system_use_only: false,
            has_private_key: true,
            source: Some(CertificateSource::Csr),
        })
    }

    /// DeleteCertificateBySubject: every certificate whose subject CN is `cn` (with its key
    /// pair), and every pending CSR for that CN (with its key pair). All or nothing: one
    /// protected certificate refuses the whole request.
    pub async fn delete_by_subject(
        &self,
        actor: &Principal,
        token: &str,
        cn: &str,
    ) -> Result<DeletedBySubject, ServiceError> {
        if cn.is_empty() {
            return Err(ServiceError::invalid("subject_cn", "is required"));
        }
        let serial = self.resolve_token(token).await?;
        let _changing = self.write_lock.lock().await;
        let present = self.certificates(&serial).await?;
        let ids: BTreeSet<&Vec<u8>> =
            present.iter().filter(|c| c.common_name().as_deref() == Some(cn)).map(|c| &c.id).collect();
        let doomed: Vec<&StoredCertificate> = present.iter().filter(|c| ids.contains(&c.id)).collect();
        let (key_serial, key_cn) = (serial.clone(), cn.to_owned());
        let csrs = self
            .store
            .read(move |c| csr_rows::by_common_name(c, &key_serial, &key_cn).map_err(ServiceError::from))
            .await?;
        if doomed.is_empty() && csrs.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "no certificate or pending CSR with CN {cn:?} on token {serial}"
            )));
        }
        self.delete_from_token(&serial, &doomed).await?;
        for csr in &csrs {
            self.tokens.delete_key_pair(&serial, csr.object_id.clone()).await?;
        }
        self.record_deletions(actor, &serial, &doomed, &csrs, "token_certificate.delete_by_subject").await?;
        Ok(DeletedBySubject {
            certificates: doomed.iter().map(|c| c.cert.sha1_fingerprint.clone()).collect(),
            csrs: csrs.into_iter().map(|c| c.id).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_selectors() {
        assert_eq!(decode_hex("0A:1b"), Some(vec![0x0a, 0x1b]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), None);
        assert_eq!(selector("id", "AB:CD").expect("hex"), "abcd");
        for bad in ["", "xyz", "abc"] {
            assert!(
                matches!(selector("id", bad), Err(ServiceError::InvalidArgument { ref field, .. }) if field == "id"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_errors_name_their_field() {
        let field = |e: ServiceError| match e {
            ServiceError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        assert_eq!(field(key_error(PkiError::WrongPassword { what: "private_key" })), "password");
        assert_eq!(field(key_error(PkiError::invalid("password", "required"))), "password");
        assert_eq!(field(key_error(PkiError::malformed("private_key", "junk"))), "private_key");
        assert_eq!(field(key_error(PkiError::WeakKey { detail: "RSA 1024".into() })), "private_key");
    }
}
