//! End-to-end: authentication and authorization through the real cardhsmd — login, refresh
//! rotation, forged, expired and missing tokens, role checks, the public health service, and
//! that no password or PIN ever reaches the daemon's log.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::*;
use tonic::Code;

const USER_PASSWORD: &str = "user-password-0123";
const OPERATOR_PASSWORD: &str = "operator-password-4567";

async fn create_user(admin: &mut Api, username: &str, password: &str, role: pb::Role) -> pb::User {
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: password.into(),
            roles: vec![role as i32],
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_and_whoami() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let tokens = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900, "access tokens live 15 minutes by default");
    assert_eq!(tokens.roles, [pb::Role::SuperAdmin as i32, pb::Role::Admin as i32]);
    assert!(!tokens.refresh_token.is_empty());

    let mut api = api(&daemon.endpoint, Some(tokens.access_token.clone())).await;
    let me = api.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!(me.username, "admin");
    assert_eq!(me.roles, [pb::Role::SuperAdmin as i32, pb::Role::Admin as i32]);

    // Refresh rotates: a new pair, and the new access token works.
    let mut anon = support::api(&daemon.endpoint, None).await;
    let second = anon
        .auth
        .refresh(pb::RefreshRequest { refresh_token: tokens.refresh_token.clone() })
        .await
        .expect("refresh")
        .into_inner();
    assert_ne!(second.refresh_token, tokens.refresh_token);
    let mut api2 = support::api(&daemon.endpoint, Some(second.access_token.clone())).await;
    api2.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("refreshed token works");

    // Presenting the spent refresh token again is refused and revokes the whole family:
    // the token minted from it no longer refreshes either.
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: tokens.refresh_token.clone() }).await,
        Code::Unauthenticated,
    );
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: second.refresh_token.clone() }).await,
        Code::Unauthenticated,
    );
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: "made-up".into() }).await,
        Code::Unauthenticated,
    );
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: String::new() }).await,
        Code::Unauthenticated,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_user_look_the_same_and_change_nothing() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let before = store_snapshot(&env.store_path());
    let mut anon = api(&daemon.endpoint, None).await;
    let wrong = expect_code(
        anon.auth
            .login(pb::LoginRequest { username: "admin".into(), password: "wrong-password".into() })
            .await,
        Code::Unauthenticated,
    );
    let unknown = expect_code(
        anon.auth
            .login(pb::LoginRequest { username: "nobody".into(), password: "wrong-password".into() })
            .await,
        Code::Unauthenticated,
    );
    let empty = expect_code(
        anon.auth.login(pb::LoginRequest { username: String::new(), password: String::new() }).await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong.message(), unknown.message());
    assert_eq!(wrong.message(), empty.message());
    assert_eq!(store_snapshot(&env.store_path()), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_forged_and_expired_tokens_are_unauthenticated() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let good = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await.access_token;
    let list = || pb::ListTokensRequest {};

    let mut none = api(&daemon.endpoint, None).await;
    expect_code(none.cards.list_tokens(list()).await, Code::Unauthenticated);
    expect_code(none.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);

    // Forged: a valid token's payload changed (roles), or its signature changed.
    let parts: Vec<&str> = good.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[0] ^= 1;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("json");
    claims["usr"] = "mallory".into();
    let bad_payload = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    for forged in [bad_sig, bad_payload, "garbage".to_owned(), format!("{good}x")] {
        let mut a = api(&daemon.endpoint, Some(forged)).await;
        expect_code(a.cards.list_tokens(list()).await, Code::Unauthenticated);
    }

    // Expired: signed with the daemon's real key (read from its store), expiry in the past.
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let key: Vec<u8> = conn
        .query_row("SELECT value FROM meta WHERE key = 'auth.access_token_hmac_key'", [], |r| r.get(0))
        .expect("signing key");
    let sign = |exp: i64| {
        let mut c = claims.clone();
        c["usr"] = "admin".into();
        c["exp"] = exp.into();
        let payload = URL_SAFE_NO_PAD.encode(c.to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("hmac");
        mac.update(format!("cha1.{payload}").as_bytes());
        format!("cha1.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    // Control: the same construction with a future expiry is accepted, so the refusal below is
    // about the expiry and nothing else.
    let mut fresh = api(&daemon.endpoint, Some(sign(now + 300))).await;
    fresh.cards.list_tokens(list()).await.expect("self-signed control token works");
    let mut expired = api(&daemon.endpoint, Some(sign(now - 1))).await;
    let s = expect_code(expired.cards.list_tokens(list()).await, Code::Unauthenticated);
    assert!(s.message().contains("expired"), "{}", s.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_enforced_and_users_see_only_their_own_cards() {
    let env = TestEnv::new(2).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "user1@corp.example", USER_PASSWORD, pb::Role::User).await;
    create_user(&mut admin, "officer", OPERATOR_PASSWORD, pb::Role::Operator).await;
    let mine = admin
        .cards
        .register_card(pb::RegisterCardRequest {
            token_serial: env.card_serials[0].clone(),
            owner: "user1@corp.example".into(),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    let theirs = admin
        .cards
        .register_card(pb::RegisterCardRequest {
            token_serial: env.card_serials[1].clone(),
            owner: "user2@corp.example".into(),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    // Both sign in first (a login writes a refresh token and an audit record), then every
    // refused call below must leave the store as it was.
    let mut user = api_as(&daemon.endpoint, "user1@corp.example", USER_PASSWORD).await;
    let mut officer = api_as(&daemon.endpoint, "officer", OPERATOR_PASSWORD).await;
    let before = store_snapshot(&env.store_path());
    // Administrator and operator RPCs.
    expect_code(user.cards.list_tokens(pb::ListTokensRequest {}).await, Code::PermissionDenied);
    expect_code(
        user.cards
            .revoke_card(pb::RevokeCardRequest { id: mine.id.clone(), reason: 2, comment: String::new() })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        user.cards.issue_card(pb::IssueCardRequest { id: mine.id.clone(), ..Default::default() }).await,
        Code::PermissionDenied,
    );
    expect_code(
        user.users
            .create_user(pb::CreateUserRequest {
                username: "sneaky".into(),
                password: "sneaky-password-1".into(),
                roles: vec![1],
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        user.users.list_users(pb::ListUsersRequest { page: None, ..Default::default() }).await,
        Code::PermissionDenied,
    );
    // Their own cards: yes. Someone else's: no.
    let own = user
        .cards
        .list_cards(pb::ListCardsRequest { owner: "user1@corp.example".into(), state: 0, page: None })
        .await
        .expect("own cards")
        .into_inner();
    assert_eq!(own.cards.len(), 1);
    user.cards.get_card(pb::GetCardRequest { id: mine.id.clone() }).await.expect("own card");
    expect_code(
        user.cards
            .list_cards(pb::ListCardsRequest { owner: "user2@corp.example".into(), state: 0, page: None })
            .await,
        Code::PermissionDenied,
    );
    expect_code(user.cards.get_card(pb::GetCardRequest { id: theirs.id.clone() }).await, Code::NotFound);

    // An operator runs the card lifecycle but does not manage users.
    expect_code(
        officer.users.list_users(pb::ListUsersRequest { page: None, ..Default::default() }).await,
        Code::PermissionDenied,
    );
    officer.cards.list_tokens(pb::ListTokensRequest {}).await.expect("operator lists tokens");
    assert_eq!(store_snapshot(&env.store_path()), before, "refused calls changed the store");
    officer
        .cards
        .disable_card(pb::CardActionRequest { id: mine.id.clone(), comment: String::new() })
        .await
        .expect_err("assigned card cannot be disabled");
    officer
        .cards
        .revoke_card(pb::RevokeCardRequest { id: theirs.id.clone(), reason: 6, comment: String::new() })
        .await
        .expect("operator revokes");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_created_validated_and_listed() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let before = store_snapshot(&env.store_path());
    let req = |u: &str, p: &str, roles: Vec<i32>| pb::CreateUserRequest {
        username: u.into(),
        password: p.into(),
        roles,
        ..Default::default()
    };
    expect_invalid_field(admin.users.create_user(req("ab", USER_PASSWORD, vec![3])).await, "username");
    expect_invalid_field(admin.users.create_user(req("has space", USER_PASSWORD, vec![3])).await, "username");
    expect_invalid_field(admin.users.create_user(req("shortpw", "short", vec![3])).await, "password");
    expect_invalid_field(admin.users.create_user(req("noroles", USER_PASSWORD, vec![])).await, "roles");
    expect_invalid_field(
        admin.users.create_user(req("badrole", USER_PASSWORD, vec![3, 99])).await,
        "roles[1]",
    );
    expect_code(admin.users.create_user(req("ADMIN", USER_PASSWORD, vec![3])).await, Code::AlreadyExists);
    assert_eq!(store_snapshot(&env.store_path()), before);

    let u = create_user(&mut admin, "alice", USER_PASSWORD, pb::Role::Operator).await;
    assert_eq!(u.roles, [pb::Role::Operator as i32]);
    let list = admin
        .users
        .list_users(pb::ListUsersRequest { page: None, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    let names: Vec<_> = list.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["admin", "alice"]);
    assert_eq!(list.page.expect("page").total_count, 2);
    // The new user can log in with the password given.
    login(&daemon.endpoint, "alice", USER_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_public_and_reflection_lists_our_services() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let ch = channel(&daemon.endpoint).await;
    let mut health = HealthClient::new(ch.clone());
    for service in ["", "cardhsm.v1.CardService", "cardhsm.v1.AuthService"] {
        let r = health
            .check(HealthCheckRequest { service: service.into() })
            .await
            .expect("health without a token");
        assert_eq!(r.into_inner().status, ServingStatus::Serving as i32, "{service:?}");
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    // Without a token: refused. With one: our services are listed.
    let mut anon = ServerReflectionClient::new(ch.clone());
    let refused = match anon.server_reflection_info(list()).await {
        Err(s) => s,
        Ok(resp) => match resp.into_inner().message().await {
            Err(s) => s,
            Ok(m) => panic!("reflection answered without a token: {m:?}"),
        },
    };
    assert_eq!(refused.code(), Code::Unauthenticated);
    let token = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await.access_token;
    let mut refl = ServerReflectionClient::with_interceptor(ch, Bearer(Some(token)));
    let mut stream = refl.server_reflection_info(list()).await.expect("reflection").into_inner();
    let answer = stream.message().await.expect("answer").expect("one message");
    let Some(MessageResponse::ListServicesResponse(services)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}")
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "cardhsm.v1.AuthService",
        "cardhsm.v1.CardService",
        "cardhsm.v1.UserService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_and_pins_never_reach_the_log() {
    let env = TestEnv::new(1).expect("env");
    // Everything the daemon and its libraries can log, down to trace (h2 frames, hyper,
    // tonic), so a secret in any request or span field would show.
    let daemon = Daemon::start_with_log_filter_and(
        &env,
        "trace",
        "[[auth.realms]]\nname = \"automation\"\nroles = [\"USER\"]\n",
    )
    .await
    .expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "bobby", USER_PASSWORD, pb::Role::User).await;
    // Exercise the paths that handle secrets: failed and good logins, refresh, token use, a
    // card issuance that logs in to the card token with its PIN.
    let mut anon = api(&daemon.endpoint, None).await;
    let _ = anon
        .auth
        .login(pb::LoginRequest { username: "bobby".into(), password: "wrong-but-secret-pw".into() })
        .await;
    let t = login(&daemon.endpoint, "bobby", USER_PASSWORD).await;
    anon.auth.refresh(pb::RefreshRequest { refresh_token: t.refresh_token.clone() }).await.expect("refresh");
    let card = admin
        .cards
        .register_card(pb::RegisterCardRequest {
            token_serial: env.card_serials[0].clone(),
            owner: "bob@corp.example".into(),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    admin.cards.issue_card(pb::IssueCardRequest { id: card.id, ..Default::default() }).await.expect("issue");
    // API keys, a password change and a logout: the key, both passwords and the tokens.
    let key = anon
        .auth
        .realm_auth(pb::RealmAuthRequest {
            realm: "automation".into(),
            username: "bobby".into(),
            password: USER_PASSWORD.into(),
        })
        .await
        .expect("api key")
        .into_inner()
        .api_key;
    let mut with_key = api(&daemon.endpoint, Some(key.clone())).await;
    with_key.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("key works");
    let mut bob = api(&daemon.endpoint, Some(t.access_token.clone())).await;
    let _ = bob.auth.who_am_i(pb::WhoAmIRequest {}).await;
    let bob2 = login(&daemon.endpoint, "bobby", USER_PASSWORD).await;
    let mut bob2_api = api(&daemon.endpoint, Some(bob2.access_token.clone())).await;
    bob2_api
        .auth
        .change_password(pb::ChangePasswordRequest {
            old_password: USER_PASSWORD.into(),
            new_password: "changed-secret-password-9".into(),
            repeated_new_password: "changed-secret-password-9".into(),
        })
        .await
        .expect("change password");
    let bob3 = login(&daemon.endpoint, "bobby", "changed-secret-password-9").await;
    api(&daemon.endpoint, Some(bob3.access_token.clone()))
        .await
        .auth
        .logout(pb::LogoutRequest {})
        .await
        .expect("logout");

    let log = daemon.log();
    assert!(log.contains("gRPC listening"), "the log was captured: {log}");
    assert!(log.contains("/cardhsm.v1.AuthService/Login"), "request spans were logged at this level");
    for secret in [
        ADMIN_PASSWORD,
        USER_PASSWORD,
        "wrong-but-secret-pw",
        env.card_pin.as_str(),
        env.daemon_pin.as_str(),
        t.refresh_token.as_str(),
        t.access_token.as_str(),
        key.as_str(),
        key.rsplit('_').next().expect("secret part"),
        "changed-secret-password-9",
        bob2.refresh_token.as_str(),
        bob3.access_token.as_str(),
    ] {
        assert!(!secret.is_empty());
        assert!(!log.contains(secret), "a secret reached the daemon log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_password_is_generated_once_into_a_private_file_when_none_is_configured() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new(0).expect("env");
    // A source that is unset: the daemon must generate the password.
    let mut daemon =
        Daemon::start_with(&env, "[auth]\nbootstrap_password = { env = \"CARDHSM_TEST_UNSET_BOOTSTRAP\" }\n")
            .await
            .expect("daemon");
    let file = env.path().join("bootstrap-admin.password");
    let meta = std::fs::metadata(&file).expect("password file written beside the store");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "user-only");
    let password = std::fs::read_to_string(&file).expect("read").trim().to_owned();
    assert!(password.len() >= 20, "a generated password is long: {} chars", password.len());
    assert_ne!(password, ADMIN_PASSWORD);
    login(&daemon.endpoint, "admin", &password).await;
    let log = daemon.log();
    assert!(log.contains("bootstrap-admin.password"), "the log says where the password is");
    assert!(!log.contains(&password), "stderr is not a terminal: the password itself is not printed");
    let mut anon = api(&daemon.endpoint, None).await;
    expect_code(
        anon.auth.login(pb::LoginRequest { username: "admin".into(), password: ADMIN_PASSWORD.into() }).await,
        Code::Unauthenticated,
    );

    // Once: a restart keeps the administrator and generates nothing new.
    std::fs::remove_file(&file).expect("remove");
    daemon.restart().await;
    assert!(!file.exists(), "no second password is generated");
    login(&daemon.endpoint, "admin", &password).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_password_can_come_from_a_file() {
    let env = TestEnv::new(0).expect("env");
    let secret = env.path().join("admin.secret");
    std::fs::write(&secret, "from-a-file-password-42\n").expect("write");
    let daemon =
        Daemon::start_with(&env, &format!("[auth]\nbootstrap_password = {{ file = {:?} }}\n", secret))
            .await
            .expect("daemon");
    login(&daemon.endpoint, "admin", "from-a-file-password-42").await;
    assert!(!env.path().join("bootstrap-admin.password").exists());
    assert!(!daemon.log().contains("from-a-file-password-42"));
}

/// The daemon's access-token signing key, read from its store.
fn signing_key(env: &TestEnv) -> Vec<u8> {
    rusqlite::Connection::open(env.store_path())
        .expect("db")
        .query_row("SELECT value FROM meta WHERE key = 'auth.access_token_hmac_key'", [], |r| r.get(0))
        .expect("signing key")
}

/// `prefix.<claims>.<HMAC-SHA256 over "prefix.<claims>" with key>`.
fn forge(prefix: &str, claims: &serde_json::Value, key: &[u8]) -> String {
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac");
    mac.update(format!("{prefix}.{payload}").as_bytes());
    format!("{prefix}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn access_tokens_of_another_version_key_audience_or_validity_window_are_refused() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let good = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await.access_token;
    let key = signing_key(&env);
    let claims = claims_of(&good);
    for field in ["sub", "usr", "rol", "sid", "aud", "iat", "nbf", "exp"] {
        assert!(claims.get(field).is_some(), "access tokens carry {field}: {claims}");
    }
    assert_eq!(claims["aud"], "cardhsm");
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims.clone();
        c[field] = value;
        c
    };
    // Control: a token forged exactly like the refused ones below, but valid, is accepted.
    let control = forge("cha1", &with("exp", (now + 300).into()), &key);
    let mut a = api(&daemon.endpoint, Some(control)).await;
    a.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("the forged control token works");

    let wrong_key = forge("cha1", &claims, b"another key entirely, 32 bytes!!");
    let mut none_claims = claims.clone();
    none_claims["alg"] = "none".into();
    let unsigned = format!("none.{}.", URL_SAFE_NO_PAD.encode(none_claims.to_string()));
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed", "cha1.only-two".into(), "malformed"),
        ("not base64", "cha1.!!!.???".into(), "malformed"),
        ("alg none", unsigned, "malformed"),
        (
            "alg none, our prefix, no signature",
            format!("cha1.{}.", good.split('.').nth(1).expect("p")),
            "signature",
        ),
        ("another version", forge("cha2", &claims, &key), "malformed"),
        ("wrong key", wrong_key, "signature"),
        ("expired", forge("cha1", &with("exp", (now - 1).into()), &key), "expired"),
        ("not yet valid", forge("cha1", &with("nbf", (now + 600).into()), &key), "not valid yet"),
        ("other audience", forge("cha1", &with("aud", "another-service".into()), &key), "audience"),
        (
            "no audience",
            forge(
                "cha1",
                &{
                    let mut c = claims.clone();
                    c.as_object_mut().expect("obj").remove("aud");
                    c
                },
                &key,
            ),
            "malformed",
        ),
        ("unknown session", forge("cha1", &with("sid", "no-such-session".into()), &key), "session"),
        (
            "claims not JSON",
            {
                let payload = URL_SAFE_NO_PAD.encode("not json");
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("hmac");
                mac.update(format!("cha1.{payload}").as_bytes());
                format!("cha1.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
            },
            "malformed",
        ),
    ];
    for (what, token, says) in cases {
        let mut a = api(&daemon.endpoint, Some(token)).await;
        let s = expect_code(a.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
        assert!(s.message().contains(says), "{what}: {}", s.message());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn of_sixteen_concurrent_refreshes_with_one_token_exactly_one_succeeds() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let first = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let mut calls = Vec::new();
    for _ in 0..16 {
        let endpoint = daemon.endpoint.clone();
        let token = first.refresh_token.clone();
        calls.push(tokio::spawn(async move {
            let mut a = api(&endpoint, None).await;
            a.auth.refresh(pb::RefreshRequest { refresh_token: token }).await.map(|r| r.into_inner())
        }));
    }
    let mut won = Vec::new();
    for call in calls {
        match call.await.expect("task") {
            Ok(tokens) => won.push(tokens),
            Err(s) => assert_eq!(s.code(), Code::Unauthenticated, "{s:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one refresh succeeds");
    // The others were reuses: the family is revoked and the session ended, so even the
    // winner's new tokens are dead.
    let mut anon = api(&daemon.endpoint, None).await;
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: won[0].refresh_token.clone() }).await,
        Code::Unauthenticated,
    );
    let mut winner = api(&daemon.endpoint, Some(won[0].access_token.clone())).await;
    expect_code(winner.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    let live: i64 = rusqlite::Connection::open(env.store_path())
        .expect("db")
        .query_row(
            "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = ?1 AND revoked_at IS NULL",
            [&first.session_id],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(live, 0, "the whole family is revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_throttle_an_account_and_more_than_100_an_hour_are_refused() {
    let env = TestEnv::new(0).expect("env");
    // Three failures lock an account for 900 s (doubling after that): long enough that the
    // lockout cannot lapse during the test.
    let daemon = Daemon::start_with(&env, "[auth]\nlogin_throttle_after = 3\nlogin_throttle_secs = 900\n")
        .await
        .expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "henry", USER_PASSWORD, pb::Role::User).await;
    let mut anon = api(&daemon.endpoint, None).await;
    let attempt = |user: &str, pw: &str| pb::LoginRequest { username: user.into(), password: pw.into() };

    let before = store_snapshot(&env.store_path());
    for account in ["henry", "ghost"] {
        for _ in 0..3 {
            let s = expect_code(
                anon.auth.login(attempt(account, "wrong-password-1")).await,
                Code::Unauthenticated,
            );
            assert_eq!(s.message(), "invalid username or password");
        }
    }
    // Locked: even the right password is refused, with a message that says why; an unknown
    // account is throttled exactly the same way (same path, same answer).
    // RESOURCE_EXHAUSTED (a limit, with when to try again), not UNAUTHENTICATED.
    let known = expect_code(anon.auth.login(attempt("henry", USER_PASSWORD)).await, Code::ResourceExhausted);
    let unknown =
        expect_code(anon.auth.login(attempt("ghost", USER_PASSWORD)).await, Code::ResourceExhausted);
    assert!(known.message().contains("throttled"), "{}", known.message());
    assert_eq!(known.message().split(':').next(), unknown.message().split(':').next());
    // Other accounts are not affected; RealmAuth and the account name's case go through the same
    // throttle.
    login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let s = expect_code(anon.auth.login(attempt("HENRY", USER_PASSWORD)).await, Code::ResourceExhausted);
    assert!(s.message().contains("throttled"), "{}", s.message());
    // Henry: 3 failures + 2 refused attempts so far. Every refused attempt counts; at 100 in the
    // hour the account is refused outright, with its own message.
    for _ in 5..100 {
        let s =
            expect_code(anon.auth.login(attempt("henry", "wrong-password-1")).await, Code::ResourceExhausted);
        assert!(s.message().contains("throttled"), "{}", s.message());
    }
    let s = expect_code(anon.auth.login(attempt("henry", USER_PASSWORD)).await, Code::ResourceExhausted);
    assert!(s.message().contains("more than 100 failed sign-ins"), "{}", s.message());
    // None of it wrote anything but the administrator's sign-in (which adds rows; compare the
    // users table and henry's absence from the audit log and refresh tokens instead).
    let after = store_snapshot(&env.store_path());
    let users =
        |snap: &[String]| snap.iter().filter(|l| l.starts_with("users:")).cloned().collect::<Vec<_>>();
    assert_eq!(users(&after), users(&before));
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let henry_rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_log WHERE actor = 'henry'", [], |r| r.get(0))
        .expect("query");
    assert_eq!(henry_rows, 0, "no sign-in of henry happened");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_issued_before_a_users_not_before_are_refused_even_for_a_live_session() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let user = create_user(&mut admin, "judith", USER_PASSWORD, pb::Role::User).await;
    let old = login(&daemon.endpoint, "judith", USER_PASSWORD).await;
    let mut judy = api(&daemon.endpoint, Some(old.access_token.clone())).await;
    judy.auth
        .change_password(pb::ChangePasswordRequest {
            old_password: USER_PASSWORD.into(),
            new_password: "judy-new-password-1".into(),
            repeated_new_password: "judy-new-password-1".into(),
        })
        .await
        .expect("change password");
    let fresh = login(&daemon.endpoint, "judith", "judy-new-password-1").await;
    let mut ok = api(&daemon.endpoint, Some(fresh.access_token.clone())).await;
    ok.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("the new session works");
    let not_before: i64 = rusqlite::Connection::open(env.store_path())
        .expect("db")
        .query_row("SELECT credentials_not_before FROM users WHERE id = ?1", [&user.id], |r| r.get(0))
        .expect("query");
    assert!(not_before > 0);
    // A token for the new (live) session, correctly signed, but issued before the not-before:
    // refused. The same token issued at the not-before is accepted (control).
    let key = signing_key(&env);
    let claims = claims_of(&fresh.access_token);
    let issued_at = |iat: i64| {
        let mut c = claims.clone();
        c["iat"] = iat.into();
        c["nbf"] = iat.into();
        forge("cha1", &c, &key)
    };
    let mut early = api(&daemon.endpoint, Some(issued_at(not_before - 1))).await;
    let s = expect_code(early.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    assert!(s.message().contains("revoked"), "{}", s.message());
    let mut at = api(&daemon.endpoint, Some(issued_at(not_before))).await;
    at.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("issued at the not-before: accepted");
}
