//! REST routes of the device certificate store (`/api/cert/user`, `/api/cert/ca`), on the certificate-store service, answering in the `{"success": ..}` envelope.

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::CertShape;
use utoipa_axum::router::OpenApiRouter;

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[];

pub fn routes() -> Routes {
    guarded::<CertShape>(OpenApiRouter::new(), RULES)
}
