//! The batch benchmark: BatchService against the real cardhsmd (a P-256 root CA whose key is on
//! the daemon's SoftHSM token), next to baselines measured in the same run that do the same
//! cryptographic work with no service around it:
//!
//! - (a) an EC P-256 batch with PKCS#12 (PBES2/AES-256-CBC, 2048 iterations): certificates/s
//!   from CreateBatch to the WatchBatch event that says done, and its ratio to a baseline loop
//!   on two threads (software P-256 keygen, certificate signed by a CA key on the token through
//!   PKCS#11, PKCS#12 built) — the daemon's own `pki` functions, without store or engine;
//! - (b) a CSR batch (one PEM of distinct software-signed CSRs): certificates/s;
//! - (c) an RSA-2048 batch with server-generated keys, and its ratio to an RSA-2048 keygen
//!   loop on two threads (key generation dominates);
//! - (d) the daemon's peak RSS growth during (a): VmHWM at the end minus VmRSS before;
//! - (e) ListCards latency p50/p99 from one client calling it back to back while (a) runs.
//!
//! Each baseline runs before and after its batch and the faster of the two is the one the ratio
//! uses (the machine is shared: a baseline slowed by other load would flatter the batch).
//!
//! Run: `cargo bench -p cardhsm-tests --bench batches` (a release `cardhsmd` through
//! `CARDHSMD_BIN=target/release/cardhsmd` gives the figures that count). `BATCH_BENCH_DEVICES`
//! sets the size of (a) and (b) (default 10000), `BATCH_BENCH_RSA_DEVICES` the size of (c)
//! (default 200: RSA keygen takes ~0.1 s a key), `BENCH_SECONDS` the length of each baseline
//! (default 6). Figures are printed; nothing asserts on time.

use cardhsm_client::CardhsmClient;
use cardhsm_proto::v1 as pb;
use cardhsm_tests::{Daemon, TestEnv};
use cardhsmd::pki::{
    self, CaSigner, CertSerial, CertificateTemplate, ExtendedKeyUsage, KeyKind, KeyUsage, PrivateKeyMaterial,
    PublicKey, SignFuture,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

const PKCS12_PASSWORD: &str = "bench-pkcs12-password";
/// SubjectPublicKeyInfo DER of a P-256 key, before its 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let secs = env_number("BENCH_SECONDS", 6).max(1);
    // Child mode: a baseline on the daemon token (SOFTHSM2_CONF must be set before the module
    // initialises, and the workspace forbids the unsafe needed to set it in-process).
    if let Ok(which) = std::env::var("CARDHSM_BENCH_BASELINE") {
        let rate = match which.as_str() {
            "ec-pkcs12" => {
                let label = std::env::var("CARDHSM_BENCH_TOKEN")?;
                let pin = std::env::var("CARDHSM_BENCH_PIN")?;
                // Prints its rate and a breakdown itself.
                ec_pkcs12_baseline(&label, &pin, Duration::from_secs(secs))?;
                return Ok(());
            }
            "rsa-keygen" => rsa_keygen_baseline(Duration::from_secs(secs))?,
            other => anyhow::bail!("unknown baseline {other}"),
        };
        println!("{rate:.1}");
        return Ok(());
    }
    let devices = env_number("BATCH_BENCH_DEVICES", 10_000).clamp(1, 1_000_000) as u32;
    let rsa_devices = env_number("BATCH_BENCH_RSA_DEVICES", 200).clamp(1, 1_000_000) as u32;
    let env = TestEnv::new(0)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "cardhsm batch benchmark: {devices} devices for (a) and (b), {rsa_devices} for (c), baselines {secs} s each"
    );
    rt.block_on(run(&env, devices, rsa_devices))
}

async fn run(env: &TestEnv, devices: u32, rsa_devices: u32) -> anyhow::Result<()> {
    let extra = format!(
        "[logging]\nlevel = \"warn\"\n[server]\nmax_upload_bytes = {}\n[batches]\nmax_batch_size = {}\n",
        256 * 1024 * 1024,
        devices.max(rsa_devices)
    );
    let daemon = Daemon::start_with(env, &extra).await?;
    let pid = daemon.pid().ok_or_else(|| anyhow::anyhow!("the daemon has no pid"))?;
    let client = daemon.try_admin_client().await?;
    let (authority, org) =
        authority_and_org(&client, 2 * i64::from(devices) + i64::from(rsa_devices)).await?;

    // (a) EC P-256 + PKCS#12, with (d) memory and (e) ListCards latency alongside.
    // Baselines run before and after their batch, and the faster counts: the machine is shared,
    // and a ratio against a baseline slowed by someone else's load would flatter the batch.
    let (before_ec, breakdown) = baseline_in_child(env, "ec-pkcs12")?;
    let rss_before = proc_status_kb(pid, "VmRSS:")?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let prober = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                client.list_cards("user1@corp.example", None, 20, "").await?;
                lat.push(t.elapsed());
            }
            Ok::<_, cardhsm_client::ClientError>(lat)
        })
    };
    let request = generator_request(&authority, &org, "ecc-device", "EC:P-256", devices);
    let (ec_rate, ec_done) = timed_batch(&client, Created::Generator(request)).await?;
    stop.store(true, Ordering::Relaxed);
    let mut lat = prober.await??;
    let hwm = proc_status_kb(pid, "VmHWM:")?;
    let (after_ec, _) = baseline_in_child(env, "ec-pkcs12")?;
    let baseline_ec = before_ec.max(after_ec);
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied();
    println!("(a) EC P-256 batch with PKCS#12 (2048 iterations), {devices} devices");
    println!(
        "    baseline (keygen, sign on the token, PKCS#12; 2 threads): {baseline_ec:>9.1} devices/s (before {before_ec:.1}, after {after_ec:.1})"
    );
    for line in breakdown {
        println!("{line}");
    }
    println!(
        "    batch, CreateBatch to done ({} issued, {} failed):      {ec_rate:>9.1} certificates/s  = {:.1}% of the baseline",
        ec_done.issued,
        ec_done.failed,
        100.0 * ec_rate / baseline_ec
    );
    println!(
        "(d) daemon peak RSS growth during (a): {:.1} MB (VmRSS before {:.1} MB, VmHWM after {:.1} MB)",
        (hwm.saturating_sub(rss_before)) as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "(e) ListCards while (a) ran: {} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(lat.last().copied())
    );

    // (b) CSRs.
    let pem = csr_bundle(devices).await?;
    let request = pb::UploadCsrBatchRequest {
        organization_id: org.clone(),
        authority_id: authority.clone(),
        profile_id: "ecc-device".into(),
        batch_name: "bench csr".into(),
        files: pem.into_bytes(),
        ..Default::default()
    };
    let (csr_rate, csr_done) = timed_batch(&client, Created::Csr(request)).await?;
    println!(
        "(b) CSR batch, {devices} CSRs in one PEM, UploadCsrBatch to done ({} issued): {csr_rate:>9.1} certificates/s",
        csr_done.issued
    );

    // (c) RSA-2048 with server-generated keys.
    let (before_rsa, _) = baseline_in_child(env, "rsa-keygen")?;
    let request = generator_request(&authority, &org, "rsa-device", "RSA:2048", rsa_devices);
    let (rsa_rate, rsa_done) = timed_batch(&client, Created::Generator(request)).await?;
    let (after_rsa, _) = baseline_in_child(env, "rsa-keygen")?;
    let baseline_rsa = before_rsa.max(after_rsa);
    println!("(c) RSA-2048 batch with server-generated keys, {rsa_devices} devices");
    println!(
        "    baseline (RSA-2048 keygen only; 2 threads): {baseline_rsa:>9.2} keys/s (before {before_rsa:.2}, after {after_rsa:.2})"
    );
    println!(
        "    batch, CreateBatch to done ({} issued):      {rsa_rate:>9.2} certificates/s  = {:.1}% of the baseline",
        rsa_done.issued,
        100.0 * rsa_rate / baseline_rsa
    );
    Ok(())
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A root authority on the daemon token and an organization it is assigned to with `balance`.
async fn authority_and_org(client: &CardhsmClient, balance: i64) -> anyhow::Result<(String, String)> {
    let ca = client
        .create_authority(pb::CreateAuthorityRequest {
            name: "Bench Root".into(),
            key_algorithm: "EC:P-256".into(),
            subject_dn: "CN=Bench Root CA,O=cardhsm".into(),
            validity_years: 5,
            kind: pb::AuthorityKind::Root as i32,
            ..Default::default()
        })
        .await?;
    let org = client
        .create_organization(pb::CreateOrganizationRequest { name: "Bench Org".into(), ..Default::default() })
        .await?;
    client
        .add_organization_authority(pb::AddOrganizationAuthorityRequest {
            organization_id: org.id.clone(),
            authority_id: ca.id.clone(),
            balance,
            enabled: true,
        })
        .await?;
    Ok((ca.id, org.id))
}

fn generator_request(
    authority: &str,
    org: &str,
    profile: &str,
    key_type: &str,
    size: u32,
) -> pb::CreateBatchRequest {
    pb::CreateBatchRequest {
        organization_id: org.to_owned(),
        authority_id: authority.to_owned(),
        profile_id: profile.to_owned(),
        batch_name: format!("bench {profile}"),
        generator_id: "serial".into(),
        generator_params: Some(pb::GeneratorParams { start_value: 1, increment: 1 }),
        batch_size: size,
        profile_params: [("commonName".to_owned(), "-dev".to_owned())].into_iter().collect(),
        key_type: key_type.to_owned(),
        pkcs12_password: PKCS12_PASSWORD.into(),
        validity_years: 0,
    }
}

enum Created {
    Generator(pb::CreateBatchRequest),
    Csr(pb::UploadCsrBatchRequest),
}

/// Creates the batch and follows WatchBatch to the done event: (certificates/s from the
/// create call to done, the last event). A batch that fails devices is reported, not hidden.
async fn timed_batch(client: &CardhsmClient, created: Created) -> anyhow::Result<(f64, pb::BatchProgress)> {
    let started = Instant::now();
    let response = match created {
        Created::Generator(r) => {
            client.batch_call(r, |mut c, r| async move { c.create_batch(r).await }).await?
        }
        Created::Csr(r) => {
            client.batch_call(r, |mut c, r| async move { c.upload_csr_batch(r).await }).await?
        }
    };
    let id = response.batch.ok_or_else(|| anyhow::anyhow!("no batch in the answer"))?.id;
    let request = pb::WatchBatchRequest { id };
    let mut events = client.batch_call(request, |mut c, r| async move { c.watch_batch(r).await }).await?;
    let mut last = None;
    while let Some(event) = events.message().await? {
        let done = event.done;
        last = Some(event);
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    let last = last.ok_or_else(|| anyhow::anyhow!("WatchBatch ended without an event"))?;
    anyhow::ensure!(last.done, "WatchBatch ended before the batch was done: {last:?}");
    Ok((f64::from(last.issued) / elapsed.as_secs_f64(), last))
}

/// `n` distinct P-256 CSRs (`CN=csr-<i>`) in one PEM, signed in software (ring) so that making
/// them takes a second, not the ten minutes of 10,000 openssl runs.
async fn csr_bundle(n: u32) -> anyhow::Result<String> {
    let mut pem = String::with_capacity(n as usize * 600);
    for i in 0..n {
        let signer = RingP256::generate()?;
        let subject = pki::parse_name(&format!("CN=csr-{i},O=cardhsm"))?;
        let der = pki::build_csr(&signer, &subject, &[]).await?;
        pem.push_str(&pki::pem_encode(pki::PEM_CERTIFICATE_REQUEST, &der));
    }
    Ok(pem)
}

/// A software P-256 key (ring) as a `CaSigner`, for CSRs.
struct RingP256 {
    key: ring::signature::EcdsaKeyPair,
    public: PublicKey,
    rng: ring::rand::SystemRandom,
}

impl RingP256 {
    fn generate() -> anyhow::Result<RingP256> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("P-256 keygen"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?;
        let public = PublicKey::from_spki_der(&[&P256_SPKI_PREFIX[..], key.public_key().as_ref()].concat())?;
        Ok(RingP256 { key, public, rng })
    }
}

impl CaSigner for RingP256 {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, tbs_der: Vec<u8>) -> SignFuture<'_> {
        let signed = self
            .key
            .sign(&self.rng, &tbs_der)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| pki::PkiError::Internal("ring signing failed".into()));
        Box::pin(async move { signed })
    }
}

/// A P-256 session key on the token, signing through PKCS#11 (CKM_ECDSA over a SHA-256 digest,
/// as the daemon's TokenSigner does), as a `CaSigner`.
/// The session sits behind a mutex only because `CaSigner` must be `Sync` and a cryptoki
/// `Session` is not; each thread has its own, so the lock is never contended.
struct TokenP256 {
    session: std::sync::Mutex<Session>,
    key: ObjectHandle,
    public: PublicKey,
}

impl CaSigner for TokenP256 {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, tbs_der: Vec<u8>) -> SignFuture<'_> {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&tbs_der);
        let signed = self
            .session
            .lock()
            .map_err(|_| pki::PkiError::Internal("session lock poisoned".into()))
            .and_then(|s| {
                s.sign(&Mechanism::Ecdsa, self.key, &digest)
                    .map_err(|e| pki::PkiError::Internal(format!("C_Sign: {e}")))
            })
            .map(|raw| ecdsa_raw_to_der(&raw));
        Box::pin(async move { signed })
    }
}

/// r‖s (32 bytes each) as a DER Ecdsa-Sig-Value.
fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8]) -> Vec<u8> {
        let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1)..];
        let mut out = vec![0x02];
        let pad = v[0] & 0x80 != 0;
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [integer(r), integer(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Runs a baseline in a child process: (its rate, the further lines it printed).
fn baseline_in_child(env: &TestEnv, which: &str) -> anyhow::Result<(f64, Vec<String>)> {
    let out = Command::new(std::env::current_exe()?)
        .env("SOFTHSM2_CONF", &env.softhsm_conf)
        .env("CARDHSM_BENCH_BASELINE", which)
        .env("CARDHSM_BENCH_TOKEN", &env.daemon_token_label)
        .env("CARDHSM_BENCH_PIN", &env.daemon_pin)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "baseline {which} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first line is the rate; further lines (a cost breakdown) are shown as they are.
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.lines();
    let rate = lines.next().unwrap_or_default().trim().parse()?;
    Ok((rate, lines.map(|l| format!("        {l}")).collect()))
}

fn open_token(label: &str, pin: &str) -> anyhow::Result<(Pkcs11, Slot)> {
    let pkcs11 = Pkcs11::new("/usr/lib/softhsm/libsofthsm2.so")?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).map(|i| i.label().trim() == label).unwrap_or(false))
        .ok_or_else(|| anyhow::anyhow!("token {label} not found"))?;
    let login = pkcs11.open_rw_session(slot)?;
    login.login(UserType::User, Some(&AuthPin::new(pin.to_owned().into())))?;
    // Logged in for the application: the session stays open (closing the last one logs out).
    std::mem::forget(login);
    Ok((pkcs11, slot))
}

/// The crypto of one EC batch device with no service around it, on two threads for `dur`:
/// keygen (software, as the engine does: the key leaves in the PKCS#12), a certificate signed
/// by a P-256 CA session key on the token, the PKCS#12 with the CA certificate.
fn ec_pkcs12_baseline(label: &str, pin: &str, dur: Duration) -> anyhow::Result<f64> {
    let (pkcs11, slot) = open_token(label, pin)?;
    let setup = pkcs11.open_rw_session(slot)?;
    let (public, private) = setup.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[Attribute::Token(false), Attribute::EcParams(P256_OID_DER.to_vec()), Attribute::Verify(true)],
        &[
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ],
    )?;
    let point = match setup.get_attributes(public, &[AttributeType::EcPoint])?.pop() {
        // DER OCTET STRING around the 65-byte point.
        Some(Attribute::EcPoint(p)) if p.len() == 67 => p[2..].to_vec(),
        other => anyhow::bail!("unexpected CKA_EC_POINT {other:?}"),
    };
    let ca_public = PublicKey::from_spki_der(&[&P256_SPKI_PREFIX[..], &point].concat())?;
    let ca_name = pki::parse_name("CN=Baseline CA,O=cardhsm")?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let ca_signer =
        TokenP256 { session: std::sync::Mutex::new(setup), key: private, public: ca_public.clone() };
    let now = SystemTime::now();
    let ca_template = CertificateTemplate {
        serial: CertSerial::random(),
        issuer: ca_name.clone(),
        subject: ca_name.clone(),
        subject_public_key_der: ca_public.spki_der().to_vec(),
        not_before: now,
        not_after: now + Duration::from_secs(86_400 * 365),
        is_ca: true,
        path_len: None,
        key_usage: vec![KeyUsage::KeyCertSign, KeyUsage::CrlSign],
        extended_key_usage: Vec::new(),
        subject_alt_names: Vec::new(),
        authority_key_id: None,
        crl_distribution_point: None,
    };
    let ca_cert = rt.block_on(pki::build_certificate(&ca_signer, &ca_template))?;

    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    // Nanoseconds spent in each step, over both threads: where a device's time goes.
    let steps = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let rate = std::thread::scope(|s| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (pkcs11, ca_public, ca_name, ca_cert, count, stop, steps) =
                    (&pkcs11, &ca_public, &ca_name, &ca_cert, &count, &stop, &steps);
                s.spawn(move || -> anyhow::Result<()> {
                    let session = std::sync::Mutex::new(pkcs11.open_rw_session(slot)?);
                    let signer = TokenP256 { session, key: private, public: ca_public.clone() };
                    let rt = tokio::runtime::Builder::new_current_thread().build()?;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let key = PrivateKeyMaterial::generate(KeyKind::EcP256)?;
                        let t1 = Instant::now();
                        let cn = format!("{t}-{i}-dev");
                        let now = SystemTime::now();
                        let template = CertificateTemplate {
                            serial: CertSerial::random(),
                            issuer: ca_name.clone(),
                            subject: pki::parse_name(&format!("CN={cn}"))?,
                            subject_public_key_der: key.public_key_spki_der().to_vec(),
                            not_before: now,
                            not_after: now + Duration::from_secs(86_400 * 365),
                            is_ca: false,
                            path_len: None,
                            key_usage: vec![KeyUsage::DigitalSignature],
                            extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
                            subject_alt_names: Vec::new(),
                            authority_key_id: None,
                            crl_distribution_point: None,
                        };
                        let cert = rt.block_on(pki::build_certificate(&signer, &template))?;
                        let t2 = Instant::now();
                        let pfx = pki::build_pkcs12(
                            &cert,
                            std::slice::from_ref(ca_cert),
                            &key,
                            &cn,
                            PKCS12_PASSWORD,
                        )?;
                        std::hint::black_box(pfx);
                        for (step, d) in steps.iter().zip([t1 - t0, t2 - t1, t2.elapsed()]) {
                            step.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        rate_over(&count, &stop, dur, handles)
    })?;
    let n = count.load(Ordering::Relaxed).max(1) as f64;
    let us = |i: usize| steps[i].load(Ordering::Relaxed) as f64 / n / 1000.0;
    println!("{rate:.1}");
    println!(
        "per device on one thread: keygen {:.0} µs, certificate (template, sign on the token, verify) {:.0} µs, PKCS#12 {:.0} µs",
        us(0),
        us(1),
        us(2)
    );
    Ok(rate)
}

/// RSA-2048 key generation (the daemon's `PrivateKeyMaterial::generate`) on two threads.
fn rsa_keygen_baseline(dur: Duration) -> anyhow::Result<f64> {
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (count, stop) = (&count, &stop);
                s.spawn(move || -> anyhow::Result<()> {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(PrivateKeyMaterial::generate(KeyKind::Rsa { bits: 2048 })?);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        rate_over(&count, &stop, dur, handles)
    })
}

/// Counts what the workers finish during `dur` after a short warm-up; stops and joins them.
fn rate_over(
    count: &AtomicU64,
    stop: &AtomicBool,
    dur: Duration,
    handles: Vec<std::thread::ScopedJoinHandle<'_, anyhow::Result<()>>>,
) -> anyhow::Result<f64> {
    std::thread::sleep(Duration::from_millis(200));
    let start = (count.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(dur);
    let n = count.load(Ordering::Relaxed) - start.0;
    let elapsed = start.1.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a baseline thread panicked"))??;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// A `kB` field of /proc/<pid>/status (VmRSS, VmHWM).
fn proc_status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(line[field.len()..].trim().trim_end_matches("kB").trim().parse()?)
}
