//! The CLI's `privileges` and `ecosystems` commands, over `PrivilegeService` and
//! `EcosystemService`: parse the arguments, call the client library, print the answer. The
//! daemon checks every value and names the bad field; the CLI only turns flags into requests.

use super::args::OutputFormat;
use super::output::{Table, time};
use super::run::{CliError, print};
use cardhsm_client::CardhsmClient;
use cardhsm_proto::v1::ecosystem_service_client::EcosystemServiceClient;
use cardhsm_proto::v1::privilege_service_client::PrivilegeServiceClient;
use cardhsm_proto::v1::{
    Ecosystem, GetEcosystemRequest, GetEcosystemStatisticsRequest, GetUserPrivilegesRequest, Privilege, Role,
    SetUserPrivilegesRequest, UpdateEcosystemRequest, UserPrivileges,
};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum PrivilegesCommand {
    /// A user's privileges (your own, or a user of your organizations)
    Show {
        /// User id
        user: String,
    },
    /// Replace a user's privileges with those given (none: remove them all)
    Set {
        /// User id
        user: String,
        /// A privilege as ROLE:ORGANIZATION_ID[:PROFILE,PROFILE…] (ROLE is user or org-admin),
        /// or eco-admin[:ECOSYSTEM]; repeat for several
        #[arg(long = "grant", value_name = "PRIVILEGE")]
        grants: Vec<String>,
        /// The ecosystem of user and org-admin privileges [default: default]
        #[arg(long, default_value = "")]
        ecosystem: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EcosystemsCommand {
    /// Show an ecosystem
    Show {
        /// Ecosystem id [default: default]
        #[arg(default_value = "")]
        id: String,
    },
    /// Set the minimum password length (1-50) of the ecosystem's users
    SetPasswordLength {
        length: u32,
        #[arg(long, default_value = "")]
        id: String,
    },
    /// Capacity, balance, use, and devices ordered and issued per day
    Stats {
        #[arg(long, default_value = "")]
        id: String,
        /// First day, YYYY-MM-DD [default: 30 days before --to]
        #[arg(long, default_value = "")]
        from: String,
        /// Last day, YYYY-MM-DD [default: today, UTC]
        #[arg(long, default_value = "")]
        to: String,
    },
}

fn role_name(v: i32) -> &'static str {
    match Role::try_from(v) {
        Ok(Role::User) => "user",
        Ok(Role::OrgAdmin) => "org-admin",
        Ok(Role::EcoAdmin) => "eco-admin",
        _ => "?",
    }
}

/// `ROLE:ORG[:P1,P2]` or `eco-admin[:ECOSYSTEM]`. Shape only; the daemon judges the values.
fn parse_grant(grant: &str, ecosystem: &str) -> Result<Privilege, CliError> {
    let bad = |why: &str| CliError::Input(format!("--grant {grant:?}: {why}"));
    let mut parts = grant.splitn(3, ':');
    let role = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default().to_owned();
    let profiles: Vec<String> = parts
        .next()
        .map(|p| p.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let role = match role.to_ascii_lowercase().as_str() {
        "user" => Role::User,
        "org-admin" | "org_admin" => Role::OrgAdmin,
        "eco-admin" | "eco_admin" => Role::EcoAdmin,
        _ => return Err(bad("the role must be user, org-admin or eco-admin")),
    };
    if role == Role::EcoAdmin {
        if !profiles.is_empty() {
            return Err(bad("eco-admin takes no profiles"));
        }
        let eco = if second.is_empty() { ecosystem.to_owned() } else { second };
        return Ok(Privilege {
            role: role.into(),
            ecosystem_id: eco,
            organization_id: String::new(),
            profiles,
        });
    }
    if second.is_empty() {
        return Err(bad("an organization id is required: ROLE:ORGANIZATION_ID"));
    }
    Ok(Privilege { role: role.into(), ecosystem_id: ecosystem.to_owned(), organization_id: second, profiles })
}

fn privileges_json(p: &UserPrivileges) -> Value {
    json!({
        "user_id": p.user_id,
        "privileges": p.privileges.iter().map(|x| json!({
            "role": role_name(x.role), "ecosystem_id": x.ecosystem_id,
            "organization_id": x.organization_id, "profiles": x.profiles,
        })).collect::<Vec<_>>(),
    })
}

fn privileges_text(p: &UserPrivileges) -> String {
    if p.privileges.is_empty() {
        return format!("{} holds no organization privilege\n", p.user_id);
    }
    let mut table = Table::new(&["ROLE", "ECOSYSTEM", "ORGANIZATION", "PROFILES"]);
    for x in &p.privileges {
        table.row([
            role_name(x.role).to_owned(),
            x.ecosystem_id.clone(),
            if x.organization_id.is_empty() { "(all)".to_owned() } else { x.organization_id.clone() },
            x.profiles.join(","),
        ]);
    }
    table.render()
}

fn ecosystem_json(e: &Ecosystem) -> Value {
    json!({
        "id": e.id, "name": e.name, "password_min_length": e.password_min_length,
        "created_at": e.created_at, "updated_at": e.updated_at,
    })
}

fn ecosystem_text(e: &Ecosystem) -> String {
    format!(
        "id:                  {}\nname:                {}\npassword min length: {}\ncreated:             {}\nupdated:             {}\n",
        e.id,
        e.name,
        e.password_min_length,
        time(e.created_at),
        time(e.updated_at)
    )
}

/// Runs a `privileges` command.
pub async fn privileges(
    client: &CardhsmClient,
    format: OutputFormat,
    command: PrivilegesCommand,
) -> Result<(), CliError> {
    let answer = match command {
        PrivilegesCommand::Show { user } => {
            client
                .call(GetUserPrivilegesRequest { user_id: user }, |ch, r| async move {
                    PrivilegeServiceClient::new(ch).get_user_privileges(r).await
                })
                .await?
        }
        PrivilegesCommand::Set { user, grants, ecosystem } => {
            let privileges =
                grants.iter().map(|g| parse_grant(g, &ecosystem)).collect::<Result<Vec<_>, _>>()?;
            client
                .call(SetUserPrivilegesRequest { user_id: user, privileges }, |ch, r| async move {
                    PrivilegeServiceClient::new(ch).set_user_privileges(r).await
                })
                .await?
        }
    };
    print(format, || privileges_json(&answer), || privileges_text(&answer))
}

/// Runs an `ecosystems` command.
pub async fn ecosystems(
    client: &CardhsmClient,
    format: OutputFormat,
    command: EcosystemsCommand,
) -> Result<(), CliError> {
    match command {
        EcosystemsCommand::Show { id } => {
            let e = client
                .call(GetEcosystemRequest { id }, |ch, r| async move {
                    EcosystemServiceClient::new(ch).get_ecosystem(r).await
                })
                .await?;
            print(format, || ecosystem_json(&e), || ecosystem_text(&e))
        }
        EcosystemsCommand::SetPasswordLength { length, id } => {
            let e = client
                .call(UpdateEcosystemRequest { id, password_min_length: length }, |ch, r| async move {
                    EcosystemServiceClient::new(ch).update_ecosystem(r).await
                })
                .await?;
            print(format, || ecosystem_json(&e), || ecosystem_text(&e))
        }
        EcosystemsCommand::Stats { id, from, to } => {
            let s = client
                .call(GetEcosystemStatisticsRequest { id, from_day: from, to_day: to }, |ch, r| async move {
                    EcosystemServiceClient::new(ch).get_ecosystem_statistics(r).await
                })
                .await?;
            print(
                format,
                || {
                    json!({
                        "ecosystem_id": s.ecosystem_id, "organizations": s.organizations,
                        "capacity": s.capacity, "balance": s.balance, "used": s.used,
                        "days": s.days.iter().map(|d| json!({
                            "day": d.day, "ordered": d.ordered, "issued": d.issued,
                        })).collect::<Vec<_>>(),
                    })
                },
                || {
                    let mut out = format!(
                        "ecosystem {}: {} organizations, capacity {}, used {}, balance {}\n",
                        s.ecosystem_id, s.organizations, s.capacity, s.used, s.balance
                    );
                    let mut table = Table::new(&["DAY", "ORDERED", "ISSUED"]);
                    for d in &s.days {
                        table.row([d.day.clone(), d.ordered.to_string(), d.issued.to_string()]);
                    }
                    out.push_str(&table.render());
                    out
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_into_privileges() {
        let p = parse_grant("user:org-1:a,b", "").expect("user");
        assert_eq!((p.role, p.organization_id.as_str(), p.profiles.len()), (Role::User as i32, "org-1", 2));
        let p = parse_grant("org-admin:org-2", "eco").expect("org admin");
        assert_eq!((p.role, p.ecosystem_id.as_str()), (Role::OrgAdmin as i32, "eco"));
        let p = parse_grant("eco-admin:other", "").expect("eco admin");
        assert_eq!(
            (p.role, p.ecosystem_id.as_str(), p.organization_id.as_str()),
            (Role::EcoAdmin as i32, "other", "")
        );
        assert!(parse_grant("user", "").is_err(), "an organization is required");
        assert!(parse_grant("root:org", "").is_err(), "unknown role");
        assert!(parse_grant("eco-admin::p", "").is_err(), "eco-admin takes no profiles");
    }
}
