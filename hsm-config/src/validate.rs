//! Validation of a parsed configuration: every check names the TOML key it is about, so an
//! operator knows which line to fix.

use crate::{CardPolicy, Config, ProfileConfig, SmtpSecurity, defaults};
use std::path::Path;

/// Why a configuration was refused. `key` is the dotted TOML path, e.g. `pkcs11.tokens[1].pin`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Io { path: String, message: String },
    #[error("config is not valid TOML or has an unknown or mistyped key: {message}")]
    Parse { message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }

    /// The offending key, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl Config {
    /// Parses TOML text and validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let parsed: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { message: e.to_string() })?;
        parsed.validate()
    }

    /// Reads, parses and validates a config file; relative paths in it are taken from the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { path: path.display().to_string(), message: e.to_string() })?;
        let mut config = Config::from_toml_str(&text)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_relative(&base);
        Ok(config)
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_relative(&mut self, base: &Path) {
        if self.store.path.is_relative() {
            self.store.path = base.join(&self.store.path);
        }
        if let Some(tls) = &mut self.server.tls {
            for p in [&mut tls.cert_file, &mut tls.key_file] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            if let Some(ca) = &mut tls.client_ca_file
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
        }
        if let Some(f) = &mut self.server.ready_file
            && f.is_relative()
        {
            *f = base.join(&*f);
        }
        if let Some(f) = &mut self.notify.outbox
            && f.is_relative()
        {
            *f = base.join(&*f);
        }
        if let Some(smtp) = &mut self.notify.smtp
            && let Some(p) = &mut smtp.password
        {
            p.resolve_relative(base);
        }
        self.auth.bootstrap_password.resolve_relative(base);
        self.pkcs11.card_pin.resolve_relative(base);
        for t in &mut self.pkcs11.tokens {
            t.pin.resolve_relative(base);
        }
    }

    /// Checks every field and returns the fully defaulted configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if let Some(f) = &self.server.ready_file {
            check_path("server.ready_file", f)?;
        }
        if let Some(tls) = &self.server.tls {
            check_path("server.tls.cert_file", &tls.cert_file)?;
            check_path("server.tls.key_file", &tls.key_file)?;
            if let Some(ca) = &tls.client_ca_file {
                check_path("server.tls.client_ca_file", ca)?;
            }
        }
        if let Some(smtp) = &self.notify.smtp {
            let host_ok = !smtp.host.is_empty()
                && smtp.host.len() <= 253
                && smtp.host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if !host_ok {
                return Err(ConfigError::invalid("notify.smtp.host", "must be a host name or address"));
            }
            if smtp.port == 0 {
                return Err(ConfigError::invalid("notify.smtp.port", "must not be 0"));
            }
            let from_ok = smtp.from.len() <= 254
                && smtp.from.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                && !smtp.from.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'));
            if !from_ok {
                return Err(ConfigError::invalid(
                    "notify.smtp.from",
                    "must be an address such as cardhsm@example.com",
                ));
            }
            check_range("notify.smtp.timeout_secs", smtp.timeout_secs, 1, 120)?;
            match (&smtp.username, &smtp.password) {
                (Some(_), None) | (None, Some(_)) => {
                    return Err(ConfigError::invalid(
                        "notify.smtp.username",
                        "username and password go together",
                    ));
                }
                (Some(_), Some(_)) if smtp.security == SmtpSecurity::None => {
                    return Err(ConfigError::invalid(
                        "notify.smtp.security",
                        "a password is never sent without TLS: use starttls or tls",
                    ));
                }
                _ => {}
            }
            if let Some(p) = &smtp.password {
                p.check("notify.smtp.password")?;
            }
        }
        check_range("server.max_upload_bytes", self.server.max_upload_bytes, 1024, 256 * 1024 * 1024)?;
        check_path("store.path", &self.store.path)?;
        check_range("store.readers", self.store.readers, 1, 64)?;
        check_range("batches.max_batch_size", self.batches.max_batch_size, 1, 1_000_000)?;
        check_range("batches.zip_lifetime_secs", self.batches.zip_lifetime_secs, 1, 31_536_000)?;
        check_range("batches.sweep_interval_secs", self.batches.sweep_interval_secs, 1, 86_400)?;
        check_range("batches.workers", self.batches.workers, 0, 256)?;
        check_range("batches.devices_per_transaction", self.batches.devices_per_transaction, 1, 10_000)?;
        check_range("auth.access_token_ttl_secs", self.auth.access_token_ttl_secs, 60, 86_400)?;
        check_range("auth.refresh_token_ttl_secs", self.auth.refresh_token_ttl_secs, 300, 2_592_000)?;
        self.auth.bootstrap_password.check("auth.bootstrap_password")?;
        check_range("auth.login_throttle_after", self.auth.login_throttle_after, 1, 100)?;
        check_range("auth.login_throttle_secs", self.auth.login_throttle_secs, 0, 900)?;
        check_range("auth.password_reset_code_ttl_secs", self.auth.password_reset_code_ttl_secs, 1, 86_400)?;
        if let Some(f) = &self.notify.outbox {
            check_path("notify.outbox", f)?;
        }
        let mut realm_names = std::collections::HashSet::new();
        for (i, r) in self.auth.realms.iter().enumerate() {
            let key = format!("auth.realms[{i}]");
            let name_ok = !r.name.is_empty()
                && r.name.len() <= 64
                && r.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !name_ok {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "must be 1 to 64 of A-Z a-z 0-9 _ . -",
                ));
            }
            if r.name.eq_ignore_ascii_case("password") {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "\"password\" is reserved for password sign-in sessions",
                ));
            }
            if !realm_names.insert(r.name.to_ascii_lowercase()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("realm {:?} is defined twice", r.name),
                ));
            }
            if r.roles.is_empty() {
                return Err(ConfigError::invalid(format!("{key}.roles"), "at least one role is required"));
            }
            for (j, role) in r.roles.iter().enumerate() {
                // SUPER_ADMIN is not offered: administrators are managed by people, not keys.
                if !REALM_ROLES.contains(&role.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("{key}.roles[{j}]"),
                        format!("{role:?} is not a realm role ({})", REALM_ROLES.join(", ")),
                    ));
                }
            }
        }
        if self.pkcs11.module.as_os_str().is_empty() {
            return Err(ConfigError::invalid("pkcs11.module", "must name a PKCS#11 module file"));
        }
        check_range("pkcs11.sessions_per_token", self.pkcs11.sessions_per_token, 1, 64)?;
        check_range("pkcs11.session_wait_ms", self.pkcs11.session_wait_ms, 1, 600_000)?;
        self.pkcs11.card_pin.check("pkcs11.card_pin")?;
        let mut tokens_seen = std::collections::HashSet::new();
        for (i, t) in self.pkcs11.tokens.iter().enumerate() {
            let key = format!("pkcs11.tokens[{i}]");
            let matcher = match (&t.serial, &t.label) {
                (Some(s), None) if !s.trim().is_empty() => ("serial", s),
                (None, Some(l)) if !l.trim().is_empty() => ("label", l),
                _ => return Err(ConfigError::invalid(key, "must set exactly one of `serial` or `label`")),
            };
            if !tokens_seen.insert(matcher) {
                return Err(ConfigError::invalid(
                    key,
                    format!("another token is already matched by {} {:?}", matcher.0, matcher.1),
                ));
            }
            t.pin.check(&format!("{key}.pin"))?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.cards.policies.iter().enumerate() {
            check_policy(&format!("cards.policies[{i}]"), p)?;
            if !seen.insert(p.name.clone()) {
                return Err(ConfigError::invalid(
                    format!("cards.policies[{i}].name"),
                    format!("policy {:?} is defined twice", p.name),
                ));
            }
        }
        if self.card_policy(&self.cards.default_policy).is_none() {
            return Err(ConfigError::invalid(
                "cards.default_policy",
                format!("no policy is named {:?}", self.cards.default_policy),
            ));
        }
        let mut profile_ids = std::collections::HashSet::new();
        for (i, p) in self.issuance.profiles.iter().enumerate() {
            check_profile(&format!("issuance.profiles[{i}]"), p)?;
            if !profile_ids.insert(p.id.clone()) {
                return Err(ConfigError::invalid(
                    format!("issuance.profiles[{i}].id"),
                    format!("profile {:?} is defined twice", p.id),
                ));
            }
        }
        if self.logging.level.trim().is_empty() {
            return Err(ConfigError::invalid("logging.level", "must not be empty"));
        }
        Ok(self)
    }

    /// Every card policy: the built-in ones, replaced or extended by the configured ones.
    pub fn card_policies(&self) -> Vec<CardPolicy> {
        let mut all = defaults::builtin_policies();
        for p in &self.cards.policies {
            if let Some(existing) = all.iter_mut().find(|b| b.name == p.name) {
                *existing = p.clone();
            } else {
                all.push(p.clone());
            }
        }
        all
    }

    /// One card policy by name.
    pub fn card_policy(&self, name: &str) -> Option<CardPolicy> {
        self.card_policies().into_iter().find(|p| p.name == name)
    }
}

fn check_path(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        Err(ConfigError::invalid(key, "must not be an empty path"))
    } else {
        Ok(())
    }
}

fn check_range(key: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("{value} is out of range {min}..={max}")))
    }
}

fn check_policy(key: &str, p: &CardPolicy) -> Result<(), ConfigError> {
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 64
        && p.name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        return Err(ConfigError::invalid(format!("{key}.name"), "must match ^[a-z0-9][a-z0-9_-]{0,63}$"));
    }
    if p.keys.is_empty() || p.keys.len() > 16 {
        return Err(ConfigError::invalid(format!("{key}.keys"), "must list 1 to 16 keys"));
    }
    let mut labels = std::collections::HashSet::new();
    for (j, k) in p.keys.iter().enumerate() {
        let label_ok = !k.label.is_empty()
            && k.label.len() <= 32
            && k.label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !label_ok {
            return Err(ConfigError::invalid(
                format!("{key}.keys[{j}].label"),
                "must match ^[A-Za-z0-9_-]{1,32}$",
            ));
        }
        if !labels.insert(k.label.clone()) {
            return Err(ConfigError::invalid(
                format!("{key}.keys[{j}].label"),
                "labels must be unique within a policy",
            ));
        }
        // Whether the profile exists is the daemon's to check (built-in profiles live there).
        if let Some(profile) = &k.certificate_profile
            && !is_ident(
                profile,
                |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
                |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
                64,
            )
        {
            return Err(ConfigError::invalid(
                format!("{key}.keys[{j}].certificate_profile"),
                "must be a profile id, ^[a-z0-9][a-z0-9_-]{0,63}$",
            ));
        }
    }
    Ok(())
}

fn is_ident(s: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool, max: usize) -> bool {
    s.len() <= max && s.chars().next().is_some_and(first) && s.chars().all(rest)
}

/// The `{name}` placeholders of a subject-DN template.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or("has a `{` without its `}`")?;
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err("has a `}` without its `{`".into());
    }
    Ok(out)
}

fn check_profile(key: &str, p: &ProfileConfig) -> Result<(), ConfigError> {
    let id_ok = is_ident(
        &p.id,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
        64,
    );
    if !id_ok {
        return Err(ConfigError::invalid(format!("{key}.id"), "must match ^[a-z0-9][a-z0-9_-]{0,63}$"));
    }
    if p.name.trim().is_empty() || p.name.chars().count() > 128 || p.name.chars().any(char::is_control) {
        return Err(ConfigError::invalid(format!("{key}.name"), "must be 1 to 128 characters"));
    }
    check_range(&format!("{key}.pkcs12_iterations"), p.pkcs12_iterations, 1000, 1_000_000)?;
    if p.key_algorithms.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.key_algorithms"),
            "must list at least one algorithm",
        ));
    }
    if p.authority.as_ref().is_some_and(|a| a.trim().is_empty()) {
        return Err(ConfigError::invalid(format!("{key}.authority"), "must not be empty when set"));
    }
    for (j, u) in p.key_usages.iter().enumerate() {
        if !crate::KEY_USAGE_NAMES.contains(&u.as_str()) {
            return Err(ConfigError::invalid(
                format!("{key}.key_usages[{j}]"),
                format!("{u:?} is not one of {}", crate::KEY_USAGE_NAMES.join(", ")),
            ));
        }
    }
    for (j, e) in p.extended_key_usages.iter().enumerate() {
        let oid_like = e.split('.').count() >= 2
            && e.split('.').all(|arc| !arc.is_empty() && arc.chars().all(|c| c.is_ascii_digit()));
        if !crate::EXTENDED_KEY_USAGE_NAMES.contains(&e.as_str()) && !oid_like {
            return Err(ConfigError::invalid(
                format!("{key}.extended_key_usages[{j}]"),
                format!(
                    "{e:?} is neither a dotted OID nor one of {}",
                    crate::EXTENDED_KEY_USAGE_NAMES.join(", ")
                ),
            ));
        }
    }
    check_range(&format!("{key}.max_validity_years"), p.max_validity_years, 1, 30)?;
    check_range(&format!("{key}.validity_years"), p.validity_years, 1, p.max_validity_years)?;
    if p.parameters.is_empty() || p.parameters.len() > 32 {
        return Err(ConfigError::invalid(format!("{key}.parameters"), "must list 1 to 32 parameters"));
    }
    let mut names = std::collections::HashSet::new();
    for (j, param) in p.parameters.iter().enumerate() {
        let pkey = format!("{key}.parameters[{j}]");
        let name_ok =
            is_ident(&param.name, |c| c.is_ascii_alphabetic(), |c| c.is_ascii_alphanumeric() || c == '_', 64);
        if !name_ok {
            return Err(ConfigError::invalid(
                format!("{pkey}.name"),
                "must match ^[A-Za-z][A-Za-z0-9_]{0,63}$",
            ));
        }
        if !names.insert(param.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{pkey}.name"),
                "names must be unique within a profile",
            ));
        }
        regex::Regex::new(&format!("^(?:{})$", param.validation_pattern)).map_err(|e| {
            ConfigError::invalid(
                format!("{pkey}.validation_pattern"),
                format!("not a valid regular expression: {e}"),
            )
        })?;
        for (k, scope) in param.scopes.iter().enumerate() {
            if !crate::PARAMETER_SCOPES.contains(&scope.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{pkey}.scopes[{k}]"),
                    format!("{scope:?} is not one of {}", crate::PARAMETER_SCOPES.join(", ")),
                ));
            }
        }
    }
    let used =
        placeholders(&p.subject_dn).map_err(|e| ConfigError::invalid(format!("{key}.subject_dn"), e))?;
    if used.is_empty() {
        return Err(ConfigError::invalid(format!("{key}.subject_dn"), "must use at least one {parameter}"));
    }
    for name in used {
        if !names.contains(name) {
            return Err(ConfigError::invalid(
                format!("{key}.subject_dn"),
                format!("uses {{{name}}}, which is not a parameter of the profile"),
            ));
        }
    }
    Ok(())
}

/// The roles an API-key realm may grant. The organization roles give the key the holder's
/// privileges of that role (its organizations and profiles).
pub const REALM_ROLES: [&str; 5] = ["ADMIN", "OPERATOR", "ECO_ADMIN", "ORG_ADMIN", "USER"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CardKeySpec, KeyAlgorithm};

    fn key(label: &str) -> CardKeySpec {
        CardKeySpec { label: label.into(), algorithm: KeyAlgorithm::EcP256, certificate_profile: None }
    }

    #[test]
    fn check_range_is_inclusive_and_names_the_key() {
        assert!(check_range("a.b", 1, 1, 64).is_ok());
        assert!(check_range("a.b", 64, 1, 64).is_ok());
        for v in [0, 65, u32::MAX] {
            let err = check_range("a.b", v, 1, 64).expect_err("out of range");
            assert_eq!(err.key(), Some("a.b"));
            assert!(err.to_string().contains(&format!("{v} is out of range 1..=64")), "{err}");
        }
    }

    #[test]
    fn check_path_refuses_only_empty() {
        assert!(check_path("p", Path::new("x")).is_ok());
        assert_eq!(check_path("p", Path::new("")).expect_err("empty").key(), Some("p"));
    }

    #[test]
    fn check_policy_keys_name_the_offending_entry() {
        let ok = CardPolicy { name: "p".into(), keys: vec![key("a"), key("b")] };
        assert!(check_policy("cards.policies[3]", &ok).is_ok());
        let dup = CardPolicy { name: "p".into(), keys: vec![key("a"), key("b"), key("b")] };
        assert_eq!(check_policy("x", &dup).expect_err("dup").key(), Some("x.keys[2].label"));
        let bad = CardPolicy { name: "P".into(), keys: vec![key("a")] };
        assert_eq!(check_policy("x", &bad).expect_err("name").key(), Some("x.name"));
        let none = CardPolicy { name: "p".into(), keys: vec![] };
        assert_eq!(check_policy("x", &none).expect_err("no keys").key(), Some("x.keys"));
    }

    fn profile() -> ProfileConfig {
        ProfileConfig {
            id: "vpn".into(),
            name: "VPN".into(),
            key_algorithms: vec![KeyAlgorithm::EcP256],
            authority: None,
            subject_dn: "CN={commonName}".into(),
            key_usages: vec!["digitalSignature".into()],
            extended_key_usages: vec!["clientAuth".into(), "1.3.6.1.5.5.7.3.17".into()],
            validity_years: 1,
            max_validity_years: 3,
            dns_san_from_common_name: false,
            pkcs12_iterations: 2048,
            parameters: vec![crate::ProfileParameterConfig {
                name: "commonName".into(),
                input_type: "text".into(),
                required: true,
                placeholder: String::new(),
                validation_pattern: "[a-z]+".into(),
                message: String::new(),
                value: String::new(),
                title: String::new(),
                scopes: vec!["REQUEST".into(), "CSR_SUBJECT".into()],
                dynamic: false,
            }],
        }
    }

    #[test]
    fn check_profile_names_the_offending_key() {
        assert!(check_profile("p", &profile()).is_ok());
        type Edit = Box<dyn Fn(&mut ProfileConfig)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p.id = "Bad Id".into()), "p.id"),
            (Box::new(|p| p.key_algorithms.clear()), "p.key_algorithms"),
            (Box::new(|p| p.key_usages.push("keyCertSign".into())), "p.key_usages[1]"),
            (Box::new(|p| p.extended_key_usages.push("nope".into())), "p.extended_key_usages[2]"),
            (Box::new(|p| p.validity_years = 4), "p.validity_years"),
            (Box::new(|p| p.max_validity_years = 31), "p.max_validity_years"),
            (Box::new(|p| p.pkcs12_iterations = 999), "p.pkcs12_iterations"),
            (Box::new(|p| p.pkcs12_iterations = 1_000_001), "p.pkcs12_iterations"),
            (
                Box::new(|p| p.parameters[0].validation_pattern = "(".into()),
                "p.parameters[0].validation_pattern",
            ),
            (Box::new(|p| p.parameters[0].scopes.push("EVERYWHERE".into())), "p.parameters[0].scopes[2]"),
            (Box::new(|p| p.parameters[0].name = "1x".into()), "p.parameters[0].name"),
            (Box::new(|p| p.subject_dn = "CN={other}".into()), "p.subject_dn"),
            (Box::new(|p| p.subject_dn = "CN={commonName".into()), "p.subject_dn"),
            (Box::new(|p| p.parameters.clear()), "p.parameters"),
        ];
        for (edit, key) in cases {
            let mut p = profile();
            edit(&mut p);
            assert_eq!(check_profile("p", &p).expect_err(key).key(), Some(key));
        }
    }

    #[test]
    fn error_display_names_key_and_kind() {
        let e = ConfigError::invalid("pkcs11.tokens[0]", "nope");
        assert_eq!(e.to_string(), "invalid config key `pkcs11.tokens[0]`: nope");
        assert_eq!(ConfigError::Parse { message: "m".into() }.key(), None);
    }

    #[test]
    fn resolve_relative_with_a_bare_file_name_stays_relative_to_cwd() {
        // `Config::load("cardhsm.toml")`: the parent is "", paths stay as written.
        let mut c = Config::default();
        c.resolve_relative(Path::new(""));
        assert_eq!(c.store.path, Path::new("cardhsm.sqlite3"));
    }
}
