//! Card readers for end-to-end tests, with no hardware: a private pcscd (its own mount
//! namespace, reader configuration and socket) with one vpcd virtual reader, and the
//! `cardhsm-vcard` virtual PIV card that is inserted while its process runs. Clients (the
//! daemon, OpenSC tools) reach this pcscd through `PCSCLITE_CSOCK_NAME` = [`Pcscd::socket`].
//!
//! vpcd's TCP ports: one configuration entry gives two reader slots, "Virtual PCD 00 00" on
//! CHANNELID and "Virtual PCD 00 01" on CHANNELID + 1, and when either port cannot be bound
//! pcscd drops the whole entry — both slots — and never tries again: a test then waits in vain
//! for its reader and card. A port from `bind(0)` is no good: its neighbour is an even port of
//! the ephemeral range, the kind the kernel gives outgoing connections (held a minute longer in
//! TIME_WAIT), so any test's connection may hold it. So each pcscd gets a pair from below that
//! range, which neither `connect()` nor `bind(0)` ever hands out, held against the other test
//! processes by a lock file for as long as the [`Pcscd`] lives (restarts included), and a start
//! checks that pcscd really listens on both.

use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The vpcd reader name as pcscd shows it (slot 0 of the "Virtual PCD" entry).
pub const READER: &str = "Virtual PCD 00 00";
/// OpenSC's PKCS#11 module.
pub const OPENSC_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

/// A pcscd of our own: stopped (with its namespace) when dropped.
#[derive(Debug)]
pub struct Pcscd {
    child: Option<Child>,
    run_dir: PathBuf,
    conf_dir: PathBuf,
    /// The socket clients name in `PCSCLITE_CSOCK_NAME`.
    pub socket: PathBuf,
    /// The TCP port vpcd listens on for the virtual card (slot 00; slot 01 takes the next).
    pub port: u16,
    /// Holds `port` and `port + 1` against other tests' pcscd (see the module comment).
    _port_lock: File,
    /// An OpenSC configuration that loads only the PIV driver (probing stays fast).
    pub opensc_conf: PathBuf,
    /// pcscd's debug log (`-f -d`), appended by every start.
    pub log_path: PathBuf,
}

/// The lowest port a vpcd pair may take, and how many pairs (from there up, outside the
/// ephemeral range) the tests share: a test needs one while its pcscd lives, and each pair has
/// a lock file, so the pool stays small.
const PORT_FLOOR: u16 = 20000;
const PORT_PAIRS: usize = 256;
/// How many port pairs a start tries when pcscd cannot listen on the one it was given.
const START_ATTEMPTS: usize = 3;

/// The kernel's ephemeral port range (inclusive).
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = text.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
    match (bounds.next(), bounds.next()) {
        (Some(low), Some(high)) => (low, high),
        // Linux's default.
        _ => (32768, 60999),
    }
}

/// A free pair of ports (`port`, `port + 1`) outside the ephemeral range, and the lock that
/// keeps other test processes off it. Skips pairs another test holds and pairs something else
/// is bound to (an orphaned pcscd, another program); starts at a random pair.
fn reserve_port_pair() -> anyhow::Result<(u16, File)> {
    let (low, high) = ephemeral_range();
    let below = (PORT_FLOOR..low.saturating_sub(1)).step_by(2);
    let above = (high.saturating_add(1).max(PORT_FLOOR)..u16::MAX).step_by(2);
    let candidates: Vec<u16> = below.chain(above).take(PORT_PAIRS).collect();
    if candidates.is_empty() {
        bail!("no port pair outside the ephemeral range {low}-{high} for vpcd");
    }
    let dir = std::env::temp_dir().join("cardhsm-vpcd-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let start = rand::random_range(0..candidates.len());
    for port in candidates[start..].iter().chain(&candidates[..start]).copied() {
        let path = dir.join(format!("{port}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        // As vpcd binds (any address; std sets SO_REUSEADDR as vpcd does), then let go.
        let bound = [port, port + 1].map(|p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok());
        if bound == [true, true] {
            return Ok((port, lock));
        }
    }
    bail!("every vpcd port pair outside the ephemeral range {low}-{high} is taken")
}

impl Pcscd {
    /// Writes the reader configuration under `dir` and starts pcscd, with its vpcd reader
    /// listening (on another port pair if something took the first between our check and
    /// pcscd's bind).
    pub fn start(dir: &Path) -> anyhow::Result<Pcscd> {
        let mut attempt = 1;
        loop {
            match Pcscd::start_on_free_ports(dir) {
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!("cardhsm-tests: pcscd start {attempt} failed, trying other ports: {e:#}");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_on_free_ports(dir: &Path) -> anyhow::Result<Pcscd> {
        let (port, port_lock) = reserve_port_pair()?;
        let (run_dir, conf_dir) = (dir.join("pcscd-run"), dir.join("reader.conf.d"));
        std::fs::create_dir_all(&run_dir)?;
        std::fs::create_dir_all(&conf_dir)?;
        // CHANNELID is vpcd's TCP port, in hex.
        std::fs::write(
            conf_dir.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:X}\n\
                 LIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x{port:X}\n"
            ),
        )?;
        let opensc_conf = dir.join("opensc.conf");
        std::fs::write(&opensc_conf, "app default {\n  card_drivers = PIV-II;\n}\n")?;
        let mut pcscd = Pcscd {
            child: None,
            socket: run_dir.join("pcscd.comm"),
            run_dir,
            conf_dir,
            port,
            _port_lock: port_lock,
            opensc_conf,
            log_path: dir.join("pcscd.log"),
        };
        pcscd.spawn()?;
        Ok(pcscd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        // pcscd's socket path is fixed at /run/pcscd/pcscd.comm: a private mount namespace with
        // our directory bound there gives this instance its own.
        std::fs::create_dir_all("/run/pcscd").context("creating /run/pcscd (tests run as root)")?;
        let script = format!(
            "mount --bind '{}' /run/pcscd && exec pcscd -f -d -c '{}'",
            self.run_dir.display(),
            self.conf_dir.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting pcscd under unshare (packages pcscd, vsmartcard-vpcd, util-linux)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket.exists() {
            if Instant::now() > deadline {
                bail!("pcscd did not create {}", self.socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // pcscd opens its serial readers before its socket: by now vpcd listens on both of its
        // slots' ports, or pcscd has dropped the reader (it never tries again).
        let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
        let listening = listening_ports(pid);
        let wanted = [self.port, self.port + 1];
        if !wanted.iter().all(|p| listening.contains(p)) {
            bail!(
                "pcscd has no vpcd reader: it listens on {listening:?}, not on {wanted:?}; its log:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// pcscd's log so far (every run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops pcscd (its clients see the service go away).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts pcscd again with the same readers.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Runs an OpenSC tool (`pkcs11-tool`, `opensc-tool`, `piv-tool`, `pkcs15-tool`) against this
    /// pcscd with the PIV-only configuration; returns (success, stdout + stderr).
    pub fn tool(&self, program: &str, args: &[&str]) -> (bool, String) {
        match Command::new(program)
            .args(args)
            .env("PCSCLITE_CSOCK_NAME", &self.socket)
            .env("OPENSC_CONF", &self.opensc_conf)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => (
                out.status.success(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            ),
            Err(e) => (false, format!("running {program} (package opensc): {e}")),
        }
    }

    /// `pkcs11-tool --module opensc-pkcs11.so <args>`.
    pub fn pkcs11_tool(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["--module", OPENSC_PKCS11];
        all.extend_from_slice(args);
        self.tool("pkcs11-tool", &all)
    }
}

/// The TCP ports process `pid` listens on (IPv4; vpcd binds nothing else): its socket inodes
/// matched against the kernel's socket table.
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (*state == "0A" && inodes.contains(*inode)).then_some(port)
        })
        .collect()
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The virtual PIV card: in the reader while the process runs.
#[derive(Debug)]
pub struct VirtualCard {
    child: Option<Child>,
    bin: PathBuf,
    state: PathBuf,
    guid: String,
    port: u16,
}

impl VirtualCard {
    /// A card whose state (keys, certificates, PIN counters) lives in `state`, created with
    /// CHUID GUID `guid` (32 hex digits; OpenSC's token serial is its last 8 bytes in hex),
    /// PIN 123456 and PUK 12345678. Not inserted yet.
    pub fn new(pcscd: &Pcscd, state: &Path, guid: &str) -> anyhow::Result<VirtualCard> {
        let bin = crate::workspace_binary("cardhsm-vcard", "cardhsm-vcard", "CARDHSM_VCARD_BIN")?;
        Ok(VirtualCard {
            child: None,
            bin,
            state: state.to_path_buf(),
            guid: guid.to_owned(),
            port: pcscd.port,
        })
    }

    /// Puts the card into the reader (starts its process).
    pub fn insert(&mut self) -> anyhow::Result<()> {
        self.insert_with(&[])
    }

    /// Puts the card in, to be pulled out by itself the moment a GENERATE for key slot
    /// `slot` (hex, e.g. "9C") reaches it: a card removed in the middle of an issuance.
    pub fn insert_removed_on_generate(&mut self, slot: &str) -> anyhow::Result<()> {
        self.insert_with(&["--remove-on-generate", slot])
    }

    fn insert_with(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        if let Some(c) = &mut self.child
            && c.try_wait()?.is_none()
        {
            bail!("the card is already inserted");
        }
        self.pull_out();
        let port = self.port.to_string();
        let state = self.state.to_string_lossy().into_owned();
        let child = Command::new(&self.bin)
            .args(["--port", &port, "--state", &state, "--guid", &self.guid])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Pulls the card out (stops its process; its state file stays).
    pub fn pull_out(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The PKCS#11 token serial OpenSC gives this card.
    pub fn token_serial(&self) -> String {
        self.guid[16..].to_ascii_lowercase()
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.pull_out();
    }
}
