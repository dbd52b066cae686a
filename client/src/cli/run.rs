//! Executes a parsed `cardhsm` command: `login` connects, logs in and saves the session; every
//! other command loads the session into a [`CardhsmClient`] (which refreshes and re-saves rotated
//! tokens on its own), calls the daemon and prints the answer through [`super::output`].

use super::args::{CardsCommand, Cli, Command, GlobalArgs, OutputFormat, ReadersCommand, TokensCommand};
use super::{admins, batches, issuance, orgs, output, password, privileges, sessions, store, system, users};
use cardhsm_client::v1::RegisterCardRequest;
use cardhsm_client::{CardhsmClient, ClientError, ConnectOptions, DEFAULT_ENDPOINT, Session};
use serde_json::{Value, json};
use std::io::{self, Write};
use tonic::Code;

/// Why a command failed; `main` prints it as `error: <this>` and exits with 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the client library; an answer of the daemon reads `<GRPC CODE>: <message>`.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Bad or missing input (password, option combination).
    #[error("{0}")]
    Input(String),
    /// `--endpoint` names another daemon than the saved session's.
    #[error(
        "the session in {path} is for {session}, not {requested}: run `cardhsm login --endpoint {requested}`"
    )]
    EndpointMismatch {
        /// The session file.
        path: String,
        /// Its endpoint.
        session: String,
        /// The endpoint asked for.
        requested: String,
    },
    /// Standard output could not be written.
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

impl CliError {
    /// A second line of advice for errors that have an obvious next step.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Client(ClientError::Rpc(status)) if status.code() == Code::Unauthenticated => {
                Some("the session may have expired: run `cardhsm login`")
            }
            _ => None,
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli { global, command } = cli;
    match command {
        Command::Login(args) => match &args.username {
            Some(username) => login(&global, username).await,
            None => admins::cert_login(&global, endpoint_for_login(&global)?).await,
        },
        Command::Logout => logout(&global).await,
        Command::Apikeys(sessions::ApiKeysCommand::Create { realm, username }) => {
            let client =
                CardhsmClient::connect_with(&connect_options(&endpoint_for_login(&global)?, &global)?)
                    .await?;
            sessions::create_api_key(&client, global.output, &realm, &username).await
        }
        Command::Password(command) => {
            let client =
                CardhsmClient::connect_with(&connect_options(&endpoint_for_login(&global)?, &global)?)
                    .await?;
            users::password(&client, global.output, command).await
        }
        command => {
            let client = session_client(&global).await?;
            execute(&client, global.output, command).await
        }
    }
}

/// `--endpoint`, else the saved session's endpoint, else the default.
fn endpoint_for_login(global: &GlobalArgs) -> Result<String, CliError> {
    let path = Session::default_path()?;
    Ok(match &global.endpoint {
        Some(endpoint) => endpoint.clone(),
        // Logging in again goes to the same daemon as before; a broken file is replaced.
        None => Session::load(&path)
            .ok()
            .flatten()
            .map(|session| session.endpoint)
            // Or the endpoint of a certificate login (`login --cert`).
            .or_else(|| cardhsm_client::session::CertSession::load(&path).ok().flatten().map(|s| s.endpoint))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
    })
}

async fn login(global: &GlobalArgs, username: &str) -> Result<(), CliError> {
    let path = Session::default_path()?;
    let endpoint = endpoint_for_login(global)?;
    // Connect first: a daemon that is not there fails before anyone types a password.
    let client = CardhsmClient::connect_with(&connect_options(&endpoint, global)?).await?;
    let password = password::read(password::LOGIN)?;
    let info = client.login(username, password.expose()).await?;
    let tokens = client.tokens().ok_or(ClientError::NoRefreshToken)?;
    Session { endpoint: endpoint.clone(), tokens }.save(&path)?;
    let roles: Vec<i32> = info.roles.iter().map(|&r| r.into()).collect();
    print(
        global.output,
        || output::login_json(&endpoint, username, &roles, info.access_expires_at),
        || output::login_table(&endpoint, username, &roles, info.access_expires_at),
    )
}

/// Ends the session on the daemon (when it can be reached and the session is still live) and
/// removes the saved one in any case.
async fn logout(global: &GlobalArgs) -> Result<(), CliError> {
    let path = Session::default_path()?;
    let mut ended = false;
    if let Ok(Some(session)) = Session::load(&path)
        && let Ok(options) = connect_options(&session.endpoint, global)
        && let Ok(client) = CardhsmClient::connect_with(&options).await
    {
        match session.client(client).logout().await {
            Ok(()) => ended = true,
            Err(e) => eprintln!("warning: the daemon did not end the session: {e}"),
        }
    }
    let removed = Session::remove(&path)?;
    print(
        global.output,
        || json!({ "logged_out": removed, "server_session_ended": ended }),
        // A failure to end it on the daemon was reported on stderr above.
        || if removed { "logged out\n" } else { "not logged in\n" }.to_owned(),
    )
}

/// The client of the saved session, saving rotated tokens back to the session file.
async fn session_client(global: &GlobalArgs) -> Result<CardhsmClient, CliError> {
    let path = Session::default_path()?;
    // A certificate login (`login --cert`) keeps no token: the certificate is the credential.
    if let Some(client) = admins::cert_session_client(global, &path).await? {
        return Ok(client);
    }
    let session = Session::load(&path)?.ok_or(ClientError::NotLoggedIn)?;
    if let Some(requested) = global.endpoint.as_ref().filter(|r| !same_endpoint(r, &session.endpoint)) {
        return Err(CliError::EndpointMismatch {
            path: path.display().to_string(),
            session: session.endpoint,
            requested: requested.clone(),
        });
    }
    let client =
        session.client(CardhsmClient::connect_with(&connect_options(&session.endpoint, global)?).await?);
    Session::save_on_change(&client, path, session.endpoint, |e| {
        eprintln!("warning: could not save the refreshed session: {e}");
    });
    Ok(client)
}

fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn connect_options(endpoint: &str, global: &GlobalArgs) -> Result<ConnectOptions, CliError> {
    let mut options = ConnectOptions::new(endpoint);
    if let Some(ca) = &global.ca_file {
        options = options.ca_file(ca);
    }
    match (&global.cert, &global.key) {
        (Some(cert), Some(key)) => options = options.client_identity(cert, key),
        (None, None) => {}
        _ => return Err(CliError::Input("--cert and --key go together".into())),
    }
    Ok(options)
}

fn or_empty(value: Option<String>) -> String {
    value.unwrap_or_default()
}

async fn execute(client: &CardhsmClient, format: OutputFormat, command: Command) -> Result<(), CliError> {
    let card = |card: cardhsm_client::v1::CardInfo| {
        print(format, || output::card_json(&card), || output::card_table(&card))
    };
    match command {
        Command::Login(_) | Command::Logout => {
            Err(CliError::Input("login and logout need no session".into()))
        }
        Command::Whoami => {
            let me = client.who_am_i().await?;
            print(format, || output::whoami_json(&me), || output::whoami_table(&me))
        }
        Command::Tokens(TokensCommand::List) => {
            let tokens = client.list_tokens().await?;
            print(format, || output::tokens_json(&tokens), || output::tokens_table(&tokens))
        }
        Command::Readers(ReadersCommand::List) => {
            let readers = client.list_readers().await?;
            print(format, || output::readers_json(&readers), || output::readers_table(&readers))
        }
        Command::Readers(ReadersCommand::Watch) => {
            let mut events = client.watch_readers().await?;
            // One line per event (JSON lines with --output json), flushed as it comes.
            while let Some(event) = events.message().await.map_err(ClientError::from)? {
                let line = match format {
                    OutputFormat::Json => output::reader_event_json(&event).to_string(),
                    OutputFormat::Table => output::reader_event_line(&event),
                };
                println!("{line}");
                let _ = io::stdout().flush();
            }
            Ok(())
        }
        Command::Cards(command) => match command {
            CardsCommand::List { owner, state, page_size, page_token } => {
                let page = client
                    .list_cards(&owner, state.map(Into::into), page_size.unwrap_or(0), &or_empty(page_token))
                    .await?;
                print(
                    format,
                    || output::cards_json(&page.cards, page.page.as_ref()),
                    || output::cards_table(&page.cards, page.page.as_ref()),
                )
            }
            CardsCommand::Get { id } => card(client.get_card(&id).await?),
            CardsCommand::Register { token_serial, reader, owner, label, pac_number, policy } => {
                let request = RegisterCardRequest {
                    token_serial: or_empty(token_serial),
                    owner,
                    label: or_empty(label),
                    pac_number: or_empty(pac_number),
                    policy: or_empty(policy),
                    reader: or_empty(reader),
                };
                card(client.register_card(request).await?)
            }
            CardsCommand::Issue { id } => card(client.issue_card(&id).await?),
            CardsCommand::Disable { id, comment } => {
                card(client.disable_card(&id, &or_empty(comment)).await?)
            }
            CardsCommand::Enable { id, comment } => card(client.enable_card(&id, &or_empty(comment)).await?),
            CardsCommand::Revoke { id, reason, comment } => {
                card(client.revoke_card(&id, reason.into(), &or_empty(comment)).await?)
            }
            CardsCommand::Preupdate { id, policy } => {
                card(client.pre_update_card(&id, &or_empty(policy)).await?)
            }
        },
        Command::Users(command) => users::users(client, format, command).await,
        Command::Password(_) => Err(CliError::Input("password commands need no session".into())),
        Command::Ca(command) => issuance::ca(client, format, command).await,
        Command::Profiles(command) => issuance::profiles(client, format, command).await,
        Command::Cert(command) => issuance::cert(client, format, command).await,
        Command::Crl(command) => issuance::crl(client, format, command).await,
        Command::Store(command) => store::store(client, format, command).await,
        Command::Sessions(command) => sessions::sessions(client, format, command).await,
        Command::Apikeys(command) => sessions::api_keys(client, format, command).await,
        Command::Orgs(command) => orgs::orgs(client, format, command).await,
        Command::Admins(command) => admins::admins(client, format, command).await,
        Command::Batch(command) => batches::batch(client, format, command).await,
        Command::Privileges(command) => privileges::privileges(client, format, command).await,
        Command::Ecosystems(command) => privileges::ecosystems(client, format, command).await,
        Command::System(command) => system::system(client, format, command).await,
    }
}

/// Prints the JSON or the table, as `--output` asks.
pub fn print(
    format: OutputFormat,
    json: impl FnOnce() -> Value,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let text = match format {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(&json()).map_err(|e| CliError::Output(e.into()))?;
            text.push('\n');
            text
        }
        OutputFormat::Table => table(),
    };
    emit(&text)
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result.map_err(CliError::Output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_compare_without_trailing_slash() {
        assert!(same_endpoint("http://127.0.0.1:50051/", "http://127.0.0.1:50051"));
        assert!(!same_endpoint("https://hsm:50051", "http://hsm:50051"));
    }

    #[test]
    fn unauthenticated_answers_get_a_hint() {
        let err = CliError::from(ClientError::from(tonic::Status::unauthenticated("refresh token expired")));
        assert_eq!(err.to_string(), "UNAUTHENTICATED: refresh token expired");
        assert!(err.hint().is_some());
        assert!(CliError::from(ClientError::NotLoggedIn).hint().is_none());
    }
}
