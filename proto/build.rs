//! Build step of the API crate: compiles proto/cardhsm/v1/*.proto with protox (no system protoc),
//! generates tonic clients and servers, and writes the encoded descriptor set for reflection.

use prost::Message;
use std::path::PathBuf;

/// Messages whose derived Debug would print a secret.
const SECRET_MESSAGES: [&str; 24] = [
    ".cardhsm.v1.LoginRequest",
    // old_pin, new_pin / puk, new_pin of a card.
    ".cardhsm.v1.ChangePinRequest",
    ".cardhsm.v1.UnblockPinRequest",
    ".cardhsm.v1.RefreshRequest",
    ".cardhsm.v1.LoginResponse",
    ".cardhsm.v1.CreateUserRequest",
    // current_password (and new passwords).
    ".cardhsm.v1.UpdateEmailRequest",
    ".cardhsm.v1.UpdateCredentialsRequest",
    // A password-reset code (and new passwords).
    ".cardhsm.v1.ResetPasswordRequest",
    ".cardhsm.v1.ValidateCodeRequest",
    // pkcs12_password.
    ".cardhsm.v1.IssueCertificateRequest",
    // pkcs12: a private key, encrypted, but under a password that may be weak.
    ".cardhsm.v1.IssuedCertificate",
    // private_key and password.
    ".cardhsm.v1.ImportCertificateRequest",
    // old_password, new_password, repeated_new_password.
    ".cardhsm.v1.ChangePasswordRequest",
    // password.
    ".cardhsm.v1.RealmAuthRequest",
    // api_key.
    ".cardhsm.v1.RealmAuthResponse",
    // pkcs12_password of a batch (the response carries a generated one, once).
    ".cardhsm.v1.CreateBatchRequest",
    ".cardhsm.v1.CreateSingleCertBatchRequest",
    ".cardhsm.v1.UploadCsvBatchRequest",
    ".cardhsm.v1.CreateBatchResponse",
    // A chunk of a ZIP of PKCS#12 files (private keys, under a password).
    ".cardhsm.v1.DownloadChunk",
    // A backup password, and the encrypted archive (whose password may be weak).
    ".cardhsm.v1.ExportConfigurationRequest",
    ".cardhsm.v1.ImportConfigurationRequest",
    ".cardhsm.v1.ConfigurationChunk",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dir = root.join("cardhsm/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("cardhsm_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Messages that carry passwords or tokens get a redacting Debug (see lib.rs) instead
        // of the derived one, so no `{:?}` can ever print a secret.
        .skip_debug(SECRET_MESSAGES)
        .compile_fds(fds)?;
    Ok(())
}
