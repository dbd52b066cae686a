//! Secrets named by the configuration: where a PIN or password comes from (an environment
//! variable or a file, never the command line or the TOML itself) and the zeroizing,
//! redacting holder the rest of the daemon passes around.

use crate::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where a secret comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Name of an environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// Path of a file holding the secret (one trailing newline is stripped).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    pub fn env(name: &str) -> Self {
        Self { env: Some(name.to_owned()), file: None }
    }

    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self { env: None, file: Some(path.into()) }
    }

    /// Human-readable origin, for messages (never the value).
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(e), _) => format!("environment variable {e}"),
            (None, Some(f)) => format!("file {}", f.display()),
            (None, None) => "nothing".to_owned(),
        }
    }

    /// Checks the shape: exactly one of `env` / `file`. `key` names the field in errors.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.env, &self.file) {
            (Some(e), None) if !e.is_empty() => Ok(()),
            (None, Some(f)) if !f.as_os_str().is_empty() => Ok(()),
            _ => Err(ConfigError::invalid(key, "must set exactly one of `env` or `file`")),
        }
    }

    /// Makes a relative `file` relative to `base` (the config file's directory).
    pub fn resolve_relative(&mut self, base: &Path) {
        if let Some(f) = &self.file
            && f.is_relative()
        {
            self.file = Some(base.join(f));
        }
    }

    /// Reads the secret. `Ok(None)` when the environment variable is unset; a file that
    /// cannot be read is an error naming `key` and the path.
    pub fn load(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(name) = &self.env {
            return Ok(std::env::var(name).ok().map(Secret::new));
        }
        if let Some(path) = &self.file {
            let raw = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read secret file {}: {e}", path.display()))
            })?;
            let mut raw = Zeroizing::new(raw);
            let trimmed = raw.trim_end_matches(['\r', '\n']).to_owned();
            raw.clear();
            return Ok(Some(Secret::new(trimmed)));
        }
        Ok(None)
    }
}

/// A secret value: zeroized on drop, `[redacted]` in Debug and Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value itself. Call only where it is handed to the HSM or a hash function.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}
