//! Ecosystems, in the domain layer between the gRPC handlers (`grpc/ecosystems`) and the store
//! (`store/ecosystems`): the password policy of an ecosystem's users and its statistics
//! (balances of its organizations, devices ordered and certificates issued per day). Platform
//! administrators reach every ecosystem; an ECO_ADMIN only those it holds a privilege in.

use super::privileges::PrivilegeIndex;
use super::{Principal, Role, ServiceError};
use crate::store::{Store, StoreError, audit, ecosystems};
use std::sync::Arc;

/// Largest minimum password length an ecosystem may set (the bound).
pub const MAX_PASSWORD_MIN_LENGTH: u32 = 50;
/// Longest statistics window, in days.
pub const MAX_STATISTICS_DAYS: i64 = 366;

/// Statistics of one ecosystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcosystemStatistics {
    pub ecosystem_id: String,
    pub organizations: u64,
    pub capacity: i64,
    /// What is left: capacity less used and less what running batches have reserved.
    pub balance: i64,
    pub used: i64,
    /// (day, ordered, issued).
    pub days: Vec<(String, u64, u64)>,
}

/// Ecosystem reads and policy changes.
#[derive(Debug)]
pub struct EcosystemService {
    store: Store,
    privileges: Arc<PrivilegeIndex>,
}

fn ecosystem_id(id: &str) -> &str {
    if id.is_empty() { ecosystems::DEFAULT_ECOSYSTEM } else { id }
}

/// A YYYY-MM-DD day, checked for shape here; whether it is on the calendar (2026-02-30) is
/// judged by SQLite's `julianday()` in `statistics`.
fn check_day(field: &str, day: &str) -> Result<(), ServiceError> {
    let shaped = day.len() == 10
        && day
            .bytes()
            .enumerate()
            .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !shaped {
        return Err(ServiceError::invalid(field, "must be a day as YYYY-MM-DD"));
    }
    Ok(())
}

impl EcosystemService {
    pub fn new(store: Store, privileges: Arc<PrivilegeIndex>) -> Self {
        EcosystemService { store, privileges }
    }

    /// Platform administrators reach every ecosystem, an ECO_ADMIN its own; anyone else gets
    /// NOT_FOUND (an ecosystem outside one's reach does not exist for one).
    fn check_reach(&self, actor: &Principal, id: &str) -> Result<(), ServiceError> {
        if actor.has_role(Role::Admin) {
            return Ok(());
        }
        let own = self
            .privileges
            .of_user(&actor.user_id)
            .iter()
            .any(|p| p.role == Role::EcoAdmin && p.ecosystem_id == id);
        if own { Ok(()) } else { Err(ServiceError::NotFound(format!("no ecosystem {id:?}"))) }
    }

    pub async fn get(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<ecosystems::EcosystemRecord, ServiceError> {
        let id = ecosystem_id(id).to_owned();
        self.check_reach(actor, &id)?;
        self.store
            .read(move |c| {
                ecosystems::get(c, &id)?.ok_or_else(|| ServiceError::NotFound(format!("no ecosystem {id:?}")))
            })
            .await
    }

    /// Sets the minimum password length of the ecosystem's users (1..=50). It applies to
    /// passwords set from now on; existing passwords are not judged again.
    pub async fn set_password_min_length(
        &self,
        actor: &Principal,
        id: &str,
        length: u32,
    ) -> Result<ecosystems::EcosystemRecord, ServiceError> {
        if !(1..=MAX_PASSWORD_MIN_LENGTH).contains(&length) {
            return Err(ServiceError::invalid(
                "password_min_length",
                format!("must be between 1 and {MAX_PASSWORD_MIN_LENGTH}"),
            ));
        }
        let id = ecosystem_id(id).to_owned();
        self.check_reach(actor, &id)?;
        let actor_name = actor.username.clone();
        self.store
            .write(move |tx| {
                if !ecosystems::set_password_min_length(tx, &id, length)? {
                    return Err(ServiceError::NotFound(format!("no ecosystem {id:?}")));
                }
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &actor_name,
                        action: "ecosystem.update",
                        target_type: "ecosystem",
                        target_id: &id,
                        detail: serde_json::json!({ "password_min_length": length }).to_string(),
                    },
                )?;
                ecosystems::get(tx, &id)?.ok_or_else(|| ServiceError::Internal("ecosystem vanished".into()))
            })
            .await
    }

    /// Balances and daily counts over `[from_day, to_day]` (defaults: the 30 days up to today).
    pub async fn statistics(
        &self,
        actor: &Principal,
        id: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<EcosystemStatistics, ServiceError> {
        for (field, day) in [("from_day", from_day), ("to_day", to_day)] {
            if !day.is_empty() {
                check_day(field, day)?;
            }
        }
        let id = ecosystem_id(id).to_owned();
        self.check_reach(actor, &id)?;
        let (from_day, to_day) = (from_day.to_owned(), to_day.to_owned());
        self.store
            .read(move |c| {
                if ecosystems::get(c, &id)?.is_none() {
                    return Err(ServiceError::NotFound(format!("no ecosystem {id:?}")));
                }
                let (default_from, today) = ecosystems::day_range_ending_today(c, 30)?;
                let to = if to_day.is_empty() { today } else { to_day };
                let from = if from_day.is_empty() {
                    c.query_row("SELECT date(?1, '-30 days')", [&to], |r| r.get::<_, Option<String>>(0))
                        .map_err(StoreError::from)?
                        .unwrap_or(default_from)
                } else {
                    from_day
                };
                // julianday() is NULL for a day that is not on the calendar (2026-02-30).
                let span: Option<f64> = c
                    .query_row("SELECT julianday(?2) - julianday(?1)", [&from, &to], |r| r.get(0))
                    .map_err(StoreError::from)?;
                match span {
                    None => return Err(ServiceError::invalid("from_day", "is not a calendar day")),
                    Some(d) if d < 0.0 => {
                        return Err(ServiceError::invalid("from_day", "must not be after to_day"));
                    }
                    Some(d) if d > MAX_STATISTICS_DAYS as f64 => {
                        return Err(ServiceError::invalid(
                            "from_day",
                            format!("the window is at most {MAX_STATISTICS_DAYS} days"),
                        ));
                    }
                    Some(_) => {}
                }
                let (organizations, capacity, used, reserved) = ecosystems::balance_totals(c, &id)?;
                let days = ecosystems::daily_counts(c, &id, &from, &to)?;
                Ok(EcosystemStatistics {
                    ecosystem_id: id,
                    organizations,
                    capacity,
                    balance: capacity - used - reserved,
                    used,
                    days,
                })
            })
            .await
    }
}
