//! Domain layer: what the daemon does, independent of the wire. The gRPC (and later REST)
//! layers call these services with an authenticated [`Principal`]; the services validate
//! input, apply the rules, and drive the store and token back ends.

pub mod auth;
pub mod authz;
pub mod cards;
pub mod certstore;
mod error;
pub mod issuance;
pub mod organizations;
pub mod paging;
pub mod readers;
pub mod users;
pub mod validate;

pub use error::ServiceError;

use crate::store::Store;
use crate::token::TokenManager;
use std::sync::Arc;

/// Roles a principal may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// System administrator: everything.
    Admin,
    /// Card officer: card lifecycle and tokens.
    Operator,
    /// End user: reads their own cards.
    User,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Operator => "OPERATOR",
            Role::User => "USER",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s))
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
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Operators and administrators act on anyone's cards; users only on their own.
    pub fn is_card_officer(&self) -> bool {
        self.has_role(Role::Admin) || self.has_role(Role::Operator)
    }
}

/// Every service, sharing the back ends. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub auth: Arc<auth::AuthService>,
    pub cards: Arc<cards::CardService>,
    pub certstore: Arc<certstore::CertStoreService>,
    pub issuance: Arc<issuance::IssuanceService>,
    pub organizations: Arc<organizations::OrganizationService>,
    pub readers: Arc<readers::ReaderService>,
    pub users: Arc<users::UserService>,
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
        let certstore = Arc::new(certstore::CertStoreService::new(config, store.clone(), tokens.clone()));
        let issuance = Arc::new(issuance::IssuanceService::new(config, store.clone(), tokens.clone())?);
        let readers = Arc::new(readers::ReaderService::new(&config.readers)?);
        let cards = Arc::new(cards::CardService::new(
            config,
            store.clone(),
            tokens.clone(),
            issuance.clone(),
            readers.clone(),
        )?);
        let organizations = Arc::new(organizations::OrganizationService::new(store.clone()));
        let users = Arc::new(users::UserService::new(store, auth.clone()));
        Ok(Services { auth, cards, certstore, issuance, organizations, readers, users })
    }
}
