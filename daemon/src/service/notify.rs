//! Outgoing messages to people (password-reset codes), below the services that send them.
//! The notifier is chosen in config: an outbox file by default, one JSON line per message
//! (`to`, `subject`, `body`), which an operator's mail relay (or a test) picks up. The body
//! is written in clear there on purpose: it IS the delivery; nothing else logs it.

use super::ServiceError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// A message to one person.
pub struct Message {
    pub to: String,
    pub subject: String,
    /// May carry a secret (a reset code): never printed by Debug.
    pub body: Zeroizing<String>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Where messages go.
#[derive(Debug)]
pub enum Notifier {
    /// Appended to a JSON-lines file (mode 0600), one line per message.
    Outbox {
        path: PathBuf,
        /// One writer at a time, so lines never interleave.
        lock: Mutex<()>,
    },
}

impl Notifier {
    /// The notifier the configuration names: `notify.outbox`, or `outbox.jsonl` beside the
    /// database when unset.
    pub fn from_config(config: &hsm_config::Config) -> Notifier {
        let path = config.notify.outbox.clone().unwrap_or_else(|| {
            config.store.path.parent().unwrap_or_else(|| Path::new(".")).join("outbox.jsonl")
        });
        Notifier::Outbox { path, lock: Mutex::new(()) }
    }

    /// Delivers a message. Blocking (a file append): call off the executor.
    pub fn deliver(&self, message: &Message) -> Result<(), ServiceError> {
        match self {
            Notifier::Outbox { path, lock } => {
                let line = Zeroizing::new(
                    serde_json::json!({
                        "to": message.to,
                        "subject": message.subject,
                        "body": message.body.as_str(),
                    })
                    .to_string()
                        + "\n",
                );
                let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| outbox_error(path, e))?;
                }
                let mut file = {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(path)
                        .map_err(|e| outbox_error(path, e))?
                };
                // One write of the whole line: appends of one buffer do not interleave.
                file.write_all(line.as_bytes()).map_err(|e| outbox_error(path, e))?;
                file.sync_data().map_err(|e| outbox_error(path, e))
            }
        }
    }
}

fn outbox_error(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::Unavailable(format!("cannot deliver a message to the outbox {}: {e}", path.display()))
}
