//! Outgoing messages to people (password-reset codes), below the services that send them.
//! The notifier is chosen in config: an outbox file by default, one JSON line per message
//! (`to`, `subject`, `body`), which an operator's mail relay (or a test) picks up; or SMTP to a
//! relay (`[notify.smtp]`: STARTTLS, implicit TLS, or plain for a local relay). The body is
//! written in clear there on purpose: it IS the delivery; nothing else logs it.

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
    /// Sent to a mail relay.
    Smtp(Box<smtp::SmtpRelay>),
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
    pub fn from_config(config: &hsm_config::Config) -> Result<Notifier, ServiceError> {
        if let Some(smtp) = &config.notify.smtp {
            return Ok(Notifier::Smtp(Box::new(smtp::SmtpRelay::new(smtp)?)));
        }
        let path = config.notify.outbox.clone().unwrap_or_else(|| {
            config.store.path.parent().unwrap_or_else(|| Path::new(".")).join("outbox.jsonl")
        });
        Ok(Notifier::Outbox { path, lock: Mutex::new(()) })
    }

    /// Delivers a message. Blocking (a file append, or an SMTP exchange bounded by its
    /// timeout): call off the executor, and outside a store transaction.
    pub fn deliver(&self, message: &Message) -> Result<(), ServiceError> {
        match self {
            Notifier::Smtp(relay) => relay.send(message),
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

mod smtp {
    //! A small SMTP client (RFC 5321) for the few messages the daemon sends: EHLO, STARTTLS
    //! (RFC 3207) or implicit TLS through rustls with the system's trust store, AUTH PLAIN
    //! (RFC 4954) only over TLS, one recipient, dot-stuffed DATA. Every step has the configured
    //! timeout; any reply other than the expected one fails the delivery with the relay's answer.

    use super::{Message, ServiceError};
    use hsm_config::{Secret, SmtpConfig, SmtpSecurity};
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::sync::Arc;
    use std::time::Duration;

    trait Stream: Read + Write + Send {}
    impl<T: Read + Write + Send> Stream for T {}

    pub struct SmtpRelay {
        host: String,
        port: u16,
        from: String,
        security: SmtpSecurity,
        credentials: Option<(String, Secret)>,
        timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    }

    impl std::fmt::Debug for SmtpRelay {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SmtpRelay")
                .field("host", &self.host)
                .field("port", &self.port)
                .field("security", &self.security)
                .field("username", &self.credentials.as_ref().map(|(u, _)| u))
                .finish_non_exhaustive()
        }
    }

    fn failed(what: impl std::fmt::Display) -> ServiceError {
        ServiceError::Unavailable(format!("the mail relay did not take the message: {what}"))
    }

    impl SmtpRelay {
        pub fn new(config: &SmtpConfig) -> Result<SmtpRelay, ServiceError> {
            let credentials = match (&config.username, &config.password) {
                (Some(user), Some(source)) => {
                    let password = source
                        .load("notify.smtp.password")
                        .map_err(|e| ServiceError::Internal(e.to_string()))?
                        .ok_or_else(|| {
                            ServiceError::Internal(format!(
                                "notify.smtp.password: {} is not set",
                                source.describe()
                            ))
                        })?;
                    Some((user.clone(), password))
                }
                _ => None,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A certificate the system store holds but rustls cannot use is skipped, as
                // every rustls client does.
                let _ = roots.add(cert);
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServiceError::Internal(format!("SMTP TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Ok(SmtpRelay {
                host: config.host.clone(),
                port: config.port,
                from: config.from.clone(),
                security: config.security,
                credentials,
                timeout: Duration::from_secs(u64::from(config.timeout_secs)),
                tls: Arc::new(tls),
            })
        }

        fn wrap_tls(&self, tcp: Box<dyn Stream>) -> Result<Box<dyn Stream>, ServiceError> {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| failed(format!("{}: {e}", self.host)))?;
            let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(failed)?;
            Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }

        pub fn send(&self, message: &Message) -> Result<(), ServiceError> {
            // A recipient or subject with a line break would inject headers or commands.
            let unsafe_text = |t: &str| t.chars().any(|c| c.is_control());
            if unsafe_text(&message.to) || unsafe_text(&message.subject) || message.to.contains(['<', '>']) {
                return Err(failed("the recipient or subject holds control characters"));
            }
            let addr = (self.host.as_str(), self.port)
                .to_socket_addrs()
                .map_err(|e| failed(format!("{}:{}: {e}", self.host, self.port)))?
                .next()
                .ok_or_else(|| failed(format!("{} has no address", self.host)))?;
            let tcp = TcpStream::connect_timeout(&addr, self.timeout).map_err(failed)?;
            tcp.set_read_timeout(Some(self.timeout)).map_err(failed)?;
            tcp.set_write_timeout(Some(self.timeout)).map_err(failed)?;
            let mut stream: Box<dyn Stream> = Box::new(tcp);
            if self.security == SmtpSecurity::Tls {
                stream = self.wrap_tls(stream)?;
            }
            let mut s = Session { stream };
            s.expect(220)?;
            let me = "cardhsmd.localdomain";
            s.command(&format!("EHLO {me}"), 250)?;
            if self.security == SmtpSecurity::Starttls {
                s.command("STARTTLS", 220)?;
                s = Session { stream: self.wrap_tls(s.stream)? };
                s.command(&format!("EHLO {me}"), 250)?;
            }
            if let Some((user, password)) = &self.credentials {
                use base64::Engine;
                let plain = zeroize::Zeroizing::new(format!("\0{user}\0{}", password.expose()));
                let token = zeroize::Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(plain.as_bytes()),
                );
                s.command(&format!("AUTH PLAIN {}", token.as_str()), 235)?;
            }
            s.command(&format!("MAIL FROM:<{}>", self.from), 250)?;
            s.command(&format!("RCPT TO:<{}>", message.to), 250)?;
            s.command("DATA", 354)?;
            let mut data = zeroize::Zeroizing::new(format!(
                "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
                self.from, message.to, message.subject
            ));
            for line in message.body.lines() {
                // Dot-stuffing: a line starting with "." gets another (RFC 5321 4.5.2).
                if line.starts_with('.') {
                    data.push('.');
                }
                data.push_str(line);
                data.push_str("\r\n");
            }
            data.push_str(".\r\n");
            s.stream.write_all(data.as_bytes()).map_err(failed)?;
            s.stream.flush().map_err(failed)?;
            s.expect(250)?;
            // The message is accepted; a failing QUIT changes nothing.
            let _ = s.command("QUIT", 221);
            Ok(())
        }
    }

    struct Session {
        stream: Box<dyn Stream>,
    }

    impl Session {
        fn command(&mut self, line: &str, code: u16) -> Result<(), ServiceError> {
            self.stream.write_all(line.as_bytes()).map_err(failed)?;
            self.stream.write_all(b"\r\n").map_err(failed)?;
            self.stream.flush().map_err(failed)?;
            self.expect(code).map_err(|e| {
                // Never echo an AUTH line: it carries the password.
                let verb = line.split(' ').next().unwrap_or_default();
                ServiceError::Unavailable(format!("{e} (after {verb})"))
            })
        }

        /// Reads one reply (its continuation lines too) and checks its code.
        fn expect(&mut self, code: u16) -> Result<(), ServiceError> {
            loop {
                let line = self.line()?;
                let got: Option<u16> = line.get(..3).and_then(|c| c.parse().ok());
                let last = line.as_bytes().get(3) != Some(&b'-');
                match got {
                    Some(c) if c == code || (code == 250 && c == 251) => {
                        if last {
                            return Ok(());
                        }
                    }
                    _ => return Err(failed(format!("expected {code}, got {:?}", line.trim_end()))),
                }
            }
        }

        fn line(&mut self) -> Result<String, ServiceError> {
            let mut out = Vec::new();
            let mut byte = [0u8; 1];
            while out.len() < 4096 {
                match self.stream.read(&mut byte) {
                    Ok(0) => return Err(failed("the relay closed the connection")),
                    Ok(_) => {
                        out.push(byte[0]);
                        if byte[0] == b'\n' {
                            return Ok(String::from_utf8_lossy(&out).into_owned());
                        }
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
            Err(failed("a reply line longer than 4096 bytes"))
        }
    }
}
