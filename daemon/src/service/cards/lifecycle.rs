//! The card lifecycle in one place: which action is allowed from which state, where it
//! leads, and what it does to the card's certificates (RFC 5280 reasons). Pure logic; the card
//! service applies it inside the store transaction.

use super::RevokeReason;
use crate::pki::RevocationReason;
use crate::store::cards::CardState;

/// Something done to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardAction {
    /// Start issuing keys (from ASSIGNED, or PENDING_UPDATE for a re-issue, or resuming an
    /// interrupted PENDING_ISSUE).
    BeginIssue,
    /// Keys are on the card: issuance finished.
    CompleteIssue,
    Disable,
    Enable,
    Revoke,
    PreUpdate,
}

impl CardAction {
    /// The RPC name, for error messages.
    pub fn rpc(self) -> &'static str {
        match self {
            CardAction::BeginIssue | CardAction::CompleteIssue => "IssueCard",
            CardAction::Disable => "DisableCard",
            CardAction::Enable => "EnableCard",
            CardAction::Revoke => "RevokeCard",
            CardAction::PreUpdate => "PreUpdateCard",
        }
    }
}

/// An action the card's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: CardState,
    pub action: CardAction,
    /// The states the action is allowed from.
    pub allowed_from: Vec<CardState>,
}

impl std::fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let allowed: Vec<&str> = self.allowed_from.iter().map(|s| s.as_str()).collect();
        write!(
            f,
            "card is {}; {} needs the card to be {}",
            self.from,
            self.action.rpc(),
            allowed.join(" or ")
        )
    }
}

/// The state after `action`, or why it is refused.
pub fn transition(from: CardState, action: CardAction) -> Result<CardState, IllegalTransition> {
    next(from, action).ok_or_else(|| IllegalTransition {
        from,
        action,
        allowed_from: CardState::ALL.into_iter().filter(|s| next(*s, action).is_some()).collect(),
    })
}

/// The one transition table: the state after `action`, or `None` when `from` forbids it.
fn next(from: CardState, action: CardAction) -> Option<CardState> {
    use CardAction as A;
    use CardState as S;
    match (action, from) {
        (A::BeginIssue, S::Assigned | S::PendingUpdate | S::PendingIssue) => Some(S::PendingIssue),
        (A::CompleteIssue, S::PendingIssue) => Some(S::Active),
        (A::Disable, S::Active) => Some(S::Disabled),
        (A::Enable, S::Disabled) => Some(S::Active),
        // PreUpdate is refused for a card that is disabled, assigned, revoked, or pending
        // issue or update: only an active card can be marked for update.
        (A::PreUpdate, S::Active) => Some(S::PendingUpdate),
        (A::Revoke, s) if s != S::Revoked => Some(S::Revoked),
        _ => None,
    }
}

/// The RFC 5280 reason a card's certificates are revoked with when the card is revoked for
/// `reason` (README, "Card certificates", has this table).
pub fn certificate_reason(reason: RevokeReason) -> RevocationReason {
    match reason {
        RevokeReason::None => RevocationReason::Unspecified,
        // The card no longer works or is out of service: the key is not suspected.
        RevokeReason::Broken | RevokeReason::Expired => RevocationReason::CessationOfOperation,
        // A lost card is out of our hands: treat its keys as compromised.
        RevokeReason::Lost | RevokeReason::Compromised => RevocationReason::KeyCompromise,
        RevokeReason::Upgrade => RevocationReason::Superseded,
        RevokeReason::Withdraw => RevocationReason::PrivilegeWithdrawn,
        RevokeReason::UserRemoved => RevocationReason::AffiliationChanged,
    }
}

/// What a card action does to the card's certificates: `None` leaves them alone.
/// Disable suspends them (certificateHold), Enable lifts the hold (removeFromCRL), Revoke
/// revokes them with the mapped reason.
pub fn certificate_transition(action: CardAction, reason: Option<RevokeReason>) -> Option<RevocationReason> {
    match action {
        CardAction::Disable => Some(RevocationReason::CertificateHold),
        CardAction::Enable => Some(RevocationReason::RemoveFromCrl),
        CardAction::Revoke => Some(certificate_reason(reason.unwrap_or(RevokeReason::None))),
        CardAction::BeginIssue | CardAction::CompleteIssue | CardAction::PreUpdate => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CardAction as A;
    use CardState as S;

    const ACTIONS: [CardAction; 6] =
        [A::BeginIssue, A::CompleteIssue, A::Disable, A::Enable, A::Revoke, A::PreUpdate];

    #[test]
    fn the_full_table() {
        let expected = |from: S, action: A| -> Option<S> {
            match (from, action) {
                (S::Assigned, A::BeginIssue) => Some(S::PendingIssue),
                (S::PendingUpdate, A::BeginIssue) => Some(S::PendingIssue),
                (S::PendingIssue, A::BeginIssue) => Some(S::PendingIssue),
                (S::PendingIssue, A::CompleteIssue) => Some(S::Active),
                (S::Active, A::Disable) => Some(S::Disabled),
                (S::Disabled, A::Enable) => Some(S::Active),
                (S::Active, A::PreUpdate) => Some(S::PendingUpdate),
                (S::Revoked, A::Revoke) => None,
                (_, A::Revoke) => Some(S::Revoked),
                _ => None,
            }
        };
        for from in S::ALL {
            for action in ACTIONS {
                assert_eq!(transition(from, action).ok(), expected(from, action), "{from} --{action:?}-->");
            }
        }
    }

    #[test]
    fn preupdate_is_refused_outside_active_and_says_the_state() {
        for from in [S::Disabled, S::Assigned, S::Revoked, S::PendingIssue, S::PendingUpdate] {
            let err = transition(from, A::PreUpdate).expect_err("must be refused");
            let msg = err.to_string();
            assert!(msg.contains(from.as_str()), "{msg}");
            assert!(msg.contains("PreUpdateCard needs the card to be ACTIVE"), "{msg}");
        }
    }

    #[test]
    fn card_reasons_map_to_rfc5280_reasons() {
        use RevocationReason as R;
        use RevokeReason as C;
        let table = [
            (C::None, R::Unspecified),
            (C::Broken, R::CessationOfOperation),
            (C::Lost, R::KeyCompromise),
            (C::Upgrade, R::Superseded),
            (C::Expired, R::CessationOfOperation),
            (C::Withdraw, R::PrivilegeWithdrawn),
            (C::UserRemoved, R::AffiliationChanged),
            (C::Compromised, R::KeyCompromise),
        ];
        for (card, rfc) in table {
            assert_eq!(certificate_reason(card), rfc, "{card:?}");
            assert_eq!(certificate_transition(A::Revoke, Some(card)), Some(rfc));
        }
        assert_eq!(certificate_transition(A::Disable, None), Some(R::CertificateHold));
        assert_eq!(certificate_transition(A::Enable, None), Some(R::RemoveFromCrl));
        assert_eq!(certificate_transition(A::PreUpdate, None), None);
    }

    #[test]
    fn revoked_is_final() {
        for action in ACTIONS {
            assert!(transition(S::Revoked, action).is_err(), "{action:?}");
        }
    }
}
