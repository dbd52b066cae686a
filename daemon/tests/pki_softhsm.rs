//! The pki layer (daemon/src/pki) with CA keys on the real SoftHSM token, as the issuance
//! service will use it: CA key pairs generated through `TokenManager`, certificates, CSRs and
//! CRLs signed through `TokenSigner`, and everything cross-checked with the real `openssl`
//! CLI (verify, req -verify, crl -verify / -text). CSRs of end entities are made by openssl.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process, so like token_softhsm.rs each SoftHSM test
//! re-runs itself in a child process with its own token directory in the environment.

mod softhsm_child;

use cardhsmd::pki::{
    CaSigner, CertSerial, CertificateTemplate, CrlEntry, CrlTemplate, ExtendedKeyUsage, KeyKind, KeyUsage,
    PEM_CERTIFICATE, PEM_CERTIFICATE_REQUEST, PEM_X509_CRL, ParsedCsr, PkiError, RevocationReason,
    SubjectAltName, TokenSigner, build_certificate, build_crl, build_csr, format_name, key_identifier,
    parse_certificate, parse_crl, parse_csr, parse_name, pem_encode, verify_certificate_signature,
};
use cardhsmd::token::{KeyPairRequest, TokenManager};
use hsm_config::{KeyAlgorithm, Pkcs11Config, SecretSource, TokenConfig, TokenRole};
use softhsm_child::{ChildSpec, dir_or_run_child};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "5813-pki-pin";
const SO_PIN: &str = "12345678";
/// Set in the child: the test's private directory (token dir, conf, PIN file, work files).
const CHILD_DIR: &str = "CARDHSM_PKI_TEST_DIR";
const UNSET_PIN_VAR: &str = "CARDHSM_PKI_TEST_PIN_THAT_IS_NOT_SET";
const DAY: Duration = Duration::from_secs(86400);

struct Fx {
    dir: PathBuf,
}

impl Fx {
    /// The token "ca" opened through the token layer, and its serial.
    fn open(&self) -> (TokenManager, String) {
        let cfg = Pkcs11Config {
            module: MODULE.into(),
            sessions_per_token: 4,
            session_wait_ms: 10_000,
            card_pin: SecretSource::env(UNSET_PIN_VAR),
            tokens: vec![TokenConfig {
                serial: None,
                label: Some("ca".into()),
                role: TokenRole::Daemon,
                pin: SecretSource::file(self.dir.join("user.pin")),
            }],
        };
        let tm = TokenManager::open(&cfg).expect("open");
        let serial = self.serial("ca");
        (tm, serial)
    }

    fn serial(&self, label: &str) -> String {
        let out = Command::new("softhsm2-util").arg("--show-slots").output().expect("softhsm2-util runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut serial = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix("Serial number:") {
                serial = Some(s.trim().to_owned());
            } else if let Some(l) = line.strip_prefix("Label:")
                && l.trim() == label
            {
                return serial.take().expect("serial before label");
            }
        }
        panic!("no token labelled {label:?} in:\n{text}");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write");
        p
    }
}

/// Runs `body` in a child process that has its own SoftHSM token directory with token "ca".
fn softhsm_test(name: &str, body: impl FnOnce(&Fx)) {
    let spec = ChildSpec {
        child_dir_var: CHILD_DIR,
        unset_pin_var: UNSET_PIN_VAR,
        pin: PIN,
        so_pin: SO_PIN,
        labels: &["ca"],
    };
    if let Some(dir) = dir_or_run_child(name, &spec, |_| {}) {
        body(&Fx { dir });
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn openssl(args: &[&str], dir: &Path) -> Out {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn must(args: &[&str], dir: &Path) -> Out {
    let out = openssl(args, dir);
    assert!(out.ok, "openssl {args:?} failed:\n{}", out.all());
    out
}

/// A CA key pair generated on the token, and a signer for it.
fn ca_key(
    rt: &tokio::runtime::Runtime,
    tm: &TokenManager,
    serial: &str,
    id: &str,
    alg: KeyAlgorithm,
) -> TokenSigner {
    let kp = rt
        .block_on(tm.generate_key_pair(
            serial,
            KeyPairRequest { label: id.into(), id: id.as_bytes().to_vec(), algorithm: alg, persistent: true },
        ))
        .expect("keygen");
    TokenSigner::new(tm.clone(), serial, kp.id, &kp.public_key_der).expect("signer")
}

fn now() -> SystemTime {
    // Whole seconds, a minute back: certificates are valid right away.
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs - 60)
}

fn ca_template(subject: &str, issuer: &str, spki: &[u8], path_len: Option<u8>) -> CertificateTemplate {
    CertificateTemplate {
        serial: CertSerial::random(),
        issuer: parse_name(issuer).expect("issuer"),
        subject: parse_name(subject).expect("subject"),
        subject_public_key_der: spki.to_vec(),
        not_before: now(),
        not_after: now() + 3650 * DAY,
        is_ca: true,
        path_len,
        key_usage: vec![KeyUsage::KeyCertSign, KeyUsage::CrlSign, KeyUsage::DigitalSignature],
        extended_key_usage: vec![],
        subject_alt_names: vec![],
        authority_key_id: None,
        crl_distribution_point: None,
    }
}

/// The leaf certificate a profile would make from a CSR.
fn leaf_template(csr: &ParsedCsr, issuer: &str, crl_url: Option<&str>) -> CertificateTemplate {
    CertificateTemplate {
        serial: CertSerial::random(),
        issuer: parse_name(issuer).expect("issuer"),
        subject: csr.subject.clone(),
        subject_public_key_der: csr.public_key_der.clone(),
        not_before: now(),
        not_after: now() + 365 * DAY,
        is_ca: false,
        path_len: None,
        key_usage: match csr.key_kind {
            KeyKind::Rsa { .. } => vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
            _ => vec![KeyUsage::DigitalSignature, KeyUsage::KeyAgreement],
        },
        extended_key_usage: vec![ExtendedKeyUsage::ClientAuth, ExtendedKeyUsage::ServerAuth],
        subject_alt_names: csr.subject_alt_names.clone(),
        authority_key_id: None,
        crl_distribution_point: crl_url.map(str::to_owned),
    }
}

/// A CSR made by the openssl CLI with a fresh key (`newkey` as for `openssl req -newkey`).
fn openssl_csr(fx: &Fx, name: &str, newkey: &[&str], subj: &str, san: Option<&str>) -> Vec<u8> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subj];
    args.extend_from_slice(newkey);
    let ext;
    if let Some(san) = san {
        ext = format!("subjectAltName={san}");
        args.extend_from_slice(&["-addext", &ext]);
    }
    must(&args, &fx.dir);
    std::fs::read(fx.path(&csr)).expect("csr")
}

const EC_P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
const EC_P384: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
const RSA_2048: &[&str] = &["-newkey", "rsa:2048"];

/// `openssl crl -text` → serial (upper-case hex) → reason text ("" when none).
fn crl_entries(text: &str) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if let Some(s) = line.strip_prefix("Serial Number:") {
            let s = s.trim().to_owned();
            entries.insert(s.clone(), String::new());
            current = Some(s);
        } else if line.starts_with("X509v3 CRL Reason Code:")
            && let (Some(serial), Some(reason)) = (&current, lines.peek())
        {
            entries.insert(serial.clone(), (*reason).to_owned());
        } else if line.starts_with("Signature Algorithm:") {
            current = None;
        }
    }
    entries
}

#[test]
fn ec_root_p384_intermediate_leaves_and_crl() {
    softhsm_test("ec_root_p384_intermediate_leaves_and_crl", |fx| {
        let (tm, serial) = fx.open();
        let rt = runtime();
        let d = &fx.dir;

        // Root: P-256 key on the token, self-signed.
        let root_key = ca_key(&rt, &tm, &serial, "root-p256", KeyAlgorithm::EcP256);
        let root_dn = "CN=cardhsm Test Root P-256,O=Acme,OU=PKI,L=Brno,ST=JM,C=CZ";
        let root_t = ca_template(root_dn, root_dn, root_key.public_key_der(), Some(1));
        let root_der = rt.block_on(build_certificate(&root_key, &root_t)).expect("root");
        fx.write("root.pem", pem_encode(PEM_CERTIFICATE, &root_der));
        let root = parse_certificate(&root_der).expect("parses");
        assert!(root.is_ca && root.is_self_issued());
        assert_eq!(root.subject_key_id, root.authority_key_id);
        verify_certificate_signature(&root_der, root_key.public_key_der()).expect("self-signature");

        // Intermediate: P-384 key on the token, signed by the root (ECDSA with SHA-256).
        let inter_key = ca_key(&rt, &tm, &serial, "inter-p384", KeyAlgorithm::EcP384);
        let inter_dn = "CN=cardhsm Issuing CA P-384,O=Acme,C=CZ";
        let mut inter_t = ca_template(inter_dn, root_dn, inter_key.public_key_der(), Some(0));
        inter_t.crl_distribution_point = Some("http://pki.example.com/root.crl".into());
        let inter_der = rt.block_on(build_certificate(&root_key, &inter_t)).expect("intermediate");
        fx.write("inter.pem", pem_encode(PEM_CERTIFICATE, &inter_der));
        let inter = parse_certificate(&inter_der).expect("parses");
        assert_eq!(inter.authority_key_id, root.subject_key_id);
        assert_eq!(inter.issuer, root.subject);

        // openssl agrees on the CA certificates.
        must(&["verify", "-x509_strict", "-CAfile", "root.pem", "root.pem"], d);
        let out = must(&["verify", "-x509_strict", "-CAfile", "root.pem", "inter.pem"], d);
        assert!(out.stdout.contains("inter.pem: OK"), "{}", out.all());
        let text = must(&["x509", "-in", "inter.pem", "-noout", "-text"], d).stdout;
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
        assert!(text.contains("URI:http://pki.example.com/root.crl"), "{text}");
        let subject =
            must(&["x509", "-in", "root.pem", "-noout", "-subject", "-nameopt", "RFC2253"], d).stdout;
        assert_eq!(subject.trim(), format!("subject={root_dn}"));

        // Leaves from openssl CSRs (P-256, P-384, RSA-2048), issued by the intermediate
        // (ECDSA with SHA-384).
        let crl_url = "http://pki.example.com/issuing.crl";
        let leaves = [
            (
                "leaf-p256",
                EC_P256,
                "/C=CZ/O=Acme/CN=device 1",
                Some("DNS:device1.example.com,IP:192.0.2.1,email:ops@example.com"),
            ),
            (
                "leaf-p384",
                EC_P384,
                "/O=Acme/CN=device 2",
                Some("DNS:device2.example.com,URI:urn:example:device2"),
            ),
            ("leaf-rsa", RSA_2048, "/O=Acme/OU=Servers/CN=server.example.com", None),
            ("leaf-held", EC_P256, "/CN=device 4", None),
            ("leaf-ok", EC_P256, "/CN=device 5", None),
        ];
        let mut issued = BTreeMap::new();
        for (name, newkey, subj, san) in leaves {
            let csr = parse_csr(&openssl_csr(fx, name, newkey, subj, san)).expect("openssl CSR accepted");
            let leaf_der = rt
                .block_on(build_certificate(&inter_key, &leaf_template(&csr, inter_dn, Some(crl_url))))
                .expect("leaf");
            let file = format!("{name}.pem");
            fx.write(&file, pem_encode(PEM_CERTIFICATE, &leaf_der));
            let out =
                must(&["verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "inter.pem", &file], d);
            assert!(out.stdout.contains(&format!("{file}: OK")), "{}", out.all());
            let leaf = parse_certificate(&leaf_der).expect("parses");
            assert_eq!(leaf.authority_key_id, inter.subject_key_id);
            assert_eq!(leaf.subject_alt_names, csr.subject_alt_names);
            // The certificate holds the CSR's key: openssl's view of both public keys agrees.
            let from_cert = must(&["x509", "-in", &file, "-noout", "-pubkey"], d).stdout;
            let from_key = must(&["pkey", "-in", &format!("{name}.key"), "-pubout"], d).stdout;
            assert_eq!(from_cert, from_key);
            issued.insert(name, leaf);
        }
        let text = must(&["x509", "-in", "leaf-p256.pem", "-noout", "-text"], d).stdout;
        for want in [
            "ecdsa-with-SHA384",
            "DNS:device1.example.com, IP Address:192.0.2.1, email:ops@example.com",
            "TLS Web Client Authentication, TLS Web Server Authentication",
            "Digital Signature, Key Agreement",
            "CA:FALSE",
            "URI:http://pki.example.com/issuing.crl",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(format_name(&issued["leaf-p256"].subject), "CN=device 1,O=Acme,C=CZ");

        // CRL of the intermediate: three leaves revoked or held, and one serial we never
        // issued, revoked as unspecified (no reasonCode entry extension).
        let stray = CertSerial::random();
        let revoked_at = now() - DAY;
        let entry = |serial: CertSerial, reason| CrlEntry { serial, revocation_time: revoked_at, reason };
        let serial_of = |name: &str| CertSerial::from_hex(&issued[name].serial_hex).expect("serial");
        let crl_t = CrlTemplate {
            issuer: parse_name(inter_dn).expect("issuer"),
            authority_key_id: None,
            crl_number: 7,
            this_update: now(),
            next_update: now() + 7 * DAY,
            entries: vec![
                entry(serial_of("leaf-p256"), RevocationReason::KeyCompromise),
                entry(serial_of("leaf-p384"), RevocationReason::Superseded),
                entry(serial_of("leaf-held"), RevocationReason::CertificateHold),
                entry(stray.clone(), RevocationReason::Unspecified),
            ],
        };
        let crl_der = rt.block_on(build_crl(&inter_key, &crl_t)).expect("crl");
        fx.write("inter.crl.pem", pem_encode(PEM_X509_CRL, &crl_der));
        fx.write(
            "chain.pem",
            format!("{}{}", pem_encode(PEM_CERTIFICATE, &inter_der), pem_encode(PEM_CERTIFICATE, &root_der)),
        );
        let out = must(&["crl", "-in", "inter.crl.pem", "-noout", "-verify", "-CAfile", "chain.pem"], d);
        assert!(out.all().contains("verify OK"), "{}", out.all());
        let text = must(&["crl", "-in", "inter.crl.pem", "-noout", "-text"], d).stdout;
        let want: BTreeMap<String, String> = [
            (serial_of("leaf-p256"), "Key Compromise"),
            (serial_of("leaf-p384"), "Superseded"),
            (serial_of("leaf-held"), "Certificate Hold"),
            (stray, ""),
        ]
        .into_iter()
        .map(|(s, r)| (s.to_hex().to_uppercase(), r.to_owned()))
        .collect();
        assert_eq!(crl_entries(&text), want, "openssl crl -text:\n{text}");
        let number = text.lines().skip_while(|l| !l.contains("X509v3 CRL Number:")).nth(1).map(str::trim);
        assert_eq!(number, Some("7"), "{text}");
        assert!(text.contains("Next Update:"), "{text}");
        let keyid = key_identifier(inter_key.public_key_der()).expect("ski");
        let parsed = parse_crl(&crl_der).expect("parses");
        assert_eq!(parsed.crl_number, Some(7));
        assert_eq!(parsed.authority_key_id, Some(keyid));

        // The CRL in use: revoked and held leaves fail a CRL-checking verify, others pass.
        fx.write("all.crl.pem", pem_encode(PEM_X509_CRL, &crl_der));
        for (name, good) in
            [("leaf-p256", false), ("leaf-held", false), ("leaf-rsa", true), ("leaf-ok", true)]
        {
            let file = format!("{name}.pem");
            let out = openssl(
                &[
                    "verify",
                    "-crl_check",
                    "-CRLfile",
                    "all.crl.pem",
                    "-CAfile",
                    "root.pem",
                    "-untrusted",
                    "inter.pem",
                    &file,
                ],
                d,
            );
            assert_eq!(out.ok, good, "{name}: {}", out.all());
            if !good {
                assert!(out.all().contains("certificate revoked"), "{name}: {}", out.all());
            }
        }
    });
}

#[test]
fn rsa_root_issues_and_revokes() {
    softhsm_test("rsa_root_issues_and_revokes", |fx| {
        let (tm, serial) = fx.open();
        let rt = runtime();
        let d = &fx.dir;

        let root_key = ca_key(&rt, &tm, &serial, "root-rsa", KeyAlgorithm::Rsa2048);
        assert_eq!(root_key.public_key().kind(), KeyKind::Rsa { bits: 2048 });
        let root_dn = "CN=cardhsm Test Root RSA,O=Acme,C=CZ";
        let root_der = rt
            .block_on(build_certificate(
                &root_key,
                &ca_template(root_dn, root_dn, root_key.public_key_der(), None),
            ))
            .expect("root");
        fx.write("root.pem", pem_encode(PEM_CERTIFICATE, &root_der));
        must(&["verify", "-x509_strict", "-CAfile", "root.pem", "root.pem"], d);
        let text = must(&["x509", "-in", "root.pem", "-noout", "-text"], d).stdout;
        assert!(text.contains("sha256WithRSAEncryption"), "{text}");
        assert!(text.contains("Public-Key: (2048 bit)"), "{text}");

        let mut serials = Vec::new();
        for (name, newkey) in [("ec", EC_P256), ("rsa", RSA_2048)] {
            let csr = parse_csr(&openssl_csr(
                fx,
                name,
                newkey,
                &format!("/O=Acme/CN=device {name}"),
                Some("DNS:d.example.com"),
            ))
            .expect("CSR");
            let der =
                rt.block_on(build_certificate(&root_key, &leaf_template(&csr, root_dn, None))).expect("leaf");
            let file = format!("{name}.pem");
            fx.write(&file, pem_encode(PEM_CERTIFICATE, &der));
            let out = must(&["verify", "-x509_strict", "-CAfile", "root.pem", &file], d);
            assert!(out.stdout.contains("OK"), "{}", out.all());
            serials.push(
                CertSerial::from_hex(&parse_certificate(&der).expect("parses").serial_hex).expect("serial"),
            );
        }

        let crl_t = CrlTemplate {
            issuer: parse_name(root_dn).expect("issuer"),
            authority_key_id: None,
            crl_number: 1,
            this_update: now(),
            next_update: now() + DAY,
            entries: vec![CrlEntry {
                serial: serials[1].clone(),
                revocation_time: now(),
                reason: RevocationReason::CessationOfOperation,
            }],
        };
        let crl_der = rt.block_on(build_crl(&root_key, &crl_t)).expect("crl");
        fx.write("root.crl.pem", pem_encode(PEM_X509_CRL, &crl_der));
        let out = must(&["crl", "-in", "root.crl.pem", "-noout", "-verify", "-CAfile", "root.pem"], d);
        assert!(out.all().contains("verify OK"), "{}", out.all());
        let text = must(&["crl", "-in", "root.crl.pem", "-noout", "-text"], d).stdout;
        let want: BTreeMap<String, String> =
            [(serials[1].to_hex().to_uppercase(), "Cessation Of Operation".to_owned())].into_iter().collect();
        assert_eq!(crl_entries(&text), want, "{text}");
        let out = openssl(
            &["verify", "-crl_check", "-CRLfile", "root.crl.pem", "-CAfile", "root.pem", "rsa.pem"],
            d,
        );
        assert!(!out.ok && out.all().contains("certificate revoked"), "{}", out.all());
        let out = openssl(
            &["verify", "-crl_check", "-CRLfile", "root.crl.pem", "-CAfile", "root.pem", "ec.pem"],
            d,
        );
        assert!(out.ok, "{}", out.all());

        // An empty CRL is valid too.
        let empty = CrlTemplate { entries: vec![], crl_number: 2, ..crl_t };
        let crl_der = rt.block_on(build_crl(&root_key, &empty)).expect("crl");
        fx.write("empty.crl.pem", pem_encode(PEM_X509_CRL, &crl_der));
        let out =
            must(&["crl", "-in", "empty.crl.pem", "-noout", "-verify", "-text", "-CAfile", "root.pem"], d);
        assert!(
            out.all().contains("verify OK") && out.all().contains("No Revoked Certificates"),
            "{}",
            out.all()
        );
    });
}

#[test]
fn csrs_for_token_keys_verify_with_openssl() {
    softhsm_test("csrs_for_token_keys_verify_with_openssl", |fx| {
        let (tm, serial) = fx.open();
        let rt = runtime();
        let d = &fx.dir;
        let subject = parse_name("CN=External Root Request,O=Acme,C=CZ").expect("name");
        for (id, alg, expect) in [
            ("csr-p256", KeyAlgorithm::EcP256, "ecdsa-with-SHA256"),
            ("csr-p384", KeyAlgorithm::EcP384, "ecdsa-with-SHA384"),
            ("csr-rsa", KeyAlgorithm::Rsa2048, "sha256WithRSAEncryption"),
        ] {
            let key = ca_key(&rt, &tm, &serial, id, alg);
            let sans = [SubjectAltName::Dns("ca.example.com".into())];
            let der = rt.block_on(build_csr(&key, &subject, &sans)).expect("csr");
            let file = format!("{id}.csr");
            fx.write(&file, pem_encode(PEM_CERTIFICATE_REQUEST, &der));
            let out = must(&["req", "-in", &file, "-noout", "-verify", "-text", "-nameopt", "RFC2253"], d);
            let all = out.all();
            assert!(all.contains("verify OK"), "{id}: {all}");
            assert!(all.contains(expect), "{id}: {all}");
            assert!(all.contains("CN=External Root Request,O=Acme,C=CZ"), "{id}: {all}");
            assert!(all.contains("DNS:ca.example.com"), "{id}: {all}");
            // openssl's view of the key in the CSR is the token's key.
            let from_csr = must(&["req", "-in", &file, "-noout", "-pubkey"], d).stdout;
            fx.write(&format!("{id}.spki.der"), key.public_key_der());
            let from_token =
                must(&["pkey", "-pubin", "-inform", "DER", "-in", &format!("{id}.spki.der")], d).stdout;
            assert_eq!(from_csr, from_token, "{id}");
            // And our own gate accepts it.
            let parsed = parse_csr(&der).expect("parses");
            assert_eq!(parsed.public_key_der, key.public_key_der());
        }
    });
}

#[test]
fn a_wrong_hsm_signature_is_an_error() {
    softhsm_test("a_wrong_hsm_signature_is_an_error", |fx| {
        let (tm, serial) = fx.open();
        let rt = runtime();
        // The signer claims key B's public key but signs with key A: every signature it makes
        // fails verification, and no certificate, CSR or CRL comes out.
        let a = ca_key(&rt, &tm, &serial, "key-a", KeyAlgorithm::EcP256);
        let b = ca_key(&rt, &tm, &serial, "key-b", KeyAlgorithm::EcP256);
        let liar =
            TokenSigner::new(tm.clone(), &serial, a.key_id().to_vec(), b.public_key_der()).expect("signer");
        let dn = "CN=Liar,O=Acme";
        let t = ca_template(dn, dn, liar.public_key_der(), None);
        assert!(matches!(rt.block_on(build_certificate(&liar, &t)), Err(PkiError::SignatureMismatch)));
        let subject = parse_name(dn).expect("name");
        assert!(matches!(rt.block_on(build_csr(&liar, &subject, &[])), Err(PkiError::SignatureMismatch)));
        let crl = CrlTemplate {
            issuer: subject,
            authority_key_id: None,
            crl_number: 1,
            this_update: now(),
            next_update: now() + DAY,
            entries: vec![],
        };
        assert!(matches!(rt.block_on(build_crl(&liar, &crl)), Err(PkiError::SignatureMismatch)));
        // A key the token does not have is the token layer's error, passed through.
        let ghost =
            TokenSigner::new(tm.clone(), &serial, b"ghost".to_vec(), a.public_key_der()).expect("signer");
        assert!(matches!(rt.block_on(build_certificate(&ghost, &t)), Err(PkiError::Token(_))));
        // The honest signer still works.
        let t = ca_template(dn, dn, a.public_key_der(), None);
        rt.block_on(build_certificate(&a, &t)).expect("certificate");
    });
}

/// These need openssl only, no token.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn openssl_csr_with_tampered_signature_is_refused() {
    let tmp = scratch();
    let fx = Fx { dir: tmp.path().to_path_buf() };
    let pem = openssl_csr(&fx, "t", EC_P256, "/CN=tamper", None);
    let good = parse_csr(&pem).expect("untampered CSR accepted");
    let mut der = good.der.clone();
    // The last byte is inside the signature's s value.
    let last = der.len() - 1;
    der[last] ^= 0x01;
    assert!(matches!(parse_csr(&der), Err(PkiError::BadCsrSignature)));
    // And the TBS side: change a byte of the subject.
    let mut der = good.der.clone();
    let pos = der.windows(6).position(|w| w == b"tamper").expect("CN in DER");
    der[pos] = b'T';
    assert!(matches!(parse_csr(&der), Err(PkiError::BadCsrSignature)));
    // RSA too.
    let pem = openssl_csr(&fx, "r", RSA_2048, "/CN=tamper rsa", None);
    let mut der = parse_csr(&pem).expect("RSA CSR accepted").der;
    let last = der.len() - 1;
    der[last] ^= 0x80;
    assert!(matches!(parse_csr(&der), Err(PkiError::BadCsrSignature)));
}

#[test]
fn openssl_weak_and_foreign_keys_are_refused() {
    let tmp = scratch();
    let fx = Fx { dir: tmp.path().to_path_buf() };
    let pem = openssl_csr(&fx, "rsa1024", &["-newkey", "rsa:1024"], "/CN=weak", None);
    match parse_csr(&pem) {
        Err(PkiError::WeakKey { detail }) => assert!(detail.contains("1024"), "{detail}"),
        other => panic!("RSA-1024: {other:?}"),
    }
    let pem =
        openssl_csr(&fx, "k1", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "/CN=k1", None);
    match parse_csr(&pem) {
        Err(PkiError::WeakKey { detail }) => assert!(detail.contains("secp256k1"), "{detail}"),
        other => panic!("secp256k1: {other:?}"),
    }
    let pem =
        openssl_csr(&fx, "p521", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "/CN=p521", None);
    assert!(matches!(parse_csr(&pem), Err(PkiError::WeakKey { .. })), "P-521");
    let pem = openssl_csr(&fx, "ed", &["-newkey", "ed25519"], "/CN=ed", None);
    assert!(matches!(parse_csr(&pem), Err(PkiError::UnsupportedKeyAlgorithm { .. })), "Ed25519");
    // SHA-1 signatures are not verified, whatever the key.
    let pem = openssl_csr(
        &fx,
        "sha1",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha1"],
        "/CN=sha1",
        None,
    );
    assert!(matches!(parse_csr(&pem), Err(PkiError::UnsupportedSignatureAlgorithm { .. })), "SHA-1");
    // A SHA-512 RSA-3072 request is fine.
    let pem = openssl_csr(&fx, "r3072", &["-newkey", "rsa:3072", "-sha512"], "/CN=big", None);
    assert_eq!(parse_csr(&pem).expect("accepted").key_kind, KeyKind::Rsa { bits: 3072 });
    // Garbage and truncation.
    assert!(matches!(parse_csr(b"not a csr"), Err(PkiError::Malformed { .. })));
    let der = parse_csr(&openssl_csr(&fx, "cut", EC_P256, "/CN=cut", None)).expect("ok").der;
    assert!(matches!(parse_csr(&der[..der.len() / 2]), Err(PkiError::Malformed { .. })));
    // DER straight from openssl works as well as PEM.
    must(&["req", "-in", "cut.csr", "-outform", "DER", "-out", "cut.der"], &fx.dir);
    let from_der = parse_csr(&std::fs::read(fx.path("cut.der")).expect("der")).expect("DER accepted");
    assert_eq!(from_der.der, der);
}
