//! REST routes of the appliance API (`/api/v1/system/...`, `/api/v1/realm_auth`): sessions, API keys, device-certificate CSRs, health, system information, backup and restore.

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::ApplianceShape;
use utoipa_axum::router::OpenApiRouter;

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[];

pub fn routes() -> Routes {
    guarded::<ApplianceShape>(OpenApiRouter::new(), RULES)
}
