//! End-to-end: the batch platform's directory routes over real HTTP against the real daemon —
//! organizations and their authorities and balances, ecosystems, generators, profiles, users
//! and privileges. Every answer is checked against the served OpenAPI document (by the test
//! client); every change is read back through gRPC or the SQLite file; bad values are 400 in
//! the plain shape naming the field (camelCase) and change nothing; scoping holds (an
//! ORG_ADMIN sees only its organization, others are 404).

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::{Value, json};
use support::rest::{Body, Rest, rest_as};
use support::{Api, api_as, table_rows};

const PASSWORD: &str = "directory-password-0123";

/// Asserts a plain-shape 400 naming `field`.
#[track_caller]
fn assert_bad_field(reply: &support::rest::Reply, field: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.body["status"], 400, "{}", reply.body);
    assert_eq!(reply.body["error"], "Bad Request", "{}", reply.body);
    assert_eq!(reply.body["field"], field, "{}", reply.body);
    assert!(reply.body["message"].as_str().is_some_and(|m| m.contains(field)), "{}", reply.body);
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

/// An authority made over gRPC (authority creation is not a directory route).
async fn create_authority(admin: &mut Api, name: &str) -> String {
    admin
        .issuance
        .create_authority(support::create_req(
            name,
            "EC:P-256",
            &format!("CN={name},O=Directory,C=CZ"),
            pb::AuthorityKind::Root,
            "",
        ))
        .await
        .expect("authority")
        .into_inner()
        .id
}

/// A user as gRPC sees it.
async fn grpc_user(api: &Api, id: &str) -> pb::User {
    let mut users = api.users.clone();
    users
        .get_user(pb::GetUserRequest { id: id.to_owned(), organization_id: String::new() })
        .await
        .expect("get over gRPC")
        .into_inner()
}

/// An organization's authority assignments as gRPC sees them.
async fn grpc_assignments(api: &Api, organization_id: &str) -> Vec<pb::OrganizationAuthority> {
    let mut organizations = api.organizations.clone();
    organizations
        .list_organization_authorities(pb::ListOrganizationAuthoritiesRequest {
            organization_id: organization_id.to_owned(),
        })
        .await
        .expect("assignments over gRPC")
        .into_inner()
        .authorities
}

/// A user made over REST, privileged over REST, then signed in (the token's scope comes from
/// the privileges).
async fn privileged(daemon: &Daemon, admin: &Rest, username: &str, grants: Value) -> (String, Rest) {
    let created = admin
        .post("/api/v1/users", json!({ "username": username, "password": PASSWORD, "roles": ["USER"] }))
        .await
        .expect(201);
    let id = str_of(&created.body["id"]);
    admin.put(&format!("/api/v1/users/{id}/privileges"), json!({ "privileges": grants })).await.expect(200);
    (id, rest_as(daemon, username, PASSWORD).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_authorities_and_balances() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let db = env.store_path();
    let mut grpc = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let admin = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;

    // Without a credential: 401 in the plain shape.
    let anonymous = Rest::new(&daemon).await;
    let r = anonymous.get("/api/v1/organizations").await.expect(401);
    assert_eq!(r.body["status"], 401);

    // Create, seen through gRPC.
    let r = admin
        .post(
            "/api/v1/organizations",
            json!({ "name": "Alpha", "parameters": { "COUNTRY": "CZ", "CITY": "Brno" } }),
        )
        .await
        .expect(201);
    assert_eq!(r.body["name"], "Alpha");
    assert_eq!(r.body["status"], "ACTIVE");
    assert_eq!(r.body["parameters"], json!({ "CITY": "Brno", "COUNTRY": "CZ" }));
    assert!(r.body["createdAt"].as_i64().is_some_and(|t| t > 0), "{}", r.body);
    let alpha = str_of(&r.body["id"]);
    let seen = grpc
        .organizations
        .get_organization(pb::GetOrganizationRequest { id: alpha.clone() })
        .await
        .expect("get over gRPC")
        .into_inner();
    assert_eq!(
        (seen.name.as_str(), seen.parameters.get("CITY").map(String::as_str)),
        ("Alpha", Some("Brno"))
    );
    let beta =
        str_of(&admin.post("/api/v1/organizations", json!({ "name": "Beta" })).await.expect(201).body["id"]);

    // Refusals change nothing: a duplicate, a bad parameter, a wrong type, an unknown enum
    // value, broken JSON, no body at all.
    let before = table_rows(&db, &["organizations", "audit_log"]);
    let r = admin.post("/api/v1/organizations", json!({ "name": "ALPHA" })).await.expect(409);
    assert!(r.body["message"].as_str().is_some_and(|m| m.contains("already exists")), "{}", r.body);
    let r = admin
        .post("/api/v1/organizations", json!({ "name": "Gamma", "parameters": { "COUNTRY": "cz" } }))
        .await;
    assert_bad_field(&r, "parameters.COUNTRY");
    assert_bad_field(&admin.post("/api/v1/organizations", json!({ "name": 5 })).await, "name");
    assert_bad_field(
        &admin.post("/api/v1/organizations", json!({ "name": "Gamma", "status": "SLEEPING" })).await,
        "status",
    );
    assert_bad_field(&admin.post("/api/v1/organizations", json!({})).await, "name");
    let r = admin
        .call("POST", "/api/v1/organizations", Body::Raw("application/json", b"{\"name\": ".to_vec()))
        .await
        .expect(400);
    assert!(r.body["message"].as_str().is_some_and(|m| m.contains("not valid JSON")), "{}", r.body);
    assert_eq!(table_rows(&db, &["organizations", "audit_log"]), before, "a refusal wrote something");

    // List (paged), one, items, check.
    let r = admin.get("/api/v1/organizations?page=0&size=1").await.expect(200);
    assert_eq!(r.body["totalElements"], 2);
    assert_eq!(r.body["content"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["content"][0]["name"], "Alpha");
    let r = admin.get("/api/v1/organizations?page=1&size=1").await.expect(200);
    assert_eq!(r.body["content"][0]["name"], "Beta");
    assert_bad_field(&admin.get("/api/v1/organizations?size=51").await, "size");
    assert_bad_field(&admin.get("/api/v1/organizations?size=many").await, "size");
    let r = admin.get(&format!("/api/v1/organizations/{beta}")).await.expect(200);
    assert_eq!(r.body["name"], "Beta");
    let r = admin.get("/api/v1/organizations/0b5a4d0e-0000-4000-8000-000000000000").await.expect(404);
    assert_eq!(r.body["status"], 404);
    let r = admin.get("/api/v1/organizations/items").await.expect(200);
    assert_eq!(r.body, json!([{ "id": alpha, "name": "Alpha" }, { "id": beta, "name": "Beta" }]));
    let r = admin.get("/api/v1/organizations/check?name=alpha").await.expect(200);
    assert_eq!(r.body, json!({ "available": false }));
    let r = admin.get("/api/v1/organizations/check?name=Gamma").await.expect(200);
    assert_eq!(r.body, json!({ "available": true }));

    // Update, seen through gRPC.
    let r = admin
        .put(
            &format!("/api/v1/organizations/{beta}"),
            json!({ "name": "Beta Ltd", "parameters": { "MANUFACTURER_ID": "042" }, "status": "INACTIVE" }),
        )
        .await
        .expect(200);
    assert_eq!((r.body["name"].clone(), r.body["status"].clone()), (json!("Beta Ltd"), json!("INACTIVE")));
    let seen = grpc
        .organizations
        .get_organization(pb::GetOrganizationRequest { id: beta.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(seen.name, "Beta Ltd");
    assert_eq!(seen.status, pb::OrganizationStatus::Inactive as i32);
    assert_eq!(seen.parameters.get("MANUFACTURER_ID").map(String::as_str), Some("042"));
    assert_bad_field(
        &admin
            .put(
                &format!("/api/v1/organizations/{beta}"),
                json!({ "name": "B", "parameters": { "NOPE": "1" } }),
            )
            .await,
        "parameters.NOPE",
    );
    admin
        .put("/api/v1/organizations/0b5a4d0e-0000-4000-8000-000000000000", json!({ "name": "Nobody" }))
        .await
        .expect(404);

    // Authorities assigned to an organization, with balances.
    let authority = create_authority(&mut grpc, "Directory Root").await;
    let r = admin
        .post(
            &format!("/api/v1/organizations/{alpha}/authorities"),
            json!({ "authorityId": authority, "balance": 100, "enabled": true }),
        )
        .await
        .expect(201);
    assert_eq!(
        r.body,
        json!({ "authorityId": authority, "authorityName": "Directory Root", "balance": 100, "used": 0,
                "available": 100, "enabled": true })
    );
    let seen = grpc_assignments(&grpc, &alpha).await;
    assert_eq!((seen.len(), seen[0].balance), (1, 100));
    admin
        .post(
            &format!("/api/v1/organizations/{alpha}/authorities"),
            json!({ "authorityId": authority, "balance": 1, "enabled": true }),
        )
        .await
        .expect(409);
    assert_bad_field(
        &admin
            .post(
                &format!("/api/v1/organizations/{alpha}/authorities"),
                json!({ "authorityId": authority, "balance": "lots", "enabled": true }),
            )
            .await,
        "balance",
    );
    let r = admin
        .put(&format!("/api/v1/organizations/{alpha}/authorities/{authority}"), json!({ "balance": 50 }))
        .await
        .expect(200);
    assert_eq!((r.body["balance"].clone(), r.body["enabled"].clone()), (json!(50), json!(true)));
    assert_eq!(grpc_assignments(&grpc, &alpha).await[0].balance, 50);
    assert_bad_field(
        &admin
            .put(&format!("/api/v1/organizations/{alpha}/authorities/{authority}"), json!({ "balance": -1 }))
            .await,
        "balance",
    );
    let r = admin.get(&format!("/api/v1/organizations/{alpha}/authorities")).await.expect(200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["available"], 50);

    // The balance routes.
    let r = admin.get(&format!("/api/v1/authorities/{authority}/balanceused/{alpha}")).await.expect(200);
    assert_eq!(r.body, json!(0));
    let r = admin.get(&format!("/api/v1/authorities/{authority}/balanceavailable/{alpha}")).await.expect(200);
    assert_eq!(r.body, json!(50));
    admin.get(&format!("/api/v1/authorities/{authority}/balanceavailable/{beta}")).await.expect(404);
    admin
        .get(&format!("/api/v1/authorities/0b5a4d0e-0000-4000-8000-000000000000/balanceused/{alpha}"))
        .await
        .expect(404);
    // A platform administrator belongs to no organization: no "own" balance or organization.
    admin.get(&format!("/api/v1/authorities/{authority}/balanceavailable")).await.expect(404);
    admin.get("/api/v1/organizations/current").await.expect(404);
    let r = admin.get(&format!("/api/v1/authorities/allowed?organizationId={alpha}")).await.expect(200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["authorityId"], json!(authority));
    admin
        .put(&format!("/api/v1/organizations/{alpha}/authorities/{authority}"), json!({ "enabled": false }))
        .await
        .expect(200);
    let r = admin.get(&format!("/api/v1/authorities/allowed?organizationId={alpha}")).await.expect(200);
    assert_eq!(r.body, json!([]), "a disabled assignment is not allowed");
    admin
        .put(&format!("/api/v1/organizations/{alpha}/authorities/{authority}"), json!({ "enabled": true }))
        .await
        .expect(200);

    // Beta is inactive: assigned and enabled, yet nothing is allowed (as creating a batch).
    admin
        .post(
            &format!("/api/v1/organizations/{beta}/authorities"),
            json!({ "authorityId": authority, "balance": 5, "enabled": true }),
        )
        .await
        .expect(201);
    let r = admin.get(&format!("/api/v1/authorities/allowed?organizationId={beta}")).await.expect(200);
    assert_eq!(r.body, json!([]), "an inactive organization issues from nothing");
    let r = admin.get(&format!("/api/v1/authorities/{authority}/balanceavailable/{beta}")).await.expect(200);
    assert_eq!(r.body, json!(5));

    // An ORG_ADMIN of Alpha sees Alpha only; management stays with administrators.
    let (_, carol) =
        privileged(&daemon, &admin, "carol_alpha", json!([{ "role": "ORG_ADMIN", "organizationId": alpha }]))
            .await;
    let r = carol.get("/api/v1/organizations/current").await.expect(200);
    assert_eq!(r.body["id"], json!(alpha));
    let r = carol.get("/api/v1/organizations").await.expect(200);
    assert_eq!(r.body["totalElements"], 1);
    assert_eq!(r.body["content"][0]["name"], "Alpha");
    let r = carol.get("/api/v1/organizations/items").await.expect(200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    carol.get(&format!("/api/v1/organizations/{beta}")).await.expect(404);
    carol.get(&format!("/api/v1/organizations/{beta}/authorities")).await.expect(404);
    carol.get(&format!("/api/v1/authorities/{authority}/balanceused/{beta}")).await.expect(404);
    let r = carol.get(&format!("/api/v1/authorities/{authority}/balanceavailable")).await.expect(200);
    assert_eq!(r.body, json!(50), "the caller's own organization");
    let r = carol.get("/api/v1/authorities/allowed").await.expect(200);
    assert_eq!(r.body[0]["authorityId"], json!(authority));
    let r = carol.post("/api/v1/organizations", json!({ "name": "Carol's" })).await.expect(403);
    assert_eq!(r.body["status"], 403);
    carol.get("/api/v1/organizations/check?name=x").await.expect(403);
    carol
        .post(
            &format!("/api/v1/organizations/{alpha}/authorities"),
            json!({ "authorityId": authority, "balance": 1000, "enabled": true }),
        )
        .await
        .expect(403);

    // Removing the assignment, seen through gRPC; a second time is 404.
    admin.delete(&format!("/api/v1/organizations/{alpha}/authorities/{authority}")).await.expect(204);
    let seen = grpc_assignments(&grpc, &alpha).await;
    assert!(seen.is_empty(), "{seen:?}");
    admin.delete(&format!("/api/v1/organizations/{alpha}/authorities/{authority}")).await.expect(404);
    carol.get(&format!("/api/v1/authorities/{authority}/balanceavailable")).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_privileges_profiles_generators_and_ecosystems() {
    let env = TestEnv::new(0).expect("env");
    // Debug logging: the end checks no password reached the log at any level.
    let daemon = Daemon::start_with_log_filter(&env, "debug").await.expect("daemon");
    let db = env.store_path();
    let mut grpc = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let admin = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;
    let alpha =
        str_of(&admin.post("/api/v1/organizations", json!({ "name": "Alpha" })).await.expect(201).body["id"]);
    let beta =
        str_of(&admin.post("/api/v1/organizations", json!({ "name": "Beta" })).await.expect(201).body["id"]);

    // Create a user, seen through gRPC.
    let r = admin
        .post(
            "/api/v1/users",
            json!({ "username": "alice_rest", "password": PASSWORD, "repeatedPassword": PASSWORD,
                    "roles": ["USER"], "firstName": "Alice", "lastName": "Liddell",
                    "phone": "+420 123 456 789", "email": "alice@example.com" }),
        )
        .await
        .expect(201);
    assert_eq!(r.body["username"], "alice_rest");
    assert_eq!(r.body["roles"], json!(["USER"]));
    assert_eq!((r.body["firstName"].clone(), r.body["enabled"].clone()), (json!("Alice"), json!(true)));
    assert!(r.body.get("password").is_none(), "{}", r.body);
    let alice = str_of(&r.body["id"]);
    let seen = grpc
        .users
        .get_user(pb::GetUserRequest { id: alice.clone(), organization_id: String::new() })
        .await
        .expect("get over gRPC")
        .into_inner();
    assert_eq!((seen.username.as_str(), seen.email.as_str()), ("alice_rest", "alice@example.com"));

    // Refusals name the field in camelCase and write nothing.
    let before = table_rows(&db, &["users", "audit_log"]);
    let base = json!({ "username": "bob_rest", "password": PASSWORD, "roles": ["USER"] });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    assert_bad_field(&admin.post("/api/v1/users", with("firstName", json!("B0b"))).await, "firstName");
    assert_bad_field(
        &admin.post("/api/v1/users", with("repeatedPassword", json!("other-0123456789"))).await,
        "repeatedPassword",
    );
    assert_bad_field(&admin.post("/api/v1/users", with("roles", json!(["KING"]))).await, "roles[0]");
    assert_bad_field(&admin.post("/api/v1/users", with("password", json!(12))).await, "password");
    admin.post("/api/v1/users", with("username", json!("ALICE_rest"))).await.expect(409);
    let r = admin
        .call("POST", "/api/v1/users", Body::Raw("application/json", b"[1, 2".to_vec()))
        .await
        .expect(400);
    assert_eq!(r.body["status"], 400);
    assert_eq!(table_rows(&db, &["users", "audit_log"]), before, "a refusal wrote something");
    let free = grpc
        .users
        .check_username(pb::CheckUsernameRequest { username: "bob_rest".into() })
        .await
        .expect("check")
        .into_inner();
    assert!(free.available);

    // List with filters, get one, check email and login.
    let r = admin.get("/api/v1/users?searchLine=liddell").await.expect(200);
    assert_eq!(r.body["totalElements"], 1);
    assert_eq!(r.body["content"][0]["id"], json!(alice));
    assert_eq!(r.body["nextPageToken"], "");
    let r = admin.get("/api/v1/users?role=SUPER_ADMIN").await.expect(200);
    assert_eq!(r.body["content"][0]["username"], "admin");
    assert_bad_field(&admin.get("/api/v1/users?role=KING").await, "role");
    let r = admin.get("/api/v1/users?pageSize=1").await.expect(200);
    assert_eq!(r.body["content"].as_array().map(Vec::len), Some(1));
    assert!(r.body["nextPageToken"].as_str().is_some_and(|t| !t.is_empty()), "{}", r.body);
    let r = admin.get(&format!("/api/v1/users/{alice}")).await.expect(200);
    assert_eq!(r.body["lastName"], "Liddell");
    admin.get("/api/v1/users/0b5a4d0e-0000-4000-8000-000000000000").await.expect(404);
    let r = admin.get("/api/v1/users/checkEmail?email=ALICE@example.com").await.expect(200);
    assert_eq!(r.body, json!({ "available": false }));
    let r = admin.get("/api/v1/users/checkEmail?email=nobody@example.com").await.expect(200);
    assert_eq!(r.body, json!({ "available": true }));
    assert_bad_field(&admin.get("/api/v1/users/checkEmail?email=nope").await, "email");
    let r = admin.get("/api/v1/users/checkUsername?username=alice_rest").await.expect(200);
    assert_eq!(r.body, json!({ "available": false }));

    // Update, enable/disable, seen through gRPC.
    let r = admin.put(&format!("/api/v1/users/{alice}"), json!({ "lastName": "Smith" })).await.expect(200);
    assert_eq!((r.body["lastName"].clone(), r.body["firstName"].clone()), (json!("Smith"), json!("Alice")));
    assert_bad_field(
        &admin.put(&format!("/api/v1/users/{alice}"), json!({ "phone": "call me" })).await,
        "phone",
    );
    admin
        .put("/api/v1/users/0b5a4d0e-0000-4000-8000-000000000000", json!({ "lastName": "X" }))
        .await
        .expect(404);
    assert_eq!(grpc_user(&grpc, &alice).await.last_name, "Smith");
    let r =
        admin.put(&format!("/api/v1/users/{alice}/enabled"), json!({ "enabled": false })).await.expect(200);
    assert_eq!(r.body["enabled"], false);
    assert!(!grpc_user(&grpc, &alice).await.enabled);
    assert_bad_field(
        &admin.put(&format!("/api/v1/users/{alice}/enabled"), json!({ "enabled": "no" })).await,
        "enabled",
    );
    admin.put(&format!("/api/v1/users/{alice}/enabled"), json!({ "enabled": true })).await.expect(200);

    // Privileges, seen through gRPC; a USER privilege needs an organization.
    let r = admin
        .put(
            &format!("/api/v1/users/{alice}/privileges"),
            json!({ "privileges": [{ "role": "USER", "organizationId": alpha, "profiles": ["ecc-device"] }] }),
        )
        .await
        .expect(200);
    assert_eq!(
        r.body,
        json!({ "userId": alice, "privileges": [{ "role": "USER", "ecosystemId": "default",
                "organizationId": alpha, "profiles": ["ecc-device"] }] })
    );
    let seen = grpc
        .privileges
        .get_user_privileges(pb::GetUserPrivilegesRequest { user_id: alice.clone() })
        .await
        .expect("privileges")
        .into_inner()
        .privileges;
    assert_eq!((seen.len(), seen[0].organization_id.as_str()), (1, alpha.as_str()));
    let before = table_rows(&db, &["user_privileges"]);
    let r = admin
        .put(&format!("/api/v1/users/{alice}/privileges"), json!({ "privileges": [{ "role": "USER" }] }))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.body["field"].as_str().is_some_and(|f| f.starts_with("privileges[0].")),
        "names the privilege: {}",
        r.body
    );
    assert_bad_field(
        &admin
            .put(&format!("/api/v1/users/{alice}/privileges"), json!({ "privileges": [{ "role": "DUKE" }] }))
            .await,
        "privileges[0].role",
    );
    assert_eq!(table_rows(&db, &["user_privileges"]), before);
    let r = admin.get(&format!("/api/v1/users/{alice}/privileges")).await.expect(200);
    assert_eq!(r.body["privileges"][0]["profiles"], json!(["ecc-device"]));
    admin.get("/api/v1/users/0b5a4d0e-0000-4000-8000-000000000000/privileges").await.expect(404);

    // Profiles and generators.
    let r = admin.get("/api/v1/profiles").await.expect(200);
    let ids: Vec<&str> = r.body.as_array().expect("list").iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.contains(&"ecc-device") && ids.contains(&"rsa-server"), "{ids:?}");
    let r = admin.get("/api/v1/profiles/ecc-device").await.expect(200);
    assert_eq!(r.body["keyAlgorithms"].as_array().map(|a| a.is_empty()), Some(false));
    assert_eq!(r.body["subjectDn"], "CN={commonName},OU={organizationalUnit},O={organization},C={country}");
    let r = admin.get("/api/v1/profiles/ecc-device/parameters").await.expect(200);
    let cn = r.body.as_array().expect("list").iter().find(|p| p["name"] == "commonName").expect("commonName");
    assert_eq!(cn["required"], true);
    assert!(cn["scopes"].as_array().is_some_and(|s| !s.is_empty()), "{cn}");
    let r = admin.get("/api/v1/profiles/ecc-device/subjectDn").await.expect(200);
    assert_eq!(
        r.body,
        json!({ "subjectDn": "CN={commonName},OU={organizationalUnit},O={organization},C={country}" })
    );
    admin.get("/api/v1/profiles/no-such-profile").await.expect(404);
    admin.get("/api/v1/profiles/no-such-profile/parameters").await.expect(404);
    let r = admin.get("/api/v1/generators?profileId=ecc-device").await.expect(200);
    assert_eq!(r.body[0]["targetParameter"], "commonName");
    assert_eq!(r.body[0]["parameters"][0]["name"], "start_value");
    // The batch service names the unknown profile as the bad field (as on gRPC).
    assert_bad_field(&admin.get("/api/v1/generators?profileId=no-such-profile").await, "profileId");
    assert_bad_field(&admin.get("/api/v1/generators").await, "profileId");

    // The user's own account.
    let alice_rest = rest_as(&daemon, "alice_rest", PASSWORD).await;
    let r = alice_rest.get("/api/v1/users/current").await.expect(200);
    assert_eq!(r.body["id"], json!(alice));
    let r = alice_rest.put("/api/v1/users/current", json!({ "firstName": "Alicia" })).await.expect(200);
    assert_eq!(r.body["firstName"], "Alicia");
    assert_eq!(grpc_user(&grpc, &alice).await.first_name, "Alicia");
    assert_bad_field(
        &alice_rest.put("/api/v1/users/current", json!({ "lastName": "L1ddell" })).await,
        "lastName",
    );
    let r = alice_rest
        .put(
            "/api/v1/users/current/email",
            json!({ "email": "alicia@example.com", "currentPassword": PASSWORD }),
        )
        .await
        .expect(200);
    assert_eq!(r.body["email"], "alicia@example.com");
    assert_eq!(grpc_user(&grpc, &alice).await.email, "alicia@example.com");
    let r = alice_rest
        .put(
            "/api/v1/users/current/email",
            json!({ "email": "x@example.com", "currentPassword": "wrong-0123456789" }),
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    assert_eq!(grpc_user(&grpc, &alice).await.email, "alicia@example.com");
    let r = alice_rest.get(&format!("/api/v1/users/{alice}/privileges")).await.expect(200);
    assert_eq!(r.body["privileges"][0]["role"], "USER");
    let r = alice_rest.get("/api/v1/generators?profileId=ecc-device").await.expect(200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    alice_rest.get("/api/v1/generators?profileId=rsa-server").await.expect(403);
    // A USER is not an organization admin: no user lists, no ecosystems, no user edits.
    let r = alice_rest.get("/api/v1/users").await.expect(403);
    assert_eq!(r.body["status"], 403);
    alice_rest.get("/api/v1/ecosystems/statistics").await.expect(403);
    alice_rest.put(&format!("/api/v1/users/{alice}"), json!({ "lastName": "Queen" })).await.expect(403);

    // An ORG_ADMIN of Beta reaches Beta's users only.
    let (bob, bob_rest) =
        privileged(&daemon, &admin, "bob_beta", json!([{ "role": "USER", "organizationId": beta }])).await;
    let (_, dave) =
        privileged(&daemon, &admin, "dave_beta", json!([{ "role": "ORG_ADMIN", "organizationId": beta }]))
            .await;
    let r = dave.get(&format!("/api/v1/users?organizationId={beta}")).await.expect(200);
    let listed: Vec<&str> =
        r.body["content"].as_array().expect("list").iter().filter_map(|u| u["id"].as_str()).collect();
    assert!(listed.contains(&bob.as_str()) && !listed.contains(&alice.as_str()), "{listed:?}");
    assert_bad_field(&dave.get("/api/v1/users").await, "organizationId");
    // Listing another organization's users is refused outright (the service's answer).
    dave.get(&format!("/api/v1/users?organizationId={alpha}")).await.expect(403);
    dave.get(&format!("/api/v1/users/{alice}")).await.expect(404);
    dave.put(&format!("/api/v1/users/{alice}"), json!({ "lastName": "Queen" })).await.expect(404);
    let r = dave.get(&format!("/api/v1/users/{bob}?organizationId={beta}")).await.expect(200);
    assert_eq!(r.body["username"], "bob_beta");
    let r = dave.put(&format!("/api/v1/users/{bob}"), json!({ "firstName": "Robert" })).await.expect(200);
    assert_eq!(r.body["firstName"], "Robert");
    assert_eq!(grpc_user(&grpc, &bob).await.first_name, "Robert");
    dave.post("/api/v1/users", json!({ "username": "eve_beta", "password": PASSWORD, "roles": ["USER"] }))
        .await
        .expect(403);
    dave.get("/api/v1/ecosystems/ecosystem").await.expect(403);

    // An ECO_ADMIN: the ecosystem, its balance, statistics and users.
    let authority = create_authority(&mut grpc, "Eco Root").await;
    admin
        .post(
            &format!("/api/v1/organizations/{alpha}/authorities"),
            json!({ "authorityId": authority, "balance": 70, "enabled": true }),
        )
        .await
        .expect(201);
    let (_, eco) = privileged(&daemon, &admin, "erin_eco", json!([{ "role": "ECO_ADMIN" }])).await;
    let r = eco.get("/api/v1/ecosystems/ecosystem").await.expect(200);
    assert_eq!(r.body["id"], "default");
    assert!(r.body["passwordMinLength"].as_u64().is_some(), "{}", r.body);
    let r = eco.put("/api/v1/ecosystems/ecosystem", json!({ "passwordMinLength": 14 })).await.expect(200);
    assert_eq!(r.body["passwordMinLength"], 14);
    let seen = grpc
        .ecosystems
        .get_ecosystem(pb::GetEcosystemRequest { id: String::new() })
        .await
        .expect("ecosystem")
        .into_inner();
    assert_eq!(seen.password_min_length, 14);
    assert_bad_field(
        &eco.put("/api/v1/ecosystems/ecosystem", json!({ "passwordMinLength": 0 })).await,
        "passwordMinLength",
    );
    assert_bad_field(
        &eco.put("/api/v1/ecosystems/ecosystem", json!({ "passwordMinLength": "long" })).await,
        "passwordMinLength",
    );
    eco.get("/api/v1/ecosystems/ecosystem?id=elsewhere").await.expect(404);
    let r = eco.get("/api/v1/ecosystems/ecosystem/balance").await.expect(200);
    assert_eq!(r.body, json!({ "ecosystemId": "default", "capacity": 70, "balance": 70, "used": 0 }));
    let r = eco.get("/api/v1/ecosystems/statistics?fromDay=2026-01-01&toDay=2026-01-03").await.expect(200);
    assert_eq!((r.body["organizations"].clone(), r.body["capacity"].clone()), (json!(2), json!(70)));
    // No batch was ordered in that window: days without counts are absent.
    assert_eq!(r.body["days"], json!([]));
    assert_bad_field(&eco.get("/api/v1/ecosystems/statistics?fromDay=yesterday").await, "fromDay");
    let r = eco.get(&format!("/api/v1/ecosystems/users?organizationId={alpha}")).await.expect(200);
    let listed: Vec<&str> =
        r.body["content"].as_array().expect("list").iter().filter_map(|u| u["id"].as_str()).collect();
    // Alpha's USER (and the ECO_ADMIN, whose privilege spans the ecosystem), never Beta's.
    assert!(listed.contains(&alice.as_str()) && !listed.contains(&bob.as_str()), "{listed:?}");
    let r = eco.get(&format!("/api/v1/ecosystems/users/{bob}")).await.expect(200);
    assert_eq!(r.body["username"], "bob_beta");
    eco.get("/api/v1/ecosystems/users/0b5a4d0e-0000-4000-8000-000000000000").await.expect(404);

    // Credentials last: a new password works at once, and the old sessions end.
    let new_password = "directory-new-password-0456";
    let r = bob_rest
        .put(
            "/api/v1/users/current/credentials",
            json!({ "currentPassword": PASSWORD, "newPassword": new_password, "repeatedNewPassword": "mismatch-0456789012" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.body["field"].as_str().is_some_and(|f| f.contains("epeated")), "{}", r.body);
    bob_rest
        .put(
            "/api/v1/users/current/credentials",
            json!({ "currentPassword": PASSWORD, "newPassword": new_password, "repeatedNewPassword": new_password }),
        )
        .await
        .expect(200);
    bob_rest.get("/api/v1/users/current").await.expect(401);
    let again = rest_as(&daemon, "bob_beta", new_password).await;
    again.get("/api/v1/users/current").await.expect(200);

    // Remove, seen through gRPC.
    admin.delete(&format!("/api/v1/users/{bob}")).await.expect(204);
    let gone =
        grpc.users.get_user(pb::GetUserRequest { id: bob.clone(), organization_id: String::new() }).await;
    assert_eq!(gone.expect_err("removed").code(), tonic::Code::NotFound);
    admin.delete(&format!("/api/v1/users/{bob}")).await.expect(404);
    dave.delete(&format!("/api/v1/users/{alice}")).await.expect(403);

    let log = daemon.log();
    assert!(log.contains("/api/v1/users"), "the requests were logged at debug");
    for secret in [PASSWORD, new_password, "mismatch-0456789012", "wrong-0123456789", "other-0123456789"] {
        assert!(!log.contains(secret), "a password reached the daemon log");
    }
}
