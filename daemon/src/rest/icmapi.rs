//! REST routes of the card-management API (`/icmapi/...`): a user's cards and the card
//! lifecycle, on the card service.

use super::Routes;
use super::auth::{Rule, guarded};
use super::error::schema::PlainErrorBody;
use super::error::{Failure, PlainShape};
use super::extract::{Caller, QueryOf};
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
pub const RULES: &[Rule] = &[Rule("GET /icmapi/user/getcards", "/cardhsm.v1.CardService/ListCards")];

pub fn routes() -> Routes {
    guarded::<Shape>(OpenApiRouter::new().routes(routes!(get_cards)), RULES)
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
        (status = "4XX", body = PlainErrorBody),
        (status = "5XX", body = PlainErrorBody),
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
