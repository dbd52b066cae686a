//! Start-up and shutdown: opens the store and the PKCS#11 module, builds the services,
//! creates the bootstrap administrator on first start, binds the gRPC and REST listeners and
//! serves both until SIGTERM, SIGINT or a restore.

use crate::service::Services;
use crate::service::auth::Bootstrap;
use crate::store::Store;
use crate::token::TokenManager;
use crate::{grpc, rest, store};
use hsm_config::Config;
use std::io::IsTerminal;
use std::path::Path;

/// Why the daemon could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store {path}: {source}")]
    Store { path: String, source: store::StoreError },
    #[error("PKCS#11: {0}")]
    Token(#[from] crate::token::TokenError),
    #[error("{0}")]
    Service(#[from] crate::service::ServiceError),
    #[error("bootstrap password: {0}")]
    Secret(#[from] hsm_config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    ReadyFile { path: String, source: std::io::Error },
    #[error("{0}")]
    Serve(#[from] grpc::ServeError),
    #[error("{0}")]
    Rest(#[from] rest::ServeError),
}

/// Runs the daemon until a termination signal.
pub async fn run(config: Config) -> Result<(), StartError> {
    let store_cfg = config.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_cfg.path, store_cfg.readers))
        .await
        .map_err(|e| StartError::Store {
            path: config.store.path.display().to_string(),
            source: store::StoreError::Task(e.to_string()),
        })?
        .map_err(|source| StartError::Store { path: config.store.path.display().to_string(), source })?;
    tracing::info!(path = %store.path().display(), schema = store::SCHEMA_VERSION, "store open");

    let pkcs11 = config.pkcs11.clone();
    let tokens = tokio::task::spawn_blocking(move || TokenManager::open(&pkcs11))
        .await
        .map_err(|e| crate::service::ServiceError::Internal(e.to_string()))??;
    tracing::info!(module = %config.pkcs11.module.display(), "PKCS#11 module initialised");

    let services = {
        let (config, store, tokens) = (config.clone(), store.clone(), tokens.clone());
        tokio::task::spawn_blocking(move || Services::new(&config, store, tokens))
            .await
            .map_err(|e| crate::service::ServiceError::Internal(e.to_string()))??
    };

    let configured = config.auth.bootstrap_password.load("auth.bootstrap_password")?;
    let auth = services.auth.clone();
    let bootstrap = tokio::task::spawn_blocking(move || auth.bootstrap(configured))
        .await
        .map_err(|e| crate::service::ServiceError::Internal(e.to_string()))??;
    announce_bootstrap(bootstrap, store.path());

    let (listener, addr) = bind(config.server.grpc_listen).await?;
    let (rest_listener, rest_addr) = bind(config.server.rest_listen).await?;
    let scheme = if config.server.tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %addr, rest = %rest_addr, "gRPC and REST listening");
    eprintln!("cardhsmd: gRPC listening on {scheme}://{addr}");
    eprintln!("cardhsmd: REST listening on {scheme}://{rest_addr} (OpenAPI at /openapi.json)");
    eprintln!("cardhsmd: log in with: cardhsm --endpoint {scheme}://{addr} login --username admin");
    if let Some(path) = &config.server.ready_file {
        // Written beside and renamed into place, so a watcher never reads half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{addr}\n{rest_addr}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| StartError::ReadyFile { path: path.display().to_string(), source })?;
    }

    // The batch engine resumes every unfinished batch. On SIGTERM it stops taking work at
    // once (in-flight device groups commit) while the servers drain, then gets what is left
    // of ~8 s to finish, so the daemon exits within 10 s. An import (restore) stops the
    // servers the same way; main then restarts the daemon on the restored data.
    let batches = services.batches.clone();
    batches.start().await?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (signal_batches, restart) = (batches.clone(), services.system.clone());
    // Reader watch streams never end by themselves; the servers' drain would wait for them.
    let readers = services.readers.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = restart.restart_requested() => {}
        }
        signal_batches.stop();
        readers.close_watches();
        stop.send_replace(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (grpc_result, rest_result) = tokio::join!(
        grpc::serve(&config.server, listener, services.clone(), stopped(stopping.clone())),
        rest::serve(&config.server, rest_listener, services, stopped(stopping)),
    );
    grpc_result?;
    rest_result?;
    if !batches.stopped(std::time::Duration::from_secs(8)).await {
        tracing::warn!("batch workers still busy at exit; their unfinished devices resume on restart");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Binds `addr` (port 0 picks a free port) and says which address it got.
async fn bind(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), StartError> {
    let bound = |source| StartError::Bind { addr: addr.to_string(), source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bound)?;
    let local = listener.local_addr().map_err(bound)?;
    Ok((listener, local))
}

/// Tells the operator how to log in the first time. A generated password is shown on the
/// terminal only, never logged; when stderr is not a terminal it goes to a user-only file.
fn announce_bootstrap(bootstrap: Bootstrap, store_path: &Path) {
    match bootstrap {
        Bootstrap::AlreadyDone => {}
        Bootstrap::CreatedWithConfiguredPassword => {
            tracing::info!(
                username = "admin",
                "bootstrap administrator created with the configured password"
            );
        }
        Bootstrap::CreatedWithGeneratedPassword(password) => {
            let dir = store_path.parent().unwrap_or_else(|| Path::new("."));
            let file = dir.join("bootstrap-admin.password");
            let written = write_private(&file, password.0.as_bytes());
            if std::io::stderr().is_terminal() {
                eprintln!("cardhsmd: created administrator `admin` with password: {}", password.0.as_str());
            }
            match written {
                Ok(()) => {
                    eprintln!("cardhsmd: the administrator password is in {} (mode 0600)", file.display())
                }
                Err(e) => tracing::warn!(error = %e, "could not write the bootstrap password file"),
            }
            tracing::info!(username = "admin", "bootstrap administrator created with a generated password");
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.write_all(b"\n")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
