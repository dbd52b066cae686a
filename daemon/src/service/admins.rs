//! Administrators of the platform, in the domain layer between the gRPC handlers
//! (`grpc/admins`) and the store (`store/admins`): validation naming the field, unique
//! usernames and certificates, the rules (nobody disables or deletes themselves, never the last
//! enabled super administrator), audit, and the in-memory index of administrators' client
//! certificates that the auth layer consults on every call without a bearer token.
//!
//! The index is changed in the same code path as every change of an administrator, after the
//! change committed and before the answer goes out, with changes serialized: a disabled or
//! deleted administrator is refused on their very next call.

use super::{OrgScope, Principal, Role, ServiceError, paging, validate};
use crate::pki;
pub use crate::store::admins::AdminRole;
use crate::store::admins::{self as store_admins, AdminRecord};
use crate::store::{self, Store, StoreError, audit, certificates};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest name and surname, in characters.
pub const MAX_NAME_LEN: usize = 100;
/// Longest search text of ListAdmins.
pub const MAX_SEARCH_LEN: usize = 256;
/// Most uuids in one bulk request.
pub const MAX_BULK: usize = 1000;

/// An administrator as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminView {
    pub id: String,
    pub username: String,
    pub name: String,
    pub surname: String,
    pub email: String,
    pub role: AdminRole,
    pub enabled: bool,
    pub description: String,
    pub certificate_der: Vec<u8>,
    pub certificate_fingerprint: String,
    pub certificate_subject: String,
    pub certificate_issuer: String,
    pub certificate_serial: String,
    pub certificate_not_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<AdminRecord> for AdminView {
    fn from(a: AdminRecord) -> Self {
        AdminView {
            id: a.id,
            username: a.username,
            name: a.name,
            surname: a.surname,
            email: a.email,
            role: a.role,
            enabled: a.enabled,
            description: a.description,
            certificate_der: a.certificate_der,
            certificate_fingerprint: a.certificate_fingerprint,
            certificate_subject: a.certificate_subject,
            certificate_issuer: a.certificate_issuer,
            certificate_serial: a.certificate_serial,
            certificate_not_after: a.certificate_not_after,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// What create and edit take. `role: Err(v)` carries a wire value that is no role (refused
/// naming `role`); `None` is "not given". `enabled` is ignored by edit.
#[derive(Debug, Clone, Default)]
pub struct AdminInput {
    pub username: String,
    pub name: String,
    pub surname: String,
    pub email: String,
    pub role: Option<Result<AdminRole, i32>>,
    pub enabled: bool,
    pub description: String,
    /// Base64 DER ("" = not given).
    pub certificate: String,
    /// Uuid of an issued certificate ("" = not given).
    pub certificate_uuid: String,
}

/// One page of administrators.
#[derive(Debug, Clone)]
pub struct AdminPage {
    pub admins: Vec<AdminView>,
    pub next_page_token: String,
    pub total: u64,
}

/// What a bulk call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOutcome {
    pub processed: Vec<String>,
    pub not_found: Vec<String>,
}

/// The bulk operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Enable,
    Disable,
    Delete,
}

impl BulkAction {
    fn audit_action(self) -> &'static str {
        match self {
            BulkAction::Enable => "admin.enable",
            BulkAction::Disable => "admin.disable",
            BulkAction::Delete => "admin.delete",
        }
    }
}

/// What the per-call check needs of an administrator with a certificate.
#[derive(Debug, Clone)]
struct Indexed {
    id: String,
    username: String,
    role: AdminRole,
    enabled: bool,
}

impl Indexed {
    fn of(a: &AdminRecord) -> Self {
        Indexed { id: a.id.clone(), username: a.username.clone(), role: a.role, enabled: a.enabled }
    }
}

/// The certificate part of a validated input.
#[derive(Debug, Clone)]
struct CertificateSource {
    der: Vec<u8>,
    fingerprint: String,
    subject: String,
    issuer: String,
    serial: String,
    not_after: i64,
    certificate_id: Option<String>,
}

/// The validated, trimmed form of an [`AdminInput`].
#[derive(Debug, Clone)]
struct Checked {
    username: String,
    name: String,
    surname: String,
    email: String,
    role: AdminRole,
    description: String,
}

/// How an administrator's record changes the index: `(old fingerprint, new entry)`.
type IndexChange = (Option<String>, Option<(String, Indexed)>);

#[derive(Debug)]
pub struct AdminService {
    store: Store,
    max_upload_bytes: usize,
    /// Certificate fingerprint (SHA-256, lower-case hex) → administrator.
    index: RwLock<HashMap<String, Indexed>>,
    /// Changes run one at a time, so the index is updated in commit order.
    changes: tokio::sync::Mutex<()>,
}

/// `^\w{5,30}$` with ASCII word characters.
fn check_username(value: &str) -> Result<String, ServiceError> {
    let v = value.trim();
    let n = v.chars().count();
    if !(5..=30).contains(&n) || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ServiceError::invalid("username", "must be 5 to 30 of A-Z a-z 0-9 _"));
    }
    Ok(v.to_owned())
}

fn check_required_text(field: &str, value: &str, max: usize) -> Result<String, ServiceError> {
    let v = validate::text(field, value, max)?;
    if v.is_empty() {
        return Err(ServiceError::invalid(field, "is required"));
    }
    Ok(v)
}

/// A well-formed address of 5 to 254 characters: `local@domain.tld`, no spaces or controls.
fn check_email(value: &str) -> Result<String, ServiceError> {
    let v = value.trim();
    if v.len() < 5 || v.len() > 254 {
        return Err(ServiceError::invalid("email", "must be 5 to 254 characters"));
    }
    let well_formed = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                })
                && !local.starts_with('.')
                && !local.ends_with('.')
                && !local.contains("..")
                && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
        }
        None => false,
    };
    if !well_formed {
        return Err(ServiceError::invalid("email", format!("{v:?} is not an e-mail address")));
    }
    Ok(v.to_owned())
}

fn check_role(role: Option<Result<AdminRole, i32>>) -> Result<AdminRole, ServiceError> {
    match role {
        Some(Ok(r)) => Ok(r),
        None => Err(ServiceError::invalid("role", "is required (administrator or superAdministrator)")),
        Some(Err(v)) => Err(ServiceError::invalid("role", format!("{v} is not an administrator role"))),
    }
}

fn check(input: &AdminInput) -> Result<Checked, ServiceError> {
    Ok(Checked {
        username: check_username(&input.username)?,
        name: check_required_text("name", &input.name, MAX_NAME_LEN)?,
        surname: check_required_text("surname", &input.surname, MAX_NAME_LEN)?,
        email: check_email(&input.email)?,
        role: check_role(input.role)?,
        description: validate::text("description", &input.description, MAX_DESCRIPTION_LEN)?,
    })
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn parsed_source(parsed: pki::ParsedCertificate, certificate_id: Option<String>) -> CertificateSource {
    CertificateSource {
        fingerprint: parsed.sha256_fingerprint,
        subject: parsed.subject_dn,
        issuer: parsed.issuer_dn,
        serial: parsed.serial_hex,
        not_after: unix(parsed.not_after),
        der: parsed.der,
        certificate_id,
    }
}

fn no_admin(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no administrator with uuid {id}"))
}

fn audit_admin(
    tx: &rusqlite::Transaction<'_>,
    who: &str,
    action: &str,
    id: &str,
    detail: String,
) -> Result<(), StoreError> {
    audit::append(tx, audit::AuditEntry { actor: who, action, target_type: "admin", target_id: id, detail })?;
    Ok(())
}

/// Refuses a change that leaves no enabled super administrator where there was one.
fn keep_a_super_admin(tx: &rusqlite::Transaction<'_>, before: u64) -> Result<(), ServiceError> {
    if before > 0 && store_admins::count_enabled_super(tx)? == 0 {
        return Err(ServiceError::FailedPrecondition(
            "the last enabled superAdministrator cannot be disabled, deleted or demoted".into(),
        ));
    }
    Ok(())
}

/// Username and certificate must be free (apart from the administrator `except`).
fn check_unique(
    tx: &rusqlite::Transaction<'_>,
    username: &str,
    fingerprint: &str,
    except: Option<&str>,
) -> Result<(), ServiceError> {
    if let Some(other) = store_admins::by_username(tx, username)?
        && Some(other.id.as_str()) != except
    {
        return Err(ServiceError::AlreadyExists(format!(
            "an administrator named {username:?} already exists"
        )));
    }
    if let Some(other) = store_admins::by_fingerprint(tx, fingerprint)?
        && Some(other.id.as_str()) != except
    {
        return Err(ServiceError::AlreadyExists(format!(
            "this certificate is already registered for administrator {:?}",
            other.username
        )));
    }
    Ok(())
}

fn detail(a: &AdminRecord) -> String {
    serde_json::json!({
        "username": a.username,
        "role": a.role.as_str(),
        "enabled": a.enabled,
        "certificate_fingerprint": a.certificate_fingerprint,
    })
    .to_string()
}

impl AdminService {
    /// Loads the certificate index from the store. Blocking: call at start-up.
    pub fn open(config: &hsm_config::Config, store: Store) -> Result<AdminService, ServiceError> {
        let all = store.blocking_write(|tx| store_admins::all(tx))?;
        let index = all.iter().map(|a| (a.certificate_fingerprint.clone(), Indexed::of(a))).collect();
        Ok(AdminService {
            store,
            max_upload_bytes: usize::try_from(config.server.max_upload_bytes).unwrap_or(usize::MAX),
            index: RwLock::new(index),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// The principal of a caller presenting the client certificate `der` (already verified by
    /// TLS against the configured client CA): an enabled administrator registered with exactly
    /// this certificate. UNAUTHENTICATED otherwise.
    pub fn authenticate_certificate(&self, der: &[u8]) -> Result<Principal, ServiceError> {
        let fingerprint = pki::sha256_fingerprint(der);
        let index = self.index.read().map_err(|_| ServiceError::Internal("admin index poisoned".into()))?;
        let Some(admin) = index.get(&fingerprint) else {
            return Err(ServiceError::Unauthenticated(
                "missing bearer access token (the client certificate is no administrator's)".into(),
            ));
        };
        if !admin.enabled {
            return Err(ServiceError::Unauthenticated(format!(
                "administrator {} is disabled",
                admin.username
            )));
        }
        let roles = match admin.role {
            AdminRole::Administrator => vec![Role::Admin],
            AdminRole::SuperAdministrator => vec![Role::SuperAdmin, Role::Admin],
        };
        Ok(Principal {
            user_id: admin.id.clone(),
            username: admin.username.clone(),
            roles,
            expires_at: 0,
            session_id: String::new(),
            api_key_id: None,
            scope: OrgScope::All,
            profiles: BTreeSet::new(),
        })
    }

    fn apply_index(&self, changes: Vec<IndexChange>) -> Result<(), ServiceError> {
        let mut index =
            self.index.write().map_err(|_| ServiceError::Internal("admin index poisoned".into()))?;
        for (old, new) in changes {
            if let Some(old) = old {
                index.remove(&old);
            }
            if let Some((fingerprint, entry)) = new {
                index.insert(fingerprint, entry);
            }
        }
        Ok(())
    }

    /// Decodes and parses the certificate of `input`: exactly one of `certificate` and
    /// `certificate_uuid` when `required`, at most one otherwise (`None`: keep the current).
    async fn certificate_of(
        &self,
        input: &AdminInput,
        required: bool,
    ) -> Result<Option<CertificateSource>, ServiceError> {
        let b64 = input.certificate.trim();
        let uuid = input.certificate_uuid.trim();
        match (b64.is_empty(), uuid.is_empty()) {
            (false, false) => Err(ServiceError::invalid(
                "certificate",
                "give either certificate or certificate_uuid, not both",
            )),
            (true, true) if required => Err(ServiceError::invalid(
                "certificate",
                "is required (base64 DER), or certificate_uuid of a certificate in the inventory",
            )),
            (true, true) => Ok(None),
            (false, true) => {
                validate::upload("certificate", b64.len(), self.max_upload_bytes)?;
                let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let der = STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|_| ServiceError::invalid("certificate", "is not base64"))?;
                let parsed = pki::parse_certificate(&der).map_err(|e| {
                    ServiceError::invalid("certificate", format!("is not a DER X.509 certificate: {e}"))
                })?;
                Ok(Some(parsed_source(parsed, None)))
            }
            (true, false) => {
                let id = validate::id("certificate_uuid", uuid)?;
                let lookup = id.clone();
                let record = self
                    .store
                    .read(move |c| certificates::get(c, &lookup).map_err(ServiceError::from))
                    .await?
                    .ok_or_else(|| {
                        ServiceError::NotFound(format!("no certificate with uuid {id} in the inventory"))
                    })?;
                let parsed = pki::parse_certificate(&record.certificate_der).map_err(|e| {
                    ServiceError::Internal(format!("stored certificate {id} does not parse: {e}"))
                })?;
                Ok(Some(parsed_source(parsed, Some(record.id))))
            }
        }
    }

    pub async fn create(&self, actor: &Principal, input: AdminInput) -> Result<AdminView, ServiceError> {
        let c = check(&input)?;
        let cert = self
            .certificate_of(&input, true)
            .await?
            .ok_or_else(|| ServiceError::Internal("a required certificate came back absent".into()))?;
        let now = store::now();
        let record = AdminRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: c.username,
            name: c.name,
            surname: c.surname,
            email: c.email,
            role: c.role,
            enabled: input.enabled,
            description: c.description,
            certificate_der: cert.der,
            certificate_fingerprint: cert.fingerprint,
            certificate_subject: cert.subject,
            certificate_issuer: cert.issuer,
            certificate_serial: cert.serial,
            certificate_not_after: cert.not_after,
            certificate_id: cert.certificate_id,
            created_at: now,
            updated_at: now,
        };
        let who = actor.username.clone();
        let _serial = self.changes.lock().await;
        let record = self
            .store
            .write(move |tx| {
                check_unique(tx, &record.username, &record.certificate_fingerprint, None)?;
                store_admins::insert(tx, &record)?;
                audit_admin(tx, &who, "admin.create", &record.id, detail(&record))?;
                Ok::<_, ServiceError>(record)
            })
            .await?;
        self.apply_index(vec![(None, Some((record.certificate_fingerprint.clone(), Indexed::of(&record))))])?;
        Ok(AdminView::from(record))
    }

    pub async fn edit(
        &self,
        actor: &Principal,
        id: &str,
        input: AdminInput,
    ) -> Result<AdminView, ServiceError> {
        let id = validate::id("uuid", id)?;
        let c = check(&input)?;
        let cert = self.certificate_of(&input, false).await?;
        let who = actor.username.clone();
        let _serial = self.changes.lock().await;
        let (old_fingerprint, record) = self
            .store
            .write(move |tx| {
                let current = store_admins::get(tx, &id)?.ok_or_else(|| no_admin(&id))?;
                let supers = store_admins::count_enabled_super(tx)?;
                let mut next = current.clone();
                next.username = c.username;
                next.name = c.name;
                next.surname = c.surname;
                next.email = c.email;
                next.role = c.role;
                next.description = c.description;
                if let Some(cert) = cert {
                    next.certificate_der = cert.der;
                    next.certificate_fingerprint = cert.fingerprint;
                    next.certificate_subject = cert.subject;
                    next.certificate_issuer = cert.issuer;
                    next.certificate_serial = cert.serial;
                    next.certificate_not_after = cert.not_after;
                    next.certificate_id = cert.certificate_id;
                }
                next.updated_at = store::now();
                check_unique(tx, &next.username, &next.certificate_fingerprint, Some(&next.id))?;
                if !store_admins::update(tx, &next)? {
                    return Err(no_admin(&id));
                }
                keep_a_super_admin(tx, supers)?;
                audit_admin(tx, &who, "admin.edit", &next.id, detail(&next))?;
                Ok::<_, ServiceError>((current.certificate_fingerprint, next))
            })
            .await?;
        self.apply_index(vec![(
            Some(old_fingerprint),
            Some((record.certificate_fingerprint.clone(), Indexed::of(&record))),
        )])?;
        Ok(AdminView::from(record))
    }

    pub async fn get(&self, id: &str) -> Result<AdminView, ServiceError> {
        let id = validate::id("uuid", id)?;
        self.store
            .read(move |c| store_admins::get(c, &id)?.map(AdminView::from).ok_or_else(|| no_admin(&id)))
            .await
    }

    pub async fn list(
        &self,
        page_size: u32,
        page_token: &str,
        search: &str,
    ) -> Result<AdminPage, ServiceError> {
        let page = paging::decode("page", page_size, page_token)?;
        let search = validate::text("search", search, MAX_SEARCH_LEN)?;
        let (records, total) = self
            .store
            .read(move |c| {
                store_admins::list(
                    c,
                    Some(search.as_str()).filter(|s| !s.is_empty()),
                    page.offset,
                    page.limit,
                )
                .map_err(ServiceError::from)
            })
            .await?;
        let next_page_token = paging::next_token(page, records.len(), total);
        Ok(AdminPage { admins: records.into_iter().map(AdminView::from).collect(), next_page_token, total })
    }

    /// Enables or disables one administrator. NOT_FOUND when unknown.
    pub async fn set_enabled(
        &self,
        actor: &Principal,
        id: &str,
        enabled: bool,
    ) -> Result<AdminView, ServiceError> {
        let id = validate::id("uuid", id)?;
        let action = if enabled { BulkAction::Enable } else { BulkAction::Disable };
        self.act(actor, vec![id.clone()], action).await?;
        self.get(&id).await
    }

    /// Deletes one administrator. NOT_FOUND when unknown.
    pub async fn delete(&self, actor: &Principal, id: &str) -> Result<(), ServiceError> {
        let id = validate::id("uuid", id)?;
        self.act(actor, vec![id], BulkAction::Delete).await?;
        Ok(())
    }

    /// Enables, disables or deletes every known administrator of `uuids` in one transaction;
    /// the unknown uuids are reported. NOT_FOUND (naming them) when none is known; nothing
    /// changes when a rule refuses any of them.
    pub async fn bulk(
        &self,
        actor: &Principal,
        uuids: &[String],
        action: BulkAction,
    ) -> Result<BulkOutcome, ServiceError> {
        if uuids.is_empty() {
            return Err(ServiceError::invalid("uuids", "is required (at least one uuid)"));
        }
        if uuids.len() > MAX_BULK {
            return Err(ServiceError::invalid("uuids", format!("must hold at most {MAX_BULK} uuids")));
        }
        let mut ids = Vec::with_capacity(uuids.len());
        for (i, u) in uuids.iter().enumerate() {
            let id = validate::id(&format!("uuids[{i}]"), u)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.act(actor, ids, action).await
    }

    async fn act(
        &self,
        actor: &Principal,
        ids: Vec<String>,
        action: BulkAction,
    ) -> Result<BulkOutcome, ServiceError> {
        if action != BulkAction::Enable && ids.contains(&actor.user_id) {
            return Err(ServiceError::FailedPrecondition(match action {
                BulkAction::Delete => "you cannot delete yourself".into(),
                _ => "you cannot disable yourself".into(),
            }));
        }
        let who = actor.username.clone();
        let _serial = self.changes.lock().await;
        let (outcome, changes) = self
            .store
            .write(move |tx| {
                let supers = store_admins::count_enabled_super(tx)?;
                let mut processed = Vec::new();
                let mut not_found = Vec::new();
                let mut changes: Vec<IndexChange> = Vec::new();
                for id in ids {
                    let Some(mut admin) = store_admins::get(tx, &id)? else {
                        not_found.push(id);
                        continue;
                    };
                    match action {
                        BulkAction::Delete => {
                            store_admins::delete(tx, &admin.id)?;
                            changes.push((Some(admin.certificate_fingerprint.clone()), None));
                        }
                        BulkAction::Enable | BulkAction::Disable => {
                            let enabled = action == BulkAction::Enable;
                            if admin.enabled == enabled {
                                // Already so: reported as processed, nothing to write.
                                processed.push(admin.id);
                                continue;
                            }
                            admin.enabled = enabled;
                            admin.updated_at = store::now();
                            store_admins::update(tx, &admin)?;
                            changes.push((
                                Some(admin.certificate_fingerprint.clone()),
                                Some((admin.certificate_fingerprint.clone(), Indexed::of(&admin))),
                            ));
                        }
                    }
                    audit_admin(tx, &who, action.audit_action(), &admin.id, detail(&admin))?;
                    processed.push(admin.id);
                }
                if processed.is_empty() {
                    return Err(ServiceError::NotFound(format!(
                        "no administrator with uuid {}",
                        not_found.join(", ")
                    )));
                }
                keep_a_super_admin(tx, supers)?;
                Ok::<_, ServiceError>((BulkOutcome { processed, not_found }, changes))
            })
            .await?;
        self.apply_index(changes)?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(check_username(" admin_2 ").expect("ok"), "admin_2");
        for bad in ["", "abcd", "a".repeat(31).as_str(), "with space", "dash-ed", "ümlaut"] {
            assert_eq!(field_of(check_username(bad)), "username", "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(check_email("a@b.cz").expect("ok"), "a@b.cz");
        assert!(check_email("first.last+tag@mail.example.org").is_ok());
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in ["", "a@b", "a@b.", "@b.cz", "a@@b.cz", "a b@c.cz", "a@-b.cz", "a..b@c.cz", long.as_str()]
        {
            assert_eq!(field_of(check_email(bad)), "email", "{bad:?}");
        }
    }

    #[test]
    fn roles() {
        assert_eq!(field_of(check_role(None)), "role");
        assert_eq!(field_of(check_role(Some(Err(9)))), "role");
        assert_eq!(check_role(Some(Ok(AdminRole::Administrator))).expect("ok"), AdminRole::Administrator);
    }
}
