//! User administration and self-service, in the domain layer (UserService): create, list with
//! filters, edit (administrators and organization administrators), the caller's own names,
//! phone, email and credentials, and availability checks. Every field is validated here
//! (INVALID_ARGUMENT naming it) before anything is written.

use super::auth::AuthService;
use super::{OrgScope, Principal, Role, ServiceError, paging, password_policy, validate};
use crate::store::{self, Store, audit, users};
use regex::Regex;
use std::sync::{Arc, LazyLock};
use zeroize::Zeroizing;

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub roles: Vec<Role>,
    pub enabled: bool,
    pub created_at: i64,
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    /// "" when unset.
    pub email: String,
}

impl From<users::UserRecord> for UserView {
    fn from(u: users::UserRecord) -> Self {
        UserView {
            roles: u.roles.iter().filter_map(|r| Role::parse(r)).collect(),
            id: u.id,
            username: u.username,
            enabled: u.enabled,
            created_at: u.created_at,
            first_name: u.profile.first_name,
            last_name: u.profile.last_name,
            phone: u.profile.phone,
            email: u.profile.email.unwrap_or_default(),
        }
    }
}

/// Profile fields of a create or an update: `None` leaves a field as it is (unset on create),
/// `Some("")` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

impl ProfileChange {
    /// Validates every given field and applies them to `profile`.
    fn apply_to(&self, mut profile: users::UserProfile) -> Result<users::UserProfile, ServiceError> {
        if let Some(v) = &self.first_name {
            profile.first_name = optional(v, |v| valid_name("first_name", v))?;
        }
        if let Some(v) = &self.last_name {
            profile.last_name = optional(v, |v| valid_name("last_name", v))?;
        }
        if let Some(v) = &self.phone {
            profile.phone = optional(v, valid_phone)?;
        }
        if let Some(v) = &self.email {
            let email = optional(v, |v| valid_email("email", v))?;
            profile.email = (!email.is_empty()).then_some(email);
        }
        Ok(profile)
    }
}

/// What ListUsers narrows to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub organization_id: String,
    pub role: Option<Role>,
    pub search_line: String,
}

/// Longest ListUsers search line.
const MAX_SEARCH_LEN: usize = 100;

#[derive(Debug)]
pub struct UserService {
    store: Store,
    auth: Arc<AuthService>,
}

impl UserService {
    pub fn new(store: Store, auth: Arc<AuthService>) -> Self {
        UserService { store, auth }
    }

    /// Creates a user. Login `^\w{5,30}$` (see [`valid_login`]), unique case-insensitively;
    /// password by the policy (the default ecosystem's minimum: the user holds no privilege
    /// yet); at least one role; profile fields optional, validated when given, the email
    /// unique.
    pub async fn create(
        &self,
        actor: &Principal,
        username: &str,
        password: Zeroizing<String>,
        repeated_password: Option<Zeroizing<String>>,
        roles: Vec<Role>,
        profile: ProfileChange,
    ) -> Result<UserView, ServiceError> {
        let username = valid_login("username", username)?;
        let profile = profile.apply_to(users::UserProfile::default())?;
        if roles.is_empty() {
            return Err(ServiceError::invalid("roles", "at least one role is required"));
        }
        let min = password_policy::min_length(&self.store, None).await?;
        password_policy::check(
            "password",
            &password,
            "repeated_password",
            repeated_password.as_ref().map(|p| p.as_str()),
            min,
        )?;
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
            profile,
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
                email_free(tx, rec.profile.email.as_deref(), None)?;
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

    /// Edits a user's names, phone and email. Platform administrators edit anyone;
    /// organization administrators the users holding a privilege in their organizations
    /// (others answer NOT_FOUND, revealing nothing), never a holder of a platform role.
    pub async fn update(
        &self,
        actor: &Principal,
        id: &str,
        change: ProfileChange,
    ) -> Result<UserView, ServiceError> {
        let id = validate::id("id", id)?;
        // Validate before looking anything up: bad input is refused the same for everyone.
        change.apply_to(users::UserProfile::default())?;
        let user = self.get(&id).await?;
        if actor.scope != OrgScope::All
            && (user.roles.iter().any(|r| r.is_platform())
                || !self.auth.privilege_index().user_in_scope(actor, &id))
        {
            return Err(ServiceError::NotFound(format!("no user {id:?}")));
        }
        self.change_profile(actor, &id, change, "user.update").await
    }

    /// The caller edits their own names and phone.
    pub async fn update_current(
        &self,
        actor: &Principal,
        first_name: Option<String>,
        last_name: Option<String>,
        phone: Option<String>,
    ) -> Result<UserView, ServiceError> {
        let change = ProfileChange { first_name, last_name, phone, email: None };
        change.apply_to(users::UserProfile::default())?;
        self.change_profile(actor, &actor.user_id, change, "user.update_self").await
    }

    /// The caller changes their email, proving it is them with their current password.
    pub async fn update_email(
        &self,
        actor: &Principal,
        email: &str,
        current_password: Zeroizing<String>,
    ) -> Result<UserView, ServiceError> {
        let email = valid_email("email", email)?;
        if current_password.is_empty() {
            return Err(ServiceError::invalid("current_password", "is required"));
        }
        self.auth.verify_current_password(actor, "current_password", current_password).await?;
        let change = ProfileChange { email: Some(email), ..Default::default() };
        self.change_profile(actor, &actor.user_id, change, "user.update_email").await
    }

    /// The caller changes their login and/or password, proving it is them with the current
    /// password. Either change ends every session and API key of the user (the per-user
    /// not-before): access tokens carry the login, and a new password must lock out whoever
    /// knew the old one.
    pub async fn update_credentials(
        &self,
        actor: &Principal,
        current_password: Zeroizing<String>,
        new_username: &str,
        new_password: Zeroizing<String>,
        repeated_new_password: Zeroizing<String>,
    ) -> Result<UserView, ServiceError> {
        let new_username = if new_username.trim().is_empty() {
            None
        } else {
            Some(valid_login("new_username", new_username)?)
        };
        let new_password = (!new_password.is_empty()).then_some(new_password);
        if new_username.is_none() && new_password.is_none() {
            return Err(ServiceError::invalid(
                "new_username",
                "give a new username, a new password, or both",
            ));
        }
        if let Some(p) = &new_password {
            let min = password_policy::min_length(&self.store, Some(&actor.user_id)).await?;
            password_policy::check(
                "new_password",
                p,
                "repeated_new_password",
                Some(&repeated_new_password),
                min,
            )?;
        }
        if current_password.is_empty() {
            return Err(ServiceError::invalid("current_password", "is required"));
        }
        let user = self.auth.verify_current_password(actor, "current_password", current_password).await?;
        let hash = match new_password {
            Some(p) => Some(self.auth.hash_new_password(p).await?),
            None => None,
        };
        let id = user.id.clone();
        let rename = new_username.clone();
        self.auth
            .end_user_credentials(&actor.username, &user.id, "user.credentials_change", move |tx| {
                if let Some(name) = &rename {
                    if users::by_username(tx, name)?.is_some_and(|u| u.id != id) {
                        return Err(ServiceError::AlreadyExists(format!(
                            "a user named {name:?} already exists"
                        )));
                    }
                    users::set_username(tx, &id, name)?;
                }
                if let Some(hash) = &hash {
                    users::set_password_hash(tx, &id, hash)?;
                }
                Ok(())
            })
            .await?;
        self.get(&user.id).await
    }

    /// Whether `email` is well formed (INVALID_ARGUMENT otherwise) and not taken.
    pub async fn email_available(&self, email: &str) -> Result<bool, ServiceError> {
        let email = valid_email("email", email)?;
        Ok(self.store.read(move |c| users::by_email(c, &email).map_err(ServiceError::from)).await?.is_none())
    }

    /// Applies a validated profile change to user `id` with its audit record.
    async fn change_profile(
        &self,
        actor: &Principal,
        id: &str,
        change: ProfileChange,
        action: &'static str,
    ) -> Result<UserView, ServiceError> {
        let (actor, id) = (actor.username.clone(), id.to_owned());
        let user = self
            .store
            .write(move |tx| {
                let Some(mut user) = users::by_id(tx, &id)? else {
                    return Err(ServiceError::NotFound(format!("no user {id:?}")));
                };
                let profile = change.apply_to(user.profile.clone())?;
                email_free(tx, profile.email.as_deref(), Some(&id))?;
                users::set_profile(tx, &id, &profile)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor,
                        action,
                        target_type: "user",
                        target_id: &id,
                        // Which fields changed, not their values (personal data stays out of
                        // the audit log's detail).
                        detail: serde_json::json!({
                            "first_name": change.first_name.is_some(),
                            "last_name": change.last_name.is_some(),
                            "phone": change.phone.is_some(),
                            "email": change.email.is_some(),
                        })
                        .to_string(),
                    },
                )?;
                user.profile = profile;
                Ok(user)
            })
            .await?;
        Ok(user.into())
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
    /// One user as `actor` may see it: platform roles any user; organization admins the users
    /// of their organizations; with `organization_id`, only a user privileged in it.
    pub async fn get_scoped(
        &self,
        actor: &Principal,
        id: &str,
        organization_id: &str,
    ) -> Result<UserView, ServiceError> {
        let no_user = || ServiceError::NotFound(format!("no user {:?}", id.trim()));
        let index = self.auth.privilege_index();
        if !id.trim().is_empty() && !index.user_in_scope(actor, id.trim()) {
            return Err(no_user());
        }
        if !organization_id.is_empty() {
            if !actor.in_organization(organization_id) {
                return Err(ServiceError::NotFound(format!("no organization {organization_id:?}")));
            }
            let held = index
                .of_user(id.trim())
                .iter()
                .any(|p| p.organization_id.as_deref() == Some(organization_id));
            if !held {
                return Err(no_user());
            }
        }
        self.get(id).await
    }

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
        let username = valid_login("username", username)?;
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

    /// A page of users, narrowed by organization, role and a search over login, names and
    /// email. Platform roles list anyone; organization administrators must name one of their
    /// organizations.
    pub async fn list(
        &self,
        actor: &Principal,
        filter: ListFilter,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<UserView>, String, u64), ServiceError> {
        let page = paging::decode("page", page_size, page_token)?;
        let search = validate::text("search_line", &filter.search_line, MAX_SEARCH_LEN)?;
        let organization_id = if filter.organization_id.trim().is_empty() {
            String::new()
        } else {
            validate::id("organization_id", &filter.organization_id)?
        };
        if actor.scope != OrgScope::All {
            if organization_id.is_empty() {
                return Err(ServiceError::invalid(
                    "organization_id",
                    "is required for organization administrators",
                ));
            }
            if !actor.in_organization(&organization_id) {
                return Err(ServiceError::PermissionDenied(
                    "you may list only the users of your organizations".into(),
                ));
            }
        }
        let filter = users::UserFilter {
            organization_id,
            role: filter.role.map(|r| r.as_str().to_owned()).unwrap_or_default(),
            search,
        };
        let (records, total) = self
            .store
            .read(move |c| users::list(c, &filter, page.offset, page.limit).map_err(ServiceError::from))
            .await?;
        let next = paging::next_token(page, records.len(), total);
        Ok((records.into_iter().map(UserView::from).collect(), next, total))
    }
}

/// The email must not belong to another user than `except` (INVALID_ARGUMENT is not right
/// here: the input is well formed, the name is taken).
fn email_free(
    conn: &rusqlite::Connection,
    email: Option<&str>,
    except: Option<&str>,
) -> Result<(), ServiceError> {
    let Some(email) = email else { return Ok(()) };
    match users::by_email(conn, email)? {
        Some(u) if Some(u.id.as_str()) != except => {
            Err(ServiceError::AlreadyExists(format!("the email {email:?} is already in use")))
        }
        _ => Ok(()),
    }
}

/// `""` stays empty (unset); anything else must pass `check`.
fn optional(v: &str, check: impl Fn(&str) -> Result<String, ServiceError>) -> Result<String, ServiceError> {
    if v.trim().is_empty() { Ok(String::new()) } else { check(v) }
}

static LOGIN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_]{5,30}$").expect("login pattern"));
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z]{1,50}$").expect("name pattern"));
/// The issue's phone pattern with ASCII digits and spaces.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)^\+?\d*(\s|-)?((\(\d+\))?|\d+)(\s|-)?\d+(\s|-)?\d+(\s|-)?\d+$").expect("phone pattern")
});
/// A dot-atom local part and a dotted host name of letters, digits and inner hyphens.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
    )
    .expect("email pattern")
});

/// A login: `^\w{5,30}$` (ASCII word characters). A user principal name (`user@domain`, see
/// [`validate::owner`]) is accepted too, because card holders sign in with the name their
/// cards are registered to (the card service matches a card's owner on the login).
fn valid_login(field: &str, v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if LOGIN.is_match(v) {
        return Ok(v.to_owned());
    }
    if v.contains('@') && v.len() <= 254 && validate::owner(field, v).is_ok() && EMAIL.is_match(v) {
        return Ok(v.to_owned());
    }
    Err(ServiceError::invalid(field, "must be 5 to 30 of A-Z a-z 0-9 _ (or a user@domain name)"))
}

fn valid_name(field: &str, v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if !NAME.is_match(v) {
        return Err(ServiceError::invalid(field, "must be 1 to 50 letters A-Z a-z"));
    }
    Ok(v.to_owned())
}

fn valid_phone(v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if v.len() > 32 || v.chars().any(char::is_control) || !PHONE.is_match(v) {
        return Err(ServiceError::invalid("phone", "is not a phone number such as +1 (555) 123-4567"));
    }
    Ok(v.to_owned())
}

fn valid_email(field: &str, v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if v.len() < 5 || v.len() > 254 {
        return Err(ServiceError::invalid(field, "must be 5 to 254 characters"));
    }
    if !EMAIL.is_match(v) {
        return Err(ServiceError::invalid(field, format!("{v:?} is not an email address")));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(r: Result<String, ServiceError>) -> bool {
        r.is_ok()
    }

    #[test]
    fn field_rules() {
        for good in ["alice", "bob_1", "A2345678901234567890123456789X", "user1@corp.example"] {
            assert!(ok(valid_login("username", good)), "{good}");
        }
        for bad in ["bob", "has space", "a.b.c.d", &"x".repeat(31), "ünïcode", "x@y"] {
            assert!(!ok(valid_login("username", bad)), "{bad}");
        }
        assert!(ok(valid_name("first_name", "Alice")));
        for bad in ["Al1ce", "Jean-Luc", &"a".repeat(51), "Zoë"] {
            assert!(!ok(valid_name("first_name", bad)), "{bad}");
        }
        for good in ["+1 (555) 123-4567", "555-123-4567", "+44 20 7946 0958", "5551234567", "(555) 123 45 67"]
        {
            assert!(ok(valid_phone(good)), "{good}");
        }
        for bad in ["call me", "+1 555 123 4567 ext", "12\n34 56 78", "١٢٣٤٥"] {
            assert!(!ok(valid_phone(bad)), "{bad}");
        }
        for good in ["a@b.co", "first.last+tag@mail.example.org"] {
            assert!(ok(valid_email("email", good)), "{good}");
        }
        for bad in
            ["a@b", "no-at.example", "a@b..c", "a b@c.de", "x@-y.com", &format!("{}@e.com", "a".repeat(250))]
        {
            assert!(!ok(valid_email("email", bad)), "{bad}");
        }
    }
}
