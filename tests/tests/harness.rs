//! Smoke test of the harness itself: softhsm-setup.sh makes the tokens TestEnv reports, and
//! pkcs11-tool sees them with the PINs it wrote. The daemon is not involved.

use cardhsm_tests::{ObjectClass, TestEnv, list_token_objects};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// `pkcs11-tool --list-token-slots` for this environment: the (label, serial) of every
/// initialised token.
fn tokens_seen_by_pkcs11_tool(env: &TestEnv) -> Vec<(String, String)> {
    let out = Command::new("pkcs11-tool")
        .args(["--module", cardhsm_tests::SOFTHSM_MODULE, "--list-token-slots"])
        .env("SOFTHSM2_CONF", &env.softhsm_conf)
        .output()
        .expect("pkcs11-tool runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tokens = Vec::new();
    let mut label = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(l) = line.strip_prefix("token label") {
            label = Some(l.trim_start_matches([' ', ':']).trim().to_owned());
        } else if let Some(s) = line.strip_prefix("serial num")
            && let Some(l) = label.take()
        {
            tokens.push((l, s.trim_start_matches([' ', ':']).trim().to_owned()));
        }
    }
    tokens
}

#[test]
fn test_env_makes_daemon_and_card_tokens() {
    let env = TestEnv::new(2).expect("TestEnv::new(2)");

    assert_eq!(env.daemon_token_label, "cardhsm-daemon");
    assert_eq!(env.card_labels, ["card-01", "card-02"]);
    assert_eq!(env.card_serials.len(), 2);
    assert!(env.softhsm_conf.is_file());
    let conf = std::fs::read_to_string(&env.softhsm_conf).expect("conf readable");
    assert!(conf.contains(&format!("directories.tokendir = {}", env.hsm_dir.join("tokens").display())));
    assert!(conf.contains("objectstore.backend = file"));

    // PINs: random, distinct, in 0600 files.
    assert!(env.daemon_pin.len() >= 16 && env.card_pin.len() >= 16 && env.so_pin.len() >= 16);
    assert_ne!(env.daemon_pin, env.card_pin);
    for file in ["daemon.pin", "card.pin", "so.pin"] {
        let mode = std::fs::metadata(env.hsm_dir.join(file)).expect("pin file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    // Debug never shows them.
    let debug = format!("{env:?}");
    assert!(!debug.contains(&env.daemon_pin) && !debug.contains(&env.card_pin), "{debug}");

    // pkcs11-tool sees exactly these tokens, with these serials.
    let mut seen = tokens_seen_by_pkcs11_tool(&env);
    seen.sort();
    let mut expected = vec![(env.daemon_token_label.clone(), env.daemon_token_serial.clone())];
    expected.extend(env.card_labels.iter().cloned().zip(env.card_serials.iter().cloned()));
    expected.sort();
    assert_eq!(seen, expected);

    // Each token opens with its PIN and is empty.
    for label in std::iter::once(&env.daemon_token_label).chain(&env.card_labels) {
        let objects = list_token_objects(&env, label).unwrap_or_else(|e| panic!("{label}: {e:#}"));
        assert!(objects.is_empty(), "{label}: {objects:?}");
    }
    // The card PIN does not open the daemon token (each token really has its own PIN).
    let wrong = Command::new("pkcs11-tool")
        .args(["--module", cardhsm_tests::SOFTHSM_MODULE, "--token-label", "cardhsm-daemon", "--login"])
        .args(["--pin", "env:WRONG_PIN", "--list-objects"])
        .env("SOFTHSM2_CONF", &env.softhsm_conf)
        .env("WRONG_PIN", &env.card_pin)
        .output()
        .expect("pkcs11-tool runs");
    assert!(!wrong.status.success());
    assert!(list_token_objects(&env, "card-99").is_err(), "a missing token is an error");
}

#[test]
fn token_objects_report_key_attributes() {
    let env = TestEnv::new(1).expect("TestEnv::new(1)");
    env.pkcs11_tool(
        "card-01",
        &["--keypairgen", "--key-type", "EC:prime256v1", "--label", "auth", "--id", "0a01", "--sensitive"],
    )
    .expect("EC key pair generated");
    env.pkcs11_tool("card-01", &["--keygen", "--key-type", "AES:16", "--label", "wrap", "--extractable"])
        .expect("AES key generated");

    let objects = env.list_token_objects("card-01").expect("listed");
    let private = objects.iter().find(|o| o.class == ObjectClass::PrivateKey).expect("private key");
    assert_eq!((private.label.as_str(), private.id_hex.as_str()), ("auth", "0a01"));
    assert_eq!(private.key_type.as_deref(), Some("EC"));
    assert_eq!(private.sensitive, Some(true));
    assert_eq!(private.extractable, Some(false));
    assert_eq!(private.never_extractable, Some(true));
    assert_eq!(private.local, Some(true));
    assert!(private.usage.iter().any(|u| u == "sign"), "{private:?}");

    let public = objects.iter().find(|o| o.class == ObjectClass::PublicKey).expect("public key");
    assert_eq!((public.label.as_str(), public.bits), ("auth", Some(256)));
    assert_eq!(public.ec_params_hex.as_deref(), Some("06082a8648ce3d030107"), "P-256 OID");
    assert_eq!(public.sensitive, None);

    let secret = objects.iter().find(|o| o.class == ObjectClass::SecretKey).expect("secret key");
    assert_eq!((secret.label.as_str(), secret.bits), ("wrap", Some(128)));
    assert_eq!(secret.extractable, Some(true));

    // The other token and the daemon token are untouched.
    assert!(env.list_token_objects(&env.daemon_token_label).expect("daemon token").is_empty());
}

#[test]
fn environments_are_independent() {
    let a = TestEnv::new(1).expect("env a");
    let b = TestEnv::new(1).expect("env b");
    assert_ne!(a.softhsm_conf, b.softhsm_conf);
    assert_ne!(a.card_serials, b.card_serials);
    assert_ne!(a.card_pin, b.card_pin);
    a.pkcs11_tool("card-01", &["--keypairgen", "--key-type", "EC:prime256v1", "--label", "only-in-a"])
        .expect("key generated in a");
    assert_eq!(a.list_token_objects("card-01").expect("a").len(), 2);
    assert!(b.list_token_objects("card-01").expect("b").is_empty());
}

#[test]
fn zero_cards_is_just_the_daemon_token() {
    let env = TestEnv::new(0).expect("TestEnv::new(0)");
    assert!(env.card_labels.is_empty() && env.card_serials.is_empty());
    assert!(!env.daemon_token_serial.is_empty());
}

// ---- the daemon under the harness ------------------------------------------------------------

use cardhsm_tests::{ADMIN_PASSWORD, Daemon};

#[tokio::test]
async fn daemon_starts_restarts_and_stops() {
    let env = TestEnv::new(1).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon starts");
    assert!(daemon.endpoint.starts_with("http://127.0.0.1:"), "{}", daemon.endpoint);
    assert!(daemon.is_running());
    let config = std::fs::read_to_string(&daemon.config_path).expect("config written");
    hsm_config::Config::from_toml_str(&config).expect("the harness writes a valid config");

    let admin = daemon.admin_client().await;
    drop(admin);
    assert!(daemon.login_client("admin", "not-the-password").await.is_err());
    let first = daemon.log();
    assert!(!first.is_empty());
    assert!(!first.contains(ADMIN_PASSWORD), "the password never reaches the log");

    daemon.restart().await;
    assert!(daemon.is_running());
    // Same database: the bootstrap admin still logs in (the daemon makes no new one).
    daemon.admin_client().await;
    assert!(daemon.log().starts_with(&first), "the log accumulates over runs");
    assert!(daemon.log().contains("cardhsmd run 2"));

    daemon.stop().await;
    assert!(!daemon.is_running());
    assert!(daemon.exit_status().expect("exited").success(), "SIGTERM is a clean shutdown");

    daemon.start_again().await.expect("starts after stop");
    daemon.kill().await;
    assert!(!daemon.exit_status().expect("exited").success());
}

#[tokio::test]
async fn daemon_refusing_its_config_is_reported_with_its_log() {
    let env = TestEnv::new(0).expect("env");
    let (status, log) =
        Daemon::start_expecting_failure(&env, "[store]\nreaders = 0\n").await.expect("fails as expected");
    assert!(!status.success());
    assert!(log.contains("store.readers"), "{log}");
    let err = Daemon::start_with(&env, "[store]\nreaders = 0\n").await.expect_err("refused");
    assert!(format!("{err:#}").contains("store.readers"), "the error carries the log: {err:#}");
}
