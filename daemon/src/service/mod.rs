//! Domain layer: what the daemon does, independent of the wire. The gRPC (and later REST)
//! layers call these services with an authenticated [`Principal`]; the services validate
//! input, apply the rules, and drive the store and token back ends.

pub mod admins;
pub mod auth;
pub mod authz;
pub mod backup;
pub mod batches;
pub mod cards;
pub mod certstore;
pub mod ecosystems;
mod error;
pub mod issuance;
pub mod notify;
pub mod organizations;
pub mod paging;
pub mod password_policy;
pub mod password_reset;
pub mod privileges;
pub mod readers;
pub mod system;
pub mod users;
pub mod validate;

pub use error::ServiceError;

use crate::store::Store;
use crate::token::TokenManager;
use std::sync::Arc;

/// Roles a principal may hold. Two families share the enum:
/// - platform roles, held globally: `SuperAdmin` (manages administrators; always also holds
///   `Admin`), `Admin` (everything else), `Operator` (card officer: card lifecycle, tokens);
/// - organization roles, each held through a privilege in an ecosystem and organization:
///   `EcoAdmin` (every organization of its ecosystem), `OrgAdmin` (its organization),
///   `User` (its own cards, and batches with the profiles its privilege names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    SuperAdmin,
    Admin,
    Operator,
    EcoAdmin,
    OrgAdmin,
    User,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::SuperAdmin, Role::Admin, Role::Operator, Role::EcoAdmin, Role::OrgAdmin, Role::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "SUPER_ADMIN",
            Role::Admin => "ADMIN",
            Role::Operator => "OPERATOR",
            Role::EcoAdmin => "ECO_ADMIN",
            Role::OrgAdmin => "ORG_ADMIN",
            Role::User => "USER",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    /// Platform roles see every organization.
    pub fn is_platform(self) -> bool {
        matches!(self, Role::SuperAdmin | Role::Admin | Role::Operator)
    }
}

/// Which organizations' records a principal may see and change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OrgScope {
    /// Platform roles: every organization.
    All,
    /// Organization roles: these organizations (an ECO_ADMIN's are every organization of its
    /// ecosystems, resolved when the credential is checked).
    Only(std::collections::BTreeSet<String>),
    /// No organization at all (a user without privileges).
    #[default]
    None,
}

impl OrgScope {
    pub fn contains(&self, organization_id: &str) -> bool {
        match self {
            OrgScope::All => true,
            OrgScope::Only(ids) => ids.contains(organization_id),
            OrgScope::None => false,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<Role>,
    /// Unix seconds when the credential expires (0 for an API key, which lives until revoked).
    pub expires_at: i64,
    /// The session the credential belongs to (an API key is a session of its realm).
    pub session_id: String,
    /// The API key presented, when the credential is one.
    pub api_key_id: Option<String>,
    /// The organizations this caller acts in.
    pub scope: OrgScope,
    /// Profiles the caller's USER privileges allow (platform roles, ECO_ADMIN and ORG_ADMIN
    /// may use every profile of their organizations' authorities).
    pub profiles: std::collections::BTreeSet<String>,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Operators and administrators act on anyone's cards; users only on their own.
    pub fn is_card_officer(&self) -> bool {
        self.has_role(Role::Admin) || self.has_role(Role::Operator)
    }

    /// Whether the caller may see and act on records of `organization_id`.
    pub fn in_organization(&self, organization_id: &str) -> bool {
        self.scope.contains(organization_id)
    }

    /// Whether the caller may issue with `profile` (batches, certificates).
    pub fn may_use_profile(&self, profile: &str) -> bool {
        self.roles.iter().any(|r| *r != Role::User) || self.profiles.contains(profile)
    }
}

/// Every service, sharing the back ends. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub admins: Arc<admins::AdminService>,
    pub auth: Arc<auth::AuthService>,
    pub batches: Arc<batches::BatchService>,
    pub cards: Arc<cards::CardService>,
    pub certstore: Arc<certstore::CertStoreService>,
    pub issuance: Arc<issuance::IssuanceService>,
    pub organizations: Arc<organizations::OrganizationService>,
    pub password_reset: Arc<password_reset::PasswordResetService>,
    pub readers: Arc<readers::ReaderService>,
    pub users: Arc<users::UserService>,
    pub ecosystems: Arc<ecosystems::EcosystemService>,
    pub privileges: Arc<privileges::PrivilegeService>,
    pub system: Arc<system::SystemService>,
}

impl Services {
    /// Builds the services over opened back ends (start-up work such as the bootstrap
    /// administrator is done by [`auth::AuthService::open`]).
    pub fn new(
        config: &hsm_config::Config,
        store: Store,
        tokens: TokenManager,
    ) -> Result<Services, ServiceError> {
        let auth = Arc::new(auth::AuthService::open(&config.auth, store.clone())?);
        let admins = Arc::new(admins::AdminService::open(config, store.clone())?);
        let certstore = Arc::new(certstore::CertStoreService::new(config, store.clone(), tokens.clone()));
        let issuance = Arc::new(issuance::IssuanceService::new(config, store.clone(), tokens.clone())?);
        let readers = Arc::new(readers::ReaderService::new(&config.readers)?);
        let cards = Arc::new(cards::CardService::new(
            config,
            store.clone(),
            tokens.clone(),
            issuance.clone(),
            readers.clone(),
            auth.privilege_index(),
        )?);
        let privilege_index = auth.privilege_index();
        let organizations =
            Arc::new(organizations::OrganizationService::new(store.clone(), privilege_index.clone()));
        let ecosystems = Arc::new(ecosystems::EcosystemService::new(store.clone(), privilege_index.clone()));
        let privileges = Arc::new(privileges::PrivilegeService::new(
            store.clone(),
            privilege_index,
            issuance.profiles().iter().map(|p| p.id.clone()).collect(),
        ));
        let password_reset =
            Arc::new(password_reset::PasswordResetService::new(config, store.clone(), auth.clone())?);
        let batches = Arc::new(batches::BatchService::new(config, store.clone(), issuance.clone())?);
        let system = Arc::new(system::SystemService::new(
            config,
            store.clone(),
            tokens,
            readers.clone(),
            batches.clone(),
        ));
        let users = Arc::new(users::UserService::new(store, auth.clone()));
        Ok(Services {
            admins,
            auth,
            batches,
            cards,
            certstore,
            ecosystems,
            issuance,
            organizations,
            password_reset,
            privileges,
            readers,
            system,
            users,
        })
    }
}
