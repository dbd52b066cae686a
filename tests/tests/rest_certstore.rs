//! End-to-end: the device certificate store's REST routes (`/api/cert/user` and `/api/cert/ca`:
//! GET, multipart PUT, DELETE) over real HTTP against the real cardhsmd on real SoftHSM tokens
//! and a real SQLite file. Every answer is checked against the served OpenAPI document; what a
//! PUT stores is seen through gRPC `ListCertificates`, its fingerprint cross-checked with
//! `openssl x509 -fingerprint`, and the token's objects read with `pkcs11-tool`; DELETE takes
//! them off again, a protected certificate stays. "user" is the certificates stored with their
//! private key, "ca" those stored alone, on the daemon's token unless `token` names another.
//! Bad blobs, a wrong password, missing parts, missing credentials and a USER caller get the
//! `{"success": false, "error": {...}}` shape naming the part, and change nothing.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::Value;
use std::path::Path;
use support::rest::{Auth, Body, Rest, rest_as};
use support::*;

const USER_PASSWORD: &str = "User-Passw0rd-rest-certstore";

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn part(name: &str, bytes: Vec<u8>) -> (String, Option<String>, Vec<u8>) {
    (name.to_owned(), Some(format!("{name}.bin")), bytes)
}

fn field(name: &str, text: &str) -> (String, Option<String>, Vec<u8>) {
    (name.to_owned(), None, text.as_bytes().to_vec())
}

/// The certificates gRPC lists on `token`.
async fn grpc_list(api: &mut Api, token: &str) -> Vec<pb::StoredCertificate> {
    api.certstore
        .list_certificates(pb::ListCertificatesRequest { token: token.into(), id: String::new() })
        .await
        .expect("ListCertificates")
        .into_inner()
        .certificates
}

/// The fingerprints in a `{"success": true, "result": {"certificates": [...]}}` answer.
#[track_caller]
fn listed(body: &Value) -> Vec<String> {
    assert_eq!(body["success"], true, "{body}");
    body["result"]["certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("no certificates in {body}"))
        .iter()
        .map(|c| c["fingerprint"].as_str().expect("fingerprint").to_owned())
        .collect()
}

/// Asserts a refusal in the store's shape: `{"success": false, "error": {code, param, ..}}`.
#[track_caller]
fn assert_error(body: &Value, code: u64, param: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["param"], param, "{body}");
    assert!(body["error"]["description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
}

/// The objects under CKA_ID `id` on the token labelled `label`: (class, id) pairs.
fn objects_under(env: &TestEnv, label: &str, id: &str) -> Vec<String> {
    let mut found: Vec<String> = env
        .list_token_objects(label)
        .expect("pkcs11-tool")
        .into_iter()
        .filter(|o| o.id_hex == id)
        .map(|o| o.class.to_string())
        .collect();
    found.sort();
    found
}

/// Everything a refused request must leave as it was: the store and the certificate rows.
fn state(env: &TestEnv) -> Vec<String> {
    let mut rows = store_snapshot(&env.store_path());
    rows.extend(table_rows(&env.store_path(), &["token_certificates"]));
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn user_certificates_are_imported_listed_replaced_and_deleted_with_their_keys() {
    let env = TestEnv::new(0).expect("env");
    // At debug level the daemon logs every REST request: the log is checked for secrets below.
    let daemon = Daemon::start_with_log_filter(&env, "info,cardhsmd=debug").await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let rest = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;
    let daemon_token = env.daemon_token_label.clone();
    let dir = env.path();
    self_signed(dir, "dev", "ec:P-256", "/CN=door-7/O=Acme/OU=Ops/L=Brno/ST=JM/C=CZ");
    let fp = openssl_fingerprint(dir, "dev.crt", "sha1");

    // PUT: certificate and PKCS#8 key, stored on the daemon's token.
    let put = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "dev.crt")),
                part("blob-pk", read(dir, "dev.key")),
            ]),
        )
        .await
        .expect(200);
    assert_eq!(put.body["success"], true, "{}", put.body);
    assert_eq!(put.body["result"]["fingerprint"], fp.as_str(), "openssl's SHA-1 fingerprint");
    assert_eq!(put.body["result"]["replaced"], Value::Null);
    let seen = grpc_list(&mut api, &daemon_token).await;
    let stored = seen.iter().find(|c| c.fingerprint == fp).unwrap_or_else(|| panic!("{seen:#?}"));
    assert!(stored.has_private_key && !stored.protected, "{stored:?}");
    assert_eq!(objects_under(&env, &daemon_token, &stored.id), ["certificate", "private", "public"]);

    // GET lists it with the device API's fields; GET ?id= finds it; the CA half does not.
    let all = rest.get("/api/cert/user").await.expect(200);
    assert_eq!(listed(&all.body), [fp.as_str()]);
    let c = &all.body["result"]["certificates"][0];
    assert_eq!(c["subject"]["CN"], "door-7");
    assert_eq!(
        (&c["subject"]["O"], &c["subject"]["OU"], &c["subject"]["L"], &c["subject"]["S"], &c["subject"]["C"]),
        (
            &Value::from("Acme"),
            &Value::from("Ops"),
            &Value::from("Brno"),
            &Value::from("JM"),
            &Value::from("CZ")
        )
    );
    assert_eq!(c["issuer"], c["subject"], "self-signed");
    assert_eq!(c["id"], stored.id.as_str());
    assert_eq!(
        (c["startDate"].as_i64(), c["endDate"].as_i64()),
        (Some(stored.start_date), Some(stored.end_date))
    );
    assert_eq!((&c["protected"], &c["systemUseOnly"]), (&Value::Bool(false), &Value::Bool(false)));
    let one = rest.get(&format!("/api/cert/user?id={}", stored.id)).await.expect(200);
    assert_eq!(listed(&one.body), [fp.as_str()]);
    assert!(listed(&rest.get("/api/cert/ca").await.expect(200).body).is_empty());
    let r = rest.get(&format!("/api/cert/ca?id={fp}")).await.expect(404);
    assert_error(&r.body, 15, "");

    // The same certificate again replaces itself.
    let again = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "dev.crt")),
                part("blob-pk", read(dir, "dev.key")),
            ]),
        )
        .await
        .expect(200);
    assert_eq!(again.body["result"]["replaced"], fp.as_str());

    // An encrypted PKCS#8 key with its password, under an id of our choice.
    self_signed(dir, "enc", "ec:P-256", "/CN=door-8");
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "enc.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:open sesame",
            "-out",
            "enc.p8",
        ],
    );
    let enc_fp = openssl_fingerprint(dir, "enc.crt", "sha1");
    let before = state(&env);
    // Wrong password, garbage certificate, a key of another certificate, missing parts: each
    // names its part, and nothing is written.
    let wrong = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "enc.crt")),
                part("blob-pk", read(dir, "enc.p8")),
                field("password", "not it"),
            ]),
        )
        .await
        .expect(400);
    assert_error(&wrong.body, 12, "password");
    let garbage = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", b"not a certificate".to_vec()),
                part("blob-pk", read(dir, "enc.key")),
            ]),
        )
        .await
        .expect(400);
    assert_error(&garbage.body, 12, "blob-cert");
    assert!(
        garbage.body["error"]["description"].as_str().is_some_and(|d| d.starts_with("invalid certificate")),
        "{}",
        garbage.body
    );
    let mismatch = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "enc.crt")),
                part("blob-pk", read(dir, "dev.key")),
            ]),
        )
        .await
        .expect(400);
    assert_error(&mismatch.body, 12, "blob-pk");
    let missing = rest
        .call("PUT", "/api/cert/user", Body::Multipart(vec![part("blob-cert", read(dir, "enc.crt"))]))
        .await
        .expect(400);
    assert_error(&missing.body, 11, "blob-pk");
    let bad_id = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "enc.crt")),
                part("blob-pk", read(dir, "enc.key")),
                field("id", "xyz"),
            ]),
        )
        .await
        .expect(400);
    assert_error(&bad_id.body, 12, "id");
    // Not multipart at all: a 4xx in the same shape.
    let json = rest.put("/api/cert/user", serde_json::json!({ "blob-cert": "x" })).await;
    assert!((400..500).contains(&json.status), "{}", json.status);
    assert_eq!(json.body["success"], false);
    assert_eq!(state(&env), before);
    assert_eq!(grpc_list(&mut api, &daemon_token).await.len(), 1);

    let enc = rest
        .call(
            "PUT",
            "/api/cert/user",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "enc.crt")),
                part("blob-pk", read(dir, "enc.p8")),
                field("password", "open sesame"),
                field("id", "0a0b0c"),
            ]),
        )
        .await
        .expect(200);
    assert_eq!(enc.body["result"]["fingerprint"], enc_fp.as_str());
    assert_eq!(enc.body["result"]["replaced"], Value::Null);
    assert_eq!(objects_under(&env, &daemon_token, "0a0b0c"), ["certificate", "private", "public"]);
    let both = listed(&rest.get("/api/cert/user").await.expect(200).body);
    assert_eq!(both.len(), 2, "{both:?}");

    // DELETE through the CA half does not see a user certificate.
    let r = rest.delete(&format!("/api/cert/ca?id={enc_fp}")).await.expect(404);
    assert_error(&r.body, 15, "");
    // DELETE takes the certificate and its key pair off the token.
    let deleted = rest.delete(&format!("/api/cert/user?id={enc_fp}")).await.expect(200);
    assert_eq!(deleted.body["success"], true);
    assert_eq!(deleted.body["result"]["deleted"], serde_json::json!([enc_fp]));
    assert!(grpc_list(&mut api, &daemon_token).await.iter().all(|c| c.fingerprint != enc_fp));
    assert!(objects_under(&env, &daemon_token, "0a0b0c").is_empty());
    let r = rest.delete(&format!("/api/cert/user?id={enc_fp}")).await.expect(404);
    assert_error(&r.body, 15, "");
    let r = rest.delete("/api/cert/user?id=not-hex").await.expect(400);
    assert_error(&r.body, 12, "id");
    let r = rest.delete("/api/cert/user").await.expect(400);
    assert_error(&r.body, 11, "id");

    // A protected certificate (imported so by an administrator over gRPC) cannot be deleted.
    self_signed(dir, "prot", "ec:P-256", "/CN=door-9");
    let prot = api
        .certstore
        .import_certificate(pb::ImportCertificateRequest {
            token: daemon_token.clone(),
            cert: read(dir, "prot.crt"),
            private_key: read(dir, "prot.key"),
            protected: true,
            ..Default::default()
        })
        .await
        .expect("import protected")
        .into_inner();
    let listed_prot = rest.get(&format!("/api/cert/user?id={}", prot.fingerprint)).await.expect(200);
    assert_eq!(listed_prot.body["result"]["certificates"][0]["protected"], true);
    let before = state(&env);
    let r = rest.delete(&format!("/api/cert/user?id={}", prot.fingerprint)).await.expect(409);
    assert_error(&r.body, 14, "");
    assert_eq!(state(&env), before);
    assert!(grpc_list(&mut api, &daemon_token).await.iter().any(|c| c.fingerprint == prot.fingerprint));

    // Neither the key's password nor the private key reached the daemon's log.
    let log = std::fs::read_to_string(env.log_path()).expect("daemon log");
    assert!(log.contains("PUT") && log.contains("/api/cert/user"), "the log records requests: {log}");
    assert!(!log.contains("open sesame") && !log.contains("not it"), "a password is in the log");
    let key_pem = String::from_utf8(read(dir, "dev.key")).expect("PEM");
    let key_body = key_pem.lines().nth(1).expect("a base64 line");
    assert!(!log.contains(key_body), "the private key is in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_certificates_are_stored_without_keys_on_the_named_token_and_callers_are_checked() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    api.users
        .create_user(pb::CreateUserRequest {
            username: "rest_store_user".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("create user");
    let rest = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;
    let user = rest_as(&daemon, "rest_store_user", USER_PASSWORD).await;
    let anonymous = Rest::new(&daemon).await;
    let daemon_token = env.daemon_token_label.clone();
    let dir = env.path();
    self_signed(dir, "root", "ec:P-384", "/CN=Door Root CA/O=Acme/C=CZ");
    openssl(dir, &["x509", "-in", "root.crt", "-outform", "DER", "-out", "root.der"]);
    let fp = openssl_fingerprint(dir, "root.crt", "sha1");

    // Refusals first, each in the store's shape and changing nothing.
    let before = state(&env);
    let upload = || Body::Multipart(vec![part("blob-cert", read(dir, "root.der"))]);
    for (method, path) in [("GET", "/api/cert/ca"), ("PUT", "/api/cert/ca"), ("DELETE", "/api/cert/ca?id=aa")]
    {
        let body = if method == "PUT" { upload() } else { Body::Empty };
        let r = anonymous.call(method, path, body.clone()).await.expect(401);
        assert_error(&r.body, 9, "");
        let r = user.call(method, path, body).await.expect(403);
        assert_error(&r.body, 10, "");
    }
    let junk = anonymous.with(Auth::ApiKey("chk_not_a_key".into()));
    assert_error(&junk.get("/api/cert/user").await.expect(401).body, 9, "");
    let with_key = rest
        .call(
            "PUT",
            "/api/cert/ca",
            Body::Multipart(vec![
                part("blob-cert", read(dir, "root.der")),
                part("blob-pk", read(dir, "root.key")),
            ]),
        )
        .await
        .expect(400);
    assert_error(&with_key.body, 12, "blob-pk");
    let r = rest.call("PUT", "/api/cert/ca", Body::Multipart(vec![field("id", "01")])).await.expect(400);
    assert_error(&r.body, 11, "blob-cert");
    let r = rest
        .call(
            "PUT",
            "/api/cert/ca",
            Body::Multipart(vec![part("blob-cert", read(dir, "root.der")[..40].to_vec())]),
        )
        .await
        .expect(400);
    assert_error(&r.body, 12, "blob-cert");
    let r = rest
        .call(
            "PUT",
            "/api/cert/ca",
            Body::Raw("multipart/form-data; boundary=xyz", b"--xyz\r\nbroken".to_vec()),
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    let r = rest.call("PUT", "/api/cert/ca?token=no-such-token", upload()).await.expect(404);
    assert_error(&r.body, 15, "");
    assert_eq!(state(&env), before);

    // PUT (DER) onto the daemon's token: the certificate object alone.
    let put = rest.call("PUT", "/api/cert/ca", upload()).await.expect(200);
    assert_eq!(put.body["result"]["fingerprint"], fp.as_str(), "openssl's SHA-1 fingerprint");
    assert_eq!(put.body["result"]["replaced"], Value::Null);
    let seen = grpc_list(&mut api, &daemon_token).await;
    let stored = seen.iter().find(|c| c.fingerprint == fp).unwrap_or_else(|| panic!("{seen:#?}"));
    assert!(!stored.has_private_key, "{stored:?}");
    assert_eq!(objects_under(&env, &daemon_token, &stored.id), ["certificate"]);
    let ca = rest.get("/api/cert/ca").await.expect(200);
    assert_eq!(listed(&ca.body), [fp.as_str()]);
    let c = &ca.body["result"]["certificates"][0];
    assert_eq!((&c["subject"]["CN"], &c["subject"]["C"]), (&Value::from("Door Root CA"), &Value::from("CZ")));
    assert_eq!(c["subject"]["OU"], "", "an absent attribute is empty");
    assert!(listed(&rest.get("/api/cert/user").await.expect(200).body).is_empty());
    // Again: replaces itself.
    let again = rest.call("PUT", "/api/cert/ca", upload()).await.expect(200);
    assert_eq!(again.body["result"]["replaced"], fp.as_str());
    assert_eq!(objects_under(&env, &daemon_token, &stored.id), ["certificate"]);

    // `token` names another token: the card token, by label.
    let put = rest
        .call(
            "PUT",
            "/api/cert/ca?token=card-01",
            Body::Multipart(vec![part("blob-cert", read(dir, "root.crt")), field("id", "c0ffee")]),
        )
        .await
        .expect(200);
    assert_eq!(put.body["result"]["fingerprint"], fp.as_str());
    assert_eq!(objects_under(&env, "card-01", "c0ffee"), ["certificate"]);
    let on_card = grpc_list(&mut api, "card-01").await;
    assert_eq!(on_card.iter().map(|c| c.fingerprint.as_str()).collect::<Vec<_>>(), [fp.as_str()]);
    assert_eq!(
        listed(&rest.get("/api/cert/ca?token=card-01&id=c0ffee").await.expect(200).body),
        [fp.as_str()]
    );

    // DELETE through the user half does not see a CA certificate; through the CA half it goes.
    assert_error(&rest.delete(&format!("/api/cert/user?id={fp}")).await.expect(404).body, 15, "");
    let deleted = rest.delete(&format!("/api/cert/ca?id={fp}")).await.expect(200);
    assert_eq!(deleted.body["result"]["deleted"], serde_json::json!([fp]));
    assert!(grpc_list(&mut api, &daemon_token).await.is_empty());
    assert!(objects_under(&env, &daemon_token, &stored.id).is_empty());
    // The card token's copy is untouched until it is deleted there.
    assert_eq!(grpc_list(&mut api, "card-01").await.len(), 1);
    rest.delete(&format!("/api/cert/ca?token=card-01&id={fp}")).await.expect(200);
    assert!(grpc_list(&mut api, "card-01").await.is_empty());
    assert!(objects_under(&env, "card-01", "c0ffee").is_empty());
}
