//! Issuance service, between the gRPC handlers and the store/token/pki layers: certificate
//! authorities whose keys are generated on the daemon's HSM token, profiles, issuing from
//! CSRs; `revoke.rs` holds revocation and CRLs. HSM work (key generation, signing) happens
//! before the store transaction that records its result together with the audit record, so
//! a refused or failed request leaves the store unchanged.
//!
//! Layout: `profiles.rs` (profiles, parameter validation, subject templates), `revoke.rs`
//! (revocation state machine, CRL signing and publication).

pub mod profiles;
mod revoke;

use super::{Principal, ServiceError, paging, validate};
use crate::pki::{self, CertSerial, CertificateTemplate, KeyUsage, PkiError, TokenSigner};
use crate::store::authorities::{self as authority_store, AuthorityKind, AuthorityRecord};
use crate::store::certificates::{self as cert_store, CertStatus, CertificateRecord};
use crate::store::{self, Store, StoreError, audit};
use crate::token::{KeyPairRequest, TokenManager};
use hsm_config::{KeyAlgorithm, TokenRole};
use profiles::Profile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::store::authorities::{AuthorityKind as Kind, CrlRecord};
pub use crate::store::certificates::{CertStatus as Status, CertificateRecord as Certificate};

const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// The largest CSR we read (a 4096-bit RSA request with extensions is under 4 KiB).
const MAX_CSR_BYTES: usize = 64 * 1024;
/// How often a fresh serial is tried when the store reports a repeat (2^-127 odds each).
const SERIAL_ATTEMPTS: usize = 3;

/// Input of CreateAuthority.
#[derive(Debug, Clone, Default)]
pub struct NewAuthority {
    pub name: String,
    pub key_algorithm: String,
    pub subject_dn: String,
    pub validity_years: u32,
    /// None: the request named no (or an unknown) kind.
    pub kind: Option<AuthorityKind>,
    pub parent_id: String,
}

/// An authority with its chain (its own certificate first, then its issuers up to the root).
#[derive(Debug, Clone)]
pub struct AuthorityView {
    pub record: AuthorityRecord,
    pub chain: Vec<Vec<u8>>,
}

/// Input of IssueCertificate.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    pub authority_id: String,
    pub profile_id: String,
    pub params: HashMap<String, String>,
    pub csr_pem: String,
    pub validity_years: u32,
}

/// An issued certificate with the chain of its authority.
#[derive(Debug, Clone)]
pub struct Issued {
    pub record: CertificateRecord,
    pub chain: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub struct IssuanceService {
    store: Store,
    tokens: TokenManager,
    profiles: Vec<Profile>,
    /// One lock per authority: revocations of one CA are serialised so that CRL numbers are
    /// consecutive and each CRL lists exactly the state committed with it.
    crl_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Unix seconds of a time (0 before the epoch, which no certificate of ours has).
fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A pki error caused by the caller's input, as INVALID_ARGUMENT on `field`; faults of ours
/// and of the token keep their own mapping.
fn pki_error(field: &str, e: PkiError) -> ServiceError {
    match e {
        PkiError::Token(t) => ServiceError::from(t),
        PkiError::SignatureMismatch | PkiError::Internal(_) => ServiceError::Internal(e.to_string()),
        other => ServiceError::invalid(field, other.to_string()),
    }
}

/// A pki error while working on our own objects (stored certificates, templates we built).
fn pki_internal(e: PkiError) -> ServiceError {
    match e {
        PkiError::Token(t) => ServiceError::from(t),
        other => ServiceError::Internal(other.to_string()),
    }
}

impl IssuanceService {
    pub fn new(
        config: &hsm_config::Config,
        store: Store,
        tokens: TokenManager,
    ) -> Result<Self, ServiceError> {
        let profiles = profiles::all_profiles(config)
            .map_err(|e| ServiceError::Internal(format!("issuance profiles: {e}")))?;
        Ok(IssuanceService { store, tokens, profiles, crl_locks: Mutex::new(HashMap::new()) })
    }

    // ---- authorities -------------------------------------------------------------------

    /// Generates the CA key on the daemon token and makes the root certificate, the
    /// intermediate certificate (signed by the parent) or the CSR (EXTERNAL).
    pub async fn create_authority(
        &self,
        actor: &Principal,
        req: NewAuthority,
    ) -> Result<AuthorityView, ServiceError> {
        let name = authority_name(&req.name)?;
        let algorithm: KeyAlgorithm =
            req.key_algorithm.parse().map_err(|e: String| ServiceError::invalid("key_algorithm", e))?;
        if req.subject_dn.trim().is_empty() {
            return Err(ServiceError::invalid("subject_dn", "is required"));
        }
        let subject = pki::parse_name(&req.subject_dn).map_err(|e| pki_error("subject_dn", e))?;
        if !(1..=30).contains(&req.validity_years) {
            return Err(ServiceError::invalid("validity_years", "must be 1 to 30"));
        }
        let kind = req
            .kind
            .ok_or_else(|| ServiceError::invalid("kind", "must be ROOT, INTERMEDIATE or EXTERNAL"))?;
        let parent_id = match (kind, req.parent_id.trim().is_empty()) {
            (AuthorityKind::Intermediate, _) => Some(validate::id("parent_id", &req.parent_id)?),
            (_, true) => None,
            (_, false) => {
                return Err(ServiceError::invalid(
                    "parent_id",
                    "only an INTERMEDIATE authority has a parent",
                ));
            }
        };
        let lookup = name.clone();
        let parent_key = parent_id.clone();
        let (existing, parent) = self
            .store
            .read(move |c| {
                let existing = authority_store::by_name(c, &lookup)?;
                let parent = match parent_key {
                    Some(id) => authority_store::get(c, &id)?,
                    None => None,
                };
                Ok::<_, ServiceError>((existing, parent))
            })
            .await?;
        if existing.is_some() {
            return Err(ServiceError::AlreadyExists(format!("an authority named {name:?} already exists")));
        }
        let parent = match (&parent_id, parent) {
            (Some(id), None) => {
                return Err(ServiceError::invalid("parent_id", format!("no authority with id {id}")));
            }
            (_, p) => p,
        };
        let parent_cert = match &parent {
            Some(p) => {
                let cert = self.usable(p, "parent_id")?;
                if !cert.is_ca || cert.path_len == Some(0) {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "authority {} may not certify other authorities (path length 0)",
                        p.name
                    )));
                }
                Some(cert)
            }
            None => None,
        };
        let token_serial = self.daemon_token().await?;

        let id = uuid::Uuid::new_v4();
        let key_id = id.as_bytes().to_vec();
        let id = id.to_string();
        let generated = self
            .tokens
            .generate_key_pair(
                &token_serial,
                KeyPairRequest {
                    label: format!("ca:{name}"),
                    id: key_id.clone(),
                    algorithm,
                    persistent: true,
                },
            )
            .await?;
        let made = self
            .finish_authority(
                actor,
                AuthorityRecord {
                    id,
                    name,
                    kind,
                    parent_id,
                    key_algorithm: algorithm.as_str().to_owned(),
                    token_serial: token_serial.clone(),
                    key_id: key_id.clone(),
                    public_key_der: generated.public_key_der,
                    subject_dn: pki::format_name(&subject),
                    certificate_der: None,
                    csr_der: None,
                    external_chain: Vec::new(),
                    enabled: true,
                    not_before: 0,
                    not_after: 0,
                    issued_count: 0,
                    created_at: store::now(),
                    updated_at: store::now(),
                },
                subject,
                req.validity_years,
                parent.zip(parent_cert),
            )
            .await;
        if made.is_err() {
            // Nothing refers to the key: take it off the token again.
            if let Err(e) = self.tokens.delete_key_pair(&token_serial, key_id).await {
                tracing::warn!(error = %e, "could not delete the key of an authority that was not created");
            }
        }
        made
    }

    /// Signs what the new authority needs with the keys now on the token and records it.
    async fn finish_authority(
        &self,
        actor: &Principal,
        mut rec: AuthorityRecord,
        subject: pki::Name,
        validity_years: u32,
        parent: Option<(AuthorityRecord, pki::ParsedCertificate)>,
    ) -> Result<AuthorityView, ServiceError> {
        let signer =
            TokenSigner::new(self.tokens.clone(), &rec.token_serial, rec.key_id.clone(), &rec.public_key_der)
                .map_err(pki_internal)?;
        let now = SystemTime::now();
        let mut first_crl = None;
        if rec.kind == AuthorityKind::External {
            let csr = pki::build_csr(&signer, &subject, &[]).await.map_err(pki_internal)?;
            rec.csr_der = Some(csr);
        } else {
            let mut not_after = now + YEAR * validity_years;
            let mut template = CertificateTemplate {
                serial: CertSerial::random(),
                issuer: subject.clone(),
                subject: subject.clone(),
                subject_public_key_der: rec.public_key_der.clone(),
                not_before: now,
                not_after,
                is_ca: true,
                path_len: None,
                key_usage: vec![KeyUsage::DigitalSignature, KeyUsage::KeyCertSign, KeyUsage::CrlSign],
                extended_key_usage: Vec::new(),
                subject_alt_names: Vec::new(),
                authority_key_id: None,
                crl_distribution_point: None,
            };
            let der = match &parent {
                None => pki::build_certificate(&signer, &template).await.map_err(pki_internal)?,
                Some((p, pcert)) => {
                    // An intermediate never outlives its issuer.
                    not_after = not_after.min(pcert.not_after);
                    template.not_after = not_after;
                    template.issuer = pcert.subject.clone();
                    template.path_len = Some(0);
                    template.authority_key_id = pcert.subject_key_id.clone();
                    let parent_signer = self.signer(p)?;
                    pki::build_certificate(&parent_signer, &template).await.map_err(pki_internal)?
                }
            };
            rec.not_before = unix(now);
            rec.not_after = unix(not_after);
            let cert = pki::parse_certificate(&der).map_err(pki_internal)?;
            rec.certificate_der = Some(der);
            first_crl = Some(revoke::sign_crl(&signer, &rec, &cert, 1, Vec::new()).await?);
        }
        let who = actor.username.clone();
        let stored = rec.clone();
        self.store
            .write(move |tx| {
                authority_store::insert(tx, &stored)?;
                if let Some(crl) = &first_crl {
                    authority_store::insert_crl(tx, crl)?;
                }
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "authority.create",
                        target_type: "authority",
                        target_id: &stored.id,
                        detail: serde_json::json!({
                            "name": stored.name,
                            "kind": stored.kind.as_str(),
                            "parent_id": stored.parent_id,
                            "key_algorithm": stored.key_algorithm,
                            "subject": stored.subject_dn,
                        })
                        .to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await
            .map_err(|e| match e {
                ServiceError::AlreadyExists(_) => {
                    ServiceError::AlreadyExists(format!("an authority named {:?} already exists", rec.name))
                }
                other => other,
            })?;
        self.view(rec).await
    }

    /// Installs the certificate an external CA signed for an EXTERNAL authority's key.
    /// `pem`: the certificate, optionally followed by its issuers up to the root; each must
    /// sign the one before it.
    pub async fn import_certificate(
        &self,
        actor: &Principal,
        id: &str,
        pem: &str,
    ) -> Result<AuthorityView, ServiceError> {
        let id = validate::id("id", id)?;
        if pem.trim().is_empty() {
            return Err(ServiceError::invalid("certificate_pem", "is required"));
        }
        if pem.len() > MAX_CSR_BYTES * 4 {
            return Err(ServiceError::invalid("certificate_pem", "is too large"));
        }
        let blocks = pki::pem_decode_all(pem.as_bytes()).map_err(|e| pki_error("certificate_pem", e))?;
        let mut certs = Vec::with_capacity(blocks.len());
        for (label, der) in blocks {
            if label != pki::PEM_CERTIFICATE {
                return Err(ServiceError::invalid(
                    "certificate_pem",
                    format!("holds a {label:?} block, not a CERTIFICATE"),
                ));
            }
            certs.push(pki::parse_certificate(&der).map_err(|e| pki_error("certificate_pem", e))?);
        }
        let Some(cert) = certs.first().cloned() else {
            return Err(ServiceError::invalid("certificate_pem", "holds no certificate"));
        };
        let authority = self
            .load_authority(&id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no authority with id {id}")))?;
        if authority.kind != AuthorityKind::External || authority.certificate_der.is_some() {
            return Err(ServiceError::FailedPrecondition(format!(
                "authority {} is not an EXTERNAL authority waiting for its certificate",
                authority.name
            )));
        }
        if cert.public_key_der != authority.public_key_der {
            return Err(ServiceError::invalid(
                "certificate_pem",
                "certifies another key than the authority's key in the HSM",
            ));
        }
        if !cert.is_ca || (!cert.key_usage.is_empty() && !cert.key_usage.contains(&KeyUsage::KeyCertSign)) {
            return Err(ServiceError::invalid(
                "certificate_pem",
                "is not a CA certificate (basicConstraints cA and keyCertSign)",
            ));
        }
        for (i, pair) in certs.windows(2).enumerate() {
            pki::verify_certificate_signature(&pair[0].der, &pair[1].public_key_der).map_err(|_| {
                ServiceError::invalid(
                    "certificate_pem",
                    format!("certificate {i} is not signed by certificate {}", i + 1),
                )
            })?;
        }
        let signer = self.signer(&authority)?;
        let crl = revoke::sign_crl(&signer, &authority, &cert, 1, Vec::new()).await?;
        let chain: Vec<Vec<u8>> = certs.iter().skip(1).map(|c| c.der.clone()).collect();
        let (nb, na) = (unix(cert.not_before), unix(cert.not_after));
        let who = actor.username.clone();
        let der = cert.der.clone();
        let key = id.clone();
        self.store
            .write(move |tx| {
                let current = authority_store::get(tx, &key)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no authority with id {key}")))?;
                if current.certificate_der.is_some() {
                    return Err(ServiceError::FailedPrecondition(format!("authority {} already has a certificate", current.name)));
                }
                authority_store::set_certificate(tx, &key, &der, &chain, nb, na, store::now())?;
                authority_store::insert_crl(tx, &crl)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "authority.import_certificate",
                        target_type: "authority",
                        target_id: &key,
                        detail: serde_json::json!({ "sha256": pki::sha256_fingerprint(&der), "chain": chain.len() }).to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        self.get_authority(&id).await
    }

    pub async fn list_authorities(&self) -> Result<Vec<AuthorityView>, ServiceError> {
        let all = self.store.read(|c| authority_store::list(c).map_err(ServiceError::from)).await?;
        Ok(all.iter().map(|a| AuthorityView { record: a.clone(), chain: chain_in(&all, a) }).collect())
    }

    pub async fn get_authority(&self, id: &str) -> Result<AuthorityView, ServiceError> {
        let id = validate::id("id", id)?;
        let rec = self
            .load_authority(&id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no authority with id {id}")))?;
        self.view(rec).await
    }

    async fn view(&self, rec: AuthorityRecord) -> Result<AuthorityView, ServiceError> {
        let all = self.store.read(|c| authority_store::list(c).map_err(ServiceError::from)).await?;
        let chain = chain_in(&all, &rec);
        Ok(AuthorityView { record: rec, chain })
    }

    async fn load_authority(&self, id: &str) -> Result<Option<AuthorityRecord>, ServiceError> {
        let key = id.to_owned();
        self.store.read(move |c| authority_store::get(c, &key).map_err(ServiceError::from)).await
    }

    /// The authority's certificate, when it may sign: enabled and certified.
    fn usable(&self, a: &AuthorityRecord, field: &str) -> Result<pki::ParsedCertificate, ServiceError> {
        if !a.enabled {
            return Err(ServiceError::FailedPrecondition(format!("authority {} is disabled", a.name)));
        }
        let Some(der) = &a.certificate_der else {
            return Err(ServiceError::FailedPrecondition(format!(
                "authority {} ({field}) has no certificate yet: import the one its external CA signed",
                a.name
            )));
        };
        pki::parse_certificate(der).map_err(pki_internal)
    }

    fn signer(&self, a: &AuthorityRecord) -> Result<TokenSigner, ServiceError> {
        TokenSigner::new(self.tokens.clone(), &a.token_serial, a.key_id.clone(), &a.public_key_der)
            .map_err(pki_internal)
    }

    /// The serial of the token configured with role `daemon`: CA keys live there.
    async fn daemon_token(&self) -> Result<String, ServiceError> {
        self.tokens
            .list_tokens()
            .await?
            .into_iter()
            .find(|t| t.role == Some(TokenRole::Daemon) && t.present)
            .map(|t| t.serial)
            .ok_or_else(|| {
                ServiceError::FailedPrecondition(
                    "no daemon token is present (configure one in [[pkcs11.tokens]] with role = \"daemon\")"
                        .into(),
                )
            })
    }

    // ---- profiles ----------------------------------------------------------------------

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// A profile by id (GetProfile…): NOT_FOUND when there is none.
    pub fn profile(&self, id: &str) -> Result<&Profile, ServiceError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(ServiceError::invalid("id", "is required"));
        }
        self.profiles
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("no profile with id {id:?}")))
    }

    // ---- issuing -----------------------------------------------------------------------

    /// Issues a certificate for the key of a CSR under a profile. The CSR must be well formed,
    /// self-signed, with a key the profile accepts; the parameters must pass the profile.
    pub async fn issue(&self, actor: &Principal, req: IssueRequest) -> Result<Issued, ServiceError> {
        let authority_id = validate::id("authority_id", &req.authority_id)?;
        let profile_id = req.profile_id.trim();
        if profile_id.is_empty() {
            return Err(ServiceError::invalid("profile_id", "is required"));
        }
        let profile = self.profiles.iter().find(|p| p.id == profile_id).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.iter().map(|p| p.id.as_str()).collect();
            ServiceError::invalid(
                "profile_id",
                format!("no profile {profile_id:?} (known: {})", known.join(", ")),
            )
        })?;
        if req.csr_pem.trim().is_empty() {
            return Err(ServiceError::invalid("csr_pem", "is required"));
        }
        if req.csr_pem.len() > MAX_CSR_BYTES {
            return Err(ServiceError::invalid("csr_pem", format!("is larger than {MAX_CSR_BYTES} bytes")));
        }
        let csr = pki::parse_csr(req.csr_pem.as_bytes()).map_err(|e| pki_error("csr_pem", e))?;
        let key = csr.key_kind.to_string();
        if !profile.key_algorithms.contains(&key) {
            return Err(ServiceError::invalid(
                "csr_pem",
                format!(
                    "profile {} does not accept {key} keys (accepts {})",
                    profile.id,
                    profile.key_algorithms.join(", ")
                ),
            ));
        }
        let years = match req.validity_years {
            0 => profile.validity_years,
            y if y <= profile.max_validity_years => y,
            y => {
                return Err(ServiceError::invalid(
                    "validity_years",
                    format!(
                        "{y} is more than profile {} allows ({})",
                        profile.id, profile.max_validity_years
                    ),
                ));
            }
        };
        let resolved = profile.resolve(&req.params, &csr.subject)?;
        let authority = self.load_authority(&authority_id).await?.ok_or_else(|| {
            ServiceError::invalid("authority_id", format!("no authority with id {authority_id}"))
        })?;
        if let Some(bound) = &profile.authority_name
            && !bound.eq_ignore_ascii_case(&authority.name)
        {
            return Err(ServiceError::invalid(
                "authority_id",
                format!("profile {} issues only from authority {bound:?}", profile.id),
            ));
        }
        let ca_cert = self.usable(&authority, "authority_id")?;
        let signer = self.signer(&authority)?;
        let now = SystemTime::now();
        // A certificate never outlives its issuer.
        let not_after = (now + YEAR * years).min(ca_cert.not_after);
        if not_after <= now {
            return Err(ServiceError::FailedPrecondition(format!(
                "authority {} has expired",
                authority.name
            )));
        }
        let mut template = CertificateTemplate {
            serial: CertSerial::random(),
            issuer: ca_cert.subject.clone(),
            subject: resolved.subject.clone(),
            subject_public_key_der: csr.public_key_der.clone(),
            not_before: now,
            not_after,
            is_ca: false,
            path_len: None,
            key_usage: profile.key_usage.clone(),
            extended_key_usage: profile.extended_key_usage.clone(),
            subject_alt_names: resolved.subject_alt_names.clone(),
            authority_key_id: ca_cert.subject_key_id.clone(),
            crl_distribution_point: None,
        };
        let mut attempt = 0;
        let record = loop {
            attempt += 1;
            let der = pki::build_certificate(&signer, &template).await.map_err(|e| pki_error("params", e))?;
            let record = CertificateRecord {
                id: uuid::Uuid::new_v4().to_string(),
                authority_id: authority.id.clone(),
                profile_id: profile.id.clone(),
                serial: template.serial.to_hex(),
                common_name: resolved.common_name.clone(),
                subject_dn: resolved.subject_dn.clone(),
                certificate_der: der,
                status: CertStatus::Valid,
                revocation_reason: None,
                revoked_at: None,
                not_before: unix(now),
                not_after: unix(not_after),
                created_at: store::now(),
                updated_at: store::now(),
            };
            let who = actor.username.clone();
            let rec = record.clone();
            let written = self
                .store
                .write(move |tx| {
                    cert_store::insert(tx, &rec)?;
                    authority_store::count_issued(tx, &rec.authority_id)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &who,
                            action: "certificate.issue",
                            target_type: "certificate",
                            target_id: &rec.id,
                            detail: serde_json::json!({
                                "authority_id": rec.authority_id,
                                "profile_id": rec.profile_id,
                                "serial": rec.serial,
                                "subject": rec.subject_dn,
                            })
                            .to_string(),
                        },
                    )?;
                    Ok::<_, StoreError>(())
                })
                .await;
            match written {
                Ok(()) => break record,
                // The serial repeated one of this authority's: sign again with a fresh one.
                Err(StoreError::Conflict(_)) if attempt < SERIAL_ATTEMPTS => {
                    tracing::warn!(authority = %authority.id, "serial number collision; retrying");
                    template.serial = CertSerial::random();
                }
                Err(e) => return Err(e.into()),
            }
        };
        let view = self.view(authority).await?;
        Ok(Issued { record, chain: view.chain })
    }

    // ---- finding -----------------------------------------------------------------------

    /// Certificates by common name and/or serial (either may be empty), oldest first.
    pub async fn find(
        &self,
        common_name: &str,
        serial: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<CertificateRecord>, String, u64), ServiceError> {
        let cn = validate::text("common_name", common_name, 256)?;
        let serial = if serial.trim().is_empty() {
            None
        } else {
            Some(CertSerial::from_hex(serial).map_err(|e| pki_error("serial_number", e))?.to_hex())
        };
        let page = paging::decode("page", page_size, page_token)?;
        let cn = (!cn.is_empty()).then_some(cn);
        let (rows, total) = self
            .store
            .read(move |c| {
                cert_store::find(c, cn.as_deref(), serial.as_deref(), page.offset, page.limit)
                    .map_err(ServiceError::from)
            })
            .await?;
        let next = paging::next_token(page, rows.len(), total);
        Ok((rows, next, total))
    }
}

/// Authority names: 1–64 of letters, digits, space, `.`, `_`, `-`.
fn authority_name(v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    if v.chars().count() > 64 || !v.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'))
    {
        return Err(ServiceError::invalid("name", "must be 1 to 64 letters, digits, spaces, . _ -"));
    }
    Ok(v.to_owned())
}

/// The chain of `a` among `all`: its certificate, then each parent's, then an external chain.
fn chain_in(all: &[AuthorityRecord], a: &AuthorityRecord) -> Vec<Vec<u8>> {
    let mut chain = Vec::new();
    let mut cur = Some(a);
    // The depth bound guards against a cycle in corrupt data.
    for _ in 0..16 {
        let Some(x) = cur else { break };
        if let Some(der) = &x.certificate_der {
            chain.push(der.clone());
        }
        chain.extend(x.external_chain.iter().cloned());
        cur = x.parent_id.as_ref().and_then(|p| all.iter().find(|y| &y.id == p));
    }
    chain
}
