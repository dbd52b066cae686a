//! Organization privileges, in the domain layer: what a user may do in which organization.
//! The authentication service asks [`PrivilegeIndex::apply`] to give every verified credential
//! its organization roles, scope and profiles; the user service sets privileges through
//! [`PrivilegeService::set`], which checks that the caller may grant them and reloads the
//! index in the same call, so a change holds from the next request on.

use super::{OrgScope, Principal, Role, ServiceError};
use crate::store::{Store, audit, ecosystems, organizations, privileges, users};
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// One privilege as callers give and see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Privilege {
    /// `EcoAdmin`, `OrgAdmin` or `User`.
    pub role: Role,
    pub ecosystem_id: String,
    /// Required for `OrgAdmin` and `User`, absent for `EcoAdmin`.
    pub organization_id: Option<String>,
    /// Profiles a `User` may issue with (ignored, and refused, for the admin roles).
    pub profiles: Vec<String>,
}

impl Privilege {
    fn from_record(r: privileges::PrivilegeRecord) -> Option<Privilege> {
        Some(Privilege {
            role: Role::parse(&r.role)?,
            ecosystem_id: r.ecosystem_id,
            organization_id: r.organization_id,
            profiles: r.profiles,
        })
    }
}

/// Every privilege and which organizations each ecosystem holds, for the per-request check.
#[derive(Debug, Default)]
struct Index {
    by_user: HashMap<String, Vec<Privilege>>,
    /// Lower-cased login → user id, for the users holding a privilege (cards name their
    /// owner by login).
    by_login: HashMap<String, String>,
    ecosystem_organizations: HashMap<String, BTreeSet<String>>,
}

/// The in-memory privilege index. Reloaded whole after every change of privileges or
/// organizations (both are rare; reads happen on every request).
#[derive(Debug, Default)]
pub struct PrivilegeIndex {
    index: RwLock<Index>,
}

impl PrivilegeIndex {
    /// Reads every privilege and organization. Blocking (a store read).
    pub fn reload(&self, conn: &Connection) -> Result<(), ServiceError> {
        let mut index = Index::default();
        for rec in privileges::all(conn)? {
            let user = rec.user_id.clone();
            if let Some(p) = Privilege::from_record(rec) {
                index.by_user.entry(user).or_default().push(p);
            }
        }
        for (id, login) in privileges::privileged_logins(conn)? {
            index.by_login.insert(login.to_lowercase(), id);
        }
        for (id, ecosystem) in organizations::ecosystem_of_each(conn)? {
            index.ecosystem_organizations.entry(ecosystem).or_default().insert(id);
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    /// A verified credential's principal with its organization roles, scope and profiles.
    /// `granted`: the roles the credential carries; an API key carries its realm's roles, and
    /// only the privileges of those roles apply to it. A token carries the user's platform
    /// roles, and every privilege applies (`None`).
    pub fn apply(&self, mut principal: Principal, granted: Option<&[Role]>) -> Principal {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut scope = BTreeSet::new();
        for p in index.by_user.get(&principal.user_id).into_iter().flatten() {
            if granted.is_some_and(|g| !g.contains(&p.role)) {
                continue;
            }
            if !principal.roles.contains(&p.role) {
                principal.roles.push(p.role);
            }
            match (&p.organization_id, p.role) {
                (Some(org), _) => {
                    scope.insert(org.clone());
                }
                (None, Role::EcoAdmin) => {
                    if let Some(orgs) = index.ecosystem_organizations.get(&p.ecosystem_id) {
                        scope.extend(orgs.iter().cloned());
                    }
                }
                (None, _) => {}
            }
            if p.role == Role::User {
                principal.profiles.extend(p.profiles.iter().cloned());
            }
        }
        principal.roles.sort();
        principal.scope = if principal.roles.iter().any(|r| r.is_platform()) {
            OrgScope::All
        } else if scope.is_empty() {
            OrgScope::None
        } else {
            OrgScope::Only(scope)
        };
        principal
    }

    /// The privileges of one user.
    pub fn of_user(&self, user_id: &str) -> Vec<Privilege> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut v = index.by_user.get(user_id).cloned().unwrap_or_default();
        v.sort();
        v
    }

    /// Whether `user_id` holds a privilege in an organization the `caller` may act in. Platform
    /// roles reach every user; organization admins reach the users of their organizations.
    pub fn user_in_scope(&self, caller: &Principal, user_id: &str) -> bool {
        if caller.scope == OrgScope::All {
            return true;
        }
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.by_user.get(user_id).into_iter().flatten().any(|p| match &p.organization_id {
            Some(org) => caller.in_organization(org),
            None => index
                .ecosystem_organizations
                .get(&p.ecosystem_id)
                .is_some_and(|orgs| orgs.iter().any(|o| caller.in_organization(o))),
        })
    }

    /// Whether the user with login `owner` (a card's owner) is in the caller's reach: the
    /// caller itself, or, for organization admins, a user of their organizations.
    pub fn owner_in_scope(&self, caller: &Principal, owner: &str) -> bool {
        if caller.scope == OrgScope::All || owner.eq_ignore_ascii_case(&caller.username) {
            return true;
        }
        if !(caller.has_role(Role::OrgAdmin) || caller.has_role(Role::EcoAdmin)) {
            return false;
        }
        let id = {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            index.by_login.get(&owner.to_lowercase()).cloned()
        };
        id.is_some_and(|id| self.user_in_scope(caller, &id))
    }
}

/// Setting and reading users' privileges.
#[derive(Debug)]
pub struct PrivilegeService {
    store: Store,
    index: Arc<PrivilegeIndex>,
    /// The profiles that exist (a privilege naming another is refused).
    profiles: BTreeSet<String>,
}

/// Most privileges one user may hold.
pub const MAX_PRIVILEGES: usize = 64;

impl PrivilegeService {
    pub fn new(store: Store, index: Arc<PrivilegeIndex>, profiles: BTreeSet<String>) -> Self {
        PrivilegeService { store, index, profiles }
    }

    /// A user's privileges: one's own, or a user in reach (platform administrators: anyone;
    /// organization admins: the users of their organizations). Out of reach is NOT_FOUND.
    pub async fn get(&self, actor: &Principal, user_id: &str) -> Result<Vec<Privilege>, ServiceError> {
        if user_id.is_empty() {
            return Err(ServiceError::invalid("user_id", "is required"));
        }
        let admin =
            actor.has_role(Role::Admin) || actor.has_role(Role::EcoAdmin) || actor.has_role(Role::OrgAdmin);
        let no_user = || ServiceError::NotFound(format!("no user {user_id:?}"));
        if user_id != actor.user_id && !(admin && self.index.user_in_scope(actor, user_id)) {
            return Err(no_user());
        }
        let id = user_id.to_owned();
        if !self.store.read(move |c| Ok::<_, ServiceError>(users::by_id(c, &id)?.is_some())).await? {
            return Err(no_user());
        }
        Ok(self.index.of_user(user_id))
    }

    /// Replaces `user_id`'s privileges. The caller must be able to grant each one: platform
    /// administrators anything; an ECO_ADMIN USER and ORG_ADMIN privileges in the
    /// organizations of its ecosystems; an ORG_ADMIN USER privileges in its organizations.
    /// Nobody changes their own privileges (no self-promotion, no locking oneself out).
    pub async fn set(
        &self,
        actor: &Principal,
        user_id: &str,
        wanted: Vec<Privilege>,
    ) -> Result<Vec<Privilege>, ServiceError> {
        if user_id.is_empty() {
            return Err(ServiceError::invalid("user_id", "is required"));
        }
        if user_id == actor.user_id {
            return Err(ServiceError::PermissionDenied("you cannot change your own privileges".into()));
        }
        if wanted.len() > MAX_PRIVILEGES {
            return Err(ServiceError::invalid("privileges", format!("at most {MAX_PRIVILEGES}")));
        }
        let mut seen = BTreeSet::new();
        for (i, p) in wanted.iter().enumerate() {
            let field = |f: &str| format!("privileges[{i}].{f}");
            if !matches!(p.role, Role::EcoAdmin | Role::OrgAdmin | Role::User) {
                return Err(ServiceError::invalid(field("role"), "must be USER, ORG_ADMIN or ECO_ADMIN"));
            }
            if p.ecosystem_id.is_empty() {
                return Err(ServiceError::invalid(field("ecosystem_id"), "is required"));
            }
            match (p.role, &p.organization_id) {
                (Role::EcoAdmin, Some(_)) => {
                    return Err(ServiceError::invalid(
                        field("organization_id"),
                        "must be empty for ECO_ADMIN (it spans the ecosystem)",
                    ));
                }
                (Role::OrgAdmin | Role::User, None) => {
                    return Err(ServiceError::invalid(field("organization_id"), "is required"));
                }
                _ => {}
            }
            if p.role != Role::User && !p.profiles.is_empty() {
                return Err(ServiceError::invalid(
                    field("profiles"),
                    "only USER privileges name profiles (admins may use every profile)",
                ));
            }
            if let Some(unknown) = p.profiles.iter().find(|n| !self.profiles.contains(*n)) {
                return Err(ServiceError::invalid(field("profiles"), format!("no profile {unknown:?}")));
            }
            if !seen.insert((p.role, p.ecosystem_id.clone(), p.organization_id.clone())) {
                return Err(ServiceError::invalid(field("role"), "the same privilege is given twice"));
            }
            // What the caller may grant.
            let allowed = actor.scope == OrgScope::All && actor.has_role(Role::Admin)
                || match (&p.organization_id, p.role) {
                    (Some(org), Role::User) => {
                        (actor.has_role(Role::OrgAdmin) || actor.has_role(Role::EcoAdmin))
                            && actor.in_organization(org)
                    }
                    (Some(org), Role::OrgAdmin) => {
                        actor.has_role(Role::EcoAdmin) && actor.in_organization(org)
                    }
                    _ => false,
                };
            if !allowed {
                return Err(ServiceError::PermissionDenied(format!(
                    "you may not grant privileges[{i}] ({} in {})",
                    p.role.as_str(),
                    p.organization_id.as_deref().unwrap_or(&p.ecosystem_id)
                )));
            }
        }
        if !self.index.user_in_scope(actor, user_id) && !self.index.of_user(user_id).is_empty() {
            return Err(ServiceError::NotFound(format!("no user {user_id:?}")));
        }
        // An organization admin may only replace what it could have granted: privileges
        // elsewhere (another organization's) stay out of its reach.
        let kept: Vec<Privilege> = if actor.scope == OrgScope::All {
            Vec::new()
        } else {
            self.index
                .of_user(user_id)
                .into_iter()
                .filter(|p| !p.organization_id.as_deref().is_some_and(|o| actor.in_organization(o)))
                .collect()
        };
        let store = self.store.clone();
        let index = self.index.clone();
        let user = user_id.to_owned();
        let actor_name = actor.username.clone();
        let wanted2 = wanted.clone();
        store
            .write(move |tx| {
                if users::by_id(tx, &user)?.is_none() {
                    return Err(ServiceError::NotFound(format!("no user {user:?}")));
                }
                for (i, p) in wanted2.iter().enumerate() {
                    let Some(_) = ecosystems::get(tx, &p.ecosystem_id)? else {
                        return Err(ServiceError::invalid(
                            format!("privileges[{i}].ecosystem_id"),
                            format!("no ecosystem {:?}", p.ecosystem_id),
                        ));
                    };
                    if let Some(org) = &p.organization_id {
                        match organizations::ecosystem_of(tx, org)? {
                            None => {
                                return Err(ServiceError::invalid(
                                    format!("privileges[{i}].organization_id"),
                                    format!("no organization {org:?}"),
                                ));
                            }
                            Some(e) if e != p.ecosystem_id => {
                                return Err(ServiceError::invalid(
                                    format!("privileges[{i}].organization_id"),
                                    format!("organization {org:?} is not in ecosystem {:?}", p.ecosystem_id),
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
                let records: Vec<privileges::PrivilegeRecord> = kept
                    .iter()
                    .chain(wanted2.iter())
                    .map(|p| privileges::PrivilegeRecord {
                        user_id: user.clone(),
                        role: p.role.as_str().to_owned(),
                        ecosystem_id: p.ecosystem_id.clone(),
                        organization_id: p.organization_id.clone(),
                        profiles: p.profiles.clone(),
                    })
                    .collect();
                privileges::replace_for_user(tx, &user, &records)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor_name,
                        action: "user.privileges",
                        target_type: "user",
                        target_id: &user,
                        detail: serde_json::json!({
                            "privileges": records.iter().map(|r| serde_json::json!({
                                "role": r.role,
                                "ecosystem_id": r.ecosystem_id,
                                "organization_id": r.organization_id,
                                "profiles": r.profiles,
                            })).collect::<Vec<_>>()
                        })
                        .to_string(),
                    },
                )?;
                index.reload(tx)?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        Ok(self.index.of_user(user_id))
    }
}
