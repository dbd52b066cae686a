//! End-to-end: UserService beyond creation — GetUser, GetCurrentUser, CheckUsername and
//! RemoveUser (whose sessions end at once) — through the real cardhsmd and SQLite, with bad
//! input refused naming the field and changing nothing.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use support::*;
use tonic::Code;

async fn create(api: &mut Api, username: &str, role: pb::Role) -> pb::User {
    api.users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: format!("{username}-password-1"),
            roles: vec![role as i32],
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_check_and_remove_users() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let bob = create(&mut admin, "bob_officer", pb::Role::Operator).await;
    let carol = create(&mut admin, "carol_user", pb::Role::User).await;

    // GetUser and GetCurrentUser.
    let got = admin
        .users
        .get_user(pb::GetUserRequest { id: bob.id.clone(), ..Default::default() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (got.username.as_str(), got.roles.as_slice()),
        ("bob_officer", &[pb::Role::Operator as i32][..])
    );
    let mut carol_api = api_as(&daemon.endpoint, "carol_user", "carol_user-password-1").await;
    let me = carol_api.users.get_current_user(pb::GetCurrentUserRequest {}).await.expect("me").into_inner();
    assert_eq!(me.id, carol.id);
    expect_code(
        carol_api.users.get_user(pb::GetUserRequest { id: bob.id.clone(), ..Default::default() }).await,
        Code::PermissionDenied,
    );

    // CheckUsername: malformed, taken (in any case), free.
    let before = store_snapshot(&env.store_path());
    expect_invalid_field(
        admin.users.check_username(pb::CheckUsernameRequest { username: "no spaces".into() }).await,
        "username",
    );
    let check = |u: &str| pb::CheckUsernameRequest { username: u.into() };
    assert!(!admin.users.check_username(check("BOB_officer")).await.expect("check").into_inner().available);
    assert!(admin.users.check_username(check("dave_new")).await.expect("check").into_inner().available);
    expect_invalid_field(
        admin.users.get_user(pb::GetUserRequest { id: String::new(), ..Default::default() }).await,
        "id",
    );
    expect_code(
        admin.users.get_user(pb::GetUserRequest { id: "no-such-user".into(), ..Default::default() }).await,
        Code::NotFound,
    );
    // Removing yourself, a user that does not exist, or as a non-administrator changes nothing.
    let me_admin = admin.users.get_current_user(pb::GetCurrentUserRequest {}).await.expect("me").into_inner();
    let refused = expect_code(
        admin.users.remove_user(pb::RemoveUserRequest { id: me_admin.id.clone() }).await,
        Code::FailedPrecondition,
    );
    assert!(refused.message().contains("yourself"), "{}", refused.message());
    expect_code(
        admin.users.remove_user(pb::RemoveUserRequest { id: "no-such-user".into() }).await,
        Code::NotFound,
    );
    expect_code(
        carol_api.users.remove_user(pb::RemoveUserRequest { id: bob.id.clone() }).await,
        Code::PermissionDenied,
    );
    assert_eq!(store_snapshot(&env.store_path()), before);

    // Removing bob ends his session at once: his access and refresh tokens stop working.
    let bob_login = login(&daemon.endpoint, "bob_officer", "bob_officer-password-1").await;
    let mut bob_api = api(&daemon.endpoint, Some(bob_login.access_token.clone())).await;
    bob_api.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("bob is signed in");
    admin.users.remove_user(pb::RemoveUserRequest { id: bob.id.clone() }).await.expect("remove");
    expect_code(bob_api.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    let mut anon = api(&daemon.endpoint, None).await;
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: bob_login.refresh_token.clone() }).await,
        Code::Unauthenticated,
    );
    expect_code(
        admin.users.get_user(pb::GetUserRequest { id: bob.id.clone(), ..Default::default() }).await,
        Code::NotFound,
    );
    expect_code(
        anon.auth
            .login(pb::LoginRequest {
                username: "bob_officer".into(),
                password: "bob_officer-password-1".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    // The name is free again, and the removal is audited.
    assert!(admin.users.check_username(check("bob_officer")).await.expect("check").into_inner().available);
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let audited: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'user.remove' AND target_id = ?1",
            [&bob.id],
            |r| r.get(0),
        )
        .expect("audit");
    assert_eq!(audited, 1);
}
