//! The readers benchmark: what the daemon's PC/SC monitor costs and how fast it recovers.
//! Against the real cardhsmd and a private pcscd with the virtual card:
//!   - CPU of the daemon (share of one core) while pcscd is down, next to the same daemon
//!     idle with pcscd up and a card in the reader (the baseline, same run);
//!   - how long after pcscd comes back the reader is seen again (WatchReaders event), over a
//!     few restarts: the target is under 2 s;
//!   - how long a card insertion takes to reach a watcher.
//!
//! Run: `cargo bench -p cardhsm-tests --bench readers` (BENCH_SECONDS sets each CPU window,
//! default 5).

use cardhsm_proto::v1 as pb;
use cardhsm_tests::pcsc::{Pcscd, READER, VirtualCard};
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;

const RESTARTS: usize = 5;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(utime + stime)
}

/// The daemon's CPU over `window`, as a percentage of one core (ticks are 1/100 s on Linux).
fn cpu_share(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let before = cpu_ticks(pid)?;
    let t = Instant::now();
    std::thread::sleep(window);
    let ticks = cpu_ticks(pid)? - before;
    Ok(100.0 * (ticks as f64 / 100.0) / t.elapsed().as_secs_f64())
}

async fn next(
    stream: &mut tonic::Streaming<pb::ReaderEvent>,
    kind: pb::ReaderEventKind,
) -> anyhow::Result<()> {
    let wait = async {
        loop {
            let e = stream.message().await?.ok_or_else(|| anyhow::anyhow!("stream ended"))?;
            if e.kind == kind as i32 && e.reader == READER {
                return Ok::<_, anyhow::Error>(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await?
}

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let window = Duration::from_secs(secs.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(window))
}

async fn run(window: Duration) -> anyhow::Result<()> {
    let env = TestEnv::new(0)?;
    let mut pcscd = Pcscd::start(env.path())?;
    let daemon = Daemon::start_with_pcscd(&env, "[logging]\nlevel = \"warn\"\n", &pcscd).await?;
    let pid = daemon.pid().ok_or_else(|| anyhow::anyhow!("no daemon pid"))?;
    let channel = tonic::transport::Channel::from_shared(daemon.endpoint.clone())?.connect().await?;
    let token = pb::auth_service_client::AuthServiceClient::new(channel.clone())
        .login(pb::LoginRequest { username: "admin".into(), password: ADMIN_PASSWORD.into() })
        .await?
        .into_inner()
        .access_token;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut cards = pb::card_service_client::CardServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::WatchReadersRequest {});
    request.metadata_mut().insert("authorization", bearer.clone());
    let mut watch = cards.watch_readers(request).await?.into_inner();
    next(&mut watch, pb::ReaderEventKind::ReaderAdded).await?;

    // Card insertion → watcher.
    let mut card =
        VirtualCard::new(&pcscd, &env.path().join("card.json"), "0123456789abcdef0123456789abcdef")?;
    let mut insert_ms = Vec::new();
    for _ in 0..RESTARTS {
        let t = Instant::now();
        card.insert()?;
        next(&mut watch, pb::ReaderEventKind::CardInserted).await?;
        insert_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        card.pull_out();
        next(&mut watch, pb::ReaderEventKind::CardRemoved).await?;
    }
    card.insert()?;
    next(&mut watch, pb::ReaderEventKind::CardInserted).await?;

    // Baseline: idle with pcscd up and a card in the reader.
    let up = cpu_share(pid, window)?;
    // pcscd down.
    pcscd.stop();
    next(&mut watch, pb::ReaderEventKind::ReaderRemoved).await?;
    let down = cpu_share(pid, window)?;

    // pcscd back: time until the reader is seen again.
    let mut back_ms = Vec::new();
    for i in 0..RESTARTS {
        if i > 0 {
            pcscd.stop();
            next(&mut watch, pb::ReaderEventKind::ReaderRemoved).await?;
            // Let the monitor settle into its longest backoff, the worst case.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let t = Instant::now();
        pcscd.restart()?;
        next(&mut watch, pb::ReaderEventKind::ReaderAdded).await?;
        back_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (insert_median, insert_max) = stats(&mut insert_ms);
    let (back_median, back_max) = stats(&mut back_ms);
    println!(
        "cardhsm readers benchmark ({} s CPU windows, {RESTARTS} insertions and pcscd restarts)",
        window.as_secs()
    );
    // The kernel counts CPU in 10 ms ticks: one tick over the window is this share of a core.
    let resolution = 100.0 * 0.01 / window.as_secs_f64();
    println!("    (resolution: one 10 ms CPU tick in the window = {resolution:.2}% of a core)");
    println!("    daemon CPU, pcscd up, idle, card in reader (baseline): {up:>6.2}% of a core");
    println!(
        "    daemon CPU, pcscd down:                                {down:>6.2}% of a core (target < 5%)"
    );
    let ratio =
        if up > 0.0 { format!("{:.2}", down / up) } else { "n/a (baseline under one tick)".to_owned() };
    println!("    down - baseline: {:+.2} percentage points; down / baseline: {ratio}", down - up);
    println!(
        "    reader seen again after pcscd restart: median {back_median:.0} ms, max {back_max:.0} ms (target < 2000 ms)"
    );
    println!("    card insertion to watcher: median {insert_median:.0} ms, max {insert_max:.0} ms");
    Ok(())
}
