//! Issuance profiles, inside the issuance service: what a certificate of each kind says (key
//! algorithms, subject-DN template, key usages, validity) and the parameters a request fills
//! in. `resolve` turns a request's parameters (and the CSR's subject, for CSR_SUBJECT
//! parameters) into the subject the CA signs; every error names `params.<name>`.

use crate::pki::{self, ExtendedKeyUsage, KeyUsage, Name, SubjectAltName};
use crate::service::ServiceError;
use regex::Regex;
use std::collections::HashMap;

/// How a parameter may be supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Batch,
    Request,
    Csr,
    /// When the request does not give it, it is taken from the CSR's subject.
    CsrSubject,
    Organization,
}

impl Scope {
    pub const ALL: [Scope; 5] =
        [Scope::Batch, Scope::Request, Scope::Csr, Scope::CsrSubject, Scope::Organization];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Batch => "BATCH",
            Scope::Request => "REQUEST",
            Scope::Csr => "CSR",
            Scope::CsrSubject => "CSR_SUBJECT",
            Scope::Organization => "ORGANIZATION",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One parameter of a profile.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub input_type: String,
    pub required: bool,
    pub placeholder: String,
    /// As configured; `pattern` is it anchored to the whole value.
    pub validation_pattern: String,
    pub message: String,
    /// Default value.
    pub value: String,
    pub title: String,
    pub scopes: Vec<Scope>,
    pub dynamic: bool,
    pattern: Regex,
}

impl Parameter {
    /// A parameter whose pattern must match the whole value. Fails with the regex error.
    #[allow(clippy::too_many_arguments, reason = "a plain record; the builders below name every field")]
    pub fn new(
        name: &str,
        input_type: &str,
        required: bool,
        placeholder: &str,
        validation_pattern: &str,
        message: &str,
        value: &str,
        title: &str,
        scopes: Vec<Scope>,
        dynamic: bool,
    ) -> Result<Parameter, String> {
        let pattern = Regex::new(&format!("^(?:{validation_pattern})$")).map_err(|e| e.to_string())?;
        Ok(Parameter {
            name: name.to_owned(),
            input_type: input_type.to_owned(),
            required,
            placeholder: placeholder.to_owned(),
            validation_pattern: validation_pattern.to_owned(),
            message: message.to_owned(),
            value: value.to_owned(),
            title: title.to_owned(),
            scopes,
            dynamic,
            pattern,
        })
    }

    /// Which CSR subject attribute a CSR_SUBJECT parameter reads, by its conventional name.
    fn csr_attribute(&self, parts: &pki::NameParts) -> Option<String> {
        match self.name.as_str() {
            "commonName" => parts.cn.clone(),
            "organization" => parts.o.clone(),
            "organizationalUnit" => parts.ou.clone(),
            "locality" => parts.l.clone(),
            "state" => parts.s.clone(),
            "country" => parts.c.clone(),
            _ => None,
        }
    }
}

/// An issuance profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub name: String,
    /// Accepted subject keys in `KeyKind` notation (`EC:P-256`, `RSA:2048`).
    pub key_algorithms: Vec<String>,
    /// The authority (by name) the profile issues from; None = any.
    pub authority_name: Option<String>,
    /// RFC 4514 template with `{parameter}` placeholders.
    pub subject_dn: String,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    pub validity_years: u32,
    pub max_validity_years: u32,
    pub parameters: Vec<Parameter>,
    /// Server certificates: the common name is also the subjectAltName DNS entry (TLS
    /// clients match host names against the SAN only).
    pub cn_as_dns_san: bool,
    /// PBKDF2 and MAC iterations of the PKCS#12 files made with this profile.
    pub pkcs12_iterations: u32,
}

/// What a profile and a request's parameters make.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub subject: Name,
    pub subject_dn: String,
    pub common_name: String,
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// The RFC 4514 names of key usages and extended key usages, as profiles list them.
pub fn key_usage_name(u: KeyUsage) -> &'static str {
    match u {
        KeyUsage::DigitalSignature => "digitalSignature",
        KeyUsage::ContentCommitment => "contentCommitment",
        KeyUsage::KeyEncipherment => "keyEncipherment",
        KeyUsage::DataEncipherment => "dataEncipherment",
        KeyUsage::KeyAgreement => "keyAgreement",
        KeyUsage::KeyCertSign => "keyCertSign",
        KeyUsage::CrlSign => "cRLSign",
        KeyUsage::EncipherOnly => "encipherOnly",
        KeyUsage::DecipherOnly => "decipherOnly",
    }
}

pub fn key_usage_from_name(s: &str) -> Option<KeyUsage> {
    KeyUsage::ALL.into_iter().find(|u| key_usage_name(*u).eq_ignore_ascii_case(s.trim()))
}

pub fn eku_name(e: ExtendedKeyUsage) -> String {
    match e {
        ExtendedKeyUsage::ServerAuth => "serverAuth".into(),
        ExtendedKeyUsage::ClientAuth => "clientAuth".into(),
        ExtendedKeyUsage::CodeSigning => "codeSigning".into(),
        ExtendedKeyUsage::EmailProtection => "emailProtection".into(),
        ExtendedKeyUsage::TimeStamping => "timeStamping".into(),
        ExtendedKeyUsage::OcspSigning => "OCSPSigning".into(),
        ExtendedKeyUsage::SmartcardLogon => "smartcardLogon".into(),
        ExtendedKeyUsage::Other(oid) => oid.to_string(),
    }
}

/// A name, or a dotted OID for any other purpose.
pub fn eku_from_name(s: &str) -> Option<ExtendedKeyUsage> {
    use ExtendedKeyUsage::*;
    let s = s.trim();
    [ServerAuth, ClientAuth, CodeSigning, EmailProtection, TimeStamping, OcspSigning, SmartcardLogon]
        .into_iter()
        .find(|e| eku_name(*e).eq_ignore_ascii_case(s))
        .or_else(|| s.parse::<const_oid::ObjectIdentifier>().ok().map(ExtendedKeyUsage::from_oid))
}

/// Organisation-style text: letters, digits and common punctuation, 1–64 characters.
const TEXT_PATTERN: &str = r"[\p{L}\p{N}][\p{L}\p{N} .,&'()/@_+-]{0,63}";
/// A host name (optionally a leading wildcard label), as server certificates carry.
const DNS_PATTERN: &str =
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

fn builtin(id: &str, name: &str, algorithms: &[&str], server: bool, rsa: bool) -> Result<Profile, String> {
    use Scope::*;
    let cn = if server {
        Parameter::new(
            "commonName",
            "text",
            true,
            "www.example.com",
            DNS_PATTERN,
            "must be a DNS host name such as www.example.com",
            "",
            "Host name",
            vec![Request, Csr, CsrSubject, Batch],
            false,
        )?
    } else {
        Parameter::new(
            "commonName",
            "text",
            true,
            "device-0001",
            r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}",
            "must be 1 to 64 of A-Z a-z 0-9 space . _ @ -, starting with a letter or digit",
            "",
            "Device name",
            vec![Request, Csr, CsrSubject, Batch],
            false,
        )?
    };
    let parameters = vec![
        cn,
        Parameter::new(
            "organization",
            "text",
            false,
            "Acme s.r.o.",
            TEXT_PATTERN,
            "must be 1 to 64 letters, digits and common punctuation",
            "",
            "Organization",
            vec![Request, Csr, CsrSubject, Batch, Organization],
            false,
        )?,
        Parameter::new(
            "organizationalUnit",
            "text",
            false,
            "Devices",
            TEXT_PATTERN,
            "must be 1 to 64 letters, digits and common punctuation",
            "",
            "Organizational unit",
            vec![Request, Csr, CsrSubject, Batch, Organization],
            false,
        )?,
        Parameter::new(
            "country",
            "country",
            false,
            "CZ",
            "[A-Z]{2}",
            "must be a two-letter ISO 3166 country code in capitals",
            "",
            "Country",
            vec![Request, Csr, CsrSubject, Batch, Organization],
            false,
        )?,
    ];
    let mut key_usage = vec![KeyUsage::DigitalSignature];
    if rsa {
        // RSA key transport (TLS with RSA key exchange, encrypted e-mail) needs it.
        key_usage.push(KeyUsage::KeyEncipherment);
    }
    Ok(Profile {
        id: id.to_owned(),
        name: name.to_owned(),
        key_algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
        authority_name: None,
        subject_dn: "CN={commonName},OU={organizationalUnit},O={organization},C={country}".into(),
        key_usage,
        extended_key_usage: if server {
            vec![ExtendedKeyUsage::ServerAuth]
        } else {
            vec![ExtendedKeyUsage::ClientAuth]
        },
        validity_years: 1,
        max_validity_years: 3,
        parameters,
        cn_as_dns_san: server,
        pkcs12_iterations: crate::pki::PKCS12_ITERATIONS,
    })
}

/// A card holder's certificate: the subject is the card owner (a user principal name), with
/// the organization optional; keys of any algorithm a card policy may generate.
fn card_profile(
    id: &str,
    name: &str,
    key_usage: Vec<KeyUsage>,
    extended_key_usage: Vec<ExtendedKeyUsage>,
) -> Result<Profile, String> {
    use Scope::*;
    Ok(Profile {
        id: id.to_owned(),
        name: name.to_owned(),
        key_algorithms: ["EC:P-256", "EC:P-384", "RSA:2048", "RSA:3072", "RSA:4096"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect(),
        authority_name: None,
        subject_dn: "CN={commonName},O={organization}".into(),
        key_usage,
        extended_key_usage,
        validity_years: 1,
        max_validity_years: 3,
        parameters: vec![
            Parameter::new(
                "commonName",
                "text",
                true,
                "alice@example.com",
                r"[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,127}",
                "must be the card owner: 1 to 128 of A-Z a-z 0-9 space . _ @ + -",
                "",
                "Card owner",
                vec![Request],
                false,
            )?,
            Parameter::new(
                "organization",
                "text",
                false,
                "Acme s.r.o.",
                TEXT_PATTERN,
                "must be 1 to 64 letters, digits and common punctuation",
                "",
                "Organization",
                vec![Request, Organization],
                false,
            )?,
        ],
        cn_as_dns_san: false,
        pkcs12_iterations: crate::pki::PKCS12_ITERATIONS,
    })
}

/// The built-in profiles: the four a device PKI needs, and the two of a PIV-style card.
pub fn builtin_profiles() -> Result<Vec<Profile>, String> {
    const EC: &[&str] = &["EC:P-256", "EC:P-384"];
    const RSA: &[&str] = &["RSA:2048", "RSA:3072", "RSA:4096"];
    Ok(vec![
        builtin("ecc-device", "ECC Device Certificate", EC, false, false)?,
        builtin("ecc-server", "ECC Server Certificate", EC, true, false)?,
        builtin("rsa-device", "RSA Device Certificate", RSA, false, true)?,
        builtin("rsa-server", "RSA Server Certificate", RSA, true, true)?,
        // Logging on with the card: TLS client authentication and Windows smart-card logon.
        card_profile(
            "card-authentication",
            "Card Authentication Certificate",
            vec![KeyUsage::DigitalSignature],
            vec![ExtendedKeyUsage::ClientAuth, ExtendedKeyUsage::SmartcardLogon],
        )?,
        // Signing documents and mail with the card: non-repudiation (contentCommitment).
        card_profile(
            "card-signature",
            "Card Signature Certificate",
            vec![KeyUsage::DigitalSignature, KeyUsage::ContentCommitment],
            vec![ExtendedKeyUsage::EmailProtection],
        )?,
    ])
}

/// A profile from `[[issuance.profiles]]` (already validated by hsm-config; the checks here
/// only guard the conversion).
fn from_config(c: &hsm_config::ProfileConfig) -> Result<Profile, String> {
    let mut parameters = Vec::with_capacity(c.parameters.len());
    for p in &c.parameters {
        let mut scopes = Vec::with_capacity(p.scopes.len());
        for s in &p.scopes {
            scopes.push(Scope::parse(s).ok_or_else(|| format!("profile {}: unknown scope {s:?}", c.id))?);
        }
        parameters.push(
            Parameter::new(
                &p.name,
                &p.input_type,
                p.required,
                &p.placeholder,
                &p.validation_pattern,
                &p.message,
                &p.value,
                &p.title,
                scopes,
                p.dynamic,
            )
            .map_err(|e| format!("profile {} parameter {}: {e}", c.id, p.name))?,
        );
    }
    let mut key_usage = Vec::with_capacity(c.key_usages.len());
    for u in &c.key_usages {
        key_usage.push(
            key_usage_from_name(u).ok_or_else(|| format!("profile {}: unknown key usage {u:?}", c.id))?,
        );
    }
    let mut extended_key_usage = Vec::with_capacity(c.extended_key_usages.len());
    for e in &c.extended_key_usages {
        extended_key_usage.push(
            eku_from_name(e).ok_or_else(|| format!("profile {}: unknown extended key usage {e:?}", c.id))?,
        );
    }
    let profile = Profile {
        id: c.id.clone(),
        name: c.name.clone(),
        key_algorithms: c.key_algorithms.iter().map(|a| a.as_str().to_owned()).collect(),
        authority_name: c.authority.clone(),
        subject_dn: c.subject_dn.clone(),
        key_usage,
        extended_key_usage,
        validity_years: c.validity_years,
        max_validity_years: c.max_validity_years,
        parameters,
        cn_as_dns_san: c.dns_san_from_common_name,
        pkcs12_iterations: c.pkcs12_iterations,
    };
    check_profile(&profile).map_err(|e| format!("profile {}: {e}", c.id))?;
    Ok(profile)
}

/// Every profile: the built-in ones, replaced (same id) or extended by the configured ones.
pub fn all_profiles(config: &hsm_config::Config) -> Result<Vec<Profile>, String> {
    let mut all = builtin_profiles()?;
    for c in &config.issuance.profiles {
        let p = from_config(c)?;
        match all.iter_mut().find(|b| b.id == p.id) {
            Some(existing) => *existing = p,
            None => all.push(p),
        }
    }
    Ok(all)
}

/// Escapes a value for an RFC 4514 string (RFC 4514 2.4).
pub fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits a template at unescaped commas into RDN strings.
fn split_rdns(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in template.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// The `{name}` placeholders of one template piece, in order.
pub fn placeholders(piece: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = piece;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].to_owned());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Checks a profile's own consistency (configured profiles): every placeholder names a
/// parameter; parameter names are unique; validity in range. Errors name the piece at fault.
pub fn check_profile(p: &Profile) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for param in &p.parameters {
        if !seen.insert(param.name.as_str()) {
            return Err(format!("parameter {:?} is defined twice", param.name));
        }
    }
    for name in placeholders(&p.subject_dn) {
        if !p.parameters.iter().any(|x| x.name == name) {
            return Err(format!("subject_dn uses {{{name}}}, which is not a parameter"));
        }
    }
    if p.validity_years == 0 || p.validity_years > p.max_validity_years {
        return Err("validity_years must be 1 to max_validity_years".into());
    }
    Ok(())
}

impl Profile {
    /// Resolves the parameters of a request against this profile:
    /// unknown names are refused; a missing value comes from the CSR subject (CSR_SUBJECT
    /// parameters), then the default; required ones must end up non-empty; every value must
    /// match its pattern; the subject DN is the template with empty pieces left out.
    pub fn resolve(
        &self,
        given: &HashMap<String, String>,
        csr_subject: &Name,
    ) -> Result<Resolved, ServiceError> {
        let mut names: Vec<&String> = given.keys().collect();
        names.sort();
        for name in names {
            if !self.parameters.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.parameters.iter().map(|p| p.name.as_str()).collect();
                return Err(ServiceError::invalid(
                    format!("params.{name}"),
                    format!("is not a parameter of profile {} (known: {})", self.id, known.join(", ")),
                ));
            }
        }
        let csr_parts = pki::name_parts(csr_subject);
        let mut values: HashMap<&str, String> = HashMap::new();
        for p in &self.parameters {
            let field = format!("params.{}", p.name);
            let (value, from_csr) = match given.get(&p.name).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => (v.to_owned(), false),
                _ => {
                    match p.scopes.contains(&Scope::CsrSubject).then(|| p.csr_attribute(&csr_parts)).flatten()
                    {
                        Some(v) => (v, true),
                        None => (p.value.clone(), false),
                    }
                }
            };
            if value.is_empty() {
                if p.required {
                    return Err(ServiceError::invalid(field, "is required"));
                }
                continue;
            }
            if value.chars().count() > 256 || value.chars().any(char::is_control) {
                return Err(ServiceError::invalid(
                    field,
                    "must be at most 256 characters without control characters",
                ));
            }
            if !p.pattern.is_match(&value) {
                let why = if p.message.is_empty() {
                    format!("must match {}", p.validation_pattern)
                } else {
                    p.message.clone()
                };
                let origin = if from_csr { " (taken from the CSR subject)" } else { "" };
                return Err(ServiceError::invalid(field, format!("{value:?}{origin} {why}")));
            }
            values.insert(p.name.as_str(), value);
        }
        let mut pieces = Vec::new();
        'piece: for piece in split_rdns(&self.subject_dn) {
            let mut out = piece.clone();
            for name in placeholders(&piece) {
                match values.get(name.as_str()) {
                    Some(v) => out = out.replace(&format!("{{{name}}}"), &escape_dn_value(v)),
                    // An attribute whose value was not given is left out of the subject.
                    None => continue 'piece,
                }
            }
            // Checked piece by piece so the error names the parameter (length limits, C=…).
            if let Err(e) = pki::parse_name(&out) {
                let field =
                    placeholders(&piece).first().map(|n| format!("params.{n}")).unwrap_or("params".into());
                return Err(ServiceError::invalid(field, e.to_string()));
            }
            pieces.push(out.trim().to_owned());
        }
        if pieces.is_empty() {
            return Err(ServiceError::invalid("params", "the subject would be empty"));
        }
        let subject_dn = pieces.join(",");
        let subject =
            pki::parse_name(&subject_dn).map_err(|e| ServiceError::invalid("params", e.to_string()))?;
        let common_name = pki::common_name(&subject).unwrap_or_default();
        let mut subject_alt_names = Vec::new();
        if self.cn_as_dns_san && !common_name.is_empty() {
            subject_alt_names.push(SubjectAltName::Dns(common_name.clone()));
        }
        Ok(Resolved { subject_dn: pki::format_name(&subject), subject, common_name, subject_alt_names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: &str) -> Profile {
        builtin_profiles().expect("builtins").into_iter().find(|p| p.id == id).expect("profile")
    }

    fn field(r: Result<Resolved, ServiceError>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn params(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn builtins_are_consistent() {
        let all = builtin_profiles().expect("builtins");
        assert_eq!(all.len(), 6);
        for p in &all {
            check_profile(p).expect("consistent");
        }
    }

    #[test]
    fn resolves_params_and_csr_subject() {
        let empty = pki::parse_name("CN=from-csr,O=Csr Org").expect("name");
        let p = profile("ecc-device");
        let r = p.resolve(&params(&[("commonName", "dev-1"), ("country", "CZ")]), &empty).expect("resolves");
        assert_eq!(r.common_name, "dev-1");
        assert_eq!(r.subject_dn, "CN=dev-1,O=Csr Org,C=CZ");
        assert!(r.subject_alt_names.is_empty());
        // Everything from the CSR.
        let r = p.resolve(&HashMap::new(), &empty).expect("resolves");
        assert_eq!(r.common_name, "from-csr");
        let s =
            profile("ecc-server").resolve(&params(&[("commonName", "www.example.com")]), &empty).expect("ok");
        assert_eq!(s.subject_alt_names, [SubjectAltName::Dns("www.example.com".into())]);
    }

    #[test]
    fn errors_name_the_parameter() {
        let none = pki::parse_name("O=x").expect("name");
        let p = profile("ecc-server");
        assert_eq!(field(p.resolve(&HashMap::new(), &none)), "params.commonName");
        assert_eq!(field(p.resolve(&params(&[("commonName", "bad host!")]), &none)), "params.commonName");
        assert_eq!(
            field(p.resolve(&params(&[("commonName", "a.b"), ("country", "cz")]), &none)),
            "params.country"
        );
        assert_eq!(field(p.resolve(&params(&[("commonName", "a.b"), ("nope", "1")]), &none)), "params.nope");
    }

    #[test]
    fn every_name_the_config_accepts_is_understood() {
        for n in hsm_config::KEY_USAGE_NAMES {
            assert!(key_usage_from_name(n).is_some(), "{n}");
        }
        for n in hsm_config::EXTENDED_KEY_USAGE_NAMES {
            assert!(!matches!(eku_from_name(n), None | Some(ExtendedKeyUsage::Other(_))), "{n}");
        }
        for n in hsm_config::PARAMETER_SCOPES {
            assert!(Scope::parse(n).is_some(), "{n}");
        }
    }

    #[test]
    fn configured_profiles_extend_and_replace() {
        let toml = r#"
            [[issuance.profiles]]
            id = "vpn"
            name = "VPN Client"
            key_algorithms = ["EC:P-256"]
            authority = "Issuing"
            subject_dn = "CN={user},O=Acme"
            extended_key_usages = ["clientAuth"]
            [[issuance.profiles.parameters]]
            name = "user"
            required = true
            validation_pattern = "[a-z]{2,16}"

            [[issuance.profiles]]
            id = "ecc-device"
            name = "Replaced"
            key_algorithms = ["EC:P-384"]
            subject_dn = "CN={commonName}"
            [[issuance.profiles.parameters]]
            name = "commonName"
            scopes = ["CSR_SUBJECT"]
        "#;
        let config = hsm_config::Config::from_toml_str(toml).expect("config");
        let all = all_profiles(&config).expect("profiles");
        assert_eq!(all.len(), 7, "six built in (one replaced) and one added");
        let vpn = all.iter().find(|p| p.id == "vpn").expect("vpn");
        assert_eq!(vpn.authority_name.as_deref(), Some("Issuing"));
        let none = pki::parse_name("CN=x").expect("name");
        let r = vpn.resolve(&params(&[("user", "alice")]), &none).expect("resolves");
        assert_eq!(r.subject_dn, "CN=alice,O=Acme");
        assert_eq!(field(vpn.resolve(&params(&[("user", "Alice!")]), &none)), "params.user");
        let replaced = all.iter().find(|p| p.id == "ecc-device").expect("replaced");
        assert_eq!(replaced.name, "Replaced");
        assert_eq!(replaced.key_algorithms, ["EC:P-384"]);
    }

    #[test]
    fn escaping_and_splitting() {
        assert_eq!(escape_dn_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_dn_value("#x "), "\\#x\\ ");
        assert_eq!(split_rdns("CN=a\\,b,O={o}"), ["CN=a\\,b", "O={o}"]);
        assert_eq!(placeholders("CN={a} {b}"), ["a", "b"]);
        let none = pki::parse_name("O=x").expect("name");
        let r = profile("ecc-device")
            .resolve(&params(&[("commonName", "d1"), ("organization", "Acme, Inc.")]), &none)
            .expect("resolves");
        assert_eq!(pki::name_parts(&r.subject).o.as_deref(), Some("Acme, Inc."));
    }
}
