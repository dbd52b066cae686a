//! The `cardhsm` command line as clap types: global connection and output options, and one
//! subcommand per client operation. `main` parses into [`Cli`]; [`super::run`] executes it.
//! Passwords never come from arguments (there is no `--password`): see [`super::password`].

use cardhsm_client::names::parse_crl_reason;
use cardhsm_proto::v1::{AuthorityKind, CardState, RevokeReason, Role};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use super::admins::AdminsCommand;
pub use super::batches::BatchCommand;
pub use super::orgs::OrgsCommand;
pub use super::privileges::{EcosystemsCommand, PrivilegesCommand};
pub use super::sessions::{ApiKeysCommand, SessionsCommand};
pub use super::store::StoreCommand;
pub use super::system::SystemCommand;
pub use super::users::{PasswordCommand, UsersCommand};
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
    /// End the session on the daemon and forget the saved one
    Logout,
    /// Show who the daemon thinks you are
    #[command(alias = "who-am-i")]
    Whoami,
    /// PKCS#11 tokens the daemon sees
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// PC/SC card readers and the cards in them
    #[command(subcommand)]
    Readers(ReadersCommand),
    /// Smart-card lifecycle
    #[command(subcommand)]
    Cards(CardsCommand),
    /// Users of cardhsm
    #[command(subcommand)]
    Users(UsersCommand),
    /// Password reset with a code sent by email (no session needed)
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Certificate authorities whose keys live in the daemon's HSM
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issuance profiles
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Issue, find and revoke certificates
    #[command(subcommand)]
    Cert(CertCommand),
    /// Certificate revocation lists
    #[command(subcommand)]
    Crl(CrlCommand),
    /// Certificates and their keys on a token; CSRs whose key the token generates
    #[command(subcommand)]
    Store(StoreCommand),
    /// Active sign-in sessions (administrators)
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// API keys for configured realms
    #[command(subcommand, name = "apikeys")]
    Apikeys(ApiKeysCommand),
    /// Organizations and the authorities assigned to them
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Administrators of the platform, identified by client certificates
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Batches of device certificates: create, follow, download, reject, revoke
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Users' organization privileges (USER, ORG_ADMIN, ECO_ADMIN)
    #[command(subcommand)]
    Privileges(PrivilegesCommand),
    /// Ecosystems: password policy and statistics
    #[command(subcommand)]
    Ecosystems(EcosystemsCommand),
    /// System information, health, and backup and restore of the store and configuration
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Generate a CA key pair in the HSM and make a root, an intermediate or an external CSR
    Create {
        /// Unique name: 1-64 of A-Z a-z 0-9 space . _ -
        #[arg(long)]
        name: String,
        /// Key type: EC:P-256, EC:P-384, RSA:2048, RSA:3072 or RSA:4096
        #[arg(long, value_name = "TYPE")]
        key_type: String,
        /// Subject DN (RFC 4514), e.g. "CN=Acme Root CA,O=Acme,C=CZ"
        #[arg(long, value_name = "DN")]
        subject: String,
        /// Validity in years, 1-30
        #[arg(long, value_name = "N", default_value_t = 10)]
        validity_years: u32,
        /// Kind of authority [default: intermediate with --parent, else root]
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Id of the signing authority (intermediate only)
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
    },
    /// List the authorities
    List,
    /// Show one authority
    Show {
        /// Authority id
        id: String,
        /// Write its certificate chain (PEM, the authority first) to FILE
        #[arg(long, value_name = "FILE")]
        chain_out: Option<PathBuf>,
    },
    /// Install the certificate an external CA signed for an external authority
    /// (`--certificate`: the global `--cert` is the mTLS client certificate)
    ImportCert {
        /// Authority id
        id: String,
        /// PEM file with the authority's certificate
        #[arg(long, value_name = "FILE")]
        certificate: PathBuf,
        /// PEM file with its issuers up to the root
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List the profiles
    List,
    /// Show one profile with its parameters
    Show {
        /// Profile id
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate for the key of a PKCS#10 request
    Issue {
        /// Issuing authority id
        #[arg(long, value_name = "ID")]
        authority: String,
        /// Profile id
        #[arg(long, value_name = "ID")]
        profile: String,
        /// PEM file with the certificate request (or --generate-key)
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "generate_key",
            conflicts_with = "generate_key"
        )]
        csr: Option<PathBuf>,
        /// The daemon generates the key pair and returns it with the certificate in a PKCS#12,
        /// written to --out (needs --key-type and --p12-password-file)
        #[arg(long, requires_all = ["key_type", "p12_password_file", "out"])]
        generate_key: bool,
        /// Key type with --generate-key: EC:P-256, EC:P-384, RSA:2048, RSA:3072 or RSA:4096
        #[arg(long, value_name = "TYPE", requires = "generate_key")]
        key_type: Option<String>,
        /// File whose first line is the PKCS#12 password (8 or more characters), with --generate-key
        #[arg(long, value_name = "FILE", requires = "generate_key")]
        p12_password_file: Option<PathBuf>,
        /// A profile parameter (repeat for several)
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Validity in years [default: the profile's]
        #[arg(long, value_name = "N")]
        validity_years: Option<u32>,
        /// Write the certificate (PEM) to FILE; with --generate-key the PKCS#12 (DER)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Find certificates by common name and/or serial number
    Find {
        /// Common name (exact, case-insensitive)
        #[arg(long)]
        cn: Option<String>,
        /// Serial number in hex (any case, ':' allowed)
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// Certificates per page
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page token printed by the previous page
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
    /// Revoke (hold, release) certificates: by --serial and --profile, or by --id
    #[command(group(clap::ArgGroup::new("which").required(true).args(["serial", "id"])))]
    Revoke {
        /// Serial number in hex (needs --profile)
        #[arg(long, value_name = "HEX", requires = "profile", conflicts_with = "id")]
        serial: Option<String>,
        /// Profile the certificate was issued under
        #[arg(long, value_name = "ID", requires = "serial")]
        profile: Option<String>,
        /// Certificate id (repeat, or list several, for more than one)
        #[arg(long, value_name = "ID", num_args = 1..)]
        id: Vec<String>,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, removeFromCRL,
        /// privilegeWithdrawn, aACompromise, or its code (0-10 but 7)
        #[arg(long, value_name = "REASON", value_parser = parse_reason)]
        reason: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Fetch an authority's latest CRL
    Get {
        /// Authority id
        #[arg(long, value_name = "ID")]
        authority: String,
        /// File to write the CRL to
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write PEM instead of DER
        #[arg(long)]
        pem: bool,
    },
}

/// Authority kinds, spelled as [`cardhsm_client::names`] spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Root,
    Intermediate,
    External,
}

impl From<KindArg> for AuthorityKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Root => Self::Root,
            KindArg::Intermediate => Self::Intermediate,
            KindArg::External => Self::External,
        }
    }
}

/// `--param name=value`: split at the first `=`; the name must not be empty, the value may be.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` has no parameter name before `=`"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// `--reason`: an RFC 5280 reason by its openssl name or code.
pub fn parse_reason(text: &str) -> Result<u32, String> {
    parse_crl_reason(text).ok_or_else(|| {
        format!(
            "`{text}` is not an RFC 5280 reason: unspecified, keyCompromise, cACompromise, \
             affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL, \
             privilegeWithdrawn, aACompromise, or 0-10 except 7"
        )
    })
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name to log in as; without it, the global --cert and --key log in as the
    /// administrator holding that certificate (no password; later commands use it too)
    #[arg(long, short = 'u')]
    pub username: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List the tokens in every slot
    List,
}

#[derive(Debug, Subcommand)]
pub enum ReadersCommand {
    /// List the readers and the card in each
    List,
    /// Print the readers, then every reader and card change as it happens (until interrupted)
    Watch,
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
        #[arg(long, required_unless_present = "reader", conflicts_with = "reader")]
        token_serial: Option<String>,
        /// The card in this PC/SC reader (see `cardhsm readers list`) instead of --token-serial
        #[arg(long)]
        reader: Option<String>,
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
    fn cert_revoke_reasons_by_name_and_number() -> Result<(), clap::Error> {
        for (reason, code) in
            [("keyCompromise", 1), ("keycompromise", 1), ("removeFromCRL", 8), ("10", 10), ("0", 0)]
        {
            let cli = parse(&["cert", "revoke", "--serial", "0a1b", "--profile", "p", "--reason", reason])?;
            match cli.command {
                Command::Cert(CertCommand::Revoke { serial, profile, id, reason: got }) => {
                    assert_eq!(got, code, "{reason}");
                    assert_eq!(serial.as_deref(), Some("0a1b"));
                    assert_eq!(profile.as_deref(), Some("p"));
                    assert!(id.is_empty());
                }
                other => panic!("unexpected parse: {other:?}"),
            }
        }
        for bad in ["7", "11", "-1", "stolen", "key-compromise", ""] {
            let reason = format!("--reason={bad}");
            let err = parse(&["cert", "revoke", "--id", "c1", &reason]).err();
            assert_eq!(err.as_ref().map(|e| e.kind()), Some(ErrorKind::ValueValidation), "{bad}");
            assert_eq!(err.map(|e| e.exit_code()), Some(2));
        }
        Ok(())
    }

    #[test]
    fn cert_revoke_by_ids_or_serial_not_both() -> Result<(), clap::Error> {
        let cli = parse(&["cert", "revoke", "--id", "a", "b", "--id", "c", "--reason", "superseded"])?;
        assert!(matches!(
            cli.command,
            Command::Cert(CertCommand::Revoke { ref id, reason: 4, .. }) if id == &["a", "b", "c"]
        ));
        let kind = |args: &[&str]| parse(args).err().map(|e| e.kind());
        assert_eq!(kind(&["cert", "revoke", "--reason", "1"]), Some(ErrorKind::MissingRequiredArgument));
        assert_eq!(
            kind(&["cert", "revoke", "--serial", "01", "--reason", "1"]),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind(&["cert", "revoke", "--serial", "01", "--profile", "p", "--id", "x", "--reason", "1"]),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(kind(&["cert", "revoke", "--id", "x"]), Some(ErrorKind::MissingRequiredArgument));
        Ok(())
    }

    #[test]
    fn cert_issue_params() -> Result<(), clap::Error> {
        let cli = parse(&[
            "cert",
            "issue",
            "--authority",
            "ca1",
            "--profile",
            "ecc-device",
            "--csr",
            "req.pem",
            "--param",
            "country=CZ",
            "--param",
            "organization=Acme = Co",
            "--param",
            "empty=",
        ])?;
        match cli.command {
            Command::Cert(CertCommand::Issue {
                authority,
                profile,
                csr,
                params,
                out,
                validity_years,
                ..
            }) => {
                assert_eq!((authority.as_str(), profile.as_str()), ("ca1", "ecc-device"));
                assert_eq!(csr, Some(PathBuf::from("req.pem")));
                assert_eq!(
                    params,
                    [
                        ("country".to_owned(), "CZ".to_owned()),
                        ("organization".to_owned(), "Acme = Co".to_owned()),
                        ("empty".to_owned(), String::new()),
                    ]
                );
                assert_eq!((out, validity_years), (None, None));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        for bad in ["country", "=CZ", " =x"] {
            let err =
                parse(&["cert", "issue", "--authority", "a", "--profile", "p", "--csr", "r", "--param", bad])
                    .err();
            assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::ValueValidation), "{bad}");
        }
        assert!(
            parse(&["cert", "issue", "--authority", "a", "--profile", "p"]).is_err(),
            "--csr is required"
        );
        Ok(())
    }

    #[test]
    fn cert_issue_generate_key_needs_its_options() -> Result<(), clap::Error> {
        let base = ["cert", "issue", "--authority", "a", "--profile", "p"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let cli = with(&[
            "--generate-key",
            "--key-type",
            "EC:P-256",
            "--p12-password-file",
            "pw",
            "--out",
            "x.p12",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Cert(CertCommand::Issue { generate_key: true, csr: None, ref key_type, .. })
                if key_type.as_deref() == Some("EC:P-256")
        ));
        let kind = |extra: &[&str]| with(extra).err().map(|e| e.kind());
        assert_eq!(
            kind(&["--generate-key", "--key-type", "EC:P-256", "--out", "x.p12"]),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind(&[
                "--csr",
                "r",
                "--generate-key",
                "--key-type",
                "EC:P-256",
                "--p12-password-file",
                "pw",
                "--out",
                "x"
            ]),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(kind(&["--csr", "r", "--key-type", "EC:P-256"]), Some(ErrorKind::MissingRequiredArgument));
        Ok(())
    }

    #[test]
    fn store_commands() -> Result<(), clap::Error> {
        let cli = parse(&[
            "store",
            "import",
            "--token",
            "card-01",
            "--certificate",
            "c.pem",
            "--private-key",
            "k.pem",
        ])?;
        assert!(matches!(cli.command, Command::Store(StoreCommand::Import { protected: false, .. })));
        let cli = parse(&["store", "csr", "--token", "t", "--subject", "CN=x", "--key-type", "RSA:4096"])?;
        assert!(matches!(cli.command, Command::Store(StoreCommand::Csr { key_type: (_, _, 4096), .. })));
        assert!(parse(&["store", "csr", "--token", "t", "--subject", "CN=x", "--key-type", "DSA"]).is_err());
        assert!(parse(&["store", "delete", "--token", "t"]).is_err(), "the id is required");
        Ok(())
    }

    #[test]
    fn ca_create_and_crl_get() -> Result<(), clap::Error> {
        let cli = parse(&[
            "ca",
            "create",
            "--name",
            "Issuing",
            "--key-type",
            "EC:P-384",
            "--subject",
            "CN=Issuing,O=Acme",
            "--parent",
            "r1",
        ])?;
        match cli.command {
            Command::Ca(CaCommand::Create { name, key_type, subject, validity_years, kind, parent }) => {
                assert_eq!(
                    (name.as_str(), key_type.as_str(), subject.as_str()),
                    ("Issuing", "EC:P-384", "CN=Issuing,O=Acme")
                );
                assert_eq!((validity_years, kind, parent.as_deref()), (10, None, Some("r1")));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        let cli = parse(&[
            "ca",
            "create",
            "--name",
            "X",
            "--key-type",
            "RSA:2048",
            "--subject",
            "CN=X",
            "--kind",
            "external",
        ])?;
        assert!(matches!(cli.command, Command::Ca(CaCommand::Create { kind: Some(KindArg::External), .. })));
        let cli = parse(&["crl", "get", "--authority", "a", "--out", "ca.crl", "--pem"])?;
        assert!(matches!(cli.command, Command::Crl(CrlCommand::Get { pem: true, .. })));
        assert!(parse(&["crl", "get", "--authority", "a"]).is_err(), "--out is required");
        Ok(())
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
        assert!(
            matches!(cli.command, Command::Login(LoginArgs { ref username }) if username.as_deref() == Some("admin"))
        );
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
            Command::Users(UsersCommand::Create { username, role, .. }) => {
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
