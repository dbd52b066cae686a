//! Organizations, in the domain layer between the gRPC handlers (`grpc/organizations`) and the
//! store (`store/organizations`): validation naming the field, case-insensitive unique names,
//! and the authorities assigned to an organization with a balance. Who may call what is in
//! `authz` (management ADMIN, reads ADMIN and OPERATOR); every change commits with its audit
//! record in one transaction, and every refusal is decided before anything is written.

use super::privileges::PrivilegeIndex;
use super::{OrgScope, Principal, ServiceError, validate};
use crate::store::{self, Store, StoreError, audit, authorities, organizations as orgs};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Default and largest page of `ListOrganizations`.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 50;
/// Longest organization name, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Longest free-text parameter (ORGANIZATION, CITY, STATE), in characters.
pub const MAX_PARAMETER_LEN: usize = 64;

/// The parameters an organization may carry; they feed certificate subject DNs.
pub const PARAMETER_NAMES: [&str; 5] = ["ORGANIZATION", "CITY", "STATE", "COUNTRY", "MANUFACTURER_ID"];

/// Whether an organization may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Inactive,
}

/// An organization as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationView {
    pub id: String,
    pub name: String,
    /// Only the parameters that are set, keyed by their names in [`PARAMETER_NAMES`].
    pub parameters: BTreeMap<String, String>,
    pub status: Status,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<orgs::OrganizationRecord> for OrganizationView {
    fn from(o: orgs::OrganizationRecord) -> Self {
        let mut parameters = BTreeMap::new();
        for (key, value) in [
            ("ORGANIZATION", o.organization),
            ("CITY", o.city),
            ("STATE", o.state),
            ("COUNTRY", o.country),
            ("MANUFACTURER_ID", o.manufacturer_id),
        ] {
            if let Some(v) = value {
                parameters.insert(key.to_owned(), v);
            }
        }
        OrganizationView {
            id: o.id,
            name: o.name,
            parameters,
            status: if o.active { Status::Active } else { Status::Inactive },
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// What create and update take. `status: None` means ACTIVE on create, unchanged on update;
/// `Err(v)` carries a status value the wire layer could not map, refused naming `status`.
#[derive(Debug, Clone, Default)]
pub struct OrganizationInput {
    pub name: String,
    pub parameters: BTreeMap<String, String>,
    pub status: Option<Result<Status, i32>>,
}

/// One page of organizations.
#[derive(Debug, Clone)]
pub struct OrganizationPage {
    pub organizations: Vec<OrganizationView>,
    pub total: u64,
}

/// An authority assigned to an organization, with what is left of its balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationAuthorityView {
    pub authority_id: String,
    pub authority_name: String,
    pub balance: i64,
    pub used: i64,
    pub available: i64,
    pub enabled: bool,
}

impl From<orgs::OrganizationAuthorityRecord> for OrganizationAuthorityView {
    fn from(r: orgs::OrganizationAuthorityRecord) -> Self {
        OrganizationAuthorityView {
            // Reservations of batches still issuing are spoken for.
            available: r.balance.saturating_sub(r.used).saturating_sub(r.reserved),
            authority_id: r.authority_id,
            authority_name: r.authority_name,
            balance: r.balance,
            used: r.used,
            enabled: r.enabled,
        }
    }
}

/// The validated, trimmed form of an [`OrganizationInput`] (status still optional).
struct Checked {
    name: String,
    organization: Option<String>,
    city: Option<String>,
    state: Option<String>,
    country: Option<String>,
    manufacturer_id: Option<String>,
    active: Option<bool>,
}

/// 1 to 128 characters, no control characters.
fn check_name(value: &str) -> Result<String, ServiceError> {
    let name = validate::text("name", value, MAX_NAME_LEN)?;
    if name.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    Ok(name)
}

/// One parameter by its key; the error names `parameters.<KEY>`.
fn check_parameter(key: &str, value: &str) -> Result<String, ServiceError> {
    let field = format!("parameters.{key}");
    let v = value.trim();
    match key {
        "MANUFACTURER_ID" => {
            if v.is_empty() || v.len() > 3 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ServiceError::invalid(field, "must be 1 to 3 digits"));
            }
        }
        "COUNTRY" => {
            if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ServiceError::invalid(field, "must be two capital letters (ISO 3166, e.g. CZ)"));
            }
        }
        "ORGANIZATION" | "CITY" | "STATE" => {
            let n = v.chars().count();
            if n == 0 || n > MAX_PARAMETER_LEN || v.chars().any(char::is_control) {
                return Err(ServiceError::invalid(
                    field,
                    format!("must be 1 to {MAX_PARAMETER_LEN} printable characters"),
                ));
            }
        }
        _ => {
            return Err(ServiceError::invalid(
                field,
                format!("is not a parameter (known: {})", PARAMETER_NAMES.join(", ")),
            ));
        }
    }
    Ok(v.to_owned())
}

fn check(input: &OrganizationInput) -> Result<Checked, ServiceError> {
    let name = check_name(&input.name)?;
    // BTreeMap order: the first bad parameter reported is the same on every call.
    let mut checked: BTreeMap<&str, String> = BTreeMap::new();
    for (key, value) in &input.parameters {
        checked.insert(key.as_str(), check_parameter(key, value)?);
    }
    let active = match input.status {
        None => None,
        Some(Ok(s)) => Some(s == Status::Active),
        Some(Err(v)) => return Err(ServiceError::invalid("status", format!("{v} is not a status"))),
    };
    Ok(Checked {
        name,
        organization: checked.remove("ORGANIZATION"),
        city: checked.remove("CITY"),
        state: checked.remove("STATE"),
        country: checked.remove("COUNTRY"),
        manufacturer_id: checked.remove("MANUFACTURER_ID"),
        active,
    })
}

fn check_balance(balance: i64) -> Result<i64, ServiceError> {
    if balance < 0 {
        return Err(ServiceError::invalid("balance", "must be at least 0"));
    }
    Ok(balance)
}

fn audit_org(
    tx: &rusqlite::Transaction<'_>,
    who: &str,
    action: &str,
    id: &str,
    detail: String,
) -> Result<(), StoreError> {
    audit::append(
        tx,
        audit::AuditEntry { actor: who, action, target_type: "organization", target_id: id, detail },
    )?;
    Ok(())
}

fn duplicate(name: &str) -> ServiceError {
    ServiceError::AlreadyExists(format!("an organization named {name:?} already exists"))
}

fn no_organization(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no organization with id {id}"))
}

#[derive(Debug)]
pub struct OrganizationService {
    store: Store,
    /// Reloaded when an organization is created: ECO_ADMIN scopes grow with their ecosystem.
    privileges: Arc<PrivilegeIndex>,
}

/// An organization outside the caller's scope does not exist for the caller.
fn check_scope(actor: &Principal, id: &str) -> Result<(), ServiceError> {
    if actor.in_organization(id) { Ok(()) } else { Err(no_organization(id)) }
}

impl OrganizationService {
    pub fn new(store: Store, privileges: Arc<PrivilegeIndex>) -> Self {
        OrganizationService { store, privileges }
    }

    pub async fn create(
        &self,
        actor: &Principal,
        input: OrganizationInput,
    ) -> Result<OrganizationView, ServiceError> {
        let c = check(&input)?;
        let now = store::now();
        let record = orgs::OrganizationRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: c.name,
            organization: c.organization,
            city: c.city,
            state: c.state,
            country: c.country,
            manufacturer_id: c.manufacturer_id,
            active: c.active.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        let who = actor.username.clone();
        let privileges = self.privileges.clone();
        self.store
            .write(move |tx| {
                // Checked in the write transaction (one writer), so no other create can slip in
                // between; the UNIQUE name_key would refuse it anyway.
                if orgs::by_name(tx, &record.name)?.is_some() {
                    return Err(duplicate(&record.name));
                }
                orgs::insert(tx, &record)?;
                let detail = serde_json::json!({ "name": record.name, "active": record.active }).to_string();
                audit_org(tx, &who, "organization.create", &record.id, detail)?;
                privileges.reload(tx)?;
                Ok(OrganizationView::from(record))
            })
            .await
    }

    pub async fn update(
        &self,
        actor: &Principal,
        id: &str,
        input: OrganizationInput,
    ) -> Result<OrganizationView, ServiceError> {
        let id = validate::id("id", id)?;
        let c = check(&input)?;
        let who = actor.username.clone();
        self.store
            .write(move |tx| {
                let current = orgs::get(tx, &id)?.ok_or_else(|| no_organization(&id))?;
                if let Some(other) = orgs::by_name(tx, &c.name)?
                    && other.id != id
                {
                    return Err(duplicate(&c.name));
                }
                let record = orgs::OrganizationRecord {
                    id: current.id,
                    name: c.name,
                    organization: c.organization,
                    city: c.city,
                    state: c.state,
                    country: c.country,
                    manufacturer_id: c.manufacturer_id,
                    active: c.active.unwrap_or(current.active),
                    created_at: current.created_at,
                    updated_at: store::now(),
                };
                if !orgs::update(tx, &record)? {
                    return Err(no_organization(&id));
                }
                let detail = serde_json::json!({ "name": record.name, "active": record.active }).to_string();
                audit_org(tx, &who, "organization.update", &record.id, detail)?;
                Ok(OrganizationView::from(record))
            })
            .await
    }

    pub async fn get(&self, actor: &Principal, id: &str) -> Result<OrganizationView, ServiceError> {
        let id = validate::id("id", id)?;
        check_scope(actor, &id)?;
        self.store
            .read(move |c| orgs::get(c, &id)?.map(OrganizationView::from).ok_or_else(|| no_organization(&id)))
            .await
    }

    /// Page `page` (0-based) of `size` organizations (0 = default, at most 50) by name, of
    /// those in the caller's scope.
    pub async fn list(
        &self,
        actor: &Principal,
        page: u32,
        size: u32,
    ) -> Result<OrganizationPage, ServiceError> {
        if size > MAX_PAGE_SIZE {
            return Err(ServiceError::invalid("size", format!("must be at most {MAX_PAGE_SIZE}")));
        }
        let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size } as u64;
        let offset = u64::from(page).saturating_mul(size);
        let scope = actor.scope.clone();
        self.store
            .read(move |c| {
                if scope == OrgScope::All {
                    return Ok(OrganizationPage {
                        total: orgs::count(c)?,
                        organizations: orgs::page(c, offset, size)?.into_iter().map(Into::into).collect(),
                    });
                }
                // An organization-scoped caller reaches a handful of organizations: page them
                // in memory, in the same name order.
                let mine: Vec<OrganizationView> = orgs::page(c, 0, u64::MAX >> 1)?
                    .into_iter()
                    .filter(|o| scope.contains(&o.id))
                    .map(Into::into)
                    .collect();
                let total = mine.len() as u64;
                let organizations = mine
                    .into_iter()
                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                    .take(usize::try_from(size).unwrap_or(usize::MAX))
                    .collect();
                Ok(OrganizationPage { total, organizations })
            })
            .await
    }

    /// Every organization in the caller's scope as (id, name), by name.
    pub async fn items(&self, actor: &Principal) -> Result<Vec<(String, String)>, ServiceError> {
        let scope = actor.scope.clone();
        self.store
            .read(move |c| Ok(orgs::items(c)?.into_iter().filter(|(id, _)| scope.contains(id)).collect()))
            .await
    }

    /// The organization the caller belongs to: the first by name of those its privileges
    /// name. Platform roles belong to none (NOT_FOUND).
    pub async fn for_current_user(&self, actor: &Principal) -> Result<OrganizationView, ServiceError> {
        let OrgScope::Only(ids) = &actor.scope else {
            return Err(ServiceError::NotFound(format!("{} belongs to no organization", actor.username)));
        };
        let ids = ids.clone();
        let who = actor.username.clone();
        self.store
            .read(move |c| {
                let mut mine: Vec<orgs::OrganizationRecord> =
                    ids.iter().filter_map(|id| orgs::get(c, id).transpose()).collect::<Result<_, _>>()?;
                mine.sort_by_key(|o| orgs::name_key(&o.name));
                mine.into_iter()
                    .next()
                    .map(OrganizationView::from)
                    .ok_or_else(|| ServiceError::NotFound(format!("{who} belongs to no organization")))
            })
            .await
    }

    /// Whether no organization has this name in any case.
    pub async fn name_available(&self, name: &str) -> Result<bool, ServiceError> {
        let name = check_name(name)?;
        self.store.read(move |c| Ok(orgs::by_name(c, &name)?.is_none())).await
    }

    pub async fn add_authority(
        &self,
        actor: &Principal,
        organization_id: &str,
        authority_id: &str,
        balance: i64,
        enabled: bool,
    ) -> Result<OrganizationAuthorityView, ServiceError> {
        let org_id = validate::id("organization_id", organization_id)?;
        let auth_id = validate::id("authority_id", authority_id)?;
        let balance = check_balance(balance)?;
        let who = actor.username.clone();
        self.store
            .write(move |tx| {
                orgs::get(tx, &org_id)?.ok_or_else(|| no_organization(&org_id))?;
                let authority = authorities::get(tx, &auth_id)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no authority with id {auth_id}")))?;
                if orgs::get_authority(tx, &org_id, &auth_id)?.is_some() {
                    return Err(ServiceError::AlreadyExists(format!(
                        "authority {:?} is already assigned to this organization",
                        authority.name
                    )));
                }
                orgs::insert_authority(tx, &org_id, &auth_id, balance, enabled, store::now())?;
                let detail =
                    serde_json::json!({ "authority_id": auth_id, "balance": balance, "enabled": enabled })
                        .to_string();
                audit_org(tx, &who, "organization.authority.add", &org_id, detail)?;
                assigned(tx, &org_id, &auth_id)
            })
            .await
    }

    /// Changes the balance and/or enabled flag; `None` keeps the current value.
    pub async fn update_authority(
        &self,
        actor: &Principal,
        organization_id: &str,
        authority_id: &str,
        balance: Option<i64>,
        enabled: Option<bool>,
    ) -> Result<OrganizationAuthorityView, ServiceError> {
        let org_id = validate::id("organization_id", organization_id)?;
        let auth_id = validate::id("authority_id", authority_id)?;
        let balance = balance.map(check_balance).transpose()?;
        let who = actor.username.clone();
        self.store
            .write(move |tx| {
                let current = existing_assignment(tx, &org_id, &auth_id)?;
                let balance = balance.unwrap_or(current.balance);
                let enabled = enabled.unwrap_or(current.enabled);
                if !orgs::update_authority(tx, &org_id, &auth_id, balance, enabled, store::now())? {
                    return Err(no_assignment(&auth_id));
                }
                let detail =
                    serde_json::json!({ "authority_id": auth_id, "balance": balance, "enabled": enabled })
                        .to_string();
                audit_org(tx, &who, "organization.authority.update", &org_id, detail)?;
                assigned(tx, &org_id, &auth_id)
            })
            .await
    }

    pub async fn remove_authority(
        &self,
        actor: &Principal,
        organization_id: &str,
        authority_id: &str,
    ) -> Result<(), ServiceError> {
        let org_id = validate::id("organization_id", organization_id)?;
        let auth_id = validate::id("authority_id", authority_id)?;
        let who = actor.username.clone();
        self.store
            .write(move |tx| {
                existing_assignment(tx, &org_id, &auth_id)?;
                if !orgs::delete_authority(tx, &org_id, &auth_id)? {
                    return Err(no_assignment(&auth_id));
                }
                let detail = serde_json::json!({ "authority_id": auth_id }).to_string();
                audit_org(tx, &who, "organization.authority.remove", &org_id, detail)?;
                Ok(())
            })
            .await
    }

    pub async fn authorities(
        &self,
        actor: &Principal,
        organization_id: &str,
    ) -> Result<Vec<OrganizationAuthorityView>, ServiceError> {
        let org_id = validate::id("organization_id", organization_id)?;
        check_scope(actor, &org_id)?;
        self.store
            .read(move |c| {
                orgs::get(c, &org_id)?.ok_or_else(|| no_organization(&org_id))?;
                Ok(orgs::authorities(c, &org_id)?.into_iter().map(Into::into).collect())
            })
            .await
    }

    /// The organization a balance question is about: the one named (in the caller's scope),
    /// or, when none is named, the caller's own.
    async fn named_or_own(
        &self,
        actor: &Principal,
        organization_id: Option<&str>,
    ) -> Result<String, ServiceError> {
        match organization_id {
            Some(id) => {
                let id = validate::id("organization_id", id)?;
                check_scope(actor, &id)?;
                Ok(id)
            }
            None => Ok(self.for_current_user(actor).await?.id),
        }
    }

    /// One authority assigned to an organization (`None`: the caller's own) with its balance,
    /// used and available (the platform's balance routes). NOT_FOUND when not assigned.
    pub async fn authority(
        &self,
        actor: &Principal,
        organization_id: Option<&str>,
        authority_id: &str,
    ) -> Result<OrganizationAuthorityView, ServiceError> {
        let auth_id = validate::id("authority_id", authority_id)?;
        let org_id = self.named_or_own(actor, organization_id).await?;
        self.store.read(move |c| existing_assignment(c, &org_id, &auth_id).map(Into::into)).await
    }

    /// The authorities an organization (`None`: the caller's own) may issue from now, by the
    /// same checks as creating a batch: its enabled assignments, none while it is inactive.
    pub async fn allowed_authorities(
        &self,
        actor: &Principal,
        organization_id: Option<&str>,
    ) -> Result<Vec<OrganizationAuthorityView>, ServiceError> {
        let org_id = self.named_or_own(actor, organization_id).await?;
        self.store
            .read(move |c| {
                let org = orgs::get(c, &org_id)?.ok_or_else(|| no_organization(&org_id))?;
                if !org.active {
                    return Ok(Vec::new());
                }
                Ok(orgs::authorities(c, &org_id)?.into_iter().filter(|a| a.enabled).map(Into::into).collect())
            })
            .await
    }
}

fn no_assignment(authority_id: &str) -> ServiceError {
    ServiceError::NotFound(format!("authority {authority_id} is not assigned to this organization"))
}

/// The assignment, or NOT_FOUND naming what is missing: the organization or the assignment.
fn existing_assignment(
    conn: &rusqlite::Connection,
    org_id: &str,
    auth_id: &str,
) -> Result<orgs::OrganizationAuthorityRecord, ServiceError> {
    orgs::get(conn, org_id)?.ok_or_else(|| no_organization(org_id))?;
    orgs::get_authority(conn, org_id, auth_id)?.ok_or_else(|| no_assignment(auth_id))
}

/// The assignment just written, read back in the same transaction.
fn assigned(
    conn: &rusqlite::Connection,
    org_id: &str,
    auth_id: &str,
) -> Result<OrganizationAuthorityView, ServiceError> {
    orgs::get_authority(conn, org_id, auth_id)?
        .map(Into::into)
        .ok_or_else(|| ServiceError::Internal(format!("assignment {org_id}/{auth_id} vanished")))
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
    fn parameters_are_checked_by_key() {
        assert_eq!(check_parameter("MANUFACTURER_ID", " 042 ").expect("ok"), "042");
        assert_eq!(check_parameter("COUNTRY", "CZ").expect("ok"), "CZ");
        assert_eq!(check_parameter("CITY", "Brno").expect("ok"), "Brno");
        for (key, bad) in [
            ("MANUFACTURER_ID", "1234"),
            ("MANUFACTURER_ID", "1a"),
            ("MANUFACTURER_ID", ""),
            ("COUNTRY", "cz"),
            ("COUNTRY", "CZE"),
            ("CITY", ""),
            ("STATE", "a\nb"),
            ("ORGANIZATION", &"x".repeat(65)),
            ("NOPE", "x"),
        ] {
            assert_eq!(field_of(check_parameter(key, bad)), format!("parameters.{key}"), "{key}={bad:?}");
        }
    }

    #[test]
    fn names_and_balances() {
        assert_eq!(field_of(check_name("  ")), "name");
        assert_eq!(field_of(check_name(&"n".repeat(129))), "name");
        assert!(check_name(&"n".repeat(128)).is_ok());
        assert_eq!(field_of(check_balance(-1)), "balance");
        assert_eq!(check_balance(0).expect("zero is a balance"), 0);
    }
}
