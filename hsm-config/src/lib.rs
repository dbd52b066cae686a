//! cardhsm's configuration: the one TOML file the daemon reads at start, before anything else.
//!
//! `Config::from_toml_str` / `Config::load` parse with `deny_unknown_fields` and then
//! `validate()`, which yields a fully defaulted [`Config`] or an error naming the offending key.
//! Secrets (PINs, passwords) are never in the file itself: the file names an environment
//! variable or a file ([`SecretSource`]), and [`Secret`] keeps the value zeroized and redacted.

mod secret;
mod validate;

pub use secret::{Secret, SecretSource};
pub use validate::ConfigError;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration, fully defaulted once validated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub pkcs11: Pkcs11Config,
    #[serde(default)]
    pub cards: CardsConfig,
    #[serde(default)]
    pub issuance: IssuanceConfig,
    #[serde(default)]
    pub readers: ReadersConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub batches: BatchesConfig,
}

/// `[batches]`: the batch engine (BatchService).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchesConfig {
    /// The most devices one batch may order. Default 100000.
    #[serde(default = "defaults::batches_max_batch_size")]
    pub max_batch_size: u32,
    /// Seconds after a batch finishes before its stored files (PKCS#12s) are removed and the
    /// batch becomes ZIP_REMOVED_AFTER_EXPIRATION. Default 604800 (7 days).
    #[serde(default = "defaults::batches_zip_lifetime_secs")]
    pub zip_lifetime_secs: u32,
    /// How often expired files are looked for, in seconds. Default 60.
    #[serde(default = "defaults::batches_sweep_interval_secs")]
    pub sweep_interval_secs: u32,
    /// Devices worked in parallel groups at once (key generation, PKCS#12): 0 = one per CPU
    /// core. Default 0.
    #[serde(default)]
    pub workers: u32,
    /// Devices committed per store transaction. Default 64.
    #[serde(default = "defaults::batches_devices_per_transaction")]
    pub devices_per_transaction: u32,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            max_batch_size: defaults::batches_max_batch_size(),
            zip_lifetime_secs: defaults::batches_zip_lifetime_secs(),
            sweep_interval_secs: defaults::batches_sweep_interval_secs(),
            workers: 0,
            devices_per_transaction: defaults::batches_devices_per_transaction(),
        }
    }
}

/// `[notify]`: how messages to people (password-reset codes) are delivered.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The outbox file: one JSON line per message (`to`, `subject`, `body`). Default
    /// `outbox.jsonl` in the directory of `store.path`; relative to the config file's directory.
    #[serde(default)]
    pub outbox: Option<PathBuf>,
    /// `[notify.smtp]`: send messages by SMTP instead of the outbox. Default: unset.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
}

/// `[notify.smtp]`: a mail relay that takes the daemon's messages.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name of the relay (also the name its TLS certificate must carry).
    pub host: String,
    /// Default 587 (submission with STARTTLS).
    #[serde(default = "defaults::smtp_port")]
    pub port: u16,
    /// The sender address, e.g. "cardhsm@example.com".
    pub from: String,
    /// `starttls` (the default), `tls` (implicit TLS, usually port 465) or `none` (a relay on
    /// the same host or a trusted network only: the message carries a reset code).
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User name for AUTH PLAIN (only over TLS); unset = no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Where the relay password comes from (an environment variable or a file).
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Connect, read and write timeout, in seconds. Default 10, 1..=120.
    #[serde(default = "defaults::smtp_timeout_secs")]
    pub timeout_secs: u32,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// `[readers]`: card readers over PC/SC.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadersConfig {
    /// Watch the PC/SC readers (pcscd). Default true; without pcscd the monitor waits for it.
    #[serde(default = "defaults::readers_enabled")]
    pub enabled: bool,
}

impl Default for ReadersConfig {
    fn default() -> Self {
        Self { enabled: defaults::readers_enabled() }
    }
}

/// `[server]`: where the gRPC API listens and how it is protected.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Default `127.0.0.1:50051`. Port 0 picks a free port (the daemon logs the one it got).
    #[serde(default = "defaults::grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// The REST shim (and `/metrics`, `/openapi.json`). Default `127.0.0.1:8080`; port 0
    /// picks a free port. It shares `tls` with the gRPC API.
    #[serde(default = "defaults::rest_listen")]
    pub rest_listen: SocketAddr,
    /// When set, the daemon writes the address it actually listens on to this file once ready
    /// (the gRPC address on the first line, the REST address on the second).
    #[serde(default)]
    pub ready_file: Option<PathBuf>,
    /// Optional TLS; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The largest single upload (a CSR, a certificate, a key file, a CSV or ZIP of a batch) a
    /// request may carry, in bytes. Default 4 MiB; 1 KiB to 256 MiB. Over it, the request is
    /// refused with an error naming the field; the transport limit per message is twice this
    /// plus 64 KiB, so a message with several uploads still reaches the field check.
    #[serde(default = "defaults::max_upload_bytes")]
    pub max_upload_bytes: u32,
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain the server presents (leaf first). Required; relative to the
    /// config file's directory.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file` (PKCS#8 or SEC1/PKCS#1). Required; relative to the config
    /// file's directory.
    pub key_file: PathBuf,
    /// CA bundle for client certificates. When set, clients must present a certificate
    /// signed by it (client-certificate TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `[store]`: the SQLite database.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Default `cardhsm.sqlite3`; a relative path is taken from the config file's directory.
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// Read-only connections in the reader pool (WAL lets them run beside the one writer). Default 4, 1..=64.
    #[serde(default = "defaults::store_readers")]
    pub readers: u32,
}

/// `[auth]`: tokens and the bootstrap administrator.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Access-token lifetime in seconds. Default 900 (15 minutes), 60..=86400.
    #[serde(default = "defaults::access_token_ttl_secs")]
    pub access_token_ttl_secs: u32,
    /// Refresh-token lifetime in seconds. Default 43200 (12 hours), 300..=2592000.
    #[serde(default = "defaults::refresh_token_ttl_secs")]
    pub refresh_token_ttl_secs: u32,
    /// Where the bootstrap administrator's password comes from at first start.
    /// Default: environment variable `CARDHSM_BOOTSTRAP_PASSWORD`; when that is unset, the
    /// daemon generates a password and prints it once.
    #[serde(default = "defaults::bootstrap_password")]
    pub bootstrap_password: SecretSource,
    /// Failed sign-ins of one account (known or not) before it is throttled. Default 5, 1..=100.
    #[serde(default = "defaults::login_throttle_after")]
    pub login_throttle_after: u32,
    /// The first lockout after `login_throttle_after` failures, in seconds; it doubles with every
    /// further failure, up to 900. 0 = no lockout (the hourly limit of 100 failures still
    /// applies). Default 2, 0..=900.
    #[serde(default = "defaults::login_throttle_secs")]
    pub login_throttle_secs: u32,
    /// Realms for API keys (`AuthService.RealmAuth`). Default: none.
    #[serde(default)]
    pub realms: Vec<RealmConfig>,
    /// How long a password-reset code stays valid, in seconds. Default 3600, 1..=86400.
    #[serde(default = "defaults::password_reset_code_ttl_secs")]
    pub password_reset_code_ttl_secs: u32,
}

/// `[[auth.realms]]`: a realm API keys are issued for; a key carries the realm's roles, and only
/// a user holding every one of them may get a key for the realm.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    /// `^[A-Za-z0-9_.-]{1,64}$`, unique; `password` is reserved (the realm of Login sessions).
    pub name: String,
    /// One or more of `ADMIN`, `OPERATOR`, `ECO_ADMIN`, `ORG_ADMIN`, `USER` (an organization
    /// role brings the holder's privileges of that role).
    pub roles: Vec<String>,
}

/// `[pkcs11]`: the module and the tokens the daemon uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Default `/usr/lib/softhsm/libsofthsm2.so`.
    #[serde(default = "defaults::module")]
    pub module: PathBuf,
    /// Sessions in each token's pool. Default 4, 1..=64.
    #[serde(default = "defaults::sessions_per_token")]
    pub sessions_per_token: u32,
    /// How long a call waits for a free session before failing UNAVAILABLE. Default 5000, 1..=600000.
    #[serde(default = "defaults::session_wait_ms")]
    pub session_wait_ms: u32,
    /// User PIN for card tokens not listed in `tokens`. Default: env `CARDHSM_CARD_PIN`.
    #[serde(default = "defaults::card_pin")]
    pub card_pin: SecretSource,
    /// Tokens named explicitly, with their role and PIN.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `[[pkcs11.tokens]]`: one token, matched by serial or label (exactly one of the two).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token's serial number as the token reports it (CK_TOKEN_INFO.serialNumber).
    #[serde(default)]
    pub serial: Option<String>,
    /// The token's label as the token reports it (CK_TOKEN_INFO.label).
    #[serde(default)]
    pub label: Option<String>,
    /// Default `card`.
    #[serde(default)]
    pub role: TokenRole,
    /// The token's user PIN. Required: `{ env = "VAR" }` or `{ file = "path" }`.
    pub pin: SecretSource,
}

/// What a token is for.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// A smart card (or its stand-in): bound to an owner, holds the owner's keys.
    #[default]
    Card,
    /// The daemon's own HSM token: CA keys and service keys.
    Daemon,
}

/// `[cards]`: card policies.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardsConfig {
    /// Policy used when RegisterCard names none. Default `standard`; must name a policy.
    #[serde(default = "defaults::default_policy")]
    pub default_policy: String,
    /// Policies in addition to the built-in ones (`standard`, `dual`); a configured policy
    /// with a built-in name replaces it.
    #[serde(default)]
    pub policies: Vec<CardPolicy>,
    /// The certificate authority (by name) that issues the certificates of card keys whose
    /// policy names a `certificate_profile`. Default unset: IssueCard of such a policy is
    /// refused until it is set (authorities are made at run time, so this is checked then).
    #[serde(default)]
    pub authority: Option<String>,
}

/// `[[cards.policies]]`: which key pairs a card carries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardPolicy {
    /// `^[a-z0-9][a-z0-9_-]{0,63}$`, unique.
    pub name: String,
    /// At least one key, at most 16; labels unique within the policy.
    pub keys: Vec<CardKeySpec>,
}

/// One key pair a card policy asks for.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardKeySpec {
    /// CKA_LABEL of the key pair on the card: `^[A-Za-z0-9_-]{1,32}$`.
    pub label: String,
    /// `EC:P-256`, `EC:P-384`, `RSA:2048`, `RSA:3072` or `RSA:4096`.
    pub algorithm: KeyAlgorithm,
    /// The issuance profile (id) of the certificate IssueCard issues for this key from
    /// `cards.authority` and writes onto the card; unset = a key without a certificate.
    #[serde(default)]
    pub certificate_profile: Option<String>,
}

/// Key algorithms the daemon generates, written as `FAMILY:PARAM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum KeyAlgorithm {
    EcP256,
    EcP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The canonical name, e.g. `EC:P-256`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcP256 => "EC:P-256",
            KeyAlgorithm::EcP384 => "EC:P-384",
            KeyAlgorithm::Rsa2048 => "RSA:2048",
            KeyAlgorithm::Rsa3072 => "RSA:3072",
            KeyAlgorithm::Rsa4096 => "RSA:4096",
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown key algorithm {s:?}: expected one of EC:P-256, EC:P-384, RSA:2048, RSA:3072, RSA:4096"
                )
            })
    }
}

impl TryFrom<String> for KeyAlgorithm {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// `[issuance]`: certificate issuance.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuanceConfig {
    /// Profiles in addition to the built-in ones (`ecc-device`, `ecc-server`, `rsa-device`,
    /// `rsa-server`); a configured profile with a built-in id replaces it.
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
}

/// `[[issuance.profiles]]`: what certificates of one kind say.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `^[a-z0-9][a-z0-9_-]{0,63}$`, unique.
    pub id: String,
    /// Display name, 1..=128 characters.
    pub name: String,
    /// Subject keys the profile accepts: 1 or more of EC:P-256, EC:P-384, RSA:2048, RSA:3072, RSA:4096.
    pub key_algorithms: Vec<KeyAlgorithm>,
    /// The authority (by name) the profile issues from. Default: any.
    #[serde(default)]
    pub authority: Option<String>,
    /// RFC 4514 template; `{name}` is replaced by parameter `name` (an attribute whose
    /// parameter has no value is left out). Every placeholder must name a parameter.
    pub subject_dn: String,
    /// keyUsage names, see [`KEY_USAGE_NAMES`]. Default: `["digitalSignature"]`.
    #[serde(default = "defaults::profile_key_usages")]
    pub key_usages: Vec<String>,
    /// extendedKeyUsage names (see [`EXTENDED_KEY_USAGE_NAMES`]) or dotted OIDs. Default: none.
    #[serde(default)]
    pub extended_key_usages: Vec<String>,
    /// Default validity. Default 1; 1..=`max_validity_years`.
    #[serde(default = "defaults::profile_validity_years")]
    pub validity_years: u32,
    /// The most a request may ask for. Default 3; 1..=30.
    #[serde(default = "defaults::profile_max_validity_years")]
    pub max_validity_years: u32,
    /// Also put the common name into the subjectAltName as a DNS name (server certificates).
    /// Default false.
    #[serde(default)]
    pub dns_san_from_common_name: bool,
    /// PBKDF2 and MAC iterations of the PKCS#12 files made with this profile (server-generated
    /// keys, batches). Default 2048 (what OpenSSL 3 writes), 1000..=1000000.
    #[serde(default = "defaults::profile_pkcs12_iterations")]
    pub pkcs12_iterations: u32,
    /// At least one, at most 32; names unique.
    pub parameters: Vec<ProfileParameterConfig>,
}

/// `[[issuance.profiles.parameters]]`: one value a request fills in.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileParameterConfig {
    /// `^[A-Za-z][A-Za-z0-9_]{0,63}$`. `commonName`, `organization`, `organizationalUnit`,
    /// `locality`, `state` and `country` with scope CSR_SUBJECT are read from the CSR when the
    /// request does not give them.
    pub name: String,
    /// A hint for user interfaces (`text`, `email`, `country`, …). Default `text`.
    #[serde(default = "defaults::parameter_input_type")]
    pub input_type: String,
    /// Default false.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub placeholder: String,
    /// A regular expression (Rust `regex` syntax) the whole value must match. Default: any
    /// 1 to 64 characters.
    #[serde(default = "defaults::parameter_pattern")]
    pub validation_pattern: String,
    /// Shown when the value does not match.
    #[serde(default)]
    pub message: String,
    /// Default value.
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub title: String,
    /// Any of BATCH, REQUEST, CSR, CSR_SUBJECT, ORGANIZATION. Default `["REQUEST"]`.
    #[serde(default = "defaults::parameter_scopes")]
    pub scopes: Vec<String>,
    /// Default false.
    #[serde(default)]
    pub dynamic: bool,
}

/// keyUsage names a profile may list (RFC 5280 4.2.1.3 spelling).
pub const KEY_USAGE_NAMES: [&str; 8] = [
    "digitalSignature",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

/// extendedKeyUsage names a profile may list (besides dotted OIDs).
pub const EXTENDED_KEY_USAGE_NAMES: [&str; 7] = [
    "serverAuth",
    "clientAuth",
    "codeSigning",
    "emailProtection",
    "timeStamping",
    "OCSPSigning",
    "smartcardLogon",
];

/// Parameter scopes a profile may list.
pub const PARAMETER_SCOPES: [&str; 5] = ["BATCH", "REQUEST", "CSR", "CSR_SUBJECT", "ORGANIZATION"];

/// `[logging]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter directive. Default `info`. `RUST_LOG` overrides it.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Defaults, one function per field so the docs above and the code agree in one place.
pub mod defaults {
    use super::*;

    pub fn readers_enabled() -> bool {
        true
    }
    pub fn batches_max_batch_size() -> u32 {
        100_000
    }
    pub fn batches_zip_lifetime_secs() -> u32 {
        604_800
    }
    pub fn batches_sweep_interval_secs() -> u32 {
        60
    }
    pub fn batches_devices_per_transaction() -> u32 {
        64
    }
    pub fn max_upload_bytes() -> u32 {
        4 * 1024 * 1024
    }
    pub fn grpc_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 50051))
    }
    pub fn rest_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn store_path() -> PathBuf {
        PathBuf::from("cardhsm.sqlite3")
    }
    pub fn store_readers() -> u32 {
        4
    }
    pub fn access_token_ttl_secs() -> u32 {
        900
    }
    pub fn refresh_token_ttl_secs() -> u32 {
        43_200
    }
    pub fn bootstrap_password() -> SecretSource {
        SecretSource::env("CARDHSM_BOOTSTRAP_PASSWORD")
    }
    pub fn login_throttle_after() -> u32 {
        5
    }
    pub fn login_throttle_secs() -> u32 {
        2
    }
    pub fn password_reset_code_ttl_secs() -> u32 {
        3_600
    }
    pub fn module() -> PathBuf {
        PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
    }
    pub fn sessions_per_token() -> u32 {
        4
    }
    pub fn session_wait_ms() -> u32 {
        5_000
    }
    pub fn profile_pkcs12_iterations() -> u32 {
        2048
    }

    pub fn smtp_port() -> u16 {
        587
    }

    pub fn smtp_timeout_secs() -> u32 {
        10
    }

    pub fn card_pin() -> SecretSource {
        SecretSource::env("CARDHSM_CARD_PIN")
    }
    pub fn default_policy() -> String {
        "standard".to_owned()
    }
    pub fn profile_key_usages() -> Vec<String> {
        vec!["digitalSignature".to_owned()]
    }
    pub fn profile_validity_years() -> u32 {
        1
    }
    pub fn profile_max_validity_years() -> u32 {
        3
    }
    pub fn parameter_input_type() -> String {
        "text".to_owned()
    }
    pub fn parameter_pattern() -> String {
        ".{1,64}".to_owned()
    }
    pub fn parameter_scopes() -> Vec<String> {
        vec!["REQUEST".to_owned()]
    }
    pub fn log_level() -> String {
        "info".to_owned()
    }

    /// The built-in card policies: `standard` (one EC P-256 authentication key), `dual`
    /// (EC P-256 authentication and signature keys), and `piv` (the same two keys, each with a
    /// certificate from `cards.authority`).
    pub fn builtin_policies() -> Vec<CardPolicy> {
        let key = |label: &str, profile: Option<&str>| CardKeySpec {
            label: label.into(),
            algorithm: KeyAlgorithm::EcP256,
            certificate_profile: profile.map(str::to_owned),
        };
        vec![
            CardPolicy { name: "standard".into(), keys: vec![key("auth", None)] },
            CardPolicy { name: "dual".into(), keys: vec![key("auth", None), key("sign", None)] },
            // A PIV-style card: authentication and signature keys, each with its certificate
            // (needs `cards.authority`).
            CardPolicy {
                name: "piv".into(),
                keys: vec![key("auth", Some("card-authentication")), key("sign", Some("card-signature"))],
            },
        ]
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_listen: defaults::grpc_listen(),
            rest_listen: defaults::rest_listen(),
            ready_file: None,
            tls: None,
            max_upload_bytes: defaults::max_upload_bytes(),
        }
    }
}
impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: defaults::store_path(), readers: defaults::store_readers() }
    }
}
impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: defaults::access_token_ttl_secs(),
            refresh_token_ttl_secs: defaults::refresh_token_ttl_secs(),
            bootstrap_password: defaults::bootstrap_password(),
            login_throttle_after: defaults::login_throttle_after(),
            login_throttle_secs: defaults::login_throttle_secs(),
            realms: Vec::new(),
            password_reset_code_ttl_secs: defaults::password_reset_code_ttl_secs(),
        }
    }
}
impl Default for Pkcs11Config {
    fn default() -> Self {
        Self {
            module: defaults::module(),
            sessions_per_token: defaults::sessions_per_token(),
            session_wait_ms: defaults::session_wait_ms(),
            card_pin: defaults::card_pin(),
            tokens: Vec::new(),
        }
    }
}
impl Default for CardsConfig {
    fn default() -> Self {
        Self { default_policy: defaults::default_policy(), policies: Vec::new(), authority: None }
    }
}
impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: defaults::log_level(), format: LogFormat::Text }
    }
}

impl Default for Config {
    /// The embedded defaults: what `cardhsmd` runs on with no config file.
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            pkcs11: Pkcs11Config::default(),
            cards: CardsConfig::default(),
            issuance: IssuanceConfig::default(),
            readers: ReadersConfig::default(),
            logging: LoggingConfig::default(),
            notify: NotifyConfig::default(),
            batches: BatchesConfig::default(),
        }
    }
}
