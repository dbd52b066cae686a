//! Card lifecycle service: register a token to an owner, issue keys onto it, disable, enable,
//! revoke and pre-update it. Each state change and its audit record commit in one store
//! transaction; key generation on the token happens between two such transactions, so a
//! daemon stopped mid-issue leaves the card PENDING_ISSUE and IssueCard resumes it.

pub mod lifecycle;

use super::issuance::{IssuanceService, record_issued};
use super::privileges::PrivilegeIndex;
use super::readers::ReaderService;
use super::{Principal, ServiceError, paging, validate};
use crate::pki::{self, RevocationReason};
use crate::reader::piv::{PivSlot, SLOTS as PIV_SLOTS};
use crate::store::cards::{
    self as card_store, CardCertificate, CardCertificateLink, CardKeyRecord, CardRecord,
};
use crate::store::certificates::CertificateRecord;
use crate::store::token_certificates::{self as token_cert_store, CertificateSource, TokenCertificateRecord};
use crate::store::{self, Store, audit};
use crate::token::{CertificateObject, KeyPairRequest, TokenManager, TokenSlotInfo};
use hsm_config::{CardPolicy, TokenRole};
use lifecycle::{CardAction, certificate_transition, transition};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub use crate::store::cards::{CardKeyRecord as CardKey, CardRecord as Card, CardState};

/// How long a snapshot of which tokens are present is reused by list calls: presence is
/// advisory in a listing, and asking the PKCS#11 module on every request would make listing
/// as slow as the module.
const PRESENCE_TTL: Duration = Duration::from_secs(1);

/// Why a card was revoked, numbered as card management servers number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    None = 0,
    Broken = 1,
    Lost = 2,
    Upgrade = 3,
    Expired = 4,
    Withdraw = 5,
    UserRemoved = 6,
    Compromised = 7,
}

impl RevokeReason {
    pub fn from_code(code: i32) -> Option<RevokeReason> {
        use RevokeReason::*;
        [None, Broken, Lost, Upgrade, Expired, Withdraw, UserRemoved, Compromised]
            .into_iter()
            .find(|r| *r as i32 == code)
    }

    pub fn name(self) -> &'static str {
        use RevokeReason::*;
        match self {
            None => "none",
            Broken => "broken",
            Lost => "lost",
            Upgrade => "upgrade",
            Expired => "expired",
            Withdraw => "withdraw",
            UserRemoved => "user_removed",
            Compromised => "compromised",
        }
    }
}

/// A token as ListTokens shows it: what the module reports plus the card bound to it.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub info: TokenSlotInfo,
    pub card_id: Option<String>,
}

/// Input of RegisterCard.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub token_serial: String,
    pub owner: String,
    pub label: String,
    pub pac_number: String,
    pub policy: String,
    /// The card in this PC/SC reader instead of `token_serial`.
    pub reader: String,
}

#[derive(Debug)]
pub struct CardService {
    store: Store,
    tokens: TokenManager,
    /// Signs card certificates and revokes / holds them with the card.
    issuance: Arc<IssuanceService>,
    /// Cards in PC/SC readers: presence, ATR, "the card in reader X".
    readers: Arc<ReaderService>,
    /// `cards.authority`: the authority (by name) of card certificates.
    authority: Option<String>,
    policies: Vec<CardPolicy>,
    default_policy: String,
    presence: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
    issuing: Mutex<HashSet<String>>,
    /// Organization admins read the cards of their organizations' users.
    privileges: Arc<PrivilegeIndex>,
}

impl CardService {
    /// Fails when a card policy names a certificate profile that does not exist.
    pub fn new(
        config: &hsm_config::Config,
        store: Store,
        tokens: TokenManager,
        issuance: Arc<IssuanceService>,
        readers: Arc<ReaderService>,
        privileges: Arc<PrivilegeIndex>,
    ) -> Result<Self, ServiceError> {
        for p in config.card_policies() {
            for k in &p.keys {
                if let Some(profile) = &k.certificate_profile {
                    issuance.profile(profile).map_err(|_| {
                        ServiceError::Internal(format!(
                            "card policy {:?}, key {:?}: certificate_profile {profile:?} is not an issuance profile",
                            p.name, k.label
                        ))
                    })?;
                }
            }
        }
        record_atrs(&readers, store.clone());
        Ok(CardService {
            store,
            tokens,
            issuance,
            readers,
            authority: config.cards.authority.clone(),
            policies: config.card_policies(),
            default_policy: config.cards.default_policy.clone(),
            presence: Mutex::new(None),
            issuing: Mutex::new(HashSet::new()),
            privileges,
        })
    }

    /// One owner's cards. A USER may list only their own.
    pub async fn list(
        &self,
        actor: &Principal,
        owner: &str,
        state: Option<CardState>,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Card>, String, u64), ServiceError> {
        let owner = validate::owner("owner", owner)?;
        let page = paging::decode("page", page_size, page_token)?;
        if !actor.is_card_officer() && !self.privileges.owner_in_scope(actor, &owner) {
            return Err(ServiceError::PermissionDenied(
                "users may list only their own cards, organization admins those of their organizations' users"
                    .into(),
            ));
        }
        let (cards, total) = self
            .store
            .read(move |c| {
                card_store::list_by_owner(c, &owner, state, page.offset, page.limit)
                    .map_err(ServiceError::from)
            })
            .await?;
        let next = paging::next_token(page, cards.len(), total);
        Ok((cards, next, total))
    }

    /// One card. A USER sees only their own (another's answers NOT_FOUND, revealing nothing).
    pub async fn get(&self, actor: &Principal, id: &str) -> Result<Card, ServiceError> {
        let id = validate::id("id", id)?;
        let card = self.load(&id).await?;
        if !actor.is_card_officer() && !self.privileges.owner_in_scope(actor, &card.owner) {
            return Err(ServiceError::NotFound(format!("no card with id {id}")));
        }
        Ok(card)
    }

    /// Binds a present card token to an owner: state ASSIGNED.
    pub async fn register(&self, actor: &Principal, reg: Registration) -> Result<Card, ServiceError> {
        let reader = validate::text("reader", &reg.reader, 128)?;
        let owner = validate::owner("owner", &reg.owner)?;
        let label = validate::text("label", &reg.label, 64)?;
        let pac_number = validate::identifier("pac_number", &reg.pac_number, 64, false)?;
        let policy = self.policy("policy", &reg.policy)?.name;
        // The card is named by its token serial, or as the card in a reader.
        let (serial, token_label, atr) = if reader.is_empty() {
            let serial = validate::identifier("token_serial", &reg.token_serial, 32, true)?;
            let token = self
                .tokens
                .list_tokens()
                .await?
                .into_iter()
                .find(|t| t.serial == serial && t.present)
                .ok_or_else(|| {
                    ServiceError::NotFound(format!("no token with serial {serial:?} is present"))
                })?;
            if token.role == Some(TokenRole::Daemon) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "token {serial:?} is the daemon's own token and cannot be a card"
                )));
            }
            (serial, token.label, String::new())
        } else {
            if !reg.token_serial.trim().is_empty() {
                return Err(ServiceError::invalid(
                    "token_serial",
                    "give either token_serial or reader, not both",
                ));
            }
            let in_reader = self.readers.card_in("reader", &reader)?;
            let atr = pki::to_hex(&in_reader.atr);
            (in_reader.card_serial, format!("PIV card in {reader}"), atr)
        };
        let now = store::now();
        let card = CardRecord {
            id: uuid::Uuid::new_v4().to_string(),
            token_serial: serial,
            owner,
            label: if label.is_empty() { token_label } else { label },
            pac_number,
            state: CardState::Assigned,
            policy,
            pending_policy: None,
            revoke_reason: None,
            atr,
            issue_generation: 0,
            created_at: now,
            updated_at: now,
            keys: Vec::new(),
        };
        let actor = actor.username.clone();
        let rec = card.clone();
        self.store
            .write(move |tx| {
                if let Some(existing) = card_store::live_by_token(tx, &rec.token_serial)? {
                    return Err(ServiceError::AlreadyExists(format!(
                        "token {:?} is already card {} ({})",
                        rec.token_serial, existing.id, existing.state
                    )));
                }
                card_store::insert(tx, &rec)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor,
                        action: "card.register",
                        target_type: "card",
                        target_id: &rec.id,
                        detail: serde_json::json!({
                            "token_serial": rec.token_serial, "owner": rec.owner, "policy": rec.policy
                        })
                        .to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(card)
    }

    /// Generates the card's key pairs on its token according to its policy (or the pending
    /// policy of a PreUpdate), and for each key the policy gives a certificate profile, has
    /// `cards.authority` certify it and writes the certificate onto the card next to the key
    /// (same CKA_ID): ASSIGNED / PENDING_UPDATE → PENDING_ISSUE → ACTIVE.
    ///
    /// Crash safety: the card is PENDING_ISSUE before the token is touched; key ids derive
    /// from (card, label, generation), so a resumed issuance removes what an interrupted one
    /// left; every certificate is recorded (linked to the card as PENDING) before it is
    /// written to the card, and the final transaction revokes (superseded) every linked
    /// certificate that is not the card's new one — an earlier issuance's, or an interrupted
    /// one's — so no certificate is ever valid without the CA knowing which card holds it.
    pub async fn issue(&self, actor: &Principal, id: &str) -> Result<Card, ServiceError> {
        let id = validate::id("id", id)?;
        let _guard = IssueGuard::take(&self.issuing, &id)?;
        // Before anything changes: a policy with certificates needs its authority.
        let current = self.load(&id).await?;
        let wanted = self.policy("policy", current.pending_policy.as_deref().unwrap_or(&current.policy))?;
        self.backend(&current).check(&wanted)?;
        self.card_authority(&wanted).await?;

        // Step 1: PENDING_ISSUE, durably, before touching the token.
        let who = actor.username.clone();
        let card_id = id.clone();
        let started = self
            .store
            .write(move |tx| {
                let mut card = card_store::get(tx, &card_id)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no card with id {card_id}")))?;
                let from = card.state;
                card.state = transition(from, CardAction::BeginIssue)
                    .map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
                if from != CardState::PendingIssue {
                    card.issue_generation += 1;
                }
                card.updated_at = store::now();
                card_store::update(tx, &card)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "card.issue_start",
                        target_type: "card",
                        target_id: &card.id,
                        detail:
                            serde_json::json!({ "from": from.as_str(), "generation": card.issue_generation })
                                .to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(card)
            })
            .await?;
        let policy_name = started.pending_policy.clone().unwrap_or_else(|| started.policy.clone());
        let policy = self.policy("policy", &policy_name)?;
        let authority = self.card_authority(&policy).await?;
        let serial = started.token_serial.clone();

        let backend = self.backend(&started);
        backend.check(&policy)?;

        // Step 2: keys on the card. Key ids are stable for a given issuance (derived from card,
        // label and generation on a token; the key slot on a PIV card), so a resumed issuance
        // first removes what an interrupted one may have left, then regenerates.
        let mut keys = Vec::with_capacity(policy.keys.len());
        let mut signed: Vec<(String, CertificateRecord, pki::ParsedCertificate)> = Vec::new();
        for (index, spec) in policy.keys.iter().enumerate() {
            let generated = self.make_key(&backend, &started, index, spec).await?;
            // Step 2a: the key's certificate, signed in the HSM (verified) but not yet recorded.
            if let (Some(profile), Some(authority)) = (&spec.certificate_profile, &authority) {
                let params = HashMap::from([("commonName".to_owned(), started.owner.clone())]);
                let rec = self
                    .issuance
                    .sign_for_key(authority, profile, &params, generated.public_key_der.clone())
                    .await?;
                let parsed = pki::parse_certificate(&rec.certificate_der)
                    .map_err(|e| ServiceError::Internal(format!("re-reading a card certificate: {e}")))?;
                signed.push((spec.label.clone(), rec, parsed));
            }
            keys.push(CardKeyRecord {
                label: spec.label.clone(),
                key_id: generated.id,
                algorithm: spec.algorithm.as_str().to_owned(),
                public_key_der: generated.public_key_der,
                created_at: store::now(),
                certificate: None,
            });
        }

        // Step 2b: record the certificates (linked to the card as PENDING) before any of them
        // leaves the daemon — unless the card changed meanwhile (revoked).
        if !signed.is_empty() {
            let who = actor.username.clone();
            let card_id = started.id.clone();
            let generation = started.issue_generation;
            let records: Vec<(CertificateRecord, CardCertificateLink)> = signed
                .iter()
                .map(|(label, rec, parsed)| {
                    let link = CardCertificateLink {
                        label: label.clone(),
                        certificate_id: rec.id.clone(),
                        fingerprint: parsed.sha1_fingerprint.clone(),
                    };
                    (rec.clone(), link)
                })
                .collect();
            self.store
                .write(move |tx| {
                    let card = card_store::get(tx, &card_id)?
                        .ok_or_else(|| ServiceError::NotFound(format!("no card with id {card_id}")))?;
                    if card.state != CardState::PendingIssue || card.issue_generation != generation {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "card {card_id} changed while its keys were generated"
                        )));
                    }
                    for (rec, _) in &records {
                        record_issued(tx, &who, rec, "card")?;
                    }
                    let links: Vec<CardCertificateLink> = records.into_iter().map(|(_, l)| l).collect();
                    card_store::add_pending_certificates(tx, &card_id, &links, store::now())?;
                    Ok(())
                })
                .await?;
        }

        // Step 2c: the certificates onto the card, each next to its key (same CKA_ID).
        for (label, _, parsed) in &signed {
            let key = keys.iter().find(|k| &k.label == label).ok_or_else(|| {
                ServiceError::Internal(format!("certificate for key {label:?} that was not generated"))
            })?;
            self.write_certificate(&backend, &serial, &key.key_id, label, parsed).await?;
        }
        for key in &mut keys {
            if let Some((_, rec, parsed)) = signed.iter().find(|(l, _, _)| *l == key.label) {
                key.certificate = Some(CardCertificate {
                    certificate_id: rec.id.clone(),
                    fingerprint: parsed.sha1_fingerprint.clone(),
                    serial: rec.serial.clone(),
                    status: rec.status.as_str().to_owned(),
                    not_after: rec.not_after,
                    certificate_der: rec.certificate_der.clone(),
                });
            }
        }

        // Step 3: ACTIVE with the new keys and certificates, unless the card changed
        // meanwhile; every other certificate linked to the card is revoked (superseded) in the
        // same transaction.
        let card_id = started.id.clone();
        let previous: Vec<CardCertificateLink> = self
            .store
            .read(move |c| card_store::certificate_links(c, &card_id).map_err(ServiceError::from))
            .await?
            .into_iter()
            .map(|(link, _)| link)
            .filter(|l| !signed.iter().any(|(_, rec, _)| rec.id == l.certificate_id))
            .collect();
        let who = actor.username.clone();
        let generation = started.issue_generation;
        let new_keys = keys.clone();
        let applied = policy.name.clone();
        let card_id = started.id.clone();
        let token_serial = serial.clone();
        let superseded: Vec<String> = previous.iter().map(|l| l.certificate_id.clone()).collect();
        let old_fingerprints: Vec<String> = previous.iter().map(|l| l.fingerprint.clone()).collect();
        let finished = self
            .issuance
            .transition_with(actor, superseded, RevocationReason::Superseded, move |tx| {
                let mut card = card_store::get(tx, &card_id)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no card with id {card_id}")))?;
                if card.issue_generation != generation {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "card {} changed while its keys were generated",
                        card.id
                    )));
                }
                let old_keys = std::mem::take(&mut card.keys);
                card.state = transition(card.state, CardAction::CompleteIssue)
                    .map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
                card.policy = applied.clone();
                card.pending_policy = None;
                card.updated_at = store::now();
                card_store::update(tx, &card)?;
                card_store::replace_keys(tx, &card.id, &new_keys)?;
                let current: Vec<String> = new_keys
                    .iter()
                    .filter_map(|k| k.certificate.as_ref().map(|c| c.certificate_id.clone()))
                    .collect();
                card_store::set_current_certificates(tx, &card.id, &current)?;
                for fingerprint in &old_fingerprints {
                    token_cert_store::delete(tx, &token_serial, fingerprint)?;
                }
                for k in &new_keys {
                    if let Some(c) = &k.certificate {
                        token_cert_store::put(
                            tx,
                            &TokenCertificateRecord {
                                token_serial: token_serial.clone(),
                                fingerprint: c.fingerprint.clone(),
                                object_id: k.key_id.clone(),
                                source: CertificateSource::Card,
                                // Its lifecycle is the card's: the certificate store must not
                                // delete it behind the card's back.
                                protected: true,
                                system_use_only: false,
                                created_at: store::now(),
                            },
                        )?;
                    }
                }
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "card.issue",
                        target_type: "card",
                        target_id: &card.id,
                        detail: serde_json::json!({
                            "policy": applied,
                            "generation": generation,
                            "keys": new_keys.iter().map(|k| k.label.as_str()).collect::<Vec<_>>(),
                            "certificates": current,
                        })
                        .to_string(),
                    },
                )?;
                card.keys = new_keys;
                Ok((card, old_keys))
            })
            .await;
        let (card, old_keys) = match finished {
            Ok((_, done)) => done,
            Err(e) => {
                // The card was revoked (or changed) under us: take back what was just made.
                for k in &keys {
                    if let Err(del) = self.remove_key(&backend, &serial, &k.key_id).await {
                        tracing::warn!(card = %started.id, error = %del, "could not remove keys of an abandoned issuance");
                    }
                }
                return Err(e);
            }
        };
        // Step 4: the superseded keys (and their certificate objects) of an earlier issuance
        // leave the card. Best effort: the card is already ACTIVE with its new keys, and the
        // old certificates are revoked; a failure here is only logged.
        for old in old_keys.iter().filter(|o| !card.keys.iter().any(|k| k.key_id == o.key_id)) {
            if let Err(e) = self.remove_key(&backend, &card.token_serial, &old.key_id).await {
                tracing::warn!(card = %card.id, key = %old.label, error = %e, "could not delete a superseded key");
            }
        }
        Ok(card)
    }

    /// Where this card's keys live: the PIV card in a reader when one holds it (provisioned
    /// with APDUs: PKCS#11 cannot generate keys on PIV cards), else its PKCS#11 token.
    fn backend(&self, card: &Card) -> Backend {
        match self.readers.reader_of(&card.token_serial) {
            Some(reader) => Backend::Piv { reader },
            None => Backend::Token,
        }
    }

    /// A new key pair for the policy's `index`-th key, after removing what an interrupted
    /// issuance may have left in its place.
    async fn make_key(
        &self,
        backend: &Backend,
        card: &Card,
        index: usize,
        spec: &hsm_config::CardKeySpec,
    ) -> Result<crate::token::GeneratedKeyPair, ServiceError> {
        match backend {
            Backend::Token => {
                let key_id = derive_key_id(&card.id, &spec.label, card.issue_generation);
                self.remove_key(backend, &card.token_serial, &key_id).await?;
                Ok(self
                    .tokens
                    .generate_key_pair(
                        &card.token_serial,
                        KeyPairRequest {
                            label: spec.label.clone(),
                            id: key_id,
                            algorithm: spec.algorithm,
                            persistent: true,
                        },
                    )
                    .await?)
            }
            Backend::Piv { reader } => {
                let slot = PIV_SLOTS
                    .get(index)
                    .copied()
                    .ok_or_else(|| ServiceError::Internal(format!("no PIV key slot for key {index}")))?;
                self.readers.piv_put_certificate(reader, slot, None).await?;
                let public_key_der = self.readers.piv_generate(reader, slot).await?;
                Ok(crate::token::GeneratedKeyPair {
                    id: vec![slot.pkcs11_id],
                    label: spec.label.clone(),
                    algorithm: spec.algorithm,
                    public_key_der,
                })
            }
        }
    }

    /// Puts a certificate on the card next to its key (same CKA_ID / key slot).
    async fn write_certificate(
        &self,
        backend: &Backend,
        serial: &str,
        key_id: &[u8],
        label: &str,
        parsed: &pki::ParsedCertificate,
    ) -> Result<(), ServiceError> {
        match backend {
            Backend::Token => Ok(self
                .tokens
                .create_certificate(
                    serial,
                    CertificateObject {
                        id: key_id.to_vec(),
                        label: label.to_owned(),
                        value: parsed.der.clone(),
                        subject: parsed.subject_der.clone(),
                        issuer: parsed.issuer_der.clone(),
                        serial_number: parsed.serial_der.clone(),
                    },
                )
                .await?),
            Backend::Piv { reader } => {
                self.readers.piv_put_certificate(reader, piv_slot(key_id)?, Some(parsed.der.clone())).await
            }
        }
    }

    /// Removes a key and its certificate from the card (on a PIV card the key stays in its
    /// slot until the slot is generated again; its certificate goes).
    async fn remove_key(&self, backend: &Backend, serial: &str, key_id: &[u8]) -> Result<(), ServiceError> {
        self.remove_certificate(backend, serial, key_id).await?;
        if let Backend::Token = backend {
            self.tokens.delete_key_pair(serial, key_id.to_vec()).await?;
        }
        Ok(())
    }

    /// Removes the certificate of a key from the card.
    async fn remove_certificate(
        &self,
        backend: &Backend,
        serial: &str,
        key_id: &[u8],
    ) -> Result<(), ServiceError> {
        match backend {
            Backend::Token => {
                self.tokens.delete_certificates(serial, key_id.to_vec()).await?;
                Ok(())
            }
            Backend::Piv { reader } => {
                self.readers.piv_put_certificate(reader, piv_slot(key_id)?, None).await
            }
        }
    }

    /// The authority that certifies the policy's keys: None when no key asks for a
    /// certificate; FAILED_PRECONDITION when one does and `cards.authority` is unset.
    async fn card_authority(&self, policy: &CardPolicy) -> Result<Option<String>, ServiceError> {
        if !policy.keys.iter().any(|k| k.certificate_profile.is_some()) {
            return Ok(None);
        }
        match &self.authority {
            Some(name) => {
                self.issuance.check_card_authority(name).await?;
                Ok(Some(name.clone()))
            }
            None => Err(ServiceError::FailedPrecondition(format!(
                "card policy {:?} issues certificates, but no authority is configured for cards (set cards.authority)",
                policy.name
            ))),
        }
    }

    /// ACTIVE → DISABLED; the card's valid certificates go on hold (certificateHold).
    pub async fn disable(&self, actor: &Principal, id: &str, comment: &str) -> Result<Card, ServiceError> {
        self.change(actor, id, CardAction::Disable, None, comment, |_| Ok(())).await
    }

    /// DISABLED → ACTIVE; the hold on the card's certificates is lifted (removeFromCRL).
    pub async fn enable(&self, actor: &Principal, id: &str, comment: &str) -> Result<Card, ServiceError> {
        self.change(actor, id, CardAction::Enable, None, comment, |_| Ok(())).await
    }

    /// Any state but REVOKED → REVOKED; the card's certificates are revoked with the RFC 5280
    /// reason mapped from `reason_code` ([`lifecycle::certificate_reason`]).
    pub async fn revoke(
        &self,
        actor: &Principal,
        id: &str,
        reason_code: i32,
        comment: &str,
    ) -> Result<Card, ServiceError> {
        let reason = RevokeReason::from_code(reason_code).ok_or_else(|| {
            ServiceError::invalid("reason", format!("{reason_code} is not a revoke reason (0 to 7)"))
        })?;
        self.change(actor, id, CardAction::Revoke, Some(reason), comment, move |card| {
            card.revoke_reason = Some(reason as i32);
            card.pending_policy = None;
            Ok(())
        })
        .await
    }

    /// Marks an ACTIVE card for update to `policy` ("" = its current policy): PENDING_UPDATE.
    /// The certificates the new policy no longer gives (a key it drops, or a key whose
    /// profile it changes or removes) are revoked (superseded) and deleted from the card;
    /// the rest stay until the card is issued again.
    pub async fn pre_update(&self, actor: &Principal, id: &str, policy: &str) -> Result<Card, ServiceError> {
        let new_policy =
            if policy.trim().is_empty() { None } else { Some(self.policy("policy", policy)?.name) };
        let id = validate::id("id", id)?;
        let card = self.load(&id).await?;
        transition(card.state, CardAction::PreUpdate)
            .map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
        let target = self.policy("policy", new_policy.as_deref().unwrap_or(&card.policy))?;
        // Keys whose certificate the target policy does not allow.
        let dropped: Vec<(CardKeyRecord, CardCertificate)> = card
            .keys
            .iter()
            .filter_map(|k| {
                let cert = k.certificate.clone()?;
                let current_profile = self.policy_key_profile(&card.policy, &k.label);
                let allowed = target.keys.iter().any(|t| {
                    t.label == k.label
                        && t.certificate_profile.is_some()
                        && t.certificate_profile == current_profile
                });
                (!allowed).then(|| (k.clone(), cert))
            })
            .collect();
        let ids: Vec<String> = dropped.iter().map(|(_, c)| c.certificate_id.clone()).collect();
        let serial = card.token_serial.clone();
        let unlinked = dropped.clone();
        let updated = self
            .change_with(
                actor,
                &id,
                CardAction::PreUpdate,
                "",
                Some((ids, RevocationReason::Superseded)),
                move |tx, card| {
                    card.pending_policy = Some(new_policy.clone().unwrap_or_else(|| card.policy.clone()));
                    for (_, cert) in &unlinked {
                        card_store::unlink_certificate(tx, &card.id, &cert.certificate_id)?;
                        token_cert_store::delete(tx, &card.token_serial, &cert.fingerprint)?;
                    }
                    Ok(())
                },
            )
            .await?;
        // After the commit: the revoked certificates leave the card. Best effort (they are
        // revoked whatever happens here); the keys stay until the card is issued again.
        let backend = self.backend(&card);
        for (key, _) in &dropped {
            if let Err(e) = self.remove_certificate(&backend, &serial, &key.key_id).await {
                tracing::warn!(card = %updated.id, key = %key.label, error = %e, "could not delete a certificate the new policy drops");
            }
        }
        Ok(updated)
    }

    /// The certificate profile `policy` gives key `label` (None for an unknown policy or key).
    fn policy_key_profile(&self, policy: &str, label: &str) -> Option<String> {
        self.policies
            .iter()
            .find(|p| p.name == policy)
            .and_then(|p| p.keys.iter().find(|k| k.label == label))
            .and_then(|k| k.certificate_profile.clone())
    }

    /// Changes the PIN of a card in a reader. Its holder or an officer may.
    pub async fn change_pin(
        &self,
        actor: &Principal,
        id: &str,
        old_pin: Zeroizing<String>,
        new_pin: Zeroizing<String>,
    ) -> Result<(), ServiceError> {
        if old_pin.is_empty() {
            return Err(ServiceError::invalid("old_pin", "is required"));
        }
        validate_pin("new_pin", &new_pin)?;
        let (card, reader) = self.card_in_reader(actor, id).await?;
        self.readers.piv_change_pin(&reader, old_pin, new_pin).await?;
        self.audit_pin(actor, &card, "card.pin_change").await
    }

    /// Sets a new PIN with the PUK (unblocking a blocked PIN) on a card in a reader.
    pub async fn unblock_pin(
        &self,
        actor: &Principal,
        id: &str,
        puk: Zeroizing<String>,
        new_pin: Zeroizing<String>,
    ) -> Result<(), ServiceError> {
        if puk.is_empty() {
            return Err(ServiceError::invalid("puk", "is required"));
        }
        validate_pin("new_pin", &new_pin)?;
        let (card, reader) = self.card_in_reader(actor, id).await?;
        self.readers.piv_unblock_pin(&reader, puk, new_pin).await?;
        self.audit_pin(actor, &card, "card.pin_unblock").await
    }

    /// The card IssueCard means: `id`, or the live card bound to the token in `reader` (both
    /// given: they must be the same card).
    pub async fn resolve(&self, id: &str, reader: &str) -> Result<String, ServiceError> {
        let reader = validate::text("reader", reader, 128)?;
        if reader.is_empty() {
            return Ok(id.to_owned());
        }
        let serial = self.readers.card_in("reader", &reader)?.card_serial;
        let bound = self
            .store
            .read(move |c| card_store::live_by_token(c, &serial).map_err(ServiceError::from))
            .await?
            .ok_or_else(|| {
                ServiceError::FailedPrecondition(format!("the card in reader {reader:?} is not registered"))
            })?;
        if !id.trim().is_empty() && id.trim() != bound.id {
            return Err(ServiceError::invalid(
                "id",
                format!("the card in reader {reader:?} is card {}, not {}", bound.id, id.trim()),
            ));
        }
        Ok(bound.id)
    }

    /// The card (its holder's or, for an officer, anyone's) and the reader holding it.
    async fn card_in_reader(&self, actor: &Principal, id: &str) -> Result<(Card, String), ServiceError> {
        let card = self.get(actor, id).await?;
        if card.state == CardState::Revoked {
            return Err(ServiceError::FailedPrecondition(format!("card {} is revoked", card.id)));
        }
        let reader = self.readers.reader_of(&card.token_serial).ok_or_else(|| {
            ServiceError::FailedPrecondition(format!(
                "card {} is not in a reader; put it in one to change its PIN",
                card.id
            ))
        })?;
        Ok((card, reader))
    }

    /// The audit record of a PIN operation (never the PIN).
    async fn audit_pin(
        &self,
        actor: &Principal,
        card: &Card,
        action: &'static str,
    ) -> Result<(), ServiceError> {
        let (who, card_id) = (actor.username.clone(), card.id.clone());
        self.store
            .write(move |tx| {
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action,
                        target_type: "card",
                        target_id: &card_id,
                        detail: String::new(),
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// Every slot and token the daemon sees, with the card bound to each.
    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, ServiceError> {
        let infos = self.tokens.list_tokens().await?;
        let bindings =
            self.store.read(|c| card_store::live_token_bindings(c).map_err(ServiceError::from)).await?;
        Ok(infos
            .into_iter()
            .map(|info| {
                let card_id =
                    bindings.iter().find(|(serial, _)| *serial == info.serial).map(|(_, id)| id.clone());
                TokenView { info, card_id }
            })
            .collect())
    }

    /// Serials of the tokens present now, from a snapshot at most [`PRESENCE_TTL`] old.
    pub async fn present_tokens(&self) -> Arc<HashSet<String>> {
        if let Ok(guard) = self.presence.lock()
            && let Some((at, set)) = guard.as_ref()
            && at.elapsed() < PRESENCE_TTL
        {
            return set.clone();
        }
        let mut set: HashSet<String> = match self.tokens.list_tokens().await {
            Ok(list) => list.into_iter().filter(|t| t.present).map(|t| t.serial).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list tokens for presence");
                HashSet::new()
            }
        };
        // A card in a reader is present even when the PKCS#11 module does not show it.
        set.extend(self.readers.card_serials());
        let set = Arc::new(set);
        if let Ok(mut guard) = self.presence.lock() {
            *guard = Some((Instant::now(), set.clone()));
        }
        set
    }

    /// A state change: check the transition, apply `edit`, write the card and its audit
    /// record — and move the card's certificates as the action implies (hold, release,
    /// revoke; [`lifecycle::certificate_transition`]) — in one transaction.
    async fn change<F>(
        &self,
        actor: &Principal,
        id: &str,
        action: CardAction,
        reason: Option<RevokeReason>,
        comment: &str,
        edit: F,
    ) -> Result<Card, ServiceError>
    where
        F: FnOnce(&mut CardRecord) -> Result<(), ServiceError> + Send + 'static,
    {
        let id = validate::id("id", id)?;
        // Checked before any CRL is signed; checked again inside the transaction.
        let card = self.load(&id).await?;
        transition(card.state, action).map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
        let certificates = certificate_transition(action, reason).map(|rfc| {
            let ids: Vec<String> = card
                .keys
                .iter()
                .filter_map(|k| k.certificate.as_ref().map(|c| c.certificate_id.clone()))
                .collect();
            (ids, rfc)
        });
        self.change_with(actor, &id, action, comment, certificates, move |_, card| edit(card)).await
    }

    /// The transaction of [`change`](Self::change): `certificates` (ids and reason) move in
    /// the same transaction as the card, through the issuance service (which signs the CRL).
    async fn change_with<F>(
        &self,
        actor: &Principal,
        id: &str,
        action: CardAction,
        comment: &str,
        certificates: Option<(Vec<String>, RevocationReason)>,
        edit: F,
    ) -> Result<Card, ServiceError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>, &mut CardRecord) -> Result<(), ServiceError> + Send + 'static,
    {
        let id = validate::id("id", id)?;
        let comment = validate::text("comment", comment, 1024)?;
        let who = actor.username.clone();
        let in_tx = move |tx: &rusqlite::Transaction<'_>| {
            let mut card = card_store::get(tx, &id)?
                .ok_or_else(|| ServiceError::NotFound(format!("no card with id {id}")))?;
            let from = card.state;
            card.state =
                transition(from, action).map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
            edit(tx, &mut card)?;
            card.updated_at = store::now();
            card_store::update(tx, &card)?;
            let mut detail = serde_json::json!({ "from": from.as_str(), "to": card.state.as_str() });
            if !comment.is_empty() {
                detail["comment"] = comment.into();
            }
            if let Some(reason) = card.revoke_reason.and_then(RevokeReason::from_code) {
                detail["reason"] = reason.name().into();
            }
            if let Some(p) = &card.pending_policy {
                detail["pending_policy"] = p.clone().into();
            }
            audit::append(
                tx,
                audit::AuditEntry {
                    actor: &who,
                    action: audit_action(action),
                    target_type: "card",
                    target_id: &card.id,
                    detail: detail.to_string(),
                },
            )?;
            Ok(card)
        };
        match certificates {
            Some((ids, reason)) if !ids.is_empty() => {
                let (_, card) = self.issuance.transition_with(actor, ids, reason, in_tx).await?;
                // Reload: the certificate states in the card view changed in the same commit.
                self.load(&card.id).await
            }
            _ => self.store.write(in_tx).await,
        }
    }

    async fn load(&self, id: &str) -> Result<Card, ServiceError> {
        let key = id.to_owned();
        self.store
            .read(move |c| card_store::get(c, &key).map_err(ServiceError::from))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no card with id {id}")))
    }

    /// A policy by name ("" = the default), or INVALID_ARGUMENT naming `field`.
    fn policy(&self, field: &str, name: &str) -> Result<CardPolicy, ServiceError> {
        let name = if name.trim().is_empty() { self.default_policy.as_str() } else { name.trim() };
        self.policies.iter().find(|p| p.name == name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.policies.iter().map(|p| p.name.as_str()).collect();
            ServiceError::invalid(
                field,
                format!("unknown card policy {name:?} (known: {})", known.join(", ")),
            )
        })
    }
}

/// A PIV PIN: 6 to 8 digits.
fn validate_pin(field: &str, pin: &str) -> Result<(), ServiceError> {
    if (6..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ServiceError::invalid(field, "must be 6 to 8 digits"))
    }
}

/// Where a card's keys and certificates live.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    /// A PKCS#11 token the daemon's module sees: key ids derive from (card, label, generation).
    Token,
    /// A PIV card in this reader, provisioned with APDUs: one key slot per policy key.
    Piv { reader: String },
}

impl Backend {
    /// What a PIV card can carry: up to four keys (slots 9A, 9C, 9D, 9E), EC P-256.
    fn check(&self, policy: &CardPolicy) -> Result<(), ServiceError> {
        if let Backend::Piv { reader } = self {
            if policy.keys.len() > PIV_SLOTS.len() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "card policy {:?} has {} keys; the PIV card in {reader:?} has {} key slots",
                    policy.name,
                    policy.keys.len(),
                    PIV_SLOTS.len()
                )));
            }
            if let Some(k) = policy.keys.iter().find(|k| k.algorithm != hsm_config::KeyAlgorithm::EcP256) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "card policy {:?} asks for a {} key ({}); PIV cards are provisioned with EC:P-256 keys",
                    policy.name,
                    k.algorithm.as_str(),
                    k.label
                )));
            }
        }
        Ok(())
    }
}

/// The PIV key slot of a card key (its CKA_ID as OpenSC shows it).
fn piv_slot(key_id: &[u8]) -> Result<PivSlot, ServiceError> {
    PivSlot::by_pkcs11_id(key_id)
        .ok_or_else(|| ServiceError::Internal(format!("key id {key_id:02x?} is not a PIV key slot")))
}

/// Keeps the ATR of live cards up to date: whenever a card whose token serial the reader
/// could read is inserted, the live card bound to that token gets its ATR (an observation, not
/// a state change: no audit record). Runs until the readers stop (never, in a daemon).
fn record_atrs(readers: &ReaderService, store: Store) {
    let Ok(mut events) = readers.watch() else {
        return; // readers disabled
    };
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.recv().await {
            if event.kind != crate::reader::ReaderEventKind::CardInserted || event.card_serial.is_empty() {
                continue;
            }
            let atr = pki::to_hex(&event.atr);
            let serial = event.card_serial.clone();
            let result = store
                .write(move |tx| {
                    card_store::record_atr(tx, &serial, &atr, store::now()).map_err(ServiceError::from)
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, token = %event.card_serial, "could not record a card's ATR");
            }
        }
    });
}

fn audit_action(action: CardAction) -> &'static str {
    match action {
        CardAction::BeginIssue => "card.issue_start",
        CardAction::CompleteIssue => "card.issue",
        CardAction::Disable => "card.disable",
        CardAction::Enable => "card.enable",
        CardAction::Revoke => "card.revoke",
        CardAction::PreUpdate => "card.preupdate",
    }
}

/// CKA_ID of a card key: 16 bytes of SHA-256 over (card id, key label, issue generation).
pub fn derive_key_id(card_id: &str, label: &str, generation: i64) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"cardhsm card key\0");
    h.update(card_id.as_bytes());
    h.update([0]);
    h.update(label.as_bytes());
    h.update([0]);
    h.update(generation.to_be_bytes());
    h.finalize()[..16].to_vec()
}

/// Marks one card as being issued; a second IssueCard on it meanwhile is refused.
struct IssueGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl<'a> IssueGuard<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, id: &str) -> Result<Self, ServiceError> {
        let mut s = set.lock().map_err(|_| ServiceError::Internal("issuance lock poisoned".into()))?;
        if !s.insert(id.to_owned()) {
            return Err(ServiceError::FailedPrecondition(format!(
                "issuance of card {id} is already in progress"
            )));
        }
        Ok(IssueGuard { set, id: id.to_owned() })
    }
}

impl Drop for IssueGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let a = derive_key_id("c1", "auth", 1);
        assert_eq!(a.len(), 16);
        assert_eq!(a, derive_key_id("c1", "auth", 1));
        assert_ne!(a, derive_key_id("c1", "auth", 2));
        assert_ne!(a, derive_key_id("c1", "sign", 1));
        assert_ne!(a, derive_key_id("c2", "auth", 1));
    }

    #[test]
    fn revoke_reason_codes_are_exactly_0_to_7() {
        for code in 0..=7 {
            assert_eq!(RevokeReason::from_code(code).map(|r| r as i32), Some(code));
        }
        assert_eq!(RevokeReason::from_code(8), None);
        assert_eq!(RevokeReason::from_code(-1), None);
        assert_eq!(RevokeReason::Compromised.name(), "compromised");
    }
}
