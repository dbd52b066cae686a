//! Routes about the API itself, open without a credential: the OpenAPI document of every
//! route (built from the handlers' annotations, so it cannot miss one) and the Prometheus
//! metrics.

use super::Routes;
use super::auth::{PUBLIC, Rule, guarded};
use super::error::PlainShape;
use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The rendered document, attached by the app.
#[derive(Debug, Clone)]
pub struct Document(pub Arc<String>);

pub const RULES: &[Rule] = &[Rule("GET /openapi.json", PUBLIC), Rule("GET /metrics", PUBLIC)];

pub fn routes() -> Routes {
    guarded::<PlainShape>(OpenApiRouter::new().routes(routes!(openapi_json)).routes(routes!(metrics)), RULES)
}

/// The OpenAPI 3.1 document of this REST API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
async fn openapi_json(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], doc.0.as_str().to_owned())
}

/// Prometheus metrics: requests by method and code, latencies, PKCS#11 calls and errors,
/// pool waits, batch throughput.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "Prometheus text exposition", content_type = "application/openmetrics-text", body = String)))]
async fn metrics() -> impl IntoResponse {
    ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::global().render())
}
