//! The CLI's `store` commands over `CertificateStoreService`: the certificates and keys on one
//! token (`--token`: serial number or label). Reads the input files, calls [`CardhsmClient`],
//! writes the requested output files and prints the answer as a table or JSON. Secrets (the
//! password of an encrypted key) come from a file named by a flag, never from the flag itself.

use super::args::OutputFormat;
use super::output::{Table, time};
use super::password::read_line;
use super::run::{CliError, print};
use cardhsm_client::v1::{
    CreateCsrRequest, CsrKeyType, EcCurve, ImportCertificateRequest, StoredCertificate,
};
use cardhsm_client::{CardhsmClient, SecretString};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the certificates on a token, or one by id or fingerprint
    List {
        /// Token serial number or label
        #[arg(long)]
        token: String,
        /// Certificate id (hex CKA_ID) or SHA-1 fingerprint
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Import a certificate with its private key, or alone with --certificate-only (the same
    /// certificate, or another under the same id, is replaced)
    Import {
        /// Token serial number or label
        #[arg(long)]
        token: String,
        /// Certificate file, PEM or DER
        #[arg(long, value_name = "FILE")]
        certificate: PathBuf,
        /// Its private key, PEM or DER: PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1
        #[arg(long, value_name = "FILE", required_unless_present = "certificate_only")]
        private_key: Option<PathBuf>,
        /// The certificate alone, without a key pair (a CA certificate the token trusts)
        #[arg(long, conflicts_with_all = ["private_key", "key_password_file", "label", "protected", "system_use_only"])]
        certificate_only: bool,
        /// File whose first line is the password of an encrypted private key
        #[arg(long, value_name = "FILE")]
        key_password_file: Option<PathBuf>,
        /// CKA_ID in hex [default: SHA-1 of the public key]
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        /// CKA_LABEL [default: the subject CN]
        #[arg(long)]
        label: Option<String>,
        /// Nobody may delete or replace it through the API (administrators only)
        #[arg(long)]
        protected: bool,
        /// Users may not pick it for a service
        #[arg(long)]
        system_use_only: bool,
    },
    /// Delete a certificate and its key pair
    Delete {
        /// Token serial number or label
        #[arg(long)]
        token: String,
        /// Certificate id (hex CKA_ID) or SHA-1 fingerprint
        id: String,
    },
    /// Delete every certificate and pending CSR whose subject CN is --cn, with their key pairs
    DeleteSubject {
        /// Token serial number or label
        #[arg(long)]
        token: String,
        /// The subject common name (exact)
        #[arg(long)]
        cn: String,
    },
    /// Generate a key pair on the token and write a CSR signed by it
    Csr {
        /// Token serial number or label
        #[arg(long)]
        token: String,
        /// Subject DN (RFC 4514), e.g. "CN=device1,O=Acme"
        #[arg(long, value_name = "DN")]
        subject: String,
        /// EC:P-256, EC:P-384, RSA:2048, RSA:3072 or RSA:4096
        #[arg(long, value_name = "TYPE", default_value = "EC:P-256", value_parser = parse_key_type)]
        key_type: (CsrKeyType, EcCurve, u32),
        /// Write the CSR (PEM) to FILE
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Store the certificate a CA signed for a CSR made by `store csr`
    Complete {
        /// Token serial number or label
        #[arg(long)]
        token: String,
        /// The CSR id `store csr` printed
        #[arg(long, value_name = "ID")]
        csr_id: String,
        /// Certificate file, PEM or DER
        #[arg(long, value_name = "FILE")]
        certificate: PathBuf,
    },
}

/// `--key-type` of `store csr` → the request's key type, curve and RSA size.
pub fn parse_key_type(text: &str) -> Result<(CsrKeyType, EcCurve, u32), String> {
    match text.to_ascii_uppercase().as_str() {
        "EC:P-256" => Ok((CsrKeyType::Ecdsa, EcCurve::P256, 0)),
        "EC:P-384" => Ok((CsrKeyType::Ecdsa, EcCurve::P384, 0)),
        "RSA:2048" => Ok((CsrKeyType::Rsa, EcCurve::Unspecified, 2048)),
        "RSA:3072" => Ok((CsrKeyType::Rsa, EcCurve::Unspecified, 3072)),
        "RSA:4096" => Ok((CsrKeyType::Rsa, EcCurve::Unspecified, 4096)),
        _ => Err(format!("`{text}` is not EC:P-256, EC:P-384, RSA:2048, RSA:3072 or RSA:4096")),
    }
}

fn read_bytes(what: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::Input(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The first line of a file holding a secret (without its line ending).
pub fn secret_file(what: &str, path: &Path) -> Result<SecretString, CliError> {
    let cannot = |e: String| CliError::Input(format!("cannot read the {what} from {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    read_line(&mut std::io::BufReader::new(file))
        .map_err(|e| cannot(e.to_string()))?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| cannot("the file is empty".into()))
}

pub async fn store(
    client: &CardhsmClient,
    format: OutputFormat,
    command: StoreCommand,
) -> Result<(), CliError> {
    match command {
        StoreCommand::List { token, id } => {
            let list = client.list_token_certificates(&token, id.as_deref().unwrap_or_default()).await?;
            print(format, || certificates_json(&list), || certificates_table(&list))
        }
        StoreCommand::Import {
            token,
            certificate,
            private_key,
            certificate_only,
            key_password_file,
            id,
            label,
            protected,
            system_use_only,
        } => {
            let cert = read_bytes("certificate", &certificate)?;
            let key = match &private_key {
                Some(path) => Zeroizing::new(read_bytes("private key", path)?),
                None => Zeroizing::new(Vec::new()),
            };
            let password = match key_password_file {
                Some(path) => Some(secret_file("key password", &path)?),
                None => None,
            };
            let request = ImportCertificateRequest {
                token,
                cert,
                private_key: key.to_vec(),
                password: password.map(|p| p.expose().to_owned()).unwrap_or_default(),
                id: id.unwrap_or_default(),
                label: label.unwrap_or_default(),
                protected,
                system_use_only,
                certificate_only,
            };
            let done = client.import_token_certificate(request).await?;
            let json = || {
                json!({
                    "fingerprint": done.fingerprint,
                    "replaced": done.replaced,
                    "certificate": done.certificate.as_ref().map(certificate_json),
                })
            };
            let table = || {
                let mut out = done.certificate.as_ref().map(certificate_table).unwrap_or_default();
                if !done.replaced.is_empty() {
                    out.push_str(&format!("replaced: {}\n", done.replaced));
                }
                out
            };
            print(format, json, table)
        }
        StoreCommand::Delete { token, id } => {
            let deleted = client.delete_token_certificate(&token, &id).await?;
            print(format, || json!({ "deleted": deleted }), || deleted_table(&deleted, &[]))
        }
        StoreCommand::DeleteSubject { token, cn } => {
            let done = client.delete_token_certificates_by_subject(&token, &cn).await?;
            print(
                format,
                || json!({ "deleted": done.deleted, "deleted_csrs": done.deleted_csrs }),
                || deleted_table(&done.deleted, &done.deleted_csrs),
            )
        }
        StoreCommand::Csr { token, subject, key_type: (key_type, curve, rsa_bits), out } => {
            let request =
                CreateCsrRequest { token, subject, key_type: key_type.into(), curve: curve.into(), rsa_bits };
            let csr = client.create_token_csr(request).await?;
            if let Some(path) = &out {
                std::fs::write(path, csr.csr_pem.as_bytes()).map_err(|e| {
                    CliError::Input(format!("cannot write the CSR to {}: {e}", path.display()))
                })?;
            }
            let json = || {
                json!({
                    "csr_id": csr.csr_id,
                    "id": csr.id,
                    "key_algorithm": csr.key_algorithm,
                    "csr_pem": csr.csr_pem,
                })
            };
            let table = || {
                let mut table = Table::without_header();
                table
                    .row(["csr id:", &csr.csr_id])
                    .row(["key id:", &csr.id])
                    .row(["key:", &csr.key_algorithm]);
                let mut text = table.render();
                if out.is_none() {
                    text.push('\n');
                    text.push_str(&csr.csr_pem);
                }
                text
            };
            print(format, json, table)
        }
        StoreCommand::Complete { token, csr_id, certificate } => {
            let cert = read_bytes("certificate", &certificate)?;
            let stored = client.complete_token_csr(&token, &csr_id, cert).await?;
            print(format, || certificate_json(&stored), || certificate_table(&stored))
        }
    }
}

// ---- output ----

fn dn_json(dn: Option<&cardhsm_client::v1::DistinguishedName>) -> Value {
    let dn = dn.cloned().unwrap_or_default();
    json!({ "cn": dn.cn, "o": dn.o, "ou": dn.ou, "l": dn.l, "s": dn.s, "c": dn.c })
}

/// One certificate on a token as JSON.
pub fn certificate_json(c: &StoredCertificate) -> Value {
    json!({
        "fingerprint": c.fingerprint,
        "sha256_fingerprint": c.sha256_fingerprint,
        "id": c.id,
        "label": c.label,
        "subject": dn_json(c.subject.as_ref()),
        "issuer": dn_json(c.issuer.as_ref()),
        "subject_dn": c.subject_dn,
        "issuer_dn": c.issuer_dn,
        "serial_number": c.serial_number,
        "start_date": c.start_date,
        "end_date": c.end_date,
        "protected": c.protected,
        "system_use_only": c.system_use_only,
        "has_private_key": c.has_private_key,
        "source": c.source,
        "certificate_pem": c.certificate_pem,
    })
}

fn certificates_json(list: &[StoredCertificate]) -> Value {
    json!({ "certificates": list.iter().map(certificate_json).collect::<Vec<_>>() })
}

/// One certificate for people.
pub fn certificate_table(c: &StoredCertificate) -> String {
    let mut table = Table::without_header();
    table
        .row(["fingerprint:", &c.fingerprint])
        .row(["id:", &c.id])
        .row(["label:", &c.label])
        .row(["subject:", &c.subject_dn])
        .row(["issuer:", &c.issuer_dn])
        .row(["valid from:", &time(c.start_date)])
        .row(["valid until:", &time(c.end_date)])
        .row(["flags:", &flags(c)]);
    table.render()
}

fn flags(c: &StoredCertificate) -> String {
    let mut flags = Vec::new();
    if c.has_private_key {
        flags.push("key");
    }
    if c.protected {
        flags.push("protected");
    }
    if c.system_use_only {
        flags.push("system-use-only");
    }
    flags.join(",")
}

fn certificates_table(list: &[StoredCertificate]) -> String {
    let mut table = Table::new(&["FINGERPRINT", "ID", "LABEL", "SUBJECT", "VALID UNTIL", "FLAGS"]);
    for c in list {
        table.row([c.fingerprint.as_str(), &c.id, &c.label, &c.subject_dn, &time(c.end_date), &flags(c)]);
    }
    let mut out = table.render();
    out.push_str(&format!("({} certificates)\n", list.len()));
    out
}

fn deleted_table(certificates: &[String], csrs: &[String]) -> String {
    let mut out = String::new();
    for fp in certificates {
        out.push_str(&format!("deleted certificate {fp}\n"));
    }
    for id in csrs {
        out.push_str(&format!("deleted pending CSR {id}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types() {
        assert_eq!(parse_key_type("ec:p-384"), Ok((CsrKeyType::Ecdsa, EcCurve::P384, 0)));
        assert_eq!(parse_key_type("RSA:3072"), Ok((CsrKeyType::Rsa, EcCurve::Unspecified, 3072)));
        assert!(parse_key_type("RSA:1024").is_err());
    }
}
