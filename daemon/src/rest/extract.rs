//! Request decoding for the REST handlers: JSON bodies, query strings, path parameters and
//! multipart forms, each refused in the route family's error shape with the field at fault
//! named (never axum's plain-text rejections), plus the caller and connection facts the
//! authentication middleware attached.

use super::error::{ErrorShape, Failure, Kind, Problem};
use crate::service::Principal;
use crate::service::auth::ClientInfo;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

/// Facts about the connection a request came on, attached by the listener.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote: SocketAddr,
    /// The verified client certificate (DER, leaf) of a client-certificate TLS connection.
    pub client_certificate: Option<Arc<Vec<u8>>>,
}

/// Where a sign-in comes from, as the gRPC handlers record it: the remote address and the
/// `User-Agent` header.
pub fn client_info(parts: &Parts) -> ClientInfo {
    ClientInfo {
        source_ip: parts.extensions.get::<Peer>().map(|p| p.remote.ip().to_string()).unwrap_or_default(),
        agent: parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect())
            .unwrap_or_default(),
    }
}

/// The sign-in facts of a request, as an extractor.
#[derive(Debug)]
pub struct Client(pub ClientInfo);

impl<St: Send + Sync> FromRequestParts<St> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        Ok(Client(client_info(parts)))
    }
}

/// The authenticated caller of a route whose rule is not public (the middleware put it there).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<St: Send + Sync> FromRequestParts<St> for Caller {
    type Rejection = Failure<super::error::PlainShape>;
    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| Failure::new(Kind::Unauthenticated, "not authenticated"))
    }
}

/// Turns serde's complaint into a problem naming the field by its path in the input.
fn decode_problem<E: std::fmt::Display>(err: serde_path_to_error::Error<E>, what: &str) -> Problem {
    let path = err.path().to_string();
    let inner = err.into_inner().to_string();
    // serde names a missing field in the message ("missing field `reason`"); take it as the
    // field at fault when the path is the root.
    let field = if path == "." || path.is_empty() {
        inner.split('`').nth(1).map(str::to_owned).unwrap_or_else(|| what.to_owned())
    } else {
        path
    };
    Problem::invalid(field, inner)
}

fn body_problem(rejection: BytesRejection) -> Problem {
    let status = rejection.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(Kind::TooLarge, "the request body is larger than this server accepts")
    } else {
        Problem::new(Kind::Malformed, format!("cannot read the request body: {}", rejection.body_text()))
    }
}

/// Parses a JSON document into `T`, naming the field that does not fit. The text is parsed
/// first and decoded second, so a value of the wrong kind (a number for an enum) is named as
/// a wrong value of its field rather than taken for broken JSON.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::new(Kind::Malformed, format!("the body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| decode_problem(e, "body"))
}

const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";

/// A JSON request body. A content type other than JSON is refused (415); a missing one, or
/// curl's default form-urlencoded, is taken as JSON, since many scripts send no other.
#[derive(Debug)]
pub struct JsonBody<T, S>(pub T, pub PhantomData<fn() -> S>);

impl<T, S, St> FromRequest<St> for JsonBody<T, S>
where
    T: DeserializeOwned,
    S: ErrorShape,
    St: Send + Sync,
{
    type Rejection = Failure<S>;
    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(axum::http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            // curl's `-d` labels a JSON body form-urlencoded unless told otherwise, and the
            // scripts this shim serves were written against servers that took it: such a body
            // is read as JSON too (a real form then fails as "not valid JSON").
            let json_like =
                essence == "application/json" || essence.ends_with("+json") || essence == FORM_URLENCODED;
            if !json_like {
                return Err(Failure::new(
                    Kind::UnsupportedMediaType,
                    format!("the body must be application/json, not {essence:?}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_problem)?;
        Ok(JsonBody(parse_json(&bytes)?, PhantomData))
    }
}

/// A plain-text body (a bare refresh token, a rejection reason), UTF-8, surrounding
/// whitespace trimmed.
#[derive(Debug)]
pub struct TextBody<S>(pub String, pub PhantomData<fn() -> S>);

impl<S: ErrorShape, St: Send + Sync> FromRequest<St> for TextBody<S> {
    type Rejection = Failure<S>;
    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_problem)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Problem::new(Kind::Malformed, "the body is not UTF-8 text"))?;
        Ok(TextBody(text.trim().to_owned(), PhantomData))
    }
}

/// A query string decoded into `T` (unknown parameters are ignored, as those clients send
/// extras); a parameter that does not fit is named.
#[derive(Debug)]
pub struct QueryOf<T, S>(pub T, pub PhantomData<fn() -> S>);

impl<T, S, St> FromRequestParts<St> for QueryOf<T, S>
where
    T: DeserializeOwned,
    S: ErrorShape,
    St: Send + Sync,
{
    type Rejection = Failure<S>;
    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value = serde_path_to_error::deserialize(de).map_err(|e| decode_problem(e, "query"))?;
        Ok(QueryOf(value, PhantomData))
    }
}

/// Path parameters decoded into `T`.
#[derive(Debug)]
pub struct PathOf<T, S>(pub T, pub PhantomData<fn() -> S>);

impl<T, S, St> FromRequestParts<St> for PathOf<T, S>
where
    T: DeserializeOwned + Send,
    S: ErrorShape,
    St: Send + Sync,
{
    type Rejection = Failure<S>;
    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathOf(value, PhantomData)),
            Err(rejection) => {
                Err(Failure::new(Kind::Invalid, format!("invalid path: {}", rejection.body_text())))
            }
        }
    }
}

/// One part of a multipart form, read whole (the body limit bounds it). Parts carry keys and
/// passwords: Debug shows only the name, file name, type and size.
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// A multipart/form-data body, every part read.
#[derive(Debug)]
pub struct Form<S> {
    pub parts: Vec<Part>,
    shape: PhantomData<fn() -> S>,
}

impl<S: ErrorShape> Form<S> {
    /// The first part called `name`.
    pub fn get(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Every part called `name` (e.g. several `files`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Part> + 'a {
        self.parts.iter().filter(move |p| p.name == name)
    }

    /// The part called `name`, or an error naming it.
    pub fn required(&self, name: &str) -> Result<&Part, Failure<S>> {
        self.get(name).ok_or_else(|| Failure::invalid(name, "is required"))
    }

    /// The part called `name` as UTF-8 text (trimmed), if present.
    pub fn text(&self, name: &str) -> Result<Option<String>, Failure<S>> {
        self.get(name)
            .map(|p| {
                std::str::from_utf8(&p.data)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| Failure::invalid(name, "is not UTF-8 text"))
            })
            .transpose()
    }
}

impl<S: ErrorShape, St: Send + Sync> FromRequest<St> for Form<S> {
    type Rejection = Failure<S>;
    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let mut multipart = axum::extract::Multipart::from_request(req, state).await.map_err(|e| {
            Problem::new(
                Kind::UnsupportedMediaType,
                format!("the body must be multipart/form-data: {}", e.body_text()),
            )
        })?;
        let mut parts = Vec::new();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(multipart_problem(e).into()),
            };
            let name = field.name().unwrap_or("").to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let data = field.bytes().await.map_err(multipart_problem)?;
            parts.push(Part { name, file_name, content_type, data });
        }
        Ok(Form { parts, shape: PhantomData })
    }
}

fn multipart_problem(e: axum::extract::multipart::MultipartError) -> Problem {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(Kind::TooLarge, "the request body is larger than this server accepts")
    } else {
        Problem::new(Kind::Malformed, format!("cannot read the multipart body: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "fields are only decoded")]
    struct Revoke {
        reason: u32,
        comment: Option<String>,
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let p = parse_json::<Revoke>(br#"{"reason": "five"}"#).expect_err("a string");
        assert_eq!((p.kind, p.field.as_deref()), (Kind::Invalid, Some("reason")));
    }

    #[test]
    fn a_missing_field_is_named() {
        let p = parse_json::<Revoke>(br#"{"comment": "x"}"#).expect_err("missing");
        assert_eq!(p.field.as_deref(), Some("reason"), "{p:?}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "fields are only decoded")]
    struct Csr {
        #[serde(rename = "key-type")]
        key_type: KeyType,
    }

    #[derive(Debug, serde::Deserialize)]
    enum KeyType {
        #[serde(rename = "ECC")]
        Ecc,
    }

    #[test]
    fn a_number_or_an_unknown_name_for_an_enum_names_the_field() {
        for body in [&br#"{"key-type": 1}"#[..], br#"{"key-type": "DSA"}"#] {
            let p = parse_json::<Csr>(body).expect_err("not a key type");
            assert_eq!((p.kind, p.field.as_deref()), (Kind::Invalid, Some("key-type")), "{p:?}");
        }
        assert!(matches!(parse_json::<Csr>(br#"{"key-type": "ECC"}"#), Ok(Csr { key_type: KeyType::Ecc })));
    }

    #[test]
    fn broken_json_and_trailing_garbage_are_malformed() {
        assert_eq!(parse_json::<Revoke>(br#"{"reason": 5"#).expect_err("cut").kind, Kind::Malformed);
        assert_eq!(parse_json::<Revoke>(br#"{"reason": 5} x"#).expect_err("trailing").kind, Kind::Malformed);
        assert!(parse_json::<Revoke>(br#" {"reason": 5} "#).is_ok());
    }
}
