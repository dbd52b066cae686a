//! End-to-end: SystemService through the real cardhsmd on real SoftHSM tokens and a real
//! SQLite file — system information (schema version as the store file says, the environment's
//! tokens with their serials), health per subsystem through the standard gRPC health service
//! (an absent token NOT_SERVING while the daemon serves), export then import into a second
//! daemon on byte copies of the same tokens (the same users, organizations, cards, authorities
//! and certificates come back, and the restored authority still signs), refused imports that
//! change nothing, NORMAL keeping the listen address and FULL taking the archive's
//! configuration, and the `cardhsm system` commands.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use std::path::Path;
use support::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BACKUP_PASSWORD: &str = "backup-password-0123";
const USER_PASSWORD: &str = "user-password-0123";

type SystemClient = pb::system_service_client::SystemServiceClient<Intercepted>;

async fn system_client(endpoint: &str, username: &str, password: &str) -> SystemClient {
    let token = login(endpoint, username, password).await.access_token;
    pb::system_service_client::SystemServiceClient::with_interceptor(
        channel(endpoint).await,
        Bearer(Some(token)),
    )
    .max_decoding_message_size(512 * 1024 * 1024)
    .max_encoding_message_size(512 * 1024 * 1024)
}

async fn export(system: &mut SystemClient, password: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = system
        .export_configuration(pb::ExportConfigurationRequest { password: password.into() })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

fn import_req(archive: &[u8], password: &str, mode: i32) -> pb::ImportConfigurationRequest {
    pb::ImportConfigurationRequest { archive: archive.to_vec(), password: password.into(), mode }
}

fn schema_of(db: &Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("db");
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version")
}

/// Every row of the tables a restore must bring back, in order.
fn records(db: &Path) -> Vec<String> {
    table_rows(
        db,
        &[
            "users",
            "admins",
            "organizations",
            "organization_authorities",
            "user_privileges",
            "cards",
            "card_keys",
            "authorities",
            "certificates",
            "token_certificates",
            "batches",
            "batch_devices",
        ],
    )
}

fn audit_actions(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("db");
    let mut stmt = conn.prepare("SELECT action FROM audit_log ORDER BY id").expect("prepare");
    stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
}

/// A config fragment naming a card token by serial (PIN from the environment's card PIN file).
fn card_token(env: &TestEnv, serial: &str) -> String {
    format!(
        "[[pkcs11.tokens]]\nserial = {serial:?}\nrole = \"card\"\npin = {{ file = {:?} }}\n",
        env.card_pin_file().display().to_string()
    )
}

/// An openssl key and CSR in `dir`; returns the CSR PEM.
fn csr(dir: &Path, cn: &str) -> String {
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "leaf.key"]);
    run(&["req", "-new", "-key", "leaf.key", "-subj", &format!("/CN={cn}"), "-out", "leaf.csr"]);
    std::fs::read_to_string(dir.join("leaf.csr")).expect("csr")
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn health(endpoint: &str, service: &str) -> Option<ServingStatus> {
    let mut client = HealthClient::new(channel(endpoint).await);
    match client.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await {
        Ok(r) => ServingStatus::try_from(r.into_inner().status).ok(),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => panic!("health check {service}: {s:?}"),
    }
}

/// The entry's status once the background task has set it (it runs every 2 s).
async fn health_when_set(endpoint: &str, service: &str) -> ServingStatus {
    for _ in 0..200 {
        if let Some(s) = health(endpoint, service).await {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("health entry {service} never appeared");
}

#[tokio::test(flavor = "multi_thread")]
async fn information_reports_version_schema_and_the_configured_tokens() {
    let env = TestEnv::new(1).expect("env");
    let card = env.card_serials[0].clone();
    let daemon = Daemon::start_with(&env, &card_token(&env, &card)).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "officer".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::Operator as i32],
            ..Default::default()
        })
        .await
        .expect("operator");
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "someone".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("user");

    // An operator may read it.
    let mut system = system_client(&daemon.endpoint, "officer", USER_PASSWORD).await;
    let info =
        system.get_system_information(pb::GetSystemInformationRequest {}).await.expect("info").into_inner();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(info.build.contains("debug") || info.build.contains("release"), "{}", info.build);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(info.host_name, host.trim());
    assert_eq!(info.store_schema_version, schema_of(&env.store_path()));
    let tokens: Vec<(&str, &str, bool, &str)> = info
        .tokens
        .iter()
        .map(|t| (t.serial.as_str(), t.label.as_str(), t.present, t.role.as_str()))
        .collect();
    assert_eq!(
        tokens,
        [
            (env.daemon_token_serial.as_str(), env.daemon_token_label.as_str(), true, "daemon"),
            (card.as_str(), env.card_labels[0].as_str(), true, "card"),
        ]
    );
    assert!(info.tokens.iter().all(|t| t.model == "SoftHSM v2"), "{:?}", info.tokens);

    // A USER may not; nor may an ADMIN or operator export or import (SUPER_ADMIN only).
    let mut user = system_client(&daemon.endpoint, "someone", USER_PASSWORD).await;
    expect_code(
        user.get_system_information(pb::GetSystemInformationRequest {}).await,
        Code::PermissionDenied,
    );
    let r = system
        .export_configuration(pb::ExportConfigurationRequest { password: BACKUP_PASSWORD.into() })
        .await;
    expect_code(r, Code::PermissionDenied);
    expect_code(
        system.import_configuration(import_req(b"x", BACKUP_PASSWORD, pb::ImportMode::Normal as i32)).await,
        Code::PermissionDenied,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_has_an_entry_per_subsystem_and_an_absent_token_is_not_serving() {
    let env = TestEnv::new(1).expect("env");
    let card = env.card_serials[0].clone();
    let absent = "0badc0ffee000001";
    let extra = format!("{}{}", card_token(&env, &card), card_token(&env, absent));
    let daemon = Daemon::start_with(&env, &extra).await.expect("daemon");

    assert_eq!(health_when_set(&daemon.endpoint, "cardhsm.store").await, ServingStatus::Serving);
    let daemon_token = format!("cardhsm.token.{}", env.daemon_token_serial);
    assert_eq!(health_when_set(&daemon.endpoint, &daemon_token).await, ServingStatus::Serving);
    assert_eq!(
        health_when_set(&daemon.endpoint, &format!("cardhsm.token.{card}")).await,
        ServingStatus::Serving
    );
    assert_eq!(
        health_when_set(&daemon.endpoint, &format!("cardhsm.token.{absent}")).await,
        ServingStatus::NotServing
    );
    // The test daemon's PC/SC socket has no pcscd behind it.
    assert_eq!(health_when_set(&daemon.endpoint, "cardhsm.readers").await, ServingStatus::NotServing);
    // The daemon keeps serving, and reports the absent token as not present.
    assert_eq!(health(&daemon.endpoint, "").await, Some(ServingStatus::Serving));
    let mut system = system_client(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let info =
        system.get_system_information(pb::GetSystemInformationRequest {}).await.expect("info").into_inner();
    let t = info.tokens.iter().find(|t| t.serial == absent).expect("absent token listed");
    assert!(!t.present);
}

/// Daemon A with an organization, a user, a card, an authority and a certificate; its archive.
struct Source {
    env: TestEnv,
    archive: Vec<u8>,
    records: Vec<String>,
    card_id: String,
    authority_id: String,
    certificate_serial: String,
    /// A finished batch of three devices.
    batch: pb::Batch,
}

async fn source_with_data(extra_toml: &str) -> Source {
    let env = TestEnv::new(1).expect("env");
    let card = env.card_serials[0].clone();
    let mut daemon =
        Daemon::start_with(&env, &format!("{extra_toml}{}", card_token(&env, &card))).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    api.organizations
        .create_organization(pb::CreateOrganizationRequest {
            name: "Acme Restored".into(),
            parameters: Default::default(),
            status: 0,
        })
        .await
        .expect("organization");
    api.users
        .create_user(pb::CreateUserRequest {
            username: "alice".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::Operator as i32],
            ..Default::default()
        })
        .await
        .expect("user");
    let card_id = api
        .cards
        .register_card(pb::RegisterCardRequest {
            token_serial: card,
            owner: "alice@corp.example".into(),
            label: "Badge".into(),
            pac_number: "004711".into(),
            policy: String::new(),
            reader: String::new(),
        })
        .await
        .expect("card")
        .into_inner()
        .id;
    let ca = api
        .issuance
        .create_authority(pb::CreateAuthorityRequest {
            name: "Root Restored".into(),
            key_algorithm: "EC:P-256".into(),
            subject_dn: "CN=Restored Root,O=Acme,C=CZ".into(),
            validity_years: 5,
            kind: pb::AuthorityKind::Root as i32,
            parent_id: String::new(),
        })
        .await
        .expect("authority")
        .into_inner();
    let cert = api
        .issuance
        .issue_certificate(pb::IssueCertificateRequest {
            authority_id: ca.id.clone(),
            profile_id: "ecc-device".into(),
            csr_pem: csr(env.path(), "device-1"),
            ..Default::default()
        })
        .await
        .expect("issue")
        .into_inner();

    let setup = support::batches::setup(&mut api, env.path(), "Batch Root", "Batch Org", 10).await;
    let req = support::batches::generator_req(&setup, "restored batch", 3, "restored-", "pkcs12-pass-0123");
    let created = api.batches.create_batch(req).await.expect("batch").into_inner();
    let batch = support::batches::wait_done(&mut api, &created.batch.expect("batch").id).await;
    assert_eq!(batch.status, pb::BatchStatus::ReadyForDownload as i32, "{batch:?}");

    let mut system = system_client(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    // The backup password policy.
    expect_invalid_field(
        system.export_configuration(pb::ExportConfigurationRequest { password: "short-pass".into() }).await,
        "password",
    );
    let archive = export(&mut system, BACKUP_PASSWORD).await.expect("export");
    assert!(!archive.windows(6).any(|w| w == b"SQLite"), "the archive is encrypted");
    assert!(!archive.windows(8).any(|w| w == b"[server]"), "the archive is encrypted");
    assert_eq!(audit_actions(&env.store_path()).last().map(String::as_str), Some("system.export"));
    // Tokens are copied while no daemon writes to them.
    daemon.stop().await;
    let records = records(&env.store_path());
    Source {
        env,
        archive,
        records,
        card_id,
        authority_id: ca.id,
        certificate_serial: cert.serial_number,
        batch,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_normal_import_into_a_daemon_on_copied_tokens_restores_everything() {
    let src = source_with_data("[auth]\naccess_token_ttl_secs = 600\n").await;
    let env = src.env.copy_tokens().expect("copy tokens");
    let port = free_port();
    let card = env.card_serials[0].clone();
    let mut daemon = Daemon::start_with(
        &env,
        &format!(
            "[server]\ngrpc_listen = \"127.0.0.1:{port}\"\nrest_listen = \"127.0.0.1:0\"\n{}",
            card_token(&env, &card)
        ),
    )
    .await
    .expect("daemon B");
    let mut system = system_client(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;

    // Refused imports change nothing: not the store, not the configuration, no staged file.
    let before = store_snapshot(&env.store_path());
    let config_before = std::fs::read_to_string(&daemon.config_path).expect("config");
    let normal = pb::ImportMode::Normal as i32;
    let r = system.import_configuration(import_req(&src.archive, "wrong-password-000", normal)).await;
    expect_invalid_field(r, "password");
    let mut flipped = src.archive.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    expect_invalid_field(
        system.import_configuration(import_req(&flipped, BACKUP_PASSWORD, normal)).await,
        "archive",
    );
    let truncated = &src.archive[..src.archive.len() - 100];
    expect_invalid_field(
        system.import_configuration(import_req(truncated, BACKUP_PASSWORD, normal)).await,
        "archive",
    );
    expect_invalid_field(
        system.import_configuration(import_req(b"not a backup at all", BACKUP_PASSWORD, normal)).await,
        "archive",
    );
    for mode in [pb::ImportMode::Unspecified as i32, 7] {
        expect_invalid_field(
            system.import_configuration(import_req(&src.archive, BACKUP_PASSWORD, mode)).await,
            "mode",
        );
    }
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert_eq!(std::fs::read_to_string(&daemon.config_path).expect("config"), config_before);
    let leftovers: Vec<_> = std::fs::read_dir(env.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".import") || n.starts_with(".cardhsm-export"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The real import: answered, then the daemon restarts itself on the restored store.
    std::fs::remove_file(&daemon.ready_path).expect("remove ready file");
    let pid = daemon.pid();
    let answer = system
        .import_configuration(import_req(&src.archive, BACKUP_PASSWORD, normal))
        .await
        .expect("import")
        .into_inner();
    assert!(answer.restarting);
    assert_eq!(answer.schema_version, schema_of(&env.store_path()));
    let serials: Vec<&str> = answer.tokens.iter().map(|t| t.serial.as_str()).collect();
    assert_eq!(serials, [env.daemon_token_serial.as_str(), card.as_str()]);
    daemon.wait_ready_again().await.expect("daemon B back after the restore");
    assert_eq!(daemon.pid(), pid, "re-executed in place");
    // NORMAL kept B's listen address.
    assert_eq!(daemon.addr.port(), port);

    // The same records, row for row, and the import audited in the restored store.
    assert_eq!(records(&env.store_path()), src.records);
    assert_eq!(audit_actions(&env.store_path()).last().map(String::as_str), Some("system.import"));
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&daemon.config_path).expect("config")).expect("toml");
    assert_eq!(config["server"]["grpc_listen"].as_str(), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(config["auth"]["access_token_ttl_secs"].as_integer(), Some(600), "the rest is the archive's");
    assert_eq!(config["store"]["path"].as_str(), Some(env.store_path().to_string_lossy().as_ref()));

    // Through the API: A's user signs in, A's card, authority and certificate are there, and
    // the restored authority still signs with its key in the (copied) HSM.
    let mut alice = api_as(&daemon.endpoint, "alice", USER_PASSWORD).await;
    let got = alice
        .cards
        .get_card(pb::GetCardRequest { id: src.card_id.clone() })
        .await
        .expect("card")
        .into_inner();
    assert_eq!(got.serial_number, card);
    let found = alice
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            serial_number: src.certificate_serial.clone(),
            ..Default::default()
        })
        .await
        .expect("find")
        .into_inner();
    assert_eq!(found.certificates.len(), 1);
    let orgs = alice.organizations.list_organizations(pb::ListOrganizationsRequest::default()).await;
    let orgs = orgs.expect("organizations").into_inner();
    assert!(orgs.organizations.iter().any(|o| o.name == "Acme Restored"), "{orgs:?}");
    let issued = alice
        .issuance
        .issue_certificate(pb::IssueCertificateRequest {
            authority_id: src.authority_id.clone(),
            profile_id: "ecc-device".into(),
            csr_pem: csr(env.path(), "device-2"),
            ..Default::default()
        })
        .await
        .expect("the restored authority signs")
        .into_inner();
    assert!(issued.subject_dn.starts_with("CN=device-2"), "{}", issued.subject_dn);

    // The batch: the same status, size, name and issued devices.
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let batch = admin
        .batches
        .get_batch(pb::GetBatchRequest { id: src.batch.id.clone() })
        .await
        .expect("the batch is back")
        .into_inner();
    assert_eq!(
        (batch.status, batch.batch_size, batch.issued, &batch.name),
        (src.batch.status, 3, 3, &src.batch.name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_import_takes_the_archives_whole_configuration() {
    let src = source_with_data("[server]\nmax_upload_bytes = 2000000\n").await;
    let env = src.env.copy_tokens().expect("copy tokens");
    let mut daemon = Daemon::start(&env).await.expect("daemon B");
    let mut system = system_client(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    // A's configuration names A's ready file: the restored daemon announces itself there.
    daemon.ready_path = src.env.ready_path();
    let _ = std::fs::remove_file(&daemon.ready_path);
    system
        .import_configuration(import_req(&src.archive, BACKUP_PASSWORD, pb::ImportMode::Full as i32))
        .await
        .expect("import");
    daemon.wait_ready_again().await.expect("daemon B back after the restore");
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&daemon.config_path).expect("config")).expect("toml");
    let a: toml::Table =
        toml::from_str(&std::fs::read_to_string(src.env.config_path()).expect("A's config")).expect("toml");
    assert_eq!(config["server"], a["server"], "FULL takes the archive's [server]");
    assert_eq!(config["server"]["max_upload_bytes"].as_integer(), Some(2_000_000));
    assert_eq!(config["pkcs11"], a["pkcs11"]);
    // The store stays where this daemon keeps it.
    assert_eq!(config["store"]["path"].as_str(), Some(env.store_path().to_string_lossy().as_ref()));
    assert_eq!(records(&env.store_path()), src.records);
    let mut api = api_as(&daemon.endpoint, "alice", USER_PASSWORD).await;
    api.cards.get_card(pb::GetCardRequest { id: src.card_id.clone() }).await.expect("card");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_info_health_export_and_import() {
    let env = TestEnv::new(0).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);

    let info = cli.json(&["system", "info"]);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["store_schema_version"], schema_of(&env.store_path()));
    assert_eq!(info["tokens"][0]["serial"], env.daemon_token_serial.as_str());
    assert_eq!(info["tokens"][0]["present"], true);

    health_when_set(&daemon.endpoint, "cardhsm.readers").await;
    let health = cli.json(&["system", "health"]);
    let status = |name: &str| {
        health.as_array().expect("array").iter().find(|e| e["service"] == name).map(|e| e["status"].clone())
    };
    assert_eq!(status("cardhsm.store"), Some("SERVING".into()), "{health}");
    assert_eq!(status(&format!("cardhsm.token.{}", env.daemon_token_serial)), Some("SERVING".into()));
    assert_eq!(status("cardhsm.readers"), Some("NOT_SERVING".into()), "no pcscd behind the test socket");

    // Export: the password from CARDHSM_PASSWORD, the policy enforced by the daemon.
    let mut short = cli.command(&["system", "export", "--out", "backup.chsm"]);
    short.env("CARDHSM_PASSWORD", "too-short");
    CliHome::output(short).failed_with("INVALID_ARGUMENT");
    let mut export = cli.command(&["--output", "json", "system", "export", "--out", "backup.chsm"]);
    export.env("CARDHSM_PASSWORD", BACKUP_PASSWORD);
    let written = CliHome::output(export).ok().json();
    let archive = std::fs::read(cli.dir.join("backup.chsm")).expect("archive");
    assert_eq!(written["bytes"], archive.len());

    // A change after the export, which the import takes back.
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    api.users
        .create_user(pb::CreateUserRequest {
            username: "bobby".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::Operator as i32],
            ..Default::default()
        })
        .await
        .expect("bobby");

    // A bad mode is refused by the CLI, a wrong password by the daemon; nothing changes.
    let before = store_snapshot(&env.store_path());
    let bad_mode = cli.run(&["system", "import", "backup.chsm", "--mode", "partial"]);
    assert_eq!(bad_mode.code, Some(2), "{bad_mode:#?}");
    let mut wrong = cli.command(&["system", "import", "backup.chsm", "--mode", "normal"]);
    wrong.env("CARDHSM_PASSWORD", "not-the-backup-password");
    let first = CliHome::output(wrong).failed_with("INVALID_ARGUMENT").to_owned();
    assert!(first.contains("password"), "{first}");
    assert_eq!(store_snapshot(&env.store_path()), before);

    std::fs::remove_file(&daemon.ready_path).expect("remove ready file");
    let mut import =
        cli.command(&["--output", "json", "system", "import", "backup.chsm", "--mode", "normal"]);
    import.env("CARDHSM_PASSWORD", BACKUP_PASSWORD);
    let answer = CliHome::output(import).ok().json();
    assert_eq!(answer["restarting"], true);
    daemon.wait_ready_again().await.expect("back after the restore");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let users = api.users.list_users(pb::ListUsersRequest::default()).await.expect("users").into_inner();
    let names: Vec<&str> = users.users.iter().map(|u| u.username.as_str()).collect();
    assert!(names.contains(&"admin") && !names.contains(&"bobby"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_staged_before_the_daemon_died_is_finished_at_its_next_start() {
    // The source: a store with a user the target does not have.
    let src_env = TestEnv::new(0).expect("env");
    let mut src = Daemon::start(&src_env).await.expect("source daemon");
    let mut api = api_as(&src.endpoint, "admin", ADMIN_PASSWORD).await;
    let carol = api
        .users
        .create_user(pb::CreateUserRequest {
            username: "carol_restored".into(),
            password: USER_PASSWORD.into(),
            roles: vec![pb::Role::Operator as i32],
            ..Default::default()
        })
        .await
        .expect("user")
        .into_inner();
    src.stop().await;

    // The target stopped after an import had staged its files but before it restarted (as
    // a SIGKILL between ImportConfiguration's answer and the restart would leave it).
    let env = TestEnv::new(0).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("target daemon");
    daemon.stop().await;
    let staged_store = format!("{}.import", env.store_path().display());
    rusqlite::Connection::open(src_env.store_path())
        .expect("source store")
        .execute("VACUUM INTO ?1", [&staged_store])
        .expect("stage the store");
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let staged_config = format!("{}.import", env.config_path().display());
    std::fs::write(&staged_config, format!("{config}\n# restored configuration\n")).expect("stage config");

    daemon.start_again().await.expect("the daemon starts and finishes the restore");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let user = api
        .users
        .get_user(pb::GetUserRequest { id: carol.id.clone(), ..Default::default() })
        .await
        .expect("the restored store's user is there")
        .into_inner();
    assert_eq!(user.username, "carol_restored");
    assert!(std::fs::read_to_string(env.config_path()).expect("config").contains("# restored configuration"));
    assert!(!Path::new(&staged_store).exists() && !Path::new(&staged_config).exists(), "nothing left staged");
    assert!(
        daemon.log().contains("finishing a restore staged before the daemon last stopped"),
        "{}",
        daemon.log()
    );
}
