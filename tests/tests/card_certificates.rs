//! End-to-end: cards get certificates. Through the real cardhsmd on real SoftHSM card and
//! daemon tokens and a real SQLite file, cross-checked with `openssl` and `pkcs11-tool`:
//! IssueCard certifies each key its policy names a profile for and writes the certificate onto
//! the card next to the key (same CKA_ID); Disable holds and Enable releases the certificates,
//! Revoke revokes them with the RFC 5280 reason mapped from the card reason, PreUpdate removes
//! from the card the certificates the new policy drops, and a re-issue supersedes the old ones
//! — each visible in a CRL that `openssl crl` verifies. A policy whose authority is missing is
//! refused before anything changes.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv, list_token_objects};
use pb::CardState as S;
use std::collections::BTreeMap;
use std::path::Path;
use support::*;
use tonic::Code;

const OWNER: &str = "alice@corp.example";

/// `cards.authority` plus a configured policy that keeps only the `auth` certificate of `piv`.
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
        label: "Alice's badge".into(),
        pac_number: "000042".into(),
        policy: policy.into(),
        reader: String::new(),
    }
}

fn action(id: &str) -> pb::CardActionRequest {
    pb::CardActionRequest { id: id.into(), comment: String::new() }
}

/// A root and the "Card CA" intermediate under it; writes `root.pem`, `inter.pem` and
/// `chain.pem` (intermediate then root).
async fn card_authorities(api: &mut Api, dir: &Path) -> (pb::Authority, pb::Authority) {
    let root = api
        .issuance
        .create_authority(create_req(
            "Corp Root",
            "EC:P-384",
            "CN=Corp Root,O=Corp",
            pb::AuthorityKind::Root,
            "",
        ))
        .await
        .expect("root")
        .into_inner();
    let inter = api
        .issuance
        .create_authority(create_req(
            "Card CA",
            "EC:P-256",
            "CN=Card CA,O=Corp",
            pb::AuthorityKind::Intermediate,
            &root.id,
        ))
        .await
        .expect("intermediate")
        .into_inner();
    write(dir, "root.pem", &root.certificate_pem);
    write(dir, "inter.pem", &inter.certificate_pem);
    // What `openssl crl -CAfile` needs to check the intermediate's CRL: the whole chain.
    write(dir, "chain.pem", &format!("{}{}", inter.certificate_pem, root.certificate_pem));
    (root, inter)
}

/// The card's certificates by key label.
fn certs(card: &pb::CardInfo) -> BTreeMap<String, pb::CardCertificate> {
    card.keys.iter().filter_map(|k| Some((k.label.clone(), k.certificate.clone()?))).collect()
}

/// The certificate objects on a card token: CKA_ID hex → DER read back with pkcs11-tool.
fn certificate_objects(env: &TestEnv, token: &str) -> BTreeMap<String, Vec<u8>> {
    let objects = list_token_objects(env, token).expect("pkcs11-tool");
    let mut out = BTreeMap::new();
    for o in objects.iter().filter(|o| o.class == "certificate") {
        let file = env.path().join(format!("obj-{}.der", o.id_hex));
        env.pkcs11_tool(
            token,
            &["--read-object", "--type", "cert", "--id", &o.id_hex, "--output-file", &file.to_string_lossy()],
        )
        .expect("read certificate object");
        out.insert(o.id_hex.clone(), std::fs::read(&file).expect("object file"));
    }
    out
}

fn der_of(dir: &Path, pem: &str, name: &str) -> Vec<u8> {
    write(dir, name, pem);
    let der = format!("{name}.der");
    openssl(dir, &["x509", "-in", name, "-outform", "DER", "-out", &der]);
    std::fs::read(dir.join(der)).expect("der")
}

/// The CRL of `authority`, verified by openssl against `issuer_file`: serial → reason.
async fn crl(api: &mut Api, dir: &Path, authority: &str, issuer_file: &str) -> BTreeMap<String, String> {
    fetch_crl(api, dir, authority, "card.crl").await;
    let text = openssl(dir, &["crl", "-in", "card.crl", "-CAfile", issuer_file, "-noout", "-text"]);
    assert!(text.contains("verify OK"), "{text}");
    crl_entries(&text)
}

#[tokio::test(flavor = "multi_thread")]
async fn issued_cards_carry_certificates_that_follow_the_card_lifecycle() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start_with(&env, CARD_CONFIG).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path();
    let (_root, inter) = card_authorities(&mut api, dir).await;
    let serial = env.card_serials[0].clone();

    // IssueCard under `piv`: two keys, each with a certificate from the Card CA.
    let card = api.cards.register_card(register(&serial, "piv")).await.expect("register").into_inner();
    let card = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("issue")
        .into_inner();
    assert_eq!(card.state, S::Active as i32);
    let issued = certs(&card);
    assert_eq!(issued.keys().map(String::as_str).collect::<Vec<_>>(), ["auth", "sign"]);
    for (label, c) in &issued {
        assert_eq!(c.status, "VALID", "{label}");
        let pem = format!("{label}.pem");
        write(dir, &pem, &c.certificate_pem);
        // Valid under the chain, for the card owner, with the profile's purposes.
        let out = openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "inter.pem", &pem]);
        assert!(out.contains(": OK"), "{out}");
        let text = openssl(dir, &["x509", "-in", &pem, "-noout", "-text"]);
        assert!(text.contains(&format!("CN = {OWNER}")), "{text}");
        if label == "auth" {
            assert!(text.contains("TLS Web Client Authentication"), "{text}");
            assert!(text.contains("Microsoft Smartcard Login"), "{text}");
        } else {
            assert!(text.contains("E-mail Protection"), "{text}");
            assert!(text.contains("Non Repudiation"), "{text}");
        }
        // The certificate certifies the key generated on the card.
        let key = card.keys.iter().find(|k| &k.label == label).expect("key");
        let cert_spki = openssl(dir, &["x509", "-in", &pem, "-noout", "-pubkey"]);
        write(dir, "key.der", "");
        std::fs::write(dir.join("key.der"), &key.public_key_der).expect("key der");
        let key_spki = openssl(dir, &["pkey", "-pubin", "-inform", "DER", "-in", "key.der"]);
        assert_eq!(cert_spki, key_spki, "{label}: the certificate is for the card's key");
        // FindCertificates knows it.
        let found = api
            .issuance
            .find_certificates(pb::FindCertificatesRequest {
                serial_number: c.serial_number.clone(),
                ..Default::default()
            })
            .await
            .expect("find")
            .into_inner();
        assert_eq!(found.certificates.len(), 1, "{label}");
        assert_eq!(found.certificates[0].id, c.certificate_id);
    }

    // On the token: one certificate object per key, with the key's CKA_ID and the same DER.
    let objects = certificate_objects(&env, "card-01");
    assert_eq!(objects.len(), 2, "{objects:?}");
    for key in &card.keys {
        let der = der_of(
            dir,
            &key.certificate.as_ref().expect("cert").certificate_pem,
            &format!("{}.crt", key.label),
        );
        assert_eq!(
            objects.get(&key.key_id),
            Some(&der),
            "certificate object of {} shares its CKA_ID",
            key.label
        );
    }

    // The token's certificate store lists them as card certificates, protected: they leave
    // the card only through the card's lifecycle.
    let listed = api
        .certstore
        .list_certificates(pb::ListCertificatesRequest { token: serial.clone(), id: String::new() })
        .await
        .expect("list the card token")
        .into_inner();
    assert_eq!(listed.certificates.len(), 2);
    for c in &listed.certificates {
        assert!(c.protected && c.source == "CARD" && c.has_private_key, "{c:?}");
        assert_eq!(c.subject.as_ref().map(|s| s.cn.as_str()), Some(OWNER));
    }
    let before = store_snapshot(&env.store_path());
    expect_code(
        api.certstore
            .delete_certificate(pb::DeleteCertificateRequest {
                token: serial.clone(),
                id: listed.certificates[0].fingerprint.clone(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert_eq!(certificate_objects(&env, "card-01").len(), 2);

    // Disable: the certificates go on hold, and the CRL says so.
    let disabled = api.cards.disable_card(action(&card.id)).await.expect("disable").into_inner();
    assert_eq!(disabled.state, S::Disabled as i32);
    assert!(certs(&disabled).values().all(|c| c.status == "ON_HOLD"), "{disabled:?}");
    let listed = crl(&mut api, dir, &inter.id, "chain.pem").await;
    for c in issued.values() {
        assert_eq!(listed.get(&norm_serial(&c.serial_number)).map(String::as_str), Some("Certificate Hold"));
    }
    // Enable: the hold is lifted; the CRL no longer lists them.
    let enabled = api.cards.enable_card(action(&card.id)).await.expect("enable").into_inner();
    assert!(certs(&enabled).values().all(|c| c.status == "VALID"));
    assert!(crl(&mut api, dir, &inter.id, "chain.pem").await.is_empty());

    // PreUpdate to `piv-auth`: the signature certificate is dropped — revoked as superseded
    // and deleted from the card; the authentication certificate stays until re-issue.
    let pre = api
        .cards
        .pre_update_card(pb::PreUpdateCardRequest { id: card.id.clone(), policy: "piv-auth".into() })
        .await
        .expect("preupdate")
        .into_inner();
    assert_eq!(pre.state, S::PendingUpdate as i32);
    let after = certs(&pre);
    assert_eq!(after.keys().map(String::as_str).collect::<Vec<_>>(), ["auth"], "{pre:?}");
    let listed = crl(&mut api, dir, &inter.id, "chain.pem").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed.get(&norm_serial(&issued["sign"].serial_number)).map(String::as_str),
        Some("Superseded")
    );
    let objects = certificate_objects(&env, "card-01");
    let auth_key = card.keys.iter().find(|k| k.label == "auth").expect("auth").key_id.clone();
    assert_eq!(objects.keys().collect::<Vec<_>>(), [&auth_key]);

    // Re-issue: a new auth key and certificate; the old auth certificate is superseded, the
    // old keys and certificate objects leave the card.
    let reissued = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("reissue")
        .into_inner();
    assert_eq!((reissued.state, reissued.policy.as_str()), (S::Active as i32, "piv-auth"));
    let new_certs = certs(&reissued);
    assert_eq!(new_certs.len(), 1);
    assert_ne!(new_certs["auth"].serial_number, issued["auth"].serial_number);
    assert_ne!(reissued.keys[0].key_id, auth_key);
    let listed = crl(&mut api, dir, &inter.id, "chain.pem").await;
    assert_eq!(
        listed.get(&norm_serial(&issued["auth"].serial_number)).map(String::as_str),
        Some("Superseded")
    );
    assert_eq!(listed.len(), 2);
    let objects = certificate_objects(&env, "card-01");
    assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), [reissued.keys[0].key_id.clone()]);
    let token_objects = list_token_objects(&env, "card-01").expect("pkcs11-tool");
    assert_eq!(token_objects.iter().filter(|o| o.class == "private").count(), 1, "{token_objects:?}");

    // Revoke as lost (2): RFC 5280 keyCompromise.
    let revoked = api
        .cards
        .revoke_card(pb::RevokeCardRequest {
            id: card.id.clone(),
            reason: 2,
            comment: "left on a train".into(),
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.state, S::Revoked as i32);
    assert_eq!(certs(&revoked)["auth"].status, "REVOKED");
    let listed = crl(&mut api, dir, &inter.id, "chain.pem").await;
    assert_eq!(
        listed.get(&norm_serial(&new_certs["auth"].serial_number)).map(String::as_str),
        Some("Key Compromise")
    );
    assert_eq!(listed.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_disabled_card_revokes_its_held_certificates_with_the_mapped_reason() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start_with(&env, CARD_CONFIG).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path();
    let (_root, inter) = card_authorities(&mut api, dir).await;
    let serial = env.card_serials[0].clone();
    let card = api.cards.register_card(register(&serial, "piv")).await.expect("register").into_inner();
    let card = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("issue")
        .into_inner();
    api.cards.disable_card(action(&card.id)).await.expect("disable");
    // user_removed (6) → affiliationChanged; the hold becomes a revocation.
    let revoked = api
        .cards
        .revoke_card(pb::RevokeCardRequest { id: card.id.clone(), reason: 6, comment: String::new() })
        .await
        .expect("revoke")
        .into_inner();
    assert!(certs(&revoked).values().all(|c| c.status == "REVOKED"));
    let listed = crl(&mut api, dir, &inter.id, "chain.pem").await;
    assert_eq!(listed.len(), 2);
    assert!(listed.values().all(|r| r == "Affiliation Changed"), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_with_certificates_is_refused_without_its_authority_and_nothing_changes() {
    let env = TestEnv::new(1).expect("env");
    // No cards.authority at all.
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let serial = env.card_serials[0].clone();
    let card = api.cards.register_card(register(&serial, "piv")).await.expect("register").into_inner();
    let before = store_snapshot(&env.store_path());
    let err = expect_code(
        api.cards.issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() }).await,
        Code::FailedPrecondition,
    );
    assert!(err.message().contains("cards.authority"), "{}", err.message());
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert!(list_token_objects(&env, "card-01").expect("pkcs11-tool").is_empty());
    drop(api);
    drop(daemon);

    // cards.authority names an authority that was never created.
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start_with(&env, CARD_CONFIG).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let serial = env.card_serials[0].clone();
    let card = api.cards.register_card(register(&serial, "piv")).await.expect("register").into_inner();
    let before = store_snapshot(&env.store_path());
    let err = expect_code(
        api.cards.issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() }).await,
        Code::FailedPrecondition,
    );
    assert!(err.message().contains("Card CA"), "{}", err.message());
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert!(list_token_objects(&env, "card-01").expect("pkcs11-tool").is_empty());
    // The card is untouched and still issuable under a key-only policy elsewhere: a second
    // card with `standard` needs no authority.
    let got = api.cards.get_card(pb::GetCardRequest { id: card.id.clone() }).await.expect("get").into_inner();
    assert_eq!(got.state, S::Assigned as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_policy_naming_an_unknown_profile_stops_the_daemon_at_start() {
    let env = TestEnv::new(0).expect("env");
    let broken = r#"
[cards]
[[cards.policies]]
name = "broken"
keys = [{ label = "auth", algorithm = "EC:P-256", certificate_profile = "no-such-profile" }]
"#;
    let (status, log) =
        Daemon::start_expecting_failure(&env, broken).await.expect("daemon must refuse to start");
    assert!(!status.success());
    assert!(log.contains("no-such-profile"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuance_interrupted_after_its_certificates_were_made_is_resumed_and_supersedes_them() {
    let env = TestEnv::new(1).expect("env");
    let mut daemon = Daemon::start_with(&env, CARD_CONFIG).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path();
    let (_root, inter) = card_authorities(&mut api, dir).await;
    let serial = env.card_serials[0].clone();
    let card = api.cards.register_card(register(&serial, "piv")).await.expect("register").into_inner();
    let first = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("issue")
        .into_inner();
    let interrupted = certs(&first);
    daemon.stop().await;
    // Rewind the store to the moment a daemon killed between "certificates recorded and
    // written onto the card" and "card ACTIVE" leaves: the card PENDING_ISSUE with no keys
    // recorded, its certificates linked as PENDING; the token keeps the keys and objects.
    {
        let conn = rusqlite::Connection::open(env.store_path()).expect("db");
        conn.execute("UPDATE cards SET state = 'PENDING_ISSUE' WHERE id = ?1", [&card.id]).expect("card");
        conn.execute("DELETE FROM card_keys WHERE card_id = ?1", [&card.id]).expect("keys");
        let n = conn
            .execute("UPDATE card_certificates SET state = 'PENDING' WHERE card_id = ?1", [&card.id])
            .expect("links");
        assert_eq!(n, 2);
    }
    daemon.restart().await;
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let resumed = api
        .cards
        .issue_card(pb::IssueCardRequest { id: card.id.clone(), ..Default::default() })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.state, S::Active as i32);
    let now = certs(&resumed);
    assert_eq!(now.len(), 2);
    for (label, c) in &now {
        assert_eq!(c.status, "VALID");
        assert_ne!(c.serial_number, interrupted[label].serial_number, "{label}: a new certificate");
    }
    // The interrupted run's certificates are revoked: no certificate is left valid that the
    // card does not hold.
    let listed = crl(&mut api, dir, &inter.id, "chain.pem").await;
    let expected: BTreeMap<String, String> =
        interrupted.values().map(|c| (norm_serial(&c.serial_number), "Superseded".to_owned())).collect();
    assert_eq!(listed, expected);
    // Exactly one key set and one certificate per key on the card.
    let objects = list_token_objects(&env, "card-01").expect("pkcs11-tool");
    assert_eq!(objects.iter().filter(|o| o.class == "private").count(), 2, "{objects:?}");
    let on_card = certificate_objects(&env, "card-01");
    let mut ids: Vec<String> = resumed.keys.iter().map(|k| k.key_id.clone()).collect();
    ids.sort();
    assert_eq!(on_card.keys().cloned().collect::<Vec<_>>(), ids, "certificate objects by CKA_ID");
}
