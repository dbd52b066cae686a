//! The CLI's session file: `cardhsm login` saves the endpoint and token pair here, every other
//! command loads it into a [`CardhsmClient`] and saves rotated tokens back after a refresh.
//!
//! Location: `$CARDHSM_SESSION_FILE`, else `$XDG_CONFIG_HOME/cardhsm/session.json`, else
//! `~/.config/cardhsm/session.json`. The file is written atomically (temporary file + rename)
//! with mode 0600, and a directory it creates gets mode 0700.

use crate::auth::TokenPair;
use crate::client::CardhsmClient;
use crate::error::ClientError;
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Names the session file explicitly.
pub const SESSION_FILE_ENV: &str = "CARDHSM_SESSION_FILE";

/// Mode of the session file: read and write for its owner only.
pub const FILE_MODE: u32 = 0o600;

/// Mode of a directory created for the session file.
pub const DIR_MODE: u32 = 0o700;

/// A logged-in session: where, and with which tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The endpoint the tokens belong to.
    pub endpoint: String,
    /// The token pair.
    pub tokens: TokenPair,
}

/// The file's layout, written.
#[derive(Serialize)]
struct FileOut<'a> {
    endpoint: &'a str,
    access_token: &'a str,
    refresh_token: &'a str,
    access_expires_at: i64,
}

/// The file's layout, read.
#[derive(Deserialize)]
struct FileIn {
    endpoint: String,
    access_token: String,
    refresh_token: String,
    access_expires_at: i64,
}

impl Session {
    /// The session file's path from this process's environment.
    pub fn default_path() -> Result<PathBuf, ClientError> {
        let var = std::env::var_os;
        Self::path_from(var(SESSION_FILE_ENV), var("XDG_CONFIG_HOME"), var("HOME"))
            .ok_or(ClientError::NoSessionPath)
    }

    /// The session file's path from the values of `CARDHSM_SESSION_FILE`, `XDG_CONFIG_HOME` and
    /// `HOME` (empty counts as unset; a relative `XDG_CONFIG_HOME` is ignored, as the XDG
    /// specification says).
    pub fn path_from(
        session_file: Option<OsString>,
        xdg_config_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Option<PathBuf> {
        let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(file) = set(session_file) {
            return Some(file);
        }
        let config = set(xdg_config_home)
            .filter(|dir| dir.is_absolute())
            .or_else(|| set(home).map(|home| home.join(".config")))?;
        Some(config.join("cardhsm").join("session.json"))
    }

    /// Reads the session at `path`; `Ok(None)` when there is no file.
    pub fn load(path: &Path) -> Result<Option<Self>, ClientError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ClientError::SessionIo { path: path.to_owned(), source }),
        };
        let file: FileIn = serde_json::from_slice(&bytes)
            .map_err(|source| ClientError::SessionFormat { path: path.to_owned(), source })?;
        Ok(Some(Self {
            endpoint: file.endpoint,
            tokens: TokenPair {
                access_token: SecretString::new(file.access_token),
                refresh_token: SecretString::new(file.refresh_token),
                access_expires_at: file.access_expires_at,
            },
        }))
    }

    /// Writes the session to `path` with mode 0600, replacing any earlier file atomically and
    /// creating missing directories with mode 0700.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let io_error = |source| ClientError::SessionIo { path: path.to_owned(), source };
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&FileOut {
                endpoint: &self.endpoint,
                access_token: self.tokens.access_token.expose(),
                refresh_token: self.tokens.refresh_token.expose(),
                access_expires_at: self.tokens.access_expires_at,
            })
            .map_err(|source| ClientError::SessionFormat { path: path.to_owned(), source })?,
        );
        replace_private(path, &json).map_err(io_error)
    }

    /// Deletes the session file; `Ok(false)` when there was none.
    pub fn remove(path: &Path) -> Result<bool, ClientError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ClientError::SessionIo { path: path.to_owned(), source }),
        }
    }

    /// A client for this session over `client`'s channel.
    pub fn client(&self, client: CardhsmClient) -> CardhsmClient {
        client.with_tokens(self.tokens.clone())
    }

    /// Keeps the session file at `path` in step with `client`: after every refresh the rotated
    /// pair is saved (with `endpoint`); a failed save is handed to `on_error`.
    pub fn save_on_change(
        client: &CardhsmClient,
        path: PathBuf,
        endpoint: String,
        on_error: impl Fn(&ClientError) + Send + Sync + 'static,
    ) {
        client.on_tokens_changed(move |tokens| {
            let session = Session { endpoint: endpoint.clone(), tokens: tokens.clone() };
            if let Err(e) = session.save(&path) {
                on_error(&e);
            }
        });
    }
}

/// A certificate login (`cardhsm login --cert … --key …`): the endpoint and the TLS files later
/// commands connect with. It holds no token: the daemon authenticates the client certificate on
/// every call. Kept in the same file as a [`Session`] (one or the other), told apart by its
/// `client_certificate` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSession {
    /// The endpoint the certificate was checked against.
    pub endpoint: String,
    /// PEM client certificate and its key (absolute paths).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM CA file for the daemon's certificate, when one was given.
    pub ca_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct CertFile {
    endpoint: String,
    client_certificate: PathBuf,
    client_key: PathBuf,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

impl CertSession {
    /// Reads a certificate login at `path`; `Ok(None)` when there is no file or it holds a
    /// token [`Session`].
    pub fn load(path: &Path) -> Result<Option<Self>, ClientError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ClientError::SessionIo { path: path.to_owned(), source }),
        };
        let format = |source| ClientError::SessionFormat { path: path.to_owned(), source };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(format)?;
        if value.get("client_certificate").is_none() {
            return Ok(None);
        }
        let file: CertFile = serde_json::from_value(value).map_err(format)?;
        Ok(Some(Self {
            endpoint: file.endpoint,
            cert: file.client_certificate,
            key: file.client_key,
            ca_file: file.ca_file,
        }))
    }

    /// Writes the certificate login to `path` like [`Session::save`] (mode 0600, atomically),
    /// replacing any token session there.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let file = CertFile {
            endpoint: self.endpoint.clone(),
            client_certificate: self.cert.clone(),
            client_key: self.key.clone(),
            ca_file: self.ca_file.clone(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|source| ClientError::SessionFormat { path: path.to_owned(), source })?;
        replace_private(path, &json)
            .map_err(|source| ClientError::SessionIo { path: path.to_owned(), source })
    }
}

/// Replaces `path` atomically (temporary file + rename) with `bytes`, mode 0600, creating missing
/// directories with mode 0700.
fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the session path names no file"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = write_private(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Creates `path` afresh (never through an existing file or symlink) with mode 0600 and writes
/// `bytes` to disk.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)?;
    // The umask may only take bits away; make sure the owner can read it back.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn session(access: &str, refresh: &str) -> Session {
        Session {
            endpoint: "http://127.0.0.1:50051".into(),
            tokens: TokenPair {
                access_token: access.into(),
                refresh_token: refresh.into(),
                access_expires_at: 1_900_000_000,
            },
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).map(|m| m.mode() & 0o777).unwrap_or(0)
    }

    #[test]
    fn round_trip() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("session.json");
        let saved = session("access-1", "refresh-1");
        saved.save(&path)?;
        assert_eq!(Session::load(&path)?, Some(saved));
        Ok(())
    }

    #[test]
    fn file_is_0600_and_created_dirs_0700() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("config").join("cardhsm").join("session.json");
        session("a", "r").save(&path)?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("config").join("cardhsm")), 0o700);
        assert_eq!(mode(&dir.path().join("config")), 0o700);
        Ok(())
    }

    #[test]
    fn overwriting_a_loose_file_leaves_0600() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("session.json");
        fs::write(&path, "{}").map_err(|source| ClientError::SessionIo { path: path.clone(), source })?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .map_err(|source| ClientError::SessionIo { path: path.clone(), source })?;
        session("a2", "r2").save(&path)?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(Session::load(&path)?.map(|s| s.tokens.access_token), Some("a2".into()));
        // No temporary file is left behind.
        let entries = fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(entries, 1);
        Ok(())
    }

    #[test]
    fn missing_file_is_none_and_remove_reports_it() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("session.json");
        assert_eq!(Session::load(&path)?, None);
        assert!(!Session::remove(&path)?);
        session("a", "r").save(&path)?;
        assert!(Session::remove(&path)?);
        assert_eq!(Session::load(&path)?, None);
        Ok(())
    }

    #[test]
    fn corrupt_file_is_a_format_error() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("session.json");
        fs::write(&path, "{\"endpoint\": 1")
            .map_err(|source| ClientError::SessionIo { path: path.clone(), source })?;
        assert!(matches!(Session::load(&path), Err(ClientError::SessionFormat { .. })));
        Ok(())
    }

    #[test]
    fn file_has_the_documented_fields() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("session.json");
        session("acc", "ref").save(&path)?;
        let text = fs::read_to_string(&path)
            .map_err(|source| ClientError::SessionIo { path: path.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|source| ClientError::SessionFormat { path: path.clone(), source })?;
        assert_eq!(value["endpoint"], "http://127.0.0.1:50051");
        assert_eq!(value["access_token"], "acc");
        assert_eq!(value["refresh_token"], "ref");
        assert_eq!(value["access_expires_at"], 1_900_000_000);
        Ok(())
    }

    #[test]
    fn certificate_logins_round_trip_and_are_no_token_session() -> Result<(), ClientError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClientError::SessionIo { path: "tmp".into(), source })?;
        let path = dir.path().join("session.json");
        let cert = CertSession {
            endpoint: "https://hsm.example:50051".into(),
            cert: "/etc/cardhsm/admin.pem".into(),
            key: "/etc/cardhsm/admin.key".into(),
            ca_file: Some("/etc/cardhsm/ca.pem".into()),
        };
        cert.save(&path)?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(CertSession::load(&path)?, Some(cert));
        assert!(matches!(Session::load(&path), Err(ClientError::SessionFormat { .. })));
        // A token session in the file is not a certificate login.
        session("a", "r").save(&path)?;
        assert_eq!(CertSession::load(&path)?, None);
        assert_eq!(CertSession::load(&dir.path().join("none.json"))?, None);
        Ok(())
    }

    #[test]
    fn debug_never_shows_tokens() {
        let shown = format!("{:?}", session("very-secret-access", "very-secret-refresh"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn path_precedence() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(Session::path_from(os("/x/s.json"), os("/xdg"), os("/home/u")), Some("/x/s.json".into()));
        assert_eq!(
            Session::path_from(None, os("/xdg"), os("/home/u")),
            Some("/xdg/cardhsm/session.json".into())
        );
        assert_eq!(
            Session::path_from(os(""), os("relative"), os("/home/u")),
            Some("/home/u/.config/cardhsm/session.json".into())
        );
        assert_eq!(Session::path_from(None, None, None), None);
    }
}
