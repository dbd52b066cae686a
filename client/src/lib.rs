//! `cardhsm_client`: the typed Rust client of the cardhsm.v1 gRPC API, used by the `cardhsm`
//! command-line tool and the end-to-end tests.
//!
//! Flow: [`ConnectOptions`] → channel (TLS / mTLS) → [`CardhsmClient`], which logs in, holds the
//! token pair ([`TokenPair`], secrets in [`SecretString`]), attaches the bearer token to every
//! call and refreshes it transparently; [`session`] persists the pair for the CLI; [`names`]
//! spells the API's enums the way the CLI and its JSON output do. Every failure is a
//! [`ClientError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), cardhsm_client::ClientError> {
//! use cardhsm_client::CardhsmClient;
//! let client = CardhsmClient::connect("http://127.0.0.1:50051").await?;
//! client.login("admin", "correct horse battery").await?;
//! let me = client.who_am_i().await?;
//! let cards = client.list_cards("user1@corp.example", None, 0, "").await?;
//! // Raw generated clients (bearer token attached, no refresh) for tests that want tonic::Status:
//! let status = client.cards_raw().get_card(cardhsm_client::v1::GetCardRequest::default()).await;
//! // IssuanceService: authorities, profiles, issuing, finding, revoking (RFC 5280 codes), CRLs.
//! let crl = client.get_crl("authority-id").await?;
//! // CertificateStoreService: the certificates (and keys) on a token, by serial or label.
//! let on_card = client.list_token_certificates("card-01", "").await?;
//! # let _ = (me, cards, status, crl, on_card); Ok(()) }
//! ```

mod auth;
mod client;
mod connect;
mod error;
pub mod names;
mod secret;
pub mod session;

pub use auth::{AuthInterceptor, REFRESH_MARGIN_SECS, TokenListener, TokenPair};
pub use client::{AuthedChannel, CardhsmClient, LoginInfo};
pub use connect::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_ENDPOINT};
pub use error::{ClientError, code_name};
pub use secret::SecretString;
pub use session::Session;

/// The generated cardhsm.v1 types and clients, re-exported for convenience.
pub use cardhsm_proto::v1;
