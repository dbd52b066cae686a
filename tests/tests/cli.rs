//! End-to-end: the real `cardhsm` command-line tool against the real cardhsmd — login with the
//! password from `CARDHSM_PASSWORD`, the 0600 session file, `whoami`, `tokens list`, the card
//! lifecycle with its errors as the CLI reports them (`error: <GRPC CODE>: …`, exit 1),
//! transparent refresh of a rejected or expired access token, and logout.
//!
//! The binary is `<target>/<profile>/cardhsm` of this test's target directory, built with
//! `cargo build -p cardhsm-client --bin cardhsm` once per test process (cargo does nothing when
//! it is fresh); `CARDHSM_BIN` names a prebuilt one instead.

mod support;

use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::{Run, cardhsm_path, store_snapshot};

const OWNER: &str = "user1@corp.example";

/// The CLI of one test: its own session file and HOME, no endpoint, TLS or password from the
/// caller's environment.
struct Cli {
    home: PathBuf,
    session_file: PathBuf,
}

impl Cli {
    fn new(env: &TestEnv) -> Cli {
        let home = env.path().join("cli-home");
        std::fs::create_dir_all(&home).expect("mkdir cli-home");
        Cli { session_file: home.join("state").join("session.json"), home }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cardhsm_path());
        cmd.args(args)
            .env("HOME", &self.home)
            .env("CARDHSM_SESSION_FILE", &self.session_file)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CARDHSM_ENDPOINT")
            .env_remove("CARDHSM_CA_FILE")
            .env_remove("CARDHSM_CERT")
            .env_remove("CARDHSM_KEY")
            .env_remove("CARDHSM_PASSWORD")
            .env_remove("CARDHSM_NEW_PASSWORD")
            .stdin(Stdio::null());
        cmd
    }

    fn output(mut cmd: Command) -> Run {
        let out = cmd.output().expect("running cardhsm");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        Cli::output(self.command(args))
    }

    /// `cardhsm --endpoint <endpoint> login --username admin`, password from CARDHSM_PASSWORD.
    fn login(&self, endpoint: &str) -> Run {
        let mut cmd = self.command(&["--endpoint", endpoint, "login", "--username", "admin"]);
        cmd.env("CARDHSM_PASSWORD", ADMIN_PASSWORD);
        Cli::output(cmd)
    }

    fn session(&self) -> Value {
        let text = std::fs::read_to_string(&self.session_file).expect("read the session file");
        serde_json::from_str(&text).expect("the session file is JSON")
    }

    fn write_session(&self, session: &Value) {
        std::fs::write(&self.session_file, serde_json::to_vec_pretty(session).expect("json"))
            .expect("write the session file");
    }

    fn session_mode(&self) -> u32 {
        std::fs::metadata(&self.session_file).expect("session file metadata").permissions().mode() & 0o777
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn login_whoami_tokens_and_logout() {
    let env = TestEnv::new(2).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = Cli::new(&env);

    // Not logged in yet.
    let r = cli.run(&["whoami"]);
    assert!(r.failed_with("not logged in").contains("cardhsm login"), "{r:#?}");

    // Login: password from the environment, session saved with mode 0600 (directory created).
    let r = cli.login(&daemon.endpoint).ok();
    assert!(r.stdout.contains(&format!("logged in to {} as admin", daemon.endpoint)), "{r:#?}");
    assert!(!r.stdout.contains(ADMIN_PASSWORD) && !r.stderr.contains(ADMIN_PASSWORD), "{r:#?}");
    assert_eq!(cli.session_mode(), 0o600, "session file mode");
    let session = cli.session();
    assert_eq!(str_field(&session, "endpoint"), daemon.endpoint);
    assert!(!str_field(&session, "access_token").is_empty());
    assert!(!str_field(&session, "refresh_token").is_empty());
    let file = std::fs::read_to_string(&cli.session_file).expect("session file");
    assert!(!file.contains(ADMIN_PASSWORD), "the password is never stored");

    // whoami, as a table and as JSON.
    let r = cli.run(&["whoami"]).ok();
    let username_line = r.stdout.lines().find(|l| l.starts_with("username:")).unwrap_or_default();
    assert_eq!(username_line.split_whitespace().collect::<Vec<_>>(), ["username:", "admin"], "{r:#?}");
    let me = cli.run(&["--output", "json", "whoami"]).ok().json();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["roles"], serde_json::json!(["super-admin", "admin"]));

    // tokens list as JSON: the daemon token and both card tokens with their serials.
    let tokens = cli.run(&["--output", "json", "tokens", "list"]).ok().json();
    let tokens = tokens["tokens"].as_array().unwrap_or_else(|| panic!("no tokens array: {tokens}"));
    let serials: Vec<&str> = tokens.iter().map(|t| str_field(t, "serial_number")).collect();
    for serial in &env.card_serials {
        assert!(serials.contains(&serial.as_str()), "card serial {serial} missing from {serials:?}");
    }
    assert!(serials.contains(&env.daemon_token_serial.as_str()), "{serials:?}");
    let card01 = tokens.iter().find(|t| t["label"] == "card-01").expect("card-01 listed");
    assert_eq!(card01["serial_number"], env.card_serials[0].as_str());
    assert_eq!(card01["present"], true);

    // logout removes the file; afterwards commands say so.
    let r = cli.run(&["logout"]).ok();
    assert_eq!(r.stdout, "logged out\n");
    assert!(!cli.session_file.exists(), "logout removes the session file");
    let r = cli.run(&["tokens", "list"]);
    r.failed_with("not logged in");
    let r = cli.run(&["--output", "json", "logout"]).ok();
    assert_eq!(r.json()["logged_out"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn card_lifecycle_and_errors_through_the_cli() {
    let env = TestEnv::new(2).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = Cli::new(&env);
    cli.login(&daemon.endpoint).ok();
    let serial = env.card_serials[0].as_str();

    // register (JSON, to read the id back).
    let card = cli
        .run(&[
            "--output",
            "json",
            "cards",
            "register",
            "--token-serial",
            serial,
            "--owner",
            OWNER,
            "--label",
            "Badge of user1",
            "--pac-number",
            "123",
        ])
        .ok()
        .json();
    let id = str_field(&card, "id").to_owned();
    assert_eq!(card["state"], "assigned");
    assert_eq!(card["serial_number"], serial);
    assert_eq!(card["owner"], OWNER);
    assert_eq!(card["label"], "Badge of user1");
    assert_eq!(card["pac_number"], "123");

    // issue (table): active, with the standard policy's key.
    let r = cli.run(&["cards", "issue", &id]).ok();
    let state_line = r.stdout.lines().find(|l| l.starts_with("state:")).unwrap_or_default();
    assert_eq!(state_line.split_whitespace().collect::<Vec<_>>(), ["state:", "active"], "{r:#?}");
    assert!(r.stdout.lines().any(|l| l.contains(" auth ") && l.contains("EC:P-256")), "{r:#?}");

    // list by owner: one active card with one key.
    let page = cli.run(&["cards", "list", "--owner", OWNER, "--output", "json"]).ok().json();
    let cards = page["cards"].as_array().unwrap_or_else(|| panic!("no cards array: {page}"));
    assert_eq!(cards.len(), 1, "{page}");
    assert_eq!(cards[0]["id"], id.as_str());
    assert_eq!(cards[0]["state"], "active");
    assert_eq!(cards[0]["revoke_reason"], Value::Null, "no reason before revocation");
    assert_eq!(cards[0]["keys"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["total_count"], 1);

    // revoke with a reason.
    let r = cli.run(&["cards", "revoke", &id, "--reason", "lost"]).ok();
    let reason_line = r.stdout.lines().find(|l| l.starts_with("revoke reason:")).unwrap_or_default();
    assert!(reason_line.ends_with(" lost"), "{r:#?}");
    let page = cli.run(&["cards", "list", "--owner", OWNER, "--output", "json"]).ok().json();
    assert_eq!(page["cards"][0]["state"], "revoked", "{page}");
    assert_eq!(page["cards"][0]["revoke_reason"], "lost", "{page}");
    let page =
        cli.run(&["--output", "json", "cards", "list", "--owner", OWNER, "--state", "active"]).ok().json();
    assert_eq!(page["cards"].as_array().map(Vec::len), Some(0), "{page}");

    // Refused requests exit 1 with the gRPC code on stderr and change nothing.
    let before = store_snapshot(&env.store_path());
    let r = cli.run(&["cards", "issue", &id]);
    let line = r.failed_with("FAILED_PRECONDITION: ");
    assert!(line.to_lowercase().contains("revoked"), "the message names the current state: {line}");
    let r = cli.run(&["cards", "enable", &id]);
    r.failed_with("FAILED_PRECONDITION: ");

    let r =
        cli.run(&["cards", "register", "--token-serial", &env.card_serials[1], "--owner", "not an owner"]);
    let line = r.failed_with("INVALID_ARGUMENT: ");
    assert!(line.contains("owner"), "the message names the field: {line}");
    let r = cli.run(&["cards", "list", "--owner", ""]);
    let line = r.failed_with("INVALID_ARGUMENT: ");
    assert!(line.contains("owner"), "the message names the field: {line}");
    assert_eq!(store_snapshot(&env.store_path()), before, "refused requests changed the store");

    // A usage error is clap's: exit 2, before any request.
    let r = cli.run(&["cards", "revoke", &id, "--reason", "stolen"]);
    assert_eq!(r.code, Some(2), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_or_expired_access_token_is_refreshed_transparently() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = Cli::new(&env);
    cli.login(&daemon.endpoint).ok();

    // The daemon rejects the access token (corrupted; its expiry still in the future): the
    // CLI refreshes with the refresh token, retries, and saves the rotated pair.
    let mut session = cli.session();
    let refresh_before = str_field(&session, "refresh_token").to_owned();
    let corrupted = format!("{}x", str_field(&session, "access_token"));
    session["access_token"] = corrupted.clone().into();
    cli.write_session(&session);
    let r = cli.run(&["--output", "json", "whoami"]).ok();
    assert_eq!(r.json()["username"], "admin");
    assert!(!r.stderr.contains("warning"), "{r:#?}");
    let after = cli.session();
    assert_ne!(str_field(&after, "refresh_token"), refresh_before, "the refresh token rotated");
    assert_ne!(str_field(&after, "access_token"), corrupted, "a new access token was saved");
    assert_eq!(str_field(&after, "endpoint"), daemon.endpoint);
    assert_eq!(cli.session_mode(), 0o600, "the rewritten session file is 0600 too");

    // The saved pair works as it is: no second refresh.
    let tokens = cli.run(&["--output", "json", "tokens", "list"]).ok().json();
    assert!(tokens["tokens"].as_array().is_some_and(|t| !t.is_empty()), "{tokens}");
    assert_eq!(cli.session()["refresh_token"], after["refresh_token"], "no refresh needed");

    // An access token the session file says has expired is refreshed before the call.
    let mut session = cli.session();
    let refresh_before = str_field(&session, "refresh_token").to_owned();
    session["access_expires_at"] = 1.into();
    cli.write_session(&session);
    cli.run(&["whoami"]).ok();
    let after = cli.session();
    assert_ne!(str_field(&after, "refresh_token"), refresh_before, "refreshed ahead of expiry");
    assert!(after["access_expires_at"].as_i64().is_some_and(|t| t > 1), "{after}");

    // A spent refresh token cannot bring the session back: the daemon revokes the family and
    // the CLI says to log in again.
    let mut session = cli.session();
    session["access_token"] = "garbage".into();
    session["refresh_token"] = refresh_before.into();
    cli.write_session(&session);
    let r = cli.run(&["whoami"]);
    r.failed_with("UNAUTHENTICATED: ");
    assert!(r.stderr.contains("hint: the session may have expired: run `cardhsm login`"), "{r:#?}");

    // Logging in again works.
    cli.login(&daemon.endpoint).ok();
    cli.run(&["whoami"]).ok();
}
