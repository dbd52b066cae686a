//! The password policy, checked by the identity services (CreateUser, ChangePassword,
//! UpdateCredentials, ResetPassword) before a new password is hashed: a minimum length set per
//! ecosystem (at most 50), at least one digit, and both copies equal.

use super::ServiceError;
use crate::store::{Store, ecosystems};
use subtle::ConstantTimeEq;

/// The longest minimum length an ecosystem may ask for.
pub const MAX_MIN_LENGTH: u32 = 50;
/// A password longer than this is refused before hashing (argon2 would take it, but a
/// megabyte "password" is an attack on the hasher, not a password).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a new password against the policy; errors name `field` (or `repeated_field` when
/// the second copy differs). `repeated` is `None` where the request has no second copy.
pub fn check(
    field: &str,
    password: &str,
    repeated_field: &str,
    repeated: Option<&str>,
    min_length: u32,
) -> Result<(), ServiceError> {
    let min = min_length.clamp(1, MAX_MIN_LENGTH) as usize;
    if password.chars().count() < min {
        return Err(ServiceError::invalid(field, format!("must be at least {min} characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::invalid(field, format!("must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(ServiceError::invalid(field, "must contain a digit"));
    }
    if let Some(repeated) = repeated
        && !bool::from(password.as_bytes().ct_eq(repeated.as_bytes()))
    {
        return Err(ServiceError::invalid(repeated_field, format!("must equal {field}")));
    }
    Ok(())
}

/// The minimum password length for `user_id`: the strictest ecosystem the user holds a
/// privilege in, else the default ecosystem's (`None`, a user not created yet, gets that too).
pub async fn min_length(store: &Store, user_id: Option<&str>) -> Result<u32, ServiceError> {
    let user_id = user_id.unwrap_or_default().to_owned();
    store
        .read(move |c| ecosystems::password_min_length_for_user(c, &user_id).map_err(ServiceError::from))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<(), ServiceError>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn length_digit_and_copies() {
        let ok = "long-enough-password-1";
        assert!(check("new_password", ok, "repeated_new_password", Some(ok), 12).is_ok());
        assert!(check("password", ok, "repeated_password", None, 12).is_ok());
        assert_eq!(field(check("new_password", "short-1", "r", Some("short-1"), 12)), "new_password");
        assert_eq!(field(check("new_password", "no-digit-in-here", "r", None, 12)), "new_password");
        assert_eq!(
            field(check("new_password", ok, "repeated_new_password", Some("other-1"), 12)),
            "repeated_new_password"
        );
        // The ecosystem's minimum decides; more than 50 is read as 50.
        assert!(check("p", "abcdefgh1", "r", None, 8).is_ok());
        assert_eq!(field(check("p", &"a1".repeat(24), "r", None, 80)), "p");
        assert!(check("p", &"a1".repeat(25), "r", None, 80).is_ok());
        assert_eq!(field(check("p", &"1".repeat(2000), "r", None, 12)), "p");
    }
}
