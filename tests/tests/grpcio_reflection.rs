//! End-to-end: a Python grpcio client that has none of our .proto files works against the real
//! cardhsmd through server reflection (`tests/py/reflection_client.py`, PyPI packages grpcio,
//! grpcio-reflection and protobuf only). The script logs in with hand-encoded wire bytes,
//! discovers the API through reflection with its bearer token, calls WhoAmI and ListTokens with
//! dynamically built messages, and reports that reflection without a token was refused.
//!
//! Nothing is installed here: the Python packages must already be there
//! (`python3 -m pip install grpcio grpcio-reflection protobuf`).

use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv, repo_root};
use serde_json::Value;
use std::process::{Command, Stdio};

const PIP_LINE: &str = "python3 -m pip install grpcio grpcio-reflection protobuf";

/// Fails (never skips) when python3 or the packages are missing, saying how to install them.
fn require_python_packages() {
    let out = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for this test ({e}); then run: {PIP_LINE}"));
    assert!(
        out.status.success(),
        "python3 lacks grpcio / grpcio-reflection / protobuf; run: {PIP_LINE}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn names<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.as_array().into_iter().flatten().filter_map(|x| x[key].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_client_uses_the_api_through_reflection_without_proto_files() {
    require_python_packages();
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let script = repo_root().join("tests").join("py").join("reflection_client.py");

    let out = Command::new("python3")
        .arg(&script)
        .args(["--target", &daemon.addr.to_string(), "--username", "admin"])
        .env("CARDHSM_PASSWORD", ADMIN_PASSWORD)
        // The script must find the packages from PyPI, not anything of ours.
        .env_remove("PYTHONPATH")
        .current_dir(env.path())
        .stdin(Stdio::null())
        .output()
        .expect("running python3 reflection_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reflection_client.py failed ({}):\n{stdout}\n{stderr}", out.status);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    assert!(!stdout.contains(ADMIN_PASSWORD), "the script never prints the password");

    // Reflection is for signed-in callers only.
    assert_eq!(report["reflection_without_token"]["code"], "UNAUTHENTICATED", "{report:#}");

    // Login by hand-made wire bytes, and the reflected schema agrees with them.
    let login = &report["login"];
    assert_eq!(login["access_token_present"], true, "{report:#}");
    assert_eq!(login["hand_decoded_token_type"], "Bearer", "{report:#}");
    assert_eq!(login["request_bytes_match_reflection"], true, "{report:#}");
    assert_eq!(login["reflected_token_matches"], true, "{report:#}");
    assert_eq!(login["token_type"], "Bearer", "{report:#}");
    assert_eq!(login["expires_in"], 900, "{report:#}");
    assert_eq!(login["roles"], serde_json::json!(["ROLE_SUPER_ADMIN", "ROLE_ADMIN"]), "{report:#}");

    // Reflection with the token lists our services and the standard health service.
    let services: Vec<&str> =
        report["services"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for s in [
        "cardhsm.v1.AuthService",
        "cardhsm.v1.CardService",
        "cardhsm.v1.UserService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&s), "{s} missing from {services:?}");
    }
    let auth_methods = &report["methods"]["cardhsm.v1.AuthService"];
    assert_eq!(
        *auth_methods,
        serde_json::json!([
            "Login",
            "Refresh",
            "WhoAmI",
            "Logout",
            "ChangePassword",
            "RealmAuth",
            "ListApiKeys",
            "RevokeApiKey",
            "RequestPasswordReset",
            "ResetPassword",
            "ValidateCode"
        ]),
        "{report:#}"
    );
    let card_methods: Vec<&str> = report["methods"]["cardhsm.v1.CardService"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(card_methods.contains(&"ListTokens") && card_methods.contains(&"RevokeCard"), "{card_methods:?}");

    // Calls through dynamically built messages.
    assert_eq!(report["whoami"]["username"], "admin", "{report:#}");
    assert_eq!(
        report["whoami"]["roles"],
        serde_json::json!(["ROLE_SUPER_ADMIN", "ROLE_ADMIN"]),
        "{report:#}"
    );
    let tokens = &report["list_tokens"]["tokens"];
    let labels = names(tokens, "label");
    assert!(labels.contains(&env.daemon_token_label.as_str()), "labels {labels:?}");
    assert_eq!(env.daemon_token_label, "cardhsm-daemon");
    let serials = names(tokens, "serial_number");
    assert!(serials.contains(&env.card_serials[0].as_str()), "serials {serials:?}");
    assert!(serials.contains(&env.daemon_token_serial.as_str()), "serials {serials:?}");
    assert_eq!(report["list_tokens_without_token"]["code"], "UNAUTHENTICATED", "{report:#}");

    // Health is public: checked without a token.
    assert_eq!(report["health"]["status"], "SERVING", "{report:#}");
}
