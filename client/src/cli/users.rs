//! The CLI's `users` and `password` commands, over `UserService` and the password-reset calls
//! of `AuthService`: parse the arguments, call the daemon, print the answer. Checks are the
//! daemon's (it names the bad field). Passwords and reset codes never come from arguments:
//! they come from an environment variable, the terminal, or a line of standard input.

use super::args::{OutputFormat, RoleArg};
use super::output;
use super::password::{self, SecretSource};
use super::run::{CliError, print};
use cardhsm_client::v1::auth_service_client::AuthServiceClient;
use cardhsm_client::v1::user_service_client::UserServiceClient;
use cardhsm_client::v1::{
    CheckEmailRequest, ListUsersRequest, PageRequest, RequestPasswordResetRequest, ResetPasswordRequest,
    Role, UpdateCredentialsRequest, UpdateCurrentUserRequest, UpdateEmailRequest, UpdateUserRequest,
    ValidateCodeRequest,
};
use cardhsm_client::{CardhsmClient, ClientError};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

/// The caller's current password, for changes to their own account.
const CURRENT: SecretSource =
    SecretSource { env: "CARDHSM_PASSWORD", prompt: "Current password: ", confirm: false };
/// A new password of one's own (UpdateCredentials, ResetPassword).
const NEW: SecretSource =
    SecretSource { env: "CARDHSM_NEW_PASSWORD", prompt: "New password: ", confirm: true };
/// A password-reset code, as the message delivered it.
const CODE: SecretSource = SecretSource { env: "CARDHSM_RESET_CODE", prompt: "Reset code: ", confirm: false };

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (password from CARDHSM_NEW_PASSWORD, the terminal, or one line of stdin)
    Create {
        /// Login: 5-30 of A-Z a-z 0-9 _
        #[arg(long, short = 'u')]
        username: String,
        /// Role to grant (repeat for several)
        #[arg(long, value_enum, required = true)]
        role: Vec<RoleArg>,
        /// First name: 1-50 letters
        #[arg(long)]
        first_name: Option<String>,
        /// Last name: 1-50 letters
        #[arg(long)]
        last_name: Option<String>,
        /// Phone number, e.g. "+1 (555) 123-4567"
        #[arg(long)]
        phone: Option<String>,
        /// Email address, unique
        #[arg(long)]
        email: Option<String>,
    },
    /// List users, optionally narrowed
    List {
        /// Users per page (server default 100, at most 1000)
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page token printed by the previous page
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
        /// Users holding a privilege in this organization (id)
        #[arg(long, value_name = "ID")]
        organization: Option<String>,
        /// Users holding this role
        #[arg(long, value_enum)]
        role: Option<RoleFilterArg>,
        /// Text to find in the login, names or email
        #[arg(long)]
        search: Option<String>,
    },
    /// Edit a user's names, phone and email (administrators, organization administrators);
    /// an empty value clears a field
    Update {
        /// User id
        id: String,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Edit your own names and phone; an empty value clears a field
    UpdateMe {
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// Change your email (current password from CARDHSM_PASSWORD, the terminal, or stdin)
    UpdateEmail {
        /// The new email address
        email: String,
    },
    /// Change your login and/or password (current password from CARDHSM_PASSWORD, the new one
    /// from CARDHSM_NEW_PASSWORD; each from the terminal or a line of stdin otherwise). Every
    /// session of yours ends: log in again.
    UpdateCredentials {
        /// The new login
        #[arg(long, value_name = "LOGIN")]
        new_username: Option<String>,
        /// Change the password too
        #[arg(long)]
        new_password: bool,
    },
    /// Whether an email is well formed and free
    CheckEmail { email: String },
}

/// Password reset, for those who cannot sign in: no session needed.
#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Ask for a reset code to be sent to the account's email
    ResetRequest {
        /// The login
        #[arg(long, short = 'u')]
        username: String,
    },
    /// Set a new password with a code (code from CARDHSM_RESET_CODE, new password from
    /// CARDHSM_NEW_PASSWORD; each from the terminal or a line of stdin otherwise)
    Reset,
    /// Whether a code is valid (code from CARDHSM_RESET_CODE, the terminal, or stdin)
    ValidateCode,
}

/// Roles to filter users by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleFilterArg {
    SuperAdmin,
    Admin,
    Operator,
    EcoAdmin,
    OrgAdmin,
    User,
}

impl From<RoleFilterArg> for Role {
    fn from(role: RoleFilterArg) -> Self {
        match role {
            RoleFilterArg::SuperAdmin => Self::SuperAdmin,
            RoleFilterArg::Admin => Self::Admin,
            RoleFilterArg::Operator => Self::Operator,
            RoleFilterArg::EcoAdmin => Self::EcoAdmin,
            RoleFilterArg::OrgAdmin => Self::OrgAdmin,
            RoleFilterArg::User => Self::User,
        }
    }
}

/// Runs a `users` command with the session's client.
pub async fn users(
    client: &CardhsmClient,
    format: OutputFormat,
    command: UsersCommand,
) -> Result<(), CliError> {
    let one = |user: cardhsm_client::v1::User| {
        print(format, || output::user_json(&user), || output::user_table(&user))
    };
    match command {
        UsersCommand::Create { username, role, first_name, last_name, phone, email } => {
            let password = password::read(password::NEW_USER)?;
            let request = cardhsm_client::v1::CreateUserRequest {
                username,
                password: password.expose().to_owned(),
                roles: role.into_iter().map(|r| Role::from(r).into()).collect(),
                first_name: first_name.unwrap_or_default(),
                last_name: last_name.unwrap_or_default(),
                phone: phone.unwrap_or_default(),
                email: email.unwrap_or_default(),
                repeated_password: String::new(),
            };
            one(client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).create_user(r).await })
                .await?)
        }
        UsersCommand::List { page_size, page_token, organization, role, search } => {
            let request = ListUsersRequest {
                page: Some(PageRequest {
                    page_size: page_size.unwrap_or(0),
                    page_token: page_token.unwrap_or_default(),
                }),
                organization_id: organization.unwrap_or_default(),
                role: role.map_or(0, |r| Role::from(r).into()),
                search_line: search.unwrap_or_default(),
            };
            let page = client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).list_users(r).await })
                .await?;
            print(
                format,
                || output::users_json(&page.users, page.page.as_ref()),
                || output::users_table(&page.users, page.page.as_ref()),
            )
        }
        UsersCommand::Update { id, first_name, last_name, phone, email } => {
            let request = UpdateUserRequest { id, first_name, last_name, phone, email };
            one(client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).update_user(r).await })
                .await?)
        }
        UsersCommand::UpdateMe { first_name, last_name, phone } => {
            let request = UpdateCurrentUserRequest { first_name, last_name, phone };
            one(client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).update_current_user(r).await })
                .await?)
        }
        UsersCommand::UpdateEmail { email } => {
            let current = password::read(CURRENT)?;
            let request = UpdateEmailRequest { email, current_password: current.expose().to_owned() };
            one(client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).update_email(r).await })
                .await?)
        }
        UsersCommand::UpdateCredentials { new_username, new_password } => {
            let current = password::read(CURRENT)?;
            let new = if new_password { Some(password::read(NEW)?) } else { None };
            let new = new.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
            let request = UpdateCredentialsRequest {
                current_password: current.expose().to_owned(),
                new_username: new_username.unwrap_or_default(),
                repeated_new_password: new.clone(),
                new_password: new,
            };
            one(client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).update_credentials(r).await })
                .await?)
        }
        UsersCommand::CheckEmail { email } => {
            let request = CheckEmailRequest { email: email.clone() };
            let answer = client
                .call(request, |ch, r| async move { UserServiceClient::new(ch).check_email(r).await })
                .await?;
            print(
                format,
                || json!({ "email": email, "available": answer.available }),
                || format!("{email}: {}\n", if answer.available { "available" } else { "taken" }),
            )
        }
    }
}

/// Runs a `password` command: public calls, no session.
pub async fn password(
    client: &CardhsmClient,
    format: OutputFormat,
    command: PasswordCommand,
) -> Result<(), CliError> {
    let mut auth = AuthServiceClient::new(client.channel());
    match command {
        PasswordCommand::ResetRequest { username } => {
            let sent = auth
                .request_password_reset(RequestPasswordResetRequest { username })
                .await
                .map_err(ClientError::from)?
                .into_inner()
                .sent;
            print(
                format,
                || json!({ "sent": sent }),
                || {
                    if sent {
                        "if the account exists and has an email, a reset code is on its way\n".to_owned()
                    } else {
                        "a code was sent in the last 15 minutes: use that one, or try again later\n"
                            .to_owned()
                    }
                },
            )
        }
        PasswordCommand::Reset => {
            let code = password::read(CODE)?;
            let new = password::read(NEW)?;
            let request = ResetPasswordRequest {
                code: code.expose().to_owned(),
                new_password: new.expose().to_owned(),
                repeated_new_password: new.expose().to_owned(),
            };
            auth.reset_password(request).await.map_err(ClientError::from)?;
            print(
                format,
                || json!({ "reset": true }),
                || "password reset: log in with the new one\n".to_owned(),
            )
        }
        PasswordCommand::ValidateCode => {
            let code = password::read(CODE)?;
            let valid = auth
                .validate_code(ValidateCodeRequest { code: code.expose().to_owned() })
                .await
                .map_err(ClientError::from)?
                .into_inner()
                .valid;
            print(
                format,
                || json!({ "valid": valid }),
                || if valid { "the code is valid\n" } else { "the code is not valid\n" }.to_owned(),
            )
        }
    }
}
