//! First stop of every gRPC request: a tower layer that reads the bearer token, checks it with
//! the auth service, looks the method up in the authorization table (service::authz), and
//! either rejects the request or passes it on with the [`Principal`] in its extensions, inside
//! a tracing span carrying the request id, principal and method.

use crate::service::Principal;
use crate::service::admins::AdminService;
use crate::service::auth::AuthService;
use crate::service::authz::{self, Credential};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tracing::Instrument;

#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Arc<AuthService>,
    admins: Arc<AdminService>,
}

impl AuthLayer {
    pub fn new(auth: Arc<AuthService>, admins: Arc<AdminService>) -> Self {
        AuthLayer { auth, admins }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthMiddleware<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthMiddleware { inner, auth: self.auth.clone(), admins: self.admins.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct AuthMiddleware<S> {
    inner: S,
    auth: Arc<AuthService>,
    admins: Arc<AdminService>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for AuthMiddleware<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The service that was polled ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = std::time::Instant::now();
        let method = req.uri().path().to_owned();
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let peer = client_certificates(&req);
        let client_cert = peer.as_ref().and_then(|chain| chain.first()).map(|c| c.as_ref());
        let decision = decide(&self.auth, &self.admins, &method, req.headers(), client_cert);
        let principal_name = match &decision {
            Ok(Some(p)) => p.username.clone(),
            _ => String::new(),
        };
        let span = tracing::info_span!("rpc", request_id = %request_id, method = %method, principal = %principal_name);
        match decision {
            Ok(principal) => {
                if let Some(p) = principal {
                    req.extensions_mut().insert(p);
                }
                Box::pin(
                    async move {
                        let response = inner.call(req).await;
                        if let Ok(r) = &response {
                            let code =
                                r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
                            tracing::debug!(grpc_status = code, "handled");
                        }
                        // Counted when the status is known (headers or, for a success or a
                        // stream, the trailers).
                        response.map(|r| crate::metrics::observe_grpc(&method, started, r))
                    }
                    .instrument(span),
                )
            }
            Err(status) => {
                span.in_scope(
                    || tracing::info!(code = ?status.code(), message = status.message(), "rejected"),
                );
                let response = crate::metrics::observe_grpc(&method, started, status.into_http());
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// Authenticates and authorizes one call (the rules are shared with REST: service::authz).
fn decide(
    auth: &AuthService,
    admins: &AdminService,
    method: &str,
    headers: &http::HeaderMap,
    client_cert: Option<&[u8]>,
) -> Result<Option<Principal>, tonic::Status> {
    let credential = match (bearer(headers), client_cert) {
        (Some(token), _) => Credential::Token(token),
        (None, Some(der)) => Credential::ClientCertificate(der),
        (None, None) => Credential::None,
    };
    authz::authorize(auth, admins, method, credential).map_err(super::status::to_status)
}

/// The verified client certificate chain of a client-certificate TLS connection, leaf first.
fn client_certificates<B>(
    req: &http::Request<B>,
) -> Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?.peer_certs()
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// The caller of a request that passed [`AuthLayer`].
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("not authenticated"))
}
