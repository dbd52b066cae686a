//! End-to-end: AdminService through the real cardhsmd over client-certificate TLS, with a PKI
//! made by the real `openssl` — administrators created (from a base64 DER certificate or an
//! issued certificate of the inventory), read, edited, listed and searched, enabled, disabled
//! and deleted one at a time and in bulk (unknown uuids reported); every field rule refused
//! naming the field with nothing written; duplicates and unknown uuids; the rules (nobody
//! disables or deletes themselves, never the last enabled superAdministrator); and an
//! administrator who calls with their registered client certificate and no password, refused
//! on their very next call once disabled or deleted. The `cardhsm admins` commands and
//! `cardhsm login --cert … --key …` are at the end.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, ADMIN_USERNAME, Daemon, TestEnv};
use support::mtls::{Pki, connect, https, start_mtls};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

type Admins = pb::admin_service_client::AdminServiceClient<Intercepted>;
type Auth = pb::auth_service_client::AuthServiceClient<Intercepted>;

const UNKNOWN: &str = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";
const UNKNOWN_2: &str = "0b7e3a52-55c9-4a0e-8d1e-2f1f7d7f4c11";
const CA_SUBJECT: &str = "CN=cardhsm admin test CA";

/// `date -u -d <openssl date> +%s`: an openssl `notAfter` in unix seconds.
fn unix_of(openssl_date: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", openssl_date, "+%s"])
        .output()
        .expect("running date");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("unix seconds")
}

fn admins(ch: &Channel, token: Option<&str>) -> Admins {
    pb::admin_service_client::AdminServiceClient::with_interceptor(
        ch.clone(),
        Bearer(token.map(str::to_owned)),
    )
}

fn auth(ch: &Channel, token: Option<&str>) -> Auth {
    pb::auth_service_client::AuthServiceClient::with_interceptor(ch.clone(), Bearer(token.map(str::to_owned)))
}

/// The bootstrap administrator's access token, signed in over `ch`.
async fn admin_token(ch: &Channel) -> String {
    auth(ch, None)
        .login(pb::LoginRequest { username: ADMIN_USERNAME.into(), password: ADMIN_PASSWORD.into() })
        .await
        .expect("login as the bootstrap administrator")
        .into_inner()
        .access_token
}

/// The bootstrap administrator (SUPER_ADMIN) over a connection of its own.
async fn super_admin(daemon: &Daemon, pki: &Pki) -> Admins {
    let ch = connect(daemon, pki, "boot").await;
    let token = admin_token(&ch).await;
    admins(&ch, Some(&token))
}

fn create_req(
    username: &str,
    role: pb::AdminRole,
    enabled: bool,
    certificate: String,
) -> pb::CreateAdminRequest {
    pb::CreateAdminRequest {
        username: username.into(),
        name: "Ada".into(),
        surname: "Lovelace".into(),
        email: format!("{}@corp.example", username.to_lowercase()),
        role: role as i32,
        enabled,
        description: String::new(),
        certificate,
        certificate_uuid: String::new(),
    }
}

async fn create(su: &mut Admins, req: pb::CreateAdminRequest) -> pb::Admin {
    let username = req.username.clone();
    su.create_admin(req).await.unwrap_or_else(|e| panic!("create {username}: {e:?}")).into_inner()
}

fn edit_req(a: &pb::Admin) -> pb::EditAdminRequest {
    pb::EditAdminRequest {
        uuid: a.uuid.clone(),
        username: a.username.clone(),
        name: a.name.clone(),
        surname: a.surname.clone(),
        email: a.email.clone(),
        role: a.role,
        description: a.description.clone(),
        certificate: String::new(),
        certificate_uuid: String::new(),
    }
}

fn bulk(uuids: &[&str]) -> pb::BulkAdminsRequest {
    pb::BulkAdminsRequest { uuids: uuids.iter().map(|u| (*u).to_owned()).collect() }
}

fn list_req(page_size: u32, page_token: &str, search: &str) -> pb::ListAdminsRequest {
    pb::ListAdminsRequest {
        page: Some(pb::PageRequest { page_size, page_token: page_token.into() }),
        search: search.into(),
    }
}

async fn usernames(su: &mut Admins, search: &str) -> Vec<String> {
    let page = su.list_admins(list_req(0, "", search)).await.expect("list").into_inner();
    page.admins.into_iter().map(|a| a.username).collect()
}

/// [`store_snapshot`] plus the administrators and the identity tables.
fn snapshot(env: &TestEnv) -> Vec<String> {
    let mut out = identity_snapshot(&env.store_path());
    out.extend(table_rows(&env.store_path(), &["admins"]));
    out
}

fn audit_actions(env: &TestEnv, uuid: &str) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let mut stmt = conn
        .prepare(
            "SELECT actor, action FROM audit_log WHERE target_type = 'admin' AND target_id = ?1 ORDER BY id",
        )
        .expect("prepare");
    stmt.query_map([uuid], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").map(|r| r.expect("row")).collect()
}

async fn who_am_i(ch: &Channel, token: Option<&str>) -> Result<pb::WhoAmIResponse, tonic::Status> {
    auth(ch, token).who_am_i(pb::WhoAmIRequest {}).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_are_created_read_edited_listed_and_audited() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["alice", "bob", "alice2"] {
        pki.client(name);
    }
    let daemon = start_mtls(&env, &pki, "").await;
    let mut su = super_admin(&daemon, &pki).await;

    // Created from base64 DER; enabled is false unless asked for.
    let mut req = create_req("alice_1", pb::AdminRole::Administrator, false, pki.der_b64("alice"));
    req.description = "first administrator".into();
    let alice = create(&mut su, req).await;
    assert_eq!(alice.username, "alice_1");
    assert_eq!((alice.name.as_str(), alice.surname.as_str()), ("Ada", "Lovelace"));
    assert_eq!(alice.email, "alice_1@corp.example");
    assert_eq!(alice.role, pb::AdminRole::Administrator as i32);
    assert!(!alice.enabled, "administrators start disabled");
    assert_eq!(alice.description, "first administrator");
    assert_eq!(alice.certificate_fingerprint, pki.sha256("alice"));
    assert!(alice.certificate_subject.contains("CN=alice"), "{}", alice.certificate_subject);
    assert!(alice.certificate_subject.contains("O=cardhsm tests"), "{}", alice.certificate_subject);
    assert_eq!(alice.certificate_issuer, CA_SUBJECT);
    assert_eq!(alice.certificate_serial, norm_serial(&pki.field("alice", "serial")));
    assert_eq!(alice.certificate_not_after, unix_of(&pki.field("alice", "enddate")));
    assert_eq!(alice.certificate, pki.der_b64("alice"));
    assert!(alice.created_at > 0 && alice.updated_at == alice.created_at);
    uuid_like(&alice.uuid);

    let got = su.get_admin(pb::GetAdminRequest { uuid: alice.uuid.clone() }).await.expect("get").into_inner();
    assert_eq!(got, alice);

    let mut req = create_req("Bob_the_Admin", pb::AdminRole::SuperAdministrator, true, pki.der_b64("bob"));
    req.email = "bob@ops.example".into();
    let bob = create(&mut su, req).await;
    assert!(bob.enabled);
    assert_eq!(bob.role, pb::AdminRole::SuperAdministrator as i32);

    // Paged by username, with the total; searched in any case, `%` and `_` literally.
    let first = su.list_admins(list_req(1, "", "")).await.expect("page 1").into_inner();
    let page = first.page.clone().expect("page info");
    // Usernames sort in any case, as they compare.
    assert_eq!(first.admins, std::slice::from_ref(&alice));
    assert_eq!(page.total_count, 2);
    assert_ne!(page.next_page_token, "");
    let second = su.list_admins(list_req(1, &page.next_page_token, "")).await.expect("page 2").into_inner();
    assert_eq!(second.admins, std::slice::from_ref(&bob));
    assert_eq!(second.page.expect("page info").next_page_token, "");
    assert_eq!(usernames(&mut su, "BOB").await, ["Bob_the_Admin"]);
    assert_eq!(usernames(&mut su, "ops.EXAMPLE").await, ["Bob_the_Admin"]);
    assert_eq!(usernames(&mut su, "lovelace").await, ["alice_1", "Bob_the_Admin"]);
    assert_eq!(usernames(&mut su, "e_1").await, ["alice_1"]);
    assert!(usernames(&mut su, "%").await.is_empty());

    // Edit replaces the fields; a new certificate replaces the old one, none keeps it.
    let mut edit = edit_req(&alice);
    edit.username = "alice_smith".into();
    edit.name = "Alicia".into();
    edit.role = pb::AdminRole::SuperAdministrator as i32;
    edit.description = String::new();
    edit.certificate = pki.der_b64("alice2");
    let edited = su.edit_admin(edit.clone()).await.expect("edit").into_inner();
    assert_eq!(edited.username, "alice_smith");
    assert_eq!(edited.name, "Alicia");
    assert_eq!(edited.role, pb::AdminRole::SuperAdministrator as i32);
    assert_eq!(edited.description, "");
    assert_eq!(edited.certificate_fingerprint, pki.sha256("alice2"));
    assert_eq!(edited.created_at, alice.created_at);
    assert!(!edited.enabled, "edit leaves enabled as it was");
    edit.certificate = String::new();
    edit.surname = "Smith".into();
    let kept = su.edit_admin(edit).await.expect("edit without certificate").into_inner();
    assert_eq!(kept.certificate_fingerprint, pki.sha256("alice2"));
    assert_eq!(kept.surname, "Smith");
    // Her old certificate is free again.
    let again =
        create(&mut su, create_req("alice_old", pb::AdminRole::Administrator, false, pki.der_b64("alice")))
            .await;

    // The rules: bob is the only enabled superAdministrator, so he cannot be deleted,
    // disabled, or demoted; once alice is enabled he can.
    let before = snapshot(&env);
    let refused = expect_code(
        su.delete_admin(pb::DeleteAdminRequest { uuid: bob.uuid.clone() }).await,
        Code::FailedPrecondition,
    );
    assert!(refused.message().contains("last enabled superAdministrator"), "{refused:?}");
    expect_code(
        su.disable_admin(pb::DisableAdminRequest { uuid: bob.uuid.clone() }).await,
        Code::FailedPrecondition,
    );
    let mut demote = edit_req(&bob);
    demote.role = pb::AdminRole::Administrator as i32;
    expect_code(su.edit_admin(demote).await, Code::FailedPrecondition);
    expect_code(su.delete_admins(bulk(&[&bob.uuid, &again.uuid])).await, Code::FailedPrecondition);
    assert_eq!(snapshot(&env), before, "refused changes wrote something");

    let enabled = su
        .enable_admin(pb::EnableAdminRequest { uuid: alice.uuid.clone() })
        .await
        .expect("enable")
        .into_inner();
    assert!(enabled.enabled);
    let disabled = su
        .disable_admin(pb::DisableAdminRequest { uuid: bob.uuid.clone() })
        .await
        .expect("disable bob")
        .into_inner();
    assert!(!disabled.enabled);
    su.delete_admin(pb::DeleteAdminRequest { uuid: bob.uuid.clone() }).await.expect("delete bob");
    expect_code(su.get_admin(pb::GetAdminRequest { uuid: bob.uuid.clone() }).await, Code::NotFound);
    assert_eq!(usernames(&mut su, "").await, ["alice_old", "alice_smith"]);

    // Every change has its audit record, by who made it.
    let actions = |v: Vec<(String, String)>| -> Vec<String> {
        assert!(v.iter().all(|(actor, _)| actor == ADMIN_USERNAME), "{v:?}");
        v.into_iter().map(|(_, a)| a).collect()
    };
    assert_eq!(
        actions(audit_actions(&env, &alice.uuid)),
        ["admin.create", "admin.edit", "admin.edit", "admin.enable"]
    );
    assert_eq!(actions(audit_actions(&env, &bob.uuid)), ["admin.create", "admin.disable", "admin.delete"]);

    // Administrators are kept across a restart.
    let mut daemon = daemon;
    daemon.restart().await;
    let mut su = super_admin(&daemon, &pki).await;
    let got = su
        .get_admin(pb::GetAdminRequest { uuid: alice.uuid.clone() })
        .await
        .expect("get after restart")
        .into_inner();
    assert_eq!(got.username, "alice_smith");
    assert!(got.enabled);
}

#[track_caller]
fn uuid_like(s: &str) {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "not a uuid: {s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_duplicates_and_unknown_uuids_change_nothing() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["alice", "bob"] {
        pki.client(name);
    }
    let daemon = start_mtls(&env, &pki, "").await;
    let mut su = super_admin(&daemon, &pki).await;
    let alice =
        create(&mut su, create_req("alice_1", pb::AdminRole::Administrator, true, pki.der_b64("alice")))
            .await;
    let before = snapshot(&env);

    let good = || create_req("bob_12345", pb::AdminRole::Administrator, false, pki.der_b64("bob"));
    let with = |f: &dyn Fn(&mut pb::CreateAdminRequest)| {
        let mut r = good();
        f(&mut r);
        r
    };
    let cases: Vec<(pb::CreateAdminRequest, &str)> = vec![
        (with(&|r| r.username = "abcd".into()), "username"),
        (with(&|r| r.username = "a".repeat(31)), "username"),
        (with(&|r| r.username = "bob-12345".into()), "username"),
        (with(&|r| r.username = "bob 12345".into()), "username"),
        (with(&|r| r.name = String::new()), "name"),
        (with(&|r| r.name = "x".repeat(101)), "name"),
        (with(&|r| r.surname = "  ".into()), "surname"),
        (with(&|r| r.surname = "a\u{7}b".into()), "surname"),
        (with(&|r| r.email = "bob".into()), "email"),
        (with(&|r| r.email = "a@b".into()), "email"),
        (with(&|r| r.email = "bob@corp example.com".into()), "email"),
        (with(&|r| r.email = format!("{}@corp.example", "b".repeat(250))), "email"),
        (with(&|r| r.role = pb::AdminRole::Unspecified as i32), "role"),
        (with(&|r| r.role = 9), "role"),
        (with(&|r| r.description = "d".repeat(1025)), "description"),
        (with(&|r| r.certificate = "not base64!".into()), "certificate"),
        (with(&|r| r.certificate = STANDARD.encode(b"not a certificate")), "certificate"),
        (with(&|r| r.certificate = String::new()), "certificate"),
        (with(&|r| r.certificate_uuid = UNKNOWN.into()), "certificate"),
        (
            with(&|r| {
                r.certificate = String::new();
                r.certificate_uuid = "nope".into();
            }),
            "certificate_uuid",
        ),
    ];
    for (req, field) in cases {
        expect_invalid_field(su.create_admin(req).await, field);
    }
    let mut edit = edit_req(&alice);
    edit.email = "nope".into();
    expect_invalid_field(su.edit_admin(edit).await, "email");
    expect_invalid_field(su.get_admin(pb::GetAdminRequest { uuid: "not-a-uuid".into() }).await, "uuid");
    expect_invalid_field(su.delete_admin(pb::DeleteAdminRequest { uuid: String::new() }).await, "uuid");
    expect_invalid_field(su.enable_admins(bulk(&[])).await, "uuids");
    expect_invalid_field(su.disable_admins(bulk(&[&alice.uuid, "x"])).await, "uuids[1]");
    let too_many: Vec<String> = (0..1001).map(|_| UNKNOWN.to_owned()).collect();
    expect_invalid_field(su.delete_admins(pb::BulkAdminsRequest { uuids: too_many }).await, "uuids");
    expect_invalid_field(su.list_admins(list_req(1001, "", "")).await, "page.page_size");
    expect_invalid_field(su.list_admins(list_req(0, "garbage!", "")).await, "page.page_token");
    expect_invalid_field(su.list_admins(list_req(0, "", &"s".repeat(257))).await, "search");

    // Duplicates: the username in any case, the certificate under another name.
    let s = expect_code(
        su.create_admin(create_req("ALICE_1", pb::AdminRole::Administrator, false, pki.der_b64("bob"))).await,
        Code::AlreadyExists,
    );
    assert!(s.message().contains("ALICE_1"), "{s:?}");
    let s = expect_code(
        su.create_admin(create_req("carol_1", pb::AdminRole::Administrator, false, pki.der_b64("alice")))
            .await,
        Code::AlreadyExists,
    );
    assert!(s.message().contains("alice_1"), "names who holds it: {s:?}");

    // Unknown uuids.
    let unknown = pb::Admin { uuid: UNKNOWN.into(), ..alice.clone() };
    expect_code(su.get_admin(pb::GetAdminRequest { uuid: UNKNOWN.into() }).await, Code::NotFound);
    expect_code(su.edit_admin(edit_req(&unknown)).await, Code::NotFound);
    expect_code(su.delete_admin(pb::DeleteAdminRequest { uuid: UNKNOWN.into() }).await, Code::NotFound);
    expect_code(su.enable_admin(pb::EnableAdminRequest { uuid: UNKNOWN.into() }).await, Code::NotFound);
    expect_code(su.disable_admin(pb::DisableAdminRequest { uuid: UNKNOWN.into() }).await, Code::NotFound);
    for r in [
        su.enable_admins(bulk(&[UNKNOWN, UNKNOWN_2])).await,
        su.disable_admins(bulk(&[UNKNOWN, UNKNOWN_2])).await,
        su.delete_admins(bulk(&[UNKNOWN, UNKNOWN_2])).await,
    ] {
        let s = expect_code(r, Code::NotFound);
        assert!(s.message().contains(UNKNOWN) && s.message().contains(UNKNOWN_2), "names them: {s:?}");
    }
    // An inventory certificate that does not exist.
    let mut by_uuid = good();
    by_uuid.certificate = String::new();
    by_uuid.certificate_uuid = UNKNOWN.into();
    expect_code(su.create_admin(by_uuid).await, Code::NotFound);

    assert_eq!(snapshot(&env), before, "refused requests wrote something");
    assert_eq!(usernames(&mut su, "").await, ["alice_1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_calls_process_the_known_uuids_in_one_transaction_and_report_the_unknown() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["a", "b", "c", "s"] {
        pki.client(name);
    }
    let daemon = start_mtls(&env, &pki, "").await;
    let mut su = super_admin(&daemon, &pki).await;
    let a =
        create(&mut su, create_req("admin_a", pb::AdminRole::Administrator, false, pki.der_b64("a"))).await;
    let b =
        create(&mut su, create_req("admin_b", pb::AdminRole::Administrator, false, pki.der_b64("b"))).await;
    let c =
        create(&mut su, create_req("admin_c", pb::AdminRole::Administrator, false, pki.der_b64("c"))).await;
    let s = create(&mut su, create_req("super_s", pb::AdminRole::SuperAdministrator, true, pki.der_b64("s")))
        .await;
    let enabled = |su: &mut Admins| {
        let mut su = su.clone();
        async move {
            let page = su.list_admins(list_req(0, "", "")).await.expect("list").into_inner();
            page.admins.into_iter().filter(|x| x.enabled).map(|x| x.username).collect::<Vec<_>>()
        }
    };

    // A repeated uuid counts once; the unknown one is reported, in the order given.
    let out =
        su.enable_admins(bulk(&[&a.uuid, UNKNOWN, &b.uuid, &a.uuid])).await.expect("enable").into_inner();
    assert_eq!(out.processed, [a.uuid.clone(), b.uuid.clone()]);
    assert_eq!(out.not_found, [UNKNOWN]);
    assert_eq!(enabled(&mut su).await, ["admin_a", "admin_b", "super_s"]);

    let out = su.disable_admins(bulk(&[UNKNOWN_2, &b.uuid, &c.uuid])).await.expect("disable").into_inner();
    assert_eq!(out.processed, [b.uuid.clone(), c.uuid.clone()]);
    assert_eq!(out.not_found, [UNKNOWN_2]);
    assert_eq!(enabled(&mut su).await, ["admin_a", "super_s"]);

    // One transaction: when one of them may not be disabled (the last enabled
    // superAdministrator), none is.
    let before = snapshot(&env);
    expect_code(su.disable_admins(bulk(&[&a.uuid, &s.uuid])).await, Code::FailedPrecondition);
    assert_eq!(snapshot(&env), before);
    assert_eq!(enabled(&mut su).await, ["admin_a", "super_s"]);

    let out = su.delete_admins(bulk(&[&a.uuid, UNKNOWN, &c.uuid])).await.expect("delete").into_inner();
    assert_eq!(out.processed, [a.uuid.clone(), c.uuid.clone()]);
    assert_eq!(out.not_found, [UNKNOWN]);
    assert_eq!(usernames(&mut su, "").await, ["admin_b", "super_s"]);
    let actions = |id: &str| audit_actions(&env, id).into_iter().map(|(_, a)| a).collect::<Vec<_>>();
    assert_eq!(actions(&a.uuid), ["admin.create", "admin.enable", "admin.delete"]);
    assert_eq!(actions(&b.uuid), ["admin.create", "admin.enable", "admin.disable"]);
    // c was disabled already: processed, but nothing changed, so nothing to audit.
    assert_eq!(actions(&c.uuid), ["admin.create", "admin.delete"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_calls_with_their_certificate_and_is_refused_at_once_when_disabled_or_deleted() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["alice", "sam", "dora", "stranger"] {
        pki.client(name);
    }
    let mut daemon = start_mtls(&env, &pki, "").await;
    let boot = connect(&daemon, &pki, "boot").await;
    let boot_token = admin_token(&boot).await;
    let mut su = admins(&boot, Some(&boot_token));
    let alice =
        create(&mut su, create_req("alice_1", pb::AdminRole::Administrator, true, pki.der_b64("alice")))
            .await;
    let sam =
        create(&mut su, create_req("sam_super", pb::AdminRole::SuperAdministrator, true, pki.der_b64("sam")))
            .await;
    let dora =
        create(&mut su, create_req("dora_off", pb::AdminRole::Administrator, false, pki.der_b64("dora")))
            .await;

    // alice: her certificate and no password is an ADMIN with no session.
    let alice_ch = connect(&daemon, &pki, "alice").await;
    let me = who_am_i(&alice_ch, None).await.expect("alice by certificate");
    assert_eq!(me.username, "alice_1");
    assert_eq!(me.user_id, alice.uuid);
    assert_eq!(me.roles, [pb::Role::Admin as i32]);
    assert_eq!((me.session_id.as_str(), me.expires_at), ("", 0));
    let mut as_alice = admins(&alice_ch, None);
    let listed =
        as_alice.list_admins(list_req(0, "", "")).await.expect("alice lists administrators").into_inner();
    assert_eq!(listed.admins.len(), 3);
    as_alice.get_admin(pb::GetAdminRequest { uuid: sam.uuid.clone() }).await.expect("alice reads one");
    // What an ADMIN sees elsewhere too: the sign-in sessions.
    let mut sessions =
        pb::session_service_client::SessionServiceClient::with_interceptor(alice_ch.clone(), Bearer(None));
    sessions
        .list_active_sessions(pb::ListActiveSessionsRequest::default())
        .await
        .expect("alice lists sessions like any ADMIN");
    // A plain administrator changes no administrator.
    let before = snapshot(&env);
    expect_code(
        as_alice
            .create_admin(create_req(
                "mallory_1",
                pb::AdminRole::SuperAdministrator,
                true,
                pki.der_b64("stranger"),
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(as_alice.enable_admins(bulk(&[&dora.uuid])).await, Code::PermissionDenied);
    expect_code(
        as_alice.delete_admin(pb::DeleteAdminRequest { uuid: sam.uuid.clone() }).await,
        Code::PermissionDenied,
    );
    assert_eq!(snapshot(&env), before);

    // A certificate from the right CA that no administrator holds, and a disabled
    // administrator's, authenticate nobody.
    let stranger = connect(&daemon, &pki, "stranger").await;
    expect_code(auth(&stranger, None).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    let dora_ch = connect(&daemon, &pki, "dora").await;
    let s = expect_code(auth(&dora_ch, None).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    assert!(s.message().contains("disabled"), "{s:?}");
    expect_code(admins(&dora_ch, None).list_admins(list_req(0, "", "")).await, Code::Unauthenticated);

    // A bearer token wins over the certificate: alice's connection with the bootstrap
    // administrator's token is the bootstrap administrator; a bad token is refused.
    let me = who_am_i(&alice_ch, Some(&boot_token)).await.expect("token over alice's connection");
    assert_eq!(me.username, ADMIN_USERNAME);
    expect_code(auth(&alice_ch, Some("garbage")).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);

    // sam, a superAdministrator by certificate, manages administrators, but not himself.
    let sam_ch = connect(&daemon, &pki, "sam").await;
    let me = who_am_i(&sam_ch, None).await.expect("sam by certificate");
    assert_eq!(me.roles, [pb::Role::SuperAdmin as i32, pb::Role::Admin as i32]);
    let mut as_sam = admins(&sam_ch, None);
    let before = snapshot(&env);
    let s = expect_code(
        as_sam.disable_admin(pb::DisableAdminRequest { uuid: sam.uuid.clone() }).await,
        Code::FailedPrecondition,
    );
    assert!(s.message().contains("yourself"), "{s:?}");
    expect_code(as_sam.delete_admins(bulk(&[&dora.uuid, &sam.uuid])).await, Code::FailedPrecondition);
    assert_eq!(snapshot(&env), before);

    // Disabled: alice's very next call, on the same connection, is refused; enabled again, she is back.
    as_sam
        .disable_admin(pb::DisableAdminRequest { uuid: alice.uuid.clone() })
        .await
        .expect("sam disables alice");
    expect_code(as_alice.list_admins(list_req(0, "", "")).await, Code::Unauthenticated);
    expect_code(auth(&alice_ch, None).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    as_sam.enable_admins(bulk(&[&alice.uuid, &dora.uuid])).await.expect("sam enables alice and dora");
    assert_eq!(who_am_i(&alice_ch, None).await.expect("alice is back").username, "alice_1");
    assert_eq!(who_am_i(&dora_ch, None).await.expect("dora enabled").username, "dora_off");
    // In bulk too.
    as_sam.disable_admins(bulk(&[&alice.uuid, UNKNOWN])).await.expect("bulk disable");
    expect_code(
        as_alice.get_admin(pb::GetAdminRequest { uuid: alice.uuid.clone() }).await,
        Code::Unauthenticated,
    );
    as_sam.enable_admin(pb::EnableAdminRequest { uuid: alice.uuid.clone() }).await.expect("enable");
    who_am_i(&alice_ch, None).await.expect("alice is back again");

    // A new certificate replaces the old one at once.
    let mut edit = edit_req(&alice);
    edit.certificate = pki.der_b64("stranger");
    as_sam.edit_admin(edit).await.expect("alice gets the stranger's certificate");
    expect_code(auth(&alice_ch, None).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    assert_eq!(who_am_i(&stranger, None).await.expect("the new certificate").username, "alice_1");

    // Deleted: refused on the very next call.
    as_sam
        .delete_admin(pb::DeleteAdminRequest { uuid: alice.uuid.clone() })
        .await
        .expect("sam deletes alice");
    expect_code(auth(&stranger, None).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    assert_eq!(
        audit_actions(&env, &alice.uuid)
            .into_iter()
            .map(|(actor, _)| actor)
            .filter(|a| a == "sam_super")
            .count(),
        6,
        "sam's changes are audited as his"
    );

    // After a restart the registered certificates are known again, the deleted one is not.
    daemon.restart().await;
    let dora_ch = connect(&daemon, &pki, "dora").await;
    assert_eq!(who_am_i(&dora_ch, None).await.expect("dora after restart").username, "dora_off");
    let stranger = connect(&daemon, &pki, "stranger").await;
    expect_code(auth(&stranger, None).who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_from_an_issued_certificate_of_the_inventory() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    let mut daemon = start_mtls(&env, &pki, "").await;
    let boot = connect(&daemon, &pki, "boot").await;
    let token = admin_token(&boot).await;
    let mut issuance = pb::issuance_service_client::IssuanceServiceClient::with_interceptor(
        boot.clone(),
        Bearer(Some(token.clone())),
    );
    let root = issuance.create_authority(create_req_authority()).await.expect("root authority").into_inner();
    std::fs::write(pki.dir.join("daemon-root.crt"), &root.chain_pem).expect("write root");
    // A key of the administrator's own, and a certificate the daemon issues for it.
    pki.key("carol");
    openssl(&pki.dir, &["req", "-new", "-key", "carol.key", "-subj", "/CN=carol", "-out", "carol.csr"]);
    let csr = std::fs::read_to_string(pki.dir.join("carol.csr")).expect("csr");
    let issued = issuance
        .issue_certificate(pb::IssueCertificateRequest {
            authority_id: root.id.clone(),
            profile_id: "ecc-device".into(),
            params: [("commonName".to_owned(), "carol".to_owned())].into_iter().collect(),
            csr_pem: csr,
            ..Default::default()
        })
        .await
        .expect("issue")
        .into_inner();
    std::fs::write(pki.dir.join("carol.crt"), &issued.certificate_pem).expect("write carol.crt");

    let mut su = admins(&boot, Some(&token));
    let mut req = create_req("carol_ops", pb::AdminRole::Administrator, true, String::new());
    req.certificate_uuid = issued.id.clone();
    let carol = create(&mut su, req).await;
    assert_eq!(carol.certificate_fingerprint, pki.sha256("carol"));
    assert_eq!(carol.certificate_serial, norm_serial(&issued.serial_number));
    assert_eq!(carol.certificate_not_after, issued.not_after);
    assert!(carol.certificate_subject.contains("CN=carol"), "{}", carol.certificate_subject);
    // The same inventory certificate twice is a duplicate.
    let mut again = create_req("carol_two", pb::AdminRole::Administrator, true, String::new());
    again.certificate_uuid = issued.id.clone();
    expect_code(su.create_admin(again).await, Code::AlreadyExists);

    // With the daemon's own root among the client CAs, carol signs in with that certificate.
    let bundle = pki.dir.join("client-cas.pem");
    let mut cas = std::fs::read_to_string(pki.crt("ca")).expect("ca");
    cas.push_str(&root.chain_pem);
    std::fs::write(&bundle, cas).expect("write bundle");
    std::fs::write(&daemon.config_path, env.config_with(&pki.tls_toml(&bundle)).expect("config"))
        .expect("config");
    daemon.restart().await;
    let carol_ch = connect(&daemon, &pki, "carol").await;
    let me = who_am_i(&carol_ch, None).await.expect("carol by her issued certificate");
    assert_eq!((me.username.as_str(), me.user_id.as_str()), ("carol_ops", carol.uuid.as_str()));
}

fn create_req_authority() -> pb::CreateAuthorityRequest {
    pb::CreateAuthorityRequest {
        name: "Admin Root".into(),
        key_algorithm: "EC:P-256".into(),
        subject_dn: "CN=cardhsm admin root,O=cardhsm tests".into(),
        validity_years: 2,
        kind: pb::AuthorityKind::Root as i32,
        parent_id: String::new(),
    }
}

// ---- the `cardhsm admins` commands and `cardhsm login --cert` ---------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn cli_login_with_a_certificate_and_admins_commands() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["carol", "dave", "erin"] {
        pki.client(name);
    }
    let daemon = start_mtls(&env, &pki, "").await;
    let mut su = super_admin(&daemon, &pki).await;
    create(&mut su, create_req("carol_super", pb::AdminRole::SuperAdministrator, true, pki.der_b64("carol")))
        .await;

    let cli = CliHome::new(env.path());
    let endpoint = https(&daemon);
    let ca = pki.crt("ca").display().to_string();
    let (carol_crt, carol_key) =
        (pki.crt("carol").display().to_string(), pki.key_path("carol").display().to_string());
    // A certificate login: checked once with WhoAmI, then remembered (no token in the file).
    let login = cli.json(&[
        "--endpoint",
        &endpoint,
        "--ca-file",
        &ca,
        "login",
        "--cert",
        &carol_crt,
        "--key",
        &carol_key,
    ]);
    assert_eq!(login["username"], "carol_super", "{login}");
    let session = std::fs::read_to_string(cli.home.join("session.json")).expect("session file");
    assert!(!session.contains("access_token"), "a certificate session holds no token: {session}");
    let me = cli.json(&["whoami"]);
    assert_eq!(me["username"], "carol_super", "{me}");
    // Logging in again goes to the same daemon; a login with neither a username nor a
    // certificate says what is missing.
    let again = cli.json(&["--ca-file", &ca, "login", "--cert", &carol_crt, "--key", &carol_key]);
    assert_eq!(again["endpoint"], endpoint.as_str(), "{again}");
    cli.run(&["--endpoint", &endpoint, "login"]).failed_with("give --username");
    // A certificate that is no administrator's is refused, and the saved login stays.
    let dave_key = pki.key_path("dave").display().to_string();
    let dave_crt = pki.crt("dave").display().to_string();
    cli.run(&["--ca-file", &ca, "login", "--cert", &dave_crt, "--key", &dave_key])
        .failed_with("UNAUTHENTICATED");
    assert_eq!(cli.json(&["whoami"])["username"], "carol_super");

    // Later commands use the certificate: list, create, show, edit.
    let listed = cli.json(&["admins", "list"]);
    assert_eq!(listed["admins"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["admins"][0]["username"], "carol_super");
    let dave = cli.json(&[
        "admins",
        "create",
        "--username",
        "dave_ops",
        "--name",
        "Dave",
        "--surname",
        "Ops",
        "--email",
        "dave@corp.example",
        "--role",
        "administrator",
        "--certificate",
        &dave_crt,
        "--description",
        "night shift",
    ]);
    let dave_uuid = dave["uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(dave["enabled"], false);
    assert_eq!(dave["role"], "administrator");
    assert_eq!(dave["certificate_fingerprint"], pki.sha256("dave"));
    let erin_der = pki.dir.join("erin.der");
    openssl(&pki.dir, &["x509", "-in", "erin.crt", "-outform", "DER", "-out", "erin.der"]);
    let erin = cli.json(&[
        "admins",
        "create",
        "--username",
        "erin_ops",
        "--name",
        "Erin",
        "--surname",
        "Ops",
        "--email",
        "erin@corp.example",
        "--role",
        "super-administrator",
        "--enabled",
        "--certificate",
        &erin_der.display().to_string(),
    ]);
    let erin_uuid = erin["uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(erin["enabled"], true);
    assert_eq!(erin["role"], "superAdministrator");
    assert_eq!(erin["certificate_fingerprint"], pki.sha256("erin"));
    let shown = cli.json(&["admins", "show", &dave_uuid]);
    assert_eq!(shown["description"], "night shift");
    let edited =
        cli.json(&["admins", "edit", &dave_uuid, "--name", "David", "--email", "david@corp.example"]);
    assert_eq!(
        (edited["name"].as_str(), edited["email"].as_str()),
        (Some("David"), Some("david@corp.example"))
    );
    assert_eq!(edited["surname"], "Ops", "unchanged fields stay");

    // Several uuids at once; the unknown ones are printed.
    let out = cli.run(&["admins", "enable", &dave_uuid, UNKNOWN]).ok();
    assert!(out.stdout.contains(&dave_uuid) && out.stdout.contains(UNKNOWN), "{out:?}");
    assert!(out.stdout.to_lowercase().contains("not found"), "{out:?}");
    let out = cli.json(&["admins", "disable", &dave_uuid, &erin_uuid, UNKNOWN]);
    assert_eq!(out["processed"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(out["not_found"][0], UNKNOWN, "{out}");
    let disabled = cli.json(&["admins", "list", "--search", "ops"]);
    assert!(
        disabled["admins"].as_array().expect("admins").iter().all(|a| a["enabled"] == false),
        "{disabled}"
    );
    // Bad input is the daemon's answer, naming the field.
    let bad = cli.run(&[
        "admins",
        "create",
        "--username",
        "x",
        "--name",
        "X",
        "--surname",
        "Y",
        "--email",
        "x@corp.example",
        "--role",
        "administrator",
        "--certificate",
        &dave_crt,
    ]);
    bad.failed_with("INVALID_ARGUMENT: invalid username");
    // All unknown: an error.
    cli.run(&["admins", "delete", UNKNOWN]).failed_with("NOT_FOUND");
    let out = cli.json(&["admins", "delete", &dave_uuid, &erin_uuid]);
    assert_eq!(out["processed"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(usernames(&mut su, "").await, ["carol_super"]);

    // The certificate session ends with logout; then nothing works without logging in.
    cli.run(&["logout"]).ok();
    cli.run(&["admins", "list"]).failed_with("not logged in");
}
