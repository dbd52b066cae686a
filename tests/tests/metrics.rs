//! End-to-end: the Prometheus metrics the real cardhsmd serves at `GET /metrics` on its REST
//! port, read with a small parser of the text format after real traffic: gRPC calls that
//! succeed, fail (NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED) or name no method at all, a
//! streamed download whose status travels in trailers, REST calls, an authority whose key is
//! generated and used on the real SoftHSM token, and a small batch — requests by method and
//! code, latency histograms that agree with them, PKCS#11 calls by function, pool waits and
//! batch throughput.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use std::collections::BTreeMap;
use support::batches::*;
use support::rest::{Body, Rest};
use support::*;
use tonic::Code;

const LIST_CARDS: &str = "/cardhsm.v1.CardService/ListCards";
const GET_BATCH: &str = "/cardhsm.v1.BatchService/GetBatch";
const LOGIN: &str = "/cardhsm.v1.AuthService/Login";
const DOWNLOAD: &str = "/cardhsm.v1.BatchService/DownloadBatch";
const BATCH_SIZE: u32 = 5;

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a text exposition (Prometheus 0.0.4 or OpenMetrics): comment lines are
/// skipped, label values are unescaped (`\\`, `\"`, `\n`). Panics on a malformed line, which
/// is itself a failure of what the daemon serves.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value on {line:?}"));
        let name = line[..name_end].to_owned();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                // key="value" pairs separated by commas, closed by '}'.
                let (start, c) = chars.next().unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                if c == '}' {
                    rest = &body[start + 1..];
                    break;
                }
                if c == ',' {
                    continue;
                }
                let eq =
                    body[start..].find("=\"").unwrap_or_else(|| panic!("label without value in {line:?}"));
                let key = body[start..start + eq].to_owned();
                for _ in 0..eq + 1 {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().unwrap_or_else(|| panic!("unterminated value in {line:?}"));
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("dangling escape in {line:?}"),
                        },
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(key, value).is_none(), "duplicate label in {line:?}");
            }
        }
        // The value, optionally followed by a timestamp or an exemplar (not used here).
        let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value on {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("bad value {v:?} on {line:?}: {e}")),
        };
        out.push(Sample { name, labels, value });
    }
    out
}

struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sample with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut found = self.samples.iter().filter(|s| s.name == name && s.labels == want);
        let first = found.next().map(|s| s.value);
        assert!(found.next().is_none(), "{name} {labels:?} appears twice");
        first
    }

    /// [`Scrape::get`], 0 when the series does not exist (a counter never incremented).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Samples of `name` whose labels include all of `labels`.
    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    fn requests(&self, method: &str, code: &str) -> f64 {
        self.count("cardhsm_requests_total", &[("protocol", "grpc"), ("method", method), ("code", code)])
    }

    /// A histogram's buckets (le → cumulative count), its count and its sum.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> (Vec<(f64, f64)>, f64, f64) {
        let mut buckets: Vec<(f64, f64)> = self
            .matching(&format!("{name}_bucket"), labels)
            .filter(|s| s.labels.len() == labels.len() + 1)
            .map(|s| {
                let le = s.labels.get("le").expect("bucket has le");
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("numeric le") };
                (le, s.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count =
            self.get(&format!("{name}_count"), labels).unwrap_or_else(|| panic!("{name}_count {labels:?}"));
        let sum = self.get(&format!("{name}_sum"), labels).unwrap_or_else(|| panic!("{name}_sum {labels:?}"));
        (buckets, count, sum)
    }
}

/// GET /metrics with a plain HTTP client (no credential: Prometheus scrapes without one).
async fn scrape(rest: &Rest) -> Scrape {
    let reply = rest.get("/metrics").await.expect(200);
    assert!(
        reply.content_type.starts_with("application/openmetrics-text")
            || reply.content_type.starts_with("text/plain"),
        "content type {}",
        reply.content_type
    );
    let text = reply.text();
    assert!(text.contains("# TYPE cardhsm_requests counter"), "{text}");
    Scrape { samples: parse(&text) }
}

/// Checks a histogram's shape: buckets cumulative, the +Inf bucket equal to the count.
fn assert_histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (buckets, count, sum) = scrape.histogram(name, labels);
    assert!(buckets.len() >= 2, "{name} {labels:?} has buckets: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name} {labels:?} buckets cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().map(|b| b.0), Some(f64::INFINITY), "{name} has a +Inf bucket");
    assert_eq!(buckets.last().map(|b| b.1), Some(count), "{name} +Inf bucket equals the count");
    assert!(sum >= 0.0);
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_token_calls_pool_waits_and_batches() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let rest = Rest::new(&daemon).await;

    let first = scrape(&rest).await;
    assert_eq!(first.get("cardhsm_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert_eq!(first.count("cardhsm_batch_devices_issued_total", &[]), 0.0);

    // gRPC: one login, two successful ListCards, one refused for its input, one without a
    // token, a GetBatch of an unknown id, and a method that does not exist.
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    for _ in 0..2 {
        api.cards
            .list_cards(pb::ListCardsRequest { owner: "nobody@corp.example".into(), state: 0, page: None })
            .await
            .expect("list cards");
    }
    expect_invalid_field(
        api.cards.list_cards(pb::ListCardsRequest { owner: "not-an-upn".into(), state: 0, page: None }).await,
        "owner",
    );
    let mut anonymous = support::api(&daemon.endpoint, None).await;
    expect_code(
        anonymous
            .cards
            .list_cards(pb::ListCardsRequest { owner: "nobody@corp.example".into(), state: 0, page: None })
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        api.batches
            .get_batch(pb::GetBatchRequest { id: "00000000-0000-4000-8000-000000000000".into() })
            .await,
        Code::NotFound,
    );
    let mut grpc = tonic::client::Grpc::new(channel(&daemon.endpoint).await);
    grpc.ready().await.expect("ready");
    let bogus = grpc
        .unary(
            tonic::Request::new(()),
            "/cardhsm.v1.CardService/NoSuchMethodAtAll".parse().expect("path"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    let bogus_code = bogus.expect_err("an unknown method fails").code();

    // REST: a route that does not exist.
    let missing = rest.send_unchecked("GET", "/no/such/route-12345", Body::Empty).await;
    assert_eq!(missing.status, 404);

    // The token: an authority generates its key and signs its certificate on SoftHSM; a
    // batch signs one certificate per device; its ZIP streams back with the status in trailers.
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let s = setup(&mut api, &dir, "Metrics Root", "Metrics Org", 100).await;
    let created = api
        .batches
        .create_batch(generator_req(&s, "metrics", BATCH_SIZE, "dev", "batch-password-1234"))
        .await
        .expect("create batch")
        .into_inner();
    let batch = created.batch.expect("batch");
    let done = wait_done(&mut api, &batch.id).await;
    assert_eq!((done.issued, done.failed), (BATCH_SIZE, 0), "{done:?}");
    let (_, chunks) = download(&mut api, &batch.id, &dir, "metrics").await;
    assert!(chunks >= 1);

    let m = scrape(&rest).await;

    // Requests by method and code.
    assert_eq!(m.requests(LOGIN, "OK"), 1.0);
    assert_eq!(m.requests(LIST_CARDS, "OK"), 2.0);
    assert_eq!(m.requests(LIST_CARDS, "INVALID_ARGUMENT"), 1.0);
    assert_eq!(m.requests(LIST_CARDS, "UNAUTHENTICATED"), 1.0);
    assert_eq!(m.requests(GET_BATCH, "NOT_FOUND"), 1.0);
    assert!(m.requests(GET_BATCH, "OK") >= 1.0, "wait_done reads the batch");
    assert_eq!(m.requests(DOWNLOAD, "OK"), 1.0, "a stream counts with the status of its trailers");
    let bogus_name = match bogus_code {
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::Unimplemented => "UNIMPLEMENTED",
        other => panic!("unexpected answer to an unknown method: {other:?}"),
    };
    assert_eq!(m.requests("unknown", bogus_name), 1.0, "an unknown method is folded into one label");
    assert!(
        m.samples
            .iter()
            .all(|s| s.labels.values().all(|v| !v.contains("NoSuchMethod") && !v.contains("12345"))),
        "a client-chosen path never becomes a label"
    );
    let rest_requests = |method: &str, code: &str| {
        m.count("cardhsm_requests_total", &[("protocol", "rest"), ("method", method), ("code", code)])
    };
    assert!(rest_requests("GET /openapi.json", "200") >= 1.0, "the client read the document");
    assert_eq!(
        rest_requests("GET /metrics", "200"),
        1.0,
        "the first scrape (this one is counted after it answers)"
    );
    assert_eq!(rest_requests("unknown", "404"), 1.0);

    // Latency: every method's histogram counts exactly its requests of every code.
    let mut methods: Vec<(String, String)> = m
        .matching("cardhsm_requests_total", &[])
        .map(|s| (s.labels["protocol"].clone(), s.labels["method"].clone()))
        .collect();
    methods.sort();
    methods.dedup();
    assert!(methods.len() >= 8, "{methods:?}");
    for (protocol, method) in &methods {
        let labels = [("protocol", protocol.as_str()), ("method", method.as_str())];
        let requests: f64 = m.matching("cardhsm_requests_total", &labels).map(|s| s.value).sum();
        let observed = assert_histogram(&m, "cardhsm_request_duration_seconds", &labels);
        assert_eq!(observed, requests, "{protocol} {method}: latency observations = requests");
    }
    let (buckets, _, _) =
        m.histogram("cardhsm_request_duration_seconds", &[("protocol", "grpc"), ("method", LIST_CARDS)]);
    let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    assert_eq!(bounds.first(), Some(&0.001), "buckets start at 1 ms: {bounds:?}");
    assert!(bounds.contains(&10.0), "buckets reach 10 s: {bounds:?}");

    // PKCS#11: the authority's key pair, its self-signed certificate and one signature per
    // device, all without a failed C_Sign; sessions opened and logged in.
    let calls = |f: &str| m.count("cardhsm_pkcs11_calls_total", &[("function", f)]);
    assert!(calls("C_GenerateKeyPair") >= 1.0);
    assert!(calls("C_Sign") >= 1.0 + f64::from(BATCH_SIZE), "C_Sign {}", calls("C_Sign"));
    assert!(calls("C_OpenSession") >= 1.0);
    assert!(calls("C_Login") >= 1.0);
    assert!(calls("C_FindObjects") >= 1.0, "the signing key was looked up");
    assert_eq!(m.matching("cardhsm_pkcs11_errors_total", &[("function", "C_Sign")]).count(), 0);
    for e in m.matching("cardhsm_pkcs11_errors_total", &[]) {
        let function = e.labels["function"].as_str();
        assert!(e.labels["error"].starts_with("CKR_"), "{e:?}");
        assert!(e.value <= calls(function), "errors of {function} are among its calls");
    }

    // Pool waits: every token operation and every read waited (if only for microseconds).
    let session_waits = assert_histogram(&m, "cardhsm_pool_wait_seconds", &[("pool", "pkcs11_session")]);
    assert!(session_waits >= 1.0 + f64::from(BATCH_SIZE), "session waits {session_waits}");
    assert!(assert_histogram(&m, "cardhsm_pool_wait_seconds", &[("pool", "sqlite_connection")]) >= 1.0);
    assert!(assert_histogram(&m, "cardhsm_pool_wait_seconds", &[("pool", "sqlite_writer")]) >= 1.0);

    // Batch throughput: exactly the devices this batch issued.
    assert_eq!(m.get("cardhsm_batch_devices_issued_total", &[]), Some(f64::from(BATCH_SIZE)));

    // Counters only grow: a later scrape sees at least as much.
    let again = scrape(&rest).await;
    assert_eq!(again.requests(LIST_CARDS, "OK"), 2.0);
    assert_eq!(
        again.count(
            "cardhsm_requests_total",
            &[("protocol", "rest"), ("method", "GET /metrics"), ("code", "200")]
        ),
        2.0
    );
}

#[test]
fn the_parser_reads_labels_escapes_and_special_values() {
    let text = "# HELP x_total A counter.\n# TYPE x counter\n\
        x_total{a=\"1\",b=\"q\\\"uo\\\\te\\nnl\"} 3\n\
        y_bucket{le=\"+Inf\"} 7\n\
        z 2.5\n# EOF\n";
    let samples = parse(text);
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].name, "x_total");
    assert_eq!(samples[0].labels["a"], "1");
    assert_eq!(samples[0].labels["b"], "q\"uo\\te\nnl");
    assert_eq!(samples[0].value, 3.0);
    assert_eq!(samples[1].labels["le"], "+Inf");
    assert_eq!(samples[1].value, 7.0);
    assert_eq!(samples[2], Sample { name: "z".into(), labels: BTreeMap::new(), value: 2.5 });
}
