//! Whether a token may be used right now: consulted by the pool before every call and told about
//! every "token gone" failure (see `error::is_token_gone`). A small pure state machine — no
//! PKCS#11, no clock of its own — so the recovery decisions are unit-tested without a device
//! that can be unplugged (SoftHSM cannot simulate removal).
//!
//! ```text
//!   Available ──failure(gen == current)──▶ Unavailable{retry_at} ──admit/probe after retry_at──▶ Recovering
//!       ▲                                        ▲                                                 │
//!       └──────────── recovery_succeeded ────────┼─────────────── recovery_failed (backoff ×2) ◀────┘
//! ```
//!
//! The generation counts outages. Sessions and cached key handles are tagged with the
//! generation they were made in; a failure reported from an older generation is stale (it
//! happened before the last recovery) and must not take the recovered token down again.

use std::time::{Duration, Instant};

/// How long to wait before the first recovery attempt, and the cap of the doubling backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Delay between marking a token unavailable and the first attempt to recover it.
    pub initial_backoff: Duration,
    /// Upper bound of the delay between two failed recovery attempts.
    pub max_backoff: Duration,
}

impl Default for RecoveryPolicy {
    /// 250 ms, doubling to at most 10 s: a re-inserted card is back within a second, and a
    /// rebooting network HSM is probed a few times a minute, never in a tight loop.
    fn default() -> Self {
        RecoveryPolicy { initial_backoff: Duration::from_millis(250), max_backoff: Duration::from_secs(10) }
    }
}

impl RecoveryPolicy {
    /// The delay after `failed_attempts` unsuccessful recoveries: initial × 2^n, capped.
    pub(super) fn delay(&self, failed_attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(failed_attempts.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff.max(self.initial_backoff))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HealthState {
    Available,
    /// Calls fail fast until `retry_at`; then one caller (or the background probe) recovers.
    Unavailable {
        reason: String,
        failed_attempts: u32,
        retry_at: Instant,
    },
    /// One recovery is running; everyone else fails fast meanwhile.
    Recovering {
        reason: String,
        failed_attempts: u32,
    },
}

/// What a caller may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admission {
    /// Use the token; sessions must belong to this generation.
    Proceed { generation: u64 },
    /// The backoff has elapsed and this caller won the right to recover the token (state is now
    /// `Recovering`); it must report `recovery_succeeded` or `recovery_failed`.
    Recover,
    /// Fail with Unavailable without touching the pool.
    FailFast { reason: String },
}

#[derive(Debug, Clone)]
pub(super) struct TokenHealth {
    state: HealthState,
    generation: u64,
    policy: RecoveryPolicy,
}

impl TokenHealth {
    pub(super) fn new(policy: RecoveryPolicy) -> Self {
        TokenHealth { state: HealthState::Available, generation: 0, policy }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn is_available(&self) -> bool {
        self.state == HealthState::Available
    }

    #[cfg(test)]
    pub(super) fn state(&self) -> &HealthState {
        &self.state
    }

    /// Why the token is not available (None when it is).
    pub(super) fn reason(&self) -> Option<&str> {
        match &self.state {
            HealthState::Available => None,
            HealthState::Unavailable { reason, .. } | HealthState::Recovering { reason, .. } => Some(reason),
        }
    }

    /// Decides for a caller about to use the token.
    pub(super) fn admit(&mut self, now: Instant) -> Admission {
        match &self.state {
            HealthState::Available => Admission::Proceed { generation: self.generation },
            HealthState::Unavailable { reason, failed_attempts, retry_at } => {
                if now >= *retry_at {
                    self.state =
                        HealthState::Recovering { reason: reason.clone(), failed_attempts: *failed_attempts };
                    Admission::Recover
                } else {
                    Admission::FailFast { reason: reason.clone() }
                }
            }
            HealthState::Recovering { reason, .. } => {
                Admission::FailFast { reason: format!("{reason} (recovering)") }
            }
        }
    }

    /// A call that used generation `generation` hit a "token gone" code. Returns true when this
    /// report took the token down (the caller then drops pooled sessions and cached handles);
    /// false when it was already down or the report is stale.
    pub(super) fn report_failure(&mut self, generation: u64, reason: String, now: Instant) -> bool {
        if generation != self.generation || !self.is_available() {
            return false;
        }
        self.generation += 1;
        self.state =
            HealthState::Unavailable { reason, failed_attempts: 0, retry_at: now + self.policy.delay(0) };
        true
    }

    /// The recovery granted by `admit` (or `begin_probe`) worked: sessions opened by it belong to
    /// the current generation. Returns false (and changes nothing) when no recovery was running.
    pub(super) fn recovery_succeeded(&mut self) -> bool {
        if !matches!(self.state, HealthState::Recovering { .. }) {
            return false;
        }
        self.state = HealthState::Available;
        true
    }

    /// The recovery failed: back to Unavailable with a doubled backoff.
    pub(super) fn recovery_failed(&mut self, reason: String, now: Instant) {
        if let HealthState::Recovering { failed_attempts, .. } = self.state {
            let failed_attempts = failed_attempts.saturating_add(1);
            self.state = HealthState::Unavailable {
                reason,
                failed_attempts,
                retry_at: now + self.policy.delay(failed_attempts),
            };
        }
    }

    /// For the background probe: how long to sleep before the next look; None once available.
    pub(super) fn next_check(&self, now: Instant) -> Option<Duration> {
        match &self.state {
            HealthState::Available => None,
            HealthState::Unavailable { retry_at, .. } => Some(retry_at.saturating_duration_since(now)),
            // Someone else is recovering: look again after the short initial delay.
            HealthState::Recovering { .. } => Some(self.policy.initial_backoff),
        }
    }

    /// For the background probe: claim the recovery if it is due (same rule as `admit`).
    pub(super) fn begin_probe(&mut self, now: Instant) -> bool {
        match &self.state {
            HealthState::Unavailable { retry_at, .. } if now >= *retry_at => {
                matches!(self.admit(now), Admission::Recover)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RecoveryPolicy {
        RecoveryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(750),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_available_and_admits() {
        let mut h = TokenHealth::new(policy());
        let t0 = Instant::now();
        assert!(h.is_available());
        assert_eq!(h.reason(), None);
        assert_eq!(h.admit(t0), Admission::Proceed { generation: 0 });
        assert_eq!(h.next_check(t0), None);
        assert!(!h.begin_probe(t0 + ms(10_000)));
    }

    #[test]
    fn failure_marks_unavailable_and_bumps_generation() {
        let mut h = TokenHealth::new(policy());
        let t0 = Instant::now();
        assert!(h.report_failure(0, "C_Sign: CKR_DEVICE_REMOVED".into(), t0));
        assert!(!h.is_available());
        assert_eq!(h.generation(), 1);
        assert_eq!(h.reason(), Some("C_Sign: CKR_DEVICE_REMOVED"));
        // A second report of the same outage (another in-flight call) changes nothing.
        assert!(!h.report_failure(0, "C_Sign: CKR_SESSION_HANDLE_INVALID".into(), t0));
        assert!(!h.report_failure(1, "again".into(), t0));
        assert_eq!(h.generation(), 1);
        assert_eq!(h.reason(), Some("C_Sign: CKR_DEVICE_REMOVED"));
    }

    #[test]
    fn fails_fast_until_backoff_then_grants_one_recovery() {
        let mut h = TokenHealth::new(policy());
        let t0 = Instant::now();
        h.report_failure(0, "gone".into(), t0);
        assert!(matches!(h.admit(t0), Admission::FailFast { .. }));
        assert!(matches!(h.admit(t0 + ms(99)), Admission::FailFast { .. }));
        assert_eq!(h.next_check(t0 + ms(40)), Some(ms(60)));
        assert_eq!(h.admit(t0 + ms(100)), Admission::Recover);
        // While one caller recovers, the others fail fast (no stampede on the token).
        match h.admit(t0 + ms(101)) {
            Admission::FailFast { reason } => assert!(reason.contains("recovering"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(!h.begin_probe(t0 + ms(500)));
        assert_eq!(h.next_check(t0 + ms(101)), Some(ms(100)));
    }

    #[test]
    fn successful_recovery_keeps_the_new_generation() {
        let mut h = TokenHealth::new(policy());
        let t0 = Instant::now();
        h.report_failure(0, "gone".into(), t0);
        assert_eq!(h.admit(t0 + ms(100)), Admission::Recover);
        assert!(h.recovery_succeeded());
        assert!(h.is_available());
        assert_eq!(h.admit(t0 + ms(101)), Admission::Proceed { generation: 1 });
        // A late failure from a session of the old generation must not take it down again.
        assert!(!h.report_failure(0, "stale".into(), t0 + ms(102)));
        assert!(h.is_available());
        // A new failure in the new generation does.
        assert!(h.report_failure(1, "gone again".into(), t0 + ms(103)));
        assert_eq!(h.generation(), 2);
    }

    #[test]
    fn failed_recoveries_back_off_exponentially_up_to_the_cap() {
        let mut h = TokenHealth::new(policy());
        let mut now = Instant::now();
        h.report_failure(0, "gone".into(), now);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = h.next_check(now).expect("unavailable");
            waits.push(wait.as_millis());
            now += wait;
            assert!(h.begin_probe(now), "recovery is due after the backoff");
            h.recovery_failed("still gone".into(), now);
            assert!(!h.is_available());
        }
        assert_eq!(waits, vec![100, 200, 400, 750, 750, 750]);
        assert_eq!(h.reason(), Some("still gone"));
        // The generation only counts outages, not failed attempts.
        assert_eq!(h.generation(), 1);
    }

    #[test]
    fn recovery_results_without_a_recovery_are_ignored() {
        let mut h = TokenHealth::new(policy());
        let t0 = Instant::now();
        assert!(!h.recovery_succeeded());
        h.recovery_failed("x".into(), t0);
        assert!(h.is_available());
        h.report_failure(0, "gone".into(), t0);
        // Not Recovering yet: a stray success must not resurrect it.
        assert!(!h.recovery_succeeded());
        assert!(!h.is_available());
    }

    #[test]
    fn backoff_delay_is_saturating() {
        let p = policy();
        assert_eq!(p.delay(0), ms(100));
        assert_eq!(p.delay(1), ms(200));
        assert_eq!(p.delay(40), ms(750));
        assert_eq!(p.delay(u32::MAX), ms(750));
        let odd = RecoveryPolicy { initial_backoff: ms(500), max_backoff: ms(10) };
        assert_eq!(odd.delay(3), ms(500), "a cap below the initial delay does not shorten it");
        assert_eq!(RecoveryPolicy::default().delay(0), ms(250));
    }

    /// A narrow fake of a removable token driven through the same decisions the pool makes:
    /// calls fail with a "gone" class while it is out, recovery (re-find by serial + login)
    /// works only once it is back, and nothing waits on the pool meanwhile.
    #[test]
    fn fake_token_removal_and_return() {
        use crate::token::error::is_token_gone;
        use cryptoki::error::RvError;

        struct FakeToken {
            present: bool,
            slot: u64,
        }
        impl FakeToken {
            fn sign(&self, session_slot: u64) -> Result<(), RvError> {
                if !self.present {
                    Err(RvError::DeviceRemoved)
                } else if session_slot != self.slot {
                    Err(RvError::SessionHandleInvalid)
                } else {
                    Ok(())
                }
            }
            fn find_by_serial(&self) -> Option<u64> {
                self.present.then_some(self.slot)
            }
        }

        let mut token = FakeToken { present: true, slot: 7 };
        let mut h = TokenHealth::new(policy());
        let mut session_slot = 7;
        let mut now = Instant::now();
        let mut outcomes = Vec::new();

        // One "call": what the pool does for each request.
        let call = |h: &mut TokenHealth, token: &FakeToken, session_slot: &mut u64, now: Instant| match h
            .admit(now)
        {
            Admission::Proceed { generation } => match token.sign(*session_slot) {
                Ok(()) => "ok",
                Err(rv) if is_token_gone(rv) => {
                    h.report_failure(generation, format!("{rv:?}"), now);
                    "unavailable"
                }
                Err(_) => "error",
            },
            Admission::FailFast { .. } => "fail-fast",
            Admission::Recover => match token.find_by_serial() {
                Some(slot) => {
                    *session_slot = slot;
                    assert!(h.recovery_succeeded());
                    match token.sign(*session_slot) {
                        Ok(()) => "recovered",
                        Err(_) => "error",
                    }
                }
                None => {
                    h.recovery_failed("token not present".into(), now);
                    "fail-fast"
                }
            },
        };

        outcomes.push(call(&mut h, &token, &mut session_slot, now));
        token.present = false;
        outcomes.push(call(&mut h, &token, &mut session_slot, now));
        outcomes.push(call(&mut h, &token, &mut session_slot, now + ms(1)));
        now += ms(100);
        outcomes.push(call(&mut h, &token, &mut session_slot, now)); // probe: still absent
        // Re-inserted in another slot: the old session is useless, recovery re-finds it.
        token.present = true;
        token.slot = 9;
        outcomes.push(call(&mut h, &token, &mut session_slot, now + ms(1))); // still backing off
        now += ms(200);
        outcomes.push(call(&mut h, &token, &mut session_slot, now));
        outcomes.push(call(&mut h, &token, &mut session_slot, now));
        assert_eq!(outcomes, ["ok", "unavailable", "fail-fast", "fail-fast", "fail-fast", "recovered", "ok"]);
        assert_eq!(session_slot, 9);
        assert_eq!(h.generation(), 1);
        assert_eq!(h.state(), &HealthState::Available);
    }
}
