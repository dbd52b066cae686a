//! End-to-end: card readers over PC/SC, with no hardware. The real cardhsmd talks to a private
//! pcscd with a vpcd reader; the virtual PIV card (`cardhsm-vcard`) is inserted, pulled out and
//! put back, and pcscd is restarted under the running daemon — each seen through
//! CardService.ListReaders and CardService.WatchReaders.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::pcsc::{Pcscd, READER, VirtualCard};
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use pb::ReaderEventKind as K;
use std::time::Duration;
use support::*;
use tonic::Code;

/// The virtual card's ATR, as the API writes it.
const ATR: &str = "3b8880016361726468736d214a";
const GUID: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
/// Long enough for any of these events on a loaded machine; the events come within a second.
const WAIT: Duration = Duration::from_secs(15);

/// The next event of `kind` for the test reader (events for other readers and kinds are
/// skipped: vpcd has a second slot, and the order of a reader's own events is checked by the
/// sequence of calls).
async fn next(stream: &mut tonic::Streaming<pb::ReaderEvent>, kind: K) -> pb::ReaderEvent {
    let wait = async {
        loop {
            let event = stream.message().await.expect("stream error").expect("stream ended");
            if event.kind == kind as i32 && event.reader == READER {
                return event;
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("no {kind:?} event for {READER}"))
}

async fn reader(api: &mut Api) -> Option<pb::Reader> {
    let listed = api.cards.list_readers(pb::ListReadersRequest {}).await.expect("list readers").into_inner();
    listed.readers.into_iter().find(|r| r.name == READER)
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_and_cards_are_seen_through_inserts_removals_and_a_pcscd_restart() {
    let env = TestEnv::new(0).expect("env");
    let mut pcscd = Pcscd::start(env.path()).expect("pcscd");
    let daemon = Daemon::start_with_pcscd(&env, "", &pcscd).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;

    // Watching starts with the current picture: the empty reader.
    let mut watch = api.cards.watch_readers(pb::WatchReadersRequest {}).await.expect("watch").into_inner();
    next(&mut watch, K::ReaderAdded).await;
    let listed = api.cards.list_readers(pb::ListReadersRequest {}).await.expect("list").into_inner();
    assert!(listed.service_available);
    let empty = listed.readers.iter().find(|r| r.name == READER).expect("the vpcd reader is listed");
    assert!(!empty.card_present && empty.atr.is_empty(), "{empty:?}");

    // Insert: CARD_INSERTED with the card's ATR; the listing agrees.
    let mut card = VirtualCard::new(&pcscd, &env.path().join("card.json"), GUID).expect("card");
    card.insert().expect("insert");
    let inserted = next(&mut watch, K::CardInserted).await;
    assert_eq!(inserted.atr, ATR);
    assert!(inserted.at_ms > 0);
    let present = reader(&mut api).await.expect("reader");
    assert!(present.card_present && present.atr == ATR, "{present:?}");

    // Pull out, put back.
    card.pull_out();
    let removed = next(&mut watch, K::CardRemoved).await;
    assert!(removed.atr.is_empty());
    assert!(!reader(&mut api).await.expect("reader").card_present);
    card.insert().expect("put back");
    assert_eq!(next(&mut watch, K::CardInserted).await.atr, ATR);

    // A second watcher starts with the card already in the reader.
    let mut late = api.cards.watch_readers(pb::WatchReadersRequest {}).await.expect("watch").into_inner();
    next(&mut late, K::ReaderAdded).await;
    assert_eq!(next(&mut late, K::CardInserted).await.atr, ATR);

    // pcscd restarts under the running daemon: the card and the reader go, the reader comes
    // back, and a card put in is seen again.
    pcscd.restart().expect("restart pcscd");
    next(&mut watch, K::CardRemoved).await;
    next(&mut watch, K::ReaderRemoved).await;
    next(&mut watch, K::ReaderAdded).await;
    card.pull_out(); // its connection to the old pcscd is gone
    card.insert().expect("insert after the restart");
    assert_eq!(next(&mut watch, K::CardInserted).await.atr, ATR);
    assert!(reader(&mut api).await.expect("reader").card_present);

    // Readers are for card officers.
    api.users
        .create_user(pb::CreateUserRequest {
            username: "enduser".into(),
            password: "end-user-password-1".into(),
            roles: vec![pb::Role::User as i32],
        })
        .await
        .expect("user");
    let mut user = api_as(&daemon.endpoint, "enduser", "end-user-password-1").await;
    expect_code(user.cards.list_readers(pb::ListReadersRequest {}).await, Code::PermissionDenied);
    expect_code(user.cards.watch_readers(pb::WatchReadersRequest {}).await, Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pcscd_the_daemon_serves_and_says_the_service_is_unavailable() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon starts without any pcscd");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let listed = api.cards.list_readers(pb::ListReadersRequest {}).await.expect("list").into_inner();
    assert!(!listed.service_available);
    assert!(listed.readers.is_empty());

    // Disabled in the configuration: a clear FAILED_PRECONDITION.
    drop(api);
    drop(daemon);
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start_with(&env, "[readers]\nenabled = false\n").await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let status =
        expect_code(api.cards.list_readers(pb::ListReadersRequest {}).await, Code::FailedPrecondition);
    assert!(status.message().contains("[readers] enabled = false"), "{}", status.message());
}
