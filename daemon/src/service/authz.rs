//! Authorization in one place: the table from every RPC to the roles allowed to call it.
//! The gRPC layer asks [`rule_for`] before a request reaches a service; a test walks every
//! method in the API's descriptor set and fails if one is missing here.

use super::Role;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (login, refresh, health).
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// A principal holding at least one of these roles.
    Roles(&'static [Role]),
}

const ADMIN: &[Role] = &[Role::Admin];
const SUPER_ADMIN: &[Role] = &[Role::SuperAdmin];
const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];
/// Every role (a SUPER_ADMIN also holds ADMIN).
const ANY_ROLE: &[Role] = &[Role::Admin, Role::Operator, Role::EcoAdmin, Role::OrgAdmin, Role::User];
/// Platform administrators and ECO_ADMINs.
const ECO_ADMINS: &[Role] = &[Role::Admin, Role::EcoAdmin];
/// Platform administrators and the organization admins (ECO_ADMIN, ORG_ADMIN).
const ORG_ADMINS: &[Role] = &[Role::Admin, Role::EcoAdmin, Role::OrgAdmin];
/// Batches: administrators, and organization roles in their organizations (the batch service
/// checks the organization scope and, for USER, the profile).
const BATCH_ROLES: &[Role] = &[Role::Admin, Role::EcoAdmin, Role::OrgAdmin, Role::User];

/// Every RPC of the cardhsm.v1 API. USER-role callers of card reads are further limited to
/// their own cards by the card service.
pub const RULES: &[(&str, Access)] = &[
    ("/cardhsm.v1.AuthService/Login", Access::Public),
    ("/cardhsm.v1.AuthService/Refresh", Access::Public),
    ("/cardhsm.v1.AuthService/WhoAmI", Access::Authenticated),
    // RealmAuth checks a username and password itself, like Login.
    ("/cardhsm.v1.AuthService/RealmAuth", Access::Public),
    ("/cardhsm.v1.AuthService/Logout", Access::Authenticated),
    ("/cardhsm.v1.AuthService/ChangePassword", Access::Authenticated),
    // Everyone lists and revokes their own API keys; administrators anyone's (the service checks).
    ("/cardhsm.v1.AuthService/ListApiKeys", Access::Authenticated),
    ("/cardhsm.v1.AuthService/RevokeApiKey", Access::Authenticated),
    // Password reset is for those who cannot sign in; the service limits code guesses and
    // answers alike for unknown logins.
    ("/cardhsm.v1.AuthService/RequestPasswordReset", Access::Public),
    ("/cardhsm.v1.AuthService/ResetPassword", Access::Public),
    ("/cardhsm.v1.AuthService/ValidateCode", Access::Public),
    ("/cardhsm.v1.SessionService/ListActiveSessions", Access::Roles(ADMIN)),
    ("/cardhsm.v1.SessionService/DeleteSession", Access::Roles(ADMIN)),
    ("/cardhsm.v1.SessionService/DeleteAllSessions", Access::Roles(ADMIN)),
    ("/cardhsm.v1.SessionService/SetIdleTimeout", Access::Roles(ADMIN)),
    ("/cardhsm.v1.CardService/ListCards", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.CardService/GetCard", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.CardService/RegisterCard", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/IssueCard", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/DisableCard", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/EnableCard", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/RevokeCard", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/PreUpdateCard", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/ListTokens", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/ListReaders", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CardService/WatchReaders", Access::Roles(OPERATORS)),
    // A holder changes and unblocks the PIN of their own card; officers anyone's.
    ("/cardhsm.v1.CardService/ChangePin", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.CardService/UnblockPin", Access::Roles(ANY_ROLE)),
    // Authorities are created by administrators; anyone signed in may read them and the
    // profiles (they are public information: chains and CRLs are published anyway).
    ("/cardhsm.v1.IssuanceService/CreateAuthority", Access::Roles(ADMIN)),
    ("/cardhsm.v1.IssuanceService/ImportAuthorityCertificate", Access::Roles(ADMIN)),
    ("/cardhsm.v1.IssuanceService/SetAuthorityEnabled", Access::Roles(ADMIN)),
    ("/cardhsm.v1.IssuanceService/ListAuthorities", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.IssuanceService/GetAuthority", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.IssuanceService/ListProfiles", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.IssuanceService/GetProfile", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.IssuanceService/GetProfileParameters", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.IssuanceService/GetProfileSubjectDn", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.IssuanceService/GetCrl", Access::Roles(ANY_ROLE)),
    // Issuing and revoking are officer work; finding lists everyone's certificates.
    ("/cardhsm.v1.IssuanceService/IssueCertificate", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.IssuanceService/FindCertificates", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.IssuanceService/RevokeCertificates", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.IssuanceService/RevokeCertificate", Access::Roles(OPERATORS)),
    // The certificate store is officer work on tokens, reads included (a token's certificates
    // say which devices and people it serves). Importing with `protected` set needs ADMIN on
    // top, checked by the service: a protected certificate can never be deleted or replaced
    // through the API again, so locking one in is an administrator's decision;
    // `system_use_only` only narrows what users may pick, and stays with operators.
    ("/cardhsm.v1.CertificateStoreService/ListCertificates", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CertificateStoreService/ImportCertificate", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CertificateStoreService/DeleteCertificate", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CertificateStoreService/CreateCsr", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CertificateStoreService/CompleteCsr", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.CertificateStoreService/DeleteCertificateBySubject", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.UserService/CreateUser", Access::Roles(ADMIN)),
    // Organization admins list the users of their organizations (the service checks which).
    ("/cardhsm.v1.UserService/ListUsers", Access::Roles(ORG_ADMINS)),
    ("/cardhsm.v1.UserService/UpdateUser", Access::Roles(ORG_ADMINS)),
    // Everyone edits their own account (email and credentials with the current password).
    ("/cardhsm.v1.UserService/UpdateCurrentUser", Access::Authenticated),
    ("/cardhsm.v1.UserService/UpdateEmail", Access::Authenticated),
    ("/cardhsm.v1.UserService/UpdateCredentials", Access::Authenticated),
    ("/cardhsm.v1.UserService/CheckEmail", Access::Authenticated),
    ("/cardhsm.v1.UserService/SetUserEnabled", Access::Roles(ADMIN)),
    // Organizations are managed by administrators; everyone reads those in their scope
    // (platform roles: all; organization roles: their own — the service filters).
    ("/cardhsm.v1.OrganizationService/CreateOrganization", Access::Roles(ADMIN)),
    ("/cardhsm.v1.OrganizationService/UpdateOrganization", Access::Roles(ADMIN)),
    ("/cardhsm.v1.OrganizationService/GetOrganization", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.OrganizationService/ListOrganizations", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.OrganizationService/ListOrganizationItems", Access::Roles(ANY_ROLE)),
    ("/cardhsm.v1.OrganizationService/CheckOrganization", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.OrganizationService/AddOrganizationAuthority", Access::Roles(ADMIN)),
    ("/cardhsm.v1.OrganizationService/UpdateOrganizationAuthority", Access::Roles(ADMIN)),
    ("/cardhsm.v1.OrganizationService/RemoveOrganizationAuthority", Access::Roles(ADMIN)),
    ("/cardhsm.v1.OrganizationService/ListOrganizationAuthorities", Access::Roles(ANY_ROLE)),
    // Ecosystems: platform administrators and the ecosystem's ECO_ADMINs (the service checks
    // which ecosystem).
    ("/cardhsm.v1.EcosystemService/GetEcosystem", Access::Roles(ECO_ADMINS)),
    ("/cardhsm.v1.EcosystemService/UpdateEcosystem", Access::Roles(ECO_ADMINS)),
    ("/cardhsm.v1.EcosystemService/GetEcosystemStatistics", Access::Roles(ECO_ADMINS)),
    // Everyone reads their own privileges; organization admins grant within their reach.
    ("/cardhsm.v1.PrivilegeService/GetUserPrivileges", Access::Authenticated),
    ("/cardhsm.v1.PrivilegeService/SetUserPrivileges", Access::Roles(ORG_ADMINS)),
    // System: information for officers; backup and restore only for a SUPER_ADMIN (a restore
    // replaces every user, administrator and key record).
    ("/cardhsm.v1.SystemService/GetSystemInformation", Access::Roles(OPERATORS)),
    ("/cardhsm.v1.SystemService/ExportConfiguration", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.SystemService/ImportConfiguration", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.OrganizationService/GetOrganizationForCurrentUser", Access::Authenticated),
    // Organization admins read the users of their organizations (the service scopes).
    ("/cardhsm.v1.UserService/GetUser", Access::Roles(ORG_ADMINS)),
    ("/cardhsm.v1.UserService/GetCurrentUser", Access::Authenticated),
    ("/cardhsm.v1.UserService/CheckUsername", Access::Roles(ADMIN)),
    ("/cardhsm.v1.UserService/RemoveUser", Access::Roles(ADMIN)),
    // Administrators: every ADMIN (a SUPER_ADMIN also holds ADMIN) reads them; only a
    // SUPER_ADMIN changes them.
    ("/cardhsm.v1.AdminService/ListAdmins", Access::Roles(ADMIN)),
    ("/cardhsm.v1.AdminService/GetAdmin", Access::Roles(ADMIN)),
    ("/cardhsm.v1.AdminService/CreateAdmin", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/EditAdmin", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/DeleteAdmin", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/EnableAdmin", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/DisableAdmin", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/EnableAdmins", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/DisableAdmins", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.AdminService/DeleteAdmins", Access::Roles(SUPER_ADMIN)),
    ("/cardhsm.v1.BatchService/CreateBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/CreateSingleCertBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/UploadCsrBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/UploadCsvBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/ListGenerators", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/PreviewBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/ListBatches", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/GetBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/GetBatchStatus", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/GetProcessingInfo", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/GetBatchAuditLog", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/GetDeviceAuditLog", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/GetDeviceStatistics", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/RejectBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/RevokeBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/DownloadBatch", Access::Roles(BATCH_ROLES)),
    ("/cardhsm.v1.BatchService/WatchBatch", Access::Roles(BATCH_ROLES)),
];

/// Standard services that are not ours: health is public (load balancers probe it without
/// credentials); reflection needs a signed-in caller.
const FOREIGN_PREFIXES: &[(&str, Access)] = &[
    ("/grpc.health.v1.Health/", Access::Public),
    ("/grpc.reflection.v1.ServerReflection/", Access::Authenticated),
    ("/grpc.reflection.v1alpha.ServerReflection/", Access::Authenticated),
];

/// The rule for a gRPC method path, or `None` when there is none (the caller denies).
pub fn rule_for(path: &str) -> Option<Access> {
    RULES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, a)| *a)
        .or_else(|| FOREIGN_PREFIXES.iter().find(|(p, _)| path.starts_with(p)).map(|(_, a)| *a))
}

/// What a caller presented to prove who it is, whatever the wire.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// A bearer access token or an API key.
    Token(&'a str),
    /// The verified leaf certificate (DER) of a client-certificate TLS connection.
    ClientCertificate(&'a [u8]),
    None,
}

impl std::fmt::Debug for Credential<'_> {
    // Never print the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Token(_) => "Token(<redacted>)",
            Credential::ClientCertificate(_) => "ClientCertificate",
            Credential::None => "None",
        })
    }
}

/// Authenticates and authorizes one call of `method` (a gRPC method path; REST routes name the
/// gRPC method they mirror, so both wires share this table and this check). `Ok(None)`: a
/// public method. Deny by default: a method with no rule is refused.
pub fn authorize(
    auth: &super::auth::AuthService,
    admins: &super::admins::AdminService,
    method: &str,
    credential: Credential<'_>,
) -> Result<Option<super::Principal>, super::ServiceError> {
    use super::ServiceError;
    let Some(rule) = rule_for(method) else {
        return Err(ServiceError::PermissionDenied(format!("no authorization rule for {method}")));
    };
    if rule == Access::Public {
        // A credential on a public method is not needed; ignore it rather than fail the call.
        return Ok(None);
    }
    // A token wins; without one, an administrator may present the client certificate
    // registered for them (TLS already verified it against the client CA).
    let principal = match credential {
        Credential::Token(token) => auth.authenticate(token)?,
        Credential::ClientCertificate(der) => admins.authenticate_certificate(der)?,
        Credential::None => return Err(ServiceError::Unauthenticated("missing bearer access token".into())),
    };
    if !allows(rule, &principal.roles) {
        return Err(ServiceError::PermissionDenied(format!("{} may not call {method}", principal.username)));
    }
    Ok(Some(principal))
}

/// Whether a principal with `roles` satisfies `access` (authentication already checked).
pub fn allows(access: Access, roles: &[Role]) -> bool {
    match access {
        Access::Public | Access::Authenticated => true,
        Access::Roles(allowed) => roles.iter().any(|r| allowed.contains(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_in_the_descriptor_set_has_a_rule() {
        let methods = cardhsm_proto::all_method_paths();
        assert!(methods.len() >= 14, "descriptor set looks empty: {methods:?}");
        let missing: Vec<_> = methods.iter().filter(|m| !RULES.iter().any(|(p, _)| p == *m)).collect();
        assert!(missing.is_empty(), "RPCs without an authorization rule: {missing:?}");
    }

    #[test]
    fn every_rule_names_a_real_rpc() {
        let methods = cardhsm_proto::all_method_paths();
        let stale: Vec<_> = RULES.iter().filter(|(p, _)| !methods.iter().any(|m| m == p)).collect();
        assert!(stale.is_empty(), "rules for RPCs that do not exist: {stale:?}");
    }

    #[test]
    fn only_login_refresh_realm_auth_and_health_are_public() {
        let public: Vec<_> = RULES.iter().filter(|(_, a)| *a == Access::Public).map(|(p, _)| *p).collect();
        assert_eq!(
            public,
            [
                "/cardhsm.v1.AuthService/Login",
                "/cardhsm.v1.AuthService/Refresh",
                "/cardhsm.v1.AuthService/RealmAuth",
                "/cardhsm.v1.AuthService/RequestPasswordReset",
                "/cardhsm.v1.AuthService/ResetPassword",
                "/cardhsm.v1.AuthService/ValidateCode",
            ]
        );
        assert_eq!(rule_for("/grpc.health.v1.Health/Check"), Some(Access::Public));
        assert_eq!(
            rule_for("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(Access::Authenticated)
        );
        assert_eq!(rule_for("/cardhsm.v1.Nope/Nothing"), None);
    }

    #[test]
    fn user_role_cannot_mutate_cards_or_manage_users() {
        for path in ["/cardhsm.v1.CardService/RevokeCard", "/cardhsm.v1.UserService/CreateUser"] {
            let rule = rule_for(path).expect("rule");
            assert!(!allows(rule, &[Role::User]), "{path}");
            assert!(allows(rule, &[Role::Admin]), "{path}");
        }
        assert!(allows(rule_for("/cardhsm.v1.CardService/ListCards").expect("rule"), &[Role::User]));
        assert!(!allows(rule_for("/cardhsm.v1.UserService/ListUsers").expect("rule"), &[Role::Operator]));
    }
}
