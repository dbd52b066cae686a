//! End-to-end: the card lifecycle through the real cardhsmd, on real SoftHSM card tokens and a
//! real SQLite file — every RPC of CardService, every illegal transition, bad input that
//! changes nothing, key attributes read back from the token, and persistence over a restart.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv, list_token_objects};
use pb::CardState as S;
use support::*;
use tonic::Code;

const OWNER: &str = "user1@corp.example";

fn register_req(serial: &str, owner: &str) -> pb::RegisterCardRequest {
    pb::RegisterCardRequest {
        token_serial: serial.into(),
        owner: owner.into(),
        label: "Badge of user1".into(),
        pac_number: "004711".into(),
        policy: String::new(),
        reader: String::new(),
    }
}

fn action(id: &str) -> pb::CardActionRequest {
    pb::CardActionRequest { id: id.into(), comment: String::new() }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_lifecycle_with_keys_on_the_token() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let serial = env.card_serials[0].clone();

    // Register: ASSIGNED, bound to the token, present.
    let card = api.cards.register_card(register_req(&serial, OWNER)).await.expect("register").into_inner();
    assert_eq!(card.state, S::Assigned as i32);
    assert_eq!(card.serial_number, serial);
    assert_eq!(card.owner, OWNER);
    assert_eq!(card.pac_number, "004711");
    assert_eq!(card.label, "Badge of user1");
    assert_eq!(card.policy, "standard");
    assert!(card.token_present);
    assert_eq!(card.atr, "", "ATR stays empty until reader support lands");
    assert!(card.keys.is_empty());

    // Issue: ACTIVE with the policy's key pair generated on the card token.
    let issued = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("issue")
        .into_inner();
    assert_eq!(issued.state, S::Active as i32);
    assert_eq!(issued.keys.len(), 1);
    let key = &issued.keys[0];
    assert_eq!((key.label.as_str(), key.algorithm.as_str()), ("auth", "EC:P-256"));
    assert!(!key.public_key_der.is_empty());

    // The private key on the token is sensitive and never extractable, read back over PKCS#11.
    let objects = list_token_objects(&env, "card-01").expect("pkcs11-tool");
    let private: Vec<_> = objects.iter().filter(|o| o.class == "private").collect();
    assert_eq!(private.len(), 1, "objects: {objects:?}");
    assert_eq!(private[0].id_hex, key.key_id, "CKA_ID links the key to the card record");
    assert_eq!(private[0].sensitive, Some(true));
    assert_eq!(private[0].extractable, Some(false));
    assert_eq!(private[0].label, "auth");
    assert_eq!(private[0].usage, ["sign"], "a card authentication key signs and does nothing else");
    assert!(objects.iter().any(|o| o.class == "public" && o.id_hex == key.key_id));

    // Disable / enable.
    let d = api.cards.disable_card(action(&card.id)).await.expect("disable").into_inner();
    assert_eq!(d.state, S::Disabled as i32);
    let e = api.cards.enable_card(action(&card.id)).await.expect("enable").into_inner();
    assert_eq!(e.state, S::Active as i32);

    // PreUpdate to the two-key policy, then IssueCard applies it and replaces the keys.
    let p = api
        .cards
        .pre_update_card(pb::PreUpdateCardRequest { id: card.id.clone(), policy: "dual".into() })
        .await
        .expect("preupdate")
        .into_inner();
    assert_eq!(p.state, S::PendingUpdate as i32);
    assert_eq!(p.pending_policy, "dual");
    let re = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("reissue")
        .into_inner();
    assert_eq!(re.state, S::Active as i32);
    assert_eq!(re.policy, "dual");
    assert_eq!(re.pending_policy, "");
    let labels: Vec<_> = re.keys.iter().map(|k| k.label.as_str()).collect();
    assert_eq!(labels, ["auth", "sign"]);
    assert!(re.keys.iter().all(|k| k.key_id != key.key_id), "re-issue makes new keys");
    let objects = list_token_objects(&env, "card-01").expect("pkcs11-tool");
    let private_ids: Vec<_> =
        objects.iter().filter(|o| o.class == "private").map(|o| o.id_hex.clone()).collect();
    assert_eq!(private_ids.len(), 2, "the superseded key is gone from the card: {objects:?}");
    assert!(!private_ids.contains(&key.key_id));

    // Revoke with a reason.
    let r = api
        .cards
        .revoke_card(pb::RevokeCardRequest {
            id: card.id.clone(),
            reason: pb::RevokeReason::Lost as i32,
            comment: "lost on a train".into(),
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(r.state, S::Revoked as i32);
    assert_eq!(r.revoke_reason, pb::RevokeReason::Lost as i32);

    // GetCard agrees, and ListCards finds it by owner and by state.
    let got = api.cards.get_card(pb::GetCardRequest { id: card.id.clone() }).await.expect("get").into_inner();
    assert_eq!(got.state, S::Revoked as i32);
    let listed = api
        .cards
        .list_cards(pb::ListCardsRequest { owner: OWNER.into(), state: S::Revoked as i32, page: None })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.cards.len(), 1);
    let none_active = api
        .cards
        .list_cards(pb::ListCardsRequest { owner: OWNER.into(), state: S::Active as i32, page: None })
        .await
        .expect("list")
        .into_inner();
    assert!(none_active.cards.is_empty());

    // A revoked card frees its token: it can be registered again as a new card.
    let again =
        api.cards.register_card(register_req(&serial, "user2@corp.example")).await.expect("re-register");
    assert_ne!(again.into_inner().id, card.id);

    // The audit log holds every step.
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let actions: Vec<String> = conn
        .prepare("SELECT action FROM audit_log WHERE target_id = ?1 ORDER BY id")
        .expect("prepare")
        .query_map([&card.id], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        actions,
        [
            "card.register",
            "card.issue_start",
            "card.issue",
            "card.disable",
            "card.enable",
            "card.preupdate",
            "card.issue_start",
            "card.issue",
            "card.revoke"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_illegal_transition_is_failed_precondition_naming_the_state() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let card = api
        .cards
        .register_card(register_req(&env.card_serials[0], OWNER))
        .await
        .expect("register")
        .into_inner();
    let id = card.id.clone();

    // Each call below is illegal in the state named; the card must stay in that state.
    #[derive(Clone, Copy, Debug)]
    enum Call {
        Issue,
        Disable,
        Enable,
        Revoke,
        PreUpdate,
    }
    async fn call(api: &mut Api, id: &str, c: Call) -> Result<tonic::Response<pb::CardInfo>, tonic::Status> {
        match c {
            Call::Issue => {
                api.cards.issue_card(pb::IssueCardRequest { id: id.into(), ..Default::default() }).await
            }
            Call::Disable => api.cards.disable_card(action(id)).await,
            Call::Enable => api.cards.enable_card(action(id)).await,
            Call::Revoke => {
                api.cards
                    .revoke_card(pb::RevokeCardRequest { id: id.into(), reason: 0, comment: String::new() })
                    .await
            }
            Call::PreUpdate => {
                api.cards
                    .pre_update_card(pb::PreUpdateCardRequest { id: id.into(), policy: String::new() })
                    .await
            }
        }
    }
    async fn refused(api: &mut Api, id: &str, state: &str, calls: &[Call]) {
        for c in calls {
            let s = expect_code(call(api, id, *c).await, Code::FailedPrecondition);
            assert!(s.message().contains(state), "{c:?} in {state}: {}", s.message());
            let now =
                api.cards.get_card(pb::GetCardRequest { id: id.into() }).await.expect("get").into_inner();
            assert_eq!(state_name(now.state), format!("CARD_STATE_{state}"), "{c:?} changed the state");
        }
    }
    // ASSIGNED: only Issue and Revoke are legal.
    refused(&mut api, &id, "ASSIGNED", &[Call::Disable, Call::Enable, Call::PreUpdate]).await;
    call(&mut api, &id, Call::Issue).await.expect("issue");
    // ACTIVE: Issue and Enable are illegal.
    refused(&mut api, &id, "ACTIVE", &[Call::Issue, Call::Enable]).await;
    call(&mut api, &id, Call::Disable).await.expect("disable");
    // DISABLED: PreUpdate, Disable, Issue are illegal.
    refused(&mut api, &id, "DISABLED", &[Call::PreUpdate, Call::Disable, Call::Issue]).await;
    call(&mut api, &id, Call::Enable).await.expect("enable");
    call(&mut api, &id, Call::PreUpdate).await.expect("preupdate");
    // PENDING_UPDATE: PreUpdate, Disable, Enable are illegal.
    refused(&mut api, &id, "PENDING_UPDATE", &[Call::PreUpdate, Call::Disable, Call::Enable]).await;
    call(&mut api, &id, Call::Revoke).await.expect("revoke");
    // REVOKED: everything is illegal.
    refused(
        &mut api,
        &id,
        "REVOKED",
        &[Call::Issue, Call::Disable, Call::Enable, Call::Revoke, Call::PreUpdate],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_issue_refuses_preupdate_and_resumes_after_a_restart() {
    let env = TestEnv::new(1).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let card = api
        .cards
        .register_card(register_req(&env.card_serials[0], OWNER))
        .await
        .expect("register")
        .into_inner();
    daemon.stop().await;
    // Simulate a daemon killed between "PENDING_ISSUE committed" and "keys generated".
    {
        let conn = rusqlite::Connection::open(env.store_path()).expect("db");
        let n = conn
            .execute(
                "UPDATE cards SET state = 'PENDING_ISSUE', issue_generation = issue_generation + 1 WHERE id = ?1",
                [&card.id],
            )
            .expect("update");
        assert_eq!(n, 1);
    }
    daemon.restart().await;
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let s = expect_code(
        api.cards
            .pre_update_card(pb::PreUpdateCardRequest { id: card.id.clone(), policy: String::new() })
            .await,
        Code::FailedPrecondition,
    );
    assert!(s.message().contains("PENDING_ISSUE"), "{}", s.message());
    let done = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(done.state, S::Active as i32);
    assert_eq!(done.keys.len(), 1);
    let privates = list_token_objects(&env, "card-01")
        .expect("pkcs11-tool")
        .into_iter()
        .filter(|o| o.class == "private")
        .count();
    assert_eq!(privates, 1, "resumed issuance leaves exactly one key set");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let env = TestEnv::new(2).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let card = api
        .cards
        .register_card(register_req(&env.card_serials[0], OWNER))
        .await
        .expect("register")
        .into_inner();
    let before = store_snapshot(&env.store_path());

    // Owner: empty and malformed.
    for owner in ["", "   ", "not-an-upn", "a@b", "two@at@corp.example", "sp ace@corp.example"] {
        expect_invalid_field(
            api.cards.list_cards(pb::ListCardsRequest { owner: owner.into(), state: 0, page: None }).await,
            "owner",
        );
        expect_invalid_field(
            api.cards.register_card(register_req(&env.card_serials[1], owner)).await,
            "owner",
        );
    }
    // State filter out of range, paging out of range or forged.
    expect_invalid_field(
        api.cards.list_cards(pb::ListCardsRequest { owner: OWNER.into(), state: 42, page: None }).await,
        "state",
    );
    expect_invalid_field(
        api.cards
            .list_cards(pb::ListCardsRequest {
                owner: OWNER.into(),
                state: 0,
                page: Some(pb::PageRequest { page_size: 5000, page_token: String::new() }),
            })
            .await,
        "page.page_size",
    );
    expect_invalid_field(
        api.cards
            .list_cards(pb::ListCardsRequest {
                owner: OWNER.into(),
                state: 0,
                page: Some(pb::PageRequest { page_size: 1, page_token: "forged".into() }),
            })
            .await,
        "page.page_token",
    );
    // Ids: malformed → INVALID_ARGUMENT; well-formed but unknown → NOT_FOUND.
    expect_invalid_field(api.cards.get_card(pb::GetCardRequest { id: "not-an-id".into() }).await, "id");
    expect_invalid_field(api.cards.get_card(pb::GetCardRequest { id: String::new() }).await, "id");
    let unknown = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";
    expect_code(api.cards.get_card(pb::GetCardRequest { id: unknown.into() }).await, Code::NotFound);
    expect_code(
        api.cards.issue_card(pb::IssueCardRequest { id: unknown.into(), ..Default::default() }).await,
        Code::NotFound,
    );
    expect_code(api.cards.disable_card(action(unknown)).await, Code::NotFound);
    expect_code(api.cards.enable_card(action(unknown)).await, Code::NotFound);
    expect_code(
        api.cards
            .revoke_card(pb::RevokeCardRequest { id: unknown.into(), reason: 2, comment: String::new() })
            .await,
        Code::NotFound,
    );
    expect_code(
        api.cards
            .pre_update_card(pb::PreUpdateCardRequest { id: unknown.into(), policy: String::new() })
            .await,
        Code::NotFound,
    );
    // Revoke reasons are exactly 0..=7.
    for reason in [8, -1, 100] {
        expect_invalid_field(
            api.cards
                .revoke_card(pb::RevokeCardRequest { id: card.id.clone(), reason, comment: String::new() })
                .await,
            "reason",
        );
    }
    // Registration: field checks, unknown policy, unknown token, the daemon's own token, a token already bound.
    let mut r = register_req(&env.card_serials[1], OWNER);
    r.pac_number = "12 34".into();
    expect_invalid_field(api.cards.register_card(r).await, "pac_number");
    let mut r = register_req(&env.card_serials[1], OWNER);
    r.policy = "no-such-policy".into();
    expect_invalid_field(api.cards.register_card(r).await, "policy");
    expect_invalid_field(api.cards.register_card(register_req("", OWNER)).await, "token_serial");
    let mut r = register_req(&env.card_serials[1], OWNER);
    r.label = "x".repeat(65);
    expect_invalid_field(api.cards.register_card(r).await, "label");
    expect_code(api.cards.register_card(register_req("0000000000000000", OWNER)).await, Code::NotFound);
    expect_code(
        api.cards.register_card(register_req(&env.daemon_token_serial, OWNER)).await,
        Code::FailedPrecondition,
    );
    expect_code(
        api.cards.register_card(register_req(&env.card_serials[0], OWNER)).await,
        Code::AlreadyExists,
    );
    // PreUpdate to an unknown policy.
    expect_invalid_field(
        api.cards
            .pre_update_card(pb::PreUpdateCardRequest { id: card.id.clone(), policy: "nope".into() })
            .await,
        "policy",
    );

    assert_eq!(store_snapshot(&env.store_path()), before, "a refused request changed the store");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_cards_pages_and_filters() {
    let env = TestEnv::new(3).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let mut ids = Vec::new();
    for serial in &env.card_serials {
        ids.push(
            api.cards.register_card(register_req(serial, OWNER)).await.expect("register").into_inner().id,
        );
    }
    api.cards
        .issue_card(pb::IssueCardRequest { id: ids[1].clone(), ..Default::default() })
        .await
        .expect("issue");

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .cards
            .list_cards(pb::ListCardsRequest {
                owner: "USER1@corp.example".into(), // owner matching ignores case, as UPNs do
                state: 0,
                page: Some(pb::PageRequest { page_size: 2, page_token: token.clone() }),
            })
            .await
            .expect("list")
            .into_inner();
        let p = page.page.expect("page info");
        assert_eq!(p.total_count, 3);
        assert!(page.cards.len() <= 2);
        seen.extend(page.cards.into_iter().map(|c| c.id));
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    assert_eq!(seen, ids, "pages hold every card once, oldest first");

    let active = api
        .cards
        .list_cards(pb::ListCardsRequest { owner: OWNER.into(), state: S::Active as i32, page: None })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(active.cards.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), [ids[1].clone()]);
    assert_eq!(active.page.expect("page").total_count, 1);
    let other = api
        .cards
        .list_cards(pb::ListCardsRequest { owner: "nobody@corp.example".into(), state: 0, page: None })
        .await
        .expect("list")
        .into_inner();
    assert!(other.cards.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_tokens_shows_slots_roles_and_bindings() {
    let env = TestEnv::new(2).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let card = api
        .cards
        .register_card(register_req(&env.card_serials[0], OWNER))
        .await
        .expect("register")
        .into_inner();
    let tokens = api.cards.list_tokens(pb::ListTokensRequest {}).await.expect("tokens").into_inner().tokens;
    let daemon_token =
        tokens.iter().find(|t| t.serial_number == env.daemon_token_serial).expect("daemon token listed");
    assert_eq!(daemon_token.label, "cardhsm-daemon");
    assert_eq!(daemon_token.role, "daemon");
    assert!(daemon_token.present && daemon_token.available);
    assert_eq!(daemon_token.manufacturer, "SoftHSM project");
    let bound = tokens.iter().find(|t| t.serial_number == env.card_serials[0]).expect("card token");
    assert_eq!(bound.label, "card-01");
    assert_eq!(bound.card_id, card.id, "a bound token names its card");
    let free = tokens.iter().find(|t| t.serial_number == env.card_serials[1]).expect("second card token");
    assert_eq!(free.card_id, "", "an unbound token is free");
    assert!(free.present);
    assert_eq!(free.role, "card", "a token the config does not name is a card token");
    assert_eq!(free.free_public_memory, u64::MAX, "SoftHSM does not report memory: unavailable, not 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn cards_and_states_survive_a_restart() {
    let env = TestEnv::new(2).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let a = api
        .cards
        .register_card(register_req(&env.card_serials[0], OWNER))
        .await
        .expect("register")
        .into_inner();
    let b = api
        .cards
        .register_card(register_req(&env.card_serials[1], OWNER))
        .await
        .expect("register")
        .into_inner();
    api.cards
        .issue_card(pb::IssueCardRequest { id: a.id.clone(), ..Default::default() })
        .await
        .expect("issue");
    api.cards.disable_card(action(&a.id)).await.expect("disable");
    let before = api
        .cards
        .list_cards(pb::ListCardsRequest { owner: OWNER.into(), state: 0, page: None })
        .await
        .expect("list")
        .into_inner()
        .cards;

    daemon.restart().await;
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let after = api
        .cards
        .list_cards(pb::ListCardsRequest { owner: OWNER.into(), state: 0, page: None })
        .await
        .expect("list")
        .into_inner()
        .cards;
    assert_eq!(after, before);
    assert_eq!(after.iter().map(|c| c.state).collect::<Vec<_>>(), [S::Disabled as i32, S::Assigned as i32]);
    assert_eq!(after[1].id, b.id);
    // And the lifecycle goes on from where it was.
    let e = api.cards.enable_card(action(&a.id)).await.expect("enable after restart").into_inner();
    assert_eq!(e.state, S::Active as i32);
}
