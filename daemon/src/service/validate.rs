//! Field validators shared by the services: each names the field it rejects.

use super::ServiceError;

/// A user principal name such as `user1@corp.example`: one `@`, a dotted domain, no spaces or
/// control characters, at most 256 characters.
pub fn owner(field: &str, value: &str) -> Result<String, ServiceError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ServiceError::invalid(
            field,
            "is required (a user principal name such as user1@corp.example)",
        ));
    }
    if v.len() > 256 {
        return Err(ServiceError::invalid(field, "is longer than 256 characters"));
    }
    let well_formed = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && v.chars().all(|c| !c.is_whitespace() && !c.is_control())
        }
        None => false,
    };
    if !well_formed {
        return Err(ServiceError::invalid(
            field,
            format!("{v:?} is not a user principal name (user@domain.example)"),
        ));
    }
    Ok(v.to_owned())
}

/// A resource id we issued (a UUID).
pub fn id(field: &str, value: &str) -> Result<String, ServiceError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ServiceError::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(v)
        .map(|u| u.to_string())
        .map_err(|_| ServiceError::invalid(field, format!("{v:?} is not a valid id")))
}

/// Free text shown to people (labels, comments): at most `max` characters, no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ServiceError> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(ServiceError::invalid(field, format!("is longer than {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

/// A required token made of `[A-Za-z0-9._-]`, 1 to `max` characters (serials, PAC numbers).
pub fn identifier(field: &str, value: &str, max: usize, required: bool) -> Result<String, ServiceError> {
    let v = value.trim();
    if v.is_empty() {
        return if required { Err(ServiceError::invalid(field, "is required")) } else { Ok(String::new()) };
    }
    if v.len() > max || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(ServiceError::invalid(field, format!("must be 1 to {max} of A-Z a-z 0-9 . _ -")));
    }
    Ok(v.to_owned())
}

/// An uploaded blob (CSR, certificate, key file, CSV, ZIP) must fit `server.max_upload_bytes`.
pub fn upload(field: &str, len: usize, limit: usize) -> Result<(), ServiceError> {
    if len > limit {
        Err(ServiceError::invalid(
            field,
            format!("is {len} bytes, over the upload limit of {limit} bytes (server.max_upload_bytes)"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<String, ServiceError>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn owners() {
        assert_eq!(owner("owner", " user1@corp.example ").expect("ok"), "user1@corp.example");
        for bad in
            ["", "user1", "user1@", "@corp.example", "a@b@c.d", "user 1@corp.example", "u@corp", "u@.corp."]
        {
            assert_eq!(field_of(owner("owner", bad)), "owner", "{bad:?}");
        }
    }

    #[test]
    fn ids_and_identifiers() {
        assert_eq!(field_of(id("id", "nope")), "id");
        assert!(id("id", "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a").is_ok());
        assert_eq!(field_of(identifier("pac_number", "12 34", 64, false)), "pac_number");
        assert_eq!(identifier("pac_number", "", 64, false).expect("optional"), "");
        assert_eq!(field_of(identifier("token_serial", "", 32, true)), "token_serial");
        assert_eq!(field_of(text("label", "a\u{7}b", 64)), "label");
    }
}
