//! User administration (the identity issue extends this): create and list users.

use super::auth::AuthService;
use super::{Principal, Role, ServiceError, paging};
use crate::store::{self, Store, audit, users};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Minimum password length for users created through the API.
pub const MIN_PASSWORD_LEN: usize = super::auth::MIN_PASSWORD_LEN;

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub roles: Vec<Role>,
    pub enabled: bool,
    pub created_at: i64,
}

impl From<users::UserRecord> for UserView {
    fn from(u: users::UserRecord) -> Self {
        UserView {
            roles: u.roles.iter().filter_map(|r| Role::parse(r)).collect(),
            id: u.id,
            username: u.username,
            enabled: u.enabled,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug)]
pub struct UserService {
    store: Store,
    auth: Arc<AuthService>,
}

impl UserService {
    pub fn new(store: Store, auth: Arc<AuthService>) -> Self {
        UserService { store, auth }
    }

    /// Creates a user. Username `^[A-Za-z0-9_.@-]{3,64}$`, unique (case-insensitively);
    /// password at least 12 characters; at least one role.
    pub async fn create(
        &self,
        actor: &Principal,
        username: &str,
        password: Zeroizing<String>,
        roles: Vec<Role>,
    ) -> Result<UserView, ServiceError> {
        let username = valid_username(username)?;
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(ServiceError::invalid(
                "password",
                format!("must be at least {MIN_PASSWORD_LEN} characters"),
            ));
        }
        if password.len() > 1024 {
            return Err(ServiceError::invalid("password", "must be at most 1024 bytes"));
        }
        if roles.is_empty() {
            return Err(ServiceError::invalid("roles", "at least one role is required"));
        }
        let mut roles = roles;
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        let hash = self.auth.hash_new_password(password).await?;
        let now = store::now();
        let record = users::UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.clone(),
            password_hash: hash,
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        let actor = actor.username.clone();
        let rec = record.clone();
        self.store
            .write(move |tx| {
                if users::by_username(tx, &rec.username)?.is_some() {
                    return Err(ServiceError::AlreadyExists(format!(
                        "a user named {:?} already exists",
                        rec.username
                    )));
                }
                users::insert(tx, &rec)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor,
                        action: "user.create",
                        target_type: "user",
                        target_id: &rec.id,
                        detail: serde_json::json!({ "username": rec.username, "roles": rec.roles })
                            .to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(record.into())
    }

    /// Enables or disables a user. Disabling ends the user's sessions and API keys at once (and
    /// sets the user's credentials not-before); enabling does not bring them back. An
    /// administrator cannot disable themself.
    pub async fn set_enabled(
        &self,
        actor: &Principal,
        id: &str,
        enabled: bool,
    ) -> Result<UserView, ServiceError> {
        if id.is_empty() {
            return Err(ServiceError::invalid("id", "is required"));
        }
        if !enabled && id == actor.user_id {
            return Err(ServiceError::FailedPrecondition("you cannot disable yourself".into()));
        }
        let lookup = id.to_owned();
        let Some(user) =
            self.store.read(move |c| users::by_id(c, &lookup).map_err(ServiceError::from)).await?
        else {
            return Err(ServiceError::NotFound(format!("no user {id:?}")));
        };
        let target = user.id.clone();
        if enabled {
            let actor = actor.username.clone();
            self.store
                .write(move |tx| {
                    users::set_enabled(tx, &target, true)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &actor,
                            action: "user.enable",
                            target_type: "user",
                            target_id: &target,
                            detail: "{}".into(),
                        },
                    )?;
                    Ok::<_, ServiceError>(())
                })
                .await?;
        } else {
            self.auth
                .end_user_credentials(&actor.username, &user.id, "user.disable", move |tx| {
                    users::set_enabled(tx, &target, false)?;
                    Ok(())
                })
                .await?;
        }
        Ok(UserView { enabled, ..UserView::from(user) })
    }

    /// One user by id.
    pub async fn get(&self, id: &str) -> Result<UserView, ServiceError> {
        if id.trim().is_empty() {
            return Err(ServiceError::invalid("id", "is required"));
        }
        let lookup = id.trim().to_owned();
        self.store
            .read(move |c| users::by_id(c, &lookup).map_err(ServiceError::from))
            .await?
            .map(UserView::from)
            .ok_or_else(|| ServiceError::NotFound(format!("no user {id:?}")))
    }

    /// Whether `username` is well formed (INVALID_ARGUMENT otherwise) and not taken.
    pub async fn username_available(&self, username: &str) -> Result<bool, ServiceError> {
        let username = valid_username(username)?;
        Ok(self
            .store
            .read(move |c| users::by_username(c, &username).map_err(ServiceError::from))
            .await?
            .is_none())
    }

    /// Removes a user. Their sessions and API keys end at once (and their refresh tokens,
    /// sessions and keys leave the store with them). Refused for yourself and for the last
    /// enabled administrator, so the system never loses its last way in.
    pub async fn remove(&self, actor: &Principal, id: &str) -> Result<(), ServiceError> {
        let user = self.get(id).await?;
        if user.id == actor.user_id {
            return Err(ServiceError::FailedPrecondition("you cannot remove yourself".into()));
        }
        let target = user.id.clone();
        let last_admin = user.enabled && user.roles.contains(&Role::Admin);
        self.auth
            .end_user_credentials(&actor.username, &user.id, "user.remove", move |tx| {
                if last_admin && users::count_enabled_with_role(tx, Role::Admin.as_str())? <= 1 {
                    return Err(ServiceError::FailedPrecondition(
                        "this is the last enabled administrator; it cannot be removed".into(),
                    ));
                }
                if !users::delete(tx, &target)? {
                    return Err(ServiceError::NotFound(format!("no user {target:?}")));
                }
                Ok(())
            })
            .await
    }

    pub async fn list(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<UserView>, String, u64), ServiceError> {
        let page = paging::decode("page", page_size, page_token)?;
        let (records, total) = self
            .store
            .read(move |c| users::list(c, page.offset, page.limit).map_err(ServiceError::from))
            .await?;
        let next = paging::next_token(page, records.len(), total);
        Ok((records.into_iter().map(UserView::from).collect(), next, total))
    }
}

/// A username: `^[A-Za-z0-9_.@-]{3,64}$` (trimmed), or INVALID_ARGUMENT on `username`.
fn valid_username(username: &str) -> Result<String, ServiceError> {
    let username = username.trim();
    if username.len() < 3
        || username.len() > 64
        || !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
    {
        return Err(ServiceError::invalid("username", "must be 3 to 64 of A-Z a-z 0-9 _ . @ -"));
    }
    Ok(username.to_owned())
}
