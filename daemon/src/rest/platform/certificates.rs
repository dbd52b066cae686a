//! Batch platform certificate routes (`/api/v1/certificates/...`, `/api/v1/devices`): find and revoke.

use super::super::Routes;
use super::super::auth::{Rule, guarded};
use super::super::error::PlainShape;
use utoipa_axum::router::OpenApiRouter;

/// Which gRPC method each route mirrors (see [`crate::rest::auth::Rule`]).
pub const RULES: &[Rule] = &[];

pub fn routes() -> Routes {
    guarded::<PlainShape>(OpenApiRouter::new(), RULES)
}
