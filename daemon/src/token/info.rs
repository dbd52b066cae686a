//! Slot and token discovery (blocking, called from `spawn_blocking`): which slots exist, which
//! tokens are in them, which configured token each one is, and the serial → slot look-up that
//! recovery uses (slot ids may change when a token comes back).

use super::error::counted;
use cryptoki::context::Pkcs11;
use cryptoki::error::Error as CkError;
use cryptoki::slot::{Slot, SlotInfo, TokenInfo};
use hsm_config::{Secret, TokenRole};

/// A `[[pkcs11.tokens]]` entry with its PIN loaded (None: the environment variable is unset).
pub(super) struct ConfiguredToken {
    pub(super) serial: Option<String>,
    pub(super) label: Option<String>,
    pub(super) role: TokenRole,
    pub(super) pin: Option<Secret>,
}

impl std::fmt::Debug for ConfiguredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredToken")
            .field("serial", &self.serial)
            .field("label", &self.label)
            .field("role", &self.role)
            .field("pin", &if self.pin.is_some() { "set" } else { "unset" })
            .finish()
    }
}

/// The configuration entry for a token: a serial match wins over a label match (serials are
/// unique, labels need not be).
pub(super) fn match_config<'a>(
    configured: &'a [ConfiguredToken],
    serial: &str,
    label: &str,
) -> Option<&'a ConfiguredToken> {
    configured
        .iter()
        .find(|c| c.serial.as_deref() == Some(serial))
        .or_else(|| configured.iter().find(|c| c.serial.is_none() && c.label.as_deref() == Some(label)))
}

/// One slot as seen now.
#[derive(Debug)]
pub(super) struct ScannedSlot {
    pub(super) slot: Slot,
    pub(super) slot_info: SlotInfo,
    /// None when no token is present (or it vanished between the two calls).
    pub(super) token: Option<TokenInfo>,
}

impl ScannedSlot {
    /// Serial and label of an initialised token — the only tokens the daemon can use.
    pub(super) fn usable_token(&self) -> Option<(&str, &str)> {
        self.token
            .as_ref()
            .filter(|t| t.token_initialized() && !t.serial_number().trim().is_empty())
            .map(|t| (t.serial_number().trim(), t.label().trim()))
    }
}

/// Every slot with its token, if any.
pub(super) fn scan(pkcs11: &Pkcs11) -> Result<Vec<ScannedSlot>, CkError> {
    let slots = counted("C_GetSlotList", pkcs11.get_all_slots())?;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        // A slot can disappear between C_GetSlotList and C_GetSlotInfo (a reader unplugged):
        // skip it rather than failing the whole listing.
        let Ok(slot_info) = counted("C_GetSlotInfo", pkcs11.get_slot_info(slot)) else { continue };
        let token = if slot_info.token_present() {
            counted("C_GetTokenInfo", pkcs11.get_token_info(slot)).ok()
        } else {
            None
        };
        out.push(ScannedSlot { slot, slot_info, token });
    }
    Ok(out)
}

/// The slot currently holding the initialised token with this serial.
pub(super) fn find_slot_by_serial(pkcs11: &Pkcs11, serial: &str) -> Result<Option<Slot>, CkError> {
    for slot in counted("C_GetSlotList", pkcs11.get_slots_with_token())? {
        if let Ok(info) = counted("C_GetTokenInfo", pkcs11.get_token_info(slot))
            && info.token_initialized()
            && info.serial_number().trim() == serial
        {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(serial: Option<&str>, label: Option<&str>, role: TokenRole) -> ConfiguredToken {
        ConfiguredToken {
            serial: serial.map(str::to_owned),
            label: label.map(str::to_owned),
            role,
            pin: Some(Secret::new("1234".into())),
        }
    }

    #[test]
    fn serial_beats_label() {
        let cfg = vec![tok(None, Some("ca"), TokenRole::Card), tok(Some("0011"), None, TokenRole::Daemon)];
        let m = match_config(&cfg, "0011", "ca").expect("matched");
        assert_eq!(m.role, TokenRole::Daemon);
        let m = match_config(&cfg, "9999", "ca").expect("matched by label");
        assert_eq!(m.role, TokenRole::Card);
        assert!(match_config(&cfg, "9999", "other").is_none());
        assert!(match_config(&[], "0011", "ca").is_none());
    }

    #[test]
    fn debug_hides_pin() {
        let s = format!("{:?}", tok(Some("1"), None, TokenRole::Card));
        assert!(!s.contains("1234"), "{s}");
        assert!(s.contains("set"));
    }
}
