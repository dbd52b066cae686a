//! End-to-end test harness: the real `cardhsmd` binary against real SoftHSM tokens and a real
//! SQLite file, each test in its own temporary directory.
//!
//! ```no_run
//! use cardhsm_tests::{Daemon, TestEnv, list_token_objects};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let env = TestEnv::new(2)?; // softhsm-setup.sh --dir <tmp>/hsm --cards 2
//! let mut daemon = Daemon::start(&env).await?; // waits for the ready file
//! let admin = daemon.admin_client().await; // logged in as `admin`
//! // ... drive the API ...
//! daemon.restart().await; // same directory, database and tokens; new port
//! let objects = list_token_objects(&env, "card-01")?; // what is really on the card
//! println!("{}", daemon.log()); // the daemon's stdout + stderr so far
//! # let _ = (admin, objects); Ok(()) }
//! ```
//!
//! Layout of one environment (`env.dir`):
//!
//! ```text
//! <dir>/hsm/softhsm2.conf, tokens/, daemon.pin, card.pin, so.pin   from softhsm-setup.sh
//! <dir>/cardhsm.toml      the config the daemon runs on (written by Daemon::start*)
//! <dir>/cardhsm.sqlite3   the database
//! <dir>/ready             the daemon writes its listen address here when ready
//! <dir>/daemon.log        the daemon's stdout and stderr, all runs appended
//! ```
//!
//! Set `CARDHSM_E2E_KEEP=1` to keep the directories after the tests (their paths are printed),
//! `CARDHSM_E2E_RUST_LOG` to run the daemon with another log filter than `info`, and
//! `CARDHSMD_BIN` to test a prebuilt daemon binary instead of the workspace's.
//!
//! Declare the [`TestEnv`] before the [`Daemon`] so the daemon is dropped (killed) first.

pub mod pcsc;

use anyhow::{Context, anyhow, bail};
use cardhsm_client::CardhsmClient;
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The bootstrap administrator's user name.
pub const ADMIN_USERNAME: &str = "admin";
/// The bootstrap administrator's password: the daemon gets it through
/// `CARDHSM_BOOTSTRAP_PASSWORD` on its first start in an environment.
pub const ADMIN_PASSWORD: &str = "E2e-Admin-Passw0rd-cardhsm-tests";
/// The SoftHSM PKCS#11 module (Debian's softhsm2 package).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// How long [`Daemon::start`] waits for the ready file.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Daemon::stop`] waits after SIGTERM before it sends SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The workspace root (the directory holding `softhsm-setup.sh`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

// =============================================================================================
// TestEnv
// =============================================================================================

/// A private SoftHSM token directory with one daemon token and N card tokens, inside a
/// temporary directory that also holds the daemon's config, database and log.
pub struct TestEnv {
    /// The environment's directory; removed on drop (unless `CARDHSM_E2E_KEEP` is set).
    pub dir: tempfile::TempDir,
    /// `<dir>/hsm`: what `softhsm-setup.sh` made.
    pub hsm_dir: PathBuf,
    /// `<dir>/hsm/softhsm2.conf`: the `SOFTHSM2_CONF` for everything touching these tokens.
    pub softhsm_conf: PathBuf,
    /// User PIN of the daemon token (also in `<hsm>/daemon.pin`).
    pub daemon_pin: String,
    /// User PIN of every card token (also in `<hsm>/card.pin`).
    pub card_pin: String,
    /// SO PIN of every token (also in `<hsm>/so.pin`).
    pub so_pin: String,
    /// `cardhsm-daemon`.
    pub daemon_token_label: String,
    pub daemon_token_serial: String,
    /// `card-01`, `card-02`, … in order.
    pub card_labels: Vec<String>,
    /// The serial of each card token, in the order of `card_labels`.
    pub card_serials: Vec<String>,
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv")
            .field("dir", &self.dir.path())
            .field("softhsm_conf", &self.softhsm_conf)
            .field("daemon_pin", &"[redacted]")
            .field("card_pin", &"[redacted]")
            .field("so_pin", &"[redacted]")
            .field("daemon_token_label", &self.daemon_token_label)
            .field("daemon_token_serial", &self.daemon_token_serial)
            .field("card_labels", &self.card_labels)
            .field("card_serials", &self.card_serials)
            .finish()
    }
}

impl TestEnv {
    /// Makes a new environment with `cards` card tokens (`card-01` …) by running
    /// `softhsm-setup.sh --dir <tempdir>/hsm --cards N` with random PINs.
    pub fn new(cards: usize) -> anyhow::Result<TestEnv> {
        let keep = std::env::var_os("CARDHSM_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        let dir = tempfile::Builder::new()
            .prefix("cardhsm-e2e-")
            .disable_cleanup(keep)
            .tempdir()
            .context("creating the test environment's temporary directory")?;
        if keep {
            eprintln!("cardhsm-tests: keeping test environment {}", dir.path().display());
        }
        let hsm_dir = dir.path().join("hsm");
        let script = repo_root().join("softhsm-setup.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg("--dir")
            .arg(&hsm_dir)
            .arg("--cards")
            .arg(cards.to_string())
            // Random PINs for every environment, whatever the caller's shell has set.
            .env_remove("CARDHSM_TOKEN_PIN")
            .env_remove("CARDHSM_CARD_PIN")
            .env_remove("CARDHSM_SO_PIN")
            .env_remove("SOFTHSM2_CONF")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !output.status.success() {
            bail!(
                "{} --dir {} --cards {cards} failed ({}):\n{}{}",
                script.display(),
                hsm_dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = parse_setup_summary(&stdout)
            .with_context(|| format!("parsing the output of softhsm-setup.sh:\n{stdout}"))?;
        if summary.cards.len() != cards {
            bail!(
                "softhsm-setup.sh reported {} card tokens, expected {cards}:\n{stdout}",
                summary.cards.len()
            );
        }
        let read_pin = |name: &str| -> anyhow::Result<String> {
            let path = hsm_dir.join(name);
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
        };
        Ok(TestEnv {
            softhsm_conf: hsm_dir.join("softhsm2.conf"),
            daemon_pin: read_pin("daemon.pin")?,
            card_pin: read_pin("card.pin")?,
            so_pin: read_pin("so.pin")?,
            daemon_token_label: summary.daemon.0,
            daemon_token_serial: summary.daemon.1,
            card_labels: summary.cards.iter().map(|(l, _)| l.clone()).collect(),
            card_serials: summary.cards.into_iter().map(|(_, s)| s).collect(),
            hsm_dir,
            dir,
        })
    }

    /// The environment's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// `<dir>/cardhsm.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("cardhsm.toml")
    }
    /// `<dir>/cardhsm.sqlite3`.
    pub fn store_path(&self) -> PathBuf {
        self.path().join("cardhsm.sqlite3")
    }
    /// `<dir>/ready`.
    pub fn ready_path(&self) -> PathBuf {
        self.path().join("ready")
    }
    /// `<dir>/daemon.log`.
    pub fn log_path(&self) -> PathBuf {
        self.path().join("daemon.log")
    }
    /// `<hsm>/daemon.pin`.
    pub fn daemon_pin_file(&self) -> PathBuf {
        self.hsm_dir.join("daemon.pin")
    }
    /// `<hsm>/card.pin`.
    pub fn card_pin_file(&self) -> PathBuf {
        self.hsm_dir.join("card.pin")
    }

    /// The serial of the card token labelled `label`.
    pub fn card_serial(&self, label: &str) -> Option<&str> {
        let i = self.card_labels.iter().position(|l| l == label)?;
        self.card_serials.get(i).map(String::as_str)
    }

    /// The user PIN of the token labelled `token_label` (the daemon token's or the cards').
    pub fn pin_for(&self, token_label: &str) -> &str {
        if token_label == self.daemon_token_label { &self.daemon_pin } else { &self.card_pin }
    }

    /// The configuration [`Daemon::start`] runs on, before any extra TOML:
    /// `[server]` on 127.0.0.1:0 with the ready file, `[store]` in the environment's
    /// directory, `[pkcs11]` with SoftHSM, the card PIN file and the daemon token.
    pub fn base_config(&self) -> String {
        format!(
            r#"# Written by cardhsm-tests for {dir}
[server]
grpc_listen = "127.0.0.1:0"
rest_listen = "127.0.0.1:0"
ready_file = {ready}

[store]
path = {store}

[pkcs11]
module = {module}
card_pin = {{ file = {card_pin} }}

[[pkcs11.tokens]]
label = {daemon_label}
role = "daemon"
pin = {{ file = {daemon_pin} }}
"#,
            dir = self.path().display(),
            ready = toml_str(&self.ready_path()),
            store = toml_str(&self.store_path()),
            module = toml_str(Path::new(SOFTHSM_MODULE)),
            card_pin = toml_str(&self.card_pin_file()),
            daemon_label = toml_string(&self.daemon_token_label),
            daemon_pin = toml_str(&self.daemon_pin_file()),
        )
    }

    /// [`TestEnv::base_config`] with `extra_toml` merged in: tables merge key by key (a key in
    /// `extra_toml` replaces the base's), arrays of tables (`[[pkcs11.tokens]]`,
    /// `[[cards.policies]]`) are appended to, anything else is replaced.
    pub fn config_with(&self, extra_toml: &str) -> anyhow::Result<String> {
        merge_toml(&self.base_config(), extra_toml)
    }

    /// Runs `pkcs11-tool --module <softhsm> --token-label <label> --login <args…>` with this
    /// environment's `SOFTHSM2_CONF` and the token's PIN (passed through the environment, never
    /// on the command line). Returns stdout; fails with stdout and stderr.
    pub fn pkcs11_tool(&self, token_label: &str, args: &[&str]) -> anyhow::Result<String> {
        const PIN_VAR: &str = "CARDHSM_E2E_PKCS11_PIN";
        let output = Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM_MODULE, "--token-label", token_label, "--login", "--pin"])
            .arg(format!("env:{PIN_VAR}"))
            .args(args)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env(PIN_VAR, self.pin_for(token_label))
            .stdin(Stdio::null())
            .output()
            .context("running pkcs11-tool (Debian package opensc)")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "pkcs11-tool --token-label {token_label} {} failed ({}):\n{stdout}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// A new environment whose tokens are byte copies of this one's (same labels, serials,
    /// PINs and keys), in its own directory: a second daemon "on the same HSM" (restore tests).
    /// Copy while no daemon writes to the tokens.
    pub fn copy_tokens(&self) -> anyhow::Result<TestEnv> {
        let dir = tempfile::Builder::new()
            .prefix("cardhsm-e2e-")
            .tempdir()
            .context("creating the copy's temporary directory")?;
        let hsm_dir = dir.path().join("hsm");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.hsm_dir)
            .arg(&hsm_dir)
            .status()
            .context("running cp -a")?;
        if !status.success() {
            bail!("cp -a {} {} failed ({status})", self.hsm_dir.display(), hsm_dir.display());
        }
        let softhsm_conf = hsm_dir.join("softhsm2.conf");
        let conf = fs::read_to_string(&softhsm_conf).context("reading the copied softhsm2.conf")?;
        fs::write(
            &softhsm_conf,
            conf.replace(&self.hsm_dir.display().to_string(), &hsm_dir.display().to_string()),
        )
        .context("writing the copied softhsm2.conf")?;
        Ok(TestEnv {
            dir,
            hsm_dir,
            softhsm_conf,
            daemon_pin: self.daemon_pin.clone(),
            card_pin: self.card_pin.clone(),
            so_pin: self.so_pin.clone(),
            daemon_token_label: self.daemon_token_label.clone(),
            daemon_token_serial: self.daemon_token_serial.clone(),
            card_labels: self.card_labels.clone(),
            card_serials: self.card_serials.clone(),
        })
    }

    /// Every object on the token labelled `token_label`, as pkcs11-tool sees it after login.
    pub fn list_token_objects(&self, token_label: &str) -> anyhow::Result<Vec<TokenObject>> {
        list_token_objects(self, token_label)
    }
}

/// What softhsm-setup.sh printed: (label, serial) of the daemon token and of each card token.
#[derive(Debug)]
struct SetupSummary {
    daemon: (String, String),
    cards: Vec<(String, String)>,
}

/// Parses softhsm-setup.sh's summary lines `# <role> <label> <serial> <pin file>`.
fn parse_setup_summary(stdout: &str) -> anyhow::Result<SetupSummary> {
    let mut daemon = None;
    let mut cards = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("# ") else { continue };
        let mut words = rest.split_whitespace();
        let (Some(role), Some(label), Some(serial)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        match role {
            "daemon" => daemon = Some((label.to_owned(), serial.to_owned())),
            "card" => cards.push((label.to_owned(), serial.to_owned())),
            _ => {}
        }
    }
    let daemon = daemon.ok_or_else(|| anyhow!("no `# daemon <label> <serial>` line"))?;
    Ok(SetupSummary { daemon, cards })
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML basic string holding a path.
fn toml_str(p: &Path) -> String {
    toml_string(&p.to_string_lossy())
}

/// Merges `extra` into `base` (both TOML documents); see [`TestEnv::config_with`].
pub fn merge_toml(base: &str, extra: &str) -> anyhow::Result<String> {
    let mut base: toml::Table = base.parse().context("the base config is not valid TOML")?;
    let extra: toml::Table = extra.parse().context("the extra TOML is not valid TOML")?;
    merge_tables(&mut base, extra);
    toml::to_string(&base).context("serialising the merged config")
}

fn merge_tables(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge_tables(b, e),
            (Some(toml::Value::Array(b)), toml::Value::Array(e))
                if b.iter().chain(e.iter()).all(toml::Value::is_table) =>
            {
                b.extend(e)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

// =============================================================================================
// The daemon
// =============================================================================================

/// A running `cardhsmd` (or one that ran: see [`Daemon::exit_status`]). Dropping it kills the
/// process (SIGKILL); [`Daemon::stop`] shuts it down gracefully (SIGTERM).
pub struct Daemon {
    /// `http://127.0.0.1:PORT` of the current run.
    pub endpoint: String,
    /// The address of the current run.
    pub addr: SocketAddr,
    /// The REST shim's base URL of the current run, `http://127.0.0.1:<port>` (no trailing
    /// slash).
    pub rest_url: String,
    /// The REST shim's address of the current run.
    pub rest_addr: SocketAddr,
    /// `<dir>/daemon.log`: stdout and stderr of every run, appended.
    pub log_path: PathBuf,
    /// `<dir>/cardhsm.toml`.
    pub config_path: PathBuf,
    /// `<dir>/ready`.
    pub ready_path: PathBuf,
    dir: PathBuf,
    softhsm_conf: PathBuf,
    child: Option<Child>,
    exit_status: Option<ExitStatus>,
    runs: u32,
    /// `RUST_LOG` for the child; `None` means `CARDHSM_E2E_RUST_LOG` or `info`.
    log_filter: Option<String>,
    /// `PCSCLITE_CSOCK_NAME` for the child: a private pcscd ([`pcsc::Pcscd`]) or, by default,
    /// a path where nothing listens, so no test talks to a pcscd of the machine.
    pcsc_socket: PathBuf,
    /// `OPENSC_CONF` for the child, when it talks to a private pcscd (PIV driver only).
    opensc_conf: Option<PathBuf>,
}

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Daemon")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid())
            .field("config_path", &self.config_path)
            .field("log_path", &self.log_path)
            .field("runs", &self.runs)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the daemon on [`TestEnv::base_config`] and waits until it is ready.
    pub async fn start(env: &TestEnv) -> anyhow::Result<Daemon> {
        Daemon::start_with(env, "").await
    }

    /// Starts the daemon on the base config with `extra_toml` merged in (see
    /// [`TestEnv::config_with`]) — e.g. `[cards]` policies, `[auth]` lifetimes,
    /// `[pkcs11] sessions_per_token = 1`, more `[[pkcs11.tokens]]`.
    pub async fn start_with(env: &TestEnv, extra_toml: &str) -> anyhow::Result<Daemon> {
        let config = env.config_with(extra_toml)?;
        Daemon::start_with_config(env, &config).await
    }

    /// Starts the daemon on exactly `config_toml` (written to `<dir>/cardhsm.toml`). It must set
    /// `server.ready_file = <dir>/ready` for the start to be noticed; see
    /// [`TestEnv::base_config`].
    pub async fn start_with_config(env: &TestEnv, config_toml: &str) -> anyhow::Result<Daemon> {
        let mut daemon = Daemon::prepare(env, config_toml)?;
        daemon.run().await?;
        Ok(daemon)
    }

    /// Starts the daemon on the base config with the log filter `filter` (a `RUST_LOG`
    /// directive such as `debug`): for tests that must see everything the daemon can log.
    pub async fn start_with_log_filter(env: &TestEnv, filter: &str) -> anyhow::Result<Daemon> {
        let config = env.config_with("")?;
        let mut daemon = Daemon::prepare(env, &config)?;
        daemon.log_filter = Some(filter.to_owned());
        daemon.run().await?;
        Ok(daemon)
    }

    /// Starts the daemon on the base config with `extra_toml` merged in, talking PC/SC to the
    /// private `pcscd` (its readers, its virtual cards).
    pub async fn start_with_pcscd(
        env: &TestEnv,
        extra_toml: &str,
        pcscd: &pcsc::Pcscd,
    ) -> anyhow::Result<Daemon> {
        let config = env.config_with(extra_toml)?;
        Daemon::start_with_pcscd_config(env, &config, pcscd).await
    }

    /// [`Daemon::start_with_pcscd`] on exactly `config_toml` (e.g. with OpenSC's PKCS#11
    /// module, so the cards in the readers are the daemon's tokens).
    pub async fn start_with_pcscd_config(
        env: &TestEnv,
        config_toml: &str,
        pcscd: &pcsc::Pcscd,
    ) -> anyhow::Result<Daemon> {
        let mut daemon = Daemon::prepare(env, config_toml)?;
        daemon.pcsc_socket = pcscd.socket.clone();
        daemon.opensc_conf = Some(pcscd.opensc_conf.clone());
        daemon.run().await?;
        Ok(daemon)
    }

    /// [`Daemon::start_with_log_filter`] with `extra_toml` merged into the base config.
    pub async fn start_with_log_filter_and(
        env: &TestEnv,
        filter: &str,
        extra_toml: &str,
    ) -> anyhow::Result<Daemon> {
        let config = env.config_with(extra_toml)?;
        let mut daemon = Daemon::prepare(env, &config)?;
        daemon.log_filter = Some(filter.to_owned());
        daemon.run().await?;
        Ok(daemon)
    }

    /// Starts the daemon with `extra_toml` merged into the base config and expects it to exit
    /// without becoming ready (a refused configuration, a missing token …). Returns its exit
    /// status and its log.
    pub async fn start_expecting_failure(
        env: &TestEnv,
        extra_toml: &str,
    ) -> anyhow::Result<(ExitStatus, String)> {
        let config = env.config_with(extra_toml)?;
        let mut daemon = Daemon::prepare(env, &config)?;
        match daemon.run().await {
            Ok(()) => bail!("cardhsmd started on {} although it was expected to fail", daemon.endpoint),
            Err(e) => match daemon.exit_status {
                Some(status) => Ok((status, daemon.log())),
                None => Err(e),
            },
        }
    }

    fn prepare(env: &TestEnv, config_toml: &str) -> anyhow::Result<Daemon> {
        let config_path = env.config_path();
        fs::write(&config_path, config_toml).with_context(|| format!("writing {}", config_path.display()))?;
        Ok(Daemon {
            endpoint: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            rest_url: String::new(),
            rest_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path: env.log_path(),
            config_path,
            ready_path: env.ready_path(),
            dir: env.path().to_path_buf(),
            softhsm_conf: env.softhsm_conf.clone(),
            child: None,
            exit_status: None,
            runs: 0,
            log_filter: None,
            pcsc_socket: env.path().join("no-pcscd.comm"),
            opensc_conf: None,
        })
    }

    /// Spawns the process and waits for the ready file.
    async fn run(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("cardhsmd is already running");
        }
        let bin = try_cardhsmd_path()?;
        match fs::remove_file(&self.ready_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.ready_path.display())),
        }
        self.runs += 1;
        self.exit_status = None;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(log, "{}{} ====", RUN_MARKER, self.runs)?;
        let stderr = log.try_clone()?;
        let rust_log = match &self.log_filter {
            Some(f) => f.clone(),
            None => std::env::var("CARDHSM_E2E_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        };
        let mut command = Command::new(&bin);
        if let Some(conf) = &self.opensc_conf {
            command.env("OPENSC_CONF", conf);
        }
        let child = command
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("CARDHSM_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", rust_log)
            .env("PCSCLITE_CSOCK_NAME", &self.pcsc_socket)
            // Plain text in daemon.log, so tests can search it.
            .env("NO_COLOR", "1")
            .env_remove("CARDHSM_CONFIG")
            .env_remove("CARDHSM_CARD_PIN")
            .env_remove("CARDHSM_TOKEN_PIN")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        let (addr, rest) = self.wait_ready().await?;
        self.set_addresses(addr, rest);
        Ok(())
    }

    fn set_addresses(&mut self, grpc: SocketAddr, rest: SocketAddr) {
        self.addr = grpc;
        self.endpoint = format!("http://{grpc}");
        self.rest_addr = rest;
        self.rest_url = format!("http://{rest}");
    }

    /// Waits for the ready file: the gRPC address on its first line, the REST address on the
    /// second.
    async fn wait_ready(&mut self) -> anyhow::Result<(SocketAddr, SocketAddr)> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_seen: Option<String> = None;
        loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "cardhsmd exited ({status}) before it was ready\n{}",
                    log_excerpt(&self.log_path, &self.log_of_current_run())
                );
            }
            // The file is read twice in a row with the same content before it counts, so a
            // half-written address is never taken.
            if let Ok(text) = fs::read_to_string(&self.ready_path) {
                let text = text.trim().to_owned();
                let mut lines = text.lines().map(|l| l.trim().parse::<SocketAddr>());
                if let (Some(Ok(grpc)), Some(Ok(rest))) = (lines.next(), lines.next())
                    && grpc.port() != 0
                    && rest.port() != 0
                    && last_seen.as_deref() == Some(text.as_str())
                {
                    return Ok((grpc, rest));
                }
                last_seen = Some(text);
            }
            if Instant::now() >= deadline {
                self.kill().await;
                bail!(
                    "cardhsmd did not write its ready file {} within {} s\n{}",
                    self.ready_path.display(),
                    READY_TIMEOUT.as_secs(),
                    log_excerpt(&self.log_path, &self.log_of_current_run())
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = &mut self.child else { return Ok(self.exit_status) };
        match child.try_wait().context("waiting for cardhsmd")? {
            Some(status) => {
                self.child = None;
                self.exit_status = Some(status);
                Ok(Some(status))
            }
            None => Ok(None),
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (reaps it when it has exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None)) && self.child.is_some()
    }

    /// How the last run ended, once it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let _ = self.try_wait();
        self.exit_status
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) =
            self.pid().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw)
        {
            // ESRCH (already gone) is fine: try_wait reaps it.
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Waits until the process exits or `timeout` passes; true when it exited.
    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if self.child.is_none() => return true,
                Ok(None) => {}
                Err(_) => return false,
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful shutdown: SIGTERM, then waits for the exit ([`STOP_TIMEOUT`], after which it
    /// sends SIGKILL). Does nothing when the daemon is not running.
    pub async fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(rustix::process::Signal::TERM);
        if !self.wait_exit(STOP_TIMEOUT).await {
            eprintln!("cardhsm-tests: cardhsmd ignored SIGTERM for {} s; killing it", STOP_TIMEOUT.as_secs());
            self.kill().await;
        }
    }

    /// Hard stop: SIGKILL, as a crash or power loss would (for resume-after-crash tests).
    pub async fn kill(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(rustix::process::Signal::KILL);
        if !self.wait_exit(STOP_TIMEOUT).await
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            self.exit_status = child.wait().ok();
        }
    }

    /// [`Daemon::stop`] then start again on the same config, directory, database and tokens.
    /// The port may change: `endpoint` is updated. Panics (with the log) when the daemon does
    /// not come back; see [`Daemon::try_restart`].
    pub async fn restart(&mut self) {
        if let Err(e) = self.try_restart().await {
            panic!("restarting cardhsmd: {e:#}");
        }
    }

    /// [`Daemon::restart`], returning the error instead of panicking.
    pub async fn try_restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.run().await
    }

    /// Waits for `ready_path` again after the daemon restarted itself in place (a restore
    /// re-executes the binary: same process id, new listener). The caller removes the ready
    /// file before triggering the restart, and may point `ready_path` elsewhere first (a
    /// restored configuration may name another ready file). Updates `addr` and `endpoint`.
    pub async fn wait_ready_again(&mut self) -> anyhow::Result<()> {
        let (addr, rest) = self.wait_ready().await?;
        self.set_addresses(addr, rest);
        Ok(())
    }

    /// Starts the daemon again after [`Daemon::stop`] or [`Daemon::kill`] (or an exit of its
    /// own), on the same config.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.run().await
    }

    /// The daemon's whole stdout + stderr so far, every run (each begins with a
    /// `==== cardhsm-tests: cardhsmd run N ====` line).
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The log of the current (or last) run only.
    pub fn log_of_current_run(&self) -> String {
        let log = self.log();
        match log.rfind(RUN_MARKER) {
            Some(i) => log[i..].split_once('\n').map(|(_, rest)| rest.to_owned()).unwrap_or_default(),
            None => log,
        }
    }

    /// A client connected to this daemon, not logged in.
    pub async fn client(&self) -> anyhow::Result<CardhsmClient> {
        CardhsmClient::connect(self.endpoint.clone())
            .await
            .with_context(|| format!("connecting to cardhsmd at {}", self.endpoint))
    }

    /// A client logged in as `username`.
    pub async fn login_client(&self, username: &str, password: &str) -> anyhow::Result<CardhsmClient> {
        let client = self.client().await?;
        client.login(username, password).await.with_context(|| format!("logging in as {username}"))?;
        Ok(client)
    }

    /// A client logged in as the bootstrap administrator. Panics (with the daemon's log) when
    /// that fails; see [`Daemon::try_admin_client`].
    pub async fn admin_client(&self) -> CardhsmClient {
        match self.try_admin_client().await {
            Ok(client) => client,
            Err(e) => panic!("admin client: {e:#}\n{}", log_excerpt(&self.log_path, &self.log())),
        }
    }

    /// [`Daemon::admin_client`], returning the error instead of panicking.
    pub async fn try_admin_client(&self) -> anyhow::Result<CardhsmClient> {
        self.login_client(ADMIN_USERNAME, ADMIN_PASSWORD).await
    }
}

const RUN_MARKER: &str = "==== cardhsm-tests: cardhsmd run ";

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what the daemon said (the test runner prints captured output).
        if std::thread::panicking() {
            eprintln!("{}", log_excerpt(&self.log_path, &self.log()));
        }
    }
}

/// The last 200 lines of a log, framed for an error message.
fn log_excerpt(path: &Path, log: &str) -> String {
    const LINES: usize = 200;
    let lines: Vec<&str> = log.lines().collect();
    let skipped = lines.len().saturating_sub(LINES);
    let mut out = format!("---- cardhsmd log ({}) ----\n", path.display());
    if skipped > 0 {
        out.push_str(&format!("[… {skipped} earlier lines …]\n"));
    }
    for l in &lines[skipped..] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("---- end of cardhsmd log ----");
    out
}

// =============================================================================================
// Locating (and building) cardhsmd
// =============================================================================================

/// The `cardhsmd` binary to test: `$CARDHSMD_BIN` when set, else `target/<profile>/cardhsmd`
/// of the target directory this test executable lives in (which follows `CARGO_TARGET_DIR`),
/// built with `cargo build -p cardhsmd` (once per process) when it is missing or older than
/// the sources of the daemon's crates. Panics when that fails; see [`try_cardhsmd_path`].
pub fn cardhsmd_path() -> PathBuf {
    match try_cardhsmd_path() {
        Ok(p) => p,
        Err(e) => panic!("{e:#}"),
    }
}

/// [`cardhsmd_path`], returning the error instead of panicking.
pub fn try_cardhsmd_path() -> anyhow::Result<PathBuf> {
    static CARDHSMD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CARDHSMD.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

/// Another binary of the workspace (e.g. the `cardhsm` CLI), built for the same target
/// directory and profile as this test executable; `$override_var`, when set, names a prebuilt one.
pub fn workspace_binary(package: &str, bin: &str, override_var: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(override_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{override_var}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let (target_dir, profile) = target_layout()?;
    build_binary(package, bin, &target_dir, &profile)?;
    let path = target_dir.join(&profile).join(bin);
    if !path.is_file() {
        bail!("`cargo build -p {package} --bin {bin}` succeeded but {} does not exist", path.display());
    }
    Ok(path)
}

/// Where cargo puts binaries for this test executable: (target dir, profile dir name).
fn target_layout() -> anyhow::Result<(PathBuf, String)> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    layout_from_exe(&exe)
        .or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"));
            Some((target, "debug".to_owned()))
        })
        .ok_or_else(|| anyhow!("cannot find the cargo target directory"))
}

/// `<target>/<profile>/deps/<test-exe>` → (`<target>`, `<profile>`).
fn layout_from_exe(exe: &Path) -> Option<(PathBuf, String)> {
    let dir = exe.parent()?;
    let profile_dir = if dir.file_name()? == "deps" { dir.parent()? } else { dir };
    let profile = profile_dir.file_name()?.to_str()?.to_owned();
    Some((profile_dir.parent()?.to_path_buf(), profile))
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CARDHSMD_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("CARDHSMD_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let (target_dir, profile) = target_layout()?;
    let bin = target_dir.join(&profile).join("cardhsmd");
    let fresh = match fs::metadata(&bin).and_then(|m| m.modified()) {
        Ok(built) => newest_source_mtime().is_none_or(|newest| newest <= built),
        Err(_) => false,
    };
    if !fresh {
        build_binary("cardhsmd", "cardhsmd", &target_dir, &profile)?;
    }
    if !bin.is_file() {
        bail!("`cargo build -p cardhsmd` succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// The newest modification time of the files cardhsmd is built from: the sources, build
/// scripts, manifests and protos of its workspace crates (not their tests, so a no-op build
/// is not retried by every test process).
fn newest_source_mtime() -> Option<SystemTime> {
    fn walk(path: &Path, newest: &mut Option<SystemTime>) {
        let Ok(meta) = fs::symlink_metadata(path) else { return };
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == "target" || n == ".git") {
                return;
            }
            if let Ok(entries) = fs::read_dir(path) {
                for e in entries.flatten() {
                    walk(&e.path(), newest);
                }
            }
        } else if let Ok(m) = meta.modified() {
            *newest = Some(newest.map_or(m, |n| n.max(m)));
        }
    }
    let root = repo_root();
    let mut newest = None;
    for crate_dir in ["daemon", "hsm-config", "proto"] {
        for p in ["src", "build.rs", "Cargo.toml", "cardhsm"] {
            walk(&root.join(crate_dir).join(p), &mut newest);
        }
    }
    newest
}

/// Builds `bin` of workspace package `package` into `target_dir` with `profile` (cargo makes
/// this a quick no-op when it is up to date).
fn build_binary(package: &str, bin: &str, target_dir: &Path, profile: &str) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", package, "--bin", bin]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("cardhsm-tests: building {bin} ({profile}) into {}", target_dir.display());
    let output = cmd
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    if !output.status.success() {
        bail!(
            "`cargo build -p {package} --bin {bin}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

// =============================================================================================
// What is on a token
// =============================================================================================

/// A PKCS#11 object class, as pkcs11-tool names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectClass {
    PrivateKey,
    PublicKey,
    SecretKey,
    Certificate,
    Data,
    /// Anything else, with pkcs11-tool's heading.
    Other(String),
}

impl ObjectClass {
    /// `private`, `public`, `secret`, `certificate`, `data`, or the heading of another class.
    pub fn as_str(&self) -> &str {
        match self {
            ObjectClass::PrivateKey => "private",
            ObjectClass::PublicKey => "public",
            ObjectClass::SecretKey => "secret",
            ObjectClass::Certificate => "certificate",
            ObjectClass::Data => "data",
            ObjectClass::Other(heading) => heading,
        }
    }
}

impl fmt::Display for ObjectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `object.class == "private"` (see [`ObjectClass::as_str`]).
impl PartialEq<str> for ObjectClass {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ObjectClass {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One object on a token, as `pkcs11-tool --list-objects` shows it after login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenObject {
    pub class: ObjectClass,
    /// Key type for keys: `EC`, `RSA`, `AES`, `EC_EDWARDS` …
    pub key_type: Option<String>,
    /// Key size in bits where pkcs11-tool shows it (RSA and EC public keys, secret keys).
    pub bits: Option<u32>,
    /// CKA_LABEL (empty when absent).
    pub label: String,
    /// CKA_ID in lowercase hex (empty when absent).
    pub id_hex: String,
    /// The `Usage:` words: `sign`, `verify`, `decrypt`, `derive` …
    pub usage: Vec<String>,
    /// The `Access:` words: `sensitive`, `always sensitive`, `extractable`,
    /// `never extractable`, `local` (or `none`).
    pub access: Vec<String>,
    /// CKA_SENSITIVE, for private and secret keys.
    pub sensitive: Option<bool>,
    /// CKA_ALWAYS_SENSITIVE, for private and secret keys.
    pub always_sensitive: Option<bool>,
    /// CKA_EXTRACTABLE, for private and secret keys.
    pub extractable: Option<bool>,
    /// CKA_NEVER_EXTRACTABLE, for private and secret keys.
    pub never_extractable: Option<bool>,
    /// CKA_LOCAL (generated on the token), for keys.
    pub local: Option<bool>,
    /// Certificates: the subject as pkcs11-tool prints it (`DN: CN=…`).
    pub subject: Option<String>,
    /// Certificates: the serial number in hex as pkcs11-tool prints it.
    pub serial: Option<String>,
    /// EC keys: CKA_EC_PARAMS in hex (the curve OID's DER).
    pub ec_params_hex: Option<String>,
    /// Every `name: value` line of the object, as printed (for what the fields above miss).
    pub raw: Vec<(String, String)>,
}

impl TokenObject {
    fn new(class: ObjectClass, key_type: Option<String>, bits: Option<u32>) -> Self {
        TokenObject {
            class,
            key_type,
            bits,
            label: String::new(),
            id_hex: String::new(),
            usage: Vec::new(),
            access: Vec::new(),
            sensitive: None,
            always_sensitive: None,
            extractable: None,
            never_extractable: None,
            local: None,
            subject: None,
            serial: None,
            ec_params_hex: None,
            raw: Vec::new(),
        }
    }

    /// Whether this is a private or secret key (the objects CKA_SENSITIVE is about).
    pub fn is_secret_material(&self) -> bool {
        matches!(self.class, ObjectClass::PrivateKey | ObjectClass::SecretKey)
    }
}

/// Every object on the token labelled `token_label` of `env`, read with
/// `pkcs11-tool --login --list-objects` in a child process (so this test process never
/// initialises the PKCS#11 module, and `SOFTHSM2_CONF` stays per environment). The PIN is the
/// daemon PIN for the daemon token and the card PIN otherwise.
pub fn list_token_objects(env: &TestEnv, token_label: &str) -> anyhow::Result<Vec<TokenObject>> {
    let out = env.pkcs11_tool(token_label, &["--list-objects"])?;
    Ok(parse_pkcs11_tool_objects(&out))
}

/// Parses the output of `pkcs11-tool --list-objects` (OpenSC 0.23).
pub fn parse_pkcs11_tool_objects(text: &str) -> Vec<TokenObject> {
    let mut objects: Vec<TokenObject> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some(obj) = parse_object_heading(line) {
                objects.push(obj);
            }
            continue;
        }
        let Some(obj) = objects.last_mut() else { continue };
        let Some((name, value)) = line.trim().split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        obj.raw.push((name.to_owned(), value.to_owned()));
        match name {
            "label" => obj.label = unquote(value).to_owned(),
            "ID" => obj.id_hex = value.to_ascii_lowercase(),
            "Usage" => obj.usage = words(value),
            "Access" => {
                obj.access = words(value);
                let has = |w: &str| obj.access.iter().any(|a| a == w);
                let (sensitive, always, extractable, never, local) = (
                    has("sensitive"),
                    has("always sensitive"),
                    has("extractable"),
                    has("never extractable"),
                    has("local"),
                );
                if obj.is_secret_material() {
                    obj.sensitive = Some(sensitive);
                    obj.always_sensitive = Some(always);
                    obj.extractable = Some(extractable);
                    obj.never_extractable = Some(never);
                }
                obj.local = Some(local);
            }
            "subject" => obj.subject = Some(value.to_owned()),
            "serial" => obj.serial = Some(value.to_owned()),
            "EC_PARAMS" => obj.ec_params_hex = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    objects
}

fn words(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|w| !w.is_empty() && *w != "none").map(str::to_owned).collect()
}

fn unquote(value: &str) -> &str {
    value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value)
}

/// `Private Key Object; EC`, `Public Key Object; RSA 2048 bits`,
/// `Public Key Object; EC  EC_POINT 256 bits`, `Secret Key Object; AES length 16`,
/// `Certificate Object; type = X.509 cert`, `Data object 8`.
fn parse_object_heading(line: &str) -> Option<TokenObject> {
    let (head, detail) = line.split_once(';').map_or((line.trim(), ""), |(h, d)| (h.trim(), d.trim()));
    let class = if head == "Private Key Object" {
        ObjectClass::PrivateKey
    } else if head == "Public Key Object" {
        ObjectClass::PublicKey
    } else if head == "Secret Key Object" {
        ObjectClass::SecretKey
    } else if head == "Certificate Object" {
        ObjectClass::Certificate
    } else if head.starts_with("Data object") {
        ObjectClass::Data
    } else if head.ends_with("Object") || head.ends_with("object") || head.contains(" object ") {
        ObjectClass::Other(head.to_owned())
    } else {
        return None;
    };
    let is_key = matches!(class, ObjectClass::PrivateKey | ObjectClass::PublicKey | ObjectClass::SecretKey);
    let tokens: Vec<&str> = detail.split_whitespace().collect();
    let key_type = if is_key { tokens.first().map(|t| (*t).to_owned()) } else { None };
    let bits = if !is_key {
        None
    } else if let Some(i) = tokens.iter().position(|t| *t == "bits") {
        i.checked_sub(1).and_then(|j| tokens[j].parse().ok())
    } else if let Some(i) = tokens.iter().position(|t| *t == "length") {
        tokens.get(i + 1).and_then(|n| n.parse::<u32>().ok()).map(|bytes| bytes * 8)
    } else {
        None
    };
    Some(TokenObject::new(class, key_type, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
Public Key Object; RSA 1024 bits
  label:      rsa key
  ID:         02
  Usage:      encrypt, verify, wrap
  Access:     local
Private Key Object; EC
  label:      imported
  ID:         0B
  Usage:      decrypt, sign, unwrap
  Access:     sensitive
Public Key Object; EC  EC_POINT 256 bits
  EC_POINT:   04410400
  EC_PARAMS:  06082a8648ce3d030107
  label:      auth
  ID:         0a01
  Usage:      encrypt, verify, wrap, derive
  Access:     local
Certificate Object; type = X.509 cert
  label:      mycert
  subject:    DN: CN=x
  serial:     1FFC39AE
  ID:         0a01
Secret Key Object; AES length 16
  VALUE:      88ba76f0e53da778871702b9f54b0a71
  label:      aes1
  Usage:      encrypt, decrypt, verify, wrap, unwrap
  Access:     extractable, local
Private Key Object; EC
  label:      auth
  ID:         0a01
  Usage:      decrypt, sign, unwrap, derive
  Access:     sensitive, always sensitive, never extractable, local
Data object 8
  label:          'mydata'
  application:    ''
  app_id:         <empty>
  flags:           modifiable
Private Key Object; RSA 
  label:      rsa key
  ID:         02
  Usage:      none
  Access:     none
";

    #[test]
    fn parses_pkcs11_tool_listing() {
        let objs = parse_pkcs11_tool_objects(LISTING);
        assert_eq!(objs.len(), 8);

        let rsa_pub = &objs[0];
        assert_eq!(rsa_pub.class, ObjectClass::PublicKey);
        assert_eq!((rsa_pub.key_type.as_deref(), rsa_pub.bits), (Some("RSA"), Some(1024)));
        assert_eq!((rsa_pub.label.as_str(), rsa_pub.id_hex.as_str()), ("rsa key", "02"));
        assert_eq!(rsa_pub.sensitive, None, "public keys have no sensitivity");
        assert_eq!(rsa_pub.local, Some(true));

        let imported = &objs[1];
        assert_eq!(imported.id_hex, "0b");
        assert_eq!(imported.sensitive, Some(true));
        assert_eq!(imported.extractable, Some(false));
        assert_eq!(imported.never_extractable, Some(false));
        assert_eq!(imported.local, Some(false));

        assert_eq!(objs[2].bits, Some(256));
        assert_eq!(objs[2].ec_params_hex.as_deref(), Some("06082a8648ce3d030107"));

        let cert = &objs[3];
        assert_eq!(cert.class, ObjectClass::Certificate);
        assert_eq!(cert.subject.as_deref(), Some("DN: CN=x"));
        assert_eq!(cert.serial.as_deref(), Some("1FFC39AE"));
        assert_eq!(cert.key_type, None);

        let aes = &objs[4];
        assert_eq!((aes.class.clone(), aes.bits), (ObjectClass::SecretKey, Some(128)));
        assert_eq!((aes.sensitive, aes.extractable), (Some(false), Some(true)));

        let generated = &objs[5];
        assert_eq!(generated.class, ObjectClass::PrivateKey);
        assert_eq!(generated.usage, ["decrypt", "sign", "unwrap", "derive"]);
        assert_eq!(generated.sensitive, Some(true));
        assert_eq!(generated.always_sensitive, Some(true));
        assert_eq!(generated.extractable, Some(false));
        assert_eq!(generated.never_extractable, Some(true));
        assert_eq!(generated.local, Some(true));

        assert_eq!(objs[6].class, ObjectClass::Data);
        assert!(objs[6].class == "data" && generated.class == "private" && rsa_pub.class == "public");
        assert_eq!(aes.class.to_string(), "secret");
        assert!(cert.class == "certificate" && cert.class != "private");
        assert_eq!(objs[6].label, "mydata");

        let none = &objs[7];
        assert_eq!(none.key_type.as_deref(), Some("RSA"));
        assert!(none.usage.is_empty() && none.access.is_empty());
        assert_eq!((none.sensitive, none.extractable, none.local), (Some(false), Some(false), Some(false)));
    }

    #[test]
    fn empty_listing_has_no_objects() {
        assert!(parse_pkcs11_tool_objects("").is_empty());
        assert!(parse_pkcs11_tool_objects("Using slot 0 with a present token (0x1)\n").is_empty());
    }

    #[test]
    fn parses_setup_summary() {
        let out = "export SOFTHSM2_CONF=/t/hsm/softhsm2.conf\n\
                   # role   label            serial           pin file\n\
                   # daemon cardhsm-daemon   5751b5a234756d6b /t/hsm/daemon.pin\n\
                   # card   card-01          96a30e69cd9134c8 /t/hsm/card.pin\n\
                   # card   card-02          73e760378be59f44 /t/hsm/card.pin\n";
        let s = parse_setup_summary(out).expect("parses");
        assert_eq!(s.daemon, ("cardhsm-daemon".to_owned(), "5751b5a234756d6b".to_owned()));
        assert_eq!(s.cards.len(), 2);
        assert_eq!(s.cards[1], ("card-02".to_owned(), "73e760378be59f44".to_owned()));
        assert!(parse_setup_summary("export X=y\n").is_err());
    }

    #[test]
    fn merges_extra_toml() {
        let base = "[server]\ngrpc_listen = \"127.0.0.1:0\"\n[pkcs11]\nmodule = \"m\"\n\
                    [[pkcs11.tokens]]\nlabel = \"d\"\npin = { file = \"p\" }\n";
        let extra = "[pkcs11]\nsessions_per_token = 1\n[[pkcs11.tokens]]\nlabel = \"card-01\"\n\
                     pin = { env = \"X\" }\n[cards]\ndefault_policy = \"dual\"\n";
        let merged: toml::Table = merge_toml(base, extra).expect("merges").parse().expect("valid TOML");
        let pkcs11 = merged["pkcs11"].as_table().expect("table");
        assert_eq!(pkcs11["module"].as_str(), Some("m"));
        assert_eq!(pkcs11["sessions_per_token"].as_integer(), Some(1));
        assert_eq!(pkcs11["tokens"].as_array().map(Vec::len), Some(2));
        assert_eq!(merged["cards"]["default_policy"].as_str(), Some("dual"));
        let replaced: toml::Table = merge_toml(base, "[server]\ngrpc_listen = \"127.0.0.1:7\"\n")
            .expect("merges")
            .parse()
            .expect("toml");
        assert_eq!(replaced["server"]["grpc_listen"].as_str(), Some("127.0.0.1:7"));
        assert!(merge_toml(base, "not = = toml").is_err());
    }

    #[test]
    fn target_layout_from_test_exe() {
        let (t, p) = layout_from_exe(Path::new("/w/target/debug/deps/harness-0123")).expect("layout");
        assert_eq!((t.as_path(), p.as_str()), (Path::new("/w/target"), "debug"));
        let (t, p) = layout_from_exe(Path::new("/ct/release/deps/e2e-9")).expect("layout");
        assert_eq!((t.as_path(), p.as_str()), (Path::new("/ct"), "release"));
    }

    #[test]
    fn toml_strings_are_escaped() {
        let t: toml::Table = format!("k = {}", toml_string("we\"ird\\path\n")).parse().expect("valid");
        assert_eq!(t["k"].as_str(), Some("we\"ird\\path\n"));
    }
}
