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
/// (Waits of 45 s once hid a harness bug: pcscd had dropped the vpcd reader because a port it
/// needed was taken, and nothing would ever come; see `cardhsm_tests::pcsc`.)
const WAIT: Duration = Duration::from_secs(20);

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
            ..Default::default()
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

#[tokio::test(flavor = "multi_thread")]
async fn a_card_in_a_reader_is_registered_by_its_reader_and_followed() {
    let env = TestEnv::new(0).expect("env");
    let pcscd = Pcscd::start(env.path()).expect("pcscd");
    let mut daemon = Daemon::start_with_pcscd(&env, "", &pcscd).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let mut card = VirtualCard::new(&pcscd, &env.path().join("card.json"), GUID).expect("card");
    let mut watch = api.cards.watch_readers(pb::WatchReadersRequest {}).await.expect("watch").into_inner();
    card.insert().expect("insert");
    // The reader reads the PIV card's CHUID: the token serial OpenSC's PKCS#11 module gives it.
    let inserted = next(&mut watch, K::CardInserted).await;
    assert_eq!(inserted.card_serial, card.token_serial());
    assert_eq!(reader(&mut api).await.expect("reader").card_serial, card.token_serial());
    // …which is what OpenSC says, read through the real module.
    let (_, slots) = pcscd.pkcs11_tool(&["-L"]);
    assert!(slots.contains(&format!("serial num         : {}", card.token_serial())), "{slots}");

    // Bad ways to name it change nothing.
    let before = store_snapshot(&env.store_path());
    let by_reader = |reader: &str, serial: &str| pb::RegisterCardRequest {
        token_serial: serial.into(),
        reader: reader.into(),
        owner: "alice@corp.example".into(),
        ..Default::default()
    };
    expect_invalid_field(api.cards.register_card(by_reader(READER, "0011")).await, "token_serial");
    expect_code(api.cards.register_card(by_reader("No Such Reader 00 00", "")).await, Code::NotFound);
    expect_code(api.cards.register_card(by_reader("Virtual PCD 00 01", "")).await, Code::FailedPrecondition);
    assert_eq!(store_snapshot(&env.store_path()), before);

    // RegisterCard names "the card in reader X": bound to its token, ATR recorded, present.
    let registered = api.cards.register_card(by_reader(READER, "")).await.expect("register").into_inner();
    assert_eq!(registered.serial_number, card.token_serial());
    assert_eq!(registered.atr, ATR);
    assert!(registered.token_present);
    assert_eq!(registered.label, format!("PIV card in {READER}"));

    // token_present follows the card (listing reuses presence for up to a second: poll).
    card.pull_out();
    next(&mut watch, K::CardRemoved).await;
    let gone = tokio::time::timeout(WAIT, async {
        loop {
            let c = api.cards.get_card(pb::GetCardRequest { id: registered.id.clone() }).await.expect("get");
            if !c.into_inner().token_present {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "token_present stayed true after the card was pulled out");

    // The ATR is recorded whenever the card is seen: forget it, restart, put the card back.
    // Stopping ends the open watch cleanly and the daemon exits by itself: an open watch does
    // not hold up the shutdown until the SIGKILL.
    daemon.stop().await;
    let exit = daemon.exit_status().expect("stopped");
    assert!(exit.success(), "cardhsmd did not exit by itself on SIGTERM with a watch open: {exit:?}");
    assert!(matches!(watch.message().await, Ok(None)), "the watch did not end cleanly");
    {
        let conn = rusqlite::Connection::open(env.store_path()).expect("db");
        conn.execute("UPDATE cards SET atr = '' WHERE id = ?1", [&registered.id]).expect("clear atr");
    }
    daemon.start_again().await.expect("restart");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let mut watch = api.cards.watch_readers(pb::WatchReadersRequest {}).await.expect("watch").into_inner();
    next(&mut watch, K::ReaderAdded).await;
    card.insert().expect("put back");
    next(&mut watch, K::CardInserted).await;
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            let c = api.cards.get_card(pb::GetCardRequest { id: registered.id.clone() }).await.expect("get");
            let c = c.into_inner();
            if c.atr == ATR && c.token_present {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(seen.is_ok(), "the ATR was not recorded when the card was seen again");

    // The CLI: `readers list` and `readers watch`.
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);
    let listed = cli.json(&["readers", "list"]);
    let first = listed["readers"].as_array().and_then(|r| r.iter().find(|r| r["name"] == READER)).cloned();
    let first = first.expect("the reader in `readers list`");
    assert_eq!(
        (first["card_present"].as_bool(), first["card_serial"].as_str()),
        (Some(true), Some(card.token_serial().as_str()))
    );
    let table = cli.run(&["readers", "list"]).ok().stdout;
    assert!(table.starts_with("READER") && table.contains(ATR), "{table}");
    let mut watcher = cli
        .command(&["readers", "watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cardhsm readers watch");
    let stdout = watcher.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut line = async || tokio::time::timeout(WAIT, rx.recv()).await.expect("a watch line").expect("open");
    // The picture first: the two vpcd slots, the card in the first; then the card pulled out.
    let added = line().await;
    assert!(added.starts_with("reader-added") && added.contains(READER), "{added}");
    let inserted = line().await;
    assert!(inserted.starts_with("card-inserted") && inserted.contains(ATR), "{inserted}");
    assert!(inserted.contains(&format!("token {}", card.token_serial())), "{inserted}");
    assert!(line().await.starts_with("reader-added"));
    card.pull_out();
    let removed = line().await;
    assert!(removed.starts_with("card-removed") && removed.contains(READER), "{removed}");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_piv_card_in_a_reader_is_issued_with_keys_and_certificates_opensc_can_use() {
    let env = TestEnv::new(0).expect("env");
    let dir = env.path();
    let pcscd = Pcscd::start(dir).expect("pcscd");
    let daemon =
        Daemon::start_with_pcscd(&env, "[cards]\nauthority = \"Badge CA\"\n", &pcscd).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let ca = api
        .issuance
        .create_authority(create_req(
            "Badge CA",
            "EC:P-256",
            "CN=Badge CA,O=Corp",
            pb::AuthorityKind::Root,
            "",
        ))
        .await
        .expect("authority")
        .into_inner();
    write(dir, "ca.pem", &ca.certificate_pem);
    let mut card = VirtualCard::new(&pcscd, &dir.join("card.json"), GUID).expect("card");
    let mut watch = api.cards.watch_readers(pb::WatchReadersRequest {}).await.expect("watch").into_inner();
    card.insert().expect("insert");
    next(&mut watch, K::CardInserted).await;
    let registered = api
        .cards
        .register_card(pb::RegisterCardRequest {
            reader: READER.into(),
            owner: "alice@corp.example".into(),
            policy: "piv".into(),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();

    // Pulled out in the middle of the issue (when the second key is being generated): the
    // call fails, the record says the issue is pending, nothing was certified.
    card.pull_out();
    next(&mut watch, K::CardRemoved).await;
    card.insert_removed_on_generate("9C").expect("re-insert, to be pulled out mid-issue");
    next(&mut watch, K::CardInserted).await;
    let by_reader = pb::IssueCardRequest { reader: READER.into(), ..Default::default() };
    let refused = api.cards.issue_card(by_reader.clone()).await.expect_err("the card left mid-issue");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    next(&mut watch, K::CardRemoved).await;
    let pending = api.cards.get_card(pb::GetCardRequest { id: registered.id.clone() }).await.expect("get");
    assert_eq!(pending.into_inner().state, pb::CardState::PendingIssue as i32);
    let found = api
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            common_name: "alice@corp.example".into(),
            ..Default::default()
        })
        .await
        .expect("find")
        .into_inner();
    assert!(found.certificates.is_empty(), "a certificate was recorded for an interrupted issue");

    // Put back, retried — naming "the card in reader X": keys generated on the card (slots 9A
    // and 9C), certificates written.
    card.insert().expect("put back");
    next(&mut watch, K::CardInserted).await;
    let issued = api.cards.issue_card(by_reader).await.expect("issue").into_inner();
    assert_eq!(issued.id, registered.id);
    assert_eq!(issued.state, pb::CardState::Active as i32);
    let ids: Vec<&str> = issued.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, ["01", "02"], "PIV slots 9A and 9C, as OpenSC numbers them");

    // OpenSC, through its PKCS#11 module, sees both certificates, issued by our CA to Alice.
    let (ok, objects) = pcscd.pkcs11_tool(&["-O"]);
    assert!(ok, "{objects}");
    assert_eq!(objects.matches("Certificate Object").count(), 2, "{objects}");
    assert!(objects.contains("subject:    DN: CN=alice@corp.example"), "{objects}");
    for key in &issued.keys {
        let cert = key.certificate.as_ref().expect("certificate");
        let file = format!("{}.der", key.label);
        let path = dir.join(&file);
        let (ok, text) = pcscd.pkcs11_tool(&[
            "--read-object",
            "--type",
            "cert",
            "--id",
            &key.key_id,
            "-o",
            &path.to_string_lossy(),
        ]);
        assert!(ok, "{text}");
        let pem = openssl(dir, &["x509", "-in", &file, "-inform", "DER"]);
        assert_eq!(pem.trim(), cert.certificate_pem.trim(), "the certificate on the card is the one issued");
        write(dir, &format!("{}.pem", key.label), &cert.certificate_pem);
        let out = openssl(dir, &["verify", "-CAfile", "ca.pem", &format!("{}.pem", key.label)]);
        assert!(out.contains(": OK"), "{out}");
    }
    // The card key signs (PIN 123456) and the issued certificate verifies the signature.
    std::fs::write(dir.join("digest.bin"), [0x17u8; 32]).expect("digest");
    let (ok, text) = pcscd.pkcs11_tool(&[
        "--login",
        "--pin",
        "123456",
        "--sign",
        "--id",
        "01",
        "-m",
        "ECDSA",
        "--signature-format",
        "openssl",
        "--input-file",
        &dir.join("digest.bin").to_string_lossy(),
        "--output-file",
        &dir.join("sig.der").to_string_lossy(),
    ]);
    assert!(ok, "{text}");
    write(dir, "auth.pem", &issued.keys[0].certificate.as_ref().expect("cert").certificate_pem);
    openssl(dir, &["x509", "-in", "auth.pem", "-pubkey", "-noout", "-out", "auth-pub.pem"]);
    let verified = openssl(
        dir,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "auth-pub.pem",
            "-in",
            "digest.bin",
            "-sigfile",
            "sig.der",
        ],
    );
    assert!(verified.contains("Signature Verified Successfully"), "{verified}");

    // The lifecycle works on the reader card as on any other: disable holds, revoke revokes.
    let disabled =
        api.cards.disable_card(pb::CardActionRequest { id: registered.id.clone(), comment: String::new() });
    let disabled = disabled.await.expect("disable").into_inner();
    assert!(disabled.keys.iter().all(|k| k.certificate.as_ref().is_some_and(|c| c.status == "ON_HOLD")));
    let enabled =
        api.cards.enable_card(pb::CardActionRequest { id: registered.id.clone(), comment: String::new() });
    let enabled = enabled.await.expect("enable").into_inner();
    assert!(enabled.keys.iter().all(|k| k.certificate.as_ref().is_some_and(|c| c.status == "VALID")));
    let revoked = api
        .cards
        .revoke_card(pb::RevokeCardRequest { id: registered.id.clone(), reason: 7, comment: String::new() })
        .await
        .expect("revoke")
        .into_inner();
    assert!(revoked.keys.iter().all(|k| k.certificate.as_ref().is_some_and(|c| c.status == "REVOKED")));
}

/// The virtual card's PIN retry counter, from its state file.
fn pin_tries_left(state: &std::path::Path) -> u64 {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state).expect("card state")).expect("json");
    json["pin_tries_left"].as_u64().expect("pin_tries_left")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_never_spends_a_cards_last_pin_try() {
    let env = TestEnv::new(0).expect("env");
    let dir = env.path();
    let pcscd = Pcscd::start(dir).expect("pcscd");
    let state = dir.join("card.json");
    let mut card = VirtualCard::new(&pcscd, &state, GUID).expect("card");
    card.insert().expect("insert");
    // Someone typed the PIN wrong twice: one try is left, and OpenSC says "final try".
    let deadline = std::time::Instant::now() + WAIT;
    while !pcscd.pkcs11_tool(&["-L"]).1.contains(&card.token_serial()) {
        assert!(std::time::Instant::now() < deadline, "OpenSC does not see the card");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..2 {
        let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "000000", "-O"]);
        assert!(!ok && text.contains("CKR_PIN_INCORRECT"), "{text}");
    }
    assert_eq!(pin_tries_left(&state), 1);
    assert!(pcscd.pkcs11_tool(&["-L"]).1.contains("final user PIN try"));

    // The daemon, with OpenSC as its PKCS#11 module and the (right) card PIN configured, needs
    // to log in to the card — and refuses to, rather than risk the last try.
    let pin_file = dir.join("piv-pin");
    std::fs::write(&pin_file, "123456").expect("pin file");
    let config = format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nrest_listen = \"127.0.0.1:0\"\nready_file = {ready:?}\n[store]\npath = {store:?}\n\
         [pkcs11]\nmodule = {module:?}\ncard_pin = {{ file = {pin:?} }}\n",
        ready = env.ready_path(),
        store = env.store_path(),
        module = cardhsm_tests::pcsc::OPENSC_PKCS11,
        pin = pin_file,
    );
    let daemon = Daemon::start_with_pcscd_config(&env, &config, &pcscd).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let refused = api
        .certstore
        .list_certificates(pb::ListCertificatesRequest { token: card.token_serial(), id: String::new() })
        .await
        .expect_err("a login on the final try");
    assert!(refused.message().contains("final try"), "{refused:?}");
    assert_eq!(pin_tries_left(&state), 1, "the daemon spent a PIN try");

    // Once the holder has logged in correctly (the counter is back), the daemon uses the card.
    let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "123456", "-O"]);
    assert!(ok, "{text}");
    assert_eq!(pin_tries_left(&state), 3);
    let listed = tokio::time::timeout(WAIT, async {
        loop {
            let r = api
                .certstore
                .list_certificates(pb::ListCertificatesRequest {
                    token: card.token_serial(),
                    id: String::new(),
                })
                .await;
            if let Ok(r) = r {
                return r.into_inner();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("the daemon uses the card again once its PIN has tries left");
    assert!(listed.certificates.is_empty());
    assert_eq!(pin_tries_left(&state), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_holder_changes_and_unblocks_the_pin_of_a_card_in_a_reader() {
    let env = TestEnv::new(0).expect("env");
    let dir = env.path();
    let pcscd = Pcscd::start(dir).expect("pcscd");
    let daemon = Daemon::start_with_pcscd(&env, "", &pcscd).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let state = dir.join("card.json");
    let mut card = VirtualCard::new(&pcscd, &state, GUID).expect("card");
    let mut watch = api.cards.watch_readers(pb::WatchReadersRequest {}).await.expect("watch").into_inner();
    card.insert().expect("insert");
    next(&mut watch, K::CardInserted).await;
    let registered = api
        .cards
        .register_card(pb::RegisterCardRequest {
            reader: READER.into(),
            owner: "holder1".into(),
            ..Default::default()
        })
        .await;
    // The owner must be a user principal name; register with one, and a user of that name.
    expect_invalid_field(registered, "owner");
    let registered = api
        .cards
        .register_card(pb::RegisterCardRequest {
            reader: READER.into(),
            owner: "holder@corp.example".into(),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    api.users
        .create_user(pb::CreateUserRequest {
            username: "holder@corp.example".into(),
            password: "holder-password-1".into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("user");
    let mut holder = api_as(&daemon.endpoint, "holder@corp.example", "holder-password-1").await;
    let change = |old: &str, new: &str| pb::ChangePinRequest {
        id: registered.id.clone(),
        old_pin: old.into(),
        new_pin: new.into(),
    };

    // Bad new PINs change nothing on the card.
    expect_invalid_field(holder.cards.change_pin(change("123456", "12ab56")).await, "new_pin");
    expect_invalid_field(holder.cards.change_pin(change("123456", "12345")).await, "new_pin");
    assert_eq!(pin_tries_left(&state), 3);

    // The holder changes the PIN; a wrong old PIN says how many tries are left.
    let wrong =
        expect_code(holder.cards.change_pin(change("000000", "24681357")).await, Code::InvalidArgument);
    assert!(wrong.message().contains("2 tries left"), "{}", wrong.message());
    holder.cards.change_pin(change("123456", "24681357")).await.expect("change");
    let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "24681357", "-O"]);
    assert!(ok, "the new PIN opens the card: {text}");

    // Three wrong PINs block it; then only the PUK helps.
    for left in ["2 tries left", "1 try left"] {
        let s =
            expect_code(holder.cards.change_pin(change("999999", "11112222")).await, Code::InvalidArgument);
        assert!(s.message().contains(left), "{}", s.message());
    }
    let blocked =
        expect_code(holder.cards.change_pin(change("999999", "11112222")).await, Code::FailedPrecondition);
    assert!(blocked.message().contains("blocked"), "{}", blocked.message());
    let blocked =
        expect_code(holder.cards.change_pin(change("24681357", "11112222")).await, Code::FailedPrecondition);
    assert!(blocked.message().contains("unblock it with the PUK"), "{}", blocked.message());
    assert_eq!(pin_tries_left(&state), 0);

    let unblock = |puk: &str, new: &str| pb::UnblockPinRequest {
        id: registered.id.clone(),
        puk: puk.into(),
        new_pin: new.into(),
    };
    let wrong =
        expect_code(holder.cards.unblock_pin(unblock("87654321", "11223344")).await, Code::InvalidArgument);
    assert!(
        wrong.message().contains("PUK") && wrong.message().contains("2 tries left"),
        "{}",
        wrong.message()
    );
    holder.cards.unblock_pin(unblock("12345678", "11223344")).await.expect("unblock");
    assert_eq!(pin_tries_left(&state), 3);
    let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "11223344", "-O"]);
    assert!(ok, "{text}");

    // Another user cannot touch this card's PIN (it does not exist, for them).
    api.users
        .create_user(pb::CreateUserRequest {
            username: "other@corp.example".into(),
            password: "other-password-12".into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("user");
    let mut other = api_as(&daemon.endpoint, "other@corp.example", "other-password-12").await;
    expect_code(other.cards.change_pin(change("11223344", "55667788")).await, Code::NotFound);
    // A card not in a reader: a clear refusal.
    card.pull_out();
    next(&mut watch, K::CardRemoved).await;
    let out =
        expect_code(holder.cards.change_pin(change("11223344", "55667788")).await, Code::FailedPrecondition);
    assert!(out.message().contains("not in a reader"), "{}", out.message());

    // No PIN or PUK ever reaches the daemon's log.
    let log = daemon.log();
    for secret in ["24681357", "11223344", "12345678", "87654321", "999999"] {
        assert!(!log.contains(secret), "{secret} in the daemon log");
    }
}
