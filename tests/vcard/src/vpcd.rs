//! The wire between the virtual card and pcscd's vpcd reader driver (vsmartcard): the card
//! connects to the reader's TCP port; both directions carry frames of a 2-byte big-endian
//! length and a payload. A 1-byte payload from the reader is a control command (0 power off,
//! 1 power on, 2 reset, 4 get ATR); anything longer is a command APDU. The card answers the
//! ATR request and every APDU with one frame; power and reset get no answer.

use crate::piv::{ATR, PivCard};
use std::io::{Read, Write};
use std::net::TcpStream;

const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const GET_ATR: u8 = 4;

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut payload)?;
    Ok(payload)
}

fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "response over 65535 bytes"))?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

/// Serves the card on a connected stream until the reader hangs up (or `stream` fails).
/// With `CARDHSM_VCARD_TRACE` set, every frame is printed to stderr (APDUs in hex).
/// With `remove_on_generate`, the card leaves (returns) when GENERATE for that slot arrives.
pub fn serve(
    card: &mut PivCard,
    mut stream: TcpStream,
    remove_on_generate: Option<u8>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let trace = std::env::var_os("CARDHSM_VCARD_TRACE").is_some();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    loop {
        let payload = match read_frame(&mut stream) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if trace {
            eprintln!("vcard <= {}", hex(&payload));
        }
        match payload.as_slice() {
            [POWER_OFF] | [POWER_ON] | [RESET] => card.reset(),
            [GET_ATR] => write_frame(&mut stream, &ATR)?,
            [_] => {}
            apdu => {
                if let (Some(slot), [_, 0x47, _, p2, ..]) = (remove_on_generate, apdu)
                    && *p2 == slot
                {
                    return Ok(());
                }
                let response = card.process(apdu);
                if trace {
                    eprintln!("vcard => {}", hex(&response));
                }
                write_frame(&mut stream, &response)?;
            }
        }
    }
}
