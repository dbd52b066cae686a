//! The foundation benchmark. Prints, in one run:
//!  (a) ListCards requests/s and p50/p99 latency at concurrency 1 and 32 over loopback against
//!      the real cardhsmd with 10,000 cards in its store, next to the gRPC health check (the
//!      same server stack with no auth and no store) as the same-run baseline;
//!  (a') the same reads through the REST shim (GET /icmapi/user/getcards, HTTP/1.1 keep-alive),
//!      with gRPC ListCards of the same run as the baseline: the shim's cost;
//!  (b) ECDSA P-256 signatures/s through the token layer's session pool with 1 and 2 threads,
//!      next to raw cryptoki calls on the same SoftHSM token in the same run, as a ratio.
//!
//! Run: `cargo bench -p cardhsm-tests --bench foundation` (BENCH_SECONDS sets each phase's
//! length, default 5).

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use cardhsmd::token::{KeyPairRequest, SignMechanism, TokenManager};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;

const CARDS: usize = 10_000;
const OWNERS: usize = 1_000;

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let phase = Duration::from_secs(secs);
    // Part (b) runs in a child process of this same binary: SOFTHSM2_CONF must be in the
    // environment before the module initialises, and the workspace forbids the `unsafe`
    // that setting it in-process would take.
    if let Ok(serial) = std::env::var("CARDHSM_BENCH_SIGN_SERIAL") {
        let pin_file = std::env::var("CARDHSM_BENCH_PIN_FILE")?;
        return sign_bench(&serial, std::path::Path::new(&pin_file), phase);
    }
    let env = TestEnv::new(1)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("cardhsm foundation benchmark ({} s per phase, {} cores)", secs, num_cpus());
    rt.block_on(list_cards_bench(&env, phase))?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .env("SOFTHSM2_CONF", &env.softhsm_conf)
        .env("CARDHSM_BENCH_SIGN_SERIAL", &env.card_serials[0])
        .env("CARDHSM_BENCH_PIN_FILE", env.dir.path().join("hsm/card.pin"))
        .status()?;
    anyhow::ensure!(status.success(), "signature benchmark failed");
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

// ---------------------------------------------------------------------------------------- (a)

async fn list_cards_bench(env: &TestEnv, phase: Duration) -> anyhow::Result<()> {
    let mut daemon = Daemon::start_with(env, "[logging]\nlevel = \"warn\"\n").await?;
    daemon.stop().await;
    seed_cards(&env.store_path())?;
    daemon.restart().await;
    let token = {
        let ch = tonic::transport::Channel::from_shared(daemon.endpoint.clone())?.connect().await?;
        let mut auth = pb::auth_service_client::AuthServiceClient::new(ch);
        auth.login(pb::LoginRequest { username: "admin".into(), password: ADMIN_PASSWORD.into() })
            .await?
            .into_inner()
            .access_token
    };
    println!(
        "\n(a) ListCards over loopback, {CARDS} cards in the store ({OWNERS} owners x {} cards)",
        CARDS / OWNERS
    );
    println!("    {:<28} {:>5} {:>12} {:>10} {:>10}", "call", "conc", "requests/s", "p50 ms", "p99 ms");
    for concurrency in [1usize, 32] {
        let base = load(&daemon.endpoint, &token, concurrency, phase, Call::Health).await?;
        let list = load(&daemon.endpoint, &token, concurrency, phase, Call::ListCards).await?;
        for (name, r) in [("health check (baseline)", &base), ("ListCards", &list)] {
            println!(
                "    {:<28} {:>5} {:>12.0} {:>10.3} {:>10.3}",
                name, concurrency, r.rps, r.p50_ms, r.p99_ms
            );
        }
        println!("    ListCards / baseline at concurrency {concurrency}: {:.2}", list.rps / base.rps);
    }
    println!("\n(a') the same reads through the REST shim, gRPC ListCards of this run as the baseline");
    println!("    {:<28} {:>5} {:>12} {:>10} {:>10}", "call", "conc", "requests/s", "p50 ms", "p99 ms");
    for concurrency in [1usize, 32] {
        let grpc = load(&daemon.endpoint, &token, concurrency, phase, Call::ListCards).await?;
        let rest = rest_load(&daemon.rest_url, &token, concurrency, phase).await?;
        for (name, r) in [("gRPC ListCards (baseline)", &grpc), ("REST getcards", &rest)] {
            println!(
                "    {:<28} {:>5} {:>12.0} {:>10.3} {:>10.3}",
                name, concurrency, r.rps, r.p50_ms, r.p99_ms
            );
        }
        println!("    REST / gRPC at concurrency {concurrency}: {:.2}", rest.rps / grpc.rps);
    }
    daemon.stop().await;
    Ok(())
}

/// 10,000 ASSIGNED cards for 1,000 owners, written straight into the stopped daemon's store.
fn seed_cards(db: &std::path::Path) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO cards (id, token_serial, owner, label, pac_number, state, policy, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'ASSIGNED', 'standard', ?6, ?6)",
        )?;
        for i in 0..CARDS {
            let id = format!("00000000-0000-4000-8000-{i:012}");
            stmt.execute(rusqlite::params![
                id,
                format!("bench{i:011}"),
                format!("user{}@corp.example", i % OWNERS),
                format!("Card {i}"),
                format!("{i:06}"),
                1_700_000_000 + i as i64
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Like [`load`], through the REST shim: GET /icmapi/user/getcards with the bearer token,
/// over one keep-alive HTTP/1.1 client pool.
async fn rest_load(
    base: &str,
    token: &str,
    concurrency: usize,
    phase: Duration,
) -> anyhow::Result<LoadResult> {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_millis(500);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (http, stop) = (http.clone(), stop.clone());
        let (base, bearer) = (base.to_owned(), format!("Bearer {token}"));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let started = Instant::now();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let owner = format!("user{}@corp.example", (i * 7919 + n) % OWNERS);
                let reply = http
                    .get(format!("{base}/icmapi/user/getcards"))
                    .query(&[("name", owner)])
                    .header("authorization", &bearer)
                    .send()
                    .await?;
                anyhow::ensure!(reply.status().is_success(), "a benchmark call failed: {}", reply.status());
                let cards: Vec<serde_json::Value> = reply.json().await?;
                anyhow::ensure!(cards.len() == CARDS / OWNERS, "a page of {} cards", cards.len());
                n += 1;
                if started.elapsed() > warmup {
                    lat.push(t.elapsed().as_micros() as u32);
                }
            }
            Ok(lat)
        }));
    }
    tokio::time::sleep(warmup + phase).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summarise(all, phase))
}

fn summarise(mut all: Vec<u32>, phase: Duration) -> LoadResult {
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    LoadResult {
        rps: all.len() as f64 / phase.as_secs_f64(),
        p50_ms: pct(0.50) as f64 / 1000.0,
        p99_ms: pct(0.99) as f64 / 1000.0,
    }
}

#[derive(Clone, Copy)]
enum Call {
    Health,
    ListCards,
}

struct LoadResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    endpoint: &str,
    token: &str,
    concurrency: usize,
    phase: Duration,
    call: Call,
) -> anyhow::Result<LoadResult> {
    // A few HTTP/2 connections, as a real client pool would hold.
    let mut channels = Vec::new();
    for _ in 0..concurrency.min(4) {
        channels.push(tonic::transport::Channel::from_shared(endpoint.to_owned())?.connect().await?);
    }
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_millis(500);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let ch = channels[i % channels.len()].clone();
        let bearer = bearer.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut cards = pb::card_service_client::CardServiceClient::new(ch.clone());
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
            let mut lat = Vec::with_capacity(100_000);
            let started = Instant::now();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = match call {
                    Call::Health => health
                        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                        .await
                        .is_ok(),
                    Call::ListCards => {
                        let mut req = tonic::Request::new(pb::ListCardsRequest {
                            owner: format!("user{}@corp.example", (i * 7919 + n) % OWNERS),
                            state: 0,
                            page: None,
                        });
                        req.metadata_mut().insert("authorization", bearer.clone());
                        cards
                            .list_cards(req)
                            .await
                            .map(|r| r.into_inner().cards.len() == CARDS / OWNERS)
                            .unwrap_or(false)
                    }
                };
                if !ok {
                    return Err(anyhow::anyhow!("a benchmark call failed"));
                }
                n += 1;
                if started.elapsed() > warmup {
                    lat.push(t.elapsed().as_micros() as u32);
                }
            }
            Ok(lat)
        }));
    }
    tokio::time::sleep(warmup + phase).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summarise(all, phase))
}

// ---------------------------------------------------------------------------------------- (b)

fn sign_bench(serial: &str, pin_file: &std::path::Path, phase: Duration) -> anyhow::Result<()> {
    let module = "/usr/lib/softhsm/libsofthsm2.so";
    let key_id = b"bench-p256".to_vec();
    let data = vec![0x5a_u8; 256];
    // The machine is shared and noisy: raw, pool-from-blocking-threads and pool-from-async-tasks
    // are measured in interleaved slices (raw, blocking, async, raw, …) and each figure is the
    // median of its slices, so load drift hits all three alike.
    const ROUNDS: u32 = 5;
    let slice = (phase / ROUNDS).max(Duration::from_millis(500));
    println!(
        "\n(b) ECDSA P-256 signatures/s on SoftHSM token card-01 (SHA-256 by us, then CKM_ECDSA); \
         median of {ROUNDS} interleaved slices of {} ms",
        slice.as_millis()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cfg = hsm_config::Pkcs11Config {
        card_pin: hsm_config::SecretSource::file(pin_file),
        sessions_per_token: 2,
        ..Default::default()
    };
    let serial = serial.to_owned();
    let tokens = TokenManager::open(&cfg)?;
    rt.block_on(tokens.generate_key_pair(
        &serial,
        KeyPairRequest {
            label: "bench".into(),
            id: key_id.clone(),
            algorithm: hsm_config::KeyAlgorithm::EcP256,
            persistent: true,
        },
    ))?;

    // Raw cryptoki on the same module (the token layer initialised it; a second C_Initialize
    // answers CRYPTOKI_ALREADY_INITIALIZED and both share it).
    let pkcs11 = Pkcs11::new(module)?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e.into()),
    }
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).map(|i| i.serial_number().trim() == serial).unwrap_or(false))
        .ok_or_else(|| anyhow::anyhow!("card token not found"))?;
    let pin = std::fs::read_to_string(pin_file)?.trim().to_owned();

    println!(
        "    {:<8} {:>15} {:>24} {:>7} {:>22} {:>7}",
        "threads", "raw cryptoki/s", "pool, blocking callers/s", "ratio", "pool, async callers/s", "ratio"
    );
    for threads in [1usize, 2] {
        let (mut raw, mut blocking, mut asynchronous) = (Vec::new(), Vec::new(), Vec::new());
        let mut many = Vec::new();
        for _ in 0..ROUNDS {
            // Raw: one session per thread, the key found once, sign in a loop.
            raw.push(threaded_rate(threads, slice, || {
                let session = pkcs11.open_rw_session(slot)?;
                match session.login(UserType::User, Some(&AuthPin::new(pin.clone().into()))) {
                    Ok(())
                    | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) =>
                        {}
                    Err(e) => return Err(e.into()),
                }
                let key = session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Id(key_id.clone()),
                    ])?
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("bench key not found"))?;
                let data = &data;
                Ok(Box::new(move || {
                    let digest = <sha2::Sha256 as sha2::Digest>::digest(data);
                    session.sign(&Mechanism::Ecdsa, key, &digest)?;
                    Ok(())
                }) as Box<dyn FnMut() -> anyhow::Result<()>>)
            })?);
            // The token layer from OS threads: sign_blocking (how batch workers sign).
            blocking.push(threaded_rate(threads, slice, || {
                Ok(Box::new(|| {
                    tokens.sign_blocking(&serial, &key_id, SignMechanism::EcdsaSha256, &data)?;
                    Ok(())
                }) as Box<dyn FnMut() -> anyhow::Result<()>>)
            })?);
            // The token layer from async tasks: sign (one hop to the blocking pool per call).
            asynchronous.push(rt.block_on(async_rate(&tokens, &serial, &key_id, &data, threads, slice))?);
            // Many concurrent async callers (as gRPC handlers are): the pool's sessions stay
            // busy and the hop's wake-ups overlap with signing. `threads` sessions serve them.
            if threads == 2 {
                many.push(rt.block_on(async_rate(&tokens, &serial, &key_id, &data, 16, slice))?);
            }
        }
        let (r, b, a) = (median(raw), median(blocking), median(asynchronous));
        let many = (!many.is_empty()).then(|| median(many));
        println!(
            "    {:<8} {:>15.0} {:>24.0} {:>6.1}% {:>22.0} {:>6.1}%",
            threads,
            r,
            b,
            100.0 * b / r,
            a,
            100.0 * a / r
        );
        if let Some(m) = many {
            println!(
                "    {:<8} {:>15} {:>24} {:>7} {:>22.0} {:>6.1}%",
                "16 tasks",
                "",
                "",
                "",
                m,
                100.0 * m / r
            );
        }
    }
    Ok(())
}

type Work<'a> = Box<dyn FnMut() -> anyhow::Result<()> + 'a>;

/// Operations per second over `dur` from `threads` OS threads, each running the loop body that
/// `setup` makes on that thread.
fn threaded_rate<'a, S>(threads: usize, dur: Duration, setup: S) -> anyhow::Result<f64>
where
    S: Fn() -> anyhow::Result<Work<'a>> + Sync,
{
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    let mut work = setup()?;
                    while !stop.load(Ordering::Relaxed) {
                        work()?;
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
            h.join().map_err(|_| anyhow::anyhow!("benchmark thread panicked"))??;
        }
        Ok(n as f64 / elapsed.as_secs_f64())
    })
}

async fn async_rate(
    tokens: &TokenManager,
    serial: &str,
    key_id: &[u8],
    data: &[u8],
    tasks: usize,
    dur: Duration,
) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (tokens, serial, key_id, data) =
            (tokens.clone(), serial.to_owned(), key_id.to_vec(), data.to_vec());
        let (count, stop) = (count.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokens.sign(&serial, key_id.clone(), SignMechanism::EcdsaSha256, data.clone()).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), cardhsmd::token::TokenError>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = (count.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(dur).await;
    let n = count.load(Ordering::Relaxed) - start.0;
    let elapsed = start.1.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await??;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
