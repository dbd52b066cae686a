//! `cardhsmd`: reads the configuration, sets up logging, and runs the daemon (app::run).

use clap::Parser;
use hsm_config::{Config, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// cardhsm daemon: smart cards and HSM keys over PKCS#11, served over gRPC.
///
/// PINs and passwords are never taken from the command line: the config file names an
/// environment variable or a file for each (see cardhsm.example.toml).
#[derive(Debug, Parser)]
#[command(name = "cardhsmd", version, about)]
struct Args {
    /// TOML configuration file. Without one, the embedded defaults are used (gRPC on
    /// 127.0.0.1:50051, SQLite cardhsm.sqlite3 in the current directory, SoftHSM module).
    #[arg(long, short = 'c', env = "CARDHSM_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration, print the fully defaulted result, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cardhsmd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    cardhsmd::service::system::set_config_path(args.config.as_deref());
    if let Some(restore) =
        cardhsmd::service::system::interrupted_restore(&config.store.path, args.config.as_deref())
    {
        tracing::warn!("finishing a restore staged before the daemon last stopped");
        let e = restore.apply_and_exec();
        tracing::error!(error = %e, "applying the restored store and configuration failed");
        eprintln!("cardhsmd: restore: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cardhsmd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cardhsmd::app::run(config));
    // Ending the runtime drops every task and with them the last store connections, so a
    // restore staged by ImportConfiguration can replace the store file (service/system.rs).
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if result.is_ok()
        && let Some(restore) = cardhsmd::service::system::take_pending_restore()
    {
        let e = restore.apply_and_exec();
        tracing::error!(error = %e, "applying the restored store and configuration failed");
        eprintln!("cardhsmd: restore: {e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cardhsmd stopped");
            eprintln!("cardhsmd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.logging.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
