//! A virtual PIV smart card for tests: `piv` is the card (APDU in, APDU out), `vpcd` the wire to
//! pcscd's vpcd reader driver, `apdu` the ISO 7816-4 encoding both use. The binary
//! (`cardhsm-vcard`) inserts a card into a vpcd reader; stopping it pulls the card out.

pub mod apdu;
pub mod piv;
pub mod vpcd;
