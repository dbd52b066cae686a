//! The configuration as an operator meets it: the shipped example file, defaults, refusals that
//! name the key to fix, relative paths, and secrets that never show up in output.

use hsm_config::{
    CardKeySpec, Config, ConfigError, KeyAlgorithm, LogFormat, Secret, SecretSource, TokenRole, defaults,
};
use std::path::{Path, PathBuf};

const EXAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../cardhsm.example.toml"));
const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cardhsm.example.toml");

/// Parses `text` and expects an `Invalid` error; returns (key, message).
fn invalid(text: &str) -> (String, String) {
    match Config::from_toml_str(text) {
        Err(ConfigError::Invalid { key, message }) => (key, message),
        other => panic!("expected ConfigError::Invalid for\n{text}\ngot {other:?}"),
    }
}

/// Parses `text` and expects a `Parse` error; returns its message.
fn parse_error(text: &str) -> String {
    match Config::from_toml_str(text) {
        Err(ConfigError::Parse { message }) => message,
        other => panic!("expected ConfigError::Parse for\n{text}\ngot {other:?}"),
    }
}

/// The example with every optional setting switched on: single-`#` lines uncommented.
fn example_all_enabled() -> String {
    EXAMPLE
        .lines()
        .map(|l| if l.starts_with("##") { l } else { l.strip_prefix("# ").unwrap_or(l) })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the example file ---------------------------------------------------------------------

#[test]
fn example_file_parses_and_validates() {
    let config = Config::from_toml_str(EXAMPLE).expect("cardhsm.example.toml must be a valid config");
    // As written it is the defaults plus the daemon token.
    let mut expected = Config::default();
    expected.pkcs11.tokens = config.pkcs11.tokens.clone();
    assert_eq!(config, expected, "the example's active settings must be the documented defaults");
    assert_eq!(config.pkcs11.tokens.len(), 1);
    let t = &config.pkcs11.tokens[0];
    assert_eq!(t.label.as_deref(), Some("cardhsm-daemon"));
    assert_eq!(t.role, TokenRole::Daemon);
    assert_eq!(t.pin, SecretSource::env("CARDHSM_TOKEN_PIN"));
}

#[test]
fn example_file_loads_from_disk_with_paths_resolved() {
    let config = Config::load(Path::new(EXAMPLE_PATH)).expect("example loads");
    let dir = Path::new(EXAMPLE_PATH).parent().expect("has a parent");
    assert_eq!(config.store.path, dir.join("cardhsm.sqlite3"));
}

#[test]
fn example_file_optional_settings_are_valid_when_enabled() {
    let text = example_all_enabled();
    let config = Config::from_toml_str(&text)
        .unwrap_or_else(|e| panic!("example with optional settings enabled: {e}\n{text}"));
    assert!(config.server.ready_file.is_some());
    let tls = config.server.tls.as_ref().expect("[server.tls] enabled");
    assert!(tls.client_ca_file.is_some());
    assert_eq!(config.pkcs11.tokens.len(), 2);
    assert!(config.pkcs11.tokens[1].serial.is_some());
    assert_eq!(config.pkcs11.tokens[1].role, TokenRole::Card);
    assert_eq!(config.auth.realms.len(), 1);
    assert_eq!(config.auth.realms[0].roles, ["OPERATOR"]);
    assert_eq!(config.cards.policies.len(), 1);
    assert_eq!(config.cards.policies[0].keys.len(), 2);
    assert_eq!(config.issuance.profiles.len(), 1);
    assert_eq!(config.issuance.profiles[0].parameters.len(), 1);
}

#[test]
fn example_file_documents_every_key() {
    // Every leaf key the config knows appears in the example, active or as an optional line.
    let text = example_all_enabled();
    for key in [
        "grpc_listen",
        "rest_listen",
        "ready_file",
        "cert_file",
        "key_file",
        "client_ca_file",
        "path",
        "readers",
        "access_token_ttl_secs",
        "refresh_token_ttl_secs",
        "bootstrap_password",
        "login_throttle_after",
        "login_throttle_secs",
        "password_reset_code_ttl_secs",
        "outbox",
        "host",
        "port",
        "from",
        "security",
        "username",
        "password",
        "timeout_secs",
        "roles",
        "module",
        "sessions_per_token",
        "session_wait_ms",
        "card_pin",
        "serial",
        "label",
        "role",
        "pin",
        "default_policy",
        "name",
        "keys",
        "algorithm",
        "id",
        "key_algorithms",
        "authority",
        "subject_dn",
        "key_usages",
        "extended_key_usages",
        "validity_years",
        "max_validity_years",
        "dns_san_from_common_name",
        "pkcs12_iterations",
        "input_type",
        "required",
        "placeholder",
        "validation_pattern",
        "message",
        "value",
        "title",
        "scopes",
        "dynamic",
        "level",
        "format",
    ] {
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start().trim_start_matches('{').trim_start();
                l.starts_with(&format!("{key} =")) || l.contains(&format!(" {key} = "))
            }),
            "example does not set `{key}`"
        );
    }
    for section in
        ["[server]", "[server.tls]", "[store]", "[auth]", "[[auth.realms]]", "[pkcs11]", "[[pkcs11.tokens]]"]
    {
        assert!(text.lines().any(|l| l.trim() == section), "example lacks {section}");
    }
    for section in [
        "[cards]",
        "[[cards.policies]]",
        "[issuance]",
        "[[issuance.profiles]]",
        "[[issuance.profiles.parameters]]",
        "[logging]",
    ] {
        assert!(text.lines().any(|l| l.trim() == section), "example lacks {section}");
    }
}

// ---- defaults -------------------------------------------------------------------------------

#[test]
fn empty_file_is_the_default_config() {
    assert_eq!(Config::from_toml_str("").expect("empty parses"), Config::default());
    assert_eq!(Config::from_toml_str("\n# only a comment\n").expect("comment parses"), Config::default());
    // Empty sections are the same as absent ones.
    let sections = "[server]\n[store]\n[auth]\n[pkcs11]\n[cards]\n[logging]\n";
    assert_eq!(Config::from_toml_str(sections).expect("sections parse"), Config::default());
}

#[test]
fn default_config_is_valid_and_has_documented_values() {
    let c = Config::default().validate().expect("defaults are valid");
    assert_eq!(c.server.grpc_listen.to_string(), "127.0.0.1:50051");
    assert_eq!(c.server.ready_file, None);
    assert_eq!(c.server.tls, None);
    assert_eq!(c.store.path, PathBuf::from("cardhsm.sqlite3"));
    assert_eq!(c.store.readers, 4);
    assert_eq!(c.auth.access_token_ttl_secs, 900);
    assert_eq!(c.auth.refresh_token_ttl_secs, 43_200);
    assert_eq!(c.auth.bootstrap_password, SecretSource::env("CARDHSM_BOOTSTRAP_PASSWORD"));
    assert_eq!(c.pkcs11.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert_eq!(c.pkcs11.sessions_per_token, 4);
    assert_eq!(c.pkcs11.session_wait_ms, 5_000);
    assert_eq!(c.pkcs11.card_pin, SecretSource::env("CARDHSM_CARD_PIN"));
    assert!(c.pkcs11.tokens.is_empty());
    assert_eq!(c.cards.default_policy, "standard");
    assert!(c.cards.policies.is_empty());
    assert_eq!(c.logging.level, "info");
    assert_eq!(c.logging.format, LogFormat::Text);
    let names: Vec<_> = c.card_policies().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["standard", "dual", "piv"]);
}

#[test]
fn partial_sections_keep_defaults_for_the_rest() {
    let c = Config::from_toml_str("[store]\nreaders = 9\n[logging]\nformat = \"json\"\n").expect("valid");
    assert_eq!(c.store.readers, 9);
    assert_eq!(c.store.path, defaults::store_path());
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.logging.level, "info");
}

// ---- unknown and mistyped keys --------------------------------------------------------------

#[test]
fn unknown_top_level_key_is_refused_by_name() {
    let msg = parse_error("bogus_setting = 1\n");
    assert!(msg.contains("bogus_setting"), "{msg}");
    let msg = parse_error("[daemon]\nx = 1\n");
    assert!(msg.contains("daemon"), "{msg}");
}

#[test]
fn unknown_nested_key_is_refused_by_name() {
    for (text, name) in [
        ("[server]\ngrpc_port = 5\n", "grpc_port"),
        ("[store]\nfilename = \"x\"\n", "filename"),
        ("[server.tls]\ncert_file = \"a\"\nkey_file = \"b\"\nca = \"c\"\n", "ca"),
        ("[pkcs11]\ncard_pin = { env = \"X\", value = \"1234\" }\n", "value"),
        ("[[pkcs11.tokens]]\nlabel = \"a\"\npin = { env = \"X\" }\nslot = 3\n", "slot"),
        (
            "[[cards.policies]]\nname = \"p\"\nkeys = [{ label = \"a\", algorithm = \"EC:P-256\", size = 1 }]\n",
            "size",
        ),
        ("[logging]\nlevl = \"debug\"\n", "levl"),
    ] {
        let msg = parse_error(text);
        assert!(msg.contains(&format!("`{name}`")), "message for {text:?} must name `{name}`: {msg}");
    }
}

#[test]
fn mistyped_values_are_refused() {
    assert!(parse_error("[store]\nreaders = \"four\"\n").contains("readers"));
    parse_error("[server]\ngrpc_listen = \"not an address\"\n");
    parse_error("[logging]\nformat = \"xml\"\n");
    parse_error("[[pkcs11.tokens]]\nlabel = \"a\"\nrole = \"admin\"\npin = { env = \"X\" }\n");
    // A token without a PIN source is incomplete.
    assert!(parse_error("[[pkcs11.tokens]]\nlabel = \"a\"\n").contains("pin"));
}

// ---- ranges and shapes name their key -------------------------------------------------------

#[test]
fn each_range_check_names_its_key() {
    for (section, key, bad, good) in [
        ("store", "readers", 0u32, 1u32),
        ("store", "readers", 65, 64),
        ("auth", "access_token_ttl_secs", 59, 60),
        ("auth", "access_token_ttl_secs", 86_401, 86_400),
        ("auth", "refresh_token_ttl_secs", 299, 300),
        ("auth", "refresh_token_ttl_secs", 2_592_001, 2_592_000),
        ("auth", "login_throttle_after", 0, 1),
        ("auth", "login_throttle_after", 101, 100),
        ("auth", "login_throttle_secs", 901, 900),
        ("pkcs11", "sessions_per_token", 0, 1),
        ("pkcs11", "sessions_per_token", 65, 64),
        ("pkcs11", "session_wait_ms", 0, 1),
        ("pkcs11", "session_wait_ms", 600_001, 600_000),
    ] {
        let (k, msg) = invalid(&format!("[{section}]\n{key} = {bad}\n"));
        assert_eq!(k, format!("{section}.{key}"));
        assert!(msg.contains(&bad.to_string()), "{msg}");
        let err = Config::from_toml_str(&format!("[{section}]\n{key} = {bad}\n")).expect_err("refused");
        assert!(err.to_string().contains(&format!("{section}.{key}")), "Display names the key: {err}");
        Config::from_toml_str(&format!("[{section}]\n{key} = {good}\n"))
            .unwrap_or_else(|e| panic!("{section}.{key} = {good} is in range: {e}"));
    }
}

#[test]
fn empty_strings_and_paths_are_refused_by_key() {
    assert_eq!(invalid("[pkcs11]\nmodule = \"\"\n").0, "pkcs11.module");
    assert_eq!(invalid("[store]\npath = \"\"\n").0, "store.path");
    assert_eq!(invalid("[server]\nready_file = \"\"\n").0, "server.ready_file");
    assert_eq!(invalid("[server.tls]\ncert_file = \"\"\nkey_file = \"k\"\n").0, "server.tls.cert_file");
    assert_eq!(invalid("[server.tls]\ncert_file = \"c\"\nkey_file = \"\"\n").0, "server.tls.key_file");
    assert_eq!(
        invalid("[server.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_ca_file = \"\"\n").0,
        "server.tls.client_ca_file"
    );
    assert_eq!(invalid("[logging]\nlevel = \"  \"\n").0, "logging.level");
}

#[test]
fn token_needs_exactly_one_of_serial_and_label() {
    let both = "[[pkcs11.tokens]]\nserial = \"1234\"\nlabel = \"x\"\npin = { env = \"P\" }\n";
    let neither = "[[pkcs11.tokens]]\nrole = \"daemon\"\npin = { env = \"P\" }\n";
    let blank = "[[pkcs11.tokens]]\nlabel = \"  \"\npin = { env = \"P\" }\n";
    for text in [both, neither, blank] {
        let (key, msg) = invalid(text);
        assert_eq!(key, "pkcs11.tokens[0]", "{text}");
        assert!(msg.contains("serial") && msg.contains("label"), "{msg}");
    }
    // The index points at the bad entry.
    let second = "[[pkcs11.tokens]]\nlabel = \"a\"\npin = { env = \"P\" }\n\
                  [[pkcs11.tokens]]\npin = { env = \"P\" }\n";
    assert_eq!(invalid(second).0, "pkcs11.tokens[1]");
}

#[test]
fn two_tokens_matching_the_same_label_or_serial_are_refused() {
    let text = "[[pkcs11.tokens]]\nlabel = \"a\"\npin = { env = \"P\" }\n\
                [[pkcs11.tokens]]\nlabel = \"a\"\nrole = \"daemon\"\npin = { env = \"Q\" }\n";
    let (key, msg) = invalid(text);
    assert_eq!(key, "pkcs11.tokens[1]");
    assert!(msg.contains("\"a\""), "{msg}");
    let text = "[[pkcs11.tokens]]\nserial = \"42\"\npin = { env = \"P\" }\n\
                [[pkcs11.tokens]]\nserial = \"42\"\npin = { env = \"P\" }\n";
    assert_eq!(invalid(text).0, "pkcs11.tokens[1]");
    // A label equal to another token's serial is a different matcher: fine.
    let text = "[[pkcs11.tokens]]\nserial = \"42\"\npin = { env = \"P\" }\n\
                [[pkcs11.tokens]]\nlabel = \"42\"\npin = { env = \"P\" }\n";
    Config::from_toml_str(text).expect("serial and label namespaces are separate");
}

#[test]
fn secret_source_needs_exactly_one_of_env_and_file() {
    for (text, key) in [
        ("[auth]\nbootstrap_password = { env = \"A\", file = \"b\" }\n", "auth.bootstrap_password"),
        ("[auth]\nbootstrap_password = {}\n", "auth.bootstrap_password"),
        ("[pkcs11]\ncard_pin = { env = \"A\", file = \"b\" }\n", "pkcs11.card_pin"),
        ("[pkcs11]\ncard_pin = { env = \"\" }\n", "pkcs11.card_pin"),
        ("[pkcs11]\ncard_pin = { file = \"\" }\n", "pkcs11.card_pin"),
        ("[[pkcs11.tokens]]\nlabel = \"x\"\npin = { env = \"A\", file = \"b\" }\n", "pkcs11.tokens[0].pin"),
    ] {
        let (k, msg) = invalid(text);
        assert_eq!(k, key, "{text}");
        assert!(msg.contains("env") && msg.contains("file"), "{msg}");
    }
}

// ---- load: relative paths -------------------------------------------------------------------

#[test]
fn load_resolves_relative_paths_against_the_config_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cardhsm.toml");
    std::fs::write(
        &path,
        r#"
[server]
ready_file = "run/ready"
[server.tls]
cert_file = "tls/server.crt"
key_file = "/abs/server.key"
client_ca_file = "tls/ca.crt"
[store]
path = "db/cardhsm.sqlite3"
[auth]
bootstrap_password = { file = "secrets/bootstrap" }
[pkcs11]
card_pin = { file = "card.pin" }
[[pkcs11.tokens]]
label = "cardhsm-daemon"
role = "daemon"
pin = { file = "/abs/daemon.pin" }
[[pkcs11.tokens]]
serial = "abc"
pin = { file = "pins/abc.pin" }
[[pkcs11.tokens]]
serial = "def"
pin = { env = "DEF_PIN" }
"#,
    )
    .expect("write config");
    let c = Config::load(&path).expect("loads");
    let d = dir.path();
    assert_eq!(c.server.ready_file.as_deref(), Some(d.join("run/ready").as_path()));
    let tls = c.server.tls.as_ref().expect("tls");
    assert_eq!(tls.cert_file, d.join("tls/server.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/abs/server.key"));
    assert_eq!(tls.client_ca_file.as_deref(), Some(d.join("tls/ca.crt").as_path()));
    assert_eq!(c.store.path, d.join("db/cardhsm.sqlite3"));
    assert_eq!(c.auth.bootstrap_password, SecretSource::file(d.join("secrets/bootstrap")));
    assert_eq!(c.pkcs11.card_pin, SecretSource::file(d.join("card.pin")));
    assert_eq!(c.pkcs11.tokens[0].pin, SecretSource::file("/abs/daemon.pin"));
    assert_eq!(c.pkcs11.tokens[1].pin, SecretSource::file(d.join("pins/abc.pin")));
    assert_eq!(c.pkcs11.tokens[2].pin, SecretSource::env("DEF_PIN"));
    // The module path is a library name for the loader, never rewritten.
    assert_eq!(c.pkcs11.module, defaults::module());
}

#[test]
fn load_of_an_empty_file_puts_the_default_database_next_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "").expect("write");
    let c = Config::load(&path).expect("loads");
    assert_eq!(c.store.path, dir.path().join("cardhsm.sqlite3"));
}

#[test]
fn load_reports_a_missing_file_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    match Config::load(&path) {
        Err(e @ ConfigError::Io { .. }) => assert!(e.to_string().contains("nope.toml"), "{e}"),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn load_reports_invalid_keys_like_from_toml_str() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[store]\nreaders = 0\n").expect("write");
    let err = Config::load(&path).expect_err("refused");
    assert_eq!(err.key(), Some("store.readers"));
}

// ---- secrets --------------------------------------------------------------------------------

#[test]
fn secret_debug_and_display_are_redacted() {
    let s = Secret::new("hunter2-pin".to_owned());
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(format!("{s}"), "[redacted]");
    assert_eq!(format!("{s:#?}"), "[redacted]");
    assert_eq!(s.expose(), "hunter2-pin");
    assert!(!s.is_empty());
    assert!(Secret::new(String::new()).is_empty());
}

#[test]
fn debug_of_a_config_with_loaded_secrets_never_shows_them() {
    #[derive(Debug)]
    #[allow(dead_code)] // read only through Debug
    struct Loaded {
        config: Config,
        card_pin: Option<Secret>,
        token_pins: Vec<Option<Secret>>,
    }

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("card.pin"), "card-secret-918273\n").expect("write");
    std::fs::write(dir.path().join("daemon.pin"), "daemon-secret-564738").expect("write");
    let path = dir.path().join("cardhsm.toml");
    std::fs::write(
        &path,
        "[pkcs11]\ncard_pin = { file = \"card.pin\" }\n\
         [[pkcs11.tokens]]\nlabel = \"cardhsm-daemon\"\nrole = \"daemon\"\npin = { file = \"daemon.pin\" }\n",
    )
    .expect("write");
    let config = Config::load(&path).expect("loads");
    let card_pin = config.pkcs11.card_pin.load("pkcs11.card_pin").expect("card pin readable");
    let token_pins = config
        .pkcs11
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| t.pin.load(&format!("pkcs11.tokens[{i}].pin")).expect("pin readable"))
        .collect();
    let loaded = Loaded { config, card_pin, token_pins };
    assert_eq!(loaded.card_pin.as_ref().map(Secret::expose), Some("card-secret-918273"));
    assert_eq!(loaded.token_pins[0].as_ref().map(Secret::expose), Some("daemon-secret-564738"));
    for rendered in [format!("{loaded:?}"), format!("{loaded:#?}")] {
        assert!(!rendered.contains("card-secret"), "{rendered}");
        assert!(!rendered.contains("daemon-secret"), "{rendered}");
        assert!(!rendered.contains("918273") && !rendered.contains("564738"), "{rendered}");
        assert!(rendered.contains("[redacted]"), "{rendered}");
    }
}

#[test]
fn secret_file_loses_exactly_one_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (content, expected) in [
        ("1234\n", "1234"),
        ("1234", "1234"),
        ("1234\r\n", "1234"),
        ("1234\n\n", "1234\n"),
        (" 1234 \n", " 1234 "),
        ("\n", ""),
        ("", ""),
    ] {
        let path = dir.path().join("pin");
        std::fs::write(&path, content).expect("write");
        let secret =
            SecretSource::file(&path).load("k").expect("readable").expect("file always gives a value");
        assert_eq!(secret.expose(), expected, "content {content:?}");
    }
}

#[test]
fn secret_file_that_cannot_be_read_names_key_and_path_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.pin");
    let err = SecretSource::file(&path).load("pkcs11.tokens[3].pin").expect_err("missing file");
    assert_eq!(err.key(), Some("pkcs11.tokens[3].pin"));
    assert!(err.to_string().contains("missing.pin"), "{err}");
}

#[test]
fn secret_from_environment() {
    // Tests cannot set variables (set_var is unsafe and unsafe code is forbidden): use PATH,
    // which every test process has, and a name nobody sets.
    let path = std::env::var("PATH").expect("PATH is set");
    let s = SecretSource::env("PATH").load("k").expect("ok").expect("PATH is set");
    assert_eq!(s.expose(), path);
    assert!(SecretSource::env("CARDHSM_TEST_SURELY_UNSET_4711").load("k").expect("ok").is_none());
}

#[test]
fn secret_source_describe_names_origin_not_value() {
    assert_eq!(SecretSource::env("CARDHSM_CARD_PIN").describe(), "environment variable CARDHSM_CARD_PIN");
    assert_eq!(SecretSource::file("/etc/pin").describe(), "file /etc/pin");
}

// ---- key algorithms -------------------------------------------------------------------------

#[test]
fn key_algorithm_round_trips_and_parses_leniently() {
    for a in KeyAlgorithm::ALL {
        assert_eq!(a.as_str().parse::<KeyAlgorithm>(), Ok(a));
        assert_eq!(a.to_string(), a.as_str());
        assert_eq!(KeyAlgorithm::try_from(a.to_string()), Ok(a));
        assert_eq!(a.as_str().to_lowercase().parse::<KeyAlgorithm>(), Ok(a));
        assert_eq!(format!(" {a} ").parse::<KeyAlgorithm>(), Ok(a));
    }
    let names: Vec<_> = KeyAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(names, ["EC:P-256", "EC:P-384", "RSA:2048", "RSA:3072", "RSA:4096"]);
}

#[test]
fn key_algorithm_error_names_input_and_choices() {
    for bad in ["RSA:1024", "P-256", "", "EC:P-521", "ed25519"] {
        let err = bad.parse::<KeyAlgorithm>().expect_err("refused");
        assert!(err.contains(&format!("{bad:?}")), "{err}");
        for a in KeyAlgorithm::ALL {
            assert!(err.contains(a.as_str()), "{err}");
        }
    }
    // In a file the same message comes through the parse error.
    let msg = parse_error(
        "[[cards.policies]]\nname = \"p\"\nkeys = [{ label = \"a\", algorithm = \"RSA:1024\" }]\n",
    );
    assert!(msg.contains("RSA:1024") && msg.contains("EC:P-256"), "{msg}");
}

// ---- card policies --------------------------------------------------------------------------

fn policy(name: &str, keys: &[(&str, &str)]) -> String {
    let keys: Vec<_> =
        keys.iter().map(|(l, a)| format!("{{ label = \"{l}\", algorithm = \"{a}\" }}")).collect();
    format!("[[cards.policies]]\nname = \"{name}\"\nkeys = [{}]\n", keys.join(", "))
}

#[test]
fn card_policy_names_are_checked() {
    for bad in ["", "Upper", "-lead", "_lead", "has space", "dot.ted", &"x".repeat(65)] {
        let (key, msg) = invalid(&policy(bad, &[("auth", "EC:P-256")]));
        assert_eq!(key, "cards.policies[0].name", "name {bad:?}");
        assert!(msg.contains("a-z0-9"), "{msg}");
    }
    for good in ["a", "0", "rsa-legacy_2", &"x".repeat(64)] {
        Config::from_toml_str(&policy(good, &[("auth", "EC:P-256")]))
            .unwrap_or_else(|e| panic!("{good:?} is a valid name: {e}"));
    }
}

#[test]
fn card_policy_keys_are_checked() {
    let (key, _) = invalid(&policy("p", &[]));
    assert_eq!(key, "cards.policies[0].keys");
    let seventeen: Vec<(String, &str)> = (0..17).map(|i| (format!("k{i}"), "EC:P-256")).collect();
    let seventeen: Vec<(&str, &str)> = seventeen.iter().map(|(l, a)| (l.as_str(), *a)).collect();
    assert_eq!(invalid(&policy("p", &seventeen)).0, "cards.policies[0].keys");
    Config::from_toml_str(&policy("p", &seventeen[..16])).expect("16 keys are fine");

    let (key, msg) =
        invalid(&policy("p", &[("auth", "EC:P-256"), ("sign", "RSA:2048"), ("auth", "EC:P-384")]));
    assert_eq!(key, "cards.policies[0].keys[2].label");
    assert!(msg.contains("unique"), "{msg}");

    for bad in ["", "has space", "dot.ted", &"l".repeat(33)] {
        let (key, _) = invalid(&policy("p", &[("ok", "EC:P-256"), (bad, "EC:P-256")]));
        assert_eq!(key, "cards.policies[0].keys[1].label", "label {bad:?}");
    }
}

#[test]
fn duplicate_policy_names_are_refused() {
    let text = format!("{}{}", policy("p", &[("a", "EC:P-256")]), policy("p", &[("b", "EC:P-256")]));
    let (key, msg) = invalid(&text);
    assert_eq!(key, "cards.policies[1].name");
    assert!(msg.contains("\"p\""), "{msg}");
}

#[test]
fn default_policy_must_exist() {
    let (key, msg) = invalid("[cards]\ndefault_policy = \"nope\"\n");
    assert_eq!(key, "cards.default_policy");
    assert!(msg.contains("\"nope\""), "{msg}");
    // Built-ins and configured policies can both be the default.
    Config::from_toml_str("[cards]\ndefault_policy = \"dual\"\n").expect("built-in dual");
    let text = format!("[cards]\ndefault_policy = \"rsa\"\n{}", policy("rsa", &[("auth", "RSA:3072")]));
    let c = Config::from_toml_str(&text).expect("configured default");
    let p = c.card_policy(&c.cards.default_policy).expect("default policy resolves");
    assert_eq!(
        p.keys,
        [CardKeySpec { label: "auth".into(), algorithm: KeyAlgorithm::Rsa3072, certificate_profile: None }]
    );
}

#[test]
fn configured_policy_overrides_builtin_and_extends_the_list() {
    let text = format!(
        "{}{}",
        policy("standard", &[("auth", "EC:P-384"), ("enc", "RSA:2048")]),
        policy("extra", &[("k", "RSA:4096")])
    );
    let c = Config::from_toml_str(&text).expect("valid");
    let standard = c.card_policy("standard").expect("standard exists");
    assert_eq!(
        standard.keys,
        [
            CardKeySpec { label: "auth".into(), algorithm: KeyAlgorithm::EcP384, certificate_profile: None },
            CardKeySpec { label: "enc".into(), algorithm: KeyAlgorithm::Rsa2048, certificate_profile: None },
        ]
    );
    let names: Vec<_> = c.card_policies().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["standard", "dual", "piv", "extra"], "override keeps its place, new ones follow");
    assert_eq!(c.card_policy("dual"), defaults::builtin_policies().into_iter().find(|p| p.name == "dual"));
    assert_eq!(c.card_policy("missing"), None);
}

#[test]
fn realms_are_validated_by_key() {
    let realm = |name: &str, roles: &str| format!("[[auth.realms]]\nname = {name:?}\nroles = {roles}\n");
    let ok = Config::from_toml_str(&realm("automation", "[\"OPERATOR\", \"USER\"]")).expect("valid realm");
    assert_eq!(ok.auth.realms[0].name, "automation");
    assert_eq!(invalid(&realm("", "[\"USER\"]")).0, "auth.realms[0].name");
    assert_eq!(invalid(&realm("has space", "[\"USER\"]")).0, "auth.realms[0].name");
    assert_eq!(invalid(&realm("password", "[\"USER\"]")).0, "auth.realms[0].name");
    assert_eq!(invalid(&realm("r", "[]")).0, "auth.realms[0].roles");
    let (key, msg) = invalid(&realm("r", "[\"USER\", \"ROOT\"]"));
    assert_eq!(key, "auth.realms[0].roles[1]");
    assert!(msg.contains("ROOT"), "{msg}");
    let twice = format!("{}{}", realm("a", "[\"USER\"]"), realm("A", "[\"USER\"]"));
    assert_eq!(invalid(&twice).0, "auth.realms[1].name");
    parse_error("[[auth.realms]]\nname = \"r\"\nroles = [\"USER\"]\nttl = 3\n");
}
