//! The CLI's `batch` commands, over `BatchService`: turn flags and files into requests, call the
//! daemon through `CardhsmClient::batch_call`, print the answer (`--output json` for scripts).
//! `watch` and `download` follow server streams, with a progress bar on stderr (hidden when
//! stderr is not a terminal, or with `--no-progress`); `download` writes each chunk to disk as
//! it arrives, so a 10,000-device ZIP never sits in memory. Checks are the daemon's (it names
//! the bad field, the CSV row and column, the bad CSR); the CLI only reads files and flags.

use super::args::{OutputFormat, parse_param, parse_reason};
use super::issuance::params_map;
use super::output::{Table, time};
use super::run::{CliError, print};
use cardhsm_client::v1::{
    Batch, BatchKind, BatchProgress, BatchStatus, CreateBatchRequest, CreateBatchResponse,
    CreateSingleCertBatchRequest, DownloadBatchRequest, GeneratorParams, GetBatchRequest, ListBatchesRequest,
    RejectBatchRequest, RevokeBatchRequest, UploadCsrBatchRequest, UploadCsvBatchRequest, WatchBatchRequest,
};
use cardhsm_client::{CardhsmClient, ClientError};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where a batch's PKCS#12 password comes from; empty = the daemon generates one and answers
/// it once. Never an argument (it would show in `ps` and shell history).
pub const PKCS12_PASSWORD_ENV: &str = "CARDHSM_PKCS12_PASSWORD";

/// Who issues, under which profile, for which organization, and the batch's name.
#[derive(Debug, Args)]
pub struct Target {
    /// Organization id the batch belongs to
    #[arg(long = "org", value_name = "ID")]
    organization: String,
    /// Authority id that issues (must be assigned to the organization)
    #[arg(long, value_name = "ID")]
    authority: String,
    /// Issuance profile id
    #[arg(long, value_name = "ID")]
    profile: String,
    /// Batch name, 1 to 255 characters
    #[arg(long)]
    name: String,
    /// A profile parameter every device shares (repeat for several)
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Certificate validity in years [default: the profile's]
    #[arg(long, value_name = "N", default_value_t = 0)]
    validity_years: u32,
}

/// The key the daemon generates for each device.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Key type the profile accepts (EC:P-256, RSA:2048, …) [default: the profile's first]
    #[arg(long, value_name = "TYPE", default_value = "")]
    key_type: String,
}

/// A generator batch: `size` devices numbered from `start` by `increment`.
#[derive(Debug, Args)]
pub struct GeneratorArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    key: KeyArgs,
    /// Number of devices
    #[arg(long)]
    size: u32,
    /// Generator id (see ListGenerators)
    #[arg(long, default_value = "serial")]
    generator: String,
    /// First generated value
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    start: i64,
    /// Step between generated values
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    increment: i64,
}

/// Following a stream: a progress bar or not.
#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// No progress bar (scripts; the bar is also hidden when stderr is not a terminal)
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Create a batch of devices whose generated parameter counts up
    ///
    /// The PKCS#12 password comes from CARDHSM_PKCS12_PASSWORD; without it the daemon
    /// generates one and it is printed once.
    Create(GeneratorArgs),
    /// Create a batch of one device
    Single {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Create a batch from CSRs: one PEM file with many requests, or a ZIP of CSR files
    UploadCsr {
        #[command(flatten)]
        target: Target,
        /// The PEM or ZIP file
        file: PathBuf,
    },
    /// Create a batch from a CSV file: a header row naming the profile's parameters, a row per device
    UploadCsv {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        key: KeyArgs,
        /// The CSV file (RFC 4180, UTF-8)
        file: PathBuf,
    },
    /// What `create` would make: the first device's parameters and subject, the first values
    Preview(GeneratorArgs),
    /// List batches, newest first
    List {
        /// Only this organization
        #[arg(long = "org", value_name = "ID")]
        organization: Option<String>,
        /// Only this status (e.g. ready-for-download, pending-issue, broken)
        #[arg(long, value_parser = parse_status)]
        status: Option<BatchStatus>,
        /// Name contains this text (any case)
        #[arg(long)]
        name: Option<String>,
        /// Page index (0-based)
        #[arg(long, default_value_t = 0)]
        page: u32,
        /// Batches per page, at most 100 [default: 20]
        #[arg(long, default_value_t = 0)]
        size: u32,
        /// Sort by created_at, name, batch_size or status
        #[arg(long, default_value = "")]
        sort_by: String,
        /// Oldest / smallest first
        #[arg(long)]
        ascending: bool,
    },
    /// Show one batch
    Show { id: String },
    /// A batch's status and how many devices are done
    Status { id: String },
    /// Follow a batch until the engine is done with it
    Watch {
        id: String,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Download a batch's ZIP (PKCS#12 or PEM per device, and manifest.csv)
    Download {
        id: String,
        /// Where to write the ZIP (written as FILE.part, renamed when complete)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Reject a finished batch before its first download (its balance is given back)
    Reject {
        id: String,
        /// Why, 1 to 1024 characters
        #[arg(long)]
        reason: String,
    },
    /// Revoke every certificate of a downloaded batch
    Revoke {
        id: String,
        /// RFC 5280 reason: its openssl name or code
        #[arg(long, value_parser = parse_reason)]
        reason: u32,
        /// Text for the audit log
        #[arg(long, default_value = "")]
        comment: String,
    },
}

/// A status as the CLI spells it: `BATCH_STATUS_READY_FOR_DOWNLOAD` → `ready-for-download`.
pub fn status_name(value: i32) -> String {
    match BatchStatus::try_from(value) {
        Ok(s) => enum_name(s.as_str_name(), "BATCH_STATUS_"),
        Err(_) => format!("unknown({value})"),
    }
}

fn kind_name(value: i32) -> String {
    match BatchKind::try_from(value) {
        Ok(k) => enum_name(k.as_str_name(), "BATCH_KIND_"),
        Err(_) => format!("unknown({value})"),
    }
}

fn enum_name(proto: &str, prefix: &str) -> String {
    proto.trim_start_matches(prefix).to_ascii_lowercase().replace('_', "-")
}

/// `--status`: a status by its CLI name (`-` and `_` alike, any case).
pub fn parse_status(text: &str) -> Result<BatchStatus, String> {
    let wanted = text.trim().to_ascii_uppercase().replace('-', "_");
    BatchStatus::from_str_name(&format!("BATCH_STATUS_{wanted}"))
        .filter(|s| *s != BatchStatus::Unspecified)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a batch status: pending-creation, pending-issue, issued-partly, \
                 ready-for-download, zip-removed-after-expiration, processing-reject, processing-revoke, \
                 rejected, revoked, broken"
            )
        })
}

/// One batch as JSON.
pub fn batch_json(b: &Batch) -> Value {
    json!({
        "id": b.id, "name": b.name, "kind": kind_name(b.kind), "status": status_name(b.status),
        "status_reason": b.status_reason, "organization_id": b.organization_id,
        "authority_id": b.authority_id, "profile_id": b.profile_id, "key_type": b.key_type,
        "generator_id": b.generator_id, "batch_size": b.batch_size, "issued": b.issued,
        "failed": b.failed, "created_by": b.created_by, "created_at": b.created_at,
        "updated_at": b.updated_at, "finished_at": b.finished_at,
        "first_downloaded_at": b.first_downloaded_at,
    })
}

/// One batch for people.
pub fn batch_table(b: &Batch) -> String {
    let mut t = Table::without_header();
    t.row(["id:", &b.id])
        .row(["name:", &b.name])
        .row(["kind:", &kind_name(b.kind)])
        .row(["status:", &status_name(b.status)]);
    if !b.status_reason.is_empty() {
        t.row(["reason:", &b.status_reason]);
    }
    t.row(["organization:", &b.organization_id])
        .row(["authority:", &b.authority_id])
        .row(["profile:", &b.profile_id])
        .row(["key type:", &b.key_type])
        .row(["devices:", &format!("{} ({} issued, {} failed)", b.batch_size, b.issued, b.failed)])
        .row(["created:", &format!("{} by {}", time(b.created_at), b.created_by)])
        .row(["finished:", &time(b.finished_at)])
        .row(["downloaded:", &time(b.first_downloaded_at)]);
    t.render()
}

fn created_json(r: &CreateBatchResponse) -> Value {
    let mut v = r.batch.as_ref().map(batch_json).unwrap_or(Value::Null);
    if !r.pkcs12_password.is_empty()
        && let Value::Object(map) = &mut v
    {
        map.insert("pkcs12_password".into(), json!(r.pkcs12_password));
    }
    v
}

fn created_table(r: &CreateBatchResponse) -> String {
    let mut out = r.batch.as_ref().map(batch_table).unwrap_or_default();
    if !r.pkcs12_password.is_empty() {
        // Shown once: the daemon never returns it again.
        out.push_str(&format!("PKCS#12 password (shown once, keep it): {}\n", r.pkcs12_password));
    }
    out
}

fn progress_json(p: &BatchProgress) -> Value {
    json!({
        "batch_id": p.batch_id, "status": status_name(p.status), "batch_size": p.batch_size,
        "issued": p.issued, "failed": p.failed, "done": p.done,
    })
}

fn progress_line(p: &BatchProgress) -> String {
    format!(
        "{}: {} issued, {} failed of {}{}",
        status_name(p.status),
        p.issued,
        p.failed,
        p.batch_size,
        if p.done { " (done)" } else { "" }
    )
}

fn pkcs12_password() -> Result<String, CliError> {
    match std::env::var_os(PKCS12_PASSWORD_ENV) {
        None => Ok(String::new()),
        Some(v) => {
            v.into_string().map_err(|_| CliError::Input(format!("{PKCS12_PASSWORD_ENV} is not valid UTF-8")))
        }
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::Input(format!("cannot read the {what} {}: {e}", path.display())))
}

fn create_request(a: GeneratorArgs) -> Result<CreateBatchRequest, CliError> {
    Ok(CreateBatchRequest {
        organization_id: a.target.organization,
        authority_id: a.target.authority,
        profile_id: a.target.profile,
        batch_name: a.target.name,
        generator_id: a.generator,
        generator_params: Some(GeneratorParams { start_value: a.start, increment: a.increment }),
        batch_size: a.size,
        profile_params: params_map(a.target.params)?,
        key_type: a.key.key_type,
        pkcs12_password: pkcs12_password()?,
        validity_years: a.target.validity_years,
    })
}

/// Runs a `batch` command.
pub async fn batch(
    client: &CardhsmClient,
    format: OutputFormat,
    command: BatchCommand,
) -> Result<(), CliError> {
    let created = |r: CreateBatchResponse| print(format, || created_json(&r), || created_table(&r));
    match command {
        BatchCommand::Create(args) => {
            let request = create_request(args)?;
            created(client.batch_call(request, |mut c, r| async move { c.create_batch(r).await }).await?)
        }
        BatchCommand::Single { target, key } => {
            let request = CreateSingleCertBatchRequest {
                organization_id: target.organization,
                authority_id: target.authority,
                profile_id: target.profile,
                batch_name: target.name,
                profile_params: params_map(target.params)?,
                key_type: key.key_type,
                pkcs12_password: pkcs12_password()?,
                validity_years: target.validity_years,
            };
            created(
                client
                    .batch_call(request, |mut c, r| async move { c.create_single_cert_batch(r).await })
                    .await?,
            )
        }
        BatchCommand::UploadCsr { target, file } => {
            let request = UploadCsrBatchRequest {
                organization_id: target.organization,
                authority_id: target.authority,
                profile_id: target.profile,
                batch_name: target.name,
                profile_params: params_map(target.params)?,
                files: read_file("CSR file", &file)?,
                validity_years: target.validity_years,
            };
            created(client.batch_call(request, |mut c, r| async move { c.upload_csr_batch(r).await }).await?)
        }
        BatchCommand::UploadCsv { target, key, file } => {
            let request = UploadCsvBatchRequest {
                organization_id: target.organization,
                authority_id: target.authority,
                profile_id: target.profile,
                batch_name: target.name,
                profile_params: params_map(target.params)?,
                file: read_file("CSV file", &file)?,
                key_type: key.key_type,
                pkcs12_password: pkcs12_password()?,
                validity_years: target.validity_years,
            };
            created(client.batch_call(request, |mut c, r| async move { c.upload_csv_batch(r).await }).await?)
        }
        BatchCommand::Preview(args) => {
            let request = create_request(args)?;
            let p = client.batch_call(request, |mut c, r| async move { c.preview_batch(r).await }).await?;
            let mut params: Vec<(String, String)> = p.first_device_params.clone().into_iter().collect();
            params.sort();
            print(
                format,
                || {
                    json!({
                        "first_device_params": p.first_device_params, "first_subject_dn": p.first_subject_dn,
                        "serials": p.serials, "batch_size": p.batch_size, "available_balance": p.available_balance,
                    })
                },
                || {
                    let mut t = Table::without_header();
                    t.row(["first subject:", &p.first_subject_dn]);
                    for (k, v) in &params {
                        t.row([format!("  {k}:"), v.clone()]);
                    }
                    t.row(["first values:", &p.serials.join(", ")])
                        .row(["devices:", &p.batch_size.to_string()])
                        .row(["available balance:", &p.available_balance.to_string()]);
                    t.render()
                },
            )
        }
        BatchCommand::List { organization, status, name, page, size, sort_by, ascending } => {
            let request = ListBatchesRequest {
                organization_id: organization.unwrap_or_default(),
                status: status.map(i32::from).unwrap_or_default(),
                name: name.unwrap_or_default(),
                page,
                size,
                sort_by,
                descending: !ascending,
                ..ListBatchesRequest::default()
            };
            let found = client.batch_call(request, |mut c, r| async move { c.list_batches(r).await }).await?;
            print(
                format,
                || json!({ "batches": found.batches.iter().map(batch_json).collect::<Vec<_>>(), "total": found.total }),
                || {
                    let mut t =
                        Table::new(&["ID", "NAME", "KIND", "STATUS", "SIZE", "ISSUED", "FAILED", "CREATED"]);
                    for b in &found.batches {
                        t.row([
                            b.id.clone(),
                            b.name.clone(),
                            kind_name(b.kind),
                            status_name(b.status),
                            b.batch_size.to_string(),
                            b.issued.to_string(),
                            b.failed.to_string(),
                            time(b.created_at),
                        ]);
                    }
                    t.render() + &format!("({} of {} batches)\n", found.batches.len(), found.total)
                },
            )
        }
        BatchCommand::Show { id } => {
            let request = GetBatchRequest { id };
            let b = client.batch_call(request, |mut c, r| async move { c.get_batch(r).await }).await?;
            print(format, || batch_json(&b), || batch_table(&b))
        }
        BatchCommand::Status { id } => {
            let request = GetBatchRequest { id };
            let s = client
                .batch_call(request.clone(), |mut c, r| async move { c.get_batch_status(r).await })
                .await?;
            let p =
                client.batch_call(request, |mut c, r| async move { c.get_processing_info(r).await }).await?;
            print(
                format,
                || {
                    json!({
                        "status": status_name(s.status), "text": s.text, "reason": s.reason,
                        "active": p.active, "success": p.success, "failed": p.failed,
                    })
                },
                || {
                    let reason = if s.reason.is_empty() { String::new() } else { format!(" ({})", s.reason) };
                    format!(
                        "{}{reason}: {} issued, {} failed, {} to do\n",
                        s.text, p.success, p.failed, p.active
                    )
                },
            )
        }
        BatchCommand::Watch { id, progress } => watch(client, format, id, progress.no_progress).await,
        BatchCommand::Download { id, out, progress } => {
            download(client, format, id, &out, progress.no_progress).await
        }
        BatchCommand::Reject { id, reason } => {
            let request = RejectBatchRequest { id, reason };
            let b = client.batch_call(request, |mut c, r| async move { c.reject_batch(r).await }).await?;
            print(format, || batch_json(&b), || batch_table(&b))
        }
        BatchCommand::Revoke { id, reason, comment } => {
            let request = RevokeBatchRequest { id, reason, comment };
            let b = client.batch_call(request, |mut c, r| async move { c.revoke_batch(r).await }).await?;
            print(format, || batch_json(&b), || batch_table(&b))
        }
    }
}

fn bar(hidden: bool, style: &str) -> ProgressBar {
    let bar = if hidden { ProgressBar::hidden() } else { ProgressBar::new(0) };
    if let Ok(s) = ProgressStyle::with_template(style) {
        bar.set_style(s);
    }
    bar
}

/// Follows WatchBatch. With `--output json`, one JSON line per event (for scripts); otherwise
/// a bar (devices done of the batch size) and the last event as a line. Exits with an error
/// when the batch ends BROKEN, so scripts can stop there.
async fn watch(
    client: &CardhsmClient,
    format: OutputFormat,
    id: String,
    no_progress: bool,
) -> Result<(), CliError> {
    let request = WatchBatchRequest { id };
    let mut events = client.batch_call(request, |mut c, r| async move { c.watch_batch(r).await }).await?;
    let bar =
        bar(no_progress || format == OutputFormat::Json, "{bar:40} {pos}/{len} devices {msg} ({elapsed})");
    let mut last = None;
    while let Some(event) = events.message().await.map_err(ClientError::from)? {
        bar.set_length(u64::from(event.batch_size));
        bar.set_position(u64::from(event.issued) + u64::from(event.failed));
        bar.set_message(status_name(event.status));
        if format == OutputFormat::Json {
            println!("{}", progress_json(&event));
            let _ = io::stdout().flush();
        }
        let done = event.done;
        last = Some(event);
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    let last = last.ok_or_else(|| CliError::Input("the daemon ended the watch without an event".into()))?;
    if format == OutputFormat::Table {
        println!("{}", progress_line(&last));
    }
    if last.status == i32::from(BatchStatus::Broken) {
        return Err(CliError::Input(format!("batch {} is broken", last.batch_id)));
    }
    Ok(())
}

/// Streams DownloadBatch into `out`: chunks go to `out.part` as they arrive (nothing is held
/// whole), which is renamed to `out` once the stream ended cleanly; a failed download removes
/// the part file.
async fn download(
    client: &CardhsmClient,
    format: OutputFormat,
    id: String,
    out: &Path,
    no_progress: bool,
) -> Result<(), CliError> {
    let part = part_path(out);
    let request = DownloadBatchRequest { id: id.clone() };
    let mut chunks = client.batch_call(request, |mut c, r| async move { c.download_batch(r).await }).await?;
    let io_error =
        |e: io::Error| CliError::Input(format!("cannot write the download to {}: {e}", part.display()));
    let mut file = io::BufWriter::new(std::fs::File::create(&part).map_err(io_error)?);
    let bar =
        bar(no_progress || format == OutputFormat::Json, "{spinner} {bytes} ({bytes_per_sec}, {elapsed})");
    let mut written: u64 = 0;
    let result: Result<(), CliError> = async {
        while let Some(chunk) = chunks.message().await.map_err(ClientError::from)? {
            file.write_all(&chunk.data).map_err(io_error)?;
            written += chunk.data.len() as u64;
            bar.set_position(written);
        }
        file.flush().map_err(io_error)?;
        file.get_ref().sync_all().map_err(io_error)
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    drop(file);
    std::fs::rename(&part, out).map_err(|e| {
        CliError::Input(format!("cannot rename {} to {}: {e}", part.display(), out.display()))
    })?;
    print(
        format,
        || json!({ "batch_id": id, "file": out.display().to_string(), "bytes": written }),
        || format!("batch {id}: {written} bytes written to {}\n", out.display()),
    )
}

fn part_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "batch.zip".into());
    name.push(".part");
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in [BatchStatus::ReadyForDownload, BatchStatus::ZipRemovedAfterExpiration, BatchStatus::Broken]
        {
            let name = status_name(s.into());
            assert_eq!(parse_status(&name), Ok(s), "{name}");
        }
        assert_eq!(status_name(BatchStatus::IssuedPartly.into()), "issued-partly");
        assert_eq!(parse_status("Ready_For_Download"), Ok(BatchStatus::ReadyForDownload));
        assert!(parse_status("unspecified").is_err());
        assert!(parse_status("done").is_err());
        assert_eq!(status_name(99), "unknown(99)");
    }

    #[test]
    fn generated_password_is_shown_once_in_both_formats() {
        let r = CreateBatchResponse {
            batch: Some(Batch { id: "b1".into(), batch_size: 3, ..Batch::default() }),
            pkcs12_password: "s3cret-pass".into(),
        };
        assert_eq!(created_json(&r)["pkcs12_password"], "s3cret-pass");
        assert_eq!(created_json(&r)["id"], "b1");
        assert!(created_table(&r).contains("shown once, keep it): s3cret-pass\n"));
        let quiet = CreateBatchResponse { pkcs12_password: String::new(), ..r };
        assert!(created_json(&quiet).get("pkcs12_password").is_none());
    }

    #[test]
    fn part_file_sits_beside_the_output() {
        assert_eq!(part_path(Path::new("/tmp/x/b.zip")), PathBuf::from("/tmp/x/b.zip.part"));
        assert_eq!(part_path(Path::new("b.zip")), PathBuf::from("b.zip.part"));
    }
}
