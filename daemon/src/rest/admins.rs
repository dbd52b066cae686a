//! REST routes of the administrator API (`/v1/admins`), on the admin service.

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::AdminShape;
use utoipa_axum::router::OpenApiRouter;

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[];

pub fn routes() -> Routes {
    guarded::<AdminShape>(OpenApiRouter::new(), RULES)
}
