//! End-to-end: sign-in sessions and API keys through the real cardhsmd — what a session records,
//! paging and filtering, ending one or all sessions (their tokens stop working at once), logout,
//! idle timeouts (persisted, enforced from the in-memory view), per-user not-before after a
//! password change or a disable, and API keys for configured realms.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use sha2::{Digest, Sha256};
use support::*;
use tonic::Code;

const USER_PASSWORD: &str = "user-password-0123";
const OPERATOR_PASSWORD: &str = "operator-password-4567";
const AGENT: &str = "sessions-e2e/1.0";

const REALMS: &str = "[[auth.realms]]\nname = \"automation\"\nroles = [\"OPERATOR\"]\n\
                      [[auth.realms]]\nname = \"readers\"\nroles = [\"USER\"]\n";

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

/// Logs in over a channel whose user agent starts with [`AGENT`].
async fn login_as_agent(endpoint: &str, username: &str, password: &str) -> pb::LoginResponse {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .user_agent(AGENT)
        .expect("user agent")
        .connect()
        .await
        .expect("connect");
    pb::auth_service_client::AuthServiceClient::new(ch)
        .login(pb::LoginRequest { username: username.into(), password: password.into() })
        .await
        .expect("login")
        .into_inner()
}

async fn list(admin: &mut Api, number: u32, start: u32, name: &str) -> pb::ListActiveSessionsResponse {
    admin
        .sessions
        .list_active_sessions(pb::ListActiveSessionsRequest { number, start, name: name.into() })
        .await
        .expect("list sessions")
        .into_inner()
}

async fn works(endpoint: &str, token: &str) -> bool {
    let mut a = api(endpoint, Some(token.to_owned())).await;
    match a.auth.who_am_i(pb::WhoAmIRequest {}).await {
        Ok(_) => true,
        Err(s) if s.code() == Code::Unauthenticated => false,
        Err(s) => panic!("unexpected answer {s:?}"),
    }
}

async fn refreshes(endpoint: &str, refresh_token: &str) -> bool {
    let mut a = api(endpoint, None).await;
    match a.auth.refresh(pb::RefreshRequest { refresh_token: refresh_token.into() }).await {
        Ok(_) => true,
        Err(s) if s.code() == Code::Unauthenticated => false,
        Err(s) => panic!("unexpected answer {s:?}"),
    }
}

fn audit_actions(env: &TestEnv, target_type: &str, target_id: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let mut stmt = conn
        .prepare("SELECT action FROM audit_log WHERE target_type = ?1 AND target_id = ?2 ORDER BY id")
        .expect("prepare");
    stmt.query_map([target_type, target_id], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_is_a_session_listed_with_who_where_and_how_paged_and_filtered() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "alice", USER_PASSWORD, pb::Role::User).await;
    let t = login_as_agent(&daemon.endpoint, "alice", USER_PASSWORD).await;
    assert!(!t.session_id.is_empty());

    let all = list(&mut admin, 0, 0, "").await;
    assert_eq!(all.total_matched, 2, "the admin's session and alice's");
    let s = all.sessions.iter().find(|s| s.id == t.session_id).expect("alice's session is listed");
    assert_eq!(s.name, "alice");
    assert_eq!(s.realm, "password");
    assert_eq!(s.roles, [pb::Role::User as i32]);
    assert_eq!(s.source_ip, "127.0.0.1");
    assert!(s.agent.starts_with(AGENT), "agent {:?}", s.agent);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned();
    assert_eq!(s.login_node, host);
    assert!(s.sign_in_time > 0 && s.last_activity >= s.sign_in_time);
    // WhoAmI names the session.
    let mut alice = api(&daemon.endpoint, Some(t.access_token.clone())).await;
    let me = alice.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!(me.session_id, t.session_id);
    assert_eq!(me.api_key_id, "");
    // The login is audited against the session.
    assert_eq!(audit_actions(&env, "session", &t.session_id), ["auth.login"]);

    // Paging: five more sessions of alice, pages of two.
    for _ in 0..5 {
        login(&daemon.endpoint, "alice", USER_PASSWORD).await;
    }
    let first = list(&mut admin, 2, 0, "alice").await;
    assert_eq!((first.total_matched, first.total_returned, first.is_last_record), (6, 2, false));
    assert_eq!(first.sessions[0].id, t.session_id, "oldest sign-in first");
    let mut seen: Vec<String> = first.sessions.iter().map(|s| s.id.clone()).collect();
    let second = list(&mut admin, 2, 2, "alice").await;
    let last = list(&mut admin, 2, 4, "alice").await;
    assert_eq!((last.total_returned, last.is_last_record), (2, true));
    seen.extend(second.sessions.iter().chain(&last.sessions).map(|s| s.id.clone()));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "pages neither overlap nor skip");
    assert!(last.sessions.iter().chain(&second.sessions).all(|s| s.name == "alice"));
    let beyond = list(&mut admin, 2, 50, "").await;
    assert_eq!((beyond.total_matched, beyond.total_returned, beyond.is_last_record), (7, 0, true));
    assert_eq!(list(&mut admin, 0, 0, "ALICE").await.total_matched, 6, "names match case-insensitively");
    assert_eq!(list(&mut admin, 0, 0, "nobody").await.total_matched, 0);
    let max = list(&mut admin, 200, 0, "").await;
    assert_eq!(max.total_returned, 7);

    // Bad input and non-administrators change nothing.
    let before = identity_snapshot(&env.store_path());
    expect_invalid_field(
        admin
            .sessions
            .list_active_sessions(pb::ListActiveSessionsRequest {
                number: 201,
                start: 0,
                name: String::new(),
            })
            .await,
        "number",
    );
    expect_code(
        alice.sessions.list_active_sessions(pb::ListActiveSessionsRequest::default()).await,
        Code::PermissionDenied,
    );
    expect_code(
        alice.sessions.delete_session(pb::DeleteSessionRequest { id: t.session_id.clone() }).await,
        Code::PermissionDenied,
    );
    expect_code(
        alice.sessions.delete_all_sessions(pb::DeleteAllSessionsRequest {}).await,
        Code::PermissionDenied,
    );
    expect_code(
        alice
            .sessions
            .set_idle_timeout(pb::SetIdleTimeoutRequest { role: pb::Role::User as i32, minutes: 5 })
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(identity_snapshot(&env.store_path()), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_sessions_stops_their_tokens_at_once_and_kill_all_spares_the_caller() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let admin_tokens = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let mut admin = api(&daemon.endpoint, Some(admin_tokens.access_token.clone())).await;
    create_user(&mut admin, "bobby", USER_PASSWORD, pb::Role::User).await;
    let one = login(&daemon.endpoint, "bobby", USER_PASSWORD).await;
    let two = login(&daemon.endpoint, "bobby", USER_PASSWORD).await;
    assert!(works(&daemon.endpoint, &one.access_token).await);

    let before = identity_snapshot(&env.store_path());
    expect_code(
        admin.sessions.delete_session(pb::DeleteSessionRequest { id: "no-such-session".into() }).await,
        Code::NotFound,
    );
    expect_invalid_field(
        admin.sessions.delete_session(pb::DeleteSessionRequest { id: String::new() }).await,
        "id",
    );
    assert_eq!(identity_snapshot(&env.store_path()), before, "refused deletes change nothing");

    admin
        .sessions
        .delete_session(pb::DeleteSessionRequest { id: one.session_id.clone() })
        .await
        .expect("delete");
    // At once: the very next call with its access token is refused, and so is its refresh token.
    let mut gone = api(&daemon.endpoint, Some(one.access_token.clone())).await;
    let s = expect_code(gone.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    assert!(s.message().contains("session"), "{}", s.message());
    assert!(!refreshes(&daemon.endpoint, &one.refresh_token).await);
    assert!(works(&daemon.endpoint, &two.access_token).await, "bob's other session is untouched");
    expect_code(
        admin.sessions.delete_session(pb::DeleteSessionRequest { id: one.session_id.clone() }).await,
        Code::NotFound,
    );
    assert_eq!(audit_actions(&env, "session", &one.session_id), ["auth.login", "session.delete"]);
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let (rows, live_tokens): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE id = ?1),
                    (SELECT COUNT(*) FROM refresh_tokens WHERE family_id = ?1 AND revoked_at IS NULL)",
            [&one.session_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query");
    assert_eq!((rows, live_tokens), (0, 0), "the session row is gone and its refresh family revoked");

    // Kill-all: everyone's sessions but the caller's.
    let three = login(&daemon.endpoint, "bobby", USER_PASSWORD).await;
    let other_admin = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let answer = admin.sessions.delete_all_sessions(pb::DeleteAllSessionsRequest {}).await.expect("kill all");
    assert_eq!(answer.into_inner().deleted, 3);
    for t in [&two, &three, &other_admin] {
        assert!(!works(&daemon.endpoint, &t.access_token).await);
        assert!(!refreshes(&daemon.endpoint, &t.refresh_token).await);
    }
    assert!(works(&daemon.endpoint, &admin_tokens.access_token).await, "the caller's session is kept");
    let left = list(&mut admin, 0, 0, "").await;
    assert_eq!(left.sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [admin_tokens.session_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_only_the_callers_session() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "carol", USER_PASSWORD, pb::Role::User).await;
    let a = login(&daemon.endpoint, "carol", USER_PASSWORD).await;
    let b = login(&daemon.endpoint, "carol", USER_PASSWORD).await;
    let mut carol = api(&daemon.endpoint, Some(a.access_token.clone())).await;
    carol.auth.logout(pb::LogoutRequest {}).await.expect("logout");
    assert!(!works(&daemon.endpoint, &a.access_token).await, "access token refused at once");
    assert!(!refreshes(&daemon.endpoint, &a.refresh_token).await, "refresh family revoked");
    assert!(works(&daemon.endpoint, &b.access_token).await, "the user's other session goes on");
    assert!(refreshes(&daemon.endpoint, &b.refresh_token).await);
    assert_eq!(audit_actions(&env, "session", &a.session_id), ["auth.login", "auth.logout"]);
    assert!(list(&mut admin, 0, 0, "carol").await.sessions.iter().all(|s| s.id != a.session_id));
    // Logging out again with the dead token: refused, nothing changes.
    let before = identity_snapshot(&env.store_path());
    expect_code(carol.auth.logout(pb::LogoutRequest {}).await, Code::Unauthenticated);
    assert_eq!(identity_snapshot(&env.store_path()), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeouts_are_validated_persisted_and_end_idle_sessions() {
    let env = TestEnv::new(0).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon");
    let admin_token = login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await.access_token;
    let mut admin = api(&daemon.endpoint, Some(admin_token.clone())).await;
    create_user(&mut admin, "david", USER_PASSWORD, pb::Role::User).await;
    create_user(&mut admin, "erinne", OPERATOR_PASSWORD, pb::Role::Operator).await;

    let before = identity_snapshot(&env.store_path());
    let set = |role: i32, minutes: u32| pb::SetIdleTimeoutRequest { role, minutes };
    expect_invalid_field(admin.sessions.set_idle_timeout(set(0, 5)).await, "role");
    expect_invalid_field(admin.sessions.set_idle_timeout(set(42, 5)).await, "role");
    expect_invalid_field(
        admin.sessions.set_idle_timeout(set(pb::Role::User as i32, 10_081)).await,
        "minutes",
    );
    assert_eq!(identity_snapshot(&env.store_path()), before);

    let all = admin
        .sessions
        .set_idle_timeout(set(pb::Role::User as i32, 1))
        .await
        .expect("set")
        .into_inner()
        .timeouts;
    let user_timeout = all.iter().find(|t| t.role == pb::Role::User as i32).expect("USER listed");
    assert_eq!(user_timeout.minutes, 1);
    assert!(all.iter().filter(|t| t.role != pb::Role::User as i32).all(|t| t.minutes == 0));
    assert_eq!(audit_actions(&env, "role", "USER"), ["session.idle_timeout"]);

    let idle = login(&daemon.endpoint, "david", USER_PASSWORD).await;
    let idle_too = login(&daemon.endpoint, "david", USER_PASSWORD).await;
    let fresh = login(&daemon.endpoint, "david", USER_PASSWORD).await;
    let operator = login(&daemon.endpoint, "erinne", OPERATOR_PASSWORD).await;

    // Make two of dave's sessions and erin's look idle for ten minutes, as the store would
    // after a long pause, and start again: the timeout and the sessions come back from the store.
    daemon.stop().await;
    {
        let conn = rusqlite::Connection::open(env.store_path()).expect("db");
        let n = conn
            .execute(
                "UPDATE sessions SET last_activity = last_activity - 600 WHERE id IN (?1, ?2, ?3)",
                [&idle.session_id, &idle_too.session_id, &operator.session_id],
            )
            .expect("update");
        assert_eq!(n, 3);
    }
    daemon.start_again().await.expect("start again");

    let mut stale = api(&daemon.endpoint, Some(idle.access_token.clone())).await;
    let s = expect_code(stale.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    assert!(s.message().contains("idle"), "{}", s.message());

    // 0 = no idle timeout: dave's other idle session works again. (The administrator's
    // session from before the restart goes on: ADMIN has no idle timeout.)
    let mut admin = api(&daemon.endpoint, Some(admin_token.clone())).await;
    admin.sessions.set_idle_timeout(set(pb::Role::User as i32, 0)).await.expect("set 0");
    assert!(works(&daemon.endpoint, &idle_too.access_token).await);
    assert!(!refreshes(&daemon.endpoint, &idle.refresh_token).await, "the idle session stays ended");
    assert!(works(&daemon.endpoint, &fresh.access_token).await, "an active session of the same user works");
    assert!(works(&daemon.endpoint, &operator.access_token).await, "OPERATOR has no idle timeout");

    // The idle session was ended for good: not listed, its row and refresh family gone
    // (removed in the background: poll).
    assert!(list(&mut admin, 0, 0, "david").await.sessions.iter().all(|s| s.id != idle.session_id));
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let mut ended = false;
    for _ in 0..100 {
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM sessions WHERE id = ?1", [&idle.session_id], |r| r.get(0))
            .expect("query");
        if rows == 0 {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ended, "the idle session's row is deleted");
    assert_eq!(audit_actions(&env, "session", &idle.session_id), ["auth.login", "session.expire"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_and_disable_stop_old_credentials_at_once() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start_with(&env, REALMS).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let frank = create_user(&mut admin, "frank", OPERATOR_PASSWORD, pb::Role::Operator).await;
    let a = login(&daemon.endpoint, "frank", OPERATOR_PASSWORD).await;
    let b = login(&daemon.endpoint, "frank", OPERATOR_PASSWORD).await;
    let mut anon = api(&daemon.endpoint, None).await;
    let key = anon
        .auth
        .realm_auth(pb::RealmAuthRequest {
            realm: "automation".into(),
            username: "frank".into(),
            password: OPERATOR_PASSWORD.into(),
        })
        .await
        .expect("api key")
        .into_inner()
        .api_key;
    assert!(works(&daemon.endpoint, &key).await);

    // Bad input names the field and changes nothing.
    let mut fr = api(&daemon.endpoint, Some(a.access_token.clone())).await;
    let change = |old: &str, new: &str, rep: &str| pb::ChangePasswordRequest {
        old_password: old.into(),
        new_password: new.into(),
        repeated_new_password: rep.into(),
    };
    let before = identity_snapshot(&env.store_path());
    const NEW: &str = "a-new-password-2468";
    expect_invalid_field(
        fr.auth.change_password(change(OPERATOR_PASSWORD, "short", "short")).await,
        "new_password",
    );
    expect_invalid_field(
        fr.auth.change_password(change(OPERATOR_PASSWORD, NEW, "a-new-password-2469")).await,
        "repeated_new_password",
    );
    expect_invalid_field(fr.auth.change_password(change("not-the-password", NEW, NEW)).await, "old_password");
    assert_eq!(identity_snapshot(&env.store_path()), before);
    assert!(works(&daemon.endpoint, &a.access_token).await, "refused changes end nothing");

    fr.auth.change_password(change(OPERATOR_PASSWORD, NEW, NEW)).await.expect("change password");
    for t in [&a, &b] {
        assert!(!works(&daemon.endpoint, &t.access_token).await, "old access tokens stop at once");
        assert!(!refreshes(&daemon.endpoint, &t.refresh_token).await);
    }
    assert!(!works(&daemon.endpoint, &key).await, "API keys of the user end too");
    expect_code(
        anon.auth
            .login(pb::LoginRequest { username: "frank".into(), password: OPERATOR_PASSWORD.into() })
            .await,
        Code::Unauthenticated,
    );
    let c = login(&daemon.endpoint, "frank", NEW).await;
    assert!(works(&daemon.endpoint, &c.access_token).await);
    let not_before: i64 = rusqlite::Connection::open(env.store_path())
        .expect("db")
        .query_row("SELECT credentials_not_before FROM users WHERE id = ?1", [&frank.id], |r| r.get(0))
        .expect("query");
    assert!(not_before > 0, "the not-before is persisted");
    assert!(audit_actions(&env, "user", &frank.id).contains(&"user.password_change".to_owned()));

    // Disable: refused for non-administrators and bad ids; then every credential stops at once.
    let before = identity_snapshot(&env.store_path());
    let mut as_frank = api(&daemon.endpoint, Some(c.access_token.clone())).await;
    expect_code(
        as_frank
            .users
            .set_user_enabled(pb::SetUserEnabledRequest { id: frank.id.clone(), enabled: false })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        admin.users.set_user_enabled(pb::SetUserEnabledRequest { id: "nope".into(), enabled: false }).await,
        Code::NotFound,
    );
    expect_invalid_field(
        admin.users.set_user_enabled(pb::SetUserEnabledRequest { id: String::new(), enabled: false }).await,
        "id",
    );
    assert_eq!(identity_snapshot(&env.store_path()), before);
    let key2 = anon
        .auth
        .realm_auth(pb::RealmAuthRequest {
            realm: "automation".into(),
            username: "frank".into(),
            password: NEW.into(),
        })
        .await
        .expect("api key")
        .into_inner()
        .api_key;
    assert!(works(&daemon.endpoint, &key2).await);
    let u = admin
        .users
        .set_user_enabled(pb::SetUserEnabledRequest { id: frank.id.clone(), enabled: false })
        .await
        .expect("disable")
        .into_inner();
    assert!(!u.enabled);
    assert!(!works(&daemon.endpoint, &c.access_token).await);
    assert!(!refreshes(&daemon.endpoint, &c.refresh_token).await);
    assert!(!works(&daemon.endpoint, &key2).await);
    expect_code(
        anon.auth.login(pb::LoginRequest { username: "frank".into(), password: NEW.into() }).await,
        Code::Unauthenticated,
    );
    // Enabled again: new sign-ins work, the old credentials stay dead.
    admin
        .users
        .set_user_enabled(pb::SetUserEnabledRequest { id: frank.id.clone(), enabled: true })
        .await
        .expect("enable");
    let d = login(&daemon.endpoint, "frank", NEW).await;
    assert!(works(&daemon.endpoint, &d.access_token).await);
    assert!(!works(&daemon.endpoint, &c.access_token).await);
    assert!(!works(&daemon.endpoint, &key2).await);
    let actions = audit_actions(&env, "user", &frank.id);
    assert!(actions.contains(&"user.disable".to_owned()) && actions.contains(&"user.enable".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_carry_their_realms_roles_are_stored_hashed_listed_and_revocable() {
    let env = TestEnv::new(0).expect("env");
    let mut daemon = Daemon::start_with(&env, REALMS).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "officer", OPERATOR_PASSWORD, pb::Role::Operator).await;
    create_user(&mut admin, "grace", USER_PASSWORD, pb::Role::User).await;
    let mut anon = api(&daemon.endpoint, None).await;
    let realm_auth = |realm: &str, user: &str, pw: &str| pb::RealmAuthRequest {
        realm: realm.into(),
        username: user.into(),
        password: pw.into(),
    };

    // Refusals change nothing.
    let before = identity_snapshot(&env.store_path());
    expect_invalid_field(
        anon.auth.realm_auth(realm_auth("nope", "officer", OPERATOR_PASSWORD)).await,
        "realm",
    );
    expect_code(
        anon.auth.realm_auth(realm_auth("automation", "officer", "wrong-password")).await,
        Code::Unauthenticated,
    );
    expect_code(
        anon.auth.realm_auth(realm_auth("automation", "nobody", "wrong-password")).await,
        Code::Unauthenticated,
    );
    let s = expect_code(
        anon.auth.realm_auth(realm_auth("automation", "grace", USER_PASSWORD)).await,
        Code::PermissionDenied,
    );
    assert!(s.message().contains("OPERATOR"), "{}", s.message());
    assert_eq!(identity_snapshot(&env.store_path()), before);

    let got = anon
        .auth
        .realm_auth(realm_auth("automation", "officer", OPERATOR_PASSWORD))
        .await
        .expect("realm auth")
        .into_inner();
    let info = got.key.clone().expect("key info");
    let key = got.api_key.clone();
    let secret = key.strip_prefix(&format!("chk_{}_", info.id)).expect("chk_<id>_<secret>");
    assert!(URL_SAFE_NO_PAD.decode(secret).expect("base64url").len() >= 16, "at least 128 bits");
    assert_eq!((info.realm.as_str(), info.owner.as_str()), ("automation", "officer"));
    assert_eq!(info.roles, [pb::Role::Operator as i32]);
    assert_eq!(info.last_used, 0);

    // Used as a bearer credential, it carries the realm's roles.
    let mut as_key = api(&daemon.endpoint, Some(key.clone())).await;
    let me = as_key.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!((me.username.as_str(), me.api_key_id.as_str()), ("officer", info.id.as_str()));
    assert_eq!(me.roles, [pb::Role::Operator as i32]);
    as_key.cards.list_tokens(pb::ListTokensRequest {}).await.expect("operator work with the key");
    expect_code(
        as_key.users.list_users(pb::ListUsersRequest { page: None, ..Default::default() }).await,
        Code::PermissionDenied,
    );

    // Stored hashed: the row has SHA-256(secret) and no trace of the key.
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let hash: Vec<u8> =
        conn.query_row("SELECT key_hash FROM api_keys WHERE id = ?1", [&info.id], |r| r.get(0)).expect("row");
    assert_eq!(hash, Sha256::digest(secret.as_bytes()).to_vec());
    let dump = identity_snapshot(&env.store_path()).join("\n");
    assert!(!dump.contains(secret) && !dump.contains(&key), "the key is not stored");

    // Tampered or unknown keys are refused.
    for bad in [
        format!("{}x", &key[..key.len() - 1]),
        format!("chk_{}_{}", "0".repeat(32), secret),
        "chk_short_abc".to_owned(),
        "chk_".to_owned(),
    ] {
        assert!(!works(&daemon.endpoint, &bad).await, "{bad} must be refused");
    }

    // Listed: the owner sees theirs, an administrator everyone's, another user none; the key
    // is a session of its realm.
    let listed = as_key.auth.list_api_keys(pb::ListApiKeysRequest {}).await.expect("list").into_inner().keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, info.id);
    assert!(listed[0].last_used >= info.created_at && listed[0].last_used > 0, "last use recorded");
    let mut grace = api_as(&daemon.endpoint, "grace", USER_PASSWORD).await;
    let readers = anon
        .auth
        .realm_auth(realm_auth("readers", "grace", USER_PASSWORD))
        .await
        .expect("grace's key")
        .into_inner();
    let theirs = grace.auth.list_api_keys(pb::ListApiKeysRequest {}).await.expect("list").into_inner().keys;
    assert_eq!(theirs.iter().map(|k| k.owner.as_str()).collect::<Vec<_>>(), ["grace"]);
    let everyone = admin.auth.list_api_keys(pb::ListApiKeysRequest {}).await.expect("list").into_inner().keys;
    assert_eq!(everyone.len(), 2);
    let sessions = list(&mut admin, 0, 0, "officer").await.sessions;
    assert!(sessions.iter().any(|s| s.id == info.id && s.realm == "automation"));

    // Keys survive a restart.
    daemon.restart().await;
    assert!(works(&daemon.endpoint, &key).await, "a key lives until revoked");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let mut grace = api_as(&daemon.endpoint, "grace", USER_PASSWORD).await;
    let mut as_key = api(&daemon.endpoint, Some(key.clone())).await;

    // Revoking: not someone else's; then the key stops at once.
    let before = identity_snapshot(&env.store_path());
    expect_code(
        grace.auth.revoke_api_key(pb::RevokeApiKeyRequest { id: info.id.clone() }).await,
        Code::NotFound,
    );
    expect_invalid_field(
        grace.auth.revoke_api_key(pb::RevokeApiKeyRequest { id: String::new() }).await,
        "id",
    );
    assert_eq!(identity_snapshot(&env.store_path()), before);
    as_key.auth.revoke_api_key(pb::RevokeApiKeyRequest { id: info.id.clone() }).await.expect("revoke own");
    assert!(!works(&daemon.endpoint, &key).await, "a revoked key stops at once");
    expect_code(
        admin.auth.revoke_api_key(pb::RevokeApiKeyRequest { id: info.id.clone() }).await,
        Code::NotFound,
    );
    let revoked_at: Option<i64> = conn
        .query_row("SELECT revoked_at FROM api_keys WHERE id = ?1", [&info.id], |r| r.get(0))
        .expect("row");
    assert!(revoked_at.is_some());
    assert_eq!(audit_actions(&env, "session", &info.id), ["apikey.create", "apikey.revoke"]);
    // An administrator revokes anyone's.
    let grace_key = readers.key.expect("info").id;
    admin.auth.revoke_api_key(pb::RevokeApiKeyRequest { id: grace_key }).await.expect("admin revokes");
    assert!(!works(&daemon.endpoint, &readers.api_key).await);
}

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[tokio::test(flavor = "multi_thread")]
async fn cli_lists_and_kills_sessions_manages_api_keys_and_logout_ends_the_server_session() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start_with(&env, REALMS).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create_user(&mut admin, "ivanov", OPERATOR_PASSWORD, pb::Role::Operator).await;
    let ivan = login(&daemon.endpoint, "ivanov", OPERATOR_PASSWORD).await;
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);

    // sessions list / kill / kill-all
    let listed = cli.json(&["sessions", "list", "--name", "ivanov"]);
    assert_eq!(listed["total_matched"], 1);
    assert_eq!(listed["sessions"][0]["id"], ivan.session_id.as_str());
    assert_eq!(listed["sessions"][0]["roles"], serde_json::json!(["OPERATOR"]));
    let table = cli.run(&["sessions", "list"]).ok().stdout;
    assert!(table.contains(&ivan.session_id) && table.contains("password"), "{table}");
    cli.json(&["sessions", "kill", &ivan.session_id]);
    assert!(!works(&daemon.endpoint, &ivan.access_token).await);
    cli.run(&["sessions", "kill", &ivan.session_id]).failed_with("NOT_FOUND");
    let other = login(&daemon.endpoint, "ivanov", OPERATOR_PASSWORD).await;
    assert_eq!(cli.json(&["sessions", "kill-all"])["deleted"], 2, "ivan's session and the admin's api_as");
    assert!(!works(&daemon.endpoint, &other.access_token).await);
    assert_eq!(cli.json(&["whoami"])["username"], "admin", "the CLI's own session survives kill-all");

    // apikeys create (no session needed) / list / revoke
    let mut create = cli.command(&[
        "--output",
        "json",
        "--endpoint",
        &daemon.endpoint,
        "apikeys",
        "create",
        "--realm",
        "automation",
        "--username",
        "ivanov",
    ]);
    create.env("CARDHSM_PASSWORD", OPERATOR_PASSWORD);
    let created = CliHome::output(create).ok().json();
    let key = created["api_key"].as_str().expect("key").to_owned();
    let id = created["key"]["id"].as_str().expect("id").to_owned();
    assert!(key.starts_with("chk_"));
    assert!(works(&daemon.endpoint, &key).await);
    let keys = cli.json(&["apikeys", "list"]);
    assert_eq!(keys["keys"][0]["id"], id.as_str());
    assert_eq!(keys["keys"][0]["owner"], "ivanov");
    assert!(!keys.to_string().contains(&key), "the key is never listed");
    cli.json(&["apikeys", "revoke", &id]);
    assert!(!works(&daemon.endpoint, &key).await);

    // logout ends the session on the daemon, not just the file.
    let session: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cli.home.join("session.json")).expect("session file"))
            .expect("json");
    let token = session["access_token"].as_str().expect("access token in the session file").to_owned();
    assert!(works(&daemon.endpoint, &token).await);
    let out = cli.json(&["logout"]);
    assert_eq!(out["logged_out"], true);
    assert_eq!(out["server_session_ended"], true);
    assert!(!works(&daemon.endpoint, &token).await, "the daemon ended the session");
    cli.run(&["whoami"]).failed_with("not logged in");
}
