//! Where the CLI's passwords come from, in order: an environment variable, a no-echo prompt on
//! the terminal (rpassword), or one line of standard input when it is not a terminal. Never an
//! argument. Used by `login` and `users create` in [`super::run`].

use super::run::CliError;
use cardhsm_client::SecretString;
use std::io::{self, BufRead, IsTerminal};
use zeroize::Zeroizing;

/// What to read and how to ask for it.
#[derive(Debug, Clone, Copy)]
pub struct SecretSource {
    /// Environment variable that supplies the secret when set.
    pub env: &'static str,
    /// Prompt on the terminal.
    pub prompt: &'static str,
    /// Ask twice on the terminal and insist the answers match (for new passwords).
    pub confirm: bool,
}

/// The password for `cardhsm login`.
pub const LOGIN: SecretSource =
    SecretSource { env: "CARDHSM_PASSWORD", prompt: "Password: ", confirm: false };

/// The password for `cardhsm users create`.
pub const NEW_USER: SecretSource =
    SecretSource { env: "CARDHSM_NEW_PASSWORD", prompt: "New user's password: ", confirm: true };

/// Reads the secret from the environment, the terminal or standard input.
pub fn read(source: SecretSource) -> Result<SecretString, CliError> {
    let secret = if let Some(value) = std::env::var_os(source.env) {
        let value =
            value.into_string().map_err(|_| CliError::Input(format!("{} is not valid UTF-8", source.env)))?;
        SecretString::new(value)
    } else if io::stdin().is_terminal() {
        let first = prompt(source.prompt)?;
        if source.confirm && prompt("Repeat it: ")? != first {
            return Err(CliError::Input("the passwords do not match".into()));
        }
        first
    } else {
        read_line(&mut io::stdin().lock())
            .map_err(|e| CliError::Input(format!("cannot read the password from standard input: {e}")))?
            .ok_or_else(|| {
                CliError::Input(format!(
                    "no password: set {} or pass it on standard input (one line)",
                    source.env
                ))
            })?
    };
    if secret.is_empty() {
        return Err(CliError::Input("the password is empty".into()));
    }
    Ok(secret)
}

fn prompt(text: &str) -> Result<SecretString, CliError> {
    rpassword::prompt_password(text)
        .map(SecretString::new)
        .map_err(|e| CliError::Input(format!("cannot read the password from the terminal: {e}")))
}

/// One line without its line ending; `None` at end of input.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<Option<SecretString>> {
    let mut line = Zeroizing::new(String::new());
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(Some(SecretString::new(trimmed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_line_without_its_ending() -> io::Result<()> {
        let mut input = io::Cursor::new("s3cret pass word\nsecond line\n");
        assert_eq!(read_line(&mut input)?, Some("s3cret pass word".into()));
        assert_eq!(read_line(&mut io::Cursor::new("crlf\r\n"))?, Some("crlf".into()));
        assert_eq!(read_line(&mut io::Cursor::new("no newline"))?, Some("no newline".into()));
        assert_eq!(read_line(&mut io::Cursor::new(""))?, None);
        Ok(())
    }
}
