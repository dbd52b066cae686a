//! Beside the request flow: the process-wide Prometheus registry. The wire layers
//! (grpc/auth_layer, the REST middleware) record each finished request, token/ records each
//! PKCS#11 call and the session pool's waits, the batch engine counts issued devices, and
//! `GET /metrics` on the REST port answers [`Metrics::render`].
//!
//! Label values come from bounded sets the code knows (gRPC method paths from the descriptor
//! set, status code names, PKCS#11 function and CKR names), never from raw client input: an
//! unknown value is folded into [`UNKNOWN`] so a client cannot grow the series without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// The content type of [`Metrics::render`]'s answer (OpenMetrics text, which Prometheus
/// negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label value an unknown method, code or error is folded into.
pub const UNKNOWN: &str = "unknown";

/// Request latency buckets: 1 ms … 10 s.
const REQUEST_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Pool wait buckets: an uncontended acquire takes microseconds, a starved one up to the
/// acquire timeout.
const POOL_WAIT_BUCKETS: [f64; 12] =
    [0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// The most distinct REST route labels kept; a route template comes from the router, so this
/// only guards against a caller passing raw paths by mistake.
const MAX_REST_ROUTES: usize = 512;

/// gRPC status code names, indexed by the code's number (`grpc-status`).
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Methods of the standard services the gRPC server carries besides ours.
const FOREIGN_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    protocol: &'static str,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    function: &'static str,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The daemon's metrics; one per process, see [`global`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<DurationLabels>,
    pkcs11_calls: Family<FunctionLabels, Counter>,
    pkcs11_errors: Family<ErrorLabels, Counter>,
    pool_wait: HistogramFamily<PoolLabels>,
    batch_devices_issued: Counter,
    /// Every gRPC method path the server answers: ours from the descriptor set, plus health
    /// and reflection.
    grpc_methods: HashSet<String>,
    /// REST route labels seen so far, to cap their number.
    rest_routes: Mutex<HashSet<String>>,
}

/// The process-global registry (each daemon is its own process).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn pool_wait_histogram() -> Histogram {
    Histogram::new(POOL_WAIT_BUCKETS)
}

/// The name of a gRPC status code (`tonic::Code::NotFound` → "NOT_FOUND").
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    usize::try_from(code as i32).ok().and_then(|i| GRPC_CODES.get(i)).copied().unwrap_or(UNKNOWN)
}

/// The name of the code in a `grpc-status` header or trailer value ("5" → "NOT_FOUND").
pub fn grpc_status_name(value: &[u8]) -> &'static str {
    grpc_code_name(tonic::Code::from_bytes(value))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("cardhsm");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Finished requests by protocol, method and status code",
            requests.clone(),
        );
        let request_duration: HistogramFamily<DurationLabels> =
            Family::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "request_duration",
            "Request latency by protocol and method, until the last byte of the answer",
            Unit::Seconds,
            request_duration.clone(),
        );
        let pkcs11_calls = Family::<FunctionLabels, Counter>::default();
        registry.register("pkcs11_calls", "PKCS#11 calls by function", pkcs11_calls.clone());
        let pkcs11_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "pkcs11_errors",
            "Failed PKCS#11 calls by function and CKR code",
            pkcs11_errors.clone(),
        );
        let pool_wait: HistogramFamily<PoolLabels> =
            Family::new_with_constructor(pool_wait_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "pool_wait",
            "Time spent waiting for a pooled resource",
            Unit::Seconds,
            pool_wait.clone(),
        );
        let batch_devices_issued = Counter::default();
        registry.register(
            "batch_devices_issued",
            "Devices issued by batch workers (certificate and PKCS#12 written)",
            batch_devices_issued.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        registry.register("build_info", "The running cardhsmd version (always 1)", build_info.clone());
        build_info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);

        let mut grpc_methods: HashSet<String> = cardhsm_proto::all_method_paths().into_iter().collect();
        grpc_methods.extend(FOREIGN_METHODS.iter().map(|m| (*m).to_owned()));
        Metrics {
            registry,
            requests,
            request_duration,
            pkcs11_calls,
            pkcs11_errors,
            pool_wait,
            batch_devices_issued,
            grpc_methods,
            rest_routes: Mutex::new(HashSet::new()),
        }
    }

    /// One finished request. protocol: "grpc" or "rest"; method: the gRPC method path
    /// ("/cardhsm.v1.CardService/ListCards") or the REST route template ("GET /icmapi/user/getcards");
    /// code: the gRPC status code name ("OK", "NOT_FOUND") or the HTTP status ("200").
    pub fn observe_request(&self, protocol: &'static str, method: &str, code: &str, seconds: f64) {
        let method = self.method_label(protocol, method);
        let code = code_label(protocol, code);
        self.requests.get_or_create(&RequestLabels { protocol, method: method.clone(), code }).inc();
        self.request_duration.get_or_create(&DurationLabels { protocol, method }).observe(seconds.max(0.0));
    }

    /// One PKCS#11 call by function name ("C_Sign", "C_GenerateKeyPair", …) and whether it failed (and how: the CKR name).
    pub fn pkcs11_call(&self, function: &'static str, error: Option<&str>) {
        self.pkcs11_calls.get_or_create(&FunctionLabels { function }).inc();
        if let Some(error) = error {
            let error = if is_constant_name(error) { error.to_owned() } else { UNKNOWN.to_owned() };
            self.pkcs11_errors.get_or_create(&ErrorLabels { function, error }).inc();
        }
    }

    /// Time spent waiting for a pooled resource: pool = "pkcs11_session" or "sqlite_connection".
    pub fn pool_wait(&self, pool: &'static str, seconds: f64) {
        self.pool_wait.get_or_create(&PoolLabels { pool }).observe(seconds.max(0.0));
    }

    /// Batch throughput: devices issued (certificates + PKCS#12 written) by a batch worker.
    pub fn batch_devices_issued(&self, count: u64) {
        self.batch_devices_issued.inc_by(count);
    }

    /// The Prometheus text exposition format (what GET /metrics answers, content type [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial answer,
        // which Prometheus rejects as a whole, so there is nothing better to return.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// The `method` label: a gRPC path the server answers, or a REST route template within
    /// the cap; anything else is [`UNKNOWN`].
    fn method_label(&self, protocol: &str, method: &str) -> String {
        let known = match protocol {
            "grpc" => self.grpc_methods.contains(method),
            _ => self.rest_route_admitted(method),
        };
        if known { method.to_owned() } else { UNKNOWN.to_owned() }
    }

    fn rest_route_admitted(&self, route: &str) -> bool {
        // "VERB /template": a router template has no query string and no characters beyond
        // path segments and `{param}` captures; a raw request path with a query is refused.
        let shaped = route.len() <= 200
            && route.split_once(' ').is_some_and(|(verb, path)| {
                !verb.is_empty()
                    && verb.bytes().all(|b| b.is_ascii_uppercase())
                    && path.starts_with('/')
                    && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.{}*:".contains(&b))
            });
        if !shaped {
            return false;
        }
        let Ok(mut seen) = self.rest_routes.lock() else {
            return false;
        };
        if seen.contains(route) {
            return true;
        }
        if seen.len() >= MAX_REST_ROUTES {
            return false;
        }
        seen.insert(route.to_owned());
        true
    }
}

/// The `code` label: a gRPC code name for gRPC, an HTTP status (100–599) for REST.
fn code_label(protocol: &str, code: &str) -> String {
    let known = match protocol {
        "grpc" => GRPC_CODES.contains(&code),
        _ => code.len() == 3 && code.parse::<u16>().is_ok_and(|c| (100..600).contains(&c)),
    };
    if known { code.to_owned() } else { UNKNOWN.to_owned() }
}

/// A C constant name such as "CKR_PIN_INCORRECT": upper-case letters, digits, underscores.
fn is_constant_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Records one gRPC call once its status is known, taking the response through: a status in
/// the headers (a trailers-only answer: every error a unary handler or the auth layer returns)
/// is recorded at once; otherwise the body is wrapped and the call is recorded when the
/// trailers carrying `grpc-status` go out, so a stream counts with its final status and its
/// whole duration. A body dropped before its trailers (the client went away) is "CANCELLED".
pub fn observe_grpc(
    method: &str,
    started: Instant,
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    if let Some(status) = response.headers().get("grpc-status") {
        global().observe_request(
            "grpc",
            method,
            grpc_status_name(status.as_bytes()),
            started.elapsed().as_secs_f64(),
        );
        return response;
    }
    let call = GrpcCall { method: method.to_owned(), started };
    response.map(|body| tonic::body::Body::new(ObservedBody { inner: body, call: Some(call) }))
}

#[derive(Debug)]
struct GrpcCall {
    method: String,
    started: Instant,
}

impl GrpcCall {
    fn finish(self, code: &str) {
        global().observe_request("grpc", &self.method, code, self.started.elapsed().as_secs_f64());
    }
}

/// A gRPC response body that records its call when the trailers pass (or it is dropped).
#[derive(Debug)]
struct ObservedBody {
    inner: tonic::body::Body,
    call: Option<GrpcCall>,
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &poll {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|trailers| {
                trailers.get("grpc-status").map_or("UNKNOWN", |v| grpc_status_name(v.as_bytes()))
            }),
            Poll::Ready(Some(Err(status))) => Some(grpc_code_name(status.code())),
            // The end without trailers: not a well-formed gRPC answer.
            Poll::Ready(None) => Some("UNKNOWN"),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish("CANCELLED");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    /// One sample line of the text format: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn samples(text: &str) -> Vec<Sample> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels close");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label has a value");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            out.push((name, labels, value.parse().expect("numeric value")));
        }
        out
    }

    fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        samples(text)
            .into_iter()
            .find(|(n, labels, _)| {
                n == name
                    && labels.len() == want.len()
                    && want.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
    }

    #[test]
    fn requests_render_with_their_labels_and_latency() {
        let m = Metrics::new();
        m.observe_request("grpc", "/cardhsm.v1.CardService/ListCards", "OK", 0.003);
        m.observe_request("grpc", "/cardhsm.v1.CardService/ListCards", "OK", 0.2);
        m.observe_request("grpc", "/cardhsm.v1.CardService/ListCards", "NOT_FOUND", 0.002);
        m.observe_request("rest", "GET /icmapi/user/getcards", "200", 0.004);
        let text = m.render();
        let list = [("protocol", "grpc"), ("method", "/cardhsm.v1.CardService/ListCards")];
        assert_eq!(value(&text, "cardhsm_requests_total", &[list[0], list[1], ("code", "OK")]), Some(2.0));
        assert_eq!(
            value(&text, "cardhsm_requests_total", &[list[0], list[1], ("code", "NOT_FOUND")]),
            Some(1.0)
        );
        let rest = [("protocol", "rest"), ("method", "GET /icmapi/user/getcards"), ("code", "200")];
        assert_eq!(value(&text, "cardhsm_requests_total", &rest), Some(1.0));
        assert_eq!(value(&text, "cardhsm_request_duration_seconds_count", &list), Some(3.0));
        let sum = value(&text, "cardhsm_request_duration_seconds_sum", &list).expect("sum");
        assert!((sum - 0.205).abs() < 1e-9, "sum {sum}");
        assert!(text.contains("# TYPE cardhsm_request_duration_seconds histogram"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn histogram_buckets_span_one_millisecond_to_ten_seconds() {
        let m = Metrics::new();
        let method = "/cardhsm.v1.CardService/ListCards";
        for seconds in [0.0005, 0.003, 0.003, 0.7, 30.0] {
            m.observe_request("grpc", method, "OK", seconds);
        }
        let text = m.render();
        let bucket = |le: &str| {
            value(
                &text,
                "cardhsm_request_duration_seconds_bucket",
                &[("protocol", "grpc"), ("method", method), ("le", le)],
            )
        };
        // Cumulative: ≤1 ms holds one, ≤5 ms three, ≤1 s four, +Inf all five.
        assert_eq!(bucket("0.001"), Some(1.0));
        assert_eq!(bucket("0.005"), Some(3.0));
        assert_eq!(bucket("1.0"), Some(4.0));
        assert_eq!(bucket("10.0"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(5.0));
        let les = samples(&text)
            .into_iter()
            .filter(|(n, _, _)| n == "cardhsm_request_duration_seconds_bucket")
            .count();
        assert_eq!(les, REQUEST_BUCKETS.len() + 1);
    }

    #[test]
    fn unknown_methods_and_codes_fold_into_unknown() {
        let m = Metrics::new();
        for i in 0..50 {
            m.observe_request("grpc", &format!("/cardhsm.v1.CardService/Nope{i}"), "OK", 0.001);
        }
        // A prefix the authorization table admits is still not a method the server has.
        m.observe_request("grpc", "/grpc.health.v1.Health/Whatever", "TEAPOT", 0.001);
        m.observe_request("grpc", "/grpc.health.v1.Health/Check", "OK", 0.001);
        m.observe_request("rest", "GET /api/v1/batches/12345?x=<script>", "999", 0.001);
        m.observe_request("rest", "/no/verb", "404", 0.001);
        let text = m.render();
        let unknown = [("protocol", "grpc"), ("method", UNKNOWN), ("code", "OK")];
        assert_eq!(value(&text, "cardhsm_requests_total", &unknown), Some(50.0));
        let unknown_code = [("protocol", "grpc"), ("method", UNKNOWN), ("code", UNKNOWN)];
        assert_eq!(value(&text, "cardhsm_requests_total", &unknown_code), Some(1.0));
        let health = [("protocol", "grpc"), ("method", "/grpc.health.v1.Health/Check"), ("code", "OK")];
        assert_eq!(value(&text, "cardhsm_requests_total", &health), Some(1.0));
        let rest_unknown = [("protocol", "rest"), ("method", UNKNOWN), ("code", UNKNOWN)];
        assert_eq!(value(&text, "cardhsm_requests_total", &rest_unknown), Some(1.0));
        assert_eq!(
            value(
                &text,
                "cardhsm_requests_total",
                &[("protocol", "rest"), ("method", UNKNOWN), ("code", "404")]
            ),
            Some(1.0)
        );
        assert!(!text.contains("Nope"), "{text}");
        assert!(!text.contains("script"), "{text}");
    }

    #[test]
    fn rest_routes_are_capped() {
        let m = Metrics::new();
        for i in 0..(MAX_REST_ROUTES + 10) {
            m.observe_request("rest", &format!("GET /r{i}"), "200", 0.001);
        }
        let text = m.render();
        let series = samples(&text).into_iter().filter(|(n, _, _)| n == "cardhsm_requests_total").count();
        assert_eq!(series, MAX_REST_ROUTES + 1);
        let unknown = [("protocol", "rest"), ("method", UNKNOWN), ("code", "200")];
        assert_eq!(value(&text, "cardhsm_requests_total", &unknown), Some(10.0));
    }

    #[test]
    fn pkcs11_pool_batch_and_build_series() {
        let m = Metrics::new();
        m.pkcs11_call("C_Sign", None);
        m.pkcs11_call("C_Sign", Some("CKR_KEY_HANDLE_INVALID"));
        m.pkcs11_call("C_Login", Some("not a ckr name"));
        m.pool_wait("pkcs11_session", 0.00002);
        m.pool_wait("pkcs11_session", 0.2);
        m.batch_devices_issued(3);
        m.batch_devices_issued(4);
        let text = m.render();
        assert_eq!(value(&text, "cardhsm_pkcs11_calls_total", &[("function", "C_Sign")]), Some(2.0));
        assert_eq!(
            value(
                &text,
                "cardhsm_pkcs11_errors_total",
                &[("function", "C_Sign"), ("error", "CKR_KEY_HANDLE_INVALID")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "cardhsm_pkcs11_errors_total", &[("function", "C_Login"), ("error", UNKNOWN)]),
            Some(1.0)
        );
        let pool = [("pool", "pkcs11_session")];
        assert_eq!(value(&text, "cardhsm_pool_wait_seconds_count", &pool), Some(2.0));
        assert_eq!(value(&text, "cardhsm_pool_wait_seconds_bucket", &[pool[0], ("le", "0.0001")]), Some(1.0));
        assert_eq!(value(&text, "cardhsm_batch_devices_issued_total", &[]), Some(7.0));
        assert_eq!(value(&text, "cardhsm_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    }

    #[test]
    fn grpc_code_names_follow_the_status_numbers() {
        assert_eq!(grpc_code_name(tonic::Code::Ok), "OK");
        assert_eq!(grpc_code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(grpc_code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(grpc_status_name(b"7"), "PERMISSION_DENIED");
        assert_eq!(grpc_status_name(b"garbage"), "UNKNOWN");
    }

    /// A response body: one data frame, then trailers carrying `grpc-status` (if any).
    #[derive(Debug)]
    struct TestBody {
        frames: Vec<http_body::Frame<bytes::Bytes>>,
    }

    impl http_body::Body for TestBody {
        type Data = bytes::Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            let this = self.get_mut();
            Poll::Ready(if this.frames.is_empty() { None } else { Some(Ok(this.frames.remove(0))) })
        }
    }

    fn streamed(status: &'static str) -> http::Response<tonic::body::Body> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(status));
        let frames = vec![
            http_body::Frame::data(bytes::Bytes::from_static(b"\0\0\0\0\0")),
            http_body::Frame::trailers(trailers),
        ];
        http::Response::new(tonic::body::Body::new(TestBody { frames }))
    }

    async fn drain(response: http::Response<tonic::body::Body>) -> usize {
        let mut body = response.into_body();
        let mut frames = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            frame.expect("frame");
            frames += 1;
        }
        frames
    }

    fn global_requests(method: &str, code: &str) -> Option<f64> {
        value(
            &global().render(),
            "cardhsm_requests_total",
            &[("protocol", "grpc"), ("method", method), ("code", code)],
        )
    }

    // Each of the next tests uses its own method: they share the process-global registry.

    #[tokio::test]
    async fn a_status_in_the_headers_is_recorded_at_once() {
        let method = "/grpc.health.v1.Health/Check";
        let response = tonic::Status::not_found("nothing").into_http::<tonic::body::Body>();
        let response = observe_grpc(method, Instant::now(), response);
        assert_eq!(global_requests(method, "NOT_FOUND"), Some(1.0));
        drain(response).await;
        assert_eq!(global_requests(method, "NOT_FOUND"), Some(1.0), "recorded once");
    }

    #[tokio::test]
    async fn a_status_in_the_trailers_is_recorded_when_they_pass() {
        let method = "/cardhsm.v1.BatchService/DownloadBatch";
        let response = observe_grpc(method, Instant::now(), streamed("13"));
        assert_eq!(global_requests(method, "INTERNAL"), None, "not before the trailers");
        assert_eq!(drain(response).await, 2, "the frames pass through unchanged");
        assert_eq!(global_requests(method, "INTERNAL"), Some(1.0));
        let response = observe_grpc(method, Instant::now(), streamed("0"));
        drain(response).await;
        assert_eq!(global_requests(method, "OK"), Some(1.0));
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_trailers_is_cancelled() {
        let method = "/grpc.health.v1.Health/Watch";
        let response = observe_grpc(method, Instant::now(), streamed("0"));
        let mut body = response.into_body();
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.is_some_and(|f| f.is_ok_and(|f| f.is_data())));
        drop(body);
        assert_eq!(global_requests(method, "CANCELLED"), Some(1.0));
        assert_eq!(global_requests(method, "OK"), None);
    }

    #[test]
    fn global_is_one_registry() {
        assert!(std::ptr::eq(global(), global()));
        assert!(global().render().contains("cardhsm_build_info"));
    }
}
