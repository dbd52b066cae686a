//! The token layer (daemon/src/token) against the real SoftHSM module: what the service layer
//! gets from `TokenManager` when a real PKCS#11 token is underneath.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at C_Initialize, and C_Initialize happens once per
//! process — and edition 2024 makes `set_var` unsafe (forbidden here). So each test re-runs
//! itself in a child process (`current_exe() <name> --exact`) with its own token directory in
//! the environment: isolated under `cargo test` (one process, many threads) and nextest alike.

mod softhsm_child;

use cardhsmd::token::{KeyPairRequest, RecoveryPolicy, SignMechanism, TokenError, TokenManager};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::asn1::{ObjectIdentifier, OctetString, Uint};
use der::{Decode, Encode};
use hsm_config::{KeyAlgorithm, Pkcs11Config, SecretSource, TokenConfig, TokenRole};
use sha2::{Digest, Sha256};
use softhsm_child::{ChildSpec, dir_or_run_child};
use spki::SubjectPublicKeyInfoRef;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4711-token-pin";
const SO_PIN: &str = "12345678";
/// Set in the child: the test's private directory (token dir, conf, PIN files).
const CHILD_DIR: &str = "CARDHSM_TOKEN_TEST_DIR";
/// Never set: a PIN source that yields "no PIN".
const UNSET_PIN_VAR: &str = "CARDHSM_TOKEN_TEST_PIN_THAT_IS_NOT_SET";

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The child's view of its SoftHSM set-up.
struct Fx {
    dir: PathBuf,
}

impl Fx {
    fn pin_file(&self) -> PathBuf {
        self.dir.join("user.pin")
    }

    fn wrong_pin_file(&self) -> PathBuf {
        self.dir.join("wrong.pin")
    }

    /// Serial of the token with this label, as softhsm2-util reports it.
    fn serial(&self, label: &str) -> String {
        let out = Command::new("softhsm2-util").arg("--show-slots").output().expect("softhsm2-util runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut serial = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix("Serial number:") {
                serial = Some(s.trim().to_owned());
            } else if let Some(l) = line.strip_prefix("Label:")
                && l.trim() == label
            {
                return serial.take().expect("serial before label");
            }
        }
        panic!("no token labelled {label:?} in:\n{text}");
    }

    fn by_label(&self, label: &str, role: TokenRole) -> TokenConfig {
        TokenConfig {
            serial: None,
            label: Some(label.into()),
            role,
            pin: SecretSource::file(self.pin_file()),
        }
    }

    fn config(&self, tokens: Vec<TokenConfig>, sessions: u32, wait_ms: u32) -> Pkcs11Config {
        Pkcs11Config {
            module: MODULE.into(),
            sessions_per_token: sessions,
            session_wait_ms: wait_ms,
            card_pin: SecretSource::env(UNSET_PIN_VAR),
            tokens,
        }
    }

    /// One token "main" configured by label, role daemon.
    fn open_main(&self, sessions: u32, wait_ms: u32, recovery: RecoveryPolicy) -> (TokenManager, String) {
        let cfg = self.config(vec![self.by_label("main", TokenRole::Daemon)], sessions, wait_ms);
        let tm = TokenManager::open_with(&cfg, recovery).expect("open");
        (tm, self.serial("main"))
    }
}

/// Runs `body` in a child process that has its own SoftHSM token directory with `labels`.
fn softhsm_test(name: &str, labels: &[&str], body: impl FnOnce(&Fx)) {
    let spec = ChildSpec {
        child_dir_var: CHILD_DIR,
        unset_pin_var: UNSET_PIN_VAR,
        pin: PIN,
        so_pin: SO_PIN,
        labels,
    };
    let prepare = |dir: &std::path::Path| {
        std::fs::write(dir.join("wrong.pin"), "0000-not-the-pin").expect("pin file");
    };
    if let Some(dir) = dir_or_run_child(name, &spec, prepare) {
        body(&Fx { dir });
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime")
}

/// Raw cryptoki on the same module: the test's independent view of what is on the token.
fn raw_session(serial: &str) -> Session {
    let p = Pkcs11::new(MODULE).expect("module");
    match p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = p
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| p.get_token_info(*s).is_ok_and(|t| t.serial_number() == serial))
        .expect("token slot");
    let session = p.open_rw_session(slot).expect("session");
    match session.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
}

fn req(label: &str, id: &[u8], algorithm: KeyAlgorithm, persistent: bool) -> KeyPairRequest {
    KeyPairRequest { label: label.into(), id: id.to_vec(), algorithm, persistent }
}

/// `openssl dgst -sha256 -verify` with the SPKI DER; ECDSA signatures are converted from raw
/// r‖s to the DER form openssl expects.
fn openssl_verifies(dir: &Path, spki_der: &[u8], data: &[u8], signature: &[u8], ecdsa: bool) -> bool {
    let sig = if ecdsa {
        let (r, s) = signature.split_at(signature.len() / 2);
        [Uint::new(r).expect("r"), Uint::new(s).expect("s")].to_der().expect("ECDSA-Sig-Value")
    } else {
        signature.to_vec()
    };
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let (k, d, s) = (
        dir.join(format!("{stamp}.pub.der")),
        dir.join(format!("{stamp}.data")),
        dir.join(format!("{stamp}.sig")),
    );
    std::fs::write(&k, spki_der).expect("write key");
    std::fs::write(&d, data).expect("write data");
    std::fs::write(&s, sig).expect("write sig");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(&k)
        .arg("-signature")
        .arg(&s)
        .arg(&d)
        .output()
        .expect("openssl runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

async fn wait_until_available(tm: &TokenManager, serial: &str) {
    // Liveness bound only (a hung recovery must fail the test, not hang it).
    for _ in 0..600 {
        if tm.is_available(serial) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("token {serial} did not recover");
}

#[test]
fn open_and_list_tokens() {
    softhsm_test("open_and_list_tokens", &["daemon-tok", "card-tok", "stray-tok"], |fx| {
        let card_serial = fx.serial("card-tok");
        let cfg = fx.config(
            vec![
                fx.by_label("daemon-tok", TokenRole::Daemon),
                TokenConfig {
                    serial: Some(card_serial.clone()),
                    label: None,
                    role: TokenRole::Card,
                    pin: SecretSource::file(fx.pin_file()),
                },
            ],
            2,
            1000,
        );
        let tm = TokenManager::open(&cfg).expect("open");
        let debug = format!("{tm:?}");
        assert!(!debug.contains(PIN), "Debug leaks the PIN: {debug}");

        let list = runtime().block_on(tm.list_tokens()).expect("list");
        let find =
            |label: &str| list.iter().find(|t| t.label == label).unwrap_or_else(|| panic!("{label} listed"));

        let daemon = find("daemon-tok");
        assert_eq!(daemon.serial, fx.serial("daemon-tok"));
        assert!(daemon.present && daemon.available);
        assert_eq!(daemon.role, Some(TokenRole::Daemon));
        assert_eq!(daemon.manufacturer, "SoftHSM project");
        assert!(daemon.model.starts_with("SoftHSM"), "{}", daemon.model);

        let card = find("card-tok");
        assert_eq!(card.serial, card_serial);
        assert!(card.present && card.available);
        assert_eq!(card.role, Some(TokenRole::Card));

        // Not in the config and `card_pin`'s variable is unset: listed, but not usable.
        let stray = find("stray-tok");
        assert!(stray.present && !stray.available);
        assert_eq!(stray.role, None);

        // SoftHSM always offers one more, uninitialised token.
        assert!(list.iter().any(|t| t.present && t.serial.is_empty() && !t.available));
        assert_eq!(list.iter().filter(|t| !t.serial.is_empty()).count(), 3);

        let rt = runtime();
        assert!(rt.block_on(tm.token_present(&card_serial)));
        assert!(!rt.block_on(tm.token_present("no-such-serial")));
        assert!(tm.is_available(&card_serial));
        assert!(!tm.is_available(&stray.serial));
        assert!(!tm.is_available("no-such-serial"));
    });
}

#[test]
fn unknown_serial_and_missing_pin() {
    softhsm_test("unknown_serial_and_missing_pin", &["main", "stray"], |fx| {
        let (tm, _) = fx.open_main(2, 1000, RecoveryPolicy::default());
        let rt = runtime();
        let nf = |r: TokenError| {
            assert!(matches!(&r, TokenError::NotFound { serial } if serial == "nope"), "{r:?}")
        };
        nf(rt
            .block_on(tm.sign("nope", vec![1], SignMechanism::EcdsaSha256, b"x".to_vec()))
            .expect_err("sign"));
        nf(rt
            .block_on(tm.generate_key_pair("nope", req("k", &[1], KeyAlgorithm::EcP256, false)))
            .expect_err("gen"));
        nf(rt.block_on(tm.delete_key_pair("nope", vec![1])).expect_err("delete"));
        nf(rt.block_on(tm.with_session("nope", |_| Ok(()))).expect_err("with_session"));

        let stray = fx.serial("stray");
        let no_pin =
            |r: TokenError| assert!(matches!(&r, TokenError::NoPin { serial } if *serial == stray), "{r:?}");
        no_pin(
            rt.block_on(tm.generate_key_pair(&stray, req("k", &[1], KeyAlgorithm::EcP256, false)))
                .expect_err("gen"),
        );
        no_pin(
            rt.block_on(tm.sign(&stray, vec![1], SignMechanism::EcdsaSha256, b"x".to_vec()))
                .expect_err("sign"),
        );
    });
}

#[test]
fn generated_keys_follow_the_attribute_policy() {
    softhsm_test("generated_keys_follow_the_attribute_policy", &["main"], |fx| {
        let (tm, serial) = fx.open_main(2, 5000, RecoveryPolicy::default());
        let rt = runtime();
        let raw = raw_session(&serial);
        let cases = [
            (KeyAlgorithm::EcP256, true, 1u8),
            (KeyAlgorithm::EcP384, true, 2),
            (KeyAlgorithm::Rsa2048, true, 3),
            (KeyAlgorithm::EcP256, false, 4),
        ];
        for (alg, persistent, id) in cases {
            let label = format!("key-{id}");
            let g = rt
                .block_on(tm.generate_key_pair(&serial, req(&label, &[0xA0, id], alg, persistent)))
                .expect("gen");
            assert_eq!(
                (g.id.as_slice(), g.label.as_str(), g.algorithm),
                (&[0xA0, id][..], label.as_str(), alg)
            );

            // The SPKI parses and names the right algorithm, and openssl reads it too.
            let spki = SubjectPublicKeyInfoRef::try_from(g.public_key_der.as_slice()).expect("SPKI parses");
            let out = Command::new("openssl")
                .args(["pkey", "-pubin", "-inform", "DER", "-noout", "-text"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().expect("stdin").write_all(&g.public_key_der)?;
                    c.wait_with_output()
                })
                .expect("openssl pkey");
            assert!(out.status.success(), "openssl cannot read the SPKI of {alg}");

            // Read back what is on the token, independently of the daemon.
            let priv_handles = raw
                .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(vec![0xA0, id])])
                .expect("find private");
            // Session objects too: every session of the application sees them.
            assert_eq!(priv_handles.len(), 1, "one private key for {alg}");
            let attrs = raw
                .get_attributes(
                    priv_handles[0],
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::Private,
                        AttributeType::Sign,
                        AttributeType::Token,
                        AttributeType::Label,
                    ],
                )
                .expect("private attributes");
            for a in &attrs {
                match a {
                    Attribute::Sensitive(v) => assert!(*v, "CKA_SENSITIVE"),
                    Attribute::Extractable(v) => assert!(!*v, "CKA_EXTRACTABLE"),
                    Attribute::Private(v) => assert!(*v, "CKA_PRIVATE"),
                    Attribute::Sign(v) => assert!(*v, "CKA_SIGN"),
                    Attribute::Token(v) => assert_eq!(*v, persistent, "CKA_TOKEN"),
                    Attribute::Label(v) => assert_eq!(v, label.as_bytes()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(attrs.len(), 6);

            let pub_handles = raw
                .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(vec![0xA0, id])])
                .expect("find public");
            assert_eq!(pub_handles.len(), 1);
            let key_bits = spki.subject_public_key.as_bytes().expect("octet aligned");
            match alg {
                KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
                    assert_eq!(spki.algorithm.oid, ID_EC_PUBLIC_KEY);
                    let curve = if alg == KeyAlgorithm::EcP256 { SECP256R1 } else { SECP384R1 };
                    assert_eq!(spki.algorithm.parameters_oid().expect("named curve"), curve);
                    let attrs = raw
                        .get_attributes(pub_handles[0], &[AttributeType::EcPoint, AttributeType::Verify])
                        .expect("ec");
                    for a in attrs {
                        match a {
                            Attribute::EcPoint(p) => {
                                let point = OctetString::from_der(&p).expect("DER-wrapped point");
                                assert_eq!(point.as_bytes(), key_bits, "SPKI holds the token's point");
                            }
                            Attribute::Verify(v) => assert!(v, "CKA_VERIFY"),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                _ => {
                    assert_eq!(spki.algorithm.oid, RSA_ENCRYPTION);
                    let attrs = raw.get_attributes(pub_handles[0], &[AttributeType::Modulus]).expect("rsa");
                    let Some(Attribute::Modulus(m)) = attrs.into_iter().next() else { panic!("no modulus") };
                    let (modulus, exponent) = der::AnyRef::try_from(key_bits)
                        .expect("RSAPublicKey")
                        .sequence(|r| Ok::<_, der::Error>((Uint::decode(r)?, Uint::decode(r)?)))
                        .expect("RSAPublicKey fields");
                    assert_eq!(modulus.as_bytes(), m.as_slice());
                    assert_eq!(m.len(), 256);
                    assert_eq!(exponent.as_bytes(), &[1, 0, 1]);
                }
            }
        }
    });
}

#[test]
fn signatures_verify_with_openssl() {
    softhsm_test("signatures_verify_with_openssl", &["main"], |fx| {
        let (tm, serial) = fx.open_main(2, 5000, RecoveryPolicy::default());
        let rt = runtime();
        let data = b"to be signed by cardhsm".to_vec();
        let p256 = rt
            .block_on(tm.generate_key_pair(&serial, req("p256", b"p256", KeyAlgorithm::EcP256, false)))
            .expect("p256");
        let p384 = rt
            .block_on(tm.generate_key_pair(&serial, req("p384", b"p384", KeyAlgorithm::EcP384, false)))
            .expect("p384");
        let rsa = rt
            .block_on(tm.generate_key_pair(&serial, req("rsa", b"rsa", KeyAlgorithm::Rsa2048, false)))
            .expect("rsa");

        let sig = rt
            .block_on(tm.sign(&serial, b"p256".to_vec(), SignMechanism::EcdsaSha256, data.clone()))
            .expect("sign");
        assert_eq!(sig.len(), 64, "raw r||s");
        assert!(openssl_verifies(&fx.dir, &p256.public_key_der, &data, &sig, true));
        assert!(
            !openssl_verifies(&fx.dir, &p256.public_key_der, b"other data", &sig, true),
            "verification is meaningful"
        );

        let digest = Sha256::digest(&data).to_vec();
        let sig = rt
            .block_on(tm.sign(&serial, b"p256".to_vec(), SignMechanism::EcdsaPrehashed, digest))
            .expect("sign");
        assert!(openssl_verifies(&fx.dir, &p256.public_key_der, &data, &sig, true));

        let sig = rt
            .block_on(tm.sign(&serial, b"p384".to_vec(), SignMechanism::EcdsaSha256, data.clone()))
            .expect("sign");
        assert_eq!(sig.len(), 96);
        assert!(openssl_verifies(&fx.dir, &p384.public_key_der, &data, &sig, true));

        let sig = rt
            .block_on(tm.sign(&serial, b"rsa".to_vec(), SignMechanism::RsaPkcs1Sha256, data.clone()))
            .expect("sign");
        assert_eq!(sig.len(), 256);
        assert!(openssl_verifies(&fx.dir, &rsa.public_key_der, &data, &sig, false));

        // The wrong mechanism for the key is the token's error, with function and code.
        let err = rt
            .block_on(tm.sign(&serial, b"rsa".to_vec(), SignMechanism::EcdsaSha256, data.clone()))
            .expect_err("mismatch");
        assert!(matches!(err, TokenError::Pkcs11 { function: "C_SignInit" | "C_Sign", .. }), "{err:?}");
        let err = rt
            .block_on(tm.sign(&serial, b"none".to_vec(), SignMechanism::EcdsaSha256, data))
            .expect_err("no key");
        assert!(matches!(&err, TokenError::KeyNotFound { key_id, .. } if key_id == "6e6f6e65"), "{err:?}");
        assert!(tm.is_available(&serial), "ordinary errors do not take the token down");
    });
}

#[test]
fn delete_key_pair_removes_both_halves() {
    softhsm_test("delete_key_pair_removes_both_halves", &["main"], |fx| {
        let (tm, serial) = fx.open_main(2, 5000, RecoveryPolicy::default());
        let rt = runtime();
        rt.block_on(tm.generate_key_pair(&serial, req("del", b"del", KeyAlgorithm::EcP256, true)))
            .expect("gen");
        // Sign first so the private key's handle is cached: delete must invalidate it.
        rt.block_on(tm.sign(&serial, b"del".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec()))
            .expect("sign");
        assert_eq!(rt.block_on(tm.delete_key_pair(&serial, b"del".to_vec())).expect("delete"), 2);
        assert_eq!(rt.block_on(tm.delete_key_pair(&serial, b"del".to_vec())).expect("delete again"), 0);
        assert_eq!(rt.block_on(tm.delete_key_pair(&serial, b"never".to_vec())).expect("delete none"), 0);
        let err = rt
            .block_on(tm.sign(&serial, b"del".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec()))
            .expect_err("gone");
        assert!(matches!(err, TokenError::KeyNotFound { .. }), "{err:?}");
        let left = raw_session(&serial).find_objects(&[Attribute::Id(b"del".to_vec())]).expect("find");
        assert!(left.is_empty());

        // Same id again: the new key signs (no stale handle from the cache).
        let g = rt
            .block_on(tm.generate_key_pair(&serial, req("del", b"del", KeyAlgorithm::EcP256, true)))
            .expect("regen");
        let sig = rt
            .block_on(tm.sign(&serial, b"del".to_vec(), SignMechanism::EcdsaSha256, b"y".to_vec()))
            .expect("sign");
        assert!(openssl_verifies(&fx.dir, &g.public_key_der, b"y", &sig, true));
    });
}

#[test]
fn wrong_pin_is_reported_with_its_code() {
    softhsm_test("wrong_pin_is_reported_with_its_code", &["main"], |fx| {
        let mut token = fx.by_label("main", TokenRole::Daemon);
        token.pin = SecretSource::file(fx.wrong_pin_file());
        let tm = TokenManager::open(&fx.config(vec![token], 2, 1000)).expect("open does not log in");
        let serial = fx.serial("main");
        let rt = runtime();
        for _ in 0..2 {
            // The second call is refused without presenting the PIN again (a card would count it).
            let err = rt
                .block_on(tm.sign(&serial, vec![1], SignMechanism::EcdsaSha256, b"x".to_vec()))
                .expect_err("login");
            match err {
                TokenError::Pkcs11 { function, code } => {
                    assert_eq!(function, "C_Login");
                    assert_eq!(code, "CKR_PIN_INCORRECT");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(!tm.is_available(&serial));
        let list = rt.block_on(tm.list_tokens()).expect("list");
        assert!(list.iter().any(|t| t.serial == serial && t.present && !t.available));
    });
}

#[test]
fn blocking_callers_sign_through_the_same_pool() {
    softhsm_test("blocking_callers_sign_through_the_same_pool", &["main"], |fx| {
        let (tm, serial) = fx.open_main(1, 200, RecoveryPolicy::default());
        let rt = runtime();
        let key = rt
            .block_on(tm.generate_key_pair(&serial, req("b", b"b", KeyAlgorithm::EcP256, false)))
            .expect("gen");
        // Two OS threads share a pool of one session: both get valid signatures (the second
        // waits for the session rather than opening another).
        let data = b"signed from a blocking thread".to_vec();
        let sigs: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (tm, serial, data) = (&tm, &serial, &data);
                    scope.spawn(move || {
                        (0..20)
                            .map(|_| {
                                tm.sign_blocking(serial, b"b", SignMechanism::EcdsaSha256, data)
                                    .expect("sign")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(sigs.len(), 40);
        for sig in sigs.iter().step_by(7) {
            assert!(openssl_verifies(&fx.dir, &key.public_key_der, &data, sig, true));
        }
        // The bound holds for blocking callers too: with the only session held, Busy.
        rt.block_on(async {
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let holder = {
                let (tm, serial) = (tm.clone(), serial.clone());
                tokio::spawn(async move {
                    tm.with_session(&serial, move |_s| {
                        let _ = held_tx.send(());
                        let _ = release_rx.recv();
                        Ok(())
                    })
                    .await
                })
            };
            held_rx.await.expect("held");
            let (tm2, serial2) = (tm.clone(), serial.clone());
            let err = std::thread::spawn(move || {
                tm2.sign_blocking(&serial2, b"b", SignMechanism::EcdsaSha256, b"x")
            })
            .join()
            .expect("thread")
            .expect_err("busy");
            assert!(matches!(&err, TokenError::Busy { .. }), "{err:?}");
            release_tx.send(()).expect("release");
            holder.await.expect("join").expect("holder");
        });
        let err = tm
            .sign_blocking("0000000000000000", b"b", SignMechanism::EcdsaSha256, b"x")
            .expect_err("unknown");
        assert!(matches!(err, TokenError::NotFound { .. }), "{err:?}");
    });
}

#[test]
fn pool_bound_gives_busy() {
    softhsm_test("pool_bound_gives_busy", &["main"], |fx| {
        let (tm, serial) = fx.open_main(1, 200, RecoveryPolicy::default());
        let rt = runtime();
        rt.block_on(async {
            tm.generate_key_pair(&serial, req("k", b"k", KeyAlgorithm::EcP256, false)).await.expect("gen");
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let holder = {
                let (tm, serial) = (tm.clone(), serial.clone());
                tokio::spawn(async move {
                    tm.with_session(&serial, move |_s| {
                        let _ = held_tx.send(());
                        let _ = release_rx.recv();
                        Ok(())
                    })
                    .await
                })
            };
            held_rx.await.expect("the only session is held");
            let err = tm
                .sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec())
                .await
                .expect_err("busy");
            assert!(matches!(&err, TokenError::Busy { serial: s } if *s == serial), "{err:?}");
            release_tx.send(()).expect("release");
            holder.await.expect("join").expect("holder");
            tm.sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec())
                .await
                .expect("free again");
            assert!(tm.is_available(&serial), "Busy is not an outage");
        });
    });
}

#[test]
fn many_parallel_signs() {
    softhsm_test("many_parallel_signs", &["main"], |fx| {
        let (tm, serial) = fx.open_main(4, 30_000, RecoveryPolicy::default());
        let rt = runtime();
        let key = rt
            .block_on(tm.generate_key_pair(&serial, req("k", b"k", KeyAlgorithm::EcP256, true)))
            .expect("gen");
        let sigs = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..400u32 {
                let (tm, serial) = (tm.clone(), serial.clone());
                set.spawn(async move {
                    let data = format!("message {i}").into_bytes();
                    let sig = tm.sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, data.clone()).await;
                    (data, sig)
                });
            }
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                out.push(r.expect("join"));
            }
            out
        });
        assert_eq!(sigs.len(), 400);
        for (_, sig) in &sigs {
            assert_eq!(sig.as_ref().expect("sign").len(), 64);
        }
        for (data, sig) in sigs.iter().take(3) {
            assert!(openssl_verifies(&fx.dir, &key.public_key_der, data, sig.as_ref().expect("sig"), true));
        }
        // The pool never opened more than its 4 sessions: within one generation sessions are
        // never closed, so the distinct handles seen are the sessions opened.
        let handles = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..100 {
                let (tm, serial) = (tm.clone(), serial.clone());
                set.spawn(async move { tm.with_session(&serial, |s| Ok(s.handle())).await });
            }
            let mut handles = std::collections::HashSet::new();
            while let Some(r) = set.join_next().await {
                handles.insert(r.expect("join").expect("with_session"));
            }
            handles
        });
        assert!((1..=4).contains(&handles.len()), "{} sessions", handles.len());
    });
}

#[test]
fn device_removed_marks_unavailable_then_recovers() {
    softhsm_test("device_removed_marks_unavailable_then_recovers", &["main"], |fx| {
        let fast = RecoveryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        };
        let (tm, serial) = fx.open_main(2, 5000, fast);
        let rt = runtime();
        rt.block_on(async {
            let key =
                tm.generate_key_pair(&serial, req("k", b"k", KeyAlgorithm::EcP256, true)).await.expect("gen");
            tm.sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec()).await.expect("sign");
            // SoftHSM cannot be unplugged: inject the code a removed card gives, through the
            // same classification path as every call.
            let err = tm
                .with_session(&serial, |_s| {
                    Err::<(), _>(CkError::Pkcs11(RvError::DeviceRemoved, cryptoki::context::Function::Sign))
                })
                .await
                .expect_err("removed");
            match &err {
                TokenError::Unavailable { serial: s, reason } => {
                    assert_eq!(s, &serial);
                    assert_eq!(reason, "C_Sign: CKR_DEVICE_REMOVED");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(!tm.is_available(&serial));
            // The background probe re-finds the token by serial, reopens and logs in.
            wait_until_available(&tm, &serial).await;
            let sig = tm
                .sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"after".to_vec())
                .await
                .expect("sign");
            assert!(openssl_verifies(&fx.dir, &key.public_key_der, b"after", &sig, true));
        });
    });
}

#[test]
fn unavailable_token_fails_fast_and_wakes_pool_waiters() {
    softhsm_test("unavailable_token_fails_fast_and_wakes_pool_waiters", &["main"], |fx| {
        // No recovery during this test, and a pool wait far longer than the test.
        let never = RecoveryPolicy {
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
        };
        let (tm, serial) = fx.open_main(1, 600_000, never);
        let rt = runtime();
        rt.block_on(async {
            tm.generate_key_pair(&serial, req("k", b"k", KeyAlgorithm::EcP256, true)).await.expect("gen");
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let holder = {
                let (tm, serial) = (tm.clone(), serial.clone());
                tokio::spawn(async move {
                    tm.with_session(&serial, move |_s| {
                        let _ = held_tx.send(());
                        let _ = release_rx.recv();
                        Err::<(), _>(CkError::Pkcs11(RvError::SessionHandleInvalid, cryptoki::context::Function::Sign))
                    })
                    .await
                })
            };
            held_rx.await.expect("held");
            let waiter = {
                let (tm, serial) = (tm.clone(), serial.clone());
                tokio::spawn(async move { tm.sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec()).await })
            };
            tokio::time::sleep(Duration::from_millis(100)).await; // let the waiter park on the pool
            release_tx.send(()).expect("release");
            let held = holder.await.expect("join");
            assert!(matches!(held, Err(TokenError::Unavailable { .. })), "{held:?}");
            // The waiter is woken by the outage instead of waiting out session_wait_ms.
            let waited = tokio::time::timeout(Duration::from_secs(60), waiter).await.expect("waiter woken").expect("join");
            assert!(matches!(waited, Err(TokenError::Unavailable { .. })), "{waited:?}");
            // Everything else fails fast, without touching the pool.
            let err = tm.sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec()).await.expect_err("fast");
            assert!(matches!(&err, TokenError::Unavailable { reason, .. } if reason.contains("CKR_SESSION_HANDLE_INVALID")), "{err:?}");
            let err = tm.delete_key_pair(&serial, b"k".to_vec()).await.expect_err("fast");
            assert!(matches!(err, TokenError::Unavailable { .. }), "{err:?}");
            assert!(!tm.is_available(&serial));
            let list = tm.list_tokens().await.expect("list");
            assert!(list.iter().any(|t| t.serial == serial && t.present && !t.available));
        });
    });
}

#[test]
fn logout_under_the_pool_is_detected_and_recovered() {
    softhsm_test("logout_under_the_pool_is_detected_and_recovered", &["main"], |fx| {
        let fast = RecoveryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        };
        let (tm, serial) = fx.open_main(2, 5000, fast);
        let rt = runtime();
        rt.block_on(async {
            let key =
                tm.generate_key_pair(&serial, req("k", b"k", KeyAlgorithm::EcP256, true)).await.expect("gen");
            tm.sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec()).await.expect("sign");
            // What a token reset looks like to the application: every session is logged out.
            tm.with_session(&serial, |s| s.logout()).await.expect("logout");
            let err = tm
                .sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"x".to_vec())
                .await
                .expect_err("logged out");
            // SoftHSM answers the cached key handle with CKR_OBJECT_HANDLE_INVALID and hides the
            // private key from the re-find; the layer notices the lost login state.
            assert!(
                matches!(&err, TokenError::Unavailable { reason, .. }
                    if reason.contains("no longer logged in") || reason.contains("CKR_USER_NOT_LOGGED_IN")),
                "{err:?}"
            );
            wait_until_available(&tm, &serial).await;
            let sig = tm
                .sign(&serial, b"k".to_vec(), SignMechanism::EcdsaSha256, b"again".to_vec())
                .await
                .expect("sign");
            assert!(openssl_verifies(&fx.dir, &key.public_key_der, b"again", &sig, true));
        });
    });
}
