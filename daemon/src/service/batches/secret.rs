//! Inside the batch service: a batch's PKCS#12 password at rest. The engine needs the password
//! again when it resumes a batch after a crash, so it cannot live in memory only; it is kept
//! encrypted (AES-256-GCM, the batch id as associated data so a ciphertext cannot be moved to
//! another batch) and dropped when the batch will make no more files.
//!
//! Where the key lives: in the store's `meta` table, like the key that signs access tokens
//! (`service/auth`). Anyone who can read the database file can read that key too, so this is
//! no defence against a stolen database (that attacker can already mint access tokens); it
//! keeps the password out of anything that copies batch rows — exports, support dumps, a
//! `SELECT *` — and out of logs. A key outside the store (a file, the HSM) would protect a
//! stolen database but would make a restored backup unable to finish its batches; the batch
//! files themselves are protected by the password, which the customer holds.

use crate::service::ServiceError;
use crate::service::issuance::Password;
use crate::store::{Store, StoreError, meta};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

const META_KEY: &str = "batch_password_key";

/// The daemon's key for batch passwords.
pub struct PasswordKey(LessSafeKey);

impl std::fmt::Debug for PasswordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordKey([redacted])")
    }
}

impl PasswordKey {
    /// Loads the key from the store, making it on first use. Blocking: call at start-up.
    pub fn load(store: &Store) -> Result<PasswordKey, ServiceError> {
        let bytes = Zeroizing::new(
            store
                .blocking_write(|tx| {
                    meta::get_or_insert_with(tx, META_KEY, || {
                        let mut k = vec![0u8; 32];
                        rand::rng().fill_bytes(&mut k);
                        k
                    })
                })
                .map_err(|e: StoreError| ServiceError::from(e))?,
        );
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| ServiceError::Internal("the stored batch password key is malformed".into()))?;
        Ok(PasswordKey(LessSafeKey::new(unbound)))
    }

    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, batch_id: &str, password: &Password) -> Result<Vec<u8>, ServiceError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = password.0.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(batch_id.as_bytes()),
                &mut buf,
            )
            .map_err(|_| ServiceError::Internal("cannot encrypt a batch password".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, batch_id: &str, sealed: &[u8]) -> Result<Password, ServiceError> {
        let bad =
            || ServiceError::Internal(format!("the stored password of batch {batch_id} does not decrypt"));
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain =
            self.0.open_in_place(nonce, Aad::from(batch_id.as_bytes()), &mut buf).map_err(|_| bad())?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| bad())?;
        Ok(Password(Zeroizing::new(text)))
    }
}

/// A password for a batch whose request left it empty: 20 characters from an alphabet
/// without look-alikes (about 115 bits).
pub fn generate_password() -> Password {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(20);
    for _ in 0..20 {
        let i = (rng.next_u32() as usize) % ALPHABET.len();
        s.push(char::from(ALPHABET[i]));
    }
    Password(Zeroizing::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_the_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite3"), 1).expect("open");
        let key = PasswordKey::load(&store).expect("key");
        let pw = Password(Zeroizing::new("correct horse".into()));
        let sealed = key.seal("batch-1", &pw).expect("seal");
        assert!(!sealed.windows(5).any(|w| w == b"horse"), "sealed text shows the password");
        assert_eq!(key.open("batch-1", &sealed).expect("open").0.as_str(), "correct horse");
        assert!(key.open("batch-2", &sealed).is_err(), "a ciphertext opened under another batch id");
        // The same key comes back after a reload.
        let again = PasswordKey::load(&store).expect("reload");
        assert_eq!(again.open("batch-1", &sealed).expect("open").0.as_str(), "correct horse");
        let generated = generate_password();
        assert_eq!(generated.0.chars().count(), 20);
    }
}
