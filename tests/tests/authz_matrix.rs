//! End-to-end: the authorization matrix. Every RPC of every cardhsm.v1 service (read from the
//! API's descriptor set, so a new RPC without a row here fails) is called with an empty
//! message by ten principals — anonymous, USER, ORG_ADMIN, ECO_ADMIN, a card officer, an
//! administrator, the superAdministrator, an API key, an administrator by client certificate
//! and a disabled administrator — over client-certificate TLS, and each answer is checked
//! against the table below: refused by the authorization layer exactly where the table says
//! so. The table is written from the specification, not copied from the daemon's rules.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, ADMIN_USERNAME, TestEnv};
use std::collections::BTreeMap;
use std::time::Duration;
use support::mtls::{Pki, connect, start_mtls};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

const PASSWORD: &str = "matrix-password-0123";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    User,
    OrgAdmin,
    EcoAdmin,
    Operator,
    Admin,
    SuperAdmin,
    ApiKey,
    CertAdmin,
    DisabledAdmin,
}

use Who::*;

const EVERYONE: &[Who] =
    &[Anonymous, User, OrgAdmin, EcoAdmin, Operator, Admin, SuperAdmin, ApiKey, CertAdmin, DisabledAdmin];
/// Any valid credential (every principal holds some role).
const SIGNED_IN: &[Who] = &[User, OrgAdmin, EcoAdmin, Operator, Admin, SuperAdmin, ApiKey, CertAdmin];
/// Card and token officers: operators (the API key's realm grants OPERATOR) and administrators.
const OFFICERS: &[Who] = &[Operator, Admin, SuperAdmin, ApiKey, CertAdmin];
const ADMINS: &[Who] = &[Admin, SuperAdmin, CertAdmin];
const SUPER: &[Who] = &[SuperAdmin];
const ECO_ADMINS: &[Who] = &[EcoAdmin, Admin, SuperAdmin, CertAdmin];
const ORG_ADMINS: &[Who] = &[OrgAdmin, EcoAdmin, Admin, SuperAdmin, CertAdmin];
/// Batches are the organizations' work: their users and admins, and platform administrators.
const BATCHES: &[Who] = &[User, OrgAdmin, EcoAdmin, Admin, SuperAdmin, CertAdmin];

/// Who may call each RPC (short names: `Service/Method`).
fn table() -> BTreeMap<&'static str, &'static [Who]> {
    let rows: &[(&[&str], &[Who])] = &[
        (
            &[
                "AuthService/Login",
                "AuthService/Refresh",
                "AuthService/RealmAuth",
                "AuthService/RequestPasswordReset",
                "AuthService/ResetPassword",
                "AuthService/ValidateCode",
            ],
            EVERYONE,
        ),
        (
            &[
                "AuthService/WhoAmI",
                "AuthService/Logout",
                "AuthService/ChangePassword",
                "AuthService/ListApiKeys",
                "AuthService/RevokeApiKey",
                "UserService/GetCurrentUser",
                "UserService/UpdateCurrentUser",
                "UserService/UpdateEmail",
                "UserService/UpdateCredentials",
                "UserService/CheckEmail",
                "CardService/ListCards",
                "CardService/GetCard",
                "CardService/ChangePin",
                "CardService/UnblockPin",
                "IssuanceService/ListAuthorities",
                "IssuanceService/GetAuthority",
                "IssuanceService/ListProfiles",
                "IssuanceService/GetProfile",
                "IssuanceService/GetProfileParameters",
                "IssuanceService/GetProfileSubjectDn",
                "IssuanceService/GetCrl",
                "OrganizationService/GetOrganization",
                "OrganizationService/ListOrganizations",
                "OrganizationService/ListOrganizationItems",
                "OrganizationService/ListOrganizationAuthorities",
                "OrganizationService/GetOrganizationForCurrentUser",
                "PrivilegeService/GetUserPrivileges",
            ],
            SIGNED_IN,
        ),
        (
            &[
                "CardService/RegisterCard",
                "CardService/IssueCard",
                "CardService/DisableCard",
                "CardService/EnableCard",
                "CardService/RevokeCard",
                "CardService/PreUpdateCard",
                "CardService/ListTokens",
                "CardService/ListReaders",
                "CardService/WatchReaders",
                "IssuanceService/IssueCertificate",
                "IssuanceService/FindCertificates",
                "IssuanceService/RevokeCertificates",
                "IssuanceService/RevokeCertificate",
                "CertificateStoreService/ListCertificates",
                "CertificateStoreService/ImportCertificate",
                "CertificateStoreService/DeleteCertificate",
                "CertificateStoreService/CreateCsr",
                "CertificateStoreService/CompleteCsr",
                "CertificateStoreService/DeleteCertificateBySubject",
                "OrganizationService/CheckOrganization",
                "SystemService/GetSystemInformation",
            ],
            OFFICERS,
        ),
        (
            &[
                "SessionService/ListActiveSessions",
                "SessionService/DeleteSession",
                "SessionService/DeleteAllSessions",
                "SessionService/SetIdleTimeout",
                "IssuanceService/CreateAuthority",
                "IssuanceService/ImportAuthorityCertificate",
                "IssuanceService/SetAuthorityEnabled",
                "UserService/CreateUser",
                "UserService/SetUserEnabled",
                "UserService/CheckUsername",
                "UserService/RemoveUser",
                "OrganizationService/CreateOrganization",
                "OrganizationService/UpdateOrganization",
                "OrganizationService/AddOrganizationAuthority",
                "OrganizationService/UpdateOrganizationAuthority",
                "OrganizationService/RemoveOrganizationAuthority",
                "AdminService/ListAdmins",
                "AdminService/GetAdmin",
            ],
            ADMINS,
        ),
        (
            &[
                "AdminService/CreateAdmin",
                "AdminService/EditAdmin",
                "AdminService/DeleteAdmin",
                "AdminService/EnableAdmin",
                "AdminService/DisableAdmin",
                "AdminService/EnableAdmins",
                "AdminService/DisableAdmins",
                "AdminService/DeleteAdmins",
                // A restore replaces every user and key record.
                "SystemService/ExportConfiguration",
                "SystemService/ImportConfiguration",
            ],
            SUPER,
        ),
        (
            &[
                "EcosystemService/GetEcosystem",
                "EcosystemService/UpdateEcosystem",
                "EcosystemService/GetEcosystemStatistics",
            ],
            ECO_ADMINS,
        ),
        (
            &[
                "UserService/ListUsers",
                "UserService/GetUser",
                "UserService/UpdateUser",
                "PrivilegeService/SetUserPrivileges",
            ],
            ORG_ADMINS,
        ),
        (
            &[
                "BatchService/CreateBatch",
                "BatchService/CreateSingleCertBatch",
                "BatchService/UploadCsrBatch",
                "BatchService/UploadCsvBatch",
                "BatchService/ListGenerators",
                "BatchService/PreviewBatch",
                "BatchService/ListBatches",
                "BatchService/GetBatch",
                "BatchService/GetBatchStatus",
                "BatchService/GetProcessingInfo",
                "BatchService/GetBatchAuditLog",
                "BatchService/GetDeviceAuditLog",
                "BatchService/GetDeviceStatistics",
                "BatchService/RejectBatch",
                "BatchService/RevokeBatch",
                "BatchService/DownloadBatch",
                "BatchService/WatchBatch",
            ],
            BATCHES,
        ),
    ];
    let mut table = BTreeMap::new();
    for (methods, who) in rows {
        for m in *methods {
            assert!(table.insert(*m, *who).is_none(), "{m} is in the table twice");
        }
    }
    table
}

/// RPCs that end the caller's sessions (or everyone else's): called last, each with a fresh
/// credential, so they do not disturb the other rows.
const SESSION_ENDING: &[&str] = &["SessionService/DeleteAllSessions", "AuthService/Logout"];

/// How a principal calls: the client certificate its connection presents and its bearer
/// credential, if any.
struct Caller {
    channel: Channel,
    token: Option<String>,
}

/// Calls `path` with an empty message; the answer's status, or OK when the call was taken
/// (a stream that has not ended within a few seconds was taken too).
async fn call(caller: &Caller, path: &str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(caller.channel.clone());
    if let Err(e) = grpc.ready().await {
        return tonic::Status::unavailable(format!("not ready: {e}"));
    }
    let mut request = tonic::Request::new(tokio_stream::once(()));
    if let Some(t) = &caller.token {
        request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("ascii token"));
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = path.parse().expect("method path");
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        match grpc.streaming(request, path, codec).await {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                match tokio::time::timeout(Duration::from_secs(3), stream.message()).await {
                    Ok(Err(status)) => status,
                    _ => tonic::Status::ok(""),
                }
            }
        }
    })
    .await;
    answer.unwrap_or_else(|_| tonic::Status::ok("still running"))
}

/// Whether the authorization layer refused the call (rather than the service answering).
fn refused_by_layer(status: &tonic::Status, public: bool) -> bool {
    match status.code() {
        // The layer never refuses a public method; a service may answer UNAUTHENTICATED (a
        // wrong password at Login).
        Code::Unauthenticated => !public,
        Code::PermissionDenied => status.message().contains("may not call"),
        _ => false,
    }
}

async fn create_user(admin: &mut Api, username: &str, role: pb::Role) -> String {
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: PASSWORD.into(),
            roles: vec![role as i32],
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
        .id
}

async fn grant(admin: &mut Api, user_id: &str, role: pb::Role, organization_id: &str) {
    admin
        .privileges
        .set_user_privileges(pb::SetUserPrivilegesRequest {
            user_id: user_id.into(),
            privileges: vec![pb::Privilege {
                role: role as i32,
                ecosystem_id: String::new(),
                organization_id: organization_id.into(),
                profiles: vec![],
            }],
        })
        .await
        .expect("grant");
}

async fn login_on(channel: &Channel, username: &str, password: &str) -> String {
    pb::auth_service_client::AuthServiceClient::new(channel.clone())
        .login(pb::LoginRequest { username: username.into(), password: password.into() })
        .await
        .unwrap_or_else(|e| panic!("login {username}: {e}"))
        .into_inner()
        .access_token
}

async fn api_key_on(channel: &Channel) -> String {
    pb::auth_service_client::AuthServiceClient::new(channel.clone())
        .realm_auth(pb::RealmAuthRequest {
            realm: "ops".into(),
            username: "matrix_operator".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("realm auth")
        .into_inner()
        .api_key
}

fn authed(channel: &Channel, token: &str) -> Api {
    api_on(channel.clone(), Some(token.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_answers_every_principal_as_the_table_says() {
    let env = TestEnv::new(0).expect("env");
    let pki = Pki::new(&env);
    for name in ["certadmin", "offadmin"] {
        pki.client(name);
    }
    let realm = "[[auth.realms]]\nname = \"ops\"\nroles = [\"OPERATOR\"]\n";
    let daemon = start_mtls(&env, &pki, realm).await;
    let boot = connect(&daemon, &pki, "boot").await;

    // The principals.
    let super_token = login_on(&boot, ADMIN_USERNAME, ADMIN_PASSWORD).await;
    let mut admin = authed(&boot, &super_token);
    let org = admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest { name: "Matrix".into(), ..Default::default() })
        .await
        .expect("organization")
        .into_inner()
        .id;
    create_user(&mut admin, "matrix_admin", pb::Role::Admin).await;
    create_user(&mut admin, "matrix_operator", pb::Role::Operator).await;
    let user = create_user(&mut admin, "matrix_user", pb::Role::User).await;
    let org_admin = create_user(&mut admin, "matrix_orgadmin", pb::Role::User).await;
    let eco_admin = create_user(&mut admin, "matrix_ecoadmin", pb::Role::User).await;
    grant(&mut admin, &user, pb::Role::User, &org).await;
    grant(&mut admin, &org_admin, pb::Role::OrgAdmin, &org).await;
    grant(&mut admin, &eco_admin, pb::Role::EcoAdmin, "").await;
    let mut admins = pb::admin_service_client::AdminServiceClient::with_interceptor(
        boot.clone(),
        Bearer(Some(super_token.clone())),
    );
    for (name, enabled) in [("certadmin", true), ("offadmin", false)] {
        admins
            .create_admin(pb::CreateAdminRequest {
                username: format!("matrix_{name}"),
                name: "Matrix".into(),
                surname: "Admin".into(),
                email: format!("{name}@matrix.example"),
                role: pb::AdminRole::Administrator as i32,
                enabled,
                description: String::new(),
                certificate: pki.der_b64(name),
                certificate_uuid: String::new(),
            })
            .await
            .expect("create administrator");
    }

    let usernames: BTreeMap<Who, &str> = [
        (User, "matrix_user"),
        (OrgAdmin, "matrix_orgadmin"),
        (EcoAdmin, "matrix_ecoadmin"),
        (Operator, "matrix_operator"),
        (Admin, "matrix_admin"),
        (SuperAdmin, ADMIN_USERNAME),
    ]
    .into_iter()
    .collect();
    let cert_admin = connect(&daemon, &pki, "certadmin").await;
    let off_admin = connect(&daemon, &pki, "offadmin").await;
    // A fresh credential for `who` (a new session, or a new API key).
    let fresh = async |who: Who| -> Caller {
        match who {
            Anonymous => Caller { channel: boot.clone(), token: None },
            CertAdmin => Caller { channel: cert_admin.clone(), token: None },
            DisabledAdmin => Caller { channel: off_admin.clone(), token: None },
            ApiKey => Caller { channel: boot.clone(), token: Some(api_key_on(&boot).await) },
            _ => {
                let password = if who == SuperAdmin { ADMIN_PASSWORD } else { PASSWORD };
                Caller {
                    channel: boot.clone(),
                    token: Some(login_on(&boot, usernames[&who], password).await),
                }
            }
        }
    };
    let mut callers = BTreeMap::new();
    for who in EVERYONE {
        callers.insert(*who, fresh(*who).await);
    }
    // The matrix principals are who they say they are.
    let whoami = |who: Who| {
        let caller = &callers[&who];
        let mut c = pb::auth_service_client::AuthServiceClient::with_interceptor(
            caller.channel.clone(),
            Bearer(caller.token.clone()),
        );
        async move { c.who_am_i(pb::WhoAmIRequest {}).await.map(|r| r.into_inner().roles) }
    };
    assert!(whoami(OrgAdmin).await.expect("org admin").contains(&(pb::Role::OrgAdmin as i32)));
    assert!(whoami(EcoAdmin).await.expect("eco admin").contains(&(pb::Role::EcoAdmin as i32)));
    assert_eq!(whoami(CertAdmin).await.expect("cert admin"), [pb::Role::Admin as i32]);
    assert_eq!(whoami(ApiKey).await.expect("api key"), [pb::Role::Operator as i32]);
    assert_eq!(whoami(DisabledAdmin).await.expect_err("disabled").code(), Code::Unauthenticated);

    let table = table();
    let methods = cardhsm_proto::all_method_paths();
    let short = |m: &str| m.trim_start_matches("/cardhsm.v1.").to_owned();
    let missing: Vec<String> =
        methods.iter().map(|m| short(m)).filter(|m| !table.contains_key(m.as_str())).collect();
    assert!(missing.is_empty(), "RPCs without a row in the matrix: {missing:?}");
    let stale: Vec<&&str> = table.keys().filter(|k| !methods.iter().any(|m| short(m) == **k)).collect();
    assert!(stale.is_empty(), "rows for RPCs that do not exist: {stale:?}");

    let (ordinary, last): (Vec<&String>, Vec<&String>) =
        methods.iter().partition(|m| !SESSION_ENDING.contains(&short(m).as_str()));
    let mut wrong = Vec::new();
    let mut cells = 0;
    for method in ordinary.into_iter().chain(last) {
        let name = short(method);
        let allowed = table[name.as_str()];
        let public = allowed.contains(&Anonymous);
        let session_ending = SESSION_ENDING.contains(&name.as_str());
        for who in EVERYONE {
            let status = if session_ending {
                call(&fresh(*who).await, method).await
            } else {
                call(&callers[who], method).await
            };
            cells += 1;
            let refused = refused_by_layer(&status, public);
            if refused == allowed.contains(who) {
                wrong.push(format!(
                    "{name} as {who:?}: expected {}, got {:?} {:?}",
                    if allowed.contains(who) { "taken" } else { "refused" },
                    status.code(),
                    status.message()
                ));
            }
            // Refusals say why in the right terms: no credential is UNAUTHENTICATED, a
            // credential without the role is PERMISSION_DENIED.
            if refused {
                let expected = if matches!(who, Anonymous | DisabledAdmin) {
                    Code::Unauthenticated
                } else {
                    Code::PermissionDenied
                };
                if status.code() != expected {
                    wrong.push(format!(
                        "{name} as {who:?}: refused with {:?}, expected {expected:?}",
                        status.code()
                    ));
                }
            }
        }
    }
    assert_eq!(cells, methods.len() * EVERYONE.len());
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells disagree with the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
