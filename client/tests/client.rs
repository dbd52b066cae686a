//! Library behaviour of `CardhsmClient` against the stand-in daemon of `common`: login, the
//! bearer header, transparent refresh (before expiry and after one UNAUTHENTICATED), one refresh
//! for many concurrent callers, persistence of rotated tokens, raw clients and error codes.

mod common;

use anyhow::{Context, Result, ensure};
use cardhsm_client::v1::{GetCardRequest, RevokeReason, Role};
use cardhsm_client::{CardhsmClient, ClientError, Session};
use common::{ADMIN, ADMIN_PASSWORD, FakeDaemon};
use std::sync::{Arc, Mutex};
use tonic::Code;

const FIFTEEN_MINUTES: u32 = 900;

async fn logged_in(expires_in: u32) -> Result<(FakeDaemon, CardhsmClient)> {
    let daemon = FakeDaemon::start(expires_in).await?;
    let client = CardhsmClient::connect(daemon.endpoint()).await?;
    let info = client.login(ADMIN, ADMIN_PASSWORD).await?;
    ensure!(info.roles == [Role::Admin], "roles {:?}", info.roles);
    Ok((daemon, client))
}

#[tokio::test]
async fn login_then_calls_carry_the_token() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    assert_eq!(client.who_am_i().await?.username, ADMIN);
    let card = client.get_card("c-1").await?;
    assert_eq!(card.owner, "alice@corp.example");
    let page = client.list_cards("alice@corp.example", None, 10, "").await?;
    assert_eq!(page.cards.len(), 2);
    assert_eq!(client.list_tokens().await?.len(), 1);
    let revoked = client.revoke_card("c-1", RevokeReason::UserRemoved, "left the company").await?;
    assert_eq!(revoked.revoke_reason, i32::from(RevokeReason::UserRemoved));
    let state = daemon.fake.state();
    assert_eq!((state.refreshes, state.unauthenticated), (0, 0));
    Ok(())
}

#[tokio::test]
async fn wrong_password_keeps_code_and_message() -> Result<()> {
    let daemon = FakeDaemon::start(FIFTEEN_MINUTES).await?;
    let client = CardhsmClient::connect(daemon.endpoint()).await?;
    let err = client.login(ADMIN, "wrong").await.err().context("login should fail")?;
    assert_eq!(err.code(), Some(Code::Unauthenticated));
    assert_eq!(err.message(), "wrong username or password");
    assert_eq!(err.to_string(), "UNAUTHENTICATED: wrong username or password");
    assert!(client.tokens().is_none());
    assert!(!client.is_authenticated());
    Ok(())
}

#[tokio::test]
async fn unauthenticated_answer_refreshes_and_retries_once() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    let before = client.tokens().context("tokens after login")?;
    daemon.fake.expire_access_tokens();
    assert_eq!(client.who_am_i().await?.username, ADMIN);
    let after = client.tokens().context("tokens after refresh")?;
    assert_ne!(before.access_token, after.access_token);
    assert_ne!(before.refresh_token, after.refresh_token);
    let state = daemon.fake.state();
    assert_eq!((state.refreshes, state.unauthenticated), (1, 1));
    Ok(())
}

#[tokio::test]
async fn token_close_to_expiry_is_refreshed_before_the_call() -> Result<()> {
    // 10 s left is inside the 30 s margin: every call refreshes first and is never turned away.
    let (daemon, client) = logged_in(10).await?;
    client.who_am_i().await?;
    client.get_card("c-1").await?;
    let state = daemon.fake.state();
    assert_eq!((state.refreshes, state.unauthenticated), (2, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_refresh() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    daemon.fake.expire_access_tokens();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.who_am_i().await })
        })
        .collect();
    for call in calls {
        call.await??;
    }
    // Refresh tokens rotate: a second refresh with the spent token would have failed a caller.
    assert_eq!(daemon.fake.state().refreshes, 1);
    Ok(())
}

#[tokio::test]
async fn failed_refresh_reports_the_refresh_error() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    daemon.fake.expire_access_tokens();
    daemon.fake.expire_refresh_tokens();
    let err = client.who_am_i().await.err().context("should fail")?;
    assert_eq!(err.code(), Some(Code::Unauthenticated));
    assert_eq!(err.message(), "refresh token expired or already used");
    assert_eq!(daemon.fake.state().refreshes, 1);
    Ok(())
}

#[tokio::test]
async fn rotated_tokens_are_saved_to_the_session_file() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.json");
    Session { endpoint: daemon.endpoint(), tokens: client.tokens().context("tokens")? }.save(&path)?;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    Session::save_on_change(&client, path.clone(), daemon.endpoint(), move |e: &ClientError| {
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
    });
    daemon.fake.expire_access_tokens();
    client.who_am_i().await?;
    let saved = Session::load(&path)?.context("session file")?;
    assert_eq!(Some(saved.tokens), client.tokens());
    assert_eq!(saved.endpoint, daemon.endpoint());
    assert!(errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    // A client restored from the file works without logging in.
    let restored = saved_client(&daemon, &path).await?;
    assert_eq!(restored.who_am_i().await?.username, ADMIN);
    Ok(())
}

async fn saved_client(daemon: &FakeDaemon, path: &std::path::Path) -> Result<CardhsmClient> {
    let session = Session::load(path)?.context("session file")?;
    Ok(session.client(CardhsmClient::connect(daemon.endpoint()).await?))
}

#[tokio::test]
async fn bare_access_token_is_sent_as_is_and_never_refreshed() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    let forged = client.clone().with_access_token("forged-token");
    let err = forged.who_am_i().await.err().context("forged token should fail")?;
    assert_eq!(err.code(), Some(Code::Unauthenticated));
    assert_eq!(daemon.fake.state().refreshes, 0);
    // The original client keeps its own credentials.
    assert_eq!(client.who_am_i().await?.username, ADMIN);
    // And a copy of a real token works.
    let token = client.tokens().context("tokens")?.access_token;
    assert_eq!(client.clone().with_access_token(token).who_am_i().await?.username, ADMIN);
    Ok(())
}

#[tokio::test]
async fn raw_clients_attach_the_token_and_return_status() -> Result<()> {
    let (daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    let card = client.cards_raw().get_card(GetCardRequest { id: "c-1".into() }).await?;
    assert_eq!(card.get_ref().id, "c-1");
    let status = client.cards_raw().get_card(GetCardRequest { id: "nope".into() }).await.err();
    assert_eq!(status.map(|s| s.code()), Some(Code::NotFound));
    let no_login = CardhsmClient::connect(daemon.endpoint()).await?;
    let status = no_login.auth_raw().who_am_i(cardhsm_client::v1::WhoAmIRequest {}).await.err();
    assert_eq!(status.map(|s| s.code()), Some(Code::Unauthenticated));
    Ok(())
}

#[tokio::test]
async fn not_found_is_an_rpc_error() -> Result<()> {
    let (_daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    let err = client.get_card("c-404").await.err().context("should fail")?;
    assert!(matches!(err, ClientError::Rpc(_)));
    assert_eq!(err.to_string(), "NOT_FOUND: card c-404 not found");
    Ok(())
}

#[tokio::test]
async fn debug_output_never_shows_tokens() -> Result<()> {
    let (_daemon, client) = logged_in(FIFTEEN_MINUTES).await?;
    let tokens = client.tokens().context("tokens")?;
    let shown = format!("{client:?} {tokens:?} {:?}", client.interceptor());
    assert!(!shown.contains(tokens.access_token.expose()), "{shown}");
    assert!(!shown.contains(tokens.refresh_token.expose()), "{shown}");
    Ok(())
}

#[tokio::test]
async fn unreachable_daemon_is_unavailable() -> Result<()> {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let err =
        CardhsmClient::connect(format!("http://127.0.0.1:{port}")).await.err().context("should fail")?;
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(err.code(), Some(Code::Unavailable));
    Ok(())
}
