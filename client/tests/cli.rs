//! The `cardhsm` binary end to end against the stand-in daemon of `common`: login from the
//! environment and from stdin, the 0600 session file, JSON and table output, rotated tokens saved
//! after a transparent refresh, logout, and the error and exit-code conventions.

mod common;

use anyhow::{Context, Result};
use cardhsm_client::Session;
use cardhsm_client::v1::RevokeReason;
use common::{ADMIN, ADMIN_PASSWORD, FakeDaemon};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

struct Cli {
    home: TempDir,
    endpoint: String,
}

impl Cli {
    fn new(daemon: &FakeDaemon) -> Result<Self> {
        Ok(Self { home: tempfile::tempdir()?, endpoint: daemon.endpoint() })
    }

    fn session_file(&self) -> PathBuf {
        self.home.path().join("state").join("session.json")
    }

    /// `cardhsm ARGS` with a clean environment of its own.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardhsm"));
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("CARDHSM_SESSION_FILE", self.session_file())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.command(args).output().await?)
    }

    async fn login(&self) -> Result<Output> {
        let mut command = self.command(&["login", "--username", ADMIN, "--endpoint", &self.endpoint]);
        Ok(command.env("CARDHSM_PASSWORD", ADMIN_PASSWORD).output().await?)
    }

    async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let output = self.run(&all).await?;
        anyhow::ensure!(output.status.success(), "{args:?} failed: {}", text(&output.stderr));
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.mode() & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_a_private_session_and_commands_use_it() -> Result<()> {
    let daemon = FakeDaemon::start(900).await?;
    let cli = Cli::new(&daemon)?;
    let output = cli.login().await?;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!("logged in to {} as admin (roles: admin)", cli.endpoint)),
        "{stdout}"
    );
    assert!(!stdout.contains("access-") && !stdout.contains("refresh-"), "tokens printed: {stdout}");

    let path = cli.session_file();
    assert_eq!(mode(&path)?, 0o600);
    assert_eq!(mode(path.parent().context("dir")?)?, 0o700);
    let session = Session::load(&path)?.context("session saved")?;
    assert_eq!(session.endpoint, cli.endpoint);

    let me = cli.json(&["whoami"]).await?;
    assert_eq!(me["username"], "admin");
    assert_eq!(me["roles"], serde_json::json!(["admin"]));

    let table = text(&cli.run(&["cards", "list", "--owner", "alice@corp.example"]).await?.stdout);
    assert!(table.starts_with("ID   SERIAL   OWNER               STATE   POLICY   LABEL"), "{table}");
    assert!(table.ends_with("(2 of 3 cards; next page: --page-token page-2)\n"), "{table}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_can_come_from_stdin() -> Result<()> {
    let daemon = FakeDaemon::start(900).await?;
    let cli = Cli::new(&daemon)?;
    let mut child = cli
        .command(&["login", "--username", ADMIN, "--endpoint", &cli.endpoint])
        .stdin(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(format!("{ADMIN_PASSWORD}\n").as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    assert!(output.status.success(), "{}", text(&output.stderr));

    // users create reads the new user's password the same way.
    let mut child = cli
        .command(&["users", "create", "--username", "bob", "--role", "operator"])
        .stdin(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(b"a long enough password\r\n").await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let created = daemon.fake.state().created_users.clone();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].password, "a long enough password");
    assert_eq!(created[0].roles, [i32::from(cardhsm_client::v1::Role::Operator)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_sends_the_reason_and_prints_names() -> Result<()> {
    let daemon = FakeDaemon::start(900).await?;
    let cli = Cli::new(&daemon)?;
    cli.login().await?;
    let card = cli.json(&["cards", "revoke", "c-1", "--reason", "user-removed", "--comment", "left"]).await?;
    assert_eq!(card["state"], "revoked");
    assert_eq!(card["revoke_reason"], "user-removed");
    assert_eq!(card["keys"][0]["public_key_der"], "3059");
    let sent = daemon.fake.state().revoke_requests.clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].reason, i32::from(RevokeReason::UserRemoved));
    assert_eq!(sent[0].comment, "left");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_tokens_are_saved_back() -> Result<()> {
    let daemon = FakeDaemon::start(900).await?;
    let cli = Cli::new(&daemon)?;
    cli.login().await?;
    let before = Session::load(&cli.session_file())?.context("session")?;
    daemon.fake.expire_access_tokens();
    let tokens = cli.json(&["tokens", "list"]).await?;
    assert_eq!(tokens["tokens"][0]["card_id"], "c-1");
    let after = Session::load(&cli.session_file())?.context("session")?;
    assert_ne!(before.tokens.access_token, after.tokens.access_token);
    assert_ne!(before.tokens.refresh_token, after.tokens.refresh_token);
    assert_eq!(mode(&cli.session_file())?, 0o600);
    // The next run uses the saved pair: no further refresh is needed.
    cli.json(&["whoami"]).await?;
    assert_eq!(daemon.fake.state().refreshes, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_go_to_stderr_with_exit_codes() -> Result<()> {
    let daemon = FakeDaemon::start(900).await?;
    let cli = Cli::new(&daemon)?;

    let output = cli.run(&["whoami"]).await?;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "error: not logged in: run `cardhsm login`\n");

    let output = cli.run(&["login", "--username", ADMIN, "--password", "x"]).await?;
    assert_eq!(output.status.code(), Some(2));

    let mut wrong = cli.command(&["login", "--username", ADMIN, "--endpoint", &cli.endpoint]);
    let output = wrong.env("CARDHSM_PASSWORD", "wrong").output().await?;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).starts_with("error: UNAUTHENTICATED: wrong username or password\n"));
    assert!(!cli.session_file().exists());

    cli.login().await?;
    let output = cli.run(&["cards", "get", "c-404"]).await?;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "error: NOT_FOUND: card c-404 not found\n");
    assert!(output.stdout.is_empty());

    let output = cli.run(&["whoami", "--endpoint", "http://127.0.0.1:1"]).await?;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("is for http://127.0.0.1:"), "{}", text(&output.stderr));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_removes_the_session() -> Result<()> {
    let daemon = FakeDaemon::start(900).await?;
    let cli = Cli::new(&daemon)?;
    cli.login().await?;
    assert_eq!(cli.json(&["logout"]).await?["logged_out"], true);
    assert!(!cli.session_file().exists());
    assert_eq!(text(&cli.run(&["logout"]).await?.stdout), "not logged in\n");
    Ok(())
}
