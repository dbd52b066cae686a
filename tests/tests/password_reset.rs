//! End-to-end: password reset through the real cardhsmd — RequestPasswordReset writes a
//! one-time code to the outbox file (the default notifier), at most once per 15 minutes per
//! login; ResetPassword works once, ends every earlier credential and clears sign-in
//! throttling; expired and used codes are refused; ValidateCode answers; unknown logins answer
//! like known ones without a message; code guessing is cut off with RESOURCE_EXHAUSTED; the
//! code is never stored in clear. With `[notify.smtp]` the code goes to a mail relay instead
//! (here a plain-SMTP listener of the test's own), and a refused message keeps no code.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::Value;
use std::path::PathBuf;
use support::*;
use tonic::Code;

const PASSWORD: &str = "user-password-0123";
const NEW_PASSWORD: &str = "reset-password-4567";

fn outbox(env: &TestEnv) -> PathBuf {
    env.store_path().parent().expect("store dir").join("outbox.jsonl")
}

/// The outbox's messages (none when the file does not exist yet).
fn messages(env: &TestEnv) -> Vec<Value> {
    match std::fs::read_to_string(outbox(env)) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("outbox: {e}"),
    }
}

/// No file of the daemon's (database, WAL, log) but the outbox holds `code` in clear.
#[track_caller]
fn assert_nowhere_but_the_outbox(env: &TestEnv, code: &str) {
    for file in std::fs::read_dir(env.path()).expect("dir") {
        let path = file.expect("entry").path();
        if path == outbox(env) || path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
            "the code appears in clear in {}",
            path.display()
        );
    }
}

/// The code in a reset message's body.
fn code_of(message: &Value) -> String {
    let body = message["body"].as_str().expect("body");
    let line = body.lines().find(|l| l.contains("code:")).unwrap_or_else(|| panic!("no code in {body:?}"));
    line.rsplit(' ').next().expect("code").trim().to_owned()
}

async fn create(admin: &mut Api, username: &str, email: &str) -> pb::User {
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            email: email.into(),
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
}

fn request(username: &str) -> pb::RequestPasswordResetRequest {
    pb::RequestPasswordResetRequest { username: username.into() }
}

fn reset(code: &str, new: &str, repeated: &str) -> pb::ResetPasswordRequest {
    pb::ResetPasswordRequest {
        code: code.into(),
        new_password: new.into(),
        repeated_new_password: repeated.into(),
    }
}

async fn valid(anon: &mut Api, code: &str) -> bool {
    anon.auth
        .validate_code(pb::ValidateCodeRequest { code: code.into() })
        .await
        .expect("validate")
        .into_inner()
        .valid
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_from_the_outbox_resets_the_password_once_and_ends_old_credentials() {
    let env = TestEnv::new(0).expect("env");
    // A long lockout, so that only the reset can lift it within the test.
    let daemon = Daemon::start_with(&env, "[auth]\nlogin_throttle_after = 2\nlogin_throttle_secs = 900\n")
        .await
        .expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let carol = create(&mut admin, "carol_jones", "carol@corp.example").await;
    let old = login(&daemon.endpoint, "carol_jones", PASSWORD).await;
    let mut old_api = api(&daemon.endpoint, Some(old.access_token.clone())).await;
    let mut anon = api(&daemon.endpoint, None).await;

    // Unknown logins (and users without an email) answer exactly like a known one, and nothing
    // is written anywhere.
    create(&mut admin, "no_email_user", "").await;
    let before = store_snapshot(&env.store_path());
    for name in ["nobody_here", "no_email_user"] {
        assert!(anon.auth.request_password_reset(request(name)).await.expect("request").into_inner().sent);
        assert!(!anon.auth.request_password_reset(request(name)).await.expect("again").into_inner().sent);
    }
    assert!(messages(&env).is_empty(), "no message for unknown logins");
    assert_eq!(store_snapshot(&env.store_path()), before);
    expect_invalid_field(anon.auth.request_password_reset(request("")).await, "username");

    // A known login with an email: one message in the outbox, to the user's email.
    assert!(
        anon.auth.request_password_reset(request("CAROL_JONES")).await.expect("request").into_inner().sent
    );
    let sent = messages(&env);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], "carol@corp.example");
    assert!(sent[0]["subject"].as_str().expect("subject").contains("password reset"));
    let code = code_of(&sent[0]);
    assert!(code.len() >= 22, "at least 128 bits, base64url: {code}");
    // Asking again within 15 minutes sends nothing and answers false.
    assert!(
        !anon.auth.request_password_reset(request("carol_jones")).await.expect("again").into_inner().sent
    );
    assert_eq!(messages(&env).len(), 1);
    // The outbox is private to the daemon's user.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(outbox(&env)).expect("outbox").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The store keeps a hash, never the code.
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let (hash, user_id): (Vec<u8>, String) = conn
        .query_row("SELECT code_hash, user_id FROM password_reset_codes", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("one code row");
    assert_eq!(user_id, carol.id);
    assert_eq!(hash.len(), 32);
    assert_nowhere_but_the_outbox(&env, &code);

    // ValidateCode answers for the code, and not for others.
    assert!(valid(&mut anon, &code).await);
    assert!(!valid(&mut anon, "not-a-code-we-issued").await);
    expect_invalid_field(
        anon.auth.validate_code(pb::ValidateCodeRequest { code: String::new() }).await,
        "code",
    );

    // Carol locks herself out by guessing her password.
    for _ in 0..2 {
        expect_code(
            anon.auth
                .login(pb::LoginRequest { username: "carol_jones".into(), password: "guess-1234567".into() })
                .await,
            Code::Unauthenticated,
        );
    }
    expect_code(
        anon.auth.login(pb::LoginRequest { username: "carol_jones".into(), password: PASSWORD.into() }).await,
        Code::ResourceExhausted,
    );

    // The password policy refuses a weak new password, and the code stays usable.
    let before = store_snapshot(&env.store_path());
    expect_invalid_field(anon.auth.reset_password(reset(&code, "short-1", "short-1")).await, "new_password");
    expect_invalid_field(
        anon.auth.reset_password(reset(&code, "no-digits-in-this-one", "no-digits-in-this-one")).await,
        "new_password",
    );
    expect_invalid_field(
        anon.auth.reset_password(reset(&code, NEW_PASSWORD, "reset-password-4568")).await,
        "repeated_new_password",
    );
    expect_invalid_field(
        anon.auth.reset_password(reset("wrong-code", NEW_PASSWORD, NEW_PASSWORD)).await,
        "code",
    );
    assert_eq!(store_snapshot(&env.store_path()), before, "refused resets wrote nothing");
    assert!(valid(&mut anon, &code).await);

    // The reset: new password works at once (throttling cleared), old password and old tokens
    // do not.
    anon.auth.reset_password(reset(&code, NEW_PASSWORD, NEW_PASSWORD)).await.expect("reset");
    expect_code(old_api.auth.who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated);
    expect_code(
        anon.auth.refresh(pb::RefreshRequest { refresh_token: old.refresh_token.clone() }).await,
        Code::Unauthenticated,
    );
    let mut fresh = api_as(&daemon.endpoint, "carol_jones", NEW_PASSWORD).await;
    assert_eq!(
        fresh.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner().user_id,
        carol.id
    );
    expect_code(
        anon.auth.login(pb::LoginRequest { username: "carol_jones".into(), password: PASSWORD.into() }).await,
        Code::Unauthenticated,
    );

    // The code is spent: refused, and no longer valid.
    expect_invalid_field(
        anon.auth.reset_password(reset(&code, "another-password-89", "another-password-89")).await,
        "code",
    );
    assert!(!valid(&mut anon, &code).await);
    assert_nowhere_but_the_outbox(&env, &code);
    assert!(!daemon.log().is_empty() && env.log_path().starts_with(env.path()), "the log was looked at");
    let audited: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE target_id = ?1
             AND action IN ('user.password_reset_request', 'user.password_reset')",
            [&carol.id],
            |r| r.get(0),
        )
        .expect("audit");
    assert_eq!(audited, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_code_is_refused() {
    let env = TestEnv::new(0).expect("env");
    let daemon =
        Daemon::start_with(&env, "[auth]\npassword_reset_code_ttl_secs = 1\n").await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create(&mut admin, "erin_expired", "erin@corp.example").await;
    let mut anon = api(&daemon.endpoint, None).await;
    assert!(
        anon.auth.request_password_reset(request("erin_expired")).await.expect("request").into_inner().sent
    );
    let code = code_of(&messages(&env)[0]);
    // Past its one second (the store keeps whole seconds: wait for two boundaries).
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert!(!valid(&mut anon, &code).await);
    expect_invalid_field(anon.auth.reset_password(reset(&code, NEW_PASSWORD, NEW_PASSWORD)).await, "code");
    api_as(&daemon.endpoint, "erin_expired", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_codes_is_cut_off() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create(&mut admin, "gary_guessed", "gary@corp.example").await;
    let mut anon = api(&daemon.endpoint, None).await;
    assert!(
        anon.auth.request_password_reset(request("gary_guessed")).await.expect("request").into_inner().sent
    );
    let code = code_of(&messages(&env)[0]);
    // Ten wrong guesses (ValidateCode and ResetPassword count alike) ...
    for i in 0..5 {
        assert!(!valid(&mut anon, &format!("guess-{i}")).await);
        expect_invalid_field(
            anon.auth.reset_password(reset(&format!("guess-r{i}"), NEW_PASSWORD, NEW_PASSWORD)).await,
            "code",
        );
    }
    // ... and every further attempt from this source is refused, even with the right code.
    let s = expect_code(
        anon.auth.validate_code(pb::ValidateCodeRequest { code: code.clone() }).await,
        Code::ResourceExhausted,
    );
    assert!(s.message().contains("try again"), "{}", s.message());
    expect_code(
        anon.auth.reset_password(reset(&code, NEW_PASSWORD, NEW_PASSWORD)).await,
        Code::ResourceExhausted,
    );
    api_as(&daemon.endpoint, "gary_guessed", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_requests_validates_and_uses_a_code_without_a_session() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create(&mut admin, "cli_reset", "cli.reset@corp.example").await;
    let cli = CliHome::new(env.path());
    let ep = daemon.endpoint.as_str();
    let sent = cli.json(&["--endpoint", ep, "password", "reset-request", "-u", "cli_reset"]);
    assert_eq!(sent["sent"], true);
    assert_eq!(cli.json(&["--endpoint", ep, "password", "reset-request", "-u", "cli_reset"])["sent"], false);
    let code = code_of(&messages(&env)[0]);
    let with_code = |args: &[&str], code: &str| {
        let mut all = vec!["--output", "json", "--endpoint", ep, "password"];
        all.extend_from_slice(args);
        let mut cmd = cli.command(&all);
        cmd.env("CARDHSM_RESET_CODE", code).env("CARDHSM_NEW_PASSWORD", NEW_PASSWORD);
        CliHome::output(cmd)
    };
    assert_eq!(with_code(&["validate-code"], &code).ok().json()["valid"], true);
    assert_eq!(with_code(&["validate-code"], "nope").ok().json()["valid"], false);
    with_code(&["reset"], &code).ok();
    with_code(&["reset"], &code).failed_with("INVALID_ARGUMENT");
    api_as(&daemon.endpoint, "cli_reset", NEW_PASSWORD).await;
}

/// A mail relay for one test: a plain SMTP listener on 127.0.0.1 that answers RCPT with
/// `rcpt_reply`, takes every other command, and hands each message it accepts to the test.
fn relay(rcpt_reply: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut out) = conn else { return };
            let mut input = BufReader::new(out.try_clone().expect("clone"));
            let _ = out.write_all(b"220 relay.test ESMTP\r\n");
            let mut line = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let verb = line.split([' ', ':', '\r']).next().unwrap_or_default().to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-relay.test\r\n250 8BITMIME\r\n",
                    "RCPT" => rcpt_reply.as_bytes(),
                    "DATA" => {
                        let _ = out.write_all(b"354 go on\r\n");
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if input.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        let _ = tx.send(data);
                        b"250 queued\r\n"
                    }
                    "QUIT" => {
                        let _ = out.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => b"250 ok\r\n",
                };
                let _ = out.write_all(reply);
            }
        }
    });
    (port, rx)
}

fn smtp_toml(port: u16) -> String {
    format!(
        "[notify.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"cardhsm@test.example\"\nsecurity = \"none\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn with_smtp_configured_the_code_goes_to_the_relay_and_works() {
    let env = TestEnv::new(0).expect("env");
    let (port, mail) = relay("250 ok\r\n");
    let daemon = Daemon::start_with(&env, &smtp_toml(port)).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create(&mut admin, "smtp_user", "smtp.user@test.example").await;
    let mut anon = api(&daemon.endpoint, None).await;
    let sent = anon.auth.request_password_reset(request("smtp_user")).await.expect("request").into_inner();
    assert!(sent.sent);
    let data = mail.recv_timeout(std::time::Duration::from_secs(10)).expect("the relay got a message");
    assert!(data.contains("To: <smtp.user@test.example>\r\n"), "{data}");
    assert!(data.contains("From: <cardhsm@test.example>\r\n"), "{data}");
    let line = data.lines().find(|l| l.contains("code:")).unwrap_or_else(|| panic!("no code in {data}"));
    let code = line.rsplit(' ').next().expect("code").trim().to_owned();
    assert!(messages(&env).is_empty(), "nothing goes to the outbox when SMTP is configured");
    anon.auth
        .reset_password(reset(&code, NEW_PASSWORD, NEW_PASSWORD))
        .await
        .expect("reset with the mailed code");
    login(&daemon.endpoint, "smtp_user", NEW_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_refuses_the_message_keeps_no_code() {
    let env = TestEnv::new(0).expect("env");
    let (port, mail) = relay("550 no such mailbox\r\n");
    let daemon = Daemon::start_with(&env, &smtp_toml(port)).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    create(&mut admin, "smtp_refused", "refused@test.example").await;
    let mut anon = api(&daemon.endpoint, None).await;
    let status =
        expect_code(anon.auth.request_password_reset(request("smtp_refused")).await, Code::Unavailable);
    assert!(status.message().contains("550"), "the relay's answer is passed on: {}", status.message());
    assert!(mail.try_recv().is_err(), "no message was accepted");
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let codes: i64 =
        conn.query_row("SELECT COUNT(*) FROM password_reset_codes", [], |r| r.get(0)).expect("count");
    assert_eq!(codes, 0, "an undelivered code is not kept");
    // So the next request is not held back for 15 minutes: it tries (and fails) again.
    expect_code(anon.auth.request_password_reset(request("smtp_refused")).await, Code::Unavailable);
}
