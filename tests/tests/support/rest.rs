//! Shared by the REST end-to-end tests: a real HTTP client (reqwest over rustls, optionally
//! presenting a client certificate) against the running daemon's REST port. Every answer is
//! checked against the daemon's own `/openapi.json`: the route must be documented, the status
//! must be one the operation documents, and a JSON body must match the documented schema — so
//! a route missing from the document, or described wrongly, fails the test that calls it.

use super::mtls::Pki;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardhsm_tests::Daemon;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a [`Rest`] client authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    /// An API key as the HTTP Basic user with an empty password.
    ApiKey(String),
    /// A raw `Authorization` header value (for refusal tests).
    Header(String),
}

/// A request body.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Json(Value),
    Text(String),
    /// Bytes with the given content type (e.g. broken JSON).
    Raw(&'static str, Vec<u8>),
    /// multipart/form-data: (part name, file name, bytes).
    Multipart(Vec<(String, Option<String>, Vec<u8>)>),
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// The body as JSON (`Value::Null` when it is empty or not JSON).
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// Asserts the status and returns the reply for chaining.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "unexpected status; body: {}", String::from_utf8_lossy(&self.bytes));
        self
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The daemon's document, and validators compiled from it on first use.
struct Document {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// A client of one daemon's REST port.
#[derive(Clone)]
pub struct Rest {
    pub base: String,
    http: reqwest::Client,
    auth: Auth,
    /// Extra headers sent with every request.
    headers: Vec<(String, String)>,
    doc: Arc<Document>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Rest {
    /// A client of `daemon`'s plain-HTTP REST port, without credentials.
    pub async fn new(daemon: &Daemon) -> Rest {
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Rest::build(daemon.rest_url.clone(), tls).await
    }

    /// A client of `daemon`'s TLS REST port trusting `pki`'s CA, presenting `<identity>.crt`.
    pub async fn with_client_certificate(daemon: &Daemon, pki: &Pki, identity: &str) -> Rest {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(pki.crt("ca")).expect("ca.crt")).expect("CA");
        let chain = vec![CertificateDer::from_pem_file(pki.crt(identity)).expect("client crt")];
        let key = PrivateKeyDer::from_pem_file(pki.key_path(identity)).expect("client key");
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client identity");
        Rest::build(format!("https://127.0.0.1:{}", daemon.rest_addr.port()), tls).await
    }

    async fn build(base: String, tls: rustls::ClientConfig) -> Rest {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let reply = http.get(format!("{base}/openapi.json")).send().await.expect("GET /openapi.json");
        assert_eq!(reply.status().as_u16(), 200, "GET /openapi.json");
        let doc: Value = reply.json().await.expect("the OpenAPI document is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not OpenAPI 3: {doc}");
        Rest {
            base,
            http,
            auth: Auth::None,
            headers: Vec::new(),
            doc: Arc::new(Document { doc, validators: Mutex::new(HashMap::new()) }),
        }
    }

    /// The same client with other credentials.
    pub fn with(&self, auth: Auth) -> Rest {
        Rest { auth, ..self.clone() }
    }

    /// The same client sending `name: value` with every request too.
    pub fn with_header(&self, name: &str, value: &str) -> Rest {
        let mut headers = self.headers.clone();
        headers.push((name.to_owned(), value.to_owned()));
        Rest { headers, ..self.clone() }
    }

    /// The same client with a bearer token.
    pub fn bearer(&self, token: &str) -> Rest {
        self.with(Auth::Bearer(token.to_owned()))
    }

    /// The daemon's OpenAPI document.
    pub fn document(&self) -> &Value {
        &self.doc.doc
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, Body::Empty).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, Body::Empty).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Body::Json(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Body::Json(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call("PATCH", path, Body::Json(body)).await
    }

    /// Sends a request and checks the answer against the document (see the module doc).
    #[track_caller]
    pub fn call(&self, method: &str, path: &str, body: Body) -> impl Future<Output = Reply> + '_ {
        let caller = std::panic::Location::caller();
        let (method, path) = (method.to_owned(), path.to_owned());
        async move {
            let reply = self.send_unchecked(&method, &path, body).await;
            if let Err(e) = self.check(&method, &path, &reply) {
                panic!(
                    "{caller}: {method} {path} answered against the OpenAPI document: {e}\nbody: {}",
                    reply.text()
                );
            }
            reply
        }
    }

    /// Sends a request without checking the answer against the document (for paths that are
    /// not routes).
    pub async fn send_unchecked(&self, method: &str, path: &str, body: Body) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.header("authorization", format!("Bearer {t}")),
            Auth::ApiKey(k) => {
                req.header("authorization", format!("Basic {}", STANDARD.encode(format!("{k}:"))))
            }
            Auth::Header(h) => req.header("authorization", h.as_str()),
        };
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(&v),
            Body::Text(t) => req.header("content-type", "text/plain").body(t),
            Body::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
            Body::Multipart(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for (name, file, bytes) in parts {
                    let mut part = reqwest::multipart::Part::bytes(bytes);
                    if let Some(f) = file {
                        part = part.file_name(f);
                    }
                    form = form.part(name, part);
                }
                req.multipart(form)
            }
        };
        let resp = req.send().await.expect("REST request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = resp.bytes().await.expect("REST body").to_vec();
        let body = if content_type.starts_with("application/json") {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        Reply { status, content_type, bytes, body, headers }
    }

    /// The documented operation for a concrete request path: its template and JSON pointer.
    fn operation(&self, method: &str, path: &str) -> Option<(String, String)> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.doc.doc["paths"].as_object()?;
        // A literal segment beats a parameter (e.g. /v1/admins/enable over /v1/admins/{uuid}).
        let mut best: Option<(usize, String)> = None;
        for (template, item) in paths {
            if item.get(method.to_lowercase()).is_none() {
                continue;
            }
            let t: Vec<&str> = template.split('/').collect();
            if t.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let fits = t.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    !s.is_empty()
                } else {
                    literals += 1;
                    t == s
                }
            });
            if fits && best.as_ref().is_none_or(|(l, _)| literals > *l) {
                best = Some((literals, template.clone()));
            }
        }
        best.map(|(_, template)| {
            let escaped = template.replace('~', "~0").replace('/', "~1");
            (template, format!("/paths/{escaped}/{}", method.to_lowercase()))
        })
    }

    fn check(&self, method: &str, path: &str, reply: &Reply) -> Result<(), String> {
        let (template, pointer) =
            self.operation(method, path).ok_or_else(|| "the route is not in the document".to_owned())?;
        let op = self.doc.doc.pointer(&pointer).ok_or("no operation")?;
        let responses = op["responses"].as_object().ok_or("the operation documents no responses")?;
        let status = reply.status.to_string();
        let range = format!("{}XX", &status[..1]);
        let key = [status.as_str(), range.as_str(), "default"]
            .into_iter()
            .find(|k| responses.contains_key(*k))
            .ok_or_else(|| format!("status {status} is not documented for {method} {template}"))?;
        let response = &responses[key];
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if reply.bytes.is_empty() {
                Ok(())
            } else {
                Err(format!("{status} is documented without a body, but one came ({})", reply.content_type))
            };
        };
        let essence = reply.content_type.split(';').next().unwrap_or("").trim().to_owned();
        let Some(media) = content.get(&essence) else {
            return Err(format!(
                "{status} answered {essence:?}, documented: {:?}",
                content.keys().collect::<Vec<_>>()
            ));
        };
        if essence != "application/json" {
            return Ok(());
        }
        let Some(_) = media.get("schema") else { return Ok(()) };
        let escaped_key = key.replace('~', "~0").replace('/', "~1");
        let schema_pointer = format!("{pointer}/responses/{escaped_key}/content/application~1json/schema");
        let validator = self.validator(&schema_pointer)?;
        let errors: Vec<String> =
            validator.iter_errors(&reply.body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        if errors.is_empty() { Ok(()) } else { Err(format!("body does not match the schema: {errors:?}")) }
    }

    fn validator(&self, schema_pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let schema = self
            .doc
            .doc
            .pointer(schema_pointer)
            .cloned()
            .ok_or_else(|| format!("no schema at {schema_pointer}"))?;
        // Cached by the schema itself: most routes share their error schemas.
        let key = schema.to_string();
        let mut cache = self.doc.validators.lock().expect("validators");
        if let Some(v) = cache.get(&key) {
            return Ok(v.clone());
        }
        // The document's components beside the schema, so `#/components/schemas/...`
        // references inside it resolve (the paths, most of the document, stay out).
        let root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .build(&root)
            .map_err(|e| format!("the documented schema at {schema_pointer} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(key, validator.clone());
        Ok(validator)
    }
}

/// A client logged in (over gRPC) as `username`.
pub async fn rest_as(daemon: &Daemon, username: &str, password: &str) -> Rest {
    let token = super::login(&daemon.endpoint, username, password).await.access_token;
    Rest::new(daemon).await.bearer(&token)
}
