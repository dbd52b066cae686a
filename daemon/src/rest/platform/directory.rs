//! Batch platform directory routes: authorities and balances, ecosystems, generators, organizations, profiles and users (`/api/v1/...`).

use super::super::Routes;
use super::super::auth::{Rule, guarded};
use super::super::error::PlainShape;
use utoipa_axum::router::OpenApiRouter;

/// Which gRPC method each route mirrors (see [`crate::rest::auth::Rule`]).
pub const RULES: &[Rule] = &[];

pub fn routes() -> Routes {
    guarded::<PlainShape>(OpenApiRouter::new(), RULES)
}
