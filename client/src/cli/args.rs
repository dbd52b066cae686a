//! The `cardhsm` command line as clap types: global connection and output options, and one
//! subcommand per client operation. `main` parses into [`Cli`]; [`super::run`] executes it.
//! Passwords never come from arguments (there is no `--password`): see [`super::password`].

use cardhsm_proto::v1::{CardState, RevokeReason, Role};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Command-line client of cardhsmd: log in, then manage smart cards, tokens and users.
#[derive(Debug, Parser)]
#[command(name = "cardhsm", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// gRPC endpoint of cardhsmd, http://HOST:PORT or https://HOST:PORT
    /// [default: the logged-in session's endpoint, else http://127.0.0.1:50051]
    #[arg(long, global = true, env = "CARDHSM_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    /// How to print results
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// PEM file with the CA certificate(s) that signed the daemon's TLS certificate
    /// [default: the system trust store]
    #[arg(long, global = true, env = "CARDHSM_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (needs --key)
    #[arg(long, global = true, env = "CARDHSM_CERT", value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert
    #[arg(long, global = true, env = "CARDHSM_KEY", value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// JSON for programs (enum values as lower-case names, bytes as hex)
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in and save the session (password from CARDHSM_PASSWORD, the terminal, or one line of stdin)
    Login(LoginArgs),
    /// Forget the saved session
    Logout,
    /// Show who the daemon thinks you are
    #[command(alias = "who-am-i")]
    Whoami,
    /// PKCS#11 tokens the daemon sees
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Smart-card lifecycle
    #[command(subcommand)]
    Cards(CardsCommand),
    /// Users of cardhsm
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name to log in as
    #[arg(long, short = 'u')]
    pub username: String,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List the tokens in every slot
    List,
}

#[derive(Debug, Subcommand)]
pub enum CardsCommand {
    /// List one owner's cards
    List {
        /// Owner (user principal name, e.g. user1@corp.example)
        #[arg(long)]
        owner: String,
        /// Only cards in this state
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Cards per page (server default 100, at most 1000)
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page token printed by the previous page
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
    /// Show one card
    Get {
        /// Card id
        id: String,
    },
    /// Bind a token to an owner (state assigned)
    Register {
        /// PKCS#11 serial number of the card's token
        #[arg(long)]
        token_serial: String,
        /// Owner (user principal name)
        #[arg(long)]
        owner: String,
        /// Card label
        #[arg(long)]
        label: Option<String>,
        /// The card's HID (PAC) number
        #[arg(long)]
        pac_number: Option<String>,
        /// Card policy [default: the daemon's configured default]
        #[arg(long, value_name = "NAME")]
        policy: Option<String>,
    },
    /// Generate the card's keys according to its policy (state active)
    Issue {
        /// Card id
        id: String,
    },
    /// Disable a card
    Disable {
        /// Card id
        id: String,
        /// Comment for the audit log
        #[arg(long)]
        comment: Option<String>,
    },
    /// Enable a disabled card
    Enable {
        /// Card id
        id: String,
        /// Comment for the audit log
        #[arg(long)]
        comment: Option<String>,
    },
    /// Revoke a card
    Revoke {
        /// Card id
        id: String,
        /// Why the card is revoked
        #[arg(long, value_enum)]
        reason: ReasonArg,
        /// Comment for the audit log
        #[arg(long)]
        comment: Option<String>,
    },
    /// Mark an active card for update (state pending-update); `cards issue` applies it
    #[command(alias = "pre-update")]
    Preupdate {
        /// Card id
        id: String,
        /// The new policy [default: keep the current one]
        #[arg(long, value_name = "NAME")]
        policy: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (password from CARDHSM_NEW_PASSWORD, the terminal, or one line of stdin)
    Create {
        /// User name: 3-64 of A-Z a-z 0-9 _ . @ -
        #[arg(long, short = 'u')]
        username: String,
        /// Role to grant (repeat for several)
        #[arg(long, value_enum, required = true)]
        role: Vec<RoleArg>,
    },
    /// List users
    List {
        /// Users per page (server default 100, at most 1000)
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page token printed by the previous page
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
}

/// Card states, spelled as [`cardhsm_client::names`] spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Assigned,
    PendingIssue,
    Active,
    Disabled,
    PendingUpdate,
    Revoked,
}

impl From<StateArg> for CardState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Assigned => Self::Assigned,
            StateArg::PendingIssue => Self::PendingIssue,
            StateArg::Active => Self::Active,
            StateArg::Disabled => Self::Disabled,
            StateArg::PendingUpdate => Self::PendingUpdate,
            StateArg::Revoked => Self::Revoked,
        }
    }
}

/// Revocation reasons, spelled as [`cardhsm_client::names`] spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReasonArg {
    None,
    Broken,
    Lost,
    Upgrade,
    Expired,
    Withdraw,
    UserRemoved,
    Compromised,
}

impl From<ReasonArg> for RevokeReason {
    fn from(reason: ReasonArg) -> Self {
        match reason {
            ReasonArg::None => Self::None,
            ReasonArg::Broken => Self::Broken,
            ReasonArg::Lost => Self::Lost,
            ReasonArg::Upgrade => Self::Upgrade,
            ReasonArg::Expired => Self::Expired,
            ReasonArg::Withdraw => Self::Withdraw,
            ReasonArg::UserRemoved => Self::UserRemoved,
            ReasonArg::Compromised => Self::Compromised,
        }
    }
}

/// Roles, spelled as [`cardhsm_client::names`] spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    User,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Self::Admin,
            RoleArg::Operator => Self::Operator,
            RoleArg::User => Self::User,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardhsm_client::names;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cardhsm").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn revoke_reason_user_removed() {
        let cli = parse(&["cards", "revoke", "c-1", "--reason", "user-removed", "--comment", "left"]);
        match cli.map(|c| c.command) {
            Ok(Command::Cards(CardsCommand::Revoke { id, reason, comment })) => {
                assert_eq!(id, "c-1");
                assert_eq!(RevokeReason::from(reason), RevokeReason::UserRemoved);
                assert_eq!(i32::from(RevokeReason::from(reason)), 6);
                assert_eq!(comment.as_deref(), Some("left"));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn revoke_needs_a_known_reason() {
        assert_eq!(
            parse(&["cards", "revoke", "c-1"]).err().map(|e| e.kind()),
            Some(ErrorKind::MissingRequiredArgument)
        );
        let err = parse(&["cards", "revoke", "c-1", "--reason", "stolen"]).err();
        assert_eq!(err.as_ref().map(|e| e.kind()), Some(ErrorKind::InvalidValue));
        assert_eq!(err.map(|e| e.exit_code()), Some(2));
    }

    #[test]
    fn password_flag_is_rejected() {
        for args in [
            &["login", "--username", "admin", "--password", "secret"][..],
            &["users", "create", "--username", "bob", "--role", "user", "--password", "secret"][..],
            &["--password", "secret", "whoami"][..],
        ] {
            let err = parse(args).err();
            assert_eq!(err.as_ref().map(|e| e.kind()), Some(ErrorKind::UnknownArgument), "{args:?}");
            assert_eq!(err.map(|e| e.exit_code()), Some(2));
        }
    }

    #[test]
    fn login_and_global_options() -> Result<(), clap::Error> {
        let cli =
            parse(&["login", "--username", "admin", "--endpoint", "https://hsm:50051", "--output", "json"])?;
        assert_eq!(cli.global.endpoint.as_deref(), Some("https://hsm:50051"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert!(matches!(cli.command, Command::Login(LoginArgs { ref username }) if username == "admin"));
        let cli = parse(&["whoami"])?;
        assert_eq!(cli.global.output, OutputFormat::Table);
        Ok(())
    }

    #[test]
    fn cert_needs_key() {
        let err = parse(&["--cert", "c.pem", "whoami"]).err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::MissingRequiredArgument));
        assert!(parse(&["--cert", "c.pem", "--key", "k.pem", "--ca-file", "ca.pem", "whoami"]).is_ok());
    }

    #[test]
    fn cards_list_options() -> Result<(), clap::Error> {
        let cli = parse(&[
            "cards",
            "list",
            "--owner",
            "u@corp.example",
            "--state",
            "pending-update",
            "--page-size",
            "5",
            "--page-token",
            "t",
        ])?;
        match cli.command {
            Command::Cards(CardsCommand::List { owner, state, page_size, page_token }) => {
                assert_eq!(owner, "u@corp.example");
                assert_eq!(state.map(CardState::from), Some(CardState::PendingUpdate));
                assert_eq!(page_size, Some(5));
                assert_eq!(page_token.as_deref(), Some("t"));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(parse(&["cards", "list"]).is_err(), "--owner is required");
        assert!(parse(&["cards", "list", "--owner", "u", "--page-size", "-1"]).is_err());
        Ok(())
    }

    #[test]
    fn users_create_takes_several_roles() -> Result<(), clap::Error> {
        let cli = parse(&["users", "create", "--username", "bob", "--role", "admin", "--role", "operator"])?;
        match cli.command {
            Command::Users(UsersCommand::Create { username, role }) => {
                assert_eq!(username, "bob");
                assert_eq!(
                    role.into_iter().map(Role::from).collect::<Vec<_>>(),
                    [Role::Admin, Role::Operator]
                );
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(parse(&["users", "create", "--username", "bob"]).is_err(), "--role is required");
        Ok(())
    }

    #[test]
    fn preupdate_alias_and_register() -> Result<(), clap::Error> {
        assert!(matches!(
            parse(&["cards", "pre-update", "c-1", "--policy", "p2"])?.command,
            Command::Cards(CardsCommand::Preupdate { ref policy, .. }) if policy.as_deref() == Some("p2")
        ));
        let cli =
            parse(&["cards", "register", "--token-serial", "S1", "--owner", "u@x", "--pac-number", "42"])?;
        assert!(matches!(
            cli.command,
            Command::Cards(CardsCommand::Register { ref pac_number, ref label, .. })
                if pac_number.as_deref() == Some("42") && label.is_none()
        ));
        Ok(())
    }

    #[test]
    fn argument_spellings_match_output_names() {
        for state in StateArg::value_variants() {
            let arg = state.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(arg.as_deref(), Some(&*names::card_state_name(CardState::from(*state).into())));
        }
        for reason in ReasonArg::value_variants() {
            let arg = reason.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(arg.as_deref(), Some(&*names::revoke_reason_name(RevokeReason::from(*reason).into())));
        }
        for role in RoleArg::value_variants() {
            let arg = role.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(arg.as_deref(), Some(&*names::role_name(Role::from(*role).into())));
        }
    }
}
