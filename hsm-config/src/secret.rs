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

    /// Reads the secret. `Ok(None)` when the environment variable is unset; a variable that is
    /// not valid UTF-8 or a file that cannot be read is an error naming `key` (and the path,
    /// never the value).
    ///
    /// From a file, exactly one trailing line ending (`\n` or `\r\n`) is stripped, so a file
    /// written by `echo` or an editor holds the same secret as one written with `printf`; any
    /// other whitespace is part of the secret.
    pub fn load(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(name) = &self.env {
            return match std::env::var(name) {
                Ok(value) => Ok(Some(Secret::new(value))),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(raw)) => {
                    // Zeroize the raw bytes before reporting; the message names only the variable.
                    let _raw = Zeroizing::new(raw.into_encoded_bytes());
                    Err(ConfigError::invalid(key, format!("environment variable {name} is not valid UTF-8")))
                }
            };
        }
        if let Some(path) = &self.file {
            let mut raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read secret file {}: {e}", path.display()))
            })?);
            if raw.ends_with('\n') {
                raw.pop();
                if raw.ends_with('\r') {
                    raw.pop();
                }
            }
            // Hand over the buffer itself (no copy left behind un-zeroized).
            return Ok(Some(Secret::new(std::mem::take(&mut *raw))));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_accepts_exactly_one_non_empty_source() {
        assert!(SecretSource::env("X").check("k").is_ok());
        assert!(SecretSource::file("f").check("k").is_ok());
        for bad in [
            SecretSource { env: None, file: None },
            SecretSource { env: Some("X".into()), file: Some("f".into()) },
            SecretSource { env: Some(String::new()), file: None },
            SecretSource { env: None, file: Some(PathBuf::new()) },
        ] {
            let err = bad.check("a.b").expect_err("refused");
            assert_eq!(err.key(), Some("a.b"), "{bad:?}");
        }
    }

    #[test]
    fn resolve_relative_touches_only_relative_files() {
        let base = Path::new("/etc/cardhsm");
        let mut s = SecretSource::file("pins/card.pin");
        s.resolve_relative(base);
        assert_eq!(s, SecretSource::file("/etc/cardhsm/pins/card.pin"));
        let mut s = SecretSource::file("/run/secrets/pin");
        s.resolve_relative(base);
        assert_eq!(s, SecretSource::file("/run/secrets/pin"));
        let mut s = SecretSource::env("PIN");
        s.resolve_relative(base);
        assert_eq!(s, SecretSource::env("PIN"));
    }

    #[test]
    fn an_empty_source_loads_nothing() {
        let s = SecretSource { env: None, file: None };
        assert!(s.load("k").expect("no error").is_none());
    }

    #[test]
    fn secret_clone_and_eq_compare_values_but_never_print_them() {
        let a = Secret::new("s3cret".into());
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, Secret::new("other".into()));
        assert_eq!(format!("{a:?} {b}"), "[redacted] [redacted]");
    }
}
