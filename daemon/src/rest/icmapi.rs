//! REST routes of the card-management API (`/icmapi/...`): a user's cards and the card
//! lifecycle (revoke, disable, enable, pre-update), on the card service. Each action answers
//! the card after it, in the getcards item shape, so a script sees the state it caused.

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::schema::PlainErrorAnswers;
use super::error::{Failure, PlainShape};
use super::extract::{Caller, JsonBody, QueryOf};
use crate::service::Services;
use crate::service::cards::Card;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Shape = PlainShape;
type Reply<T> = Result<Json<T>, Failure<Shape>>;

/// Which gRPC method each route mirrors (see [`super::auth::Rule`]).
pub const RULES: &[Rule] = &[
    Rule("GET /icmapi/user/getcards", "/cardhsm.v1.CardService/ListCards"),
    Rule("POST /icmapi/card/revoke", "/cardhsm.v1.CardService/RevokeCard"),
    Rule("POST /icmapi/card/disable", "/cardhsm.v1.CardService/DisableCard"),
    Rule("POST /icmapi/card/enable", "/cardhsm.v1.CardService/EnableCard"),
    Rule("POST /icmapi/card/preupdate", "/cardhsm.v1.CardService/PreUpdateCard"),
];

pub fn routes() -> Routes {
    guarded::<Shape>(
        OpenApiRouter::new()
            .routes(routes!(get_cards))
            .routes(routes!(revoke_card))
            .routes(routes!(disable_card))
            .routes(routes!(enable_card))
            .routes(routes!(pre_update_card)),
        RULES,
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// The card owner's user principal name.
    name: String,
}

/// A card as the card-management API lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IcmCard {
    id: String,
    /// The token serial number.
    serial_number: String,
    atr: String,
    label: String,
    /// ASSIGNED, PENDING_ISSUE, ACTIVE, DISABLED, PENDING_UPDATE or REVOKED.
    state: String,
    pac_number: String,
}

impl From<Card> for IcmCard {
    fn from(c: Card) -> Self {
        IcmCard {
            id: c.id,
            serial_number: c.token_serial,
            atr: c.atr,
            label: c.label,
            state: c.state.as_str().to_owned(),
            pac_number: c.pac_number,
        }
    }
}

/// The cards of one user (every page).
#[utoipa::path(get, path = "/icmapi/user/getcards", tag = "icmapi", params(UserQuery),
    responses(
        (status = 200, description = "The user's cards", body = Vec<IcmCard>),
        PlainErrorAnswers,
    ))]
async fn get_cards(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<UserQuery, Shape>,
) -> Reply<Vec<IcmCard>> {
    let mut cards = Vec::new();
    let mut page_token = String::new();
    loop {
        let (page, next, _) = services
            .cards
            .list(&caller, &query.name, None, crate::service::paging::MAX_PAGE_SIZE, &page_token)
            .await?;
        cards.extend(page.into_iter().map(IcmCard::from));
        if next.is_empty() {
            break;
        }
        page_token = next;
    }
    Ok(Json(cards))
}

/// The card a lifecycle action is for, and an optional comment for the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CardQuery {
    /// The card id (as GET /icmapi/user/getcards lists it).
    id: String,
    /// Recorded in the audit log with the action.
    #[serde(default)]
    comment: Option<String>,
}

/// The body of a revocation.
#[derive(Debug, Deserialize, ToSchema)]
struct RevokeBody {
    /// The card-management product's reason: 0 none, 1 broken, 2 lost, 3 upgrade,
    /// 4 expired, 5 withdraw, 6 user removed, 7 compromised. The card's certificates are
    /// revoked with the RFC 5280 reason mapped from it (README, "Cards get certificates").
    reason: i32,
    /// Recorded in the audit log.
    #[serde(default)]
    comment: Option<String>,
}

/// Revokes a card (any state but REVOKED → REVOKED) and its certificates.
#[utoipa::path(post, path = "/icmapi/card/revoke", tag = "icmapi", params(CardQuery),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "The revoked card", body = IcmCard),
        PlainErrorAnswers,
    ))]
async fn revoke_card(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<CardQuery, Shape>,
    JsonBody(body, _): JsonBody<RevokeBody, Shape>,
) -> Reply<IcmCard> {
    // The query's comment is the fallback, for scripts that put every argument there.
    let comment = body.comment.or(query.comment).unwrap_or_default();
    let card = services.cards.revoke(&caller, &query.id, body.reason, &comment).await?;
    Ok(Json(card.into()))
}

/// Disables an ACTIVE card; its certificates go on hold (certificateHold).
#[utoipa::path(post, path = "/icmapi/card/disable", tag = "icmapi", params(CardQuery),
    responses(
        (status = 200, description = "The disabled card", body = IcmCard),
        PlainErrorAnswers,
    ))]
async fn disable_card(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<CardQuery, Shape>,
) -> Reply<IcmCard> {
    let comment = query.comment.unwrap_or_default();
    Ok(Json(services.cards.disable(&caller, &query.id, &comment).await?.into()))
}

/// Enables a DISABLED card; the hold on its certificates is lifted (removeFromCRL).
#[utoipa::path(post, path = "/icmapi/card/enable", tag = "icmapi", params(CardQuery),
    responses(
        (status = 200, description = "The enabled card", body = IcmCard),
        PlainErrorAnswers,
    ))]
async fn enable_card(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<CardQuery, Shape>,
) -> Reply<IcmCard> {
    let comment = query.comment.unwrap_or_default();
    Ok(Json(services.cards.enable(&caller, &query.id, &comment).await?.into()))
}

/// The card a pre-update is for, and the policy it moves to.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PreUpdateQuery {
    /// The card id.
    id: String,
    /// The card policy to update to; absent keeps the card's current policy (a re-issue).
    #[serde(default)]
    policy: Option<String>,
}

/// Marks an ACTIVE card for update (PENDING_UPDATE): the certificates the new policy no
/// longer gives are revoked (superseded) and removed from the card.
#[utoipa::path(post, path = "/icmapi/card/preupdate", tag = "icmapi", params(PreUpdateQuery),
    responses(
        (status = 200, description = "The card, pending update", body = IcmCard),
        PlainErrorAnswers,
    ))]
async fn pre_update_card(
    State(services): State<Services>,
    Caller(caller): Caller,
    QueryOf(query, _): QueryOf<PreUpdateQuery, Shape>,
) -> Reply<IcmCard> {
    let policy = query.policy.unwrap_or_default();
    Ok(Json(services.cards.pre_update(&caller, &query.id, &policy).await?.into()))
}
