//! End-to-end: the administrator REST API (`/v1/admins`) through the real cardhsmd over
//! client-certificate TLS, with a PKI made by the real `openssl` and a real HTTP client whose
//! every answer is checked against the served OpenAPI document. Administrators are created,
//! read, listed and searched, edited, enabled and disabled, deleted, one at a time and in bulk
//! (unknown uuids reported), each change seen through gRPC; refused values are 422 naming the
//! field, undecodable bodies and duplicates 400, unknown uuids 404, all `{"message": …}`, and
//! nothing is written; an administrator calls with their registered client certificate and no
//! password, and is refused on the next call once disabled.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, ADMIN_USERNAME, Daemon, TestEnv};
use serde_json::{Value, json};
use support::mtls::{Pki, connect, start_mtls};
use support::rest::{Body, Reply, Rest};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

type Admins = pb::admin_service_client::AdminServiceClient<Intercepted>;

const UNKNOWN: &str = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";
const USER_PASSWORD: &str = "user-password-0123";

fn admins_client(ch: &Channel, token: &str) -> Admins {
    pb::admin_service_client::AdminServiceClient::with_interceptor(ch.clone(), Bearer(Some(token.to_owned())))
}

async fn token_over(ch: &Channel, username: &str, password: &str) -> String {
    api_on(ch.clone(), None)
        .auth
        .login(pb::LoginRequest { username: username.into(), password: password.into() })
        .await
        .expect("login")
        .into_inner()
        .access_token
}

/// `{"message": …}` with the given status; returns the message.
#[track_caller]
fn message(reply: Reply, status: u16) -> String {
    let reply = reply.expect(status);
    let obj = reply.body.as_object().unwrap_or_else(|| panic!("{}", reply.text()));
    assert_eq!(obj.len(), 1, "{}", reply.text());
    obj["message"].as_str().expect("message").to_owned()
}

fn new_admin(username: &str, role: &str, enabled: bool, certificate: &str) -> Value {
    json!({
        "username": username,
        "name": "Ada",
        "surname": "Lovelace",
        "email": format!("{}@corp.example", username.to_lowercase()),
        "role": role,
        "enabled": enabled,
        "adminCertificate": certificate,
    })
}

fn snapshot(env: &TestEnv) -> Vec<String> {
    let mut out = store_snapshot(&env.store_path());
    out.extend(table_rows(&env.store_path(), &["admins"]));
    out
}

fn usernames(reply: &Reply) -> Vec<String> {
    reply
        .body
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text()))
        .iter()
        .map(|a| a["username"].as_str().expect("username").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_over_rest_with_a_bearer_token_and_a_client_certificate() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["alice", "alice2", "bob", "carol"] {
        pki.client(name);
    }
    let daemon: Daemon = start_mtls(&env, &pki, "").await;
    let boot = connect(&daemon, &pki, "boot").await;
    let token = token_over(&boot, ADMIN_USERNAME, ADMIN_PASSWORD).await;
    let mut grpc = admins_client(&boot, &token);
    // Every client presents a certificate (the daemon asks for one); "boot" is nobody's.
    let tls = Rest::with_client_certificate(&daemon, &pki, "boot").await;
    let su = tls.bearer(&token);

    // Create: 201 with the administrator, as gRPC reads it back.
    let mut body = new_admin("alice_1", "administrator", true, &pki.der_b64("alice"));
    body["description"] = json!("first administrator");
    let alice = su.post("/v1/admins", body).await.expect(201).body;
    let alice_id = alice["uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(alice["username"], "alice_1");
    assert_eq!((alice["name"].as_str(), alice["surname"].as_str()), (Some("Ada"), Some("Lovelace")));
    assert_eq!(alice["role"], "administrator");
    assert_eq!(alice["enabled"], true);
    assert_eq!(alice["description"], "first administrator");
    assert_eq!(alice["certificate"], json!(pki.der_b64("alice")));
    assert_eq!(alice["certificateFingerprint"], json!(pki.sha256("alice")));
    assert_eq!(alice["certificateSubject"], "CN=alice,O=cardhsm tests");
    let read =
        grpc.get_admin(pb::GetAdminRequest { uuid: alice_id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.username.as_str(), read.enabled), ("alice_1", true));
    assert_eq!(read.role, pb::AdminRole::Administrator as i32);
    assert_eq!(read.certificate_fingerprint, pki.sha256("alice"));
    let bob = su
        .post("/v1/admins", new_admin("bob_12345", "superAdministrator", false, &pki.der_b64("bob")))
        .await
        .expect(201)
        .body;
    let bob_id = bob["uuid"].as_str().expect("uuid").to_owned();
    // Audited with the change, by the caller.
    let audited = table_rows(&env.store_path(), &["audit_log"]).join("\n");
    for id in [&alice_id, &bob_id] {
        assert!(audited.lines().any(|l| l.contains("admin.create") && l.contains(id.as_str())), "{id}");
    }
    assert_eq!((bob["role"].as_str(), bob["enabled"].as_bool()), (Some("superAdministrator"), Some(false)));

    // Refusals: 422 naming the field, 400 for undecodable bodies and duplicates; nothing written.
    let before = snapshot(&env);
    let dup = message(
        su.post("/v1/admins", new_admin("ALICE_1", "administrator", false, &pki.der_b64("carol"))).await,
        400,
    );
    assert!(dup.contains("alice_1") || dup.contains("ALICE_1"), "{dup}");
    let mut bad = new_admin("carol_1", "administrator", false, &pki.der_b64("carol"));
    bad["email"] = json!("not-an-address");
    assert!(message(su.post("/v1/admins", bad).await, 422).contains("email"));
    let bad = new_admin("carol_1", "emperor", false, &pki.der_b64("carol"));
    assert!(message(su.post("/v1/admins", bad).await, 422).contains("role"));
    let mut bad = new_admin("carol_1", "administrator", false, &pki.der_b64("carol"));
    bad["enabled"] = json!("yes");
    assert!(message(su.post("/v1/admins", bad).await, 422).contains("enabled"));
    let mut bad = new_admin("carol_1", "administrator", false, &pki.der_b64("carol"));
    bad.as_object_mut().expect("object").remove("role");
    assert!(message(su.post("/v1/admins", bad).await, 422).contains("role"));
    let mut bad = new_admin("carol_1", "administrator", false, "bm90IGEgY2VydGlmaWNhdGU=");
    bad["username"] = json!("carol_1");
    assert!(message(su.post("/v1/admins", bad).await, 422).contains("certificate"));
    let broken =
        su.call("POST", "/v1/admins", Body::Raw("application/json", b"{\"username\": ".to_vec())).await;
    assert!(!message(broken, 400).is_empty());
    assert_eq!(snapshot(&env), before);

    // Read, list, search; unknown and malformed uuids.
    let got = su.get(&format!("/v1/admins/{alice_id}")).await.expect(200);
    assert_eq!(got.body, alice);
    assert!(message(su.get(&format!("/v1/admins/{UNKNOWN}")).await, 404).contains(UNKNOWN));
    assert!(message(su.get("/v1/admins/not-a-uuid").await, 422).contains("uuid"));
    let all = su.get("/v1/admins").await.expect(200);
    assert_eq!(usernames(&all), ["alice_1", "bob_12345"]);
    let found = su.get("/v1/admins?search=BOB").await.expect(200);
    assert_eq!(usernames(&found), ["bob_12345"]);

    // Edit: a new name and certificate; the current one stays when none is given.
    let mut edit = new_admin("alice_1", "administrator", false, &pki.der_b64("alice2"));
    edit["name"] = json!("Augusta");
    let edited = su.put(&format!("/v1/admins/{alice_id}"), edit).await.expect(200).body;
    assert_eq!(edited["name"], "Augusta");
    assert_eq!(edited["enabled"], true, "edit leaves enabled alone");
    assert_eq!(edited["certificateFingerprint"], json!(pki.sha256("alice2")));
    let mut keep = new_admin("alice_1", "administrator", false, "");
    keep.as_object_mut().expect("object").remove("adminCertificate");
    keep["name"] = json!("Augusta Ada");
    su.put(&format!("/v1/admins/{alice_id}"), keep.clone()).await.expect(200);
    let read =
        grpc.get_admin(pb::GetAdminRequest { uuid: alice_id.clone() }).await.expect("get").into_inner();
    assert_eq!(
        (read.name.as_str(), read.certificate_fingerprint.clone()),
        ("Augusta Ada", pki.sha256("alice2"))
    );
    message(su.put(&format!("/v1/admins/{UNKNOWN}"), keep.clone()).await, 404);
    let mut bad = keep.clone();
    bad["username"] = json!("x");
    assert!(message(su.put(&format!("/v1/admins/{alice_id}"), bad).await, 422).contains("username"));

    // The administrator's own client certificate, no password: ADMIN reads, may not create.
    let as_alice = Rest::with_client_certificate(&daemon, &pki, "alice2").await;
    assert_eq!(usernames(&as_alice.get("/v1/admins").await.expect(200)), ["alice_1", "bob_12345"]);
    let denied = message(
        as_alice
            .post("/v1/admins", new_admin("carol_1", "administrator", false, &pki.der_b64("carol")))
            .await,
        403,
    );
    assert!(!denied.is_empty());
    // Her old certificate and a stranger's are nobody's.
    message(Rest::with_client_certificate(&daemon, &pki, "alice").await.get("/v1/admins").await, 401);
    message(Rest::with_client_certificate(&daemon, &pki, "carol").await.get("/v1/admins").await, 401);
    // No credential at all (the bootstrap certificate is nobody's administrator certificate).
    message(tls.get("/v1/admins").await, 401);
    // A USER-role account may not.
    api_on(boot.clone(), Some(token.clone()))
        .users
        .create_user(pb::CreateUserRequest {
            username: "someone".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("create user");
    let user = tls.bearer(&token_over(&boot, "someone", USER_PASSWORD).await);
    message(user.get("/v1/admins").await, 403);
    message(user.patch(&format!("/v1/admins/{alice_id}/disable"), Value::Null).await, 403);

    // Disable and enable one; once disabled, her certificate is refused on the next call.
    let off = su.patch(&format!("/v1/admins/{alice_id}/disable"), Value::Null).await.expect(200).body;
    assert_eq!(off["enabled"], false);
    assert!(
        !grpc
            .get_admin(pb::GetAdminRequest { uuid: alice_id.clone() })
            .await
            .expect("get")
            .into_inner()
            .enabled
    );
    message(as_alice.get("/v1/admins").await, 401);
    let on = su.patch(&format!("/v1/admins/{alice_id}/enable"), Value::Null).await.expect(200).body;
    assert_eq!(on["enabled"], true);
    as_alice.get("/v1/admins").await.expect(200);
    message(su.patch(&format!("/v1/admins/{UNKNOWN}/enable"), Value::Null).await, 404);

    // Bulk: the known uuids are processed (each once), the unknown ones reported.
    let done = su.patch("/v1/admins/disable", json!([alice_id, bob_id, UNKNOWN])).await.expect(200).body;
    assert_eq!(done, json!({"processed": [alice_id, bob_id], "notFound": [UNKNOWN]}));
    for id in [&alice_id, &bob_id] {
        let a = grpc.get_admin(pb::GetAdminRequest { uuid: id.clone() }).await.expect("get").into_inner();
        assert!(!a.enabled, "{} still enabled", a.username);
    }
    message(as_alice.get("/v1/admins").await, 401);
    let done = su.patch("/v1/admins/enable", json!([alice_id, UNKNOWN, alice_id])).await.expect(200).body;
    assert_eq!(done, json!({"processed": [alice_id], "notFound": [UNKNOWN]}));
    assert!(
        grpc.get_admin(pb::GetAdminRequest { uuid: alice_id.clone() })
            .await
            .expect("get")
            .into_inner()
            .enabled
    );
    as_alice.get("/v1/admins").await.expect(200);
    message(su.patch("/v1/admins/enable", json!([UNKNOWN])).await, 404);
    assert!(message(su.patch("/v1/admins/enable", json!([])).await, 422).contains("uuids"));
    assert!(message(su.patch("/v1/admins/enable", json!(["nope"])).await, 422).contains("uuids[0]"));
    assert!(message(su.patch("/v1/admins/disable", json!({"uuids": [bob_id]})).await, 422).len() > 1);
    message(
        su.call("DELETE", "/v1/admins/delete", Body::Raw("application/json", b"[\"".to_vec())).await,
        400,
    );
    message(user.call("DELETE", "/v1/admins/delete", Body::Json(json!([bob_id]))).await, 403);

    // Delete one (204), then the rest in bulk.
    su.delete(&format!("/v1/admins/{bob_id}")).await.expect(204);
    expect_code(grpc.get_admin(pb::GetAdminRequest { uuid: bob_id.clone() }).await, Code::NotFound);
    message(su.delete(&format!("/v1/admins/{bob_id}")).await, 404);
    let done =
        su.call("DELETE", "/v1/admins/delete", Body::Json(json!([alice_id, bob_id]))).await.expect(200).body;
    assert_eq!(done, json!({"processed": [alice_id], "notFound": [bob_id]}));
    expect_code(grpc.get_admin(pb::GetAdminRequest { uuid: alice_id.clone() }).await, Code::NotFound);
    assert_eq!(usernames(&su.get("/v1/admins").await.expect(200)), Vec::<String>::new());

    // A request the rules refuse is a 400 on this API (its clients know no 409): nobody
    // disables or deletes themself, and nothing changes.
    let me = api_on(boot.clone(), Some(token.clone()))
        .auth
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner()
        .user_id;
    let before = snapshot(&env);
    let own = format!("/v1/admins/{me}/disable");
    assert!(message(su.call("PATCH", &own, Body::Empty).await, 400).contains("yourself"));
    let own_bulk = su.call("DELETE", "/v1/admins/delete", Body::Json(json!([me]))).await;
    assert!(message(own_bulk, 400).contains("yourself"));
    assert_eq!(snapshot(&env), before);
}
