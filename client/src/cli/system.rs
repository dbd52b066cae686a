//! The CLI's `system` commands, over `SystemService` and the standard gRPC health service:
//! `info`, `health` (each subsystem's entry), `export --out FILE` and `import FILE --mode`.
//! The backup password comes from `CARDHSM_PASSWORD`, the terminal or standard input (see
//! [`super::password`]), never from an argument; the daemon enforces its policy.

use super::args::OutputFormat;
use super::output::Table;
use super::password::{self, SecretSource};
use super::run::{CliError, print};
use cardhsm_client::{CardhsmClient, ClientError};
use cardhsm_proto::v1::system_service_client::SystemServiceClient;
use cardhsm_proto::v1::{
    ExportConfigurationRequest, GetSystemInformationRequest, ImportConfigurationRequest, ImportMode,
    SystemInformation,
};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The password an archive is sealed with (asked twice on a terminal).
const NEW_BACKUP: SecretSource =
    SecretSource { env: "CARDHSM_PASSWORD", prompt: "Backup password: ", confirm: true };
/// The password of an archive to import.
const BACKUP: SecretSource =
    SecretSource { env: "CARDHSM_PASSWORD", prompt: "Backup password: ", confirm: false };

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Version, build, host, uptime, store schema and the configured tokens
    Info,
    /// The health of each subsystem (store, each token, card readers)
    Health,
    /// Write an encrypted archive of the store and configuration (SUPER_ADMIN)
    Export {
        /// The archive file to write
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore an archive; the daemon restarts on it (SUPER_ADMIN)
    Import {
        /// The archive file
        file: PathBuf,
        /// normal keeps the daemon's [server] section; full takes the whole configuration
        #[arg(long, value_enum)]
        mode: Mode,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Normal,
    Full,
}

fn info_json(i: &SystemInformation) -> Value {
    json!({
        "version": i.version, "build": i.build, "host_name": i.host_name,
        "uptime_seconds": i.uptime_seconds, "store_schema_version": i.store_schema_version,
        "tokens": i.tokens.iter().map(|t| json!({
            "label": t.label, "serial": t.serial, "model": t.model, "present": t.present, "role": t.role,
        })).collect::<Vec<_>>(),
    })
}

fn info_text(i: &SystemInformation) -> String {
    let mut out = format!(
        "version:      {}\nbuild:        {}\nhost:         {}\nuptime:       {} s\nstore schema: {}\n",
        i.version, i.build, i.host_name, i.uptime_seconds, i.store_schema_version
    );
    let mut table = Table::new(&["LABEL", "SERIAL", "MODEL", "ROLE", "PRESENT"]);
    for t in &i.tokens {
        table.row([
            t.label.clone(),
            t.serial.clone(),
            t.model.clone(),
            t.role.clone(),
            if t.present { "yes" } else { "no" }.to_owned(),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    out
}

async fn information(client: &CardhsmClient) -> Result<SystemInformation, CliError> {
    Ok(client
        .call(GetSystemInformationRequest {}, |ch, r| async move {
            SystemServiceClient::new(ch).get_system_information(r).await
        })
        .await?)
}

/// The status of one health entry: SERVING, NOT_SERVING, UNKNOWN (NOT_FOUND: not reported yet).
async fn check(client: &CardhsmClient, service: &str) -> Result<&'static str, CliError> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let answer =
        HealthClient::new(client.channel()).check(HealthCheckRequest { service: service.to_owned() }).await;
    Ok(match answer {
        Ok(r) => match ServingStatus::try_from(r.into_inner().status) {
            Ok(ServingStatus::Serving) => "SERVING",
            Ok(ServingStatus::NotServing) => "NOT_SERVING",
            _ => "UNKNOWN",
        },
        Err(s) if s.code() == tonic::Code::NotFound => "UNKNOWN",
        Err(s) => return Err(ClientError::from(s).into()),
    })
}

fn write_archive(out: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |e: std::io::Error| CliError::Input(format!("cannot write {}: {e}", out.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(io_error)?;
    f.write_all(bytes).map_err(io_error)?;
    f.sync_all().map_err(io_error)
}

/// Runs a `system` command.
pub async fn system(
    client: &CardhsmClient,
    format: OutputFormat,
    command: SystemCommand,
) -> Result<(), CliError> {
    match command {
        SystemCommand::Info => {
            let i = information(client).await?;
            print(format, || info_json(&i), || info_text(&i))
        }
        SystemCommand::Health => {
            let i = information(client).await?;
            let mut names = vec![String::new(), "cardhsm.store".to_owned()];
            for t in &i.tokens {
                names.push(format!(
                    "cardhsm.token.{}",
                    if t.serial.is_empty() { &t.label } else { &t.serial }
                ));
            }
            names.push("cardhsm.readers".to_owned());
            let mut rows = Vec::new();
            for n in names {
                let status = check(client, &n).await?;
                rows.push((if n.is_empty() { "(server)".to_owned() } else { n }, status));
            }
            print(
                format,
                || json!(rows.iter().map(|(n, s)| json!({ "service": n, "status": s })).collect::<Vec<_>>()),
                || {
                    let mut table = Table::new(&["SUBSYSTEM", "STATUS"]);
                    for (n, s) in &rows {
                        table.row([n.clone(), (*s).to_owned()]);
                    }
                    table.render()
                },
            )
        }
        SystemCommand::Export { out } => {
            let secret = password::read(NEW_BACKUP)?;
            let request = ExportConfigurationRequest { password: secret.expose().to_owned() };
            let mut chunks = client
                .call(
                    request,
                    |ch, r| async move { SystemServiceClient::new(ch).export_configuration(r).await },
                )
                .await?;
            let mut archive = Vec::new();
            while let Some(chunk) = chunks.message().await.map_err(ClientError::from)? {
                archive.extend_from_slice(&chunk.data);
            }
            write_archive(&out, &archive)?;
            print(
                format,
                || json!({ "file": out.display().to_string(), "bytes": archive.len() }),
                || format!("{} bytes written to {}\n", archive.len(), out.display()),
            )
        }
        SystemCommand::Import { file, mode } => {
            let archive = std::fs::read(&file)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
            let secret = password::read(BACKUP)?;
            let mode = match mode {
                Mode::Normal => ImportMode::Normal,
                Mode::Full => ImportMode::Full,
            };
            let request = ImportConfigurationRequest {
                archive,
                password: secret.expose().to_owned(),
                mode: mode.into(),
            };
            let answer = client
                .call(
                    request,
                    |ch, r| async move { SystemServiceClient::new(ch).import_configuration(r).await },
                )
                .await?;
            print(
                format,
                || {
                    json!({
                        "daemon_version": answer.daemon_version, "schema_version": answer.schema_version,
                        "created_at": answer.created_at, "restarting": answer.restarting,
                        "tokens": answer.tokens.iter().map(|t| json!({ "label": t.label, "serial": t.serial }))
                            .collect::<Vec<_>>(),
                    })
                },
                || {
                    format!(
                        "restored an archive of daemon {} (schema {}); the daemon restarts on it now\n",
                        answer.daemon_version, answer.schema_version
                    )
                },
            )
        }
    }
}
