//! End-to-end: organization privileges through the real cardhsmd — USER, ORG_ADMIN and
//! ECO_ADMIN privileges set and read; each scope holds (an organization admin sees its
//! organizations and their users' cards, never another's); who may grant what; every field
//! rule refused naming the field and changing nothing; changes hold from the very next call;
//! ecosystems' password policy and statistics.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use support::*;
use tonic::Code;

const PASSWORD: &str = "privilege-password-0123";
const PROFILE: &str = "card-authentication";

async fn create_org(admin: &mut Api, name: &str) -> String {
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest { name: name.into(), ..Default::default() })
        .await
        .expect("create organization")
        .into_inner()
        .id
}

async fn create_user(admin: &mut Api, username: &str) -> String {
    admin
        .users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            password: PASSWORD.into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("create user")
        .into_inner()
        .id
}

fn privilege(role: pb::Role, organization_id: &str, profiles: &[&str]) -> pb::Privilege {
    pb::Privilege {
        role: role as i32,
        ecosystem_id: String::new(),
        organization_id: organization_id.into(),
        profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
    }
}

async fn set(
    api: &mut Api,
    user_id: &str,
    privileges: Vec<pb::Privilege>,
) -> Result<tonic::Response<pb::UserPrivileges>, tonic::Status> {
    api.privileges
        .set_user_privileges(pb::SetUserPrivilegesRequest { user_id: user_id.into(), privileges })
        .await
}

async fn org_names(api: &mut Api) -> Vec<String> {
    let mut names: Vec<String> = api
        .organizations
        .list_organization_items(pb::ListOrganizationItemsRequest {})
        .await
        .expect("items")
        .into_inner()
        .items
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    names
}

async fn list_cards(
    api: &mut Api,
    owner: &str,
) -> Result<tonic::Response<pb::ListCardsResponse>, tonic::Status> {
    api.cards.list_cards(pb::ListCardsRequest { owner: owner.into(), state: 0, page: None }).await
}

fn privilege_rows(env: &TestEnv) -> Vec<String> {
    let conn = rusqlite::Connection::open(env.store_path()).expect("db");
    let mut stmt = conn
        .prepare(
            "SELECT user_id || '|' || role || '|' || ecosystem_id || '|' || IFNULL(organization_id, '-')
             || '|' || profiles FROM user_privileges ORDER BY 1",
        )
        .expect("prepare");
    stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_roles_see_and_change_only_their_scope() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let ep = daemon.endpoint.clone();
    let mut admin = api_as(&ep, "admin", ADMIN_PASSWORD).await;

    let alpha = create_org(&mut admin, "Alpha").await;
    let beta = create_org(&mut admin, "Beta").await;
    let alpha_admin = create_user(&mut admin, "carol@alpha.example").await;
    let alpha_user = create_user(&mut admin, "alice@alpha.example").await;
    let beta_user = create_user(&mut admin, "bob@beta.example").await;
    let eco = create_user(&mut admin, "eco_admin").await;
    let newcomer = create_user(&mut admin, "newcomer").await;

    set(&mut admin, &alpha_admin, vec![privilege(pb::Role::OrgAdmin, &alpha, &[])]).await.expect("org admin");
    let got = set(&mut admin, &alpha_user, vec![privilege(pb::Role::User, &alpha, &[PROFILE])])
        .await
        .expect("user")
        .into_inner();
    assert_eq!(got.privileges.len(), 1);
    assert_eq!(got.privileges[0].ecosystem_id, "default", "an empty ecosystem means the default one");
    assert_eq!(got.privileges[0].profiles, [PROFILE]);
    set(&mut admin, &beta_user, vec![privilege(pb::Role::User, &beta, &[])]).await.expect("beta user");
    set(&mut admin, &eco, vec![privilege(pb::Role::EcoAdmin, "", &[])]).await.expect("eco admin");

    // Roles and scope come from the privileges.
    let mut a_admin = api_as(&ep, "carol@alpha.example", PASSWORD).await;
    let me = a_admin.auth.who_am_i(pb::WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert!(me.roles.contains(&(pb::Role::OrgAdmin as i32)), "{:?}", me.roles);
    assert_eq!(org_names(&mut a_admin).await, ["Alpha"]);
    let listed = a_admin
        .organizations
        .list_organizations(pb::ListOrganizationsRequest { page: 0, size: 0 })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 1, "the total counts only what the caller may see");
    assert_eq!(listed.organizations[0].id, alpha);
    let beta_get =
        a_admin.organizations.get_organization(pb::GetOrganizationRequest { id: beta.clone() }).await;
    expect_code(beta_get, Code::NotFound);
    let beta_auth = a_admin
        .organizations
        .list_organization_authorities(pb::ListOrganizationAuthoritiesRequest {
            organization_id: beta.clone(),
        })
        .await;
    expect_code(beta_auth, Code::NotFound);
    let current = a_admin
        .organizations
        .get_organization_for_current_user(pb::GetOrganizationForCurrentUserRequest {})
        .await
        .expect("current")
        .into_inner();
    assert_eq!(current.id, alpha);
    let platform = admin
        .organizations
        .get_organization_for_current_user(pb::GetOrganizationForCurrentUserRequest {})
        .await;
    expect_code(platform, Code::NotFound);

    // Cards: an organization admin reads its users' cards, not another organization's.
    list_cards(&mut a_admin, "alice@alpha.example").await.expect("an org admin lists its users' cards");
    expect_code(list_cards(&mut a_admin, "bob@beta.example").await, Code::PermissionDenied);
    let mut a_user = api_as(&ep, "alice@alpha.example", PASSWORD).await;
    expect_code(list_cards(&mut a_user, "carol@alpha.example").await, Code::PermissionDenied);
    assert_eq!(org_names(&mut a_user).await, ["Alpha"]);

    // Privileges: read one's own and those in reach.
    let own = a_user
        .privileges
        .get_user_privileges(pb::GetUserPrivilegesRequest { user_id: alpha_user.clone() })
        .await
        .expect("own")
        .into_inner();
    assert_eq!(own.privileges[0].organization_id, alpha);
    let other = a_user
        .privileges
        .get_user_privileges(pb::GetUserPrivilegesRequest { user_id: beta_user.clone() })
        .await;
    expect_code(other, Code::NotFound);
    let other = a_admin
        .privileges
        .get_user_privileges(pb::GetUserPrivilegesRequest { user_id: beta_user.clone() })
        .await;
    expect_code(other, Code::NotFound);
    a_admin
        .privileges
        .get_user_privileges(pb::GetUserPrivilegesRequest { user_id: alpha_user.clone() })
        .await
        .expect("an org admin reads its users' privileges");

    // Users: an organization admin reads its organization's users, no one else.
    let get_user = |id: &str, org: &str| pb::GetUserRequest { id: id.into(), organization_id: org.into() };
    let got = a_admin.users.get_user(get_user(&alpha_user, "")).await.expect("own org's user").into_inner();
    assert_eq!(got.username, "alice@alpha.example");
    a_admin.users.get_user(get_user(&alpha_user, &alpha)).await.expect("named organization");
    expect_code(a_admin.users.get_user(get_user(&beta_user, "")).await, Code::NotFound);
    expect_code(a_admin.users.get_user(get_user(&alpha_user, &beta)).await, Code::NotFound);
    expect_code(admin.users.get_user(get_user(&alpha_user, &beta)).await, Code::NotFound);
    admin.users.get_user(get_user(&beta_user, &beta)).await.expect("administrators read anyone");

    // Granting: an ORG_ADMIN grants USER in its organization, nothing else.
    let before = privilege_rows(&env);
    expect_code(
        set(&mut a_admin, &newcomer, vec![privilege(pb::Role::User, &beta, &[])]).await,
        Code::PermissionDenied,
    );
    expect_code(
        set(&mut a_admin, &newcomer, vec![privilege(pb::Role::OrgAdmin, &alpha, &[])]).await,
        Code::PermissionDenied,
    );
    expect_code(set(&mut a_admin, &alpha_admin, vec![]).await, Code::PermissionDenied);
    expect_code(
        set(&mut a_user, &newcomer, vec![privilege(pb::Role::User, &alpha, &[])]).await,
        Code::PermissionDenied,
    );
    assert_eq!(privilege_rows(&env), before, "refusals change nothing");
    set(&mut a_admin, &newcomer, vec![privilege(pb::Role::User, &alpha, &[])])
        .await
        .expect("grant USER in Alpha");
    // Replacing keeps what is out of the org admin's reach: the newcomer's Beta privilege,
    // granted by the platform administrator, survives the Alpha admin's replacement.
    set(
        &mut admin,
        &newcomer,
        vec![privilege(pb::Role::User, &alpha, &[]), privilege(pb::Role::User, &beta, &[])],
    )
    .await
    .expect("admin grants both");
    let after =
        set(&mut a_admin, &newcomer, vec![]).await.expect("org admin clears Alpha").into_inner().privileges;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].organization_id, beta);

    // ECO_ADMIN: every organization of its ecosystem, including one made after it signed in.
    let mut eco_api = api_as(&ep, "eco_admin", PASSWORD).await;
    assert_eq!(org_names(&mut eco_api).await, ["Alpha", "Beta"]);
    create_org(&mut admin, "Gamma").await;
    assert_eq!(org_names(&mut eco_api).await, ["Alpha", "Beta", "Gamma"], "a new organization joins at once");
    assert!(list_cards(&mut eco_api, "bob@beta.example").await.is_ok());
    set(&mut eco_api, &newcomer, vec![privilege(pb::Role::OrgAdmin, &alpha, &[])])
        .await
        .expect("an ECO_ADMIN grants ORG_ADMIN in its ecosystem");
    expect_code(
        set(&mut eco_api, &newcomer, vec![privilege(pb::Role::EcoAdmin, "", &[])]).await,
        Code::PermissionDenied,
    );

    // A change holds from the very next call: Alpha's user loses its privilege.
    set(&mut admin, &alpha_user, vec![]).await.expect("clear");
    assert!(org_names(&mut a_user).await.is_empty(), "the scope is gone at once");
    expect_code(
        a_user
            .organizations
            .get_organization_for_current_user(pb::GetOrganizationForCurrentUserRequest {})
            .await,
        Code::NotFound,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_privileges_are_refused_naming_the_field_and_change_nothing() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let org = create_org(&mut admin, "Delta").await;
    let user = create_user(&mut admin, "delta_user").await;
    set(&mut admin, &user, vec![privilege(pb::Role::User, &org, &[])]).await.expect("baseline");
    let before = privilege_rows(&env);

    let unknown_org = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a";
    let cases: Vec<(Vec<pb::Privilege>, &str)> = vec![
        (vec![privilege(pb::Role::User, unknown_org, &[])], "privileges[0].organization_id"),
        (vec![privilege(pb::Role::User, "", &[])], "privileges[0].organization_id"),
        (vec![privilege(pb::Role::EcoAdmin, &org, &[])], "privileges[0].organization_id"),
        (vec![privilege(pb::Role::Admin, &org, &[])], "privileges[0].role"),
        (vec![privilege(pb::Role::Unspecified, &org, &[])], "privileges[0].role"),
        (vec![privilege(pb::Role::User, &org, &["no-such-profile"])], "privileges[0].profiles"),
        (vec![privilege(pb::Role::OrgAdmin, &org, &[PROFILE])], "privileges[0].profiles"),
        (
            vec![privilege(pb::Role::User, &org, &[]), privilege(pb::Role::User, &org, &[PROFILE])],
            "privileges[1].role",
        ),
        (
            vec![pb::Privilege { ecosystem_id: "elsewhere".into(), ..privilege(pb::Role::User, &org, &[]) }],
            "privileges[0].ecosystem_id",
        ),
    ];
    for (privileges, field) in cases {
        expect_invalid_field(
            admin
                .privileges
                .set_user_privileges(pb::SetUserPrivilegesRequest { user_id: user.clone(), privileges })
                .await,
            field,
        );
    }
    expect_invalid_field(
        admin.privileges.set_user_privileges(pb::SetUserPrivilegesRequest::default()).await,
        "user_id",
    );
    let unknown_user = set(&mut admin, "00000000-0000-0000-0000-000000000000", vec![]).await;
    expect_code(unknown_user, Code::NotFound);
    let unknown_user = admin
        .privileges
        .get_user_privileges(pb::GetUserPrivilegesRequest {
            user_id: "00000000-0000-0000-0000-000000000000".into(),
        })
        .await;
    expect_code(unknown_user, Code::NotFound);
    assert_eq!(privilege_rows(&env), before, "no refusal wrote anything");
}

#[tokio::test(flavor = "multi_thread")]
async fn ecosystems_set_password_policy_and_report_statistics() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let ep = daemon.endpoint.clone();
    let mut admin = api_as(&ep, "admin", ADMIN_PASSWORD).await;
    let eco =
        admin.ecosystems.get_ecosystem(pb::GetEcosystemRequest::default()).await.expect("get").into_inner();
    assert_eq!((eco.id.as_str(), eco.password_min_length), ("default", 12));

    for bad in [0, 51] {
        let r = admin
            .ecosystems
            .update_ecosystem(pb::UpdateEcosystemRequest { id: String::new(), password_min_length: bad })
            .await;
        expect_invalid_field(r, "password_min_length");
    }
    let updated = admin
        .ecosystems
        .update_ecosystem(pb::UpdateEcosystemRequest { id: String::new(), password_min_length: 20 })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.password_min_length, 20);
    let unknown = admin
        .ecosystems
        .update_ecosystem(pb::UpdateEcosystemRequest { id: "nowhere".into(), password_min_length: 20 })
        .await;
    expect_code(unknown, Code::NotFound);

    // Statistics: capacity is what is assigned to the ecosystem's organizations.
    let org = create_org(&mut admin, "Epsilon").await;
    let stats = admin
        .ecosystems
        .get_ecosystem_statistics(pb::GetEcosystemStatisticsRequest::default())
        .await
        .expect("stats")
        .into_inner();
    assert_eq!((stats.organizations, stats.capacity, stats.used, stats.balance), (1, 0, 0, 0));
    assert!(stats.days.is_empty());
    for (from, to, field) in [
        ("2026-13-01", "", "from_day"),
        ("yesterday", "", "from_day"),
        ("2026-05-01", "2026-04-01", "from_day"),
    ] {
        let r = admin
            .ecosystems
            .get_ecosystem_statistics(pb::GetEcosystemStatisticsRequest {
                id: String::new(),
                from_day: from.into(),
                to_day: to.into(),
            })
            .await;
        expect_invalid_field(r, field);
    }

    // An ECO_ADMIN reaches its ecosystem; an ORG_ADMIN is not allowed the RPC at all.
    let eco_user = create_user(&mut admin, "eco_reader").await;
    set(&mut admin, &eco_user, vec![privilege(pb::Role::EcoAdmin, "", &[])]).await.expect("eco");
    let org_admin = create_user(&mut admin, "org_reader").await;
    set(&mut admin, &org_admin, vec![privilege(pb::Role::OrgAdmin, &org, &[])]).await.expect("org admin");
    let mut eco_api = api_as(&ep, "eco_reader", PASSWORD).await;
    eco_api
        .ecosystems
        .get_ecosystem_statistics(pb::GetEcosystemStatisticsRequest::default())
        .await
        .expect("eco admin reads statistics");
    let mut org_api = api_as(&ep, "org_reader", PASSWORD).await;
    expect_code(
        org_api.ecosystems.get_ecosystem_statistics(pb::GetEcosystemStatisticsRequest::default()).await,
        Code::PermissionDenied,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_sets_and_shows_privileges_and_ecosystems() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let org = create_org(&mut admin, "Zeta").await;
    let user = create_user(&mut admin, "zeta_user").await;
    let cli = CliHome::new(env.dir.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);

    let grant = format!("user:{org}:{PROFILE}");
    let set = cli.json(&["privileges", "set", &user, "--grant", &grant, "--grant", "eco-admin"]);
    let roles: Vec<&str> =
        set["privileges"].as_array().expect("list").iter().filter_map(|p| p["role"].as_str()).collect();
    assert_eq!(roles.len(), 2, "{set}");
    assert!(roles.contains(&"user") && roles.contains(&"eco-admin"), "{set}");
    let shown = cli.json(&["privileges", "show", &user]);
    assert_eq!(shown["privileges"], set["privileges"]);
    // The daemon's answer to a bad value reaches the user with the field named.
    let bad = cli.run(&["privileges", "set", &user, "--grant", "user:no-such-org"]);
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("privileges[0].organization_id"), "{}", bad.stderr);
    // Shape errors are the CLI's own, before any call.
    let bad = cli.run(&["privileges", "set", &user, "--grant", "root:x"]);
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("--grant"), "{}", bad.stderr);
    assert_eq!(cli.json(&["privileges", "show", &user])["privileges"], set["privileges"], "unchanged");

    let eco = cli.json(&["ecosystems", "set-password-length", "16"]);
    assert_eq!(eco["password_min_length"], 16);
    assert_eq!(cli.json(&["ecosystems", "show"])["password_min_length"], 16);
    let stats = cli.json(&["ecosystems", "stats"]);
    assert_eq!(stats["organizations"], 1);
    let table = cli.run(&["ecosystems", "stats"]).ok();
    assert!(table.stdout.contains("1 organizations"), "{}", table.stdout);
}
