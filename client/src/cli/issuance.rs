//! The CLI's PKI commands — `ca`, `profiles`, `cert`, `crl` — over `IssuanceService`: reads the
//! input files, calls [`CardhsmClient`], writes the requested output files and prints the answer
//! as a table or JSON (enum values by their [`cardhsm_client::names`] names, reasons as openssl
//! spells them).

use super::args::{CaCommand, CertCommand, CrlCommand, OutputFormat, ProfilesCommand};
use super::output::{Table, page_footer, time};
use super::run::{CliError, print};
use cardhsm_client::CardhsmClient;
use cardhsm_client::names::{
    authority_kind_name, authority_status_name, certificate_status_name, crl_reason_name,
};
use cardhsm_client::v1::{
    Authority, AuthorityKind, CertificateStatus, CertificateSummary, CreateAuthorityRequest, Crl,
    IssueCertificateRequest, IssuedCertificate, PageResponse, ParameterScope, Profile, ProfileParameter,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// Reads a text (PEM) input file.
fn read_text(what: &str, path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read the {what} {}: {e}", path.display())))
}

/// Writes an output file.
fn write_file(what: &str, path: &Path, contents: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, contents)
        .map_err(|e| CliError::Input(format!("cannot write the {what} to {}: {e}", path.display())))
}

/// `--param` pairs as the request's map; a name given twice is refused.
pub fn params_map(params: Vec<(String, String)>) -> Result<HashMap<String, String>, CliError> {
    let mut map = HashMap::with_capacity(params.len());
    for (name, value) in params {
        if map.contains_key(&name) {
            return Err(CliError::Input(format!("--param {name} is given more than once")));
        }
        map.insert(name, value);
    }
    Ok(map)
}

pub async fn ca(client: &CardhsmClient, format: OutputFormat, command: CaCommand) -> Result<(), CliError> {
    let authority = |a: Authority| print(format, || authority_json(&a), || authority_table(&a));
    match command {
        CaCommand::Create { name, key_type, subject, validity_years, kind, parent } => {
            let kind = kind.map_or_else(
                || if parent.is_some() { AuthorityKind::Intermediate } else { AuthorityKind::Root },
                Into::into,
            );
            let request = CreateAuthorityRequest {
                name,
                key_algorithm: key_type,
                subject_dn: subject,
                validity_years,
                kind: kind.into(),
                parent_id: parent.unwrap_or_default(),
            };
            authority(client.create_authority(request).await?)
        }
        CaCommand::List => {
            let list = client.list_authorities().await?;
            print(format, || authorities_json(&list), || authorities_table(&list))
        }
        CaCommand::Show { id, chain_out } => {
            let a = client.get_authority(&id).await?;
            if let Some(path) = chain_out {
                if a.chain_pem.is_empty() {
                    return Err(CliError::Input(format!(
                        "authority {id} has no certificate yet (status {})",
                        authority_status_name(a.status)
                    )));
                }
                write_file("certificate chain", &path, a.chain_pem.as_bytes())?;
            }
            authority(a)
        }
        CaCommand::ImportCert { id, certificate, chain } => {
            let mut pem = read_text("certificate", &certificate)?;
            if let Some(chain) = chain {
                if !pem.ends_with('\n') {
                    pem.push('\n');
                }
                pem.push_str(&read_text("chain", &chain)?);
            }
            authority(client.import_authority_certificate(&id, &pem).await?)
        }
    }
}

pub async fn profiles(
    client: &CardhsmClient,
    format: OutputFormat,
    command: ProfilesCommand,
) -> Result<(), CliError> {
    match command {
        ProfilesCommand::List => {
            let list = client.list_profiles().await?;
            print(format, || profiles_json(&list), || profiles_table(&list))
        }
        ProfilesCommand::Show { id } => {
            let p = client.get_profile(&id).await?;
            print(format, || profile_json(&p), || profile_table(&p))
        }
    }
}

pub async fn cert(
    client: &CardhsmClient,
    format: OutputFormat,
    command: CertCommand,
) -> Result<(), CliError> {
    match command {
        CertCommand::Issue {
            authority,
            profile,
            csr,
            generate_key,
            key_type,
            p12_password_file,
            params,
            validity_years,
            out,
        } => {
            let csr_pem = match &csr {
                Some(path) => read_text("certificate request", path)?,
                None => String::new(),
            };
            // With --generate-key the daemon makes the key and returns it in a PKCS#12 under
            // this password (read from a file: never a flag's value).
            let pkcs12_password = match &p12_password_file {
                Some(path) => super::store::secret_file("PKCS#12 password", path)?.expose().to_owned(),
                None => String::new(),
            };
            let request = IssueCertificateRequest {
                authority_id: authority,
                profile_id: profile,
                params: params_map(params)?,
                csr_pem,
                validity_years: validity_years.unwrap_or(0),
                generate_key,
                key_type: key_type.unwrap_or_default(),
                pkcs12_password,
            };
            let issued = client.issue_certificate(request).await?;
            if let Some(path) = &out {
                if generate_key {
                    write_file("PKCS#12", path, &issued.pkcs12)?;
                } else {
                    write_file("certificate", path, issued.certificate_pem.as_bytes())?;
                }
            }
            print(format, || issued_json(&issued), || issued_table(&issued, out.is_none()))
        }
        CertCommand::Find { cn, serial, page_size, page_token } => {
            let page = client
                .find_certificates(
                    &cn.unwrap_or_default(),
                    &serial.unwrap_or_default(),
                    page_size.unwrap_or(0),
                    &page_token.unwrap_or_default(),
                )
                .await?;
            print(
                format,
                || summaries_json(&page.certificates, page.page.as_ref()),
                || summaries_table(&page.certificates, page.page.as_ref()),
            )
        }
        CertCommand::Revoke { serial, profile, id, reason } => {
            let done = match (serial, profile) {
                (Some(serial), Some(profile)) => {
                    vec![client.revoke_certificate(&profile, &serial, reason).await?]
                }
                (None, None) if !id.is_empty() => client.revoke_certificates(&id, reason).await?,
                _ => return Err(CliError::Input("give --serial with --profile, or --id".into())),
            };
            print(format, || summaries_json(&done, None), || summaries_table(&done, None))
        }
    }
}

pub async fn crl(client: &CardhsmClient, format: OutputFormat, command: CrlCommand) -> Result<(), CliError> {
    let CrlCommand::Get { authority, out, pem } = command;
    let crl = client.get_crl(&authority).await?;
    let contents = if pem { crl.crl_pem.as_bytes() } else { crl.crl_der.as_slice() };
    write_file("CRL", &out, contents)?;
    let file = out.display().to_string();
    print(format, || crl_json(&crl, &authority, &file, pem), || crl_table(&crl, &authority, &file, pem))
}

// ---- output ----

/// One authority as JSON.
pub fn authority_json(a: &Authority) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "kind": authority_kind_name(a.kind),
        "parent_id": a.parent_id,
        "key_algorithm": a.key_algorithm,
        "subject_dn": a.subject_dn,
        "enabled": a.enabled,
        "status": authority_status_name(a.status),
        "certificate_pem": a.certificate_pem,
        "chain_pem": a.chain_pem,
        "csr_pem": a.csr_pem,
        "not_before": a.not_before,
        "not_after": a.not_after,
        "issued_count": a.issued_count,
        "created_at": a.created_at,
    })
}

/// One authority for people; an external authority waiting for its certificate shows its CSR.
pub fn authority_table(a: &Authority) -> String {
    let mut table = Table::without_header();
    table
        .row(["id:", &a.id])
        .row(["name:", &a.name])
        .row(["kind:", &authority_kind_name(a.kind)])
        .row(["status:", &authority_status_name(a.status)])
        .row(["parent:", &a.parent_id])
        .row(["key algorithm:", &a.key_algorithm])
        .row(["subject:", &a.subject_dn])
        .row(["enabled:", if a.enabled { "yes" } else { "no" }])
        .row(["valid from:", &time(a.not_before)])
        .row(["valid until:", &time(a.not_after)])
        .row(["issued:", &a.issued_count.to_string()])
        .row(["chain length:", &a.chain_pem.matches("-----BEGIN CERTIFICATE-----").count().to_string()])
        .row(["created:", &time(a.created_at)]);
    let mut out = table.render();
    if a.certificate_pem.is_empty() && !a.csr_pem.is_empty() {
        out.push('\n');
        out.push_str(&a.csr_pem);
    }
    out
}

/// The authorities as JSON.
pub fn authorities_json(list: &[Authority]) -> Value {
    json!({ "authorities": list.iter().map(authority_json).collect::<Vec<_>>() })
}

/// The authorities for people.
pub fn authorities_table(list: &[Authority]) -> String {
    let mut table =
        Table::new(&["ID", "NAME", "KIND", "STATUS", "KEY", "SUBJECT", "ISSUED", "VALID UNTIL", "ENABLED"]);
    for a in list {
        table.row([
            a.id.clone(),
            a.name.clone(),
            authority_kind_name(a.kind).into_owned(),
            authority_status_name(a.status).into_owned(),
            a.key_algorithm.clone(),
            a.subject_dn.clone(),
            a.issued_count.to_string(),
            time(a.not_after),
            if a.enabled { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table.render()
}

fn scope_name(value: i32) -> String {
    match ParameterScope::try_from(value) {
        Ok(ParameterScope::Batch) => "batch".into(),
        Ok(ParameterScope::Request) => "request".into(),
        Ok(ParameterScope::Csr) => "csr".into(),
        Ok(ParameterScope::CsrSubject) => "csr-subject".into(),
        Ok(ParameterScope::Organization) => "organization".into(),
        Ok(ParameterScope::Unspecified) => "unspecified".into(),
        Err(_) => format!("unknown({value})"),
    }
}

fn parameter_json(p: &ProfileParameter) -> Value {
    json!({
        "name": p.name,
        "title": p.title,
        "input_type": p.input_type,
        "required": p.required,
        "placeholder": p.placeholder,
        "validation_pattern": p.validation_pattern,
        "message": p.message,
        "value": p.value,
        "scopes": p.scopes.iter().map(|&s| scope_name(s)).collect::<Vec<_>>(),
        "dynamic": p.dynamic,
    })
}

/// One profile as JSON.
pub fn profile_json(p: &Profile) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "key_algorithms": p.key_algorithms,
        "authority_name": p.authority_name,
        "subject_dn": p.subject_dn,
        "key_usages": p.key_usages,
        "extended_key_usages": p.extended_key_usages,
        "validity_years": p.validity_years,
        "max_validity_years": p.max_validity_years,
        "parameters": p.parameters.iter().map(parameter_json).collect::<Vec<_>>(),
    })
}

/// One profile for people: its fields, then its parameters.
pub fn profile_table(p: &Profile) -> String {
    let mut fields = Table::without_header();
    fields
        .row(["id:", &p.id])
        .row(["name:", &p.name])
        .row(["key algorithms:", &p.key_algorithms.join(",")])
        .row(["authority:", if p.authority_name.is_empty() { "any" } else { &p.authority_name }])
        .row(["subject dn:", &p.subject_dn])
        .row(["key usages:", &p.key_usages.join(",")])
        .row(["extended key usages:", &p.extended_key_usages.join(",")])
        .row(["validity years:", &format!("{} (at most {})", p.validity_years, p.max_validity_years)]);
    let mut out = fields.render();
    if !p.parameters.is_empty() {
        let mut params = Table::new(&["PARAMETER", "REQUIRED", "TYPE", "DEFAULT", "PATTERN", "SCOPES"]);
        for x in &p.parameters {
            params.row([
                x.name.clone(),
                if x.required { "yes" } else { "no" }.to_owned(),
                x.input_type.clone(),
                x.value.clone(),
                x.validation_pattern.clone(),
                x.scopes.iter().map(|&s| scope_name(s)).collect::<Vec<_>>().join(","),
            ]);
        }
        out.push('\n');
        out.push_str(&params.render());
    }
    out
}

/// The profiles as JSON.
pub fn profiles_json(list: &[Profile]) -> Value {
    json!({ "profiles": list.iter().map(profile_json).collect::<Vec<_>>() })
}

/// The profiles for people.
pub fn profiles_table(list: &[Profile]) -> String {
    let mut table = Table::new(&["ID", "NAME", "ALGORITHMS", "AUTHORITY", "VALIDITY"]);
    for p in list {
        table.row([
            p.id.clone(),
            p.name.clone(),
            p.key_algorithms.join(","),
            p.authority_name.clone(),
            format!("{}y (max {}y)", p.validity_years, p.max_validity_years),
        ]);
    }
    table.render()
}

/// An issued certificate as JSON.
pub fn issued_json(c: &IssuedCertificate) -> Value {
    json!({
        "id": c.id,
        "serial_number": c.serial_number,
        "subject_dn": c.subject_dn,
        "not_before": c.not_before,
        "not_after": c.not_after,
        "certificate_pem": c.certificate_pem,
        "chain_pem": c.chain_pem,
    })
}

/// An issued certificate for people, followed by its PEM unless it went to a file.
pub fn issued_table(c: &IssuedCertificate, with_pem: bool) -> String {
    let mut table = Table::without_header();
    table
        .row(["id:", &c.id])
        .row(["serial number:", &c.serial_number])
        .row(["subject:", &c.subject_dn])
        .row(["valid from:", &time(c.not_before)])
        .row(["valid until:", &time(c.not_after)]);
    let mut out = table.render();
    if with_pem {
        out.push('\n');
        out.push_str(&c.certificate_pem);
    }
    out
}

/// The reason of a revoked or held certificate, as openssl names it.
fn reason(c: &CertificateSummary) -> Option<String> {
    let revoked = [CertificateStatus::Revoked, CertificateStatus::OnHold].map(i32::from);
    revoked.contains(&c.status).then(|| crl_reason_name(c.revocation_reason).into_owned())
}

fn summary_json(c: &CertificateSummary) -> Value {
    json!({
        "id": c.id,
        "common_name": c.common_name,
        "serial_number": c.serial_number,
        "subject_dn": c.subject_dn,
        "status": certificate_status_name(c.status),
        "revocation_reason": reason(c),
        "revoked_at": c.revoked_at,
        "authority_id": c.authority_id,
        "profile_id": c.profile_id,
        "created_at": c.created_at,
        "not_after": c.not_after,
    })
}

/// Certificates (a page of them when `page` is given) as JSON.
pub fn summaries_json(list: &[CertificateSummary], page: Option<&PageResponse>) -> Value {
    let mut value = json!({ "certificates": list.iter().map(summary_json).collect::<Vec<_>>() });
    if let Some(p) = page {
        value["next_page_token"] = json!(p.next_page_token);
        value["total_count"] = json!(p.total_count);
    }
    value
}

/// Certificates for people, with a paging footer when `page` is given.
pub fn summaries_table(list: &[CertificateSummary], page: Option<&PageResponse>) -> String {
    let mut table = Table::new(&["ID", "COMMON NAME", "SERIAL", "STATUS", "REASON", "PROFILE", "CREATED"]);
    for c in list {
        table.row([
            c.id.clone(),
            c.common_name.clone(),
            c.serial_number.clone(),
            certificate_status_name(c.status).into_owned(),
            reason(c).unwrap_or_default(),
            c.profile_id.clone(),
            time(c.created_at),
        ]);
    }
    let mut out = table.render();
    if page.is_some() {
        out.push_str(&page_footer(list.len(), page, "certificates"));
    }
    out
}

fn crl_json(crl: &Crl, authority: &str, file: &str, pem: bool) -> Value {
    json!({
        "authority_id": authority,
        "crl_number": crl.crl_number,
        "this_update": crl.this_update,
        "next_update": crl.next_update,
        "file": file,
        "format": if pem { "pem" } else { "der" },
    })
}

fn crl_table(crl: &Crl, authority: &str, file: &str, pem: bool) -> String {
    let mut table = Table::without_header();
    table
        .row(["authority:", authority])
        .row(["crl number:", &crl.crl_number.to_string()])
        .row(["this update:", &time(crl.this_update)])
        .row(["next update:", &time(crl.next_update)])
        .row(["written to:", &format!("{file} ({})", if pem { "PEM" } else { "DER" })]);
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_params_are_refused() {
        let ok = params_map(vec![("a".into(), "1".into()), ("b".into(), String::new())]);
        assert_eq!(ok.ok().map(|m| m.len()), Some(2));
        let dup = params_map(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert!(matches!(dup, Err(CliError::Input(ref m)) if m.contains("--param a")));
    }

    #[test]
    fn revoked_summaries_name_the_reason() {
        let c = CertificateSummary {
            id: "c1".into(),
            common_name: "dev".into(),
            serial_number: "0abc".into(),
            status: CertificateStatus::Revoked.into(),
            revocation_reason: 1,
            ..CertificateSummary::default()
        };
        let v = summaries_json(std::slice::from_ref(&c), None);
        assert_eq!(v["certificates"][0]["status"], "revoked");
        assert_eq!(v["certificates"][0]["revocation_reason"], "keyCompromise");
        assert!(summaries_table(&[c], None).contains("0abc    revoked  keyCompromise"));
        let valid =
            CertificateSummary { status: CertificateStatus::Valid.into(), ..CertificateSummary::default() };
        assert_eq!(summary_json(&valid)["revocation_reason"], Value::Null);
    }
}
