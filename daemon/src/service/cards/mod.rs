//! Card lifecycle service: register a token to an owner, issue keys onto it, disable, enable,
//! revoke and pre-update it. Each state change and its audit record commit in one store
//! transaction; key generation on the token happens between two such transactions, so a
//! daemon stopped mid-issue leaves the card PENDING_ISSUE and IssueCard resumes it.

pub mod lifecycle;

use super::{Principal, ServiceError, paging, validate};
use crate::store::cards::{self as card_store, CardKeyRecord, CardRecord};
use crate::store::{self, Store, audit};
use crate::token::{KeyPairRequest, TokenManager, TokenSlotInfo};
use hsm_config::{CardPolicy, TokenRole};
use lifecycle::{CardAction, transition};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

#[derive(Debug)]
pub struct CardService {
    store: Store,
    tokens: TokenManager,
    policies: Vec<CardPolicy>,
    default_policy: String,
    presence: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
    issuing: Mutex<HashSet<String>>,
}

impl CardService {
    pub fn new(config: &hsm_config::Config, store: Store, tokens: TokenManager) -> Self {
        CardService {
            store,
            tokens,
            policies: config.card_policies(),
            default_policy: config.cards.default_policy.clone(),
            presence: Mutex::new(None),
            issuing: Mutex::new(HashSet::new()),
        }
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
        if !actor.is_card_officer() && !owner.eq_ignore_ascii_case(&actor.username) {
            return Err(ServiceError::PermissionDenied("users may list only their own cards".into()));
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
        if !actor.is_card_officer() && !card.owner.eq_ignore_ascii_case(&actor.username) {
            return Err(ServiceError::NotFound(format!("no card with id {id}")));
        }
        Ok(card)
    }

    /// Binds a present card token to an owner: state ASSIGNED.
    pub async fn register(&self, actor: &Principal, reg: Registration) -> Result<Card, ServiceError> {
        let serial = validate::identifier("token_serial", &reg.token_serial, 32, true)?;
        let owner = validate::owner("owner", &reg.owner)?;
        let label = validate::text("label", &reg.label, 64)?;
        let pac_number = validate::identifier("pac_number", &reg.pac_number, 64, false)?;
        let policy = self.policy("policy", &reg.policy)?.name;
        let token = self
            .tokens
            .list_tokens()
            .await?
            .into_iter()
            .find(|t| t.serial == serial && t.present)
            .ok_or_else(|| ServiceError::NotFound(format!("no token with serial {serial:?} is present")))?;
        if token.role == Some(TokenRole::Daemon) {
            return Err(ServiceError::FailedPrecondition(format!(
                "token {serial:?} is the daemon's own token and cannot be a card"
            )));
        }
        let now = store::now();
        let card = CardRecord {
            id: uuid::Uuid::new_v4().to_string(),
            token_serial: serial,
            owner,
            label: if label.is_empty() { token.label.clone() } else { label },
            pac_number,
            state: CardState::Assigned,
            policy,
            pending_policy: None,
            revoke_reason: None,
            atr: String::new(),
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
    /// policy of a PreUpdate): ASSIGNED / PENDING_UPDATE → PENDING_ISSUE → ACTIVE.
    pub async fn issue(&self, actor: &Principal, id: &str) -> Result<Card, ServiceError> {
        let id = validate::id("id", id)?;
        let _guard = IssueGuard::take(&self.issuing, &id)?;
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

        // Step 2: keys on the token. Ids derive from (card, label, generation), so a resumed
        // issuance first removes what an interrupted one may have left, then regenerates.
        let mut keys = Vec::with_capacity(policy.keys.len());
        for spec in &policy.keys {
            let key_id = derive_key_id(&started.id, &spec.label, started.issue_generation);
            self.tokens.delete_key_pair(&started.token_serial, key_id.clone()).await?;
            let generated = self
                .tokens
                .generate_key_pair(
                    &started.token_serial,
                    KeyPairRequest {
                        label: spec.label.clone(),
                        id: key_id,
                        algorithm: spec.algorithm,
                        persistent: true,
                    },
                )
                .await?;
            keys.push(CardKeyRecord {
                label: generated.label,
                key_id: generated.id,
                algorithm: generated.algorithm.as_str().to_owned(),
                public_key_der: generated.public_key_der,
                created_at: store::now(),
            });
        }

        // Step 3: ACTIVE with the new keys recorded, unless the card changed meanwhile.
        let who = actor.username.clone();
        let generation = started.issue_generation;
        let new_keys = keys.clone();
        let applied = policy.name.clone();
        let card_id = started.id.clone();
        let finished = self
            .store
            .write(move |tx| {
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
                        })
                        .to_string(),
                    },
                )?;
                card.keys = new_keys;
                Ok((card, old_keys))
            })
            .await;
        let (card, old_keys) = match finished {
            Ok(done) => done,
            Err(e) => {
                // The card was revoked (or changed) under us: take back the keys just made.
                for k in &keys {
                    if let Err(del) =
                        self.tokens.delete_key_pair(&started.token_serial, k.key_id.clone()).await
                    {
                        tracing::warn!(card = %started.id, error = %del, "could not remove keys of an abandoned issuance");
                    }
                }
                return Err(e);
            }
        };
        // Step 4: the superseded keys of an earlier issuance leave the card. Best effort: the
        // card is already ACTIVE with its new keys, and a failure here is only logged.
        for old in old_keys.iter().filter(|o| !card.keys.iter().any(|k| k.key_id == o.key_id)) {
            if let Err(e) = self.tokens.delete_key_pair(&card.token_serial, old.key_id.clone()).await {
                tracing::warn!(card = %card.id, key = %old.label, error = %e, "could not delete a superseded key");
            }
        }
        Ok(card)
    }

    pub async fn disable(&self, actor: &Principal, id: &str, comment: &str) -> Result<Card, ServiceError> {
        self.change(actor, id, CardAction::Disable, comment, |_| Ok(())).await
    }

    pub async fn enable(&self, actor: &Principal, id: &str, comment: &str) -> Result<Card, ServiceError> {
        self.change(actor, id, CardAction::Enable, comment, |_| Ok(())).await
    }

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
        self.change(actor, id, CardAction::Revoke, comment, move |card| {
            card.revoke_reason = Some(reason as i32);
            card.pending_policy = None;
            Ok(())
        })
        .await
    }

    /// Marks an ACTIVE card for update to `policy` ("" = its current policy): PENDING_UPDATE.
    pub async fn pre_update(&self, actor: &Principal, id: &str, policy: &str) -> Result<Card, ServiceError> {
        let new_policy =
            if policy.trim().is_empty() { None } else { Some(self.policy("policy", policy)?.name) };
        self.change(actor, id, CardAction::PreUpdate, "", move |card| {
            card.pending_policy = Some(new_policy.clone().unwrap_or_else(|| card.policy.clone()));
            Ok(())
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
        let set: Arc<HashSet<String>> = match self.tokens.list_tokens().await {
            Ok(list) => Arc::new(list.into_iter().filter(|t| t.present).map(|t| t.serial).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list tokens for presence");
                Arc::default()
            }
        };
        if let Ok(mut guard) = self.presence.lock() {
            *guard = Some((Instant::now(), set.clone()));
        }
        set
    }

    /// A state change that touches only the store: check the transition, apply `edit`,
    /// write the card and its audit record in one transaction.
    async fn change<F>(
        &self,
        actor: &Principal,
        id: &str,
        action: CardAction,
        comment: &str,
        edit: F,
    ) -> Result<Card, ServiceError>
    where
        F: FnOnce(&mut CardRecord) -> Result<(), ServiceError> + Send + 'static,
    {
        let id = validate::id("id", id)?;
        let comment = validate::text("comment", comment, 1024)?;
        let who = actor.username.clone();
        self.store
            .write(move |tx| {
                let mut card = card_store::get(tx, &id)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no card with id {id}")))?;
                let from = card.state;
                card.state =
                    transition(from, action).map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
                edit(&mut card)?;
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
            })
            .await
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
