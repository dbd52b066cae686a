//! `cardhsm-vcard`: inserts a virtual PIV card into the vpcd reader listening on
//! `--port` (default 35963, vpcd's default) of `--host` (default 127.0.0.1). The card's state
//! (keys, certificates, PIN and counters) lives in `--state`, created on first use with
//! `--guid` (32 hex digits: the CHUID GUID OpenSC takes the serial from), `--pin` and `--puk`.
//! Kill the process to pull the card out; start it again with the same state to put it back.

use anyhow::{Context, bail};
use cardhsm_vcard::piv::{CardState, PivCard};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut host = "127.0.0.1".to_owned();
    let mut port: u16 = 35963;
    let mut state_file: Option<PathBuf> = None;
    let mut guid = [0x11u8; 16];
    let mut pin = "123456".to_owned();
    let mut puk = "12345678".to_owned();
    let mut remove_on_generate: Option<u8> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?.parse().context("--port")?,
            "--state" => state_file = Some(PathBuf::from(value()?)),
            "--guid" => {
                let v = value()?;
                if v.len() != 32 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
                    bail!("--guid must be 32 hex digits");
                }
                for (i, b) in guid.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).context("--guid")?;
                }
            }
            "--pin" => pin = value()?,
            "--puk" => puk = value()?,
            // Fault injection: the card is "pulled out" (the process exits without answering)
            // when GENERATE ASYMMETRIC KEY PAIR for this key slot (hex, e.g. 9C) arrives.
            "--remove-on-generate" => {
                remove_on_generate = Some(u8::from_str_radix(&value()?, 16).context("--remove-on-generate")?)
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let state = match &state_file {
        Some(path) if path.exists() => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?,
        _ => CardState::new(guid, &pin, &puk),
    };
    let fresh = state_file.as_ref().is_some_and(|p| !p.exists());
    let mut card = PivCard::new(state, state_file);
    if fresh {
        card.persist();
    }
    // vpcd may not be listening yet (pcscd starting): retry for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect((host.as_str(), port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to vpcd at {host}:{port}")),
        }
    };
    cardhsm_vcard::vpcd::serve(&mut card, stream, remove_on_generate).context("serving the reader")
}
