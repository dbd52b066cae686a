//! The backup archive format, under the system service (`service/system.rs`): export seals a
//! store snapshot, the configuration file and a manifest into one password-encrypted archive;
//! import opens one and refuses, with an error naming the field, anything it cannot trust.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! magic "CHSMBAK\0" (8) | format version u16 | kdf u8 (1 = PBKDF2-HMAC-SHA256) | iterations u32
//! | salt (16) | password check (32) | nonce (12) | AES-256-GCM ciphertext of a ZIP | tag (16)
//! ```
//!
//! Why this shape:
//! - PBKDF2-HMAC-SHA256 (ring) derives 64 bytes: the first 32 are the AES key, the last 32 a
//!   password check kept in the header. Each half is its own PBKDF2 block with the full
//!   iteration count, so the check makes guessing no cheaper than deriving the key, and it lets
//!   import tell "wrong password" (`password`) from "damaged archive" (`archive`).
//! - The whole header is the GCM associated data: changing any header byte, or any byte of the
//!   ciphertext, or cutting the tail off, fails authentication and nothing is used.
//! - One GCM message over the whole ZIP: archives are bounded by [`MAX_ARCHIVE_BYTES`] and the
//!   daemon holds one in memory while sealing or opening it.
//! - The inner container is a STORED ZIP written by `pki::ZipStreamWriter` and read by
//!   `pki::read_zip`: `manifest.json`, `cardhsm.sqlite3`, `cardhsm.toml`.

use super::ServiceError;
use crate::pki::{ZipStreamWriter, read_zip};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"CHSMBAK\0";
/// The archive format this daemon writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const KDF_PBKDF2_SHA256: u8 = 1;
/// PBKDF2 iterations of new archives.
pub const ITERATIONS: u32 = 210_000;
/// Fewer iterations than this in a header is refused (a forged, cheap-to-guess archive); more
/// than the maximum too (it would let an upload pin a CPU for minutes).
const MIN_ITERATIONS: u32 = 200_000;
const MAX_ITERATIONS: u32 = 10_000_000;
const SALT_LEN: usize = 16;
const CHECK_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + 2 + 1 + 4 + SALT_LEN + CHECK_LEN + NONCE_LEN;
/// The largest archive exported or accepted for import (and the gRPC message limit of
/// ImportConfiguration).
pub const MAX_ARCHIVE_BYTES: usize = 256 * 1024 * 1024;
/// The backup password policy.
pub const MIN_PASSWORD_CHARS: usize = 12;

const MANIFEST: &str = "manifest.json";
const STORE: &str = "cardhsm.sqlite3";
const CONFIG: &str = "cardhsm.toml";

/// What the archive says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u16,
    pub daemon_version: String,
    pub schema_version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// The tokens holding the keys the store refers to (keys never leave them).
    pub tokens: Vec<ManifestToken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestToken {
    pub label: String,
    pub serial: String,
    pub role: String,
}

/// The plaintext of an archive. The store holds password hashes and signing secrets: it is
/// zeroized when dropped.
pub struct Contents {
    pub manifest: Manifest,
    pub store: Zeroizing<Vec<u8>>,
    pub config: Zeroizing<String>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contents")
            .field("manifest", &self.manifest)
            .field("store", &format_args!("[{} bytes]", self.store.len()))
            .field("config", &format_args!("[{} bytes]", self.config.len()))
            .finish()
    }
}

/// The backup password policy: at least [`MIN_PASSWORD_CHARS`] characters.
pub fn check_password(password: &str) -> Result<(), ServiceError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ServiceError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Key (first half) and password check (second half) for `password` and `salt`.
fn derive(password: &str, salt: &[u8], iterations: NonZeroU32) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password.as_bytes(), &mut out[..]);
    out
}

fn internal(what: &str) -> impl Fn(ring::error::Unspecified) -> ServiceError + '_ {
    move |_| ServiceError::Internal(format!("backup archive: {what}"))
}

/// Seals `contents` under `password` (checked against the policy) with `iterations`.
pub fn seal(contents: &Contents, password: &str, iterations: u32) -> Result<Vec<u8>, ServiceError> {
    check_password(password)?;
    let iterations = NonZeroU32::new(iterations.max(MIN_ITERATIONS))
        .ok_or_else(|| ServiceError::Internal("PBKDF2 iterations".into()))?;
    let manifest = serde_json::to_vec_pretty(&contents.manifest)
        .map_err(|e| ServiceError::Internal(format!("manifest: {e}")))?;
    // Sized up front so the plaintext is not copied around by reallocation.
    let mut zip = ZipStreamWriter::new(Vec::with_capacity(contents.store.len() + 64 * 1024 + TAG_LEN));
    let zip_err = |e: std::io::Error| ServiceError::Internal(format!("backup ZIP: {e}"));
    zip.add_file(MANIFEST, &manifest).map_err(zip_err)?;
    zip.add_file(STORE, &contents.store).map_err(zip_err)?;
    zip.add_file(CONFIG, contents.config.as_bytes()).map_err(zip_err)?;
    let mut body = Zeroizing::new(zip.finish().map_err(zip_err)?);

    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(internal("random salt"))?;
    rng.fill(&mut nonce).map_err(internal("random nonce"))?;
    let derived = derive(password, &salt, iterations);

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    header.push(KDF_PBKDF2_SHA256);
    header.extend_from_slice(&iterations.get().to_be_bytes());
    header.extend_from_slice(&salt);
    header.extend_from_slice(&derived[32..]);
    header.extend_from_slice(&nonce);

    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derived[..32]).map_err(internal("AES key"))?);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&header[..]), &mut *body)
        .map_err(internal("encryption"))?;
    let mut out = header;
    out.extend_from_slice(&body);
    if out.len() > MAX_ARCHIVE_BYTES {
        return Err(ServiceError::FailedPrecondition(format!(
            "the archive would be {} bytes, over the {MAX_ARCHIVE_BYTES}-byte limit an import accepts",
            out.len()
        )));
    }
    Ok(out)
}

fn damaged(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("archive", message)
}

/// Opens an archive: checks the header, the password, the authentication tag, the ZIP and the
/// manifest. Any failure is INVALID_ARGUMENT naming `archive` or `password`.
pub fn open(archive: &[u8], password: &str) -> Result<Contents, ServiceError> {
    if archive.len() > MAX_ARCHIVE_BYTES {
        return Err(damaged(format!("is larger than {MAX_ARCHIVE_BYTES} bytes")));
    }
    if archive.len() < MAGIC.len() || &archive[..MAGIC.len()] != MAGIC {
        return Err(damaged("is not a cardhsm backup archive"));
    }
    if archive.len() < HEADER_LEN + TAG_LEN {
        return Err(damaged("is truncated"));
    }
    let (header, body) = archive.split_at(HEADER_LEN);
    let mut at = MAGIC.len();
    let mut take = |n: usize| {
        let s = &header[at..at + n];
        at += n;
        s
    };
    let v = take(2);
    let version = u16::from_be_bytes([v[0], v[1]]);
    if version != FORMAT_VERSION {
        return Err(damaged(format!(
            "has format version {version}; this daemon reads version {FORMAT_VERSION}"
        )));
    }
    let kdf = take(1)[0];
    if kdf != KDF_PBKDF2_SHA256 {
        return Err(damaged(format!("names an unknown key derivation ({kdf})")));
    }
    let it = take(4);
    let iterations = u32::from_be_bytes([it[0], it[1], it[2], it[3]]);
    let iterations = NonZeroU32::new(iterations)
        .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n.get()))
        .ok_or_else(|| damaged(format!("has an out-of-range PBKDF2 iteration count ({iterations})")))?;
    let salt = take(SALT_LEN);
    let check = take(CHECK_LEN);
    let nonce = take(NONCE_LEN);

    let derived = derive(password, salt, iterations);
    if !bool::from(derived[32..].ct_eq(check)) {
        return Err(ServiceError::invalid("password", "is not the password this archive was encrypted with"));
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derived[..32]).map_err(internal("AES key"))?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(internal("nonce"))?;
    let mut plain = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(header), &mut plain[..])
        .map_err(|_| damaged("is damaged or truncated (authentication failed)"))?
        .len();
    plain.truncate(len);

    let entries =
        read_zip(&plain, MAX_ARCHIVE_BYTES as u64).map_err(|e| damaged(format!("inner ZIP: {e}")))?;
    let mut manifest = None;
    let mut store = None;
    let mut config = None;
    for e in entries {
        match e.name.as_str() {
            MANIFEST => manifest = Some(e.bytes),
            STORE => store = Some(Zeroizing::new(e.bytes)),
            CONFIG => config = Some(e.bytes),
            _ => {}
        }
    }
    let missing = |name: &str| damaged(format!("has no {name}"));
    let manifest: Manifest = serde_json::from_slice(&manifest.ok_or_else(|| missing(MANIFEST))?)
        .map_err(|e| damaged(format!("{MANIFEST}: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(damaged(format!(
            "has format version {} in its manifest; this daemon reads version {FORMAT_VERSION}",
            manifest.format_version
        )));
    }
    let store = store.ok_or_else(|| missing(STORE))?;
    let config = String::from_utf8(config.ok_or_else(|| missing(CONFIG))?)
        .map_err(|_| damaged(format!("{CONFIG} is not UTF-8")))?;
    Ok(Contents { manifest, store, config: Zeroizing::new(config) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery";

    fn contents() -> Contents {
        Contents {
            manifest: Manifest {
                format_version: FORMAT_VERSION,
                daemon_version: "0.1.0".into(),
                schema_version: 7,
                created_at: 1_700_000_000,
                tokens: vec![ManifestToken {
                    label: "daemon".into(),
                    serial: "abc".into(),
                    role: "daemon".into(),
                }],
            },
            store: Zeroizing::new(b"SQLite format 3\0 pretend".to_vec()),
            config: Zeroizing::new("[server]\ngrpc_listen = \"127.0.0.1:0\"\n".into()),
        }
    }

    fn field_of(e: ServiceError) -> String {
        match e {
            ServiceError::InvalidArgument { field, .. } => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let sealed = seal(&contents(), PASSWORD, ITERATIONS).expect("seal");
        let opened = open(&sealed, PASSWORD).expect("open");
        assert_eq!(opened.manifest, contents().manifest);
        assert_eq!(*opened.store, *contents().store);
        assert_eq!(*opened.config, *contents().config);
        // A fresh salt and nonce each time.
        assert_ne!(sealed, seal(&contents(), PASSWORD, ITERATIONS).expect("seal"));
    }

    #[test]
    fn short_password_is_refused() {
        assert_eq!(field_of(seal(&contents(), "eleven char", ITERATIONS).expect_err("refused")), "password");
    }

    #[test]
    fn wrong_password_names_the_password() {
        let sealed = seal(&contents(), PASSWORD, ITERATIONS).expect("seal");
        assert_eq!(field_of(open(&sealed, "another password!").expect_err("refused")), "password");
    }

    #[test]
    fn every_damage_names_the_archive() {
        let sealed = seal(&contents(), PASSWORD, ITERATIONS).expect("seal");
        // A flipped byte in the ciphertext, in the tag, in the version, in the iterations.
        for at in [HEADER_LEN + 3, sealed.len() - 1, MAGIC.len() + 1, MAGIC.len() + 3] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert_eq!(field_of(open(&bad, PASSWORD).expect_err("refused")), "archive", "flipped byte {at}");
        }
        for len in [0, 5, HEADER_LEN, sealed.len() - 1] {
            assert_eq!(
                field_of(open(&sealed[..len], PASSWORD).expect_err("refused")),
                "archive",
                "cut at {len}"
            );
        }
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let mut sealed = seal(&contents(), PASSWORD, ITERATIONS).expect("seal");
        sealed[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&2u16.to_be_bytes());
        match open(&sealed, PASSWORD).expect_err("refused") {
            ServiceError::InvalidArgument { field, message } => {
                assert_eq!(field, "archive");
                assert!(message.contains("format version 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // A manifest claiming another version inside a well-sealed archive.
        let mut c = contents();
        c.manifest.format_version = 9;
        let sealed = seal(&c, PASSWORD, ITERATIONS).expect("seal");
        assert_eq!(field_of(open(&sealed, PASSWORD).expect_err("refused")), "archive");
    }
}
