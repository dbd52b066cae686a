//! The lower-case names of the API's enums (`active`, `pending-update`, `user-removed`, `admin`)
//! as the CLI accepts them and as its JSON and table output print them, one spelling for both,
//! so an output value can be fed back as an argument.

use cardhsm_proto::v1::{AuthorityKind, AuthorityStatus, CardState, CertificateStatus, RevokeReason, Role};
use std::borrow::Cow;

/// Every card state with its name.
pub const CARD_STATES: &[(CardState, &str)] = &[
    (CardState::Unspecified, "unspecified"),
    (CardState::Assigned, "assigned"),
    (CardState::PendingIssue, "pending-issue"),
    (CardState::Active, "active"),
    (CardState::Disabled, "disabled"),
    (CardState::PendingUpdate, "pending-update"),
    (CardState::Revoked, "revoked"),
];

/// Every revocation reason with its name.
pub const REVOKE_REASONS: &[(RevokeReason, &str)] = &[
    (RevokeReason::None, "none"),
    (RevokeReason::Broken, "broken"),
    (RevokeReason::Lost, "lost"),
    (RevokeReason::Upgrade, "upgrade"),
    (RevokeReason::Expired, "expired"),
    (RevokeReason::Withdraw, "withdraw"),
    (RevokeReason::UserRemoved, "user-removed"),
    (RevokeReason::Compromised, "compromised"),
];

/// Every role with its name.
pub const ROLES: &[(Role, &str)] = &[
    (Role::Unspecified, "unspecified"),
    (Role::Admin, "admin"),
    (Role::Operator, "operator"),
    (Role::User, "user"),
    (Role::SuperAdmin, "super-admin"),
    (Role::EcoAdmin, "eco-admin"),
    (Role::OrgAdmin, "org-admin"),
];

/// RFC 5280 CRLReason codes with their names as openssl spells them (7 is unused).
pub const CRL_REASONS: &[(u32, &str)] = &[
    (0, "unspecified"),
    (1, "keyCompromise"),
    (2, "cACompromise"),
    (3, "affiliationChanged"),
    (4, "superseded"),
    (5, "cessationOfOperation"),
    (6, "certificateHold"),
    (8, "removeFromCRL"),
    (9, "privilegeWithdrawn"),
    (10, "aACompromise"),
];

/// Every authority kind with its name.
pub const AUTHORITY_KINDS: &[(AuthorityKind, &str)] = &[
    (AuthorityKind::Unspecified, "unspecified"),
    (AuthorityKind::Root, "root"),
    (AuthorityKind::Intermediate, "intermediate"),
    (AuthorityKind::External, "external"),
];

/// Every authority status with its name.
pub const AUTHORITY_STATUSES: &[(AuthorityStatus, &str)] = &[
    (AuthorityStatus::Unspecified, "unspecified"),
    (AuthorityStatus::Active, "active"),
    (AuthorityStatus::PendingCertificate, "pending-certificate"),
];

/// Every certificate status with its name.
pub const CERTIFICATE_STATUSES: &[(CertificateStatus, &str)] = &[
    (CertificateStatus::Unspecified, "unspecified"),
    (CertificateStatus::Valid, "valid"),
    (CertificateStatus::Revoked, "revoked"),
    (CertificateStatus::OnHold, "on-hold"),
    (CertificateStatus::Expired, "expired"),
];

fn name_of<E: Copy + PartialEq>(
    table: &[(E, &'static str)],
    value: Option<E>,
    raw: i32,
) -> Cow<'static, str> {
    value
        .and_then(|v| table.iter().find(|(e, _)| *e == v))
        .map_or_else(|| Cow::Owned(format!("unknown({raw})")), |(_, name)| Cow::Borrowed(*name))
}

fn parse<E: Copy>(table: &[(E, &'static str)], name: &str) -> Option<E> {
    let wanted = name.trim().to_ascii_lowercase().replace('_', "-");
    table.iter().find(|(_, n)| *n == wanted).map(|(e, _)| *e)
}

/// The name of a card state as carried on the wire (`unknown(N)` for a value this build does
/// not know).
pub fn card_state_name(value: i32) -> Cow<'static, str> {
    name_of(CARD_STATES, CardState::try_from(value).ok(), value)
}

/// The name of a revocation reason as carried on the wire.
pub fn revoke_reason_name(value: i32) -> Cow<'static, str> {
    name_of(REVOKE_REASONS, RevokeReason::try_from(value).ok(), value)
}

/// The name of a role as carried on the wire.
pub fn role_name(value: i32) -> Cow<'static, str> {
    name_of(ROLES, Role::try_from(value).ok(), value)
}

/// The name of an authority kind as carried on the wire.
pub fn authority_kind_name(value: i32) -> Cow<'static, str> {
    name_of(AUTHORITY_KINDS, AuthorityKind::try_from(value).ok(), value)
}

/// The name of an authority status as carried on the wire.
pub fn authority_status_name(value: i32) -> Cow<'static, str> {
    name_of(AUTHORITY_STATUSES, AuthorityStatus::try_from(value).ok(), value)
}

/// The name of a certificate status as carried on the wire.
pub fn certificate_status_name(value: i32) -> Cow<'static, str> {
    name_of(CERTIFICATE_STATUSES, CertificateStatus::try_from(value).ok(), value)
}

/// The openssl name of an RFC 5280 reason code (`keyCompromise`); `unknown(N)` otherwise.
pub fn crl_reason_name(code: u32) -> Cow<'static, str> {
    CRL_REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| Cow::Owned(format!("unknown({code})")), |(_, name)| Cow::Borrowed(*name))
}

/// The RFC 5280 reason code named `text`: an openssl name (`keyCompromise`, any case) or the
/// number itself (0-10). 7 is unused and gives `None`.
pub fn parse_crl_reason(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(code) = text.parse::<u32>() {
        return CRL_REASONS.iter().find(|(c, _)| *c == code).map(|(c, _)| *c);
    }
    CRL_REASONS.iter().find(|(_, name)| name.eq_ignore_ascii_case(text)).map(|(c, _)| *c)
}

/// The card state named `name` (case-insensitive; `_` and `-` alike).
pub fn parse_card_state(name: &str) -> Option<CardState> {
    parse(CARD_STATES, name)
}

/// The revocation reason named `name` (case-insensitive; `_` and `-` alike).
pub fn parse_revoke_reason(name: &str) -> Option<RevokeReason> {
    parse(REVOKE_REASONS, name)
}

/// The role named `name` (case-insensitive).
pub fn parse_role(name: &str) -> Option<Role> {
    parse(ROLES, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (state, name) in CARD_STATES {
            assert_eq!(card_state_name((*state).into()), *name);
            assert_eq!(parse_card_state(name), Some(*state));
        }
        for (reason, name) in REVOKE_REASONS {
            assert_eq!(revoke_reason_name((*reason).into()), *name);
            assert_eq!(parse_revoke_reason(name), Some(*reason));
        }
        for (role, name) in ROLES {
            assert_eq!(role_name((*role).into()), *name);
            assert_eq!(parse_role(name), Some(*role));
        }
    }

    #[test]
    fn tables_cover_every_value() {
        assert_eq!(CARD_STATES.len(), 7);
        assert_eq!(REVOKE_REASONS.len(), 8);
        assert_eq!(ROLES.len(), 7);
        // Table order is wire order, so a new enum value shows up as a gap here.
        assert!(CARD_STATES.iter().enumerate().all(|(i, (s, _))| *s as usize == i));
        assert!(REVOKE_REASONS.iter().enumerate().all(|(i, (r, _))| *r as usize == i));
    }

    #[test]
    fn crl_reasons_by_name_and_number() {
        for (code, name) in CRL_REASONS {
            assert_eq!(crl_reason_name(*code), *name);
            assert_eq!(parse_crl_reason(name), Some(*code));
            assert_eq!(parse_crl_reason(&code.to_string()), Some(*code));
        }
        assert_eq!(parse_crl_reason("KEYCOMPROMISE"), Some(1));
        assert_eq!(parse_crl_reason("7"), None);
        assert_eq!(parse_crl_reason("11"), None);
        assert_eq!(parse_crl_reason("-1"), None);
        assert_eq!(parse_crl_reason("stolen"), None);
        assert_eq!(crl_reason_name(7), "unknown(7)");
        assert_eq!(certificate_status_name(CertificateStatus::OnHold.into()), "on-hold");
        assert_eq!(authority_kind_name(AuthorityKind::Intermediate.into()), "intermediate");
    }

    #[test]
    fn unknown_values_are_shown_with_their_number() {
        assert_eq!(card_state_name(42), "unknown(42)");
        assert_eq!(parse_revoke_reason("USER_REMOVED"), Some(RevokeReason::UserRemoved));
        assert_eq!(parse_revoke_reason("stolen"), None);
    }
}
