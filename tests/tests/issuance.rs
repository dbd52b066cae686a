//! End-to-end: IssuanceService through the real cardhsmd on a real SoftHSM daemon token and a
//! real SQLite file, cross-checked with the real `openssl`: authorities (EC and RSA roots, an
//! intermediate, an external CA signed by an openssl root), issuing from openssl CSRs under
//! every built-in profile, chains that `openssl verify` accepts, CA keys that never leave the
//! token, finding, revoking with reasons, holds and releases, CRLs that `openssl crl` verifies
//! and lists exactly (also under concurrent revocations), configured profiles, and bad input
//! that is refused naming the field and changes nothing; server-generated keys returned in
//! a PKCS#12 that `openssl pkcs12` opens.

mod support;

use base64::Engine;
use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv, list_token_objects};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use support::*;
use tonic::Code;

/// A key (`ec:P-256`, `ec:P-384`, `rsa:2048` …) in `<name>.key` and a CSR for it in
/// `<name>.csr` with subject `subj` (openssl's `/CN=…/O=…` form). Returns the CSR PEM.
fn key_and_csr(dir: &Path, name: &str, alg: &str, subj: &str) -> String {
    let key = format!("{name}.key");
    match alg.split_once(':') {
        Some(("ec", curve)) => openssl(
            dir,
            &["genpkey", "-algorithm", "EC", "-pkeyopt", &format!("ec_paramgen_curve:{curve}"), "-out", &key],
        ),
        Some(("rsa", bits)) => openssl(
            dir,
            &["genpkey", "-algorithm", "RSA", "-pkeyopt", &format!("rsa_keygen_bits:{bits}"), "-out", &key],
        ),
        _ => panic!("unknown algorithm {alg}"),
    };
    let csr = format!("{name}.csr");
    openssl(dir, &["req", "-new", "-key", &key, "-subj", subj, "-out", &csr]);
    std::fs::read_to_string(dir.join(csr)).expect("csr")
}

fn issue_req(
    authority: &str,
    profile: &str,
    params: &[(&str, &str)],
    csr: &str,
) -> pb::IssueCertificateRequest {
    pb::IssueCertificateRequest {
        authority_id: authority.into(),
        profile_id: profile.into(),
        params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        csr_pem: csr.into(),
        validity_years: 0,
        ..Default::default()
    }
}

/// IssueCertificate with a server-generated key of `key_type`, the PKCS#12 under `password`.
fn generate_req(
    authority: &str,
    profile: &str,
    params: &[(&str, &str)],
    key_type: &str,
    password: &str,
) -> pb::IssueCertificateRequest {
    pb::IssueCertificateRequest {
        generate_key: true,
        key_type: key_type.into(),
        pkcs12_password: password.into(),
        ..issue_req(authority, profile, params, "")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authorities_issue_verify_find_revoke_and_crls() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = dir.as_path();
    use pb::AuthorityKind as K;

    // Three authorities: a P-256 root, a P-384 intermediate under it, an RSA-2048 root.
    let root = api
        .issuance
        .create_authority(create_req("Root EC", "EC:P-256", "CN=Test Root EC,O=Acme,C=CZ", K::Root, ""))
        .await
        .expect("root")
        .into_inner();
    assert_eq!(root.status, pb::AuthorityStatus::Active as i32);
    assert_eq!(root.key_algorithm, "EC:P-256");
    let inter = api
        .issuance
        .create_authority(create_req(
            "Issuing EC",
            "EC:P-384",
            "CN=Test Issuing CA,O=Acme,C=CZ",
            K::Intermediate,
            &root.id,
        ))
        .await
        .expect("intermediate")
        .into_inner();
    let rsa_root = api
        .issuance
        .create_authority(create_req("Root RSA", "RSA:2048", "CN=Test Root RSA,O=Acme", K::Root, ""))
        .await
        .expect("rsa root")
        .into_inner();
    assert_eq!(inter.parent_id, root.id);
    assert_eq!(inter.chain_pem.matches("BEGIN CERTIFICATE").count(), 2, "intermediate + root");
    assert!(inter.chain_pem.starts_with(&inter.certificate_pem));

    let listed =
        api.issuance.list_authorities(pb::ListAuthoritiesRequest {}).await.expect("list").into_inner();
    let names: Vec<&str> = listed.authorities.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["Root EC", "Issuing EC", "Root RSA"]);
    let got = api
        .issuance
        .get_authority(pb::GetAuthorityRequest { id: inter.id.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (got.key_algorithm.as_str(), got.enabled, got.kind),
        ("EC:P-384", true, K::Intermediate as i32)
    );
    assert_eq!(got.chain_pem, inter.chain_pem);

    // A second authority with the same name is refused.
    let dup = api.issuance.create_authority(create_req("root ec", "EC:P-256", "CN=x", K::Root, "")).await;
    expect_code(dup, Code::AlreadyExists);

    // The CA keys are on the daemon token: sensitive, never extractable.
    let objects = list_token_objects(&env, "cardhsm-daemon").expect("pkcs11-tool");
    let private: Vec<_> = objects.iter().filter(|o| o.class == "private").collect();
    assert_eq!(private.len(), 3, "one key per authority: {objects:?}");
    for k in &private {
        assert_eq!(k.sensitive, Some(true), "{k:?}");
        assert_eq!(k.extractable, Some(false), "{k:?}");
        assert_eq!(k.never_extractable, Some(true), "{k:?}");
        assert!(k.label.starts_with("ca:"), "{k:?}");
    }

    write(dir, "root.pem", &root.certificate_pem);
    write(dir, "inter.pem", &inter.certificate_pem);
    write(dir, "rsa-root.pem", &rsa_root.certificate_pem);
    write(dir, "inter-chain.pem", &inter.chain_pem);
    // The CA certificates themselves verify.
    openssl(dir, &["verify", "-CAfile", "root.pem", "inter.pem"]);
    openssl(dir, &["verify", "-CAfile", "rsa-root.pem", "rsa-root.pem"]);

    // Profiles: the four built-in ones.
    let profiles =
        api.issuance.list_profiles(pb::ListProfilesRequest {}).await.expect("profiles").into_inner();
    let ids: Vec<&str> = profiles.profiles.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ecc-device", "ecc-server", "rsa-device", "rsa-server", "card-authentication", "card-signature"]
    );
    let p = api
        .issuance
        .get_profile(pb::GetProfileRequest { id: "ecc-server".into() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(p.name, "ECC Server Certificate");
    assert_eq!(p.key_algorithms[0], "EC:P-256");
    let params = api
        .issuance
        .get_profile_parameters(pb::GetProfileRequest { id: "rsa-device".into() })
        .await
        .expect("params");
    let cn = params.into_inner().parameters.into_iter().find(|x| x.name == "commonName").expect("commonName");
    assert!(cn.required && !cn.validation_pattern.is_empty());
    assert!(cn.scopes.contains(&(pb::ParameterScope::CsrSubject as i32)));
    let dn = api
        .issuance
        .get_profile_subject_dn(pb::GetProfileRequest { id: "ecc-device".into() })
        .await
        .expect("dn");
    assert!(dn.into_inner().subject_dn.starts_with("CN={commonName}"));
    expect_code(api.issuance.get_profile(pb::GetProfileRequest { id: "nope".into() }).await, Code::NotFound);

    // Issue under each built-in profile from openssl CSRs, and verify with openssl.
    let cases = [
        ("ecc-device", "ec:P-256", "/CN=sensor-0001/O=Acme", &inter, "sensor-0001"),
        ("ecc-server", "ec:P-384", "/CN=www.acme.example", &inter, "www.acme.example"),
        ("rsa-device", "rsa:2048", "/CN=meter-77", &rsa_root, "meter-77"),
        ("rsa-server", "rsa:2048", "/CN=api.acme.example", &rsa_root, "api.acme.example"),
        ("ecc-device", "ec:P-256", "/CN=under-root", &root, "under-root"),
    ];
    let mut issued = HashMap::new();
    for (i, (profile, alg, subj, ca, cn)) in cases.iter().enumerate() {
        let name = format!("leaf{i}");
        let csr = key_and_csr(dir, &name, alg, subj);
        let cert = api
            .issuance
            .issue_certificate(issue_req(&ca.id, profile, &[("country", "CZ")], &csr))
            .await
            .unwrap_or_else(|e| panic!("issue {profile}: {e:?}"))
            .into_inner();
        // 128 random bits with the top one cleared: at most 16 bytes of hex.
        assert!((2..=32).contains(&cert.serial_number.len()), "serial {}", cert.serial_number);
        assert!(cert.subject_dn.starts_with(&format!("CN={cn}")), "{}", cert.subject_dn);
        write(dir, &format!("{name}.pem"), &cert.certificate_pem);
        let ca_file = if ca.id == rsa_root.id { "rsa-root.pem" } else { "root.pem" };
        let mut args = vec!["verify", "-CAfile", ca_file];
        if ca.id == inter.id {
            args.extend(["-untrusted", "inter.pem"]);
        }
        let purpose = if profile.ends_with("server") { "sslserver" } else { "sslclient" };
        args.extend(["-purpose", purpose]);
        let leaf = format!("{name}.pem");
        args.push(&leaf);
        let out = openssl(dir, &args);
        assert!(out.contains(": OK"), "{out}");
        let text = openssl(dir, &["x509", "-in", &leaf, "-noout", "-text"]);
        assert!(text.contains(&format!("CN = {cn}")) || text.contains(&format!("CN={cn}")), "{text}");
        if profile.ends_with("server") {
            assert!(
                text.contains(&format!("DNS:{cn}")),
                "server certificates carry the host in the SAN: {text}"
            );
        }
        // The chain returned with the certificate is the authority's.
        assert_eq!(
            cert.chain_pem,
            if ca.id == inter.id { inter.chain_pem.clone() } else { ca.certificate_pem.clone() }
        );
        issued.insert(name, cert);
    }
    let counted =
        api.issuance.get_authority(pb::GetAuthorityRequest { id: inter.id.clone() }).await.expect("get");
    assert_eq!(counted.into_inner().issued_count, 2);

    // Find by common name (case-insensitive) and by serial (any case, with separators).
    let found = api
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            common_name: "SENSOR-0001".into(),
            serial_number: String::new(),
            page: None,
        })
        .await
        .expect("find")
        .into_inner();
    assert_eq!(found.certificates.len(), 1);
    let f = &found.certificates[0];
    assert_eq!((f.common_name.as_str(), f.id.as_str()), ("sensor-0001", issued["leaf0"].id.as_str()));
    assert_eq!(f.status, pb::CertificateStatus::Valid as i32);
    let upper = issued["leaf1"].serial_number.to_ascii_uppercase();
    let colons: Vec<String> =
        upper.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    let by_serial = api
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            common_name: String::new(),
            serial_number: colons.join(":"),
            page: None,
        })
        .await
        .expect("find by serial")
        .into_inner();
    assert_eq!(by_serial.certificates.len(), 1);
    assert_eq!(by_serial.certificates[0].id, issued["leaf1"].id);
    let all = api
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            common_name: String::new(),
            serial_number: String::new(),
            page: Some(pb::PageRequest { page_size: 2, page_token: String::new() }),
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(all.certificates.len(), 2);
    assert_eq!(all.page.as_ref().map(|p| p.total_count), Some(5));

    // The first CRL of the intermediate: number 1, empty, verifies.
    let crl1 = fetch_crl(&mut api, dir, &inter.id, "crl1.pem").await;
    assert_eq!(crl1.crl_number, 1);
    openssl(dir, &["crl", "-in", "crl1.pem", "-CAfile", "inter-chain.pem", "-noout", "-verify"]);
    assert!(crl_entries(&openssl(dir, &["crl", "-in", "crl1.pem", "-noout", "-text"])).is_empty());

    // Three more certificates under the intermediate to revoke.
    let mut extra = Vec::new();
    for n in 0..3 {
        let csr = key_and_csr(dir, &format!("rev{n}"), "ec:P-256", &format!("/CN=revoke-me-{n}"));
        let c = api
            .issuance
            .issue_certificate(issue_req(&inter.id, "ecc-device", &[], &csr))
            .await
            .expect("issue")
            .into_inner();
        write(dir, &format!("rev{n}.pem"), &c.certificate_pem);
        extra.push(c);
    }
    // keyCompromise by id (with leaf0), superseded by profile + serial, certificateHold.
    let r = api
        .issuance
        .revoke_certificates(pb::RevokeCertificatesRequest {
            reason_code: 1,
            ids: vec![extra[0].id.clone(), issued["leaf0"].id.clone()],
        })
        .await
        .expect("revoke")
        .into_inner();
    assert!(
        r.certificates
            .iter()
            .all(|c| c.status == pb::CertificateStatus::Revoked as i32 && c.revocation_reason == 1)
    );
    let s = api
        .issuance
        .revoke_certificate(pb::RevokeCertificateRequest {
            profile_id: "ecc-device".into(),
            serial_number: extra[1].serial_number.to_ascii_uppercase(),
            reason_code: 4,
        })
        .await
        .expect("revoke by serial")
        .into_inner();
    assert_eq!((s.id.as_str(), s.revocation_reason), (extra[1].id.as_str(), 4));
    let h = api
        .issuance
        .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 6, ids: vec![extra[2].id.clone()] })
        .await
        .expect("hold")
        .into_inner();
    assert_eq!(h.certificates[0].status, pb::CertificateStatus::OnHold as i32);

    let crl = fetch_crl(&mut api, dir, &inter.id, "crl.pem").await;
    assert_eq!(crl.crl_number, 4, "one CRL per revocation call");
    assert!(crl.next_update > crl.this_update);
    openssl(dir, &["crl", "-in", "crl.pem", "-CAfile", "inter-chain.pem", "-noout", "-verify"]);
    let der_file = dir.join("crl.der");
    std::fs::write(&der_file, &crl.crl_der).expect("der");
    openssl(
        dir,
        &["crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "inter-chain.pem", "-noout", "-verify"],
    );
    let listed = crl_entries(&openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]));
    let expected: BTreeMap<String, String> = [
        (norm_serial(&extra[0].serial_number), "Key Compromise".to_owned()),
        (norm_serial(&issued["leaf0"].serial_number), "Key Compromise".to_owned()),
        (norm_serial(&extra[1].serial_number), "Superseded".to_owned()),
        (norm_serial(&extra[2].serial_number), "Certificate Hold".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, expected);
    // openssl honours the CRL: the revoked leaf fails, a valid one passes.
    write(dir, "all-crl-chain.pem", &format!("{}{}", inter.chain_pem, crl.crl_pem));
    let (ok, out) = openssl_try(dir, &["verify", "-crl_check", "-CAfile", "all-crl-chain.pem", "rev0.pem"]);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // The other authorities' CRLs are untouched.
    assert_eq!(fetch_crl(&mut api, dir, &root.id, "root-crl.pem").await.crl_number, 1);

    // Releasing the hold (removeFromCRL) takes it off the next CRL.
    let released = api
        .issuance
        .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 8, ids: vec![extra[2].id.clone()] })
        .await
        .expect("release")
        .into_inner();
    assert_eq!(released.certificates[0].status, pb::CertificateStatus::Valid as i32);
    let crl5 = fetch_crl(&mut api, dir, &inter.id, "crl5.pem").await;
    assert_eq!(crl5.crl_number, 5);
    openssl(dir, &["crl", "-in", "crl5.pem", "-CAfile", "inter-chain.pem", "-noout", "-verify"]);
    let listed = crl_entries(&openssl(dir, &["crl", "-in", "crl5.pem", "-noout", "-text"]));
    let mut expected_after = expected.clone();
    expected_after.remove(&norm_serial(&extra[2].serial_number));
    assert_eq!(listed, expected_after);
    write(dir, "crl5-chain.pem", &format!("{}{}", inter.chain_pem, crl5.crl_pem));
    openssl(dir, &["verify", "-crl_check", "-CAfile", "crl5-chain.pem", "rev2.pem"]);

    // Illegal transitions are FAILED_PRECONDITION and publish nothing.
    for (code, id) in [(1, &extra[0].id), (8, &extra[2].id), (6, &extra[1].id)] {
        let r = api
            .issuance
            .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: code, ids: vec![id.clone()] })
            .await;
        expect_code(r, Code::FailedPrecondition);
    }
    // All or nothing: one bad id among good ones changes nothing.
    let r = api
        .issuance
        .revoke_certificates(pb::RevokeCertificatesRequest {
            reason_code: 1,
            ids: vec![issued["leaf1"].id.clone(), extra[0].id.clone()],
        })
        .await;
    expect_code(r, Code::FailedPrecondition);
    assert_eq!(fetch_crl(&mut api, dir, &inter.id, "crl-after.pem").await.crl_number, 5);
    let still = api
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            common_name: "www.acme.example".into(),
            serial_number: String::new(),
            page: None,
        })
        .await
        .expect("find")
        .into_inner();
    assert_eq!(still.certificates[0].status, pb::CertificateStatus::Valid as i32);

    // A CRL in the second half of its validity is renewed on the next GetCrl: same entries,
    // next number. (Its nextUpdate is moved back in the database to stand in for 4 days.)
    {
        let db = rusqlite::Connection::open(env.store_path()).expect("open db");
        db.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
        let n = db
            .execute(
                "UPDATE crls SET next_update = next_update - 4 * 86400 WHERE authority_id = ?1 AND crl_number = 5",
                [&inter.id],
            )
            .expect("age the CRL");
        assert_eq!(n, 1);
    }
    let renewed = fetch_crl(&mut api, dir, &inter.id, "crl6.pem").await;
    assert_eq!(renewed.crl_number, 6);
    openssl(dir, &["crl", "-in", "crl6.pem", "-CAfile", "inter-chain.pem", "-noout", "-verify"]);
    assert_eq!(crl_entries(&openssl(dir, &["crl", "-in", "crl6.pem", "-noout", "-text"])), expected_after);
    assert_eq!(fetch_crl(&mut api, dir, &inter.id, "crl6b.pem").await.crl_number, 6, "a fresh CRL is kept");

    // Every change left its audit record.
    {
        let db = rusqlite::Connection::open_with_flags(
            env.store_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db");
        let count = |action: &str| -> i64 {
            db.query_row("SELECT COUNT(*) FROM audit_log WHERE action = ?1", [action], |r| r.get(0))
                .expect("count")
        };
        assert_eq!(count("authority.create"), 3);
        assert_eq!(count("certificate.issue"), 8);
        assert_eq!(count("certificate.revoke"), 3);
        assert_eq!(count("certificate.hold"), 1);
        assert_eq!(count("certificate.release"), 1);
        // Revocation calls (4) and the renewal (1); the first CRLs come with authority.create.
        assert_eq!(count("crl.publish"), 5);
    }

    // Everything survives a restart.
    let mut daemon = daemon;
    daemon.restart().await;
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let again = fetch_crl(&mut api, dir, &inter.id, "crl-restart.pem").await;
    assert_eq!(again.crl_der, renewed.crl_der, "the latest CRL is kept over a restart");
    let csr = key_and_csr(dir, "after-restart", "ec:P-256", "/CN=after-restart");
    let c = api
        .issuance
        .issue_certificate(issue_req(&inter.id, "ecc-device", &[], &csr))
        .await
        .expect("issue")
        .into_inner();
    write(dir, "after-restart.pem", &c.certificate_pem);
    openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "inter.pem", "after-restart.pem"]);
}

/// A CSR's DER with one byte of its signature flipped, as PEM.
fn tamper(csr_pem: &str) -> String {
    let b64: String = csr_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", lines.join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = dir.as_path();
    let root = api
        .issuance
        .create_authority(create_req("Root", "EC:P-256", "CN=Bad Input Root", pb::AuthorityKind::Root, ""))
        .await
        .expect("root")
        .into_inner();
    let good = key_and_csr(dir, "good", "ec:P-256", "/CN=good device 1");
    let issued = api
        .issuance
        .issue_certificate(issue_req(&root.id, "ecc-device", &[], &good))
        .await
        .expect("issue")
        .into_inner();
    let weak = key_and_csr(dir, "weak", "rsa:1024", "/CN=weak");
    let rsa = key_and_csr(dir, "rsa", "rsa:2048", "/CN=rsa-device");

    let before = store_snapshot(&env.store_path());
    let objects_before = list_token_objects(&env, "cardhsm-daemon").expect("objects");

    let iss = &mut api.issuance;
    let garbage = "this is not a CSR at all";
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[], garbage)).await,
        "csr_pem",
    );
    let truncated = &good[..good.len() / 2];
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[], truncated)).await,
        "csr_pem",
    );
    let truncated_pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        good.lines().nth(1).unwrap_or_default()
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[], &truncated_pem)).await,
        "csr_pem",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[], &tamper(&good))).await,
        "csr_pem",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "rsa-device", &[], &weak)).await,
        "csr_pem",
    );
    expect_invalid_field(iss.issue_certificate(issue_req(&root.id, "", &[], &good)).await, "profile_id");
    // An RSA key under an ECC profile.
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[], &rsa)).await,
        "csr_pem",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-server", &[("commonName", "not a host!")], &good))
            .await,
        "params.commonName",
    );
    // The CSR's CN is not a host name either: the error still names the parameter.
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-server", &[], &good)).await,
        "params.commonName",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[("country", "Czechia")], &good)).await,
        "params.country",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "ecc-device", &[("colour", "blue")], &good)).await,
        "params.colour",
    );
    let unknown = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";
    expect_invalid_field(
        iss.issue_certificate(issue_req(unknown, "ecc-device", &[], &good)).await,
        "authority_id",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req("nope", "ecc-device", &[], &good)).await,
        "authority_id",
    );
    expect_invalid_field(
        iss.issue_certificate(issue_req(&root.id, "no-such-profile", &[], &good)).await,
        "profile_id",
    );
    let mut long = issue_req(&root.id, "ecc-device", &[], &good);
    long.validity_years = 4;
    expect_invalid_field(iss.issue_certificate(long).await, "validity_years");

    expect_invalid_field(
        iss.revoke_certificates(pb::RevokeCertificatesRequest {
            reason_code: 7,
            ids: vec![issued.id.clone()],
        })
        .await,
        "reason_code",
    );
    expect_invalid_field(
        iss.revoke_certificates(pb::RevokeCertificatesRequest {
            reason_code: 11,
            ids: vec![issued.id.clone()],
        })
        .await,
        "reason_code",
    );
    expect_invalid_field(
        iss.revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 1, ids: vec![] }).await,
        "ids",
    );
    expect_invalid_field(
        iss.revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 1, ids: vec!["x".into()] })
            .await,
        "ids[0]",
    );
    expect_code(
        iss.revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 1, ids: vec![unknown.into()] })
            .await,
        Code::NotFound,
    );
    expect_invalid_field(
        iss.revoke_certificate(pb::RevokeCertificateRequest {
            profile_id: "ecc-device".into(),
            serial_number: "xyz".into(),
            reason_code: 1,
        })
        .await,
        "serial_number",
    );
    expect_invalid_field(
        iss.revoke_certificate(pb::RevokeCertificateRequest {
            profile_id: "ecc-device".into(),
            serial_number: issued.serial_number.clone(),
            reason_code: 7,
        })
        .await,
        "reason_code",
    );
    expect_invalid_field(
        iss.find_certificates(pb::FindCertificatesRequest {
            common_name: String::new(),
            serial_number: "not-hex".into(),
            page: None,
        })
        .await,
        "serial_number",
    );

    // CreateAuthority input.
    use pb::AuthorityKind as K;
    let ca = |name: &str, alg: &str, dn: &str, kind: K, parent: &str| create_req(name, alg, dn, kind, parent);
    expect_invalid_field(
        iss.create_authority(ca("X", "EC:P-521", "CN=x", K::Root, "")).await,
        "key_algorithm",
    );
    expect_invalid_field(
        iss.create_authority(ca("X", "RSA:1024", "CN=x", K::Root, "")).await,
        "key_algorithm",
    );
    expect_invalid_field(
        iss.create_authority(ca("X", "EC:P-256", "garbage", K::Root, "")).await,
        "subject_dn",
    );
    expect_invalid_field(iss.create_authority(ca("", "EC:P-256", "CN=x", K::Root, "")).await, "name");
    expect_invalid_field(iss.create_authority(ca("X", "EC:P-256", "CN=x", K::Unspecified, "")).await, "kind");
    expect_invalid_field(
        iss.create_authority(ca("X", "EC:P-256", "CN=x", K::Intermediate, "")).await,
        "parent_id",
    );
    expect_invalid_field(
        iss.create_authority(ca("X", "EC:P-256", "CN=x", K::Intermediate, unknown)).await,
        "parent_id",
    );
    expect_invalid_field(
        iss.create_authority(ca("X", "EC:P-256", "CN=x", K::Root, &root.id)).await,
        "parent_id",
    );
    let mut zero = ca("X", "EC:P-256", "CN=x", K::Root, "");
    zero.validity_years = 0;
    expect_invalid_field(iss.create_authority(zero).await, "validity_years");
    expect_code(iss.create_authority(ca("Root", "EC:P-256", "CN=x", K::Root, "")).await, Code::AlreadyExists);
    expect_code(iss.get_authority(pb::GetAuthorityRequest { id: unknown.into() }).await, Code::NotFound);
    expect_code(iss.get_crl(pb::GetCrlRequest { authority_id: unknown.into() }).await, Code::NotFound);

    assert_eq!(store_snapshot(&env.store_path()), before, "refused requests changed the store");
    assert_eq!(list_token_objects(&env, "cardhsm-daemon").expect("objects"), objects_before, "or the token");

    // A USER may read authorities and profiles but not issue or revoke.
    api.users
        .create_user(pb::CreateUserRequest {
            username: "reader".into(),
            password: "Reader-Passw0rd-long-enough".into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("create user");
    let mut user = api_as(&daemon.endpoint, "reader", "Reader-Passw0rd-long-enough").await;
    user.issuance.list_authorities(pb::ListAuthoritiesRequest {}).await.expect("users may read authorities");
    user.issuance.get_crl(pb::GetCrlRequest { authority_id: root.id.clone() }).await.expect("and CRLs");
    expect_code(
        user.issuance.issue_certificate(issue_req(&root.id, "ecc-device", &[], &good)).await,
        Code::PermissionDenied,
    );
    expect_code(
        user.issuance
            .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 1, ids: vec![issued.id] })
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn external_authority_signed_by_an_openssl_root_and_a_configured_profile() {
    let env = TestEnv::new(0).expect("env");
    // A configured profile bound to the external authority.
    let profile = r#"
        [[issuance.profiles]]
        id = "vpn-client"
        name = "VPN Client Certificate"
        key_algorithms = ["EC:P-256"]
        authority = "Devices CA"
        subject_dn = "CN={user},OU=VPN,O=Acme"
        key_usages = ["digitalSignature", "keyAgreement"]
        extended_key_usages = ["clientAuth"]
        validity_years = 2
        max_validity_years = 2
        [[issuance.profiles.parameters]]
        name = "user"
        required = true
        validation_pattern = "[a-z][a-z0-9.]{1,31}"
        message = "must be a lower-case user name"
        title = "User name"
        scopes = ["REQUEST"]
    "#;
    let daemon = Daemon::start_with(&env, profile).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = dir.as_path();

    let ext = api
        .issuance
        .create_authority(create_req(
            "Devices CA",
            "EC:P-256",
            "CN=Acme Devices CA,O=Acme,C=CZ",
            pb::AuthorityKind::External,
            "",
        ))
        .await
        .expect("external")
        .into_inner();
    assert_eq!(ext.status, pb::AuthorityStatus::PendingCertificate as i32);
    assert!(ext.certificate_pem.is_empty());
    assert!(ext.csr_pem.contains("BEGIN CERTIFICATE REQUEST"));
    write(dir, "ext.csr", &ext.csr_pem);
    openssl(dir, &["req", "-in", "ext.csr", "-noout", "-verify"]);
    // Not usable before its certificate is imported.
    expect_code(
        api.issuance.get_crl(pb::GetCrlRequest { authority_id: ext.id.clone() }).await,
        Code::FailedPrecondition,
    );
    let leaf_csr = key_and_csr(dir, "leaf", "ec:P-256", "/CN=ext-device-1");
    expect_code(
        api.issuance.issue_certificate(issue_req(&ext.id, "ecc-device", &[], &leaf_csr)).await,
        Code::FailedPrecondition,
    );

    // An external root made by openssl signs the CSR.
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
            "ext-root.key",
            "-out",
            "ext-root.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=External Root",
        ],
    );
    write(
        dir,
        "ca.ext",
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "ext.csr",
            "-CA",
            "ext-root.pem",
            "-CAkey",
            "ext-root.key",
            "-CAcreateserial",
            "-days",
            "1825",
            "-extfile",
            "ca.ext",
            "-out",
            "ext.pem",
        ],
    );
    let signed = std::fs::read_to_string(dir.join("ext.pem")).expect("ext.pem");
    let ext_root = std::fs::read_to_string(dir.join("ext-root.pem")).expect("root");

    let before = store_snapshot(&env.store_path());
    // A certificate for another key, garbage, and a chain that does not link are refused.
    let import =
        |pem: &str| pb::ImportAuthorityCertificateRequest { id: ext.id.clone(), certificate_pem: pem.into() };
    expect_invalid_field(
        api.issuance.import_authority_certificate(import(&ext_root)).await,
        "certificate_pem",
    );
    expect_invalid_field(
        api.issuance.import_authority_certificate(import("garbage")).await,
        "certificate_pem",
    );
    expect_invalid_field(
        api.issuance.import_authority_certificate(import(&format!("{signed}{signed}"))).await,
        "certificate_pem",
    );
    assert_eq!(store_snapshot(&env.store_path()), before);

    let active = api
        .issuance
        .import_authority_certificate(import(&format!("{signed}{ext_root}")))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(active.status, pb::AuthorityStatus::Active as i32);
    assert_eq!(active.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
    expect_code(api.issuance.import_authority_certificate(import(&signed)).await, Code::FailedPrecondition);

    let leaf = api
        .issuance
        .issue_certificate(issue_req(&ext.id, "ecc-device", &[("organization", "Acme")], &leaf_csr))
        .await
        .expect("issue")
        .into_inner();
    write(dir, "leaf.pem", &leaf.certificate_pem);
    openssl(dir, &["verify", "-CAfile", "ext-root.pem", "-untrusted", "ext.pem", "leaf.pem"]);

    // The configured profile: listed, bound to its authority, its parameter checked.
    let listed = api.issuance.list_profiles(pb::ListProfilesRequest {}).await.expect("profiles").into_inner();
    let vpn = listed.profiles.iter().find(|p| p.id == "vpn-client").expect("configured profile listed");
    assert_eq!((vpn.authority_name.as_str(), vpn.validity_years), ("Devices CA", 2));
    let vpn_csr = key_and_csr(dir, "vpn", "ec:P-256", "/CN=ignored");
    expect_invalid_field(
        api.issuance
            .issue_certificate(issue_req(&ext.id, "vpn-client", &[("user", "Alice!")], &vpn_csr))
            .await,
        "params.user",
    );
    expect_invalid_field(
        api.issuance.issue_certificate(issue_req(&ext.id, "vpn-client", &[], &vpn_csr)).await,
        "params.user",
    );
    let other = api
        .issuance
        .create_authority(create_req("Other", "EC:P-256", "CN=Other Root", pb::AuthorityKind::Root, ""))
        .await
        .expect("other root")
        .into_inner();
    expect_invalid_field(
        api.issuance
            .issue_certificate(issue_req(&other.id, "vpn-client", &[("user", "alice")], &vpn_csr))
            .await,
        "authority_id",
    );
    let vpn_cert = api
        .issuance
        .issue_certificate(issue_req(&ext.id, "vpn-client", &[("user", "alice")], &vpn_csr))
        .await
        .expect("issue vpn")
        .into_inner();
    assert_eq!(vpn_cert.subject_dn, "CN=alice,OU=VPN,O=Acme");
    write(dir, "vpn.pem", &vpn_cert.certificate_pem);
    openssl(
        dir,
        &["verify", "-CAfile", "ext-root.pem", "-untrusted", "ext.pem", "-purpose", "sslclient", "vpn.pem"],
    );
    let text = openssl(dir, &["x509", "-in", "vpn.pem", "-noout", "-text"]);
    assert!(text.contains("Digital Signature, Key Agreement"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");

    api.issuance
        .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 5, ids: vec![leaf.id.clone()] })
        .await
        .expect("revoke");
    let crl = fetch_crl(&mut api, dir, &ext.id, "ext.crl").await;
    assert_eq!(crl.crl_number, 2);
    write(dir, "ext-chain.pem", &active.chain_pem);
    openssl(dir, &["crl", "-in", "ext.crl", "-CAfile", "ext-chain.pem", "-noout", "-verify"]);
    let listed = crl_entries(&openssl(dir, &["crl", "-in", "ext.crl", "-noout", "-text"]));
    assert_eq!(
        listed,
        [(norm_serial(&leaf.serial_number), "Cessation Of Operation".to_owned())].into_iter().collect()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_issuance_and_revocation_keep_crls_consecutive_and_complete() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = dir.as_path();
    let root = api
        .issuance
        .create_authority(create_req("Root", "EC:P-256", "CN=Concurrency Root", pb::AuthorityKind::Root, ""))
        .await
        .expect("root")
        .into_inner();
    write(dir, "root.pem", &root.certificate_pem);
    let csr = key_and_csr(dir, "shared", "ec:P-256", "/CN=shared");

    // 12 issuances at once from one CSR: 12 certificates, 12 distinct serials.
    let mut tasks = Vec::new();
    for n in 0..12 {
        let (endpoint, root_id, csr) = (daemon.endpoint.clone(), root.id.clone(), csr.clone());
        tasks.push(tokio::spawn(async move {
            let mut api = api_as(&endpoint, "admin", ADMIN_PASSWORD).await;
            let cn = format!("dev-{n}");
            api.issuance
                .issue_certificate(issue_req(&root_id, "ecc-device", &[("commonName", cn.as_str())], &csr))
                .await
                .expect("issue")
                .into_inner()
        }));
    }
    let mut certs = Vec::new();
    for t in tasks {
        certs.push(t.await.expect("task"));
    }
    let serials: std::collections::HashSet<_> = certs.iter().map(|c| c.serial_number.clone()).collect();
    assert_eq!(serials.len(), 12);

    // 12 revocations at once: each publishes its own CRL; numbers end at 13 and the last
    // CRL lists all 12.
    let mut tasks = Vec::new();
    for c in &certs {
        let (endpoint, id) = (daemon.endpoint.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut api = api_as(&endpoint, "admin", ADMIN_PASSWORD).await;
            api.issuance
                .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 3, ids: vec![id] })
                .await
                .expect("revoke")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let crl = fetch_crl(&mut api, dir, &root.id, "crl.pem").await;
    assert_eq!(crl.crl_number, 13);
    openssl(dir, &["crl", "-in", "crl.pem", "-CAfile", "root.pem", "-noout", "-verify"]);
    let listed = crl_entries(&openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]));
    let expected: BTreeMap<String, String> =
        certs.iter().map(|c| (norm_serial(&c.serial_number), "Affiliation Changed".to_owned())).collect();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_generated_keys_come_back_in_a_pkcs12_that_openssl_opens() {
    let env = TestEnv::new(0).expect("env");
    // Everything the daemon can log, to show that neither the password nor the key is in it.
    let daemon = Daemon::start_with_log_filter(&env, "trace").await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let dir = dir.as_path();
    use pb::AuthorityKind as K;
    let root = api
        .issuance
        .create_authority(create_req("Root", "EC:P-256", "CN=P12 Root,O=Acme", K::Root, ""))
        .await
        .expect("root")
        .into_inner();
    let inter = api
        .issuance
        .create_authority(create_req(
            "Issuing",
            "EC:P-384",
            "CN=P12 Issuing,O=Acme",
            K::Intermediate,
            &root.id,
        ))
        .await
        .expect("intermediate")
        .into_inner();
    write(dir, "root.pem", &root.certificate_pem);
    write(dir, "inter.pem", &inter.certificate_pem);
    let objects_before = list_token_objects(&env, "cardhsm-daemon").expect("objects");
    let password = "Gen-Key-P12-pass 42";

    for (name, profile, key_type, cn) in [
        ("ec256", "ecc-device", "EC:P-256", "generated device 1"),
        ("ec384", "ecc-server", "EC:P-384", "gen.example.com"),
        ("rsa", "rsa-device", "RSA:2048", "generated rsa device"),
    ] {
        let issued = api
            .issuance
            .issue_certificate(generate_req(&inter.id, profile, &[("commonName", cn)], key_type, password))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .into_inner();
        assert!(!issued.pkcs12.is_empty(), "{name}: no PKCS#12");
        assert!(issued.subject_dn.starts_with(&format!("CN={cn}")), "{}", issued.subject_dn);
        let p12 = format!("{name}.p12");
        std::fs::write(dir.join(&p12), &issued.pkcs12).expect("write p12");
        write(dir, &format!("{name}.pem"), &issued.certificate_pem);

        // openssl opens it with the password: the certificate, the chain and the key.
        let pass = format!("pass:{password}");
        let out = format!("{name}-out.pem");
        openssl(dir, &["pkcs12", "-in", &p12, "-passin", &pass, "-nodes", "-out", &out]);
        let opened = std::fs::read_to_string(dir.join(&out)).expect("opened");
        assert_eq!(opened.matches("BEGIN CERTIFICATE").count(), 3, "{name}: leaf + intermediate + root");
        assert_eq!(opened.matches("BEGIN PRIVATE KEY").count(), 1, "{name}: one key");
        assert!(opened.contains(&format!("friendlyName: {cn}")), "{name}: friendly name = CN:\n{opened}");
        // The leaf it holds is the one returned.
        let leaf = openssl(dir, &["pkcs12", "-in", &p12, "-passin", &pass, "-clcerts", "-nokeys"]);
        let leaf_file = format!("{name}-leaf.pem");
        write(dir, &leaf_file, &leaf);
        assert_eq!(
            openssl(dir, &["x509", "-in", &leaf_file, "-noout", "-fingerprint", "-sha256"]),
            openssl(dir, &["x509", "-in", &format!("{name}.pem"), "-noout", "-fingerprint", "-sha256"]),
            "{name}"
        );
        // The key is the certificate's key.
        let key_pub = openssl(dir, &["pkey", "-in", &out, "-pubout"]);
        let cert_pub = openssl(dir, &["x509", "-in", &format!("{name}.pem"), "-noout", "-pubkey"]);
        assert_eq!(key_pub, cert_pub, "{name}: key and certificate disagree");
        let alg = openssl(dir, &["x509", "-in", &format!("{name}.pem"), "-noout", "-text"]);
        match key_type {
            "EC:P-256" => assert!(alg.contains("NIST CURVE: P-256"), "{name}: {alg}"),
            "EC:P-384" => assert!(alg.contains("NIST CURVE: P-384"), "{name}: {alg}"),
            _ => assert!(alg.contains("Public-Key: (2048 bit)"), "{name}: {alg}"),
        }
        // The certificate verifies against the CA chain.
        openssl(dir, &["verify", "-CAfile", "root.pem", "-untrusted", "inter.pem", &format!("{name}.pem")]);
        // A wrong password does not open it.
        let (ok, text) = openssl_try(
            dir,
            &["pkcs12", "-in", &p12, "-passin", "pass:wrong-password", "-nodes", "-out", "x.pem"],
        );
        assert!(!ok, "{name}: a wrong password opened the PKCS#12: {text}");

        // The store has the certificate, found like any other, and no key.
        let found = api
            .issuance
            .find_certificates(pb::FindCertificatesRequest {
                common_name: cn.into(),
                serial_number: String::new(),
                page: None,
            })
            .await
            .expect("find")
            .into_inner();
        assert_eq!(found.certificates.len(), 1, "{name}");
        assert_eq!(found.certificates[0].id, issued.id);
    }
    // Generated in software: the daemon token gained no objects.
    assert_eq!(list_token_objects(&env, "cardhsm-daemon").expect("objects"), objects_before);

    // Bad input: named, and nothing changes.
    let good_csr = key_and_csr(dir, "csr-device", "ec:P-256", "/CN=csr device");
    let before = store_snapshot(&env.store_path());
    let iss = &mut api.issuance;
    let params = [("commonName", "refused device")];
    // Both a CSR and generate_key.
    let both = pb::IssueCertificateRequest {
        csr_pem: good_csr.clone(),
        ..generate_req(&inter.id, "ecc-device", &params, "EC:P-256", password)
    };
    expect_invalid_field(iss.issue_certificate(both).await, "generate_key");
    // Neither.
    expect_invalid_field(
        iss.issue_certificate(issue_req(&inter.id, "ecc-device", &params, "")).await,
        "csr_pem",
    );
    // A short password, and none.
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "ecc-device", &params, "EC:P-256", "short7!")).await,
        "pkcs12_password",
    );
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "ecc-device", &params, "EC:P-256", "")).await,
        "pkcs12_password",
    );
    // Key types the profile does not accept, unknown ones, and none.
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "ecc-device", &params, "RSA:2048", password)).await,
        "key_type",
    );
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "rsa-device", &params, "EC:P-256", password)).await,
        "key_type",
    );
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "ecc-device", &params, "EC:P-521", password)).await,
        "key_type",
    );
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "ecc-device", &params, "", password)).await,
        "key_type",
    );
    // The generated-key fields on a CSR request.
    let stray = pb::IssueCertificateRequest {
        pkcs12_password: password.into(),
        ..issue_req(&inter.id, "ecc-device", &params, &good_csr)
    };
    expect_invalid_field(iss.issue_certificate(stray).await, "pkcs12_password");
    // The usual parameter checks apply to a generated key too.
    expect_invalid_field(
        iss.issue_certificate(generate_req(&inter.id, "ecc-device", &[], "EC:P-256", password)).await,
        "params.commonName",
    );
    assert_eq!(store_snapshot(&env.store_path()), before, "refused requests changed the store");

    // Neither the password nor any key material reaches the log, even at trace level.
    let log = daemon.log();
    assert!(log.contains("IssuanceService/IssueCertificate"), "the requests should be in the trace log");
    assert!(!log.contains(password), "the PKCS#12 password is in the daemon log");
    for needle in ["PRIVATE KEY", "short7!"] {
        assert!(!log.contains(needle), "{needle:?} is in the daemon log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_authority_issues_nothing_but_still_revokes() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path();
    let ca = api
        .issuance
        .create_authority(create_req("Devices", "EC:P-256", "CN=Devices", pb::AuthorityKind::Root, ""))
        .await
        .expect("root")
        .into_inner();
    write(dir, "ca.pem", &ca.certificate_pem);
    let csr = key_and_csr(dir, "d1", "ec:P-256", "/CN=d1");
    let first = api
        .issuance
        .issue_certificate(issue_req(&ca.id, "ecc-device", &[], &csr))
        .await
        .expect("issue")
        .into_inner();

    let off = api
        .issuance
        .set_authority_enabled(pb::SetAuthorityEnabledRequest { id: ca.id.clone(), enabled: false })
        .await
        .expect("disable")
        .into_inner();
    assert!(!off.enabled);
    let got = api.issuance.get_authority(pb::GetAuthorityRequest { id: ca.id.clone() }).await.expect("get");
    assert!(!got.into_inner().enabled);
    let before = store_snapshot(&env.store_path());
    let refused = expect_code(
        api.issuance.issue_certificate(issue_req(&ca.id, "ecc-device", &[], &csr)).await,
        Code::FailedPrecondition,
    );
    assert!(refused.message().contains("disabled"), "{}", refused.message());
    assert_eq!(store_snapshot(&env.store_path()), before, "a refused issuance records nothing");
    // Revocation and its CRL go on.
    api.issuance
        .revoke_certificates(pb::RevokeCertificatesRequest { reason_code: 1, ids: vec![first.id.clone()] })
        .await
        .expect("revoke under a disabled authority");
    fetch_crl(&mut api, dir, &ca.id, "ca.crl").await;
    let text = openssl(dir, &["crl", "-in", "ca.crl", "-CAfile", "ca.pem", "-noout", "-text"]);
    assert!(text.contains("verify OK"), "{text}");
    assert_eq!(
        crl_entries(&text).get(&norm_serial(&first.serial_number)).map(String::as_str),
        Some("Key Compromise")
    );

    // Only administrators switch authorities; an unknown id is NOT_FOUND.
    let (user, user_pw) = ("officer1", "officer-password-1");
    api.users
        .create_user(pb::CreateUserRequest {
            username: user.into(),
            password: user_pw.into(),
            roles: vec![pb::Role::Operator as i32],
            ..Default::default()
        })
        .await
        .expect("create officer");
    let mut officer = api_as(&daemon.endpoint, user, user_pw).await;
    expect_code(
        officer
            .issuance
            .set_authority_enabled(pb::SetAuthorityEnabledRequest { id: ca.id.clone(), enabled: true })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        api.issuance
            .set_authority_enabled(pb::SetAuthorityEnabledRequest {
                id: "00000000-0000-4000-8000-000000000000".into(),
                enabled: true,
            })
            .await,
        Code::NotFound,
    );

    let on = api
        .issuance
        .set_authority_enabled(pb::SetAuthorityEnabledRequest { id: ca.id.clone(), enabled: true })
        .await
        .expect("enable")
        .into_inner();
    assert!(on.enabled);
    api.issuance.issue_certificate(issue_req(&ca.id, "ecc-device", &[], &csr)).await.expect("issues again");
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_over_the_configured_limit_are_refused_and_change_nothing() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start_with(&env, "[server]\nmax_upload_bytes = 2048\n").await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = env.path();
    let ca = api
        .issuance
        .create_authority(create_req("Devices", "EC:P-256", "CN=Devices", pb::AuthorityKind::Root, ""))
        .await
        .expect("root")
        .into_inner();
    let csr = key_and_csr(dir, "d1", "ec:P-256", "/CN=d1");
    let before = store_snapshot(&env.store_path());
    // Over the field limit (a valid CSR padded with PEM-legal trailing text): the field is named.
    let padded = format!("{csr}{}", "\n".repeat(4096));
    let err = expect_code(
        api.issuance.issue_certificate(issue_req(&ca.id, "ecc-device", &[], &padded)).await,
        Code::InvalidArgument,
    );
    assert!(
        err.message().contains("csr_pem") && err.message().contains("max_upload_bytes"),
        "{}",
        err.message()
    );
    expect_invalid_field(
        api.issuance.issue_certificate(issue_req(&ca.id, "ecc-device", &[], &padded)).await,
        "csr_pem",
    );
    // Over the transport limit (twice the upload limit plus 64 KiB): refused before decoding.
    let huge = "A".repeat(200 * 1024);
    let err = api
        .issuance
        .issue_certificate(issue_req(&ca.id, "ecc-device", &[], &huge))
        .await
        .expect_err("too big");
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument),
        "{err:?}"
    );
    assert_eq!(store_snapshot(&env.store_path()), before);
    // A CSR within the limit still issues.
    api.issuance.issue_certificate(issue_req(&ca.id, "ecc-device", &[], &csr)).await.expect("issue");
}
