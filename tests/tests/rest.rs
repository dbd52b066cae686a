//! The REST shim as a whole, against the real daemon: the OpenAPI document is served and
//! names exactly the routes that exist, every route is behind its authorization rule, unknown
//! paths and methods answer JSON 4xx, the three credentials work (Bearer, an API key as HTTP
//! Basic user, a client certificate over TLS) and bad ones are refused, and bodies that are
//! broken, mistyped or too large get a 4xx naming the problem, never a 5xx.

mod support;

use cardhsm_tests::{Daemon, TestEnv};
use serde_json::Value;
use support::rest::{Auth, Body, Rest};

/// Every (METHOD, template, public?) of the document.
fn operations(doc: &Value) -> Vec<(String, String, bool)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if let Some(op) = item.get(method) {
                // `security: [{}]` marks a route open without credentials.
                let public =
                    op["security"].as_array().is_some_and(|s| s.iter().any(|r| r == &serde_json::json!({})));
                ops.push((method.to_uppercase(), path.clone(), public));
            }
        }
    }
    ops
}

/// A concrete path for a template: each `{param}` becomes a value no record has.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') && s.ends_with('}') { "nothing-here-1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_exists_and_every_private_one_wants_a_credential() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let rest = Rest::new(&daemon).await;
    let ops = operations(rest.document());
    assert!(ops.len() >= 2, "{ops:?}");
    for (method, template, public) in &ops {
        let path = concrete(template);
        // `call` also checks the answer's status and body against the document.
        let reply = rest.call(method, &path, Body::Empty).await;
        if *public {
            assert!(
                !(reply.status == 404 && reply.text().contains("no route")) && reply.status != 405,
                "{method} {template} is documented but not routed: {}",
                reply.status
            );
            assert!(reply.status < 500, "{method} {template}: {} {}", reply.status, reply.text());
        } else {
            assert_eq!(reply.status, 401, "{method} {template} without a credential: {}", reply.text());
            let challenge = reply.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(
                challenge.contains("Bearer") && challenge.contains("Basic"),
                "{method} {template}: {challenge:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_methods_answer_json_4xx() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let rest = Rest::new(&daemon).await;
    let missing = rest.send_unchecked("GET", "/no/such/route", Body::Empty).await.expect(404);
    assert_eq!(missing.body["status"], 404);
    assert!(
        missing.body["message"].as_str().is_some_and(|m| m.contains("/no/such/route")),
        "{:?}",
        missing.body
    );
    let wrong = rest.send_unchecked("DELETE", "/openapi.json", Body::Empty).await.expect(405);
    assert!(wrong.body["message"].as_str().is_some_and(|m| m.contains("DELETE")), "{:?}", wrong.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text_open_without_a_credential() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let rest = Rest::new(&daemon).await;
    rest.get("/openapi.json").await.expect(200);
    let metrics = rest.with(Auth::None).get("/metrics").await.expect(200);
    assert!(
        metrics.content_type.starts_with("text/plain")
            || metrics.content_type.starts_with("application/openmetrics-text"),
        "{}",
        metrics.content_type
    );
    let text = metrics.text();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("cardhsm_requests_total{") && l.contains("GET /openapi.json") && l.contains("rest")
        })
        .unwrap_or_else(|| panic!("no request count for GET /openapi.json in:\n{text}"));
    let count: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number");
    assert!(count >= 2.0, "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_and_api_keys_as_basic_users_authenticate_and_bad_credentials_are_refused() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start_with(&env, "[[auth.realms]]\nname = \"automation\"\nroles = [\"ADMIN\"]\n")
        .await
        .expect("daemon");
    let token = support::login(&daemon.endpoint, "admin", cardhsm_tests::ADMIN_PASSWORD).await.access_token;
    let mut api = support::api(&daemon.endpoint, Some(token.clone())).await;
    let key = api
        .auth
        .realm_auth(cardhsm_proto::v1::RealmAuthRequest {
            realm: "automation".into(),
            username: "admin".into(),
            password: cardhsm_tests::ADMIN_PASSWORD.into(),
        })
        .await
        .expect("an API key")
        .into_inner()
        .api_key;
    let rest = Rest::new(&daemon).await;
    let cards = "/icmapi/user/getcards?name=nobody@corp.example";

    // Each credential reaches the route: an empty list for a user without cards.
    for auth in [Auth::Bearer(token.clone()), Auth::ApiKey(key.clone())] {
        let reply = rest.with(auth.clone()).get(cards).await.expect(200);
        assert_eq!(reply.body, serde_json::json!([]), "{auth:?}");
    }
    // Refused, in the family's shape and with a challenge: a forged token, a password on
    // Basic (only API keys go there), a revoked key's look-alike, an unknown scheme.
    let basic = |user: &str, pw: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}")))
    };
    let forged_key = format!("{}x", key);
    for auth in [
        Auth::Bearer(format!("{token}x")),
        Auth::Header(basic("admin", cardhsm_tests::ADMIN_PASSWORD)),
        Auth::ApiKey(forged_key),
        Auth::Header("Digest username=admin".into()),
        Auth::Header("Bearer".into()),
    ] {
        let reply = rest.with(auth.clone()).get(cards).await.expect(401);
        assert_eq!(reply.body["status"], 401, "{auth:?}: {:?}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{auth:?}");
        assert!(reply.headers.contains_key("www-authenticate"), "{auth:?}");
        // The secret never comes back in the answer.
        assert!(!reply.text().contains(&token) && !reply.text().contains(&key), "{auth:?}");
    }
    // A public route takes any credential without looking at it.
    let reply = rest.with(Auth::ApiKey(key.clone())).get("/metrics").await.expect(200);
    assert!(reply.text().contains("cardhsm_requests_total"), "{}", reply.text());
    // A request id is echoed, or made when none came.
    let reply = rest.with(Auth::Bearer(token)).get(cards).await.expect(200);
    assert!(reply.headers.get("x-request-id").is_some_and(|v| !v.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_a_client_certificate_that_is_no_administrators_needs_a_token() {
    let env = TestEnv::new(0).expect("env");
    let pki = support::mtls::Pki::new(&env);
    let daemon = support::mtls::start_mtls(&env, &pki, "").await;
    let rest = Rest::with_client_certificate(&daemon, &pki, "boot").await;
    assert!(rest.base.starts_with("https://"), "{}", rest.base);
    let cards = "/icmapi/user/getcards?name=nobody@corp.example";
    let refused = rest.get(cards).await.expect(401);
    assert!(
        refused.body["message"].as_str().is_some_and(|m| m.contains("certificate")),
        "{:?}",
        refused.body
    );

    let channel = support::mtls::connect(&daemon, &pki, "boot").await;
    let mut auth = cardhsm_proto::v1::auth_service_client::AuthServiceClient::new(channel);
    let token = auth
        .login(cardhsm_proto::v1::LoginRequest {
            username: "admin".into(),
            password: cardhsm_tests::ADMIN_PASSWORD.into(),
        })
        .await
        .expect("login over TLS")
        .into_inner()
        .access_token;
    rest.bearer(&token).get(cards).await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_mistyped_and_oversize_bodies_get_a_4xx_in_the_familys_shape_never_a_5xx() {
    let env = TestEnv::new(0).expect("env");
    // The smallest upload limit: the body cap is then 2 × 1 KiB + 64 KiB.
    let daemon = Daemon::start_with(&env, "[server]\nmax_upload_bytes = 1024\n").await.expect("daemon");
    let rest = Rest::new(&daemon).await;
    let before = support::table_rows(&env.store_path(), &["users", "sessions", "audit_log"]);

    // The batch platform's sign-in (public, JSON body).
    let cases: Vec<(Body, u16, Option<&str>)> = vec![
        (Body::Raw("application/json", b"{\"login\": \"admin\", ".to_vec()), 400, None),
        (Body::Raw("application/json", b"[1, 2, 3]".to_vec()), 400, None),
        (Body::Json(serde_json::json!({"login": 7, "password": "x"})), 400, Some("login")),
        (Body::Json(serde_json::json!({"password": "x"})), 400, Some("login")),
        (Body::Raw("text/csv", b"login,password".to_vec()), 415, None),
        // curl -d without a content type: read as JSON (here, a wrong password), and a real
        // form is not JSON.
        (
            Body::Raw(
                "application/x-www-form-urlencoded",
                br#"{"login": "admin", "password": "wrong-password-1"}"#.to_vec(),
            ),
            401,
            None,
        ),
        (Body::Raw("application/x-www-form-urlencoded", b"login=admin&password=x".to_vec()), 400, None),
        (Body::Json(serde_json::json!({"login": "admin", "password": "x".repeat(100_000)})), 413, None),
    ];
    for (body, status, field) in cases {
        let reply = rest.call("POST", "/auth/pwd", body.clone()).await;
        assert_eq!(reply.status, status, "{body:.60?}: {}", reply.text());
        assert_eq!(reply.body["status"], status, "{:?}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", reply.body);
        if let Some(field) = field {
            assert_eq!(reply.body["field"], field, "{:?}", reply.body);
        }
    }

    // The certificate store's envelope: an oversize multipart upload is code 13, even from
    // a caller who then would have been allowed.
    let token = support::login(&daemon.endpoint, "admin", cardhsm_tests::ADMIN_PASSWORD).await.access_token;
    let big = Body::Multipart(vec![("blob-cert".into(), Some("c.pem".into()), vec![b'A'; 100_000])]);
    let reply = rest.bearer(&token).call("PUT", "/api/cert/user", big).await.expect(413);
    assert_eq!(
        (reply.body["success"].as_bool(), reply.body["error"]["code"].as_u64()),
        (Some(false), Some(13))
    );

    // An unknown enum value on the administrator API is a 422 naming it; a number for it too.
    for role in [serde_json::json!("emperor"), serde_json::json!(3)] {
        let body = serde_json::json!({"name": "Eve", "email": "eve@corp.example", "role": role});
        let reply = rest.bearer(&token).post("/v1/admins", body).await.expect(422);
        assert!(reply.body["message"].as_str().is_some_and(|m| m.contains("role")), "{:?}", reply.body);
    }
    // Nothing above changed a record except the one sign-in the admin made over gRPC.
    let after = support::table_rows(&env.store_path(), &["users", "sessions", "audit_log"]);
    let added: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(added.iter().all(|r| r.contains("admin")), "{added:?}");
    assert!(added.len() <= 3, "{added:?}");
}
