//! End-to-end: the card-management REST routes (`/icmapi/card/revoke|disable|enable|preupdate`,
//! with `/icmapi/user/getcards`) over real HTTP against the real cardhsmd on real SoftHSM card
//! and daemon tokens and a real SQLite file. Each action's answer is checked against the served
//! OpenAPI document, its state change through gRPC `CardService.GetCard`, and its effect on the
//! card's certificates in a CRL that `openssl crl` verifies; bad input, missing credentials, a
//! USER caller, unknown ids and illegal transitions get the family's 4xx and change nothing.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use pb::CardState as S;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use support::rest::{Auth, Body, Rest, rest_as};
use support::*;

const OWNER: &str = "carol@corp.example";
const USER_PASSWORD: &str = "User-Passw0rd-rest-cards";

/// `cards.authority` plus a policy that keeps only the `auth` certificate of `piv`.
const CARD_CONFIG: &str = r#"
[cards]
authority = "Card CA"
[[cards.policies]]
name = "piv-auth"
keys = [{ label = "auth", algorithm = "EC:P-256", certificate_profile = "card-authentication" }]
"#;

fn register(serial: &str, policy: &str) -> pb::RegisterCardRequest {
    pb::RegisterCardRequest {
        token_serial: serial.into(),
        owner: OWNER.into(),
        label: "Carol's badge".into(),
        pac_number: "000077".into(),
        policy: policy.into(),
        reader: String::new(),
    }
}

async fn get_card(api: &mut Api, id: &str) -> pb::CardInfo {
    api.cards.get_card(pb::GetCardRequest { id: id.into() }).await.expect("GetCard").into_inner()
}

/// The card's certificates by key label.
fn certs(card: &pb::CardInfo) -> BTreeMap<String, pb::CardCertificate> {
    card.keys.iter().filter_map(|k| Some((k.label.clone(), k.certificate.clone()?))).collect()
}

/// The authority's CRL, verified by openssl against `ca.pem`: serial → reason.
async fn crl(api: &mut Api, dir: &Path, authority: &str) -> BTreeMap<String, String> {
    fetch_crl(api, dir, authority, "card.crl").await;
    let text = openssl(dir, &["crl", "-in", "card.crl", "-CAfile", "ca.pem", "-noout", "-text"]);
    assert!(text.contains("verify OK"), "{text}");
    crl_entries(&text)
}

/// Asserts an action's answer is the card in the getcards item shape, in `state`.
#[track_caller]
fn assert_card(body: &Value, card: &pb::CardInfo, state: &str) {
    assert_eq!(body["id"], card.id.as_str(), "{body}");
    assert_eq!(body["serialNumber"], card.serial_number.as_str(), "{body}");
    assert_eq!(body["label"], "Carol's badge", "{body}");
    assert_eq!(body["pacNumber"], "000077", "{body}");
    assert_eq!(body["state"], state, "{body}");
}

/// How many audit records of `action` carry `text` in their detail.
fn audit_with(env: &TestEnv, action: &str, text: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(env.store_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row(
        "SELECT COUNT(*) FROM audit_log WHERE action LIKE ?1 AND detail LIKE ?2",
        [format!("%{action}%"), format!("%{text}%")],
        |r| r.get(0),
    )
    .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn card_actions_over_rest_move_the_card_and_its_certificates() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start_with(&env, CARD_CONFIG).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path();
    let ca = api
        .issuance
        .create_authority(create_req("Card CA", "EC:P-256", "CN=Card CA,O=Corp", pb::AuthorityKind::Root, ""))
        .await
        .expect("authority")
        .into_inner();
    write(dir, "ca.pem", &ca.certificate_pem);
    let serial = env.card_serials[0].clone();
    let card = api.cards.register_card(register(&serial, "piv")).await.expect("register").into_inner();
    let card = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("issue")
        .into_inner();
    let issued = certs(&card);
    assert_eq!(issued.len(), 2, "{card:?}");
    let rest = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;

    // getcards lists it, ACTIVE.
    let listed = rest.get(&format!("/icmapi/user/getcards?name={OWNER}")).await.expect(200);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1), "{}", listed.body);
    assert_card(&listed.body[0], &card, "ACTIVE");

    // Disable (no body; the comment rides in the query): DISABLED, certificates on hold.
    let path = format!("/icmapi/card/disable?id={}&comment=badge-left-at-desk", card.id);
    let disabled = rest.call("POST", &path, Body::Empty).await.expect(200);
    assert_card(&disabled.body, &card, "DISABLED");
    let seen = get_card(&mut api, &card.id).await;
    assert_eq!(seen.state, S::Disabled as i32);
    assert!(certs(&seen).values().all(|c| c.status == "ON_HOLD"), "{seen:?}");
    let held = crl(&mut api, dir, &ca.id).await;
    for c in issued.values() {
        assert_eq!(held.get(&norm_serial(&c.serial_number)).map(String::as_str), Some("Certificate Hold"));
    }
    assert_eq!(audit_with(&env, "disable", "badge-left-at-desk"), 1, "the comment is audited");

    // Enable: ACTIVE again, the hold lifted.
    let enabled =
        rest.call("POST", &format!("/icmapi/card/enable?id={}", card.id), Body::Empty).await.expect(200);
    assert_card(&enabled.body, &card, "ACTIVE");
    assert_eq!(get_card(&mut api, &card.id).await.state, S::Active as i32);
    assert!(crl(&mut api, dir, &ca.id).await.is_empty());

    // Pre-update to `piv-auth`: PENDING_UPDATE; the signature certificate is superseded.
    let path = format!("/icmapi/card/preupdate?id={}&policy=piv-auth", card.id);
    let pre = rest.call("POST", &path, Body::Empty).await.expect(200);
    assert_card(&pre.body, &card, "PENDING_UPDATE");
    let seen = get_card(&mut api, &card.id).await;
    assert_eq!(seen.state, S::PendingUpdate as i32);
    assert_eq!(certs(&seen).keys().map(String::as_str).collect::<Vec<_>>(), ["auth"]);
    let listed = crl(&mut api, dir, &ca.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed.get(&norm_serial(&issued["sign"].serial_number)).map(String::as_str),
        Some("Superseded")
    );

    // Revoke with {"reason": 7} (compromised): REVOKED, reason kept, keyCompromise in the CRL.
    let path = format!("/icmapi/card/revoke?id={}", card.id);
    let revoked = rest.post(&path, json!({ "reason": 7, "comment": "stolen" })).await.expect(200);
    assert_card(&revoked.body, &card, "REVOKED");
    let seen = get_card(&mut api, &card.id).await;
    assert_eq!((seen.state, seen.revoke_reason), (S::Revoked as i32, 7));
    assert_eq!(certs(&seen)["auth"].status, "REVOKED");
    let listed = crl(&mut api, dir, &ca.id).await;
    assert_eq!(
        listed.get(&norm_serial(&issued["auth"].serial_number)).map(String::as_str),
        Some("Key Compromise")
    );
    assert_eq!(listed.len(), 2);
    assert_eq!(audit_with(&env, "revoke", "stolen"), 1, "the comment is audited");

    // A revoked card cannot be revoked again: 409, the state named, nothing changes.
    let before = store_snapshot(&env.store_path());
    let again = rest.post(&path, json!({ "reason": 2 })).await.expect(409);
    assert!(again.body["message"].as_str().is_some_and(|m| m.contains("REVOKED")), "{}", again.body);
    assert_eq!(again.body["status"], 409);
    assert_eq!(store_snapshot(&env.store_path()), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn card_routes_refuse_bad_input_missing_credentials_and_users_and_change_nothing() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let card =
        api.cards.register_card(register(&env.card_serials[0], "")).await.expect("register").into_inner();
    api.users
        .create_user(pb::CreateUserRequest {
            username: "rest_cards_user".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("create user");
    let admin = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;
    let user = rest_as(&daemon, "rest_cards_user", USER_PASSWORD).await;
    let anonymous = Rest::new(&daemon).await;
    let revoke = format!("/icmapi/card/revoke?id={}", card.id);
    let before = store_snapshot(&env.store_path());

    // No credential: 401 with the challenge, in the plain error shape.
    for action in ["revoke", "disable", "enable", "preupdate"] {
        let r = anonymous
            .call("POST", &format!("/icmapi/card/{action}?id={}", card.id), Body::Json(json!({"reason": 1})))
            .await
            .expect(401);
        assert_eq!(r.body["status"], 401, "{action}: {}", r.body);
        assert!(r.headers.contains_key("www-authenticate"), "{action}");
    }
    let junk = anonymous.with(Auth::Header("Bearer not-a-token".into()));
    junk.post(&revoke, json!({"reason": 1})).await.expect(401);

    // A USER may not act on cards: 403.
    for action in ["revoke", "disable", "enable", "preupdate"] {
        let r = user
            .call("POST", &format!("/icmapi/card/{action}?id={}", card.id), Body::Json(json!({"reason": 1})))
            .await
            .expect(403);
        assert_eq!(r.body["error"], "Forbidden", "{action}: {}", r.body);
    }

    // Bad input names the field: an unknown reason number, a reason of the wrong type, a
    // missing reason, a missing or malformed id.
    let r = admin.post(&revoke, json!({ "reason": 8 })).await.expect(400);
    assert_eq!(r.body["field"], "reason", "{}", r.body);
    let r = admin.post(&revoke, json!({ "reason": -1 })).await.expect(400);
    assert_eq!(r.body["field"], "reason", "{}", r.body);
    let r = admin.post(&revoke, json!({ "reason": "lost" })).await.expect(400);
    assert_eq!(r.body["field"], "reason", "{}", r.body);
    let r = admin.post(&revoke, json!({ "comment": "no reason" })).await.expect(400);
    assert_eq!(r.body["field"], "reason", "{}", r.body);
    let r = admin.post("/icmapi/card/revoke", json!({ "reason": 1 })).await.expect(400);
    assert_eq!(r.body["field"], "id", "{}", r.body);
    let r = admin.call("POST", "/icmapi/card/disable?id=not-a-card-id", Body::Empty).await.expect(400);
    assert_eq!(r.body["field"], "id", "{}", r.body);
    // Broken JSON and a body that is not JSON: 4xx, never 5xx.
    admin.call("POST", &revoke, Body::Raw("application/json", b"{\"reason\": 1".to_vec())).await.expect(400);
    admin.call("POST", &revoke, Body::Text("reason=1".into())).await.expect(415);
    // An unknown policy for a pre-update.
    let path = format!("/icmapi/card/preupdate?id={}&policy=no-such-policy", card.id);
    let r = admin.call("POST", &path, Body::Empty).await.expect(400);
    assert_eq!(r.body["field"], "policy", "{}", r.body);

    // An unknown card: 404.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for action in ["disable", "enable", "preupdate"] {
        let r =
            admin.call("POST", &format!("/icmapi/card/{action}?id={unknown}"), Body::Empty).await.expect(404);
        assert_eq!(r.body["status"], 404, "{action}");
    }
    admin.post(&format!("/icmapi/card/revoke?id={unknown}"), json!({ "reason": 1 })).await.expect(404);

    // Illegal transitions of an ASSIGNED card: 409 naming its state.
    for action in ["disable", "enable", "preupdate"] {
        let r = admin
            .call("POST", &format!("/icmapi/card/{action}?id={}", card.id), Body::Empty)
            .await
            .expect(409);
        assert!(r.body["message"].as_str().is_some_and(|m| m.contains("ASSIGNED")), "{action}: {}", r.body);
    }

    // Nothing above changed anything; the card is still ASSIGNED.
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert_eq!(get_card(&mut api, &card.id).await.state, S::Assigned as i32);

    // And a revoke by the officer still works on the untouched card (reason 0, none).
    let ok = admin.post(&revoke, json!({ "reason": 0 })).await.expect(200);
    assert_eq!(ok.body["state"], "REVOKED");
    let seen = get_card(&mut api, &card.id).await;
    assert_eq!((seen.state, seen.revoke_reason), (S::Revoked as i32, 0));
}
