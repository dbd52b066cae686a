//! The virtual card through the real stack: a private pcscd (its own mount namespace, reader
//! config and socket) with the vpcd driver, the `cardhsm-vcard` binary inserted into it, and
//! OpenSC's PIV driver and PKCS#11 module reading it — the token serial from the CHUID GUID, a
//! key generated on the card and a certificate written to it (by APDUs, as a card management
//! system does) listed by `pkcs11-tool`, a PKCS#11 signature that openssl verifies with the
//! certificate's key, the PIN retry counter blocking at zero and the PUK unblocking it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPENSC_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
const GUID: &str = "00112233445566778899aabbccddeeff";

/// A pcscd of our own: killed (with its namespace) when dropped.
struct Pcscd {
    child: Child,
    socket: PathBuf,
    port: u16,
    opensc_conf: PathBuf,
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_pcscd(dir: &Path) -> Pcscd {
    let port = free_port();
    let (run, conf) = (dir.join("run"), dir.join("reader.conf.d"));
    std::fs::create_dir_all(&run).expect("run dir");
    std::fs::create_dir_all(&conf).expect("conf dir");
    std::fs::write(
        conf.join("vpcd"),
        format!(
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:X}\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x{port:X}\n"
        ),
    )
    .expect("reader config");
    // pcscd's socket path is fixed at /run/pcscd/pcscd.comm: a private mount namespace with our
    // directory bound there gives this instance its own; clients follow PCSCLITE_CSOCK_NAME.
    std::fs::create_dir_all("/run/pcscd").expect("/run/pcscd");
    let script = format!("mount --bind {} /run/pcscd && exec pcscd -f -c {}", run.display(), conf.display());
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare + pcscd (Debian packages util-linux, pcscd, vsmartcard-vpcd)");
    let socket = run.join("pcscd.comm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "pcscd did not create {}", socket.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the PIV driver: probing stays fast and nothing else claims the card.
    let opensc_conf = dir.join("opensc.conf");
    std::fs::write(&opensc_conf, "app default {\n  card_drivers = PIV-II;\n}\n").expect("opensc.conf");
    Pcscd { child, socket, port, opensc_conf }
}

/// The card, inserted while the process runs.
struct Card(Child);

impl Drop for Card {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn insert(pcscd: &Pcscd, state: &Path) -> Card {
    Card(
        Command::new(env!("CARGO_BIN_EXE_cardhsm-vcard"))
            .args(["--port", &pcscd.port.to_string(), "--state", &state.to_string_lossy(), "--guid", GUID])
            .spawn()
            .expect("cardhsm-vcard"),
    )
}

/// Runs an OpenSC tool against this pcscd; returns (success, stdout + stderr).
fn tool(pcscd: &Pcscd, program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env("PCSCLITE_CSOCK_NAME", &pcscd.socket)
        .env("OPENSC_CONF", &pcscd.opensc_conf)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program} (Debian package opensc): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[track_caller]
fn tool_ok(pcscd: &Pcscd, program: &str, args: &[&str]) -> String {
    let (ok, text) = tool(pcscd, program, args);
    assert!(ok, "{program} {} failed:\n{text}", args.join(" "));
    text
}

fn pkcs11(pcscd: &Pcscd, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--module", OPENSC_PKCS11];
    all.extend_from_slice(args);
    tool(pcscd, "pkcs11-tool", &all)
}

#[track_caller]
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "openssl {} failed:\n{text}", args.join(" "));
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
    let tmp = std::env::temp_dir().join(format!("cardhsm-vcard-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let dir = tmp.as_path();
    let pcscd = start_pcscd(dir);
    let state = dir.join("card.json");
    let _card = insert(&pcscd, &state);

    // The reader sees the card; OpenSC's PIV driver takes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = tool(&pcscd, "opensc-tool", &["-n"]);
        if text.contains("Personal Identity Verification Card") {
            break;
        }
        assert!(Instant::now() < deadline, "OpenSC never recognised the card: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The token serial comes from the CHUID GUID (OpenSC shows its last 8 bytes).
    let slots = pkcs11(&pcscd, &["-L"]).1;
    assert!(slots.contains("serial num         : 8899aabbccddeeff"), "{slots}");

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
    tool(&pcscd, "piv-tool", &["-C", "9A", "-i", &dir.join("user.pem").to_string_lossy()]);

    // PKCS#11 lists the certificate and its key (ID 01 is slot 9A); the certificate is ours.
    let objects = pkcs11(&pcscd, &["-O"]).1;
    assert!(
        objects.contains("Certificate Object") && objects.contains("subject:    DN: CN=vcard user"),
        "{objects}"
    );
    let read = pkcs11(
        &pcscd,
        &["--read-object", "--type", "cert", "--id", "01", "-o", &dir.join("read.der").to_string_lossy()],
    );
    assert!(read.0, "{}", read.1);
    assert_eq!(std::fs::read(dir.join("read.der")).expect("read.der"), cert);

    // A PKCS#11 signature by the card key, verified by openssl with the certificate's key.
    std::fs::write(dir.join("digest.bin"), [0x42u8; 32]).expect("digest");
    let (ok, text) = pkcs11(
        &pcscd,
        &[
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
        ],
    );
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
        let (ok, text) = pkcs11(&pcscd, &["--login", "--pin", "000000", "-O"]);
        assert!(!ok && text.contains(expected), "{text}");
    }
    let (ok, text) = pkcs11(&pcscd, &["--login", "--pin", "123456", "-O"]);
    assert!(!ok && text.contains("CKR_PIN_LOCKED"), "the right PIN does not open a blocked card: {text}");
    tool_ok(&pcscd, "pkcs15-tool", &["--unblock-pin", "--puk", "12345678", "--new-pin", "654321"]);
    let (ok, text) = pkcs11(&pcscd, &["--login", "--pin", "654321", "-O"]);
    assert!(ok, "{text}");

    // Pulled out and put back: the card keeps its key and certificate (its state file).
    drop(_card);
    let _card = insert(&pcscd, &state);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, text) = pkcs11(
            &pcscd,
            &[
                "--read-object",
                "--type",
                "cert",
                "--id",
                "01",
                "-o",
                &dir.join("again.der").to_string_lossy(),
            ],
        );
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the re-inserted card lost its certificate: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read(dir.join("again.der")).expect("again.der"), cert);
    let _ = std::fs::remove_dir_all(dir);
}
