//! The CLI's `sessions` commands (`SessionService`, administrators) and `apikeys` commands
//! (`AuthService` RealmAuth / ListApiKeys / RevokeApiKey).

use super::args::OutputFormat;
use super::output::{Table, time};
use super::password;
use super::run::{CliError, print};
use cardhsm_client::CardhsmClient;
use cardhsm_client::v1::{ActiveSession, ApiKey, Role};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List active sessions (API keys included), oldest sign-in first
    List {
        /// Only this user's sessions
        #[arg(long)]
        name: Option<String>,
        /// Records per page, at most 200 [default: 200]
        #[arg(long, value_name = "N")]
        number: Option<u32>,
        /// Index of the first record
        #[arg(long, value_name = "N", default_value_t = 0)]
        start: u32,
    },
    /// End one session at once
    Kill {
        /// Session id
        id: String,
    },
    /// End every session except your own
    KillAll,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Get an API key for a realm (password from CARDHSM_PASSWORD or the terminal); the key is
    /// printed once
    Create {
        /// Realm name (configured in [[auth.realms]])
        #[arg(long)]
        realm: String,
        /// Your user name
        #[arg(long)]
        username: String,
    },
    /// List API keys (yours; an administrator's: everyone's)
    List,
    /// Revoke an API key
    Revoke {
        /// API key id
        id: String,
    },
}

fn role_name(r: i32) -> &'static str {
    Role::try_from(r).map(|r| r.as_str_name()).unwrap_or("?").trim_start_matches("ROLE_")
}

fn roles(list: &[i32]) -> Vec<&'static str> {
    list.iter().map(|r| role_name(*r)).collect()
}

fn session_json(s: &ActiveSession) -> Value {
    json!({
        "id": s.id, "name": s.name, "realm": s.realm, "roles": roles(&s.roles),
        "source_ip": s.source_ip, "agent": s.agent, "sign_in_time": s.sign_in_time,
        "login_node": s.login_node, "last_activity": s.last_activity,
    })
}

fn key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id, "realm": k.realm, "owner": k.owner, "roles": roles(&k.roles),
        "created_at": k.created_at, "last_used": k.last_used,
    })
}

/// Runs a `sessions` command.
pub async fn sessions(
    client: &CardhsmClient,
    format: OutputFormat,
    command: SessionsCommand,
) -> Result<(), CliError> {
    match command {
        SessionsCommand::List { name, number, start } => {
            let page = client
                .list_active_sessions(number.unwrap_or(0), start, name.as_deref().unwrap_or(""))
                .await?;
            print(
                format,
                || {
                    json!({
                        "sessions": page.sessions.iter().map(session_json).collect::<Vec<_>>(),
                        "total_matched": page.total_matched,
                        "total_returned": page.total_returned,
                        "is_last_record": page.is_last_record,
                    })
                },
                || {
                    let mut table = Table::new(&[
                        "ID",
                        "NAME",
                        "REALM",
                        "ROLES",
                        "SOURCE",
                        "AGENT",
                        "SIGNED IN",
                        "LAST ACTIVE",
                    ]);
                    for s in &page.sessions {
                        table.row([
                            s.id.as_str(),
                            &s.name,
                            &s.realm,
                            &roles(&s.roles).join(","),
                            &s.source_ip,
                            &s.agent,
                            &time(s.sign_in_time),
                            &time(s.last_activity),
                        ]);
                    }
                    let mut out = table.render();
                    out.push_str(&format!(
                        "({} of {} sessions{})\n",
                        page.total_returned,
                        page.total_matched,
                        if page.is_last_record { "" } else { "; more with --start" }
                    ));
                    out
                },
            )
        }
        SessionsCommand::Kill { id } => {
            client.delete_session(&id).await?;
            print(format, || json!({ "deleted": id }), || format!("session {id} ended\n"))
        }
        SessionsCommand::KillAll => {
            let n = client.delete_all_sessions().await?;
            print(format, || json!({ "deleted": n }), || format!("{n} sessions ended (yours kept)\n"))
        }
    }
}

/// Runs `apikeys create`, which needs no session: only the daemon's endpoint.
pub async fn create_api_key(
    client: &CardhsmClient,
    format: OutputFormat,
    realm: &str,
    username: &str,
) -> Result<(), CliError> {
    let password = password::read(password::LOGIN)?;
    let answer = client.realm_auth(realm, username, password.expose()).await?;
    let info = answer.key.clone().unwrap_or_default();
    print(
        format,
        || json!({ "api_key": answer.api_key, "key": key_json(&info) }),
        || {
            format!(
                "API key {} for realm {} (roles {}):\n{}\nIt is shown this once: keep it; present it as \
                 `authorization: Bearer <key>`.\n",
                info.id,
                info.realm,
                roles(&info.roles).join(","),
                answer.api_key
            )
        },
    )
}

/// Runs `apikeys list` and `apikeys revoke`.
pub async fn api_keys(
    client: &CardhsmClient,
    format: OutputFormat,
    command: ApiKeysCommand,
) -> Result<(), CliError> {
    match command {
        ApiKeysCommand::Create { .. } => Err(CliError::Input("apikeys create needs no session".into())),
        ApiKeysCommand::List => {
            let keys = client.list_api_keys().await?;
            print(
                format,
                || json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() }),
                || {
                    let mut table = Table::new(&["ID", "REALM", "OWNER", "ROLES", "CREATED", "LAST USED"]);
                    for k in &keys {
                        table.row([
                            k.id.as_str(),
                            &k.realm,
                            &k.owner,
                            &roles(&k.roles).join(","),
                            &time(k.created_at),
                            &time(k.last_used),
                        ]);
                    }
                    let mut out = table.render();
                    out.push_str(&format!("({} API keys)\n", keys.len()));
                    out
                },
            )
        }
        ApiKeysCommand::Revoke { id } => {
            client.revoke_api_key(&id).await?;
            print(format, || json!({ "revoked": id }), || format!("API key {id} revoked\n"))
        }
    }
}
