//! End-to-end: the appliance REST API (`/api/v1/system/...`, `/api/v1/realm_auth`) through the
//! real cardhsmd on real SoftHSM tokens and a real SQLite file, with a real HTTP client whose
//! every answer is checked against the served OpenAPI document. An API key from realm_auth
//! works as the HTTP Basic user; active sessions are listed in the appliance's shape, paged,
//! filtered and ended (their tokens stop working, as gRPC sees); a CSR whose key the HSM
//! generated verifies with openssl, an openssl CA signs it, it is bound back and seen through
//! gRPC, then deleted; health is public (OK, per-subsystem detail, 503 naming an absent token);
//! system information matches the store file; and the encrypted configuration exported over
//! REST is imported over REST into a daemon on copies of the tokens, which restarts with the
//! same users and cards. Bad values, credentials and roles get the errors shape, never a 5xx.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::{Value, json};
use support::rest::{Auth, Body, Reply, Rest, rest_as};
use support::*;
use tonic::Code;

const USER_PASSWORD: &str = "user-password-0123";
const ARCHIVE_PASSWORD: &str = "archive-password-0123";
const REALMS: &str = "[[auth.realms]]\nname = \"automation\"\nroles = [\"ADMIN\"]\n";

/// The appliance's error body: `{"result": {"errors": [{"message": …}]}}`; returns the message.
#[track_caller]
fn error_message(reply: &Reply) -> String {
    let errors = reply.body["result"]["errors"].as_array().unwrap_or_else(|| panic!("{}", reply.text()));
    assert_eq!(errors.len(), 1, "{}", reply.text());
    errors[0]["message"].as_str().expect("message").to_owned()
}

/// A 400 in the errors shape whose message names `field`.
#[track_caller]
fn expect_field(reply: Reply, field: &str) {
    let reply = reply.expect(400);
    let message = error_message(&reply);
    assert!(message.contains(field), "{field} not named in {message:?}");
}

async fn create_user(admin: &mut Api, username: &str, role: pb::Role) {
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: USER_PASSWORD.into(),
            roles: vec![role as i32],
            ..Default::default()
        })
        .await
        .expect("create user");
}

async fn sessions(admin: &mut Api, name: &str) -> Vec<pb::ActiveSession> {
    admin
        .sessions
        .list_active_sessions(pb::ListActiveSessionsRequest { number: 0, start: 0, name: name.into() })
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
}

async fn token_works(endpoint: &str, token: &str) -> bool {
    let mut a = api(endpoint, Some(token.to_owned())).await;
    match a.auth.who_am_i(pb::WhoAmIRequest {}).await {
        Ok(_) => true,
        Err(s) if s.code() == Code::Unauthenticated => false,
        Err(s) => panic!("unexpected answer {s:?}"),
    }
}

fn records(reply: &Reply) -> Vec<Value> {
    reply.body["active-users"]["active-user-records"]["active-user-record"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text()))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_sessions_health_information_and_device_csrs() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start_with(&env, REALMS).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "someone", pb::Role::User).await;
    create_user(&mut admin, "officer", pb::Role::Operator).await;
    let anon = Rest::new(&daemon).await;

    // realm_auth: public, refusals in the errors shape.
    let bad = anon
        .post(
            "/api/v1/realm_auth",
            json!({"realm": "automation", "username": "admin", "password": "wrong-pass"}),
        )
        .await
        .expect(401);
    assert!(!error_message(&bad).is_empty());
    expect_field(
        anon.post(
            "/api/v1/realm_auth",
            json!({"realm": "nope", "username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await,
        "realm",
    );
    expect_field(
        anon.post("/api/v1/realm_auth", json!({"realm": 5, "username": "admin", "password": ADMIN_PASSWORD}))
            .await,
        "realm",
    );
    expect_field(
        anon.post("/api/v1/realm_auth", json!({"realm": "automation", "username": "admin"})).await,
        "password",
    );
    let broken = anon
        .call("POST", "/api/v1/realm_auth", Body::Raw("application/json", b"{\"realm\": ".to_vec()))
        .await;
    assert!(!error_message(&broken.expect(400)).is_empty());
    let issued = anon
        .post(
            "/api/v1/realm_auth",
            json!({"realm": "automation", "username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await
        .expect(200);
    let key = issued.body["api_key"].as_str().expect("api_key").to_owned();
    assert!(token_works(&daemon.endpoint, &key).await, "the key works on gRPC too");
    let keyed = anon.with(Auth::ApiKey(key.clone()));
    let key_session = sessions(&mut admin, "admin")
        .await
        .into_iter()
        .find(|s| s.realm == "automation")
        .expect("the API key is a session of its realm");

    // Active sessions: the API key as HTTP Basic user lists them in the appliance's shape.
    let someone = login(&daemon.endpoint, "someone", USER_PASSWORD).await;
    let listed = keyed.get("/api/v1/system/active-users?number=200&start=0").await.expect(200);
    let grpc = admin
        .sessions
        .list_active_sessions(pb::ListActiveSessionsRequest { number: 200, start: 0, name: String::new() })
        .await
        .expect("list")
        .into_inner();
    let all = &listed.body["active-users"];
    assert_eq!(all["total-matched-record-number"], json!(grpc.total_matched));
    assert_eq!(all["total-returned-record-number"], json!(grpc.total_returned));
    assert_eq!(all["is-last-record"], json!(true));
    let ids: Vec<String> =
        records(&listed).iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect();
    let grpc_ids: Vec<String> = grpc.sessions.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, grpc_ids);
    let key_record = records(&listed).into_iter().find(|r| r["id"] == json!(key_session.id)).expect("key");
    assert_eq!(key_record["name"], "admin");
    assert_eq!(key_record["realm"], "automation");
    assert_eq!(key_record["roles"], json!(["ADMIN"]));
    assert_eq!(key_record["sign-in-time"], json!(key_session.sign_in_time));
    assert_eq!(key_record["source-ip"], json!(key_session.source_ip));
    // Filtered by user, and paged.
    let mine = keyed.get("/api/v1/system/active-users?name=someone").await.expect(200);
    let mine = records(&mine);
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0]["id"].as_str(), mine[0]["name"].as_str()),
        (Some(someone.session_id.as_str()), Some("someone"))
    );
    assert_eq!(mine[0]["roles"], json!(["USER"]));
    let first = keyed.get("/api/v1/system/active-users?number=1&start=0").await.expect(200);
    assert_eq!(records(&first).len(), 1);
    assert_eq!(first.body["active-users"]["is-last-record"], json!(false));
    assert_eq!(first.body["active-users"]["total-returned-record-number"], json!(1));
    assert_eq!(first.body["active-users"]["total-matched-record-number"], json!(grpc.total_matched));
    // Bad paging values name the field.
    expect_field(keyed.get("/api/v1/system/active-users?number=abc").await, "number");
    expect_field(keyed.get("/api/v1/system/active-users?number=201").await, "number");
    expect_field(keyed.get("/api/v1/system/active-users?start=-1").await, "start");
    // No credential, a malformed one, a role without the right.
    anon.get("/api/v1/system/active-users").await.expect(401);
    anon.with(Auth::ApiKey("chk_not_a_key".into())).get("/api/v1/system/active-users").await.expect(401);

    // Ending one session: its token stops working at once.
    assert!(token_works(&daemon.endpoint, &someone.access_token).await);
    keyed.delete(&format!("/api/v1/system/active-users/session/{}", someone.session_id)).await.expect(204);
    assert!(!token_works(&daemon.endpoint, &someone.access_token).await);
    assert!(sessions(&mut admin, "someone").await.is_empty());
    let gone = keyed.delete(&format!("/api/v1/system/active-users/session/{}", someone.session_id)).await;
    assert!(error_message(&gone.expect(404)).contains(&someone.session_id));
    // A USER-role caller may not list or end sessions.
    let user = rest_as(&daemon, "someone", USER_PASSWORD).await;
    let denied = user.get("/api/v1/system/active-users").await.expect(403);
    assert!(!error_message(&denied).is_empty());
    user.delete(&format!("/api/v1/system/active-users/session/{}", key_session.id)).await.expect(403);
    user.delete("/api/v1/system/active-users?all").await.expect(403);

    // Ending every session but the caller's own needs `?all`.
    let officer = login(&daemon.endpoint, "officer", USER_PASSWORD).await;
    expect_field(keyed.delete("/api/v1/system/active-users").await, "all");
    assert!(token_works(&daemon.endpoint, &officer.access_token).await);
    keyed.delete("/api/v1/system/active-users?all").await.expect(204);
    assert!(!token_works(&daemon.endpoint, &officer.access_token).await);
    let left = keyed.get("/api/v1/system/active-users").await.expect(200);
    let left: Vec<String> = records(&left).iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(left, std::slice::from_ref(&key_session.id), "only the caller's own session is left");
    assert!(token_works(&daemon.endpoint, &key).await, "the caller's own key still works");
    // Each ending was audited, by the API key's owner.
    let audited = table_rows(&env.store_path(), &["audit_log"]).join("\n");
    for action in ["session.delete", "session.delete_all"] {
        assert!(
            audited
                .lines()
                .any(|l| l.contains(&format!("Text(\"{action}\")")) && l.contains("Text(\"admin\")")),
            "{action} not audited"
        );
    }
    let user = rest_as(&daemon, "someone", USER_PASSWORD).await;

    // System information, as the store file and the environment say.
    let info = keyed.get("/api/v1/system/system-information").await.expect(200);
    let schema: i64 = {
        let conn = rusqlite::Connection::open_with_flags(
            env.store_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("db");
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version")
    };
    assert_eq!(info.body["store-schema-version"], json!(schema));
    assert_eq!(info.body["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(info.body["uptime-seconds"].as_u64().is_some());
    let tokens = info.body["tokens"].as_array().expect("tokens");
    let daemon_token =
        tokens.iter().find(|t| t["serial"] == json!(env.daemon_token_serial)).expect("the daemon token");
    assert_eq!(
        (daemon_token["present"].as_bool(), daemon_token["role"].as_str()),
        (Some(true), Some("daemon"))
    );
    user.get("/api/v1/system/system-information").await.expect(403);

    // Health: public; every subsystem with `?status=all`; a bad value names the field.
    let ok = anon.get("/api/v1/system/healthcheck").await.expect(200);
    assert_eq!(ok.body, json!({"result": {"info": [{"message": "OK"}]}}));
    let detail = anon.get("/api/v1/system/healthcheck?status=all").await.expect(200);
    assert_eq!(detail.body["status"], "OK");
    let subsystems: Vec<(String, String)> = detail.body["subsystems"]
        .as_array()
        .expect("subsystems")
        .iter()
        .map(|s| {
            (s["name"].as_str().expect("name").to_owned(), s["status"].as_str().expect("status").to_owned())
        })
        .collect();
    let status_of = |name: &str| subsystems.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_str());
    assert_eq!(status_of("cardhsm.store"), Some("SERVING"));
    assert_eq!(status_of(&format!("cardhsm.token.{}", env.daemon_token_serial)), Some("SERVING"));
    // The test daemon's PC/SC socket has no pcscd behind it: listed, not counted.
    assert_eq!(status_of("cardhsm.readers"), Some("NOT_SERVING"));
    expect_field(anon.get("/api/v1/system/healthcheck?status=some").await, "status");

    device_certificate_csr(&env, &daemon, &keyed, &user).await;
}

/// CreateCsr, an openssl CA, CompleteCsr and DeleteCertificateBySubject over REST.
async fn device_certificate_csr(env: &TestEnv, daemon: &Daemon, keyed: &Rest, user: &Rest) {
    let token = env.card_serials[0].clone();
    let dir = env.path().join("appliance-csr");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let csrs = format!("/api/v1/system/certificates/device-certificate-csrs?token={token}");
    let body = json!({
        "subject-common-name": "vpn.example.com",
        "subject-organization": "Acme, Inc.",
        "subject-country": "CZ",
        "key-type": "ECC",
        "ecc-curve": "P-384",
    });

    // Refusals name the appliance's field and leave nothing behind.
    let snapshot = || {
        let mut rows = store_snapshot(&env.store_path());
        rows.extend(table_rows(&env.store_path(), &["token_csrs", "token_certificates"]));
        rows
    };
    let before = snapshot();
    expect_field(keyed.post(&csrs, json!({"subject-common-name": "x", "key-type": "DSA"})).await, "key-type");
    expect_field(
        keyed.post(&csrs, json!({"subject-common-name": "x", "key-type": "RSA", "key-length": "long"})).await,
        "key-length",
    );
    expect_field(keyed.post(&csrs, json!({"key-type": "ECC"})).await, "subject-common-name");
    expect_field(
        keyed.post(&csrs, json!({"subject-common-name": " ", "key-type": "ECC"})).await,
        "subject-common-name",
    );
    expect_field(keyed.post(&csrs, json!({"subject-common-name": "x"})).await, "key-type");
    expect_field(
        keyed.post(&csrs, json!({"subject-common-name": "x", "key-type": "ECC", "ecc-curve": "P-521"})).await,
        "ecc-curve",
    );
    expect_field(
        keyed.post(&csrs, json!({"subject-common-name": "x", "key-type": "ECC", "key-length": 2048})).await,
        "key-length",
    );
    let unknown = keyed
        .post("/api/v1/system/certificates/device-certificate-csrs?token=no-such-token", body.clone())
        .await
        .expect(404);
    assert!(error_message(&unknown).contains("no-such-token"), "{}", unknown.text());
    let raw = keyed.call("POST", &csrs, Body::Raw("application/json", b"[1, 2".to_vec())).await.expect(400);
    assert!(!error_message(&raw).is_empty());
    user.post(&csrs, body.clone()).await.expect(403);
    Rest::new(daemon).await.post(&csrs, body.clone()).await.expect(401);
    assert_eq!(snapshot(), before);

    // The HSM makes the key; openssl verifies the CSR's signature and subject.
    let created = keyed.post(&csrs, body).await.expect(201);
    assert_eq!(created.body["key-algorithm"], "EC:P-384");
    let csr_id = created.body["id"].as_str().expect("id").to_owned();
    let key_id = created.body["key-id"].as_str().expect("key-id").to_owned();
    std::fs::write(dir.join("device.csr"), created.body["csr"].as_str().expect("csr")).expect("write csr");
    let verified =
        openssl(&dir, &["req", "-in", "device.csr", "-noout", "-verify", "-subject", "-nameopt", "RFC2253"]);
    assert!(verified.contains("verify OK"), "{verified}");
    assert!(verified.contains("CN=vpn.example.com,O=Acme\\, Inc.,C=CZ"), "{verified}");

    // An openssl CA signs it; the certificate is bound back to the HSM key.
    self_signed(&dir, "ca", "ec:P-256", "/CN=Appliance Test CA");
    let pem = String::from_utf8(openssl_ca_sign(&dir, "ca", "device")).expect("PEM");
    let complete = |id: &str| {
        format!("/api/v1/system/certificates/device-certificate-csrs/{id}/certificate?token={token}")
    };
    // A certificate for another key is refused naming the field; an unknown CSR is 404.
    let other = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    expect_field(keyed.post(&complete(&csr_id), json!({"certificate": other})).await, "certificate");
    expect_field(keyed.post(&complete(&csr_id), json!({"certificate": 7})).await, "certificate");
    keyed
        .post(&complete("6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a"), json!({"certificate": pem.clone()}))
        .await
        .expect(404);
    let bound = keyed.post(&complete(&csr_id), json!({"certificate": pem})).await.expect(200);
    let sha1 = openssl_fingerprint(&dir, "device.crt", "sha1");
    assert_eq!(bound.body["fingerprint"], json!(sha1));
    assert_eq!(bound.body["sha256-fingerprint"], json!(openssl_fingerprint(&dir, "device.crt", "sha256")));
    assert_eq!(bound.body["id"], json!(key_id));
    assert_eq!(bound.body["has-private-key"], json!(true));
    assert_eq!(bound.body["issuer"], "CN=Appliance Test CA");
    let mut store = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let listed = store
        .certstore
        .list_certificates(pb::ListCertificatesRequest { token: token.clone(), id: key_id.clone() })
        .await
        .expect("list")
        .into_inner()
        .certificates;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, sha1);
    assert!(listed[0].has_private_key);

    // Deleted by subject CN, with its key pair; a second time there is nothing (404).
    let subject = format!("/api/v1/system/certificates/device-certificates/vpn.example.com?token={token}");
    user.delete(&subject).await.expect(403);
    let deleted = keyed.delete(&subject).await.expect(200);
    let message = deleted.body["result"]["info"][0]["message"].as_str().expect("info");
    assert!(message.contains("1 certificate"), "{message}");
    let gone = store
        .certstore
        .list_certificates(pb::ListCertificatesRequest { token: token.clone(), id: key_id })
        .await;
    expect_code(gone, Code::NotFound);
    let after = store
        .certstore
        .list_certificates(pb::ListCertificatesRequest { token: token.clone(), id: String::new() })
        .await
        .expect("list")
        .into_inner()
        .certificates;
    assert!(after.iter().all(|c| c.fingerprint != sha1), "{after:?}");
    let again = keyed.delete(&subject).await.expect(404);
    assert!(error_message(&again).contains("vpn.example.com"));

    // Appliance clients name no token: the daemon's own token then holds the key.
    let default = json!({"subject-common-name": "default.example.com", "key-type": "ECC"});
    keyed.post("/api/v1/system/certificates/device-certificate-csrs", default).await.expect(201);
    let pending = table_rows(&env.store_path(), &["token_csrs"]);
    assert!(
        pending.iter().any(|r| r.contains(&env.daemon_token_serial) && r.contains("default.example.com")),
        "{pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_is_503_naming_a_configured_token_that_is_absent() {
    let env = TestEnv::new(0).expect("env");
    let absent = "0badc0ffee000002";
    let extra = format!(
        "[[pkcs11.tokens]]\nserial = {absent:?}\nrole = \"card\"\npin = {{ file = {:?} }}\n",
        env.card_pin_file().display().to_string()
    );
    let daemon = Daemon::start_with(&env, &extra).await.expect("daemon");
    let rest = Rest::new(&daemon).await;
    for path in ["/api/v1/system/healthcheck", "/api/v1/system/healthcheck?status=all"] {
        let reply = rest.get(path).await.expect(503);
        let message = error_message(&reply);
        assert!(message.contains(&format!("cardhsm.token.{absent} is NOT_SERVING")), "{message}");
        assert!(!message.contains("cardhsm.store"), "the store serves: {message}");
    }
    // The daemon keeps serving the rest.
    let info = rest_as(&daemon, "admin", ADMIN_PASSWORD).await.get("/api/v1/system/system-information").await;
    let info = info.expect(200);
    let t = info.body["tokens"].as_array().expect("tokens").iter().find(|t| t["serial"] == absent).cloned();
    assert_eq!(t.expect("the absent token is listed")["present"], json!(false));
}

/// A config fragment naming a card token by serial (PIN from the environment's card PIN file).
fn card_token(env: &TestEnv, serial: &str) -> String {
    format!(
        "[[pkcs11.tokens]]\nserial = {serial:?}\nrole = \"card\"\npin = {{ file = {:?} }}\n",
        env.card_pin_file().display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_exported_over_rest_is_imported_over_rest_into_a_fresh_daemon() {
    // Daemon A: a user and a card.
    let env = TestEnv::new(1).expect("env");
    let card = env.card_serials[0].clone();
    let mut source = Daemon::start_with(&env, &card_token(&env, &card)).await.expect("daemon A");
    let mut admin = api_as(&source.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "alice", pb::Role::Operator).await;
    let card_id = admin
        .cards
        .register_card(pb::RegisterCardRequest {
            token_serial: card.clone(),
            owner: "alice@corp.example".into(),
            label: "Badge".into(),
            pac_number: "004711".into(),
            policy: String::new(),
            reader: String::new(),
        })
        .await
        .expect("card")
        .into_inner()
        .id;

    let su = rest_as(&source, "admin", ADMIN_PASSWORD).await;
    let export = "/api/v1/system/binary-configuration";
    expect_field(su.get(export).await, "X-Archive-Password");
    expect_field(su.with_header("X-Archive-Password", "short").get(export).await, "X-Archive-Password");
    let operator = rest_as(&source, "alice", USER_PASSWORD).await;
    operator.with_header("X-Archive-Password", ARCHIVE_PASSWORD).get(export).await.expect(403);
    Rest::new(&source)
        .await
        .with_header("X-Archive-Password", ARCHIVE_PASSWORD)
        .get(export)
        .await
        .expect(401);
    let archive = su.with_header("X-Archive-Password", ARCHIVE_PASSWORD).get(export).await.expect(200);
    assert_eq!(archive.content_type, "application/octet-stream");
    let archive = archive.bytes;
    assert!(archive.len() > 1000, "{} bytes", archive.len());
    assert!(!archive.windows(6).any(|w| w == b"SQLite"), "the archive is encrypted");
    source.stop().await;

    // Daemon B on byte copies of A's tokens, with no data of its own.
    let env_b = env.copy_tokens().expect("copy tokens");
    let mut target = Daemon::start_with(&env_b, &card_token(&env_b, &card)).await.expect("daemon B");
    let su_b = rest_as(&target, "admin", ADMIN_PASSWORD).await;
    let put = |rest: &Rest, query: &str, bytes: Vec<u8>| {
        let path = format!("/api/v1/system/binary-configuration{query}");
        let rest = rest.clone();
        async move { rest.call("PUT", &path, Body::Raw("application/octet-stream", bytes)).await }
    };
    let keyed = su_b.with_header("X-Archive-Password", ARCHIVE_PASSWORD);
    let before = store_snapshot(&env_b.store_path());
    expect_field(put(&keyed, "?import=sideways", archive.clone()).await, "import");
    expect_field(put(&keyed, "", archive.clone()).await, "import");
    expect_field(put(&su_b, "?import=normal", archive.clone()).await, "X-Archive-Password");
    let wrong = su_b.with_header("X-Archive-Password", "wrong-password-000");
    expect_field(put(&wrong, "?import=normal", archive.clone()).await, "X-Archive-Password");
    expect_field(put(&keyed, "?import=normal", b"not a backup at all".to_vec()).await, "archive");
    let anonymous = Rest::new(&target).await.with_header("X-Archive-Password", ARCHIVE_PASSWORD);
    // (A small body: the guard answers before reading it.)
    put(&anonymous, "?import=normal", b"archive".to_vec()).await.expect(401);
    assert_eq!(store_snapshot(&env_b.store_path()), before, "refused imports change nothing");
    let mut anon_b = api(&target.endpoint, None).await;
    let r = anon_b
        .auth
        .login(pb::LoginRequest { username: "alice".into(), password: USER_PASSWORD.into() })
        .await;
    expect_code(r, Code::Unauthenticated);

    // The real import answers, then B restarts itself on A's store.
    std::fs::remove_file(&target.ready_path).expect("remove ready file");
    let done = put(&keyed, "?import=normal", archive).await.expect(200);
    let message = done.body["result"]["info"][0]["message"].as_str().expect("info");
    assert!(message.contains("restarts"), "{message}");
    target.wait_ready_again().await.expect("daemon B back after the restore");

    // Through gRPC: A's user signs in and A's card is there.
    let mut alice = api_as(&target.endpoint, "alice", USER_PASSWORD).await;
    let got = alice.cards.get_card(pb::GetCardRequest { id: card_id }).await.expect("card").into_inner();
    assert_eq!((got.serial_number.as_str(), got.label.as_str()), (card.as_str(), "Badge"));
    // And over REST on B's new REST port.
    let restored = rest_as(&target, "admin", ADMIN_PASSWORD).await;
    restored.get("/api/v1/system/active-users?name=alice").await.expect(200);
}
