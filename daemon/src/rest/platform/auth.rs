//! Batch platform sign-in routes (`/auth/...`): password login, refresh, password reset. Wire
//! layer: each route decodes, calls the same auth / password-reset service function as its
//! `cardhsm.v1.AuthService` twin, and encodes. All are open without a credential, like their
//! gRPC twins. Passwords, tokens and reset codes are moved into `Zeroizing` buffers at once and
//! never reach a log or a Debug print.

use super::super::Routes;
use super::super::auth::{PUBLIC, Rule, guarded};
use super::super::error::schema::PlainErrorAnswers;
use super::super::error::{Failure, PlainShape};
use super::super::extract::{Client, JsonBody, QueryOf, TextBody};
use crate::service::{ServiceError, Services};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

type Shape = PlainShape;
type Reply<T> = Result<Json<T>, Failure<Shape>>;

/// Which gRPC method each route mirrors (see [`crate::rest::auth::Rule`]). The twins are
/// public, so are these.
pub const RULES: &[Rule] = &[
    Rule("POST /auth/pwd", PUBLIC),
    Rule("POST /auth/refresh", PUBLIC),
    Rule("POST /auth/reset", PUBLIC),
    Rule("POST /auth/update", PUBLIC),
    Rule("GET /auth/validate-code", PUBLIC),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(login))
            .routes(routes!(refresh))
            .routes(routes!(request_reset))
            .routes(routes!(update_password))
            .routes(routes!(validate_code)),
        RULES,
    )
}

/// The service names fields as the gRPC messages do (`new_password`); the platform's clients
/// send camelCase (`newPassword`). Renames the field at fault so the error names what the
/// client sent.
pub(super) fn camel_field(err: ServiceError) -> Failure<Shape> {
    Failure::from(err).rename_field(|field| Some(camel_case(field)))
}

/// [`camel_field`], and a field the platform calls otherwise renamed (`username` → `login`).
pub(super) fn renamed(err: ServiceError, from: &str, to: &str) -> Failure<Shape> {
    camel_field(err).rename_field(|field| (field == from).then(|| to.to_owned()))
}

/// `repeated_new_password` → `repeatedNewPassword`; other characters (`[0].`) kept.
pub(super) fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `POST /auth/pwd`: the login and password (redacted from Debug).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PlatformLogin {
    /// The user's login name.
    login: String,
    password: String,
}

impl std::fmt::Debug for PlatformLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformLogin").field("login", &self.login).field("password", &"<redacted>").finish()
    }
}

/// The tokens of a session (as AuthService.Login answers).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PlatformTokens {
    /// Send as `Authorization: Bearer <accessToken>`.
    access_token: String,
    /// Trade at `POST /auth/refresh` for new tokens.
    refresh_token: String,
    /// Seconds the access token lives.
    expires_in: u32,
    /// Always "Bearer".
    token_type: String,
    /// SUPER_ADMIN, ADMIN, OPERATOR, ECO_ADMIN, ORG_ADMIN, USER.
    roles: Vec<String>,
    session_id: String,
}

impl std::fmt::Debug for PlatformTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformTokens")
            .field("expires_in", &self.expires_in)
            .field("roles", &self.roles)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl From<crate::service::auth::Tokens> for PlatformTokens {
    fn from(t: crate::service::auth::Tokens) -> Self {
        PlatformTokens {
            access_token: t.access_token.to_string(),
            refresh_token: t.refresh_token.to_string(),
            expires_in: t.expires_in,
            token_type: "Bearer".into(),
            roles: t.roles.into_iter().map(|r| r.as_str().to_owned()).collect(),
            session_id: t.session_id,
        }
    }
}

/// Signs in with a login and password (AuthService.Login).
#[utoipa::path(post, path = "/auth/pwd", tag = "platform", security(()),
    request_body = PlatformLogin,
    responses(
        (status = 200, description = "Signed in", body = PlatformTokens),
        PlainErrorAnswers,
    ))]
async fn login(
    State(services): State<Services>,
    Client(client): Client,
    JsonBody(body, _): JsonBody<PlatformLogin, Shape>,
) -> Reply<PlatformTokens> {
    let PlatformLogin { login, password } = body;
    let tokens = services
        .auth
        .login(&login, Zeroizing::new(password), client)
        .await
        .map_err(|e| renamed(e, "username", "login"))?;
    Ok(Json(tokens.into()))
}

/// Trades a refresh token (the bare token as the body, text/plain) for new tokens
/// (AuthService.Refresh).
#[utoipa::path(post, path = "/auth/refresh", tag = "platform", security(()),
    request_body(content = String, content_type = "text/plain", description = "The refresh token"),
    responses(
        (status = 200, description = "New tokens", body = PlatformTokens),
        PlainErrorAnswers,
    ))]
async fn refresh(
    State(services): State<Services>,
    TextBody(token, _): TextBody<Shape>,
) -> Reply<PlatformTokens> {
    let tokens = services.auth.refresh(Zeroizing::new(token)).await.map_err(camel_field)?;
    Ok(Json(tokens.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ResetQuery {
    /// The login to send a reset code to (by email).
    login: String,
}

/// Whether a message went out.
#[derive(Debug, Serialize, ToSchema)]
struct ResetRequested {
    /// False within 15 minutes of a previous code for the login. A login that gets no code
    /// (unknown, disabled, without an email) answers the same way as one that does.
    sent: bool,
}

/// Sends a one-time password-reset code to the login's email (AuthService.RequestPasswordReset).
#[utoipa::path(post, path = "/auth/reset", tag = "platform", security(()), params(ResetQuery),
    responses(
        (status = 200, description = "Handled", body = ResetRequested),
        PlainErrorAnswers,
    ))]
async fn request_reset(
    State(services): State<Services>,
    QueryOf(query, _): QueryOf<ResetQuery, Shape>,
) -> Reply<ResetRequested> {
    let sent =
        services.password_reset.request(&query.login).await.map_err(|e| renamed(e, "username", "login"))?;
    Ok(Json(ResetRequested { sent }))
}

/// `POST /auth/update`: a reset code and the new password twice (all redacted from Debug).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PasswordResetBody {
    /// The code from the reset message.
    code: String,
    new_password: String,
    repeated_new_password: String,
}

impl std::fmt::Debug for PasswordResetBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordResetBody { <redacted> }")
    }
}

/// Sets a new password with a reset code (AuthService.ResetPassword). Every earlier session
/// and API key of the user ends.
#[utoipa::path(post, path = "/auth/update", tag = "platform", security(()),
    request_body = PasswordResetBody,
    responses(
        (status = 204, description = "The password is changed"),
        PlainErrorAnswers,
    ))]
async fn update_password(
    State(services): State<Services>,
    Client(client): Client,
    JsonBody(body, _): JsonBody<PasswordResetBody, Shape>,
) -> Result<StatusCode, Failure<Shape>> {
    let PasswordResetBody { code, new_password, repeated_new_password } = body;
    services
        .password_reset
        .reset(
            Zeroizing::new(code),
            Zeroizing::new(new_password),
            Zeroizing::new(repeated_new_password),
            &client,
        )
        .await
        .map_err(camel_field)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CodeQuery {
    /// The code from the reset message.
    code: String,
}

impl std::fmt::Debug for CodeQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeQuery { <redacted> }")
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ResetCodeValidity {
    /// Whether the code is valid now.
    valid: bool,
}

/// Whether a reset code is valid (AuthService.ValidateCode). A code that is not counts as a
/// failed guess.
#[utoipa::path(get, path = "/auth/validate-code", tag = "platform", security(()), params(CodeQuery),
    responses(
        (status = 200, description = "Checked", body = ResetCodeValidity),
        PlainErrorAnswers,
    ))]
async fn validate_code(
    State(services): State<Services>,
    Client(client): Client,
    QueryOf(query, _): QueryOf<CodeQuery, Shape>,
) -> Reply<ResetCodeValidity> {
    let valid =
        services.password_reset.validate(Zeroizing::new(query.code), &client).await.map_err(camel_field)?;
    Ok(Json(ResetCodeValidity { valid }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_field_names_become_camel_case() {
        assert_eq!(super::camel_case("repeated_new_password"), "repeatedNewPassword");
        assert_eq!(super::camel_case("profile_params[0].x"), "profileParams[0].x");
        assert_eq!(super::camel_case("code"), "code");
    }
}
