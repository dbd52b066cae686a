//! First stop of every REST request that matched a route: finds the route's rule (which gRPC
//! method it mirrors), reads the credential (Bearer token, an API key as the HTTP Basic user
//! with an empty password, or the TLS client certificate), and runs the same authorization as
//! gRPC (service::authz). The caller's [`Principal`] goes into the request's extensions.

use super::error::{ErrorShape, Failure, Kind};
use super::extract::Peer;
use crate::service::Services;
use crate::service::authz::{self, Credential};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// A route that needs no credential (sign-in, health probes, metrics, the OpenAPI document).
pub const PUBLIC: &str = "public";

/// One route's rule: `"GET /icmapi/user/getcards"` (the method and the route template as
/// registered) and the gRPC method it mirrors, or [`PUBLIC`]. Deny by default: a route
/// without a rule is refused.
#[derive(Debug, Clone, Copy)]
pub struct Rule(pub &'static str, pub &'static str);

/// Puts a family's routes behind the guard: `rules` says which gRPC method each mirrors, `S`
/// is the family's error shape. Call it last in the family's `routes()`, after every route.
pub fn guarded<S: ErrorShape>(routes: super::Routes, rules: &'static [Rule]) -> super::Routes {
    // A family without rules has no routes (the unit tests in rest/mod.rs fail when a
    // documented route lacks a rule), and axum refuses a route layer over no routes.
    if rules.is_empty() {
        return routes;
    }
    routes
        .route_layer(axum::middleware::from_fn(move |req: Request, next: Next| guard::<S>(rules, req, next)))
}

/// The rule of a matched route.
pub fn rule_for(rules: &[Rule], method: &axum::http::Method, template: &str) -> Option<&'static str> {
    rules
        .iter()
        .find(|Rule(route, _)| {
            route.split_once(' ').is_some_and(|(m, p)| m == method.as_str() && p == template)
        })
        .map(|Rule(_, rpc)| *rpc)
}

/// The credential the request carries. A malformed Authorization header is refused rather
/// than ignored, so a typo never silently falls back to the client certificate.
fn credential<'a>(
    headers: &axum::http::HeaderMap,
    peer: Option<&'a Peer>,
    basic_key: &'a mut Zeroizing<String>,
) -> Result<Credential<'a>, &'static str> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(match peer.and_then(|p| p.client_certificate.as_deref()) {
            Some(der) => Credential::ClientCertificate(der),
            None => Credential::None,
        });
    };
    let value = value.to_str().map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, rest) = value.split_once(' ').ok_or("the Authorization header has no scheme")?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        // Borrowing from the header map is not possible past this function; copy into the
        // zeroized buffer the caller owns.
        **basic_key = rest.to_owned();
        return Ok(Credential::Token(basic_key.as_str()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded =
            Zeroizing::new(STANDARD.decode(rest).map_err(|_| "the Basic credentials are not base64")?);
        let text = std::str::from_utf8(&decoded).map_err(|_| "the Basic credentials are not UTF-8")?;
        let (user, password) = text.split_once(':').ok_or("the Basic credentials have no ':'")?;
        if !password.is_empty() || user.is_empty() {
            return Err("HTTP Basic takes an API key as the user name and an empty password");
        }
        **basic_key = user.to_owned();
        return Ok(Credential::Token(basic_key.as_str()));
    }
    Err("the Authorization scheme must be Bearer or Basic")
}

/// The middleware (one instance per API family, answering in its error shape `S`). The
/// services come from the request's extensions (the app attaches them).
async fn guard<S: ErrorShape>(rules: &'static [Rule], mut req: Request, next: Next) -> Response {
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let Some(services) = req.extensions().get::<Services>().cloned() else {
        return Failure::<S>::new(Kind::Internal, "the REST app has no services attached").into_response();
    };
    let Some(rpc) = rule_for(rules, req.method(), &template) else {
        return Failure::<S>::new(
            Kind::PermissionDenied,
            format!("no authorization rule for {} {template}", req.method()),
        )
        .into_response();
    };
    let mut buffer = Zeroizing::new(String::new());
    let decided = if rpc == PUBLIC {
        // A credential on a public route is not needed; ignore it rather than fail the call.
        Ok(None)
    } else {
        let peer = req.extensions().get::<Peer>();
        match credential(req.headers(), peer, &mut buffer) {
            Err(why) => Err(Failure::<S>::new(Kind::Unauthenticated, why)),
            Ok(cred) => {
                authz::authorize(&services.auth, &services.admins, rpc, cred).map_err(Failure::<S>::from)
            }
        }
    };
    let cap = req.extensions().get::<super::BodyCap>().map_or(0, |c| c.0);
    let mut response = match decided {
        Ok(principal) => {
            if let Some(p) = principal {
                tracing::Span::current().record("principal", p.username.as_str());
                req.extensions_mut().insert(p);
            }
            match declared_length(&req) {
                // Refused before reading: the client learns the limit without sending it all.
                Some(len) if len > cap => {
                    let _ = axum::body::to_bytes(req.into_body(), DRAIN_UNAUTHENTICATED).await;
                    Failure::<S>::new(
                        Kind::TooLarge,
                        format!("the request body ({len} bytes) is larger than the {cap} bytes this server accepts"),
                    )
                    .into_response()
                }
                _ => next.run(read_body(req, cap).await).await,
            }
        }
        Err(failure) => {
            tracing::info!(message = %failure.problem.message, "rejected");
            // Read what the client sent (within reason) before answering: an answer that
            // leaves a body unread closes the connection, and the client, still sending,
            // may see a reset instead of this answer.
            let _ = axum::body::to_bytes(req.into_body(), cap.min(DRAIN_UNAUTHENTICATED)).await;
            failure.into_response()
        }
    };
    response.extensions_mut().insert(super::RouteLabel(template));
    response
}

/// The body length the client declared (Content-Length), if any.
fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// At most this much of a refused request's body is read before answering.
const DRAIN_UNAUTHENTICATED: usize = 1024 * 1024;

/// Reads an admitted request's body (up to `cap`) before the handler runs, so a handler that
/// refuses on its query or path before looking at the body never leaves it unread on the
/// connection (see the refusal path above). A body without a declared length is left to the
/// extractors, which stop at `cap` and answer 413 in the family's shape.
async fn read_body(req: Request, cap: usize) -> Request {
    match declared_length(&req) {
        Some(len) if len <= cap => {
            let (parts, body) = req.into_parts();
            match axum::body::to_bytes(body, cap).await {
                Ok(bytes) => Request::from_parts(parts, axum::body::Body::from(bytes)),
                // The connection broke mid-body: the handler's extractor sees an empty body
                // and answers for it; nobody is listening anyway.
                Err(_) => Request::from_parts(parts, axum::body::Body::empty()),
            }
        }
        _ => req,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, Method};

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, HeaderValue::from_str(auth).expect("ascii"));
        h
    }

    #[test]
    fn an_api_key_is_the_basic_user_with_an_empty_password() {
        let mut buf = Zeroizing::new(String::new());
        let h = headers(&format!("Basic {}", STANDARD.encode("chk_abc_def:")));
        assert!(matches!(credential(&h, None, &mut buf), Ok(Credential::Token("chk_abc_def"))));
        let mut buf = Zeroizing::new(String::new());
        let h = headers(&format!("Basic {}", STANDARD.encode("admin:secret")));
        assert!(credential(&h, None, &mut buf).is_err(), "a password is refused, not tried");
    }

    #[test]
    fn bearer_wins_and_junk_is_refused() {
        let mut buf = Zeroizing::new(String::new());
        assert!(matches!(
            credential(&headers("Bearer t.o.k"), None, &mut buf),
            Ok(Credential::Token("t.o.k"))
        ));
        let mut buf = Zeroizing::new(String::new());
        assert!(credential(&headers("Digest x"), None, &mut buf).is_err());
        let mut buf = Zeroizing::new(String::new());
        assert!(matches!(credential(&HeaderMap::new(), None, &mut buf), Ok(Credential::None)));
    }

    #[test]
    fn rules_match_method_and_template_exactly() {
        const RULES: &[Rule] = &[Rule("GET /a/{id}", "x"), Rule("DELETE /a/{id}", "y")];
        assert_eq!(rule_for(RULES, &Method::GET, "/a/{id}"), Some("x"));
        assert_eq!(rule_for(RULES, &Method::DELETE, "/a/{id}"), Some("y"));
        assert_eq!(rule_for(RULES, &Method::PUT, "/a/{id}"), None);
        assert_eq!(rule_for(RULES, &Method::GET, "/a"), None);
    }
}
