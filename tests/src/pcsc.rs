//! Card readers for end-to-end tests, with no hardware: a private pcscd (its own mount
//! namespace, reader configuration and socket) with one vpcd virtual reader, and the
//! `cardhsm-vcard` virtual PIV card that is inserted while its process runs. Clients (the
//! daemon, OpenSC tools) reach this pcscd through `PCSCLITE_CSOCK_NAME` = [`Pcscd::socket`].

use anyhow::{Context, bail};
use std::net::TcpListener;
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
    /// The TCP port vpcd listens on for the virtual card.
    pub port: u16,
    /// An OpenSC configuration that loads only the PIV driver (probing stays fast).
    pub opensc_conf: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Pcscd {
    /// Writes the reader configuration under `dir` and starts pcscd.
    pub fn start(dir: &Path) -> anyhow::Result<Pcscd> {
        let port = free_port()?;
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
        let mut pcscd =
            Pcscd { child: None, socket: run_dir.join("pcscd.comm"), run_dir, conf_dir, port, opensc_conf };
        pcscd.spawn()?;
        Ok(pcscd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        // pcscd's socket path is fixed at /run/pcscd/pcscd.comm: a private mount namespace with
        // our directory bound there gives this instance its own.
        std::fs::create_dir_all("/run/pcscd").context("creating /run/pcscd (tests run as root)")?;
        let script = format!(
            "mount --bind '{}' /run/pcscd && exec pcscd -f -c '{}'",
            self.run_dir.display(),
            self.conf_dir.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        Ok(())
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
