//! The CLI's `orgs` commands, over `OrganizationService`: parse the arguments, call the client
//! library, print the answer. Checks are the daemon's (it names the bad field); the CLI only
//! turns flags into the request.

use super::args::OutputFormat;
use super::output::{Table, time};
use super::run::{CliError, print};
use cardhsm_client::CardhsmClient;
use cardhsm_client::v1::{
    AddOrganizationAuthorityRequest, CreateOrganizationRequest, Organization, OrganizationAuthority,
    OrganizationStatus, UpdateOrganizationAuthorityRequest, UpdateOrganizationRequest,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Active,
    Inactive,
}

impl From<StatusArg> for OrganizationStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Active => OrganizationStatus::Active,
            StatusArg::Inactive => OrganizationStatus::Inactive,
        }
    }
}

/// The organization parameters, each optional.
#[derive(Debug, Args)]
pub struct ParameterArgs {
    /// ORGANIZATION parameter (subject O)
    #[arg(long)]
    organization: Option<String>,
    /// CITY parameter (subject L)
    #[arg(long)]
    city: Option<String>,
    /// STATE parameter (subject ST)
    #[arg(long)]
    state: Option<String>,
    /// COUNTRY parameter: two capital letters (subject C)
    #[arg(long)]
    country: Option<String>,
    /// MANUFACTURER_ID parameter: 1 to 3 digits
    #[arg(long, value_name = "ID")]
    manufacturer_id: Option<String>,
}

impl ParameterArgs {
    /// Sets the given flags over `into` (the others stay as they are).
    fn apply(self, into: &mut HashMap<String, String>) {
        for (key, value) in [
            ("ORGANIZATION", self.organization),
            ("CITY", self.city),
            ("STATE", self.state),
            ("COUNTRY", self.country),
            ("MANUFACTURER_ID", self.manufacturer_id),
        ] {
            if let Some(v) = value {
                into.insert(key.to_owned(), v);
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organization (administrators)
    Create {
        /// Name, unique in any case
        name: String,
        #[command(flatten)]
        parameters: ParameterArgs,
        #[arg(long, value_enum, default_value = "active")]
        status: StatusArg,
    },
    /// List organizations by name, one page at a time
    List {
        /// Page index (0-based)
        #[arg(long, default_value_t = 0)]
        page: u32,
        /// Organizations per page, at most 50 [default: 20]
        #[arg(long)]
        size: Option<u32>,
    },
    /// Show one organization
    Show {
        /// Organization id
        id: String,
    },
    /// Change an organization: the given flags replace their values, the others stay
    Update {
        /// Organization id
        id: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        parameters: ParameterArgs,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
    },
    /// Whether a name is still free
    Check { name: String },
    /// Authorities assigned to an organization, with their balances
    #[command(subcommand)]
    Authorities(OrgAuthoritiesCommand),
}

#[derive(Debug, Subcommand)]
pub enum OrgAuthoritiesCommand {
    /// List the authorities of an organization
    List {
        /// Organization id
        org: String,
    },
    /// Assign an authority with a balance
    Add {
        org: String,
        authority: String,
        #[arg(long, default_value_t = 0)]
        balance: i64,
        /// Assign it disabled
        #[arg(long)]
        disabled: bool,
    },
    /// Change the balance and/or enabled flag of an assignment
    Update {
        org: String,
        authority: String,
        #[arg(long)]
        balance: Option<i64>,
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Remove an authority from an organization
    Remove { org: String, authority: String },
}

fn status_name(v: i32) -> &'static str {
    match OrganizationStatus::try_from(v) {
        Ok(OrganizationStatus::Active) => "ACTIVE",
        Ok(OrganizationStatus::Inactive) => "INACTIVE",
        _ => "?",
    }
}

fn org_json(o: &Organization) -> Value {
    json!({
        "id": o.id, "name": o.name, "parameters": o.parameters, "status": status_name(o.status),
        "created_at": o.created_at, "updated_at": o.updated_at,
    })
}

fn org_text(o: &Organization) -> String {
    let mut params: Vec<_> = o.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    params.sort();
    format!(
        "id:         {}\nname:       {}\nstatus:     {}\nparameters: {}\ncreated:    {}\nupdated:    {}\n",
        o.id,
        o.name,
        status_name(o.status),
        params.join(", "),
        time(o.created_at),
        time(o.updated_at)
    )
}

fn authority_json(a: &OrganizationAuthority) -> Value {
    json!({
        "authority_id": a.authority_id, "authority_name": a.authority_name, "balance": a.balance,
        "used": a.used, "available": a.available, "enabled": a.enabled,
    })
}

fn authority_text(a: &OrganizationAuthority) -> String {
    format!(
        "{} ({}): balance {}, used {}, available {}, {}\n",
        a.authority_name,
        a.authority_id,
        a.balance,
        a.used,
        a.available,
        if a.enabled { "enabled" } else { "disabled" }
    )
}

/// Runs an `orgs` command.
pub async fn orgs(
    client: &CardhsmClient,
    format: OutputFormat,
    command: OrgsCommand,
) -> Result<(), CliError> {
    match command {
        OrgsCommand::Create { name, parameters, status } => {
            let mut map = HashMap::new();
            parameters.apply(&mut map);
            let request = CreateOrganizationRequest {
                name,
                parameters: map,
                status: OrganizationStatus::from(status).into(),
            };
            let o = client.create_organization(request).await?;
            print(format, || org_json(&o), || org_text(&o))
        }
        OrgsCommand::List { page, size } => {
            let found = client.list_organizations(page, size.unwrap_or(0)).await?;
            print(
                format,
                || {
                    json!({
                        "organizations": found.organizations.iter().map(org_json).collect::<Vec<_>>(),
                        "total": found.total,
                    })
                },
                || {
                    let mut table = Table::new(&["ID", "NAME", "STATUS", "COUNTRY", "MANUFACTURER"]);
                    for o in &found.organizations {
                        let p = |k: &str| o.parameters.get(k).cloned().unwrap_or_default();
                        table.row([
                            o.id.clone(),
                            o.name.clone(),
                            status_name(o.status).to_owned(),
                            p("COUNTRY"),
                            p("MANUFACTURER_ID"),
                        ]);
                    }
                    let mut out = table.render();
                    out.push_str(&format!(
                        "({} of {} organizations)\n",
                        found.organizations.len(),
                        found.total
                    ));
                    out
                },
            )
        }
        OrgsCommand::Show { id } => {
            let o = client.get_organization(&id).await?;
            print(format, || org_json(&o), || org_text(&o))
        }
        OrgsCommand::Update { id, name, parameters, status } => {
            // The RPC replaces name and parameters: start from the current ones.
            let current = client.get_organization(&id).await?;
            let mut map = current.parameters;
            parameters.apply(&mut map);
            let request = UpdateOrganizationRequest {
                id,
                name: name.unwrap_or(current.name),
                parameters: map,
                status: status.map(|s| OrganizationStatus::from(s).into()).unwrap_or_default(),
            };
            let o = client.update_organization(request).await?;
            print(format, || org_json(&o), || org_text(&o))
        }
        OrgsCommand::Check { name } => {
            let available = client.check_organization(&name).await?;
            print(
                format,
                || json!({ "name": name, "available": available }),
                || format!("{name:?} is {}\n", if available { "available" } else { "taken" }),
            )
        }
        OrgsCommand::Authorities(command) => authorities(client, format, command).await,
    }
}

async fn authorities(
    client: &CardhsmClient,
    format: OutputFormat,
    command: OrgAuthoritiesCommand,
) -> Result<(), CliError> {
    match command {
        OrgAuthoritiesCommand::List { org } => {
            let list = client.list_organization_authorities(&org).await?;
            print(
                format,
                || json!({ "authorities": list.iter().map(authority_json).collect::<Vec<_>>() }),
                || list.iter().map(authority_text).collect::<String>(),
            )
        }
        OrgAuthoritiesCommand::Add { org, authority, balance, disabled } => {
            let request = AddOrganizationAuthorityRequest {
                organization_id: org,
                authority_id: authority,
                balance,
                enabled: !disabled,
            };
            let a = client.add_organization_authority(request).await?;
            print(format, || authority_json(&a), || authority_text(&a))
        }
        OrgAuthoritiesCommand::Update { org, authority, balance, enabled } => {
            let request = UpdateOrganizationAuthorityRequest {
                organization_id: org,
                authority_id: authority,
                balance,
                enabled,
            };
            let a = client.update_organization_authority(request).await?;
            print(format, || authority_json(&a), || authority_text(&a))
        }
        OrgAuthoritiesCommand::Remove { org, authority } => {
            client.remove_organization_authority(&org, &authority).await?;
            print(
                format,
                || json!({ "removed": authority, "organization_id": org }),
                || format!("authority {authority} removed from organization {org}\n"),
            )
        }
    }
}
