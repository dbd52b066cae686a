//! Secret strings (passwords, access and refresh tokens) as the client holds them: zeroized on drop
//! and redacted by `Debug`; every other module keeps its secrets in this one type.

use std::fmt;
use zeroize::Zeroizing;

/// A secret text (a password or a token) that is wiped from memory when dropped and never printed.
///
/// There is deliberately no `Display`; read the text with [`SecretString::expose`] where it must
/// be sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `text` (its buffer is moved, not copied).
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    /// The secret text, for sending it where it belongs.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// `true` when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for SecretString {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<Zeroizing<String>> for SecretString {
    fn from(text: Zeroizing<String>) -> Self {
        Self(text)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_text() {
        let secret = SecretString::new("hunter2-correct-horse");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(secret.expose(), "hunter2-correct-horse");
    }
}
