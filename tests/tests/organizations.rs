//! End-to-end: organizations through the real cardhsmd — create, get, update, paged list with
//! its total, items, name checks; every field rule refused naming the field and changing
//! nothing; duplicate names in any case; unknown ids; authorities assigned with a balance;
//! who may call what; and the `cardhsm orgs` commands.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use std::collections::HashMap;
use support::*;
use tonic::Code;

const USER_PASSWORD: &str = "user-password-0123";
const OPERATOR_PASSWORD: &str = "operator-password-4567";
const UNKNOWN_ID: &str = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn create_req(name: &str, pairs: &[(&str, &str)]) -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest { name: name.into(), parameters: params(pairs), status: 0 }
}

async fn create(api: &mut Api, name: &str, pairs: &[(&str, &str)]) -> pb::Organization {
    api.organizations.create_organization(create_req(name, pairs)).await.expect("create").into_inner()
}

async fn create_user(admin: &mut Api, username: &str, password: &str, role: pb::Role) {
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: password.into(),
            roles: vec![role as i32],
            ..Default::default()
        })
        .await
        .expect("create user");
}

/// [`store_snapshot`] plus the organization tables.
fn snapshot(env: &TestEnv) -> Vec<String> {
    let mut out = store_snapshot(&env.store_path());
    out.extend(table_rows(&env.store_path(), &["organizations", "organization_authorities"]));
    out
}

fn audit_actions(env: &TestEnv, target_id: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let mut stmt = conn
        .prepare(
            "SELECT action FROM audit_log WHERE target_type = 'organization' AND target_id = ?1 ORDER BY id",
        )
        .expect("prepare");
    stmt.query_map([target_id], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_are_created_read_updated_listed_and_checked() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;

    let acme = create(
        &mut admin,
        "  Acme Corp  ",
        &[
            ("ORGANIZATION", "Acme Corp s.r.o."),
            ("CITY", "Brno"),
            ("COUNTRY", "CZ"),
            ("MANUFACTURER_ID", "042"),
        ],
    )
    .await;
    assert_eq!(acme.name, "Acme Corp", "the name is trimmed");
    assert_eq!(acme.status, pb::OrganizationStatus::Active as i32, "UNSPECIFIED creates an active one");
    assert_eq!(acme.parameters.get("MANUFACTURER_ID").map(String::as_str), Some("042"));
    assert_eq!(acme.parameters.len(), 4);
    assert_eq!(audit_actions(&env, &acme.id), ["organization.create"]);

    let got = admin
        .organizations
        .get_organization(pb::GetOrganizationRequest { id: acme.id.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, acme);

    // Update replaces name and parameters; status INACTIVE sticks, UNSPECIFIED keeps it.
    let updated = admin
        .organizations
        .update_organization(pb::UpdateOrganizationRequest {
            id: acme.id.clone(),
            name: "Acme Europe".into(),
            parameters: params(&[("COUNTRY", "DE"), ("STATE", "Bavaria")]),
            status: pb::OrganizationStatus::Inactive as i32,
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.name, "Acme Europe");
    assert_eq!(updated.parameters, params(&[("COUNTRY", "DE"), ("STATE", "Bavaria")]));
    assert_eq!(updated.status, pb::OrganizationStatus::Inactive as i32);
    assert_eq!(updated.created_at, acme.created_at);
    let renamed_case = admin
        .organizations
        .update_organization(pb::UpdateOrganizationRequest {
            id: acme.id.clone(),
            name: "ACME EUROPE".into(),
            parameters: updated.parameters.clone(),
            status: 0,
        })
        .await
        .expect("renaming to its own name in another case is fine")
        .into_inner();
    assert_eq!(renamed_case.status, pb::OrganizationStatus::Inactive as i32, "UNSPECIFIED keeps the status");
    assert_eq!(
        audit_actions(&env, &acme.id),
        ["organization.create", "organization.update", "organization.update"]
    );

    // Check: taken in any case, free otherwise.
    for (name, available) in [("acme europe", false), ("Acme Corp", true), ("Zeta", true)] {
        let answer = admin
            .organizations
            .check_organization(pb::CheckOrganizationRequest { name: name.into() })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(answer.available, available, "{name}");
    }

    // 54 more organizations: pages by name, with the total.
    for i in 0..54 {
        create(&mut admin, &format!("Org {i:02}"), &[]).await;
    }
    let list = |page: u32, size: u32| pb::ListOrganizationsRequest { page, size };
    let first = admin.organizations.list_organizations(list(0, 0)).await.expect("list").into_inner();
    assert_eq!(first.total, 55);
    assert_eq!(first.organizations.len(), 20, "default page size");
    assert_eq!(first.organizations[0].name, "ACME EUROPE", "by name, case-insensitively");
    let full = admin.organizations.list_organizations(list(1, 50)).await.expect("list").into_inner();
    assert_eq!(full.total, 55);
    assert_eq!(full.organizations.len(), 5, "the rest after the first 50");
    assert_eq!(full.organizations[4].name, "Org 53");
    let beyond = admin.organizations.list_organizations(list(9, 50)).await.expect("list").into_inner();
    assert!(beyond.organizations.is_empty());
    assert_eq!(beyond.total, 55);
    expect_invalid_field(admin.organizations.list_organizations(list(0, 51)).await, "size");

    let items = admin
        .organizations
        .list_organization_items(pb::ListOrganizationItemsRequest {})
        .await
        .expect("items")
        .into_inner()
        .items;
    assert_eq!(items.len(), 55);
    assert_eq!(items[0], pb::OrganizationItem { id: acme.id.clone(), name: "ACME EUROPE".into() });

    // Operators read; a user without organization privileges sees none (they are outside its
    // scope: empty lists, NOT_FOUND); neither manages.
    create_user(&mut admin, "oscar", OPERATOR_PASSWORD, pb::Role::Operator).await;
    create_user(&mut admin, "ursula", USER_PASSWORD, pb::Role::User).await;
    let mut operator = api_as(&daemon.endpoint, "oscar", OPERATOR_PASSWORD).await;
    let mut user = api_as(&daemon.endpoint, "ursula", USER_PASSWORD).await;
    operator
        .organizations
        .get_organization(pb::GetOrganizationRequest { id: acme.id.clone() })
        .await
        .expect("operators read");
    let before = snapshot(&env);
    expect_code(
        operator.organizations.create_organization(create_req("Op Org", &[])).await,
        Code::PermissionDenied,
    );
    expect_code(
        user.organizations.create_organization(create_req("User Org", &[])).await,
        Code::PermissionDenied,
    );
    let seen = user.organizations.list_organizations(list(0, 0)).await.expect("list").into_inner();
    assert_eq!((seen.total, seen.organizations.len()), (0, 0), "the total counts only what it may see");
    let items = user.organizations.list_organization_items(pb::ListOrganizationItemsRequest {}).await;
    assert!(items.expect("items").into_inner().items.is_empty());
    expect_code(
        user.organizations.get_organization(pb::GetOrganizationRequest { id: acme.id.clone() }).await,
        Code::NotFound,
    );
    expect_code(
        user.organizations.check_organization(pb::CheckOrganizationRequest { name: "x".into() }).await,
        Code::PermissionDenied,
    );
    expect_code(
        user.organizations
            .list_organization_authorities(pb::ListOrganizationAuthoritiesRequest {
                organization_id: acme.id.clone(),
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(snapshot(&env), before, "refused calls change nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_duplicates_and_unknown_ids_are_refused_and_change_nothing() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let taken = create(&mut admin, "Taken Name", &[("COUNTRY", "CZ")]).await;
    let other = create(&mut admin, "Other", &[]).await;
    let before = snapshot(&env);

    let long_name = "n".repeat(129);
    let long_text = "x".repeat(65);
    let bad: Vec<(pb::CreateOrganizationRequest, &str)> = vec![
        (create_req("", &[]), "name"),
        (create_req("   ", &[]), "name"),
        (create_req(&long_name, &[]), "name"),
        (create_req("Bell\u{7}", &[]), "name"),
        (create_req("Ok", &[("MANUFACTURER_ID", "1234")]), "parameters.MANUFACTURER_ID"),
        (create_req("Ok", &[("MANUFACTURER_ID", "12a")]), "parameters.MANUFACTURER_ID"),
        (create_req("Ok", &[("MANUFACTURER_ID", "")]), "parameters.MANUFACTURER_ID"),
        (create_req("Ok", &[("COUNTRY", "cz")]), "parameters.COUNTRY"),
        (create_req("Ok", &[("COUNTRY", "CZE")]), "parameters.COUNTRY"),
        (create_req("Ok", &[("COUNTRY", "")]), "parameters.COUNTRY"),
        (create_req("Ok", &[("ORGANIZATION", "")]), "parameters.ORGANIZATION"),
        (create_req("Ok", &[("ORGANIZATION", &long_text)]), "parameters.ORGANIZATION"),
        (create_req("Ok", &[("CITY", "Br\nno")]), "parameters.CITY"),
        (create_req("Ok", &[("CITY", &long_text)]), "parameters.CITY"),
        (create_req("Ok", &[("STATE", "")]), "parameters.STATE"),
        (create_req("Ok", &[("STATE", &long_text)]), "parameters.STATE"),
        (create_req("Ok", &[("PLANET", "Mars")]), "parameters.PLANET"),
        (pb::CreateOrganizationRequest { status: 9, ..create_req("Ok", &[]) }, "status"),
    ];
    for (request, field) in bad {
        let update = pb::UpdateOrganizationRequest {
            id: other.id.clone(),
            name: request.name.clone(),
            parameters: request.parameters.clone(),
            status: request.status,
        };
        expect_invalid_field(admin.organizations.create_organization(request).await, field);
        expect_invalid_field(admin.organizations.update_organization(update).await, field);
    }
    expect_invalid_field(
        admin.organizations.check_organization(pb::CheckOrganizationRequest { name: String::new() }).await,
        "name",
    );
    for id in ["", "not-a-uuid"] {
        expect_invalid_field(
            admin.organizations.get_organization(pb::GetOrganizationRequest { id: id.into() }).await,
            "id",
        );
        expect_invalid_field(
            admin
                .organizations
                .update_organization(pb::UpdateOrganizationRequest {
                    id: id.into(),
                    name: "Fine".into(),
                    ..Default::default()
                })
                .await,
            "id",
        );
    }

    // Duplicates, in any case, on create and on rename.
    for name in ["Taken Name", "taken name", "TAKEN NAME", " Taken Name "] {
        expect_code(
            admin.organizations.create_organization(create_req(name, &[])).await,
            Code::AlreadyExists,
        );
        expect_code(
            admin
                .organizations
                .update_organization(pb::UpdateOrganizationRequest {
                    id: other.id.clone(),
                    name: name.into(),
                    ..Default::default()
                })
                .await,
            Code::AlreadyExists,
        );
    }

    // Unknown ids.
    expect_code(
        admin.organizations.get_organization(pb::GetOrganizationRequest { id: UNKNOWN_ID.into() }).await,
        Code::NotFound,
    );
    expect_code(
        admin
            .organizations
            .update_organization(pb::UpdateOrganizationRequest {
                id: UNKNOWN_ID.into(),
                name: "Fresh".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        admin
            .organizations
            .list_organization_authorities(pb::ListOrganizationAuthoritiesRequest {
                organization_id: UNKNOWN_ID.into(),
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(snapshot(&env), before, "no refused request wrote anything");
    assert_eq!(audit_actions(&env, &taken.id), ["organization.create"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn authorities_are_assigned_with_a_balance_changed_listed_and_removed() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let root = admin
        .issuance
        .create_authority(support::create_req(
            "Org Root",
            "EC:P-256",
            "CN=Org Root,O=Acme,C=CZ",
            pb::AuthorityKind::Root,
            "",
        ))
        .await
        .expect("authority")
        .into_inner();
    let org = create(&mut admin, "Acme", &[]).await;
    let org_id = org.id.clone();
    let add = |authority_id: &str, balance: i64| pb::AddOrganizationAuthorityRequest {
        organization_id: org_id.clone(),
        authority_id: authority_id.into(),
        balance,
        enabled: true,
    };
    let list_req = pb::ListOrganizationAuthoritiesRequest { organization_id: org.id.clone() };

    let empty = admin.organizations.list_organization_authorities(list_req.clone()).await.expect("list");
    assert!(empty.into_inner().authorities.is_empty());

    // Refusals first: nothing may be written by any of them.
    let before = snapshot(&env);
    expect_invalid_field(admin.organizations.add_organization_authority(add(&root.id, -1)).await, "balance");
    expect_invalid_field(
        admin.organizations.add_organization_authority(add("nope", 5)).await,
        "authority_id",
    );
    expect_invalid_field(
        admin
            .organizations
            .add_organization_authority(pb::AddOrganizationAuthorityRequest {
                organization_id: "nope".into(),
                ..add(&root.id, 5)
            })
            .await,
        "organization_id",
    );
    expect_code(admin.organizations.add_organization_authority(add(UNKNOWN_ID, 5)).await, Code::NotFound);
    expect_code(
        admin
            .organizations
            .add_organization_authority(pb::AddOrganizationAuthorityRequest {
                organization_id: UNKNOWN_ID.into(),
                ..add(&root.id, 5)
            })
            .await,
        Code::NotFound,
    );
    let update = |balance: Option<i64>, enabled: Option<bool>| pb::UpdateOrganizationAuthorityRequest {
        organization_id: org.id.clone(),
        authority_id: root.id.clone(),
        balance,
        enabled,
    };
    expect_code(
        admin.organizations.update_organization_authority(update(Some(3), None)).await,
        Code::NotFound,
    );
    let remove = pb::RemoveOrganizationAuthorityRequest {
        organization_id: org.id.clone(),
        authority_id: root.id.clone(),
    };
    expect_code(admin.organizations.remove_organization_authority(remove.clone()).await, Code::NotFound);
    assert_eq!(snapshot(&env), before);

    // Assign, then a second assignment is a duplicate.
    let added =
        admin.organizations.add_organization_authority(add(&root.id, 100)).await.expect("add").into_inner();
    assert_eq!(
        added,
        pb::OrganizationAuthority {
            authority_id: root.id.clone(),
            authority_name: "Org Root".into(),
            balance: 100,
            used: 0,
            available: 100,
            enabled: true,
        }
    );
    let before = snapshot(&env);
    expect_code(admin.organizations.add_organization_authority(add(&root.id, 1)).await, Code::AlreadyExists);
    expect_invalid_field(
        admin.organizations.update_organization_authority(update(Some(-5), None)).await,
        "balance",
    );
    assert_eq!(snapshot(&env), before);

    // Change the balance only, then enabled only: the other stays.
    let changed = admin
        .organizations
        .update_organization_authority(update(Some(250), None))
        .await
        .expect("update")
        .into_inner();
    assert_eq!((changed.balance, changed.available, changed.enabled), (250, 250, true));
    let disabled = admin
        .organizations
        .update_organization_authority(update(None, Some(false)))
        .await
        .expect("update")
        .into_inner();
    assert_eq!((disabled.balance, disabled.available, disabled.enabled), (250, 250, false));
    let listed =
        admin.organizations.list_organization_authorities(list_req.clone()).await.expect("list").into_inner();
    assert_eq!(listed.authorities, [disabled]);

    // Operators read the balances, may not change them.
    create_user(&mut admin, "oscar", OPERATOR_PASSWORD, pb::Role::Operator).await;
    let mut operator = api_as(&daemon.endpoint, "oscar", OPERATOR_PASSWORD).await;
    assert_eq!(
        operator
            .organizations
            .list_organization_authorities(list_req.clone())
            .await
            .expect("list")
            .into_inner(),
        listed
    );
    expect_code(
        operator.organizations.update_organization_authority(update(Some(1), None)).await,
        Code::PermissionDenied,
    );

    admin.organizations.remove_organization_authority(remove.clone()).await.expect("remove");
    let after = admin.organizations.list_organization_authorities(list_req).await.expect("list").into_inner();
    assert!(after.authorities.is_empty());
    expect_code(admin.organizations.remove_organization_authority(remove).await, Code::NotFound);
    assert_eq!(
        audit_actions(&env, &org.id),
        [
            "organization.create",
            "organization.authority.add",
            "organization.authority.update",
            "organization.authority.update",
            "organization.authority.remove"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orgs_create_list_check_and_show_through_the_cli() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);

    let created = cli.json(&["orgs", "create", "Cli Org", "--country", "CZ", "--manufacturer-id", "7"]);
    assert_eq!(created["name"], "Cli Org");
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["parameters"]["COUNTRY"], "CZ");
    assert_eq!(created["parameters"]["MANUFACTURER_ID"], "7");
    let id = created["id"].as_str().expect("id").to_owned();

    assert_eq!(cli.json(&["orgs", "check", "cli org"])["available"], false);
    assert_eq!(cli.json(&["orgs", "check", "Another"])["available"], true);
    let text = cli.run(&["orgs", "check", "Another"]).ok();
    assert!(text.stdout.contains("available"), "{text:#?}");

    let listed = cli.json(&["orgs", "list"]);
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["organizations"][0]["id"], id.as_str());
    let table = cli.run(&["orgs", "list"]).ok();
    assert!(
        table.stdout.contains("Cli Org") && table.stdout.contains("(1 of 1 organizations)"),
        "{table:#?}"
    );

    // update keeps what it is not told to change.
    let updated = cli.json(&["orgs", "update", &id, "--city", "Brno", "--status", "inactive"]);
    assert_eq!(updated["parameters"]["CITY"], "Brno");
    assert_eq!(updated["parameters"]["COUNTRY"], "CZ");
    assert_eq!(updated["status"], "INACTIVE");
    assert_eq!(cli.json(&["orgs", "show", &id])["name"], "Cli Org");

    // The daemon's refusals come through as they are.
    cli.run(&["orgs", "create", "CLI ORG"]).failed_with("ALREADY_EXISTS");
    let bad = cli.run(&["orgs", "create", "Bad", "--country", "cz"]);
    assert!(bad.failed_with("INVALID_ARGUMENT").contains("parameters.COUNTRY"), "{bad:#?}");
    cli.run(&["orgs", "list", "--size", "51"]).failed_with("INVALID_ARGUMENT");
}
