//! The CLI's `admins` commands over `AdminService`, and the certificate login
//! (`cardhsm login --cert … --key …`) whose session later commands use over client-certificate
//! TLS with no token. Checks are the daemon's (it names the bad field); the CLI only turns flags
//! and files into requests.

use super::args::{GlobalArgs, OutputFormat};
use super::output::{Table, time};
use super::run::{CliError, print};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardhsm_client::names::role_name;
use cardhsm_client::session::CertSession;
use cardhsm_client::v1::{Admin, AdminRole, BulkAdminsResponse, CreateAdminRequest, EditAdminRequest};
use cardhsm_client::{CardhsmClient, ConnectOptions, Session};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Reads and manages everything but administrators
    Administrator,
    /// Also manages administrators
    SuperAdministrator,
}

impl From<RoleArg> for AdminRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Administrator => AdminRole::Administrator,
            RoleArg::SuperAdministrator => AdminRole::SuperAdministrator,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// List administrators by username, one page at a time
    List {
        /// Only those whose username, name, surname or e-mail contains this (any case)
        #[arg(long)]
        search: Option<String>,
        /// Administrators per page (server default 100, at most 1000)
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page token printed by the previous page
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
    /// Show one administrator
    Show {
        /// Administrator uuid
        uuid: String,
    },
    /// Create an administrator (super administrators); disabled unless --enabled
    Create {
        /// 5 to 30 of A-Z a-z 0-9 _, unique
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        surname: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Enabled at once
        #[arg(long)]
        enabled: bool,
        #[arg(long, default_value = "")]
        description: String,
        /// The administrator's client certificate, a PEM or DER file
        /// (`--certificate`: the global `--cert` is this CLI's own mTLS certificate)
        #[arg(long, value_name = "FILE", required_unless_present = "certificate_uuid")]
        certificate: Option<PathBuf>,
        /// Or the uuid of a certificate the daemon issued
        #[arg(long, value_name = "UUID", conflicts_with = "certificate")]
        certificate_uuid: Option<String>,
    },
    /// Change an administrator: the given flags replace their values, the others stay
    Edit {
        /// Administrator uuid
        uuid: String,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        surname: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[arg(long)]
        description: Option<String>,
        /// A new client certificate, a PEM or DER file
        #[arg(long, value_name = "FILE")]
        certificate: Option<PathBuf>,
        /// Or the uuid of a certificate the daemon issued
        #[arg(long, value_name = "UUID", conflicts_with = "certificate")]
        certificate_uuid: Option<String>,
    },
    /// Enable administrators (several uuids at once; unknown ones are printed)
    Enable {
        #[arg(required = true, num_args = 1..)]
        uuids: Vec<String>,
    },
    /// Disable administrators (several uuids at once; unknown ones are printed)
    Disable {
        #[arg(required = true, num_args = 1..)]
        uuids: Vec<String>,
    },
    /// Delete administrators (several uuids at once; unknown ones are printed)
    Delete {
        #[arg(required = true, num_args = 1..)]
        uuids: Vec<String>,
    },
}

fn role_text(v: i32) -> &'static str {
    match AdminRole::try_from(v) {
        Ok(AdminRole::Administrator) => "administrator",
        Ok(AdminRole::SuperAdministrator) => "superAdministrator",
        _ => "?",
    }
}

fn admin_json(a: &Admin) -> Value {
    json!({
        "uuid": a.uuid, "username": a.username, "name": a.name, "surname": a.surname, "email": a.email,
        "role": role_text(a.role), "enabled": a.enabled, "description": a.description,
        "certificate_fingerprint": a.certificate_fingerprint, "certificate_subject": a.certificate_subject,
        "certificate_issuer": a.certificate_issuer, "certificate_serial": a.certificate_serial,
        "certificate_not_after": a.certificate_not_after, "created_at": a.created_at, "updated_at": a.updated_at,
    })
}

fn admin_text(a: &Admin) -> String {
    let mut t = Table::without_header();
    for (k, v) in [
        ("uuid", a.uuid.clone()),
        ("username", a.username.clone()),
        ("name", format!("{} {}", a.name, a.surname)),
        ("email", a.email.clone()),
        ("role", role_text(a.role).to_owned()),
        ("enabled", if a.enabled { "yes" } else { "no" }.to_owned()),
        ("description", a.description.clone()),
        ("certificate", a.certificate_subject.clone()),
        ("issuer", a.certificate_issuer.clone()),
        ("serial", a.certificate_serial.clone()),
        ("fingerprint", a.certificate_fingerprint.clone()),
        ("not after", time(a.certificate_not_after)),
        ("created", time(a.created_at)),
        ("updated", time(a.updated_at)),
    ] {
        t.row([format!("{k}:"), v]);
    }
    t.render()
}

fn bulk_json(r: &BulkAdminsResponse) -> Value {
    json!({ "processed": r.processed, "not_found": r.not_found })
}

fn bulk_text(verb: &str, r: &BulkAdminsResponse) -> String {
    let mut out = String::new();
    for id in &r.processed {
        out.push_str(&format!("{verb} {id}\n"));
    }
    for id in &r.not_found {
        out.push_str(&format!("not found: {id}\n"));
    }
    out
}

/// A certificate file, PEM or DER, as the API takes it: base64 of the DER.
fn certificate_b64(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Input(format!("cannot read the certificate {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    if let Some(start) = text.find("-----BEGIN CERTIFICATE-----") {
        let body = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
        let end = body.find("-----END CERTIFICATE-----").ok_or_else(|| {
            CliError::Input(format!("{}: a PEM certificate without its END line", path.display()))
        })?;
        // The PEM body is the base64 the API wants; only line breaks go.
        return Ok(body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect());
    }
    Ok(STANDARD.encode(&bytes))
}

/// Runs an `admins` command.
pub async fn admins(
    client: &CardhsmClient,
    format: OutputFormat,
    command: AdminsCommand,
) -> Result<(), CliError> {
    let one = |a: Admin| print(format, || admin_json(&a), || admin_text(&a));
    match command {
        AdminsCommand::List { search, page_size, page_token } => {
            let page = client
                .list_admins(
                    page_size.unwrap_or(0),
                    page_token.as_deref().unwrap_or_default(),
                    search.as_deref().unwrap_or_default(),
                )
                .await?;
            print(
                format,
                || {
                    let (next, total) = page
                        .page
                        .as_ref()
                        .map_or((String::new(), 0), |p| (p.next_page_token.clone(), p.total_count));
                    json!({
                        "admins": page.admins.iter().map(admin_json).collect::<Vec<_>>(),
                        "next_page_token": next,
                        "total_count": total,
                    })
                },
                || {
                    let mut t =
                        Table::new(&["UUID", "USERNAME", "NAME", "EMAIL", "ROLE", "ENABLED", "CERTIFICATE"]);
                    for a in &page.admins {
                        t.row([
                            a.uuid.clone(),
                            a.username.clone(),
                            format!("{} {}", a.name, a.surname),
                            a.email.clone(),
                            role_text(a.role).to_owned(),
                            if a.enabled { "yes" } else { "no" }.to_owned(),
                            a.certificate_subject.clone(),
                        ]);
                    }
                    t.render()
                        + &super::output::page_footer(page.admins.len(), page.page.as_ref(), "administrators")
                },
            )
        }
        AdminsCommand::Show { uuid } => one(client.get_admin(&uuid).await?),
        AdminsCommand::Create {
            username,
            name,
            surname,
            email,
            role,
            enabled,
            description,
            certificate,
            certificate_uuid,
        } => {
            let certificate = certificate.as_deref().map(certificate_b64).transpose()?.unwrap_or_default();
            let request = CreateAdminRequest {
                username,
                name,
                surname,
                email,
                role: AdminRole::from(role) as i32,
                enabled,
                description,
                certificate,
                certificate_uuid: certificate_uuid.unwrap_or_default(),
            };
            one(client.create_admin(request).await?)
        }
        AdminsCommand::Edit {
            uuid,
            username,
            name,
            surname,
            email,
            role,
            description,
            certificate,
            certificate_uuid,
        } => {
            let current = client.get_admin(&uuid).await?;
            let certificate = certificate.as_deref().map(certificate_b64).transpose()?.unwrap_or_default();
            let request = EditAdminRequest {
                uuid,
                username: username.unwrap_or(current.username),
                name: name.unwrap_or(current.name),
                surname: surname.unwrap_or(current.surname),
                email: email.unwrap_or(current.email),
                role: role.map_or(current.role, |r| AdminRole::from(r) as i32),
                description: description.unwrap_or(current.description),
                certificate,
                certificate_uuid: certificate_uuid.unwrap_or_default(),
            };
            one(client.edit_admin(request).await?)
        }
        AdminsCommand::Enable { uuids } => {
            let r = client.enable_admins(uuids).await?;
            print(format, || bulk_json(&r), || bulk_text("enabled", &r))
        }
        AdminsCommand::Disable { uuids } => {
            let r = client.disable_admins(uuids).await?;
            print(format, || bulk_json(&r), || bulk_text("disabled", &r))
        }
        AdminsCommand::Delete { uuids } => {
            let r = client.delete_admins(uuids).await?;
            print(format, || bulk_json(&r), || bulk_text("deleted", &r))
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

/// `cardhsm login --cert FILE --key FILE`: connects over client-certificate TLS, asks WhoAmI
/// once (the daemon authenticates the certificate), and remembers the certificate login so
/// later commands connect the same way with no token.
pub async fn cert_login(global: &GlobalArgs, endpoint: String) -> Result<(), CliError> {
    let (Some(cert), Some(key)) = (&global.cert, &global.key) else {
        return Err(CliError::Input(
            "give --username for a password login, or --cert and --key for a certificate login".into(),
        ));
    };
    let session = CertSession {
        endpoint,
        cert: absolute(cert)?,
        key: absolute(key)?,
        ca_file: global.ca_file.as_deref().map(absolute).transpose()?,
    };
    let client = CardhsmClient::connect_with(&options(&session)).await?;
    let me = client.who_am_i().await?;
    session.save(&Session::default_path()?)?;
    let roles: Vec<String> = me.roles.iter().map(|&r| role_name(r).into_owned()).collect();
    print(
        global.output,
        || {
            json!({
                "endpoint": session.endpoint, "username": me.username, "user_id": me.user_id, "roles": roles,
                "authentication": "certificate",
            })
        },
        || {
            format!(
                "logged in to {} as {} (roles: {}) with the client certificate {}\n",
                session.endpoint,
                me.username,
                roles.join(","),
                session.cert.display()
            )
        },
    )
}

fn options(session: &CertSession) -> ConnectOptions {
    let mut options = ConnectOptions::new(&session.endpoint).client_identity(&session.cert, &session.key);
    if let Some(ca) = &session.ca_file {
        options = options.ca_file(ca);
    }
    options
}

/// The client of a saved certificate login, when the session file holds one. `--endpoint`,
/// `--ca-file`, `--cert` and `--key` given now override the saved ones.
pub async fn cert_session_client(
    global: &GlobalArgs,
    path: &Path,
) -> Result<Option<CardhsmClient>, CliError> {
    let Some(mut session) = CertSession::load(path)? else {
        return Ok(None);
    };
    if let Some(endpoint) = &global.endpoint {
        session.endpoint = endpoint.clone();
    }
    if let (Some(cert), Some(key)) = (&global.cert, &global.key) {
        (session.cert, session.key) = (cert.clone(), key.clone());
    }
    if let Some(ca) = &global.ca_file {
        session.ca_file = Some(ca.clone());
    }
    let client = CardhsmClient::connect_with(&options(&session)).await?;
    Ok(Some(client))
}
