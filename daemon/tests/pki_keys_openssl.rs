//! Private keys and PKCS#12 of the pki layer (daemon/src/pki/private_key.rs, pkcs12.rs)
//! cross-checked with the real `openssl` CLI: keys written by openssl in every format
//! ImportCertificate accepts parse to the public key `openssl pkey -pubout` prints, and every
//! PFX `build_pkcs12` makes opens with `openssl pkcs12` (OpenSSL 3, default provider) giving
//! back exactly the certificate and key.

use cardhsmd::pki::{
    KeyKind, Pkcs11KeyParts, PkiError, PrivateKeyMaterial, build_pkcs12, parse_pkcs12, parse_private_key,
    pem_decode,
};
use std::path::Path;
use std::process::Command;

struct Out {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

fn openssl(args: &[&str], dir: &Path) -> Out {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    Out {
        ok: out.status.success(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn openssl_ok(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = openssl(args, dir);
    assert!(out.ok, "openssl {args:?} failed: {}", out.stderr);
    out.stdout
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("read")
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).expect("write");
}

const PASS: &str = "c0rrect horse ✓";

struct Case {
    name: &'static str,
    genpkey: &'static [&'static str],
    kind: KeyKind,
}

const CASES: &[Case] = &[
    Case {
        name: "p256",
        genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        kind: KeyKind::EcP256,
    },
    Case {
        name: "p384",
        genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        kind: KeyKind::EcP384,
    },
    Case {
        name: "rsa2048",
        genpkey: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        kind: KeyKind::Rsa { bits: 2048 },
    },
];

/// Generates the key `{name}.pem` (PKCS#8) and the openssl SPKI DER of it.
fn genkey(dir: &Path, case: &Case) -> Vec<u8> {
    let key = format!("{}.pem", case.name);
    let mut args = vec!["genpkey"];
    args.extend_from_slice(case.genpkey);
    args.extend_from_slice(&["-out", &key]);
    openssl_ok(&args, dir);
    openssl_ok(&["pkey", "-in", &key, "-pubout", "-outform", "DER"], dir)
}

fn check(key: &PrivateKeyMaterial, case: &Case, spki: &[u8], what: &str) {
    assert_eq!(key.kind(), case.kind, "{} {what}", case.name);
    assert_eq!(key.public_key_spki_der(), spki, "{} {what}: public key differs from openssl's", case.name);
}

#[test]
fn openssl_keys_in_every_format_parse_to_openssls_public_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let pass_arg = format!("pass:{PASS}");
    for case in CASES {
        let spki = genkey(dir, case);
        let n = case.name;
        let pem = format!("{n}.pem");
        let mut forms: Vec<(String, Vec<u8>, bool)> = Vec::new();
        // PKCS#8 PEM and DER.
        forms.push(("pkcs8 pem".into(), read(dir, &pem), false));
        // (`pkey -outform DER` writes the traditional form for EC keys; pkcs8 -topk8 is PKCS#8.)
        let pkcs8_der = openssl_ok(&["pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER"], dir);
        assert_eq!(pkcs8_der, pem_decode(&read(dir, &pem)).expect("pem").1);
        forms.push(("pkcs8 der".into(), pkcs8_der.clone(), false));
        // Encrypted PKCS#8, the way genpkey/pkey write it, and the way pkcs8 -topk8 does.
        forms.push((
            "encrypted pkcs8 (pkey -aes-256-cbc)".into(),
            openssl_ok(&["pkey", "-in", &pem, "-aes-256-cbc", "-passout", &pass_arg], dir),
            true,
        ));
        forms.push((
            "encrypted pkcs8 (pkcs8 -topk8 -v2 aes-128-cbc, DER)".into(),
            openssl_ok(
                &[
                    "pkcs8",
                    "-topk8",
                    "-in",
                    &pem,
                    "-v2",
                    "aes-128-cbc",
                    "-outform",
                    "DER",
                    "-passout",
                    &pass_arg,
                ],
                dir,
            ),
            true,
        ));
        forms.push((
            "encrypted pkcs8 (scrypt)".into(),
            openssl_ok(&["pkcs8", "-topk8", "-in", &pem, "-scrypt", "-passout", &pass_arg], dir),
            true,
        ));
        // Traditional formats.
        if matches!(case.kind, KeyKind::Rsa { .. }) {
            let p1 = openssl_ok(&["rsa", "-in", &pem, "-traditional"], dir);
            assert!(String::from_utf8_lossy(&p1).contains("BEGIN RSA PRIVATE KEY"));
            forms.push(("pkcs1 pem".into(), p1, false));
            forms.push((
                "pkcs1 der".into(),
                openssl_ok(&["rsa", "-in", &pem, "-traditional", "-outform", "DER"], dir),
                false,
            ));
        } else {
            let s = openssl_ok(&["ec", "-in", &pem], dir);
            assert!(String::from_utf8_lossy(&s).contains("BEGIN EC PRIVATE KEY"));
            forms.push(("sec1 pem".into(), s, false));
            forms.push(("sec1 der".into(), openssl_ok(&["ec", "-in", &pem, "-outform", "DER"], dir), false));
            // With the EC PARAMETERS block ecparam -genkey writes first.
            let mut both = Vec::new();
            both.extend(openssl_ok(
                &["ecparam", "-name", if n == "p256" { "prime256v1" } else { "secp384r1" }],
                dir,
            ));
            both.extend(openssl_ok(&["ec", "-in", &pem], dir));
            forms.push(("sec1 after EC PARAMETERS".into(), both, false));
        }
        assert!(forms.len() >= 7, "{n}: {} forms", forms.len());
        for (what, data, encrypted) in &forms {
            let pw = encrypted.then_some(PASS);
            let key = parse_private_key(data, pw).unwrap_or_else(|e| panic!("{n} {what}: {e}"));
            check(&key, case, &spki, what);
            // Our PKCS#8 is what openssl itself writes for this key.
            let ours = key.to_pkcs8_der().expect("pkcs8");
            assert_eq!(ours.as_slice(), pkcs8_der.as_slice(), "{n} {what}: PKCS#8 differs from openssl's");
            if *encrypted {
                match parse_private_key(data, Some("wrong password")) {
                    Err(PkiError::WrongPassword { .. }) => {}
                    other => panic!("{n} {what} with a wrong password: {other:?}"),
                }
                match parse_private_key(data, None) {
                    Err(PkiError::InvalidField { field: "password", .. }) => {}
                    other => panic!("{n} {what} without a password: {other:?}"),
                }
            } else {
                // A password given for a plain key is not needed and does no harm.
                let again = parse_private_key(data, Some("unused")).expect("plain key with a password");
                check(&again, case, &spki, what);
            }
            // Truncations of every format are Malformed, never a panic.
            for cut in [1, data.len() / 3, data.len() / 2, data.len() - 20] {
                match parse_private_key(&data[..cut], pw) {
                    Err(PkiError::Malformed { what: "private_key", .. }) => {}
                    other => panic!("{n} {what} cut at {cut}: {other:?}"),
                }
            }
        }
        // The PKCS#11 parts are the numbers openssl prints.
        let key = parse_private_key(&read(dir, &pem), None).expect("key");
        let text =
            String::from_utf8_lossy(&openssl_ok(&["pkey", "-in", &pem, "-noout", "-text"], dir)).into_owned();
        let hex_of = |label: &str| -> Vec<u8> {
            let start = text.find(label).unwrap_or_else(|| panic!("{label} in {text}")) + label.len();
            let body: String = text[start..]
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with("    "))
                .flat_map(|l| l.trim().split(':').map(str::to_owned).collect::<Vec<_>>())
                .collect();
            let bytes: Vec<u8> = (0..body.len() / 2)
                .map(|i| u8::from_str_radix(&body[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            bytes[first..].to_vec()
        };
        match key.pkcs11_parts().expect("parts") {
            Pkcs11KeyParts::Ec { ec_params, value } => {
                let want_oid: &[u8] = if n == "p256" {
                    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
                } else {
                    &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]
                };
                assert_eq!(ec_params, want_oid);
                let priv_hex = hex_of("priv:");
                assert_eq!(value.len(), if n == "p256" { 32 } else { 48 });
                let first = value.iter().position(|b| *b != 0).unwrap_or(value.len());
                assert_eq!(&value[first..], priv_hex.as_slice());
            }
            Pkcs11KeyParts::Rsa {
                modulus,
                public_exponent,
                private_exponent,
                prime_1,
                prime_2,
                exponent_1,
                exponent_2,
                coefficient,
            } => {
                assert_eq!(modulus, hex_of("modulus:").as_slice());
                assert_eq!(public_exponent, &[1, 0, 1]);
                assert_eq!(private_exponent, hex_of("privateExponent:").as_slice());
                assert_eq!(prime_1, hex_of("prime1:").as_slice());
                assert_eq!(prime_2, hex_of("prime2:").as_slice());
                assert_eq!(exponent_1, hex_of("exponent1:").as_slice());
                assert_eq!(exponent_2, hex_of("exponent2:").as_slice());
                assert_eq!(coefficient, hex_of("coefficient:").as_slice());
            }
        }
        // Debug shows no secret.
        let dbg = format!("{key:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("modulus"), "{dbg}");
    }
}

#[test]
fn weak_foreign_and_garbage_keys_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    openssl_ok(
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "rsa1024.pem"],
        dir,
    );
    let pass_arg = format!("pass:{PASS}");
    let enc = openssl_ok(&["pkey", "-in", "rsa1024.pem", "-aes-256-cbc", "-passout", &pass_arg], dir);
    let p1 = openssl_ok(&["rsa", "-in", "rsa1024.pem", "-traditional"], dir);
    for (what, data, pw) in
        [("pkcs8", read(dir, "rsa1024.pem"), None), ("encrypted", enc, Some(PASS)), ("pkcs1", p1, None)]
    {
        match parse_private_key(&data, pw) {
            Err(PkiError::WeakKey { detail }) => assert!(detail.contains("1024"), "{detail}"),
            other => panic!("RSA-1024 {what}: {other:?}"),
        }
    }
    openssl_ok(
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521", "-out", "p521.pem"],
        dir,
    );
    let sec1 = openssl_ok(&["ec", "-in", "p521.pem"], dir);
    for data in [read(dir, "p521.pem"), sec1] {
        assert!(matches!(parse_private_key(&data, None), Err(PkiError::WeakKey { .. })), "P-521");
    }
    openssl_ok(&["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"], dir);
    assert!(matches!(
        parse_private_key(&read(dir, "ed.pem"), None),
        Err(PkiError::UnsupportedKeyAlgorithm { .. })
    ));
    // Legacy PEM encryption is refused with a clear message, not misread.
    openssl_ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"], dir);
    let legacy = openssl_ok(&["ec", "-in", "k.pem", "-aes256", "-passout", &pass_arg], dir);
    match parse_private_key(&legacy, Some(PASS)) {
        Err(PkiError::Malformed { what: "private_key", detail }) => {
            assert!(detail.contains("Proc-Type"), "{detail}")
        }
        other => panic!("legacy PEM: {other:?}"),
    }
    // An RSA key whose prime was damaged: n ≠ p·q is caught, not handed to a token.
    openssl_ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"], dir);
    let mut p1 = openssl_ok(&["rsa", "-in", "rsa.pem", "-traditional", "-outform", "DER"], dir);
    assert!(parse_private_key(&p1, None).is_ok());
    // RSAPrivateKey: version, n (~260 bytes), e, d (~260), then p: offset 600 is inside p.
    p1[600] ^= 0x10;
    match parse_private_key(&p1, None) {
        Err(PkiError::Malformed { what: "private_key", detail }) => {
            assert!(detail.contains("RSA"), "{detail}")
        }
        other => panic!("damaged RSA key: {other:?}"),
    }
    // Garbage.
    for garbage in [
        &b""[..],
        b"hello",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        match parse_private_key(garbage, None) {
            Err(PkiError::Malformed { what: "private_key", .. }) => {}
            other => panic!("{garbage:?}: {other:?}"),
        }
    }
    // A certificate where a key is expected.
    openssl_ok(&["req", "-x509", "-key", "k.pem", "-subj", "/CN=x", "-days", "1", "-out", "c.pem"], dir);
    assert!(matches!(parse_private_key(&read(dir, "c.pem"), None), Err(PkiError::PemLabel { .. })));
}

#[test]
fn pkcs12_opens_with_openssl_and_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let pass_arg = format!("pass:{PASS}");
    // A CA that signs the leaves, to have a chain.
    openssl_ok(
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "ca.key"],
        dir,
    );
    openssl_ok(
        &[
            "req",
            "-x509",
            "-key",
            "ca.key",
            "-subj",
            "/CN=Test CA/O=cardhsm",
            "-days",
            "30",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    let ca_der = openssl_ok(&["x509", "-in", "ca.pem", "-outform", "DER"], dir);
    for case in CASES {
        let n = case.name;
        let spki = genkey(dir, case);
        let key_pem = format!("{n}.pem");
        // Self-signed, and one signed by the CA.
        let self_pem = format!("{n}-self.pem");
        openssl_ok(
            &[
                "req",
                "-x509",
                "-key",
                &key_pem,
                "-subj",
                &format!("/CN={n} device"),
                "-days",
                "1",
                "-out",
                &self_pem,
            ],
            dir,
        );
        let csr = format!("{n}.csr");
        openssl_ok(&["req", "-new", "-key", &key_pem, "-subj", &format!("/CN={n} leaf"), "-out", &csr], dir);
        let leaf_pem = format!("{n}-leaf.pem");
        openssl_ok(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-days",
                "1",
                "-set_serial",
                "7",
                "-out",
                &leaf_pem,
            ],
            dir,
        );
        let key = parse_private_key(&read(dir, &key_pem), None).expect("key");
        check(&key, case, &spki, "p12 key");
        let openssl_key = openssl_ok(&["pkey", "-in", &key_pem], dir);

        for (cert_pem, chain) in [(&self_pem, vec![]), (&leaf_pem, vec![ca_der.clone()])] {
            let cert_der = openssl_ok(&["x509", "-in", cert_pem, "-outform", "DER"], dir);
            assert!(key.matches_certificate(&cert_der), "{n}: key matches its certificate");
            assert!(key.matches_certificate(&read(dir, cert_pem)), "{n}: PEM too");
            assert!(!key.matches_certificate(&ca_der), "{n}: key does not match the CA");
            let name = format!("{n} device key");
            let pfx = build_pkcs12(&cert_der, &chain, &key, &name, PASS).expect("pfx");
            let p12 = format!("{n}.p12");
            write(dir, &p12, &pfx);

            // openssl recovers exactly the certificate(s) and the key.
            let certs_out = openssl_ok(&["pkcs12", "-in", &p12, "-passin", &pass_arg, "-nokeys"], dir);
            let blocks: Vec<Vec<u8>> = split_pem(&certs_out, "CERTIFICATE");
            let mut want = vec![cert_der.clone()];
            want.extend(chain.iter().cloned());
            assert_eq!(blocks, want, "{n}: certificates from openssl pkcs12");
            let key_out =
                openssl_ok(&["pkcs12", "-in", &p12, "-passin", &pass_arg, "-nocerts", "-nodes"], dir);
            write(dir, "out.key", &key_out);
            let normalised = openssl_ok(&["pkey", "-in", "out.key"], dir);
            assert_eq!(normalised, openssl_key, "{n}: key from openssl pkcs12");
            // Our PKCS#8 inside is byte for byte what openssl writes.
            let (_, inner) = pem_decode(&key_out).expect("key pem");
            assert_eq!(inner.as_slice(), key.to_pkcs8_der().expect("pkcs8").as_slice());
            // All of it at once, with -nodes, as the brief's command.
            let all = openssl_ok(&["pkcs12", "-in", &p12, "-passin", &pass_arg, "-nodes"], dir);
            assert_eq!(split_pem(&all, "CERTIFICATE"), want);
            assert_eq!(split_pem(&all, "PRIVATE KEY"), vec![inner.clone()]);

            // -info: the algorithms and the friendly name.
            let info = openssl(&["pkcs12", "-in", &p12, "-passin", &pass_arg, "-info", "-nodes"], dir);
            assert!(info.ok, "{}", info.stderr);
            let text = format!("{}{}", String::from_utf8_lossy(&info.stdout), info.stderr);
            assert!(text.contains(&format!("friendlyName: {name}")), "{text}");
            assert!(text.contains("localKeyID:"), "{text}");
            assert!(text.contains("MAC: sha256"), "{text}");
            assert!(text.contains("PBES2, PBKDF2, AES-256-CBC"), "{text}");
            assert!(text.contains("Shrouded Keybag"), "{text}");
            assert!(text.contains("PKCS7 Encrypted data"), "{text}");

            // A wrong password: openssl refuses at the MAC, and so do we.
            let bad = openssl(&["pkcs12", "-in", &p12, "-passin", "pass:wrong", "-nodes"], dir);
            assert!(!bad.ok, "openssl accepted a wrong password");
            assert!(bad.stderr.contains("Mac verify error"), "{}", bad.stderr);
            assert!(matches!(parse_pkcs12(&pfx, "wrong"), Err(PkiError::WrongPassword { .. })));

            // Our own round trip.
            let back = parse_pkcs12(&pfx, PASS).expect("parse ours");
            assert_eq!(back.certificate, cert_der);
            assert_eq!(back.chain, chain);
            assert_eq!(back.friendly_name.as_deref(), Some(name.as_str()));
            assert_eq!(back.key.public_key_spki_der(), spki.as_slice());
            assert_eq!(back.key.to_pkcs8_der().expect("pkcs8").as_slice(), inner.as_slice());
            // Truncated files are malformed.
            for cut in [0, 10, pfx.len() / 2, pfx.len() - 1] {
                assert!(
                    matches!(parse_pkcs12(&pfx[..cut], PASS), Err(PkiError::Malformed { .. })),
                    "cut {cut}"
                );
            }
        }

        // A PFX openssl made (its defaults: PBES2/AES-256-CBC, SHA-256 MAC) parses too.
        let theirs = format!("{n}-openssl.p12");
        openssl_ok(
            &[
                "pkcs12",
                "-export",
                "-in",
                &leaf_pem,
                "-inkey",
                &key_pem,
                "-certfile",
                "ca.pem",
                "-name",
                "from openssl",
                "-passout",
                &pass_arg,
                "-out",
                &theirs,
            ],
            dir,
        );
        let back = parse_pkcs12(&read(dir, &theirs), PASS).expect("parse openssl's");
        assert_eq!(back.certificate, openssl_ok(&["x509", "-in", &leaf_pem, "-outform", "DER"], dir));
        assert_eq!(back.chain, vec![ca_der.clone()]);
        assert_eq!(back.friendly_name.as_deref(), Some("from openssl"));
        assert_eq!(back.key.public_key_spki_der(), spki.as_slice());
        assert!(matches!(parse_pkcs12(&read(dir, &theirs), "wrong"), Err(PkiError::WrongPassword { .. })));

        // The key must match the certificate; the password must not be empty.
        let ca_cert_der = ca_der.clone();
        match build_pkcs12(&ca_cert_der, &[], &key, "x", PASS) {
            Err(PkiError::InvalidField { field: "private_key", .. }) => {}
            other => panic!("{n}: mismatched key: {other:?}"),
        }
        let self_der = openssl_ok(&["x509", "-in", &self_pem, "-outform", "DER"], dir);
        assert!(matches!(
            build_pkcs12(&self_der, &[], &key, "x", ""),
            Err(PkiError::InvalidField { field: "password", .. })
        ));
        assert!(matches!(build_pkcs12(b"garbage", &[], &key, "x", PASS), Err(PkiError::Malformed { .. })));
    }
}

fn split_pem(text: &[u8], label: &str) -> Vec<Vec<u8>> {
    cardhsmd::pki::pem_decode_all(text)
        .expect("pem")
        .into_iter()
        .filter(|(l, _)| l == label)
        .map(|(_, d)| d)
        .collect()
}
