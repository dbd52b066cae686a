//! The issuance benchmark: IssueCertificate from a CSR over gRPC at concurrency 32 against the
//! real cardhsmd (a P-256 root CA whose key is on the daemon's SoftHSM token), next to raw
//! ECDSA P-256 signatures/s with cryptoki on the same token, measured in the same run in
//! interleaved slices (raw, issue, raw, issue, …) and reported as medians.
//!
//! Run: `cargo bench -p cardhsm-tests --bench issuance` (BENCH_SECONDS sets the total length of
//! each side, default 6).

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;

const ROUNDS: u32 = 3;
const CONCURRENCY: usize = 32;

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let slice = Duration::from_secs_f64((secs as f64 / ROUNDS as f64).max(1.0));
    // Child mode: raw signing on the daemon token (SOFTHSM2_CONF must be set before the
    // module initialises, and the workspace forbids the unsafe needed to set it in-process).
    if let Ok(label) = std::env::var("CARDHSM_BENCH_RAW_TOKEN") {
        let pin = std::env::var("CARDHSM_BENCH_RAW_PIN")?;
        println!("{:.0}", raw_rate(&label, &pin, slice)?);
        return Ok(());
    }
    let env = TestEnv::new(0)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("cardhsm issuance benchmark ({ROUNDS} interleaved slices of {} ms per side)", slice.as_millis());
    let (issue, raw, p50, p99) = rt.block_on(run(&env, slice))?;
    println!("    raw ECDSA P-256 on the daemon token, 2 threads (cryptoki): {raw:>8.0} signatures/s");
    println!(
        "    IssueCertificate from a CSR over gRPC, concurrency {CONCURRENCY}:  {issue:>8.0} certificates/s (p50 {p50:.2} ms, p99 {p99:.2} ms)"
    );
    println!("    certificates / raw signatures: {:.1}%", 100.0 * issue / raw);
    Ok(())
}

async fn run(env: &TestEnv, slice: Duration) -> anyhow::Result<(f64, f64, f64, f64)> {
    let daemon = Daemon::start_with(env, "[logging]\nlevel = \"warn\"\n").await?;
    let channel = tonic::transport::Channel::from_shared(daemon.endpoint.clone())?.connect().await?;
    let token = pb::auth_service_client::AuthServiceClient::new(channel.clone())
        .login(pb::LoginRequest { username: "admin".into(), password: ADMIN_PASSWORD.into() })
        .await?
        .into_inner()
        .access_token;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let with_token = |msg| {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert("authorization", bearer.clone());
        r
    };
    let mut issuance = pb::issuance_service_client::IssuanceServiceClient::new(channel);
    let ca = issuance
        .create_authority(with_token(pb::CreateAuthorityRequest {
            name: "Bench Root".into(),
            key_algorithm: "EC:P-256".into(),
            subject_dn: "CN=Bench Root CA,O=cardhsm".into(),
            validity_years: 5,
            kind: pb::AuthorityKind::Root as i32,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let csr = openssl_csr(env)?;

    let (mut issued, mut raw, mut latencies) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw.push(raw_in_child(env)?);
        let (rate, lat) = issue_load(&daemon.endpoint, &bearer, &ca.id, &csr, slice).await?;
        issued.push(rate);
        latencies.extend(lat);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok((median(issued), median(raw), pct(0.50), pct(0.99)))
}

fn openssl_csr(env: &TestEnv) -> anyhow::Result<String> {
    let dir = env.path();
    let status = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .arg("-keyout")
        .arg(dir.join("bench.key"))
        .args(["-subj", "/CN=bench-device/O=cardhsm", "-out"])
        .arg(dir.join("bench.csr"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl req failed");
    Ok(std::fs::read_to_string(dir.join("bench.csr"))?)
}

/// IssueCertificate at concurrency 32 for `dur`: certificates/s and per-call latencies (µs).
async fn issue_load(
    endpoint: &str,
    bearer: &MetadataValue<tonic::metadata::Ascii>,
    authority: &str,
    csr: &str,
    dur: Duration,
) -> anyhow::Result<(f64, Vec<u32>)> {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(tonic::transport::Channel::from_shared(endpoint.to_owned())?.connect().await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONCURRENCY {
        let mut client =
            pb::issuance_service_client::IssuanceServiceClient::new(channels[i % channels.len()].clone());
        let (bearer, authority, csr, stop) =
            (bearer.clone(), authority.to_owned(), csr.to_owned(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut req = tonic::Request::new(pb::IssueCertificateRequest {
                    authority_id: authority.clone(),
                    profile_id: "ecc-device".into(),
                    params: [("commonName".to_owned(), format!("dev-{i}-{n}"))].into_iter().collect(),
                    csr_pem: csr.clone(),
                    ..Default::default()
                });
                req.metadata_mut().insert("authorization", bearer.clone());
                let t = Instant::now();
                client.issue_certificate(req).await.map_err(|s| anyhow::anyhow!("IssueCertificate: {s}"))?;
                lat.push(t.elapsed().as_micros() as u32);
                n += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    Ok((all.len() as f64 / elapsed.as_secs_f64(), all))
}

fn raw_in_child(env: &TestEnv) -> anyhow::Result<f64> {
    let out = Command::new(std::env::current_exe()?)
        .env("SOFTHSM2_CONF", &env.softhsm_conf)
        .env("CARDHSM_BENCH_RAW_TOKEN", &env.daemon_token_label)
        .env("CARDHSM_BENCH_RAW_PIN", &env.daemon_pin)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "raw signing child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Raw cryptoki: a session P-256 key on the token, two threads signing SHA-256 digests.
fn raw_rate(label: &str, pin: &str, dur: Duration) -> anyhow::Result<f64> {
    let pkcs11 = Pkcs11::new("/usr/lib/softhsm/libsofthsm2.so")?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).map(|i| i.label().trim() == label).unwrap_or(false))
        .ok_or_else(|| anyhow::anyhow!("token {label} not found"))?;
    let setup = pkcs11.open_rw_session(slot)?;
    setup.login(UserType::User, Some(&AuthPin::new(pin.to_owned().into())))?;
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (_public, private) = setup.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[Attribute::Token(false), Attribute::EcParams(p256), Attribute::Verify(true)],
        &[
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ],
    )?;
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let data = vec![0x5a_u8; 256];
    std::thread::scope(|s| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    let session = pkcs11.open_rw_session(slot)?;
                    while !stop.load(Ordering::Relaxed) {
                        let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
                        session.sign(&Mechanism::Ecdsa, private, &digest)?;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let start = (count.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(dur);
        let n = count.load(Ordering::Relaxed) - start.0;
        let elapsed = start.1.elapsed();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("raw signing thread panicked"))??;
        }
        Ok(n as f64 / elapsed.as_secs_f64())
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
