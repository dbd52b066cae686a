//! Domain values to and from their cardhsm.v1 wire forms. No logic beyond the mapping.

use crate::service::Role;
use crate::service::cards::{Card, CardState, TokenView};
use cardhsm_proto::v1 as pb;

pub fn role_to_pb(r: Role) -> i32 {
    (match r {
        Role::SuperAdmin => pb::Role::SuperAdmin,
        Role::Admin => pb::Role::Admin,
        Role::Operator => pb::Role::Operator,
        Role::EcoAdmin => pb::Role::EcoAdmin,
        Role::OrgAdmin => pb::Role::OrgAdmin,
        Role::User => pb::Role::User,
    }) as i32
}

/// Wire role → domain role; `None` for UNSPECIFIED or an unknown number.
pub fn role_from_pb(v: i32) -> Option<Role> {
    match pb::Role::try_from(v).ok()? {
        pb::Role::SuperAdmin => Some(Role::SuperAdmin),
        pb::Role::Admin => Some(Role::Admin),
        pb::Role::Operator => Some(Role::Operator),
        pb::Role::EcoAdmin => Some(Role::EcoAdmin),
        pb::Role::OrgAdmin => Some(Role::OrgAdmin),
        pb::Role::User => Some(Role::User),
        pb::Role::Unspecified => None,
    }
}

pub fn state_to_pb(s: CardState) -> pb::CardState {
    match s {
        CardState::Assigned => pb::CardState::Assigned,
        CardState::PendingIssue => pb::CardState::PendingIssue,
        CardState::Active => pb::CardState::Active,
        CardState::Disabled => pb::CardState::Disabled,
        CardState::PendingUpdate => pb::CardState::PendingUpdate,
        CardState::Revoked => pb::CardState::Revoked,
    }
}

/// Wire state filter → domain: `Ok(None)` for UNSPECIFIED (no filter), `Err` for an unknown number.
pub fn state_filter_from_pb(v: i32) -> Result<Option<CardState>, ()> {
    Ok(match pb::CardState::try_from(v).map_err(|_| ())? {
        pb::CardState::Unspecified => None,
        pb::CardState::Assigned => Some(CardState::Assigned),
        pb::CardState::PendingIssue => Some(CardState::PendingIssue),
        pb::CardState::Active => Some(CardState::Active),
        pb::CardState::Disabled => Some(CardState::Disabled),
        pb::CardState::PendingUpdate => Some(CardState::PendingUpdate),
        pb::CardState::Revoked => Some(CardState::Revoked),
    })
}

pub fn card_to_pb(c: Card, token_present: bool) -> pb::CardInfo {
    pb::CardInfo {
        id: c.id,
        serial_number: c.token_serial,
        atr: c.atr,
        label: c.label,
        state: state_to_pb(c.state) as i32,
        pac_number: c.pac_number,
        owner: c.owner,
        token_present,
        policy: c.policy,
        pending_policy: c.pending_policy.unwrap_or_default(),
        revoke_reason: c.revoke_reason.unwrap_or(0),
        keys: c
            .keys
            .into_iter()
            .map(|k| pb::CardKey {
                key_id: hex(&k.key_id),
                label: k.label,
                algorithm: k.algorithm,
                public_key_der: k.public_key_der,
                certificate: k.certificate.map(|c| pb::CardCertificate {
                    certificate_id: c.certificate_id,
                    serial_number: c.serial,
                    status: c.status,
                    fingerprint: c.fingerprint,
                    not_after: c.not_after,
                    certificate_pem: crate::pki::pem_encode(crate::pki::PEM_CERTIFICATE, &c.certificate_der),
                }),
            })
            .collect(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// PKCS#11's CK_UNAVAILABLE_INFORMATION: the token does not say (SoftHSM never does).
const UNAVAILABLE_INFORMATION: u64 = u64::MAX;

pub fn token_to_pb(t: TokenView) -> pb::TokenInfo {
    let i = t.info;
    let initialised = !i.serial.is_empty();
    pb::TokenInfo {
        slot_id: i.slot_id,
        label: i.label,
        serial_number: i.serial,
        manufacturer: i.manufacturer,
        model: i.model,
        present: i.present,
        available: i.available,
        // A token the config does not name is a card token (it takes `pkcs11.card_pin`); an
        // empty, uninitialised slot has no role.
        role: match i.role {
            Some(hsm_config::TokenRole::Daemon) => "daemon".into(),
            Some(hsm_config::TokenRole::Card) => "card".into(),
            None if initialised => "card".into(),
            None => String::new(),
        },
        free_public_memory: i.free_public_memory.unwrap_or(UNAVAILABLE_INFORMATION),
        total_public_memory: i.total_public_memory.unwrap_or(UNAVAILABLE_INFORMATION),
        free_private_memory: i.free_private_memory.unwrap_or(UNAVAILABLE_INFORMATION),
        total_private_memory: i.total_private_memory.unwrap_or(UNAVAILABLE_INFORMATION),
        card_id: t.card_id.unwrap_or_default(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PC/SC reader as the API shows it.
pub fn reader_to_pb(r: crate::reader::ReaderInfo) -> pb::Reader {
    pb::Reader { name: r.name, card_present: r.card_present, atr: hex(&r.atr), card_serial: r.card_serial }
}

fn reader_event_to_pb(e: crate::reader::ReaderEvent) -> pb::ReaderEvent {
    use crate::reader::ReaderEventKind as K;
    let kind = match e.kind {
        K::ReaderAdded => pb::ReaderEventKind::ReaderAdded,
        K::ReaderRemoved => pb::ReaderEventKind::ReaderRemoved,
        K::CardInserted => pb::ReaderEventKind::CardInserted,
        K::CardRemoved => pb::ReaderEventKind::CardRemoved,
    };
    pb::ReaderEvent {
        kind: kind as i32,
        reader: e.reader,
        atr: hex(&e.atr),
        at_ms: e.at_ms,
        card_serial: e.card_serial,
    }
}

/// WatchReaders' response stream.
pub type ReaderEventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ReaderEvent, tonic::Status>> + Send>>;

/// The service's event channel as a gRPC stream; errors become Status in the usual place.
pub fn reader_event_stream(
    events: tokio::sync::mpsc::Receiver<Result<crate::reader::ReaderEvent, crate::service::ServiceError>>,
) -> ReaderEventStream {
    use tokio_stream::StreamExt;
    Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(events)
            .map(|r| r.map(reader_event_to_pb).map_err(super::status::to_status)),
    )
}
