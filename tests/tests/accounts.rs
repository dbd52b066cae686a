//! End-to-end: user accounts through the real cardhsmd and SQLite — profile fields (names,
//! phone, email) on create and update, each rule refused naming the field with nothing
//! written, unique emails, the caller's own edits (names and phone; email and credentials with
//! the current password), the password policy, and ListUsers' search, role and organization
//! filters (organization admins see only their organizations).

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use support::*;
use tonic::Code;

const PASSWORD: &str = "user-password-0123";
const UNKNOWN_ID: &str = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";

fn create_req(username: &str, email: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        username: username.into(),
        password: PASSWORD.into(),
        roles: vec![pb::Role::User as i32],
        first_name: "Carol".into(),
        last_name: "Jones".into(),
        phone: "+1 (555) 123-4567".into(),
        email: email.into(),
        ..Default::default()
    }
}

async fn create(admin: &mut Api, username: &str, email: &str) -> pb::User {
    admin.users.create_user(create_req(username, email)).await.expect("create user").into_inner()
}

async fn get(admin: &mut Api, id: &str) -> pb::User {
    admin
        .users
        .get_user(pb::GetUserRequest { id: id.into(), ..Default::default() })
        .await
        .expect("get user")
        .into_inner()
}

fn update(id: &str) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest { id: id.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_fields_are_validated_stored_and_unique() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let carol = create(&mut admin, "carol_jones", "Carol.Jones@corp.example").await;
    let back = get(&mut admin, &carol.id).await;
    assert_eq!(
        (back.first_name.as_str(), back.last_name.as_str(), back.phone.as_str(), back.email.as_str()),
        ("Carol", "Jones", "+1 (555) 123-4567", "Carol.Jones@corp.example")
    );
    assert_eq!(back, carol);

    // Every field rule on CreateUser: INVALID_ARGUMENT naming the field, nothing written.
    let before = store_snapshot(&env.store_path());
    let with = |f: &dyn Fn(&mut pb::CreateUserRequest)| {
        let mut r = create_req("dave_smith", "dave@corp.example");
        f(&mut r);
        r
    };
    let cases: Vec<(pb::CreateUserRequest, &str)> = vec![
        (with(&|r| r.username = "dave".into()), "username"),
        (with(&|r| r.username = "dave.smith".into()), "username"),
        (with(&|r| r.username = "d".repeat(31)), "username"),
        (with(&|r| r.username = "dave smith".into()), "username"),
        (with(&|r| r.first_name = "Dave2".into()), "first_name"),
        (with(&|r| r.first_name = "D".repeat(51)), "first_name"),
        (with(&|r| r.last_name = "Smith-Jones".into()), "last_name"),
        (with(&|r| r.phone = "call me maybe".into()), "phone"),
        (with(&|r| r.phone = "+1 555 123 4567 ext".into()), "phone"),
        (with(&|r| r.email = "dave".into()), "email"),
        (with(&|r| r.email = "a@b".into()), "email"),
        (with(&|r| r.email = "dave@corp..example".into()), "email"),
        (with(&|r| r.email = format!("{}@corp.example", "d".repeat(250))), "email"),
        // The password policy: too short, no digit, copies differ.
        (with(&|r| r.password = "short-1".into()), "password"),
        (with(&|r| r.password = "no-digit-in-this-one".into()), "password"),
        (
            with(&|r| {
                r.password = PASSWORD.into();
                r.repeated_password = "user-password-0124".into();
            }),
            "repeated_password",
        ),
    ];
    for (req, field) in cases {
        expect_invalid_field(admin.users.create_user(req).await, field);
    }
    // A taken email (in another case) or login: ALREADY_EXISTS.
    expect_code(
        admin.users.create_user(create_req("dave_smith", "CAROL.JONES@corp.example")).await,
        Code::AlreadyExists,
    );
    expect_code(
        admin.users.create_user(create_req("CAROL_JONES", "dave@corp.example")).await,
        Code::AlreadyExists,
    );
    assert_eq!(store_snapshot(&env.store_path()), before, "refused creates wrote nothing");

    // Profile fields are optional: a user with none has them empty.
    let bare = admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "bare_user".into(),
            password: PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("create without profile")
        .into_inner();
    assert_eq!((bare.first_name.as_str(), bare.email.as_str()), ("", ""));

    // UpdateUser: every field rule refused naming it, the user read back unchanged.
    let before = store_snapshot(&env.store_path());
    for (req, field) in [
        (pb::UpdateUserRequest { first_name: Some("C4rol".into()), ..update(&carol.id) }, "first_name"),
        (pb::UpdateUserRequest { last_name: Some("J".repeat(51)), ..update(&carol.id) }, "last_name"),
        (pb::UpdateUserRequest { phone: Some("12-ab".into()), ..update(&carol.id) }, "phone"),
        (pb::UpdateUserRequest { email: Some("not-an-email".into()), ..update(&carol.id) }, "email"),
        (pb::UpdateUserRequest { first_name: Some("Ok".into()), ..update("nope") }, "id"),
    ] {
        expect_invalid_field(admin.users.update_user(req).await, field);
    }
    expect_code(
        admin
            .users
            .update_user(pb::UpdateUserRequest { first_name: Some("Ok".into()), ..update(UNKNOWN_ID) })
            .await,
        Code::NotFound,
    );
    expect_code(
        admin
            .users
            .update_user(pb::UpdateUserRequest {
                email: Some("carol.jones@CORP.example".into()),
                ..update(&bare.id)
            })
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(store_snapshot(&env.store_path()), before, "refused updates wrote nothing");
    assert_eq!(get(&mut admin, &carol.id).await, carol);

    // A good update changes the given fields only; "" clears one.
    let updated = admin
        .users
        .update_user(pb::UpdateUserRequest {
            last_name: Some("Smith".into()),
            phone: Some(String::new()),
            ..update(&carol.id)
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (
            updated.first_name.as_str(),
            updated.last_name.as_str(),
            updated.phone.as_str(),
            updated.email.as_str()
        ),
        ("Carol", "Smith", "", "Carol.Jones@corp.example")
    );
    assert_eq!(get(&mut admin, &carol.id).await, updated);
    // The user may keep their own email in another case.
    let same = admin
        .users
        .update_user(pb::UpdateUserRequest {
            email: Some("carol.jones@corp.example".into()),
            ..update(&carol.id)
        })
        .await
        .expect("own email")
        .into_inner();
    assert_eq!(same.email, "carol.jones@corp.example");

    // CheckEmail: malformed, taken in any case, free.
    let check = |e: &str| pb::CheckEmailRequest { email: e.into() };
    expect_invalid_field(admin.users.check_email(check("nope")).await, "email");
    assert!(
        !admin
            .users
            .check_email(check("CAROL.jones@corp.example"))
            .await
            .expect("check")
            .into_inner()
            .available
    );
    assert!(
        admin
            .users
            .check_email(check("someone.else@corp.example"))
            .await
            .expect("check")
            .into_inner()
            .available
    );

    // Every change is audited.
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let audited: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'user.update' AND target_id = ?1",
            [&carol.id],
            |r| r.get(0),
        )
        .expect("audit");
    assert_eq!(audited, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_edit_only_their_own_account_and_prove_it_with_their_password() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let carol = create(&mut admin, "carol_jones", "carol@corp.example").await;
    let bob = create(&mut admin, "bob_brown", "bob@corp.example").await;
    let carol_login = login(&daemon.endpoint, "carol_jones", PASSWORD).await;
    let mut me = api(&daemon.endpoint, Some(carol_login.access_token.clone())).await;

    // UpdateCurrentUser edits the caller (there is no id to aim at anyone else).
    let changed = me
        .users
        .update_current_user(pb::UpdateCurrentUserRequest {
            first_name: Some("Caroline".into()),
            phone: Some("555-123-4567".into()),
            ..Default::default()
        })
        .await
        .expect("update me")
        .into_inner();
    assert_eq!((changed.id.as_str(), changed.first_name.as_str()), (carol.id.as_str(), "Caroline"));
    assert_eq!(changed.last_name, "Jones", "left out: unchanged");
    assert_eq!(get(&mut admin, &bob.id).await, bob, "another user is untouched");
    let before = store_snapshot(&env.store_path());
    expect_invalid_field(
        me.users
            .update_current_user(pb::UpdateCurrentUserRequest {
                last_name: Some("J0nes".into()),
                ..Default::default()
            })
            .await,
        "last_name",
    );
    // A USER may not edit others through UpdateUser.
    expect_code(
        me.users
            .update_user(pb::UpdateUserRequest { first_name: Some("Mallory".into()), ..update(&bob.id) })
            .await,
        Code::PermissionDenied,
    );

    // UpdateEmail: a wrong current password, a bad or taken email change nothing.
    let email = |e: &str, p: &str| pb::UpdateEmailRequest { email: e.into(), current_password: p.into() };
    expect_invalid_field(
        me.users.update_email(email("new@corp.example", "wrong-password-1")).await,
        "current_password",
    );
    expect_invalid_field(me.users.update_email(email("new@", PASSWORD)).await, "email");
    expect_code(me.users.update_email(email("BOB@corp.example", PASSWORD)).await, Code::AlreadyExists);

    // UpdateCredentials: wrong current password, the password policy, a taken or bad login.
    let creds = |cur: &str, user: &str, new: &str, rep: &str| pb::UpdateCredentialsRequest {
        current_password: cur.into(),
        new_username: user.into(),
        new_password: new.into(),
        repeated_new_password: rep.into(),
    };
    let good = "carol-new-password-42";
    expect_invalid_field(
        me.users.update_credentials(creds("wrong-password-1", "", good, good)).await,
        "current_password",
    );
    expect_invalid_field(
        me.users.update_credentials(creds(PASSWORD, "", "short-1", "short-1")).await,
        "new_password",
    );
    expect_invalid_field(
        me.users
            .update_credentials(creds(PASSWORD, "", "no-digits-at-all-here", "no-digits-at-all-here"))
            .await,
        "new_password",
    );
    expect_invalid_field(
        me.users.update_credentials(creds(PASSWORD, "", good, "carol-new-password-43")).await,
        "repeated_new_password",
    );
    expect_invalid_field(
        me.users.update_credentials(creds(PASSWORD, "bad name", "", "")).await,
        "new_username",
    );
    expect_invalid_field(me.users.update_credentials(creds(PASSWORD, "", "", "")).await, "new_username");
    expect_code(me.users.update_credentials(creds(PASSWORD, "BOB_brown", "", "")).await, Code::AlreadyExists);
    // ChangePassword applies the same policy.
    expect_invalid_field(
        me.auth
            .change_password(pb::ChangePasswordRequest {
                old_password: PASSWORD.into(),
                new_password: "no-digits-at-all-here".into(),
                repeated_new_password: "no-digits-at-all-here".into(),
            })
            .await,
        "new_password",
    );
    assert_eq!(store_snapshot(&env.store_path()), before, "refused self-edits wrote nothing");

    // The email changes with the right password.
    let moved =
        me.users.update_email(email("Carol.New@corp.example", PASSWORD)).await.expect("email").into_inner();
    assert_eq!(moved.email, "Carol.New@corp.example");
    assert!(
        !admin
            .users
            .check_email(pb::CheckEmailRequest { email: "carol.new@corp.example".into() })
            .await
            .expect("check")
            .into_inner()
            .available
    );
    assert!(
        admin
            .users
            .check_email(pb::CheckEmailRequest { email: "carol@corp.example".into() })
            .await
            .expect("check")
            .into_inner()
            .available
    );

    // New login and password: every earlier credential stops working at once.
    let renamed = me
        .users
        .update_credentials(creds(PASSWORD, "caroline_j", good, good))
        .await
        .expect("update credentials")
        .into_inner();
    assert_eq!((renamed.id.as_str(), renamed.username.as_str()), (carol.id.as_str(), "caroline_j"));
    expect_code(me.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    let mut anon = api(&daemon.endpoint, None).await;
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: carol_login.refresh_token.clone() }).await,
        Code::Unauthenticated,
    );
    for (user, pass) in [("carol_jones", PASSWORD), ("carol_jones", good), ("caroline_j", PASSWORD)] {
        expect_code(
            anon.auth.login(pb::LoginRequest { username: user.into(), password: pass.into() }).await,
            Code::Unauthenticated,
        );
    }
    let mut me = api_as(&daemon.endpoint, "caroline_j", good).await;
    let who = me.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!((who.user_id.as_str(), who.username.as_str()), (carol.id.as_str(), "caroline_j"));
    // Only the password this time; the login stays.
    let newer = "carol-newer-password-7";
    me.users.update_credentials(creds(good, "", newer, newer)).await.expect("password only");
    api_as(&daemon.endpoint, "caroline_j", newer).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_users_searches_and_filters_by_role_and_organization() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let org = |name: &str| pb::CreateOrganizationRequest { name: name.into(), ..Default::default() };
    let acme = admin.organizations.create_organization(org("Acme")).await.expect("org").into_inner();
    let globex = admin.organizations.create_organization(org("Globex")).await.expect("org").into_inner();
    let alice = create(&mut admin, "alice_acme", "alice@acme.example").await;
    let oscar = create(&mut admin, "oscar_orgadmin", "oscar@acme.example").await;
    let gina = create(&mut admin, "gina_globex", "gina@globex.example").await;
    let mut privileges = pb::privilege_service_client::PrivilegeServiceClient::with_interceptor(
        channel(&daemon.endpoint).await,
        Bearer(Some(login(&daemon.endpoint, "admin", ADMIN_PASSWORD).await.access_token)),
    );
    let grant = |user: &pb::User, role: pb::Role, org: &pb::Organization| pb::SetUserPrivilegesRequest {
        user_id: user.id.clone(),
        privileges: vec![pb::Privilege {
            role: role as i32,
            ecosystem_id: String::new(),
            organization_id: org.id.clone(),
            profiles: vec![],
        }],
    };
    privileges.set_user_privileges(grant(&alice, pb::Role::User, &acme)).await.expect("grant");
    privileges.set_user_privileges(grant(&oscar, pb::Role::OrgAdmin, &acme)).await.expect("grant");
    privileges.set_user_privileges(grant(&gina, pb::Role::User, &globex)).await.expect("grant");

    let req = |org: &str, role: pb::Role, search: &str| pb::ListUsersRequest {
        page: None,
        organization_id: org.into(),
        role: role as i32,
        search_line: search.into(),
    };
    let names = |r: pb::ListUsersResponse| {
        let mut v: Vec<String> = r.users.into_iter().map(|u| u.username).collect();
        v.sort();
        v
    };
    // Search over login, names and email, case-insensitively; wildcards are literal.
    let all = |search: &str| req("", pb::Role::Unspecified, search);
    assert_eq!(
        names(admin.users.list_users(all("ACME")).await.expect("list").into_inner()),
        ["alice_acme", "oscar_orgadmin"]
    );
    assert_eq!(names(admin.users.list_users(all("gina")).await.expect("list").into_inner()), ["gina_globex"]);
    assert_eq!(
        names(admin.users.list_users(all("jones")).await.expect("list").into_inner()).len(),
        3,
        "last name"
    );
    assert!(names(admin.users.list_users(all("%")).await.expect("list").into_inner()).is_empty());
    let page = admin.users.list_users(all("")).await.expect("list").into_inner();
    assert_eq!(page.page.expect("page").total_count, 4, "admin and three users");
    // Role: platform roles and privileges' roles.
    assert_eq!(
        names(admin.users.list_users(req("", pb::Role::Admin, "")).await.expect("list").into_inner()),
        ["admin"]
    );
    assert_eq!(
        names(admin.users.list_users(req("", pb::Role::OrgAdmin, "")).await.expect("list").into_inner()),
        ["oscar_orgadmin"]
    );
    // Organization, with role and search.
    assert_eq!(
        names(
            admin
                .users
                .list_users(req(&acme.id, pb::Role::Unspecified, ""))
                .await
                .expect("list")
                .into_inner()
        ),
        ["alice_acme", "oscar_orgadmin"]
    );
    assert_eq!(
        names(admin.users.list_users(req(&acme.id, pb::Role::User, "")).await.expect("list").into_inner()),
        ["alice_acme"]
    );
    assert!(
        names(
            admin
                .users
                .list_users(req(&globex.id, pb::Role::User, "alice"))
                .await
                .expect("list")
                .into_inner()
        )
        .is_empty()
    );
    expect_invalid_field(
        admin.users.list_users(req("not-an-id", pb::Role::Unspecified, "")).await,
        "organization_id",
    );
    expect_invalid_field(
        admin.users.list_users(req("", pb::Role::Unspecified, &"x".repeat(101))).await,
        "search_line",
    );
    expect_invalid_field(
        admin.users.list_users(pb::ListUsersRequest { role: 99, ..Default::default() }).await,
        "role",
    );

    // An organization admin lists and edits the users of their organization only.
    let mut oscar_api = api_as(&daemon.endpoint, "oscar_orgadmin", PASSWORD).await;
    assert_eq!(
        names(
            oscar_api
                .users
                .list_users(req(&acme.id, pb::Role::Unspecified, ""))
                .await
                .expect("list")
                .into_inner()
        ),
        ["alice_acme", "oscar_orgadmin"]
    );
    expect_invalid_field(oscar_api.users.list_users(all("")).await, "organization_id");
    expect_code(
        oscar_api.users.list_users(req(&globex.id, pb::Role::Unspecified, "")).await,
        Code::PermissionDenied,
    );
    let edited = oscar_api
        .users
        .update_user(pb::UpdateUserRequest { first_name: Some("Alicia".into()), ..update(&alice.id) })
        .await
        .expect("org admin edits a user of the organization")
        .into_inner();
    assert_eq!(edited.first_name, "Alicia");
    let before = store_snapshot(&env.store_path());
    expect_code(
        oscar_api
            .users
            .update_user(pb::UpdateUserRequest { first_name: Some("Mallory".into()), ..update(&gina.id) })
            .await,
        Code::NotFound,
    );
    let admin_id =
        admin.users.get_current_user(pb::GetCurrentUserRequest {}).await.expect("me").into_inner().id;
    expect_code(
        oscar_api
            .users
            .update_user(pb::UpdateUserRequest { first_name: Some("Mallory".into()), ..update(&admin_id) })
            .await,
        Code::NotFound,
    );
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert_eq!(get(&mut admin, &gina.id).await, gina);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_edits_lists_and_checks_users() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);
    let mut create = cli.command(&[
        "--output",
        "json",
        "users",
        "create",
        "-u",
        "cli_user",
        "--role",
        "user",
        "--first-name",
        "Ann",
        "--email",
        "ann@corp.example",
    ]);
    create.env("CARDHSM_NEW_PASSWORD", PASSWORD);
    let created = CliHome::output(create).ok().json();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (created["first_name"].as_str(), created["email"].as_str()),
        (Some("Ann"), Some("ann@corp.example"))
    );
    let updated = cli.json(&["users", "update", &id, "--last-name", "Smith", "--phone", "555-123-4567"]);
    assert_eq!((updated["first_name"].as_str(), updated["last_name"].as_str()), (Some("Ann"), Some("Smith")));
    cli.run(&["users", "update", &id, "--first-name", "Ann1"]).failed_with("INVALID_ARGUMENT");
    assert_eq!(cli.json(&["users", "check-email", "ANN@corp.example"])["available"], false);
    assert_eq!(cli.json(&["users", "check-email", "free@corp.example"])["available"], true);
    let listed = cli.json(&["users", "list", "--search", "smith"]);
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["users"][0]["id"], id.as_str());
    assert_eq!(cli.json(&["users", "list", "--role", "admin"])["users"][0]["username"], "admin");

    // The user edits their own account through the CLI.
    let me = CliHome::new(&env.path().join("ann"));
    me.login(&daemon.endpoint, "cli_user", PASSWORD);
    assert_eq!(
        me.json(&["users", "update-me", "--phone", "+1 (555) 765-4321"])["phone"],
        "+1 (555) 765-4321"
    );
    let mut email = me.command(&["--output", "json", "users", "update-email", "ann.smith@corp.example"]);
    email.env("CARDHSM_PASSWORD", PASSWORD);
    assert_eq!(CliHome::output(email).ok().json()["email"], "ann.smith@corp.example");
    let mut wrong = me.command(&["users", "update-email", "x@corp.example"]);
    wrong.env("CARDHSM_PASSWORD", "wrong-password-1");
    CliHome::output(wrong).failed_with("INVALID_ARGUMENT");
    let new = "ann-new-password-77";
    let mut creds = me.command(&["--output", "json", "users", "update-credentials", "--new-password"]);
    creds.env("CARDHSM_PASSWORD", PASSWORD).env("CARDHSM_NEW_PASSWORD", new);
    assert_eq!(CliHome::output(creds).ok().json()["username"], "cli_user");
    api_as(&daemon.endpoint, "cli_user", new).await;
}
