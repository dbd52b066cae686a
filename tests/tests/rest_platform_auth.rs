//! End-to-end: the batch platform's sign-in routes (`/auth/...`) of the REST shim against the
//! real cardhsmd — password login and refresh answer tokens that work over gRPC, a password
//! reset code requested over REST lands in the outbox, validates, sets a new password once and
//! ends the old credentials; bad input is refused in the plain error shape naming the field
//! (camelCase, as the platform sends it); codes and passwords never reach the daemon's log.
//! Every answer is checked against the served OpenAPI document by the test client.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::{Value, json};
use support::rest::{Body, Rest};
use support::*;
use tonic::Code;

const LOGIN: &str = "platform_user";
const PASSWORD: &str = "user-password-0123";
const NEW_PASSWORD: &str = "reset-password-4567";

/// The outbox's messages (the default notifier writes one JSON object a line).
fn messages(env: &TestEnv) -> Vec<Value> {
    let path = env.store_path().parent().expect("store dir").join("outbox.jsonl");
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("outbox: {e}"),
    }
}

/// The code in a reset message's body.
fn code_of(message: &Value) -> String {
    let body = message["body"].as_str().expect("body");
    let line = body.lines().find(|l| l.contains("code:")).unwrap_or_else(|| panic!("no code in {body:?}"));
    line.rsplit(' ').next().expect("code").trim().to_owned()
}

/// Who a bearer token is, through gRPC.
async fn who(daemon: &Daemon, token: &str) -> Result<pb::WhoAmIResponse, tonic::Status> {
    let mut a = api(&daemon.endpoint, Some(token.to_owned())).await;
    a.auth.who_am_i(pb::WhoAmIRequest {}).await.map(tonic::Response::into_inner)
}

#[track_caller]
fn assert_plain_error(body: &Value, status: u16, field: Option<&str>) {
    assert_eq!(body["status"], status, "{body}");
    assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
    match field {
        Some(f) => assert_eq!(body["field"], f, "{body}"),
        None => assert!(body.get("field").is_none(), "{body}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_refresh_and_password_reset_over_rest() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let user = admin
        .users
        .create_user(pb::CreateUserRequest {
            username: LOGIN.into(),
            password: PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            email: "platform.user@example.com".into(),
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner();
    // Every /auth route is open: no credential on the client.
    let rest = Rest::new(&daemon).await;

    // --- POST /auth/pwd ---------------------------------------------------------------
    let tokens = rest.post("/auth/pwd", json!({"login": LOGIN, "password": PASSWORD})).await.expect(200).body;
    assert_eq!(tokens["tokenType"], "Bearer");
    assert_eq!(tokens["roles"], json!(["USER"]));
    assert!(tokens["expiresIn"].as_u64().is_some_and(|s| s > 0), "{tokens}");
    let access = tokens["accessToken"].as_str().expect("accessToken").to_owned();
    let refresh = tokens["refreshToken"].as_str().expect("refreshToken").to_owned();
    let me = who(&daemon, &access).await.expect("the REST access token works over gRPC");
    assert_eq!((me.username.as_str(), me.user_id.as_str()), (LOGIN, user.id.as_str()));
    assert_eq!(me.session_id, tokens["sessionId"].as_str().expect("sessionId"));

    let wrong = rest.post("/auth/pwd", json!({"login": LOGIN, "password": "not-it-0000"})).await.expect(401);
    assert_plain_error(&wrong.body, 401, None);
    // Bad bodies: 4xx naming the field, never 5xx.
    let r = rest.call("POST", "/auth/pwd", Body::Raw("application/json", b"{\"login\": ".to_vec())).await;
    assert_plain_error(&r.expect(400).body, 400, None);
    let r = rest.post("/auth/pwd", json!({"login": 5, "password": PASSWORD})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("login"));
    let r = rest.post("/auth/pwd", json!({"login": LOGIN})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("password"));
    let r = rest.call("POST", "/auth/pwd", Body::Text(format!("{LOGIN}:{PASSWORD}"))).await.expect(415);
    assert_plain_error(&r.body, 415, None);

    // --- POST /auth/refresh (the bare token as the body) -------------------------------
    let renewed = rest.call("POST", "/auth/refresh", Body::Text(refresh.clone())).await.expect(200).body;
    let access2 = renewed["accessToken"].as_str().expect("accessToken").to_owned();
    // The refresh token rotates within the same session.
    assert_ne!(renewed["refreshToken"].as_str().expect("refreshToken"), refresh);
    assert_eq!(renewed["sessionId"], tokens["sessionId"]);
    assert_eq!(who(&daemon, &access2).await.expect("refreshed token").username, LOGIN);
    let r = rest.call("POST", "/auth/refresh", Body::Text("no-such-refresh-token".into())).await.expect(401);
    assert_plain_error(&r.body, 401, None);
    let r = rest.call("POST", "/auth/refresh", Body::Empty).await.expect(401);
    assert_plain_error(&r.body, 401, None);

    // --- POST /auth/reset?login= -------------------------------------------------------
    assert!(messages(&env).is_empty());
    let r = rest.call("POST", &format!("/auth/reset?login={LOGIN}"), Body::Empty).await.expect(200);
    assert_eq!(r.body, json!({"sent": true}));
    let sent = messages(&env);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], "platform.user@example.com", "{:?}", sent[0]);
    let code = code_of(&sent[0]);
    // Asking again within 15 minutes sends nothing and answers false.
    let r = rest.call("POST", &format!("/auth/reset?login={LOGIN}"), Body::Empty).await.expect(200);
    assert_eq!(r.body, json!({"sent": false}));
    // An unknown login answers like a known one, and nothing is sent.
    let r = rest.call("POST", "/auth/reset?login=nobody_here", Body::Empty).await.expect(200);
    assert_eq!(r.body, json!({"sent": true}));
    assert_eq!(messages(&env).len(), 1);
    let r = rest.call("POST", "/auth/reset?login=", Body::Empty).await.expect(400);
    assert_plain_error(&r.body, 400, Some("login"));
    let r = rest.call("POST", "/auth/reset", Body::Empty).await.expect(400);
    assert_plain_error(&r.body, 400, Some("login"));

    // --- GET /auth/validate-code?code= -------------------------------------------------
    let r = rest.get(&format!("/auth/validate-code?code={code}")).await.expect(200);
    assert_eq!(r.body, json!({"valid": true}));
    let r = rest.get("/auth/validate-code?code=AAAAnotacode").await.expect(200);
    assert_eq!(r.body, json!({"valid": false}));
    let r = rest.get("/auth/validate-code").await.expect(400);
    assert_plain_error(&r.body, 400, Some("code"));

    // --- POST /auth/update -------------------------------------------------------------
    // The copies differ: refused naming the platform's field; the code stays usable.
    let r = rest
        .post(
            "/auth/update",
            json!({"code": code, "newPassword": NEW_PASSWORD, "repeatedNewPassword": "other-password-99"}),
        )
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("repeatedNewPassword"));
    let r = rest.post("/auth/update", json!({"code": code, "newPassword": 7})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("newPassword"));
    assert!(!r.text().contains(&code), "an error never echoes the code: {}", r.text());
    let r = rest
        .post(
            "/auth/update",
            json!({"code": code, "newPassword": NEW_PASSWORD, "repeatedNewPassword": NEW_PASSWORD}),
        )
        .await
        .expect(204);
    assert!(r.bytes.is_empty());
    // Spent: the code neither validates nor works again.
    assert_eq!(rest.get(&format!("/auth/validate-code?code={code}")).await.expect(200).body["valid"], false);
    rest.post(
        "/auth/update",
        json!({"code": code, "newPassword": NEW_PASSWORD, "repeatedNewPassword": NEW_PASSWORD}),
    )
    .await
    .expect(400);
    // The earlier tokens ended; the old password is refused and the new one works.
    let ended = who(&daemon, &access2).await.expect_err("tokens from before the reset");
    assert_eq!(ended.code(), Code::Unauthenticated);
    rest.call("POST", "/auth/refresh", Body::Text(renewed["refreshToken"].as_str().expect("rt").into()))
        .await
        .expect(401);
    rest.post("/auth/pwd", json!({"login": LOGIN, "password": PASSWORD})).await.expect(401);
    let fresh = rest.post("/auth/pwd", json!({"login": LOGIN, "password": NEW_PASSWORD})).await.expect(200);
    let fresh_access = fresh.body["accessToken"].as_str().expect("accessToken");
    assert_eq!(who(&daemon, fresh_access).await.expect("new session").username, LOGIN);

    // Nothing secret reached the log.
    let log = daemon.log();
    for secret in [code.as_str(), PASSWORD, NEW_PASSWORD, refresh.as_str(), access.as_str()] {
        assert!(!log.contains(secret), "a secret reached the daemon log");
    }
}
