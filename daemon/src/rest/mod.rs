//! Wire layer for REST: the thin shim on the paths existing tools already call. Each route
//! decodes, calls the same service function its gRPC twin calls, and encodes; no logic lives
//! here. This module owns the listener (plain or TLS, with the client certificate handed to
//! the routes), the router with every API family, the OpenAPI document built from the
//! handlers' annotations, and the per-request span and metrics.
//!
//! Families, each with its own error shape ([`error`]) and authorization rules ([`auth`]):
//! `icmapi` (card management), `certstore` (the device certificate store), `appliance`
//! (`/api/v1/system/...`), `admins` (`/v1/admins`), `platform` (the batch platform's
//! `/auth` and `/api/v1`), and `meta` (`/openapi.json`, `/metrics`).

mod admins;
mod appliance;
pub mod auth;
mod certstore;
pub mod error;
pub mod extract;
mod icmapi;
mod meta;
mod platform;

use crate::service::Services;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::{Failure, Kind, PlainShape};
use extract::Peer;
use hsm_config::ServerConfig;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls;
use tower::ServiceExt;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// A family's routes, merged into the one router. `S` is the router's state.
pub type Routes = OpenApiRouter<Services>;

/// Why the REST server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("REST TLS: cannot read {path}: {message}")]
    TlsFile { path: String, message: String },
    #[error("REST TLS configuration: {0}")]
    Tls(String),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cardhsm REST shim",
        description = "The paths existing card-management, device-certificate, appliance, \
                       batch-platform and administrator tools call, served by cardhsm. Each \
                       route mirrors a cardhsm.v1 gRPC method (same rules, same behaviour)."
    ),
    // The error bodies are referenced from every route's `*ErrorAnswers`, which do not add
    // the schemas themselves.
    components(schemas(
        error::schema::PlainErrorBody,
        error::schema::CertErrorBody,
        error::schema::ApplianceErrorBody,
        error::schema::AdminErrorBody,
    )),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The three ways to authenticate, declared once for the document.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        // An API key (from realm_auth) as the user name, with an empty password.
        components.add_security_scheme("apiKey", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme(
            "clientCertificate",
            SecurityScheme::MutualTls { description: None, extensions: None, deprecated: None },
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("apiKey", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("clientCertificate", Vec::<String>::new()),
        ]);
    }
}

/// Every family's routes, and the OpenAPI document describing exactly them.
fn routes() -> (axum::Router<Services>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::routes())
        .merge(icmapi::routes())
        .merge(certstore::routes())
        .merge(appliance::routes())
        .merge(admins::routes())
        .merge(platform::routes())
        .split_for_parts()
}

/// Every family's authorization rules (the tests check them against the document).
#[cfg(test)]
fn all_rules() -> Vec<auth::Rule> {
    [meta::RULES, icmapi::RULES, certstore::RULES, appliance::RULES, admins::RULES, &platform::rules()]
        .concat()
}

/// The OpenAPI document (for tests and tooling that want it without a running server).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The application: routes, fallbacks, the body limit and the observing layer.
pub fn app(services: Services, max_body_bytes: usize) -> axum::Router {
    let (router, doc) = routes();
    let doc = meta::Document(Arc::new(doc.to_pretty_json().unwrap_or_default()));
    router
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(axum::Extension(doc))
        .layer(axum::Extension(services.clone()))
        .layer(axum::Extension(BodyCap(max_body_bytes)))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(observe))
        .with_state(services)
}

async fn no_route(req: Request) -> Response {
    Failure::<PlainShape>::new(Kind::NoRoute, format!("no route for {} {}", req.method(), req.uri().path()))
        .into_response()
}

async fn no_method(req: Request) -> Response {
    Failure::<PlainShape>::new(
        Kind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .into_response()
}

/// The token a request names, else the daemon's own token: the device APIs' clients name
/// none (their device has one certificate store).
async fn named_or_daemon_token(
    services: &Services,
    token: Option<String>,
) -> Result<String, crate::service::ServiceError> {
    match token {
        Some(t) => Ok(t),
        None => services.issuance.daemon_token().await,
    }
}

/// The largest request body the app takes (the guard reads bodies up to it).
#[derive(Debug, Clone, Copy)]
pub struct BodyCap(pub usize);

/// The route template a response was produced for (set by the guard), for metrics.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Outermost layer: a span per request (request id, method, path, principal) and the
/// request's metrics. The query string is never logged: some carry codes.
async fn observe(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "rest",
        request_id = %request_id,
        method = %method,
        path = %req.uri().path(),
        principal = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|r| format!("{method} {}", r.0))
        .unwrap_or_else(|| "unknown".to_owned());
    crate::metrics::global().observe_request(
        "rest",
        &route,
        status.as_str(),
        started.elapsed().as_secs_f64(),
    );
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "handled"));
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// The TLS acceptor for `[server.tls]`: the same certificate as gRPC, and like gRPC a client
/// certificate signed by `client_ca_file` is required when that is set.
fn tls_acceptor(tls: &hsm_config::TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_error = |p: &std::path::Path, e: &dyn std::fmt::Display| ServeError::TlsFile {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(&tls.cert_file, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| file_error(&tls.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, &e))? {
                roots
                    .add(cert.map_err(|e| file_error(ca, &e))?)
                    .map_err(|e| ServeError::Tls(e.to_string()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ServeError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (at most 8 s).
pub async fn serve(
    config: &ServerConfig,
    listener: tokio::net::TcpListener,
    services: Services,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
    // The same bound as gRPC's per-message limit: several uploads fit, then fields are checked.
    let max_body =
        usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX).saturating_mul(2) + 64 * 1024;
    let app = app(services, max_body);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that opens a connection and sends nothing does not hold it forever.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "REST accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (app, acceptor, builder) = (app.clone(), acceptor.clone(), builder.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let serve = |io, client_certificate: Option<Arc<Vec<u8>>>| {
                let peer = Peer { remote, client_certificate };
                let service = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req
                });
                let service = hyper_util::service::TowerToHyperService::new(service);
                let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
                watcher.watch(conn)
            };
            let result = match acceptor {
                None => serve(TokioIo::new(Box::new(stream) as Box<dyn Io>), None).await,
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "REST TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "REST TLS handshake timed out");
                                return;
                            }
                        };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(c.to_vec()));
                    serve(TokioIo::new(Box::new(tls) as Box<dyn Io>), cert).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "REST connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(8), graceful.shutdown()).await.is_err() {
        tracing::warn!("REST connections still open at shutdown");
    }
    Ok(())
}

/// A plain or TLS stream, so one connection path serves both.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations() -> Vec<(String, String)> {
        let doc = serde_json::to_value(openapi_document()).expect("document");
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    ops.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    #[test]
    fn every_documented_route_has_a_rule_naming_a_real_rpc() {
        let rules = all_rules();
        for (method, path) in operations() {
            let m = axum::http::Method::from_bytes(method.as_bytes()).expect("method");
            let rpc = auth::rule_for(&rules, &m, &path);
            let Some(rpc) = rpc else { panic!("{method} {path} has no authorization rule") };
            assert!(
                rpc == auth::PUBLIC || crate::service::authz::rule_for(rpc).is_some(),
                "{method} {path} mirrors {rpc}, which has no gRPC rule"
            );
        }
    }

    #[test]
    fn every_rule_is_a_documented_route() {
        let ops = operations();
        for auth::Rule(route, _) in all_rules() {
            let (m, p) = route.split_once(' ').expect("METHOD /path");
            assert!(
                ops.iter().any(|(om, op)| om == m && op == p),
                "rule for {route}, which is not a documented route"
            );
        }
    }

    /// utoipa keeps one namespace of component schemas and a later family's schema silently
    /// replaces an earlier one of the same name: two different types with one name would
    /// leave a route described wrongly.
    #[test]
    fn no_two_families_give_one_schema_name_different_shapes() {
        let families: Vec<(&str, Routes)> = vec![
            ("meta", meta::routes()),
            ("icmapi", icmapi::routes()),
            ("certstore", certstore::routes()),
            ("appliance", appliance::routes()),
            ("admins", admins::routes()),
            ("platform::auth", platform::auth::routes()),
            ("platform::batches", platform::batches::routes()),
            ("platform::certificates", platform::certificates::routes()),
            ("platform::directory", platform::directory::routes()),
        ];
        let mut seen: std::collections::BTreeMap<String, (&str, serde_json::Value)> = Default::default();
        for (family, routes) in families {
            let doc = serde_json::to_value(routes.into_openapi()).expect("document");
            let Some(schemas) = doc["components"]["schemas"].as_object() else { continue };
            for (name, schema) in schemas {
                if let Some((other, earlier)) = seen.get(name) {
                    assert_eq!(earlier, schema, "schema {name} differs between {other} and {family}");
                } else {
                    seen.insert(name.clone(), (family, schema.clone()));
                }
            }
        }
    }

    #[test]
    fn no_two_rules_for_one_route() {
        let rules = all_rules();
        let mut seen = std::collections::BTreeSet::new();
        for auth::Rule(route, _) in rules {
            assert!(seen.insert(route), "two rules for {route}");
        }
    }
}
