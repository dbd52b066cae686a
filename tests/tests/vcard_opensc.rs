//! The virtual card through the real stack: a private pcscd with the vpcd driver, the
//! `cardhsm-vcard` card inserted into it, and OpenSC's PIV driver and PKCS#11 module reading it
//! — the token serial from the CHUID GUID, a key generated on the card and a certificate
//! written to it (by APDUs, as a card management system does) listed by `pkcs11-tool`, a
//! PKCS#11 signature that openssl verifies with the certificate's key, the PIN retry counter
//! blocking at zero and the PUK unblocking it, and the card keeping its state when pulled out
//! and put back. This is the fixture's own acceptance test; the daemon's reader tests use it.

mod support;

use cardhsm_tests::pcsc::{Pcscd, VirtualCard};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::openssl;

const GUID: &str = "00112233445566778899aabbccddeeff";

#[track_caller]
fn tool_ok(pcscd: &Pcscd, program: &str, args: &[&str]) -> String {
    let (ok, text) = pcscd.tool(program, args);
    assert!(ok, "{program} {} failed:\n{text}", args.join(" "));
    text
}

/// The data bytes of each `Received` block `opensc-tool -s` prints, in order.
fn received(text: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("Received") {
            out.push(Vec::new());
            inside = true;
        } else if line.starts_with("Sending") {
            inside = false;
        } else if inside && let Some(last) = out.last_mut() {
            for word in line.split_whitespace().take(16) {
                match u8::from_str_radix(word, 16) {
                    Ok(b) if word.len() == 2 => last.push(b),
                    _ => break,
                }
            }
        }
    }
    out
}

fn pem_public_key_from_point(dir: &Path, point: &[u8]) -> PathBuf {
    // SubjectPublicKeyInfo for P-256: the fixed prefix, then the 65-byte uncompressed point.
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86,
        0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(point);
    std::fs::write(dir.join("pub.der"), der).expect("pub.der");
    openssl(dir, &["pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem"]);
    dir.join("pub.pem")
}

#[test]
fn opensc_sees_a_piv_token_with_a_key_and_certificate_written_by_apdus() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let pcscd = Pcscd::start(dir).expect("pcscd");
    let mut card = VirtualCard::new(&pcscd, &dir.join("card.json"), GUID).expect("card");
    card.insert().expect("insert");

    // The reader sees the card; OpenSC's PIV driver takes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = pcscd.tool("opensc-tool", &["-n"]);
        if text.contains("Personal Identity Verification Card") {
            break;
        }
        assert!(Instant::now() < deadline, "OpenSC never recognised the card: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The token serial comes from the CHUID GUID (OpenSC shows its last 8 bytes).
    let slots = pcscd.pkcs11_tool(&["-L"]).1;
    assert!(slots.contains(&format!("serial num         : {}", card.token_serial())), "{slots}");

    // Provision slot 9A like a card management system: GENERATE, then PUT DATA of a
    // certificate for the returned key (signed here by an openssl CA).
    let out = tool_ok(&pcscd, "opensc-tool", &["-s", "00 47 00 9A 05 AC 03 80 01 11"]);
    let generated = received(&out).pop().expect("a response");
    assert_eq!(&generated[..5], &[0x7F, 0x49, 0x43, 0x86, 0x41], "{out}");
    let pub_pem = pem_public_key_from_point(dir, &generated[5..70]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Test CA",
            "-days",
            "30",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-new",
            "-force_pubkey",
            &pub_pem.to_string_lossy(),
            "-subj",
            "/CN=vcard user",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-days",
            "30",
            "-outform",
            "DER",
            "-out",
            "user.der",
        ],
    );
    let cert = std::fs::read(dir.join("user.der")).expect("user.der");
    // piv-tool writes it with PUT DATA, chained (the certificate is over 255 bytes).
    openssl(dir, &["x509", "-in", "user.der", "-inform", "DER", "-out", "user.pem"]);
    // Its exit status means nothing (OpenSC 0.23's piv-tool exits 35 after a successful load):
    // reading the certificate back below is the check.
    pcscd.tool("piv-tool", &["-C", "9A", "-i", &dir.join("user.pem").to_string_lossy()]);

    // PKCS#11 lists the certificate and its key (ID 01 is slot 9A); the certificate is ours.
    let objects = pcscd.pkcs11_tool(&["-O"]).1;
    assert!(
        objects.contains("Certificate Object") && objects.contains("subject:    DN: CN=vcard user"),
        "{objects}"
    );
    let read = pcscd.pkcs11_tool(&[
        "--read-object",
        "--type",
        "cert",
        "--id",
        "01",
        "-o",
        &dir.join("read.der").to_string_lossy(),
    ]);
    assert!(read.0, "{}", read.1);
    assert_eq!(std::fs::read(dir.join("read.der")).expect("read.der"), cert);

    // A PKCS#11 signature by the card key, verified by openssl with the certificate's key.
    std::fs::write(dir.join("digest.bin"), [0x42u8; 32]).expect("digest");
    let (ok, text) = pcscd.pkcs11_tool(&[
        "--login",
        "--pin",
        "123456",
        "--sign",
        "--id",
        "01",
        "-m",
        "ECDSA",
        "--signature-format",
        "openssl",
        "--input-file",
        &dir.join("digest.bin").to_string_lossy(),
        "--output-file",
        &dir.join("sig.der").to_string_lossy(),
    ]);
    assert!(ok, "{text}");
    openssl(dir, &["x509", "-in", "user.der", "-inform", "DER", "-pubkey", "-noout", "-out", "cert-pub.pem"]);
    let verified = openssl(
        dir,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "cert-pub.pem",
            "-in",
            "digest.bin",
            "-sigfile",
            "sig.der",
        ],
    );
    assert!(verified.contains("Signature Verified Successfully"), "{verified}");

    // Wrong PINs count down and block at zero; the PUK unblocks with a new PIN.
    for expected in ["CKR_PIN_INCORRECT", "CKR_PIN_INCORRECT", "CKR_PIN_LOCKED"] {
        let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "000000", "-O"]);
        assert!(!ok && text.contains(expected), "{text}");
    }
    let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "123456", "-O"]);
    assert!(!ok && text.contains("CKR_PIN_LOCKED"), "the right PIN does not open a blocked card: {text}");
    tool_ok(&pcscd, "pkcs15-tool", &["--unblock-pin", "--puk", "12345678", "--new-pin", "654321"]);
    let (ok, text) = pcscd.pkcs11_tool(&["--login", "--pin", "654321", "-O"]);
    assert!(ok, "{text}");

    // Pulled out and put back: the card keeps its key and certificate (its state file).
    card.pull_out();
    card.insert().expect("put back");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, text) = pcscd.pkcs11_tool(&[
            "--read-object",
            "--type",
            "cert",
            "--id",
            "01",
            "-o",
            &dir.join("again.der").to_string_lossy(),
        ]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the re-inserted card lost its certificate: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read(dir.join("again.der")).expect("again.der"), cert);
}
