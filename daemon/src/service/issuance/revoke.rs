//! Revocation and CRLs, inside the issuance service: RevokeCertificates / RevokeCertificate
//! move certificates through VALID → ON_HOLD → VALID (removeFromCRL) or → REVOKED, and each
//! revocation publishes a new CRL (number + 1, signed in the HSM) in the same store
//! transaction as the status change and its audit records. GetCrl returns the latest one.

use super::{IssuanceService, pki_error, pki_internal};
use crate::pki::{self, CaSigner, CertSerial, CrlEntry, CrlTemplate, RevocationReason};
use crate::service::{Principal, ServiceError, validate};
use crate::store::authorities::{self as authority_store, AuthorityRecord, CrlRecord};
use crate::store::certificates::{self as cert_store, CertStatus, CertificateRecord};
use crate::store::{self, audit};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a CRL is current: relying parties fetch a new one by then. Every revocation
/// publishes one sooner.
const CRL_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// The most certificates one RevokeCertificates call may name.
const MAX_IDS: usize = 1000;

/// The state a certificate moves to when revoked with `reason`, or why it cannot.
pub(super) fn next_state(
    status: CertStatus,
    reason: RevocationReason,
) -> Result<(CertStatus, Option<i64>), String> {
    match (status, reason) {
        (CertStatus::Revoked, _) => Err("is already revoked".into()),
        (CertStatus::Valid, RevocationReason::RemoveFromCrl) => {
            Err("is not on hold (removeFromCRL only releases a certificateHold)".into())
        }
        (CertStatus::OnHold, RevocationReason::RemoveFromCrl) => Ok((CertStatus::Valid, None)),
        (CertStatus::OnHold, RevocationReason::CertificateHold) => Err("is already on hold".into()),
        (_, RevocationReason::CertificateHold) => Ok((CertStatus::OnHold, Some(6))),
        (_, r) => Ok((CertStatus::Revoked, Some(i64::from(r.code())))),
    }
}

fn reason_from_code(code: u32) -> Result<RevocationReason, ServiceError> {
    RevocationReason::from_code(i64::from(code)).map_err(|_| {
        ServiceError::invalid(
            "reason_code",
            format!("{code} is not an RFC 5280 reason code (0-10; 7 is unused)"),
        )
    })
}

fn unix_to_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Builds and signs CRL number `number` of authority `a` (certificate `cert`) listing
/// `revoked`, which must be the certificates that are not VALID.
pub(super) async fn sign_crl<S: CaSigner + ?Sized>(
    signer: &S,
    a: &AuthorityRecord,
    cert: &pki::ParsedCertificate,
    number: i64,
    revoked: Vec<CertificateRecord>,
) -> Result<CrlRecord, ServiceError> {
    let mut entries = Vec::with_capacity(revoked.len());
    for c in revoked {
        let serial = CertSerial::from_hex(&c.serial).map_err(pki_internal)?;
        let reason = match c.status {
            CertStatus::OnHold => RevocationReason::CertificateHold,
            _ => RevocationReason::from_code(c.revocation_reason.unwrap_or(0)).map_err(pki_internal)?,
        };
        entries.push(CrlEntry { serial, revocation_time: unix_to_time(c.revoked_at.unwrap_or(0)), reason });
    }
    let this_update = SystemTime::now();
    let template = CrlTemplate {
        issuer: cert.subject.clone(),
        authority_key_id: cert.subject_key_id.clone(),
        crl_number: u64::try_from(number)
            .map_err(|_| ServiceError::Internal("negative CRL number".into()))?,
        this_update,
        next_update: this_update + CRL_VALIDITY,
        entries,
    };
    let der = pki::build_crl(signer, &template).await.map_err(pki_internal)?;
    Ok(CrlRecord {
        authority_id: a.id.clone(),
        crl_number: number,
        this_update: super::unix(this_update),
        next_update: super::unix(template.next_update),
        crl_der: der,
    })
}

impl IssuanceService {
    /// Revokes (holds, releases) the certificates `ids`, all or none.
    pub async fn revoke_ids(
        &self,
        actor: &Principal,
        reason_code: u32,
        ids: &[String],
    ) -> Result<Vec<CertificateRecord>, ServiceError> {
        let reason = reason_from_code(reason_code)?;
        if ids.is_empty() {
            return Err(ServiceError::invalid("ids", "name at least one certificate"));
        }
        if ids.len() > MAX_IDS {
            return Err(ServiceError::invalid("ids", format!("name at most {MAX_IDS} certificates")));
        }
        let mut clean = Vec::with_capacity(ids.len());
        let mut seen = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            let id = validate::id(&format!("ids[{i}]"), id)?;
            if !seen.insert(id.clone()) {
                return Err(ServiceError::invalid(format!("ids[{i}]"), "is listed twice"));
            }
            clean.push(id);
        }
        let wanted = clean.clone();
        let found = self
            .store
            .read(move |c| {
                let mut out = Vec::with_capacity(wanted.len());
                for (i, id) in wanted.iter().enumerate() {
                    match cert_store::get(c, id)? {
                        Some(cert) => out.push(cert),
                        None => {
                            return Err(ServiceError::NotFound(format!(
                                "no certificate with id {id} (ids[{i}])"
                            )));
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        self.apply(actor, found, reason).await
    }

    /// Revokes one certificate named by its profile and serial number.
    pub async fn revoke_serial(
        &self,
        actor: &Principal,
        profile_id: &str,
        serial: &str,
        reason_code: u32,
    ) -> Result<CertificateRecord, ServiceError> {
        let reason = reason_from_code(reason_code)?;
        let profile = profile_id.trim().to_owned();
        if profile.is_empty() {
            return Err(ServiceError::invalid("profile_id", "is required"));
        }
        if serial.trim().is_empty() {
            return Err(ServiceError::invalid("serial_number", "is required"));
        }
        let serial = CertSerial::from_hex(serial).map_err(|e| pki_error("serial_number", e))?.to_hex();
        let (p, s) = (profile.clone(), serial.clone());
        let mut found = self
            .store
            .read(move |c| cert_store::by_profile_serial(c, &p, &s).map_err(ServiceError::from))
            .await?;
        let cert = match found.len() {
            // Certificates of a profile since removed from the configuration stay revocable;
            // an id that never was a profile is the caller's mistake.
            0 if !self.profiles.iter().any(|p| p.id == profile) => {
                return Err(ServiceError::invalid("profile_id", format!("no profile {profile:?}")));
            }
            0 => {
                return Err(ServiceError::NotFound(format!(
                    "no certificate of profile {profile} has serial {serial}"
                )));
            }
            1 => found.remove(0),
            _ => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "serial {serial} of profile {profile} was issued by several authorities; revoke by id"
                )));
            }
        };
        let mut done = self.apply(actor, vec![cert], reason).await?;
        done.pop().ok_or_else(|| ServiceError::Internal("revocation returned nothing".into()))
    }

    /// Checks every transition, signs one new CRL per affected authority, then commits the
    /// new states, the CRLs and the audit records in one transaction.
    async fn apply(
        &self,
        actor: &Principal,
        certs: Vec<CertificateRecord>,
        reason: RevocationReason,
    ) -> Result<Vec<CertificateRecord>, ServiceError> {
        self.apply_with(actor, certs, reason, |_| Ok(())).await.map(|(out, ())| out)
    }

    /// For the card lifecycle: moves those of the certificates `ids` whose status allows it by
    /// `reason` (a card disabled puts its VALID certificates on hold and leaves a revoked one
    /// alone), and runs `extra` — the card's own state change — in the same transaction as
    /// the certificate states, the CRLs and the audit records. Returns the certificates moved.
    pub async fn transition_with<T, F>(
        &self,
        actor: &Principal,
        ids: Vec<String>,
        reason: RevocationReason,
        extra: F,
    ) -> Result<(Vec<CertificateRecord>, T), ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ServiceError> + Send + 'static,
    {
        let certs = self
            .store
            .read(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(cert) = cert_store::get(c, id)? {
                        out.push(cert);
                    }
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        let movable = certs.into_iter().filter(|c| next_state(c.status, reason).is_ok()).collect();
        self.apply_with(actor, movable, reason, extra).await
    }

    /// [`apply`](Self::apply) with `extra` run first inside the transaction.
    async fn apply_with<T, F>(
        &self,
        actor: &Principal,
        certs: Vec<CertificateRecord>,
        reason: RevocationReason,
        extra: F,
    ) -> Result<(Vec<CertificateRecord>, T), ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ServiceError> + Send + 'static,
    {
        let now = store::now();
        let mut changed = Vec::with_capacity(certs.len());
        for c in certs {
            let (status, code) = next_state(c.status, reason)
                .map_err(|why| ServiceError::FailedPrecondition(format!("certificate {} {why}", c.id)))?;
            let mut n = c.clone();
            n.status = status;
            n.revocation_reason = code;
            // Releasing a hold forgets it; a hold made permanent dates from the revocation.
            n.revoked_at = code.map(|_| now);
            n.updated_at = now;
            changed.push((c, n));
        }
        // Per-authority locks, taken in id order so two multi-authority calls cannot deadlock.
        let mut by_authority: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (old, _)) in changed.iter().enumerate() {
            by_authority.entry(old.authority_id.clone()).or_default().push(i);
        }
        let mut guards = Vec::with_capacity(by_authority.len());
        for id in by_authority.keys() {
            guards.push(self.crl_lock(id)?.lock_owned().await);
        }
        // Under the locks: sign the CRLs that will be true once the changes commit.
        let mut crls = Vec::with_capacity(by_authority.len());
        for (authority_id, idxs) in &by_authority {
            let key = authority_id.clone();
            let (authority, current, last) = self
                .store
                .read(move |c| {
                    let a = authority_store::get(c, &key)?
                        .ok_or_else(|| ServiceError::Internal(format!("authority {key} vanished")))?;
                    Ok::<_, ServiceError>((
                        a,
                        cert_store::not_valid_of(c, &key)?,
                        authority_store::last_crl_number(c, &key)?,
                    ))
                })
                .await?;
            let cert = self.certified(&authority, "authority")?;
            let mine: Vec<&CertificateRecord> = idxs.iter().map(|i| &changed[*i].1).collect();
            let mut listed: Vec<CertificateRecord> =
                current.into_iter().filter(|c| !mine.iter().any(|m| m.id == c.id)).collect();
            listed.extend(mine.iter().filter(|m| m.status != CertStatus::Valid).map(|m| (*m).clone()));
            listed.sort_by(|a, b| a.serial.cmp(&b.serial));
            let signer = self.signer(&authority)?;
            crls.push((last, sign_crl(&signer, &authority, &cert, last + 1, listed).await?));
        }
        let who = actor.username.clone();
        let out: Vec<CertificateRecord> = changed.iter().map(|(_, n)| n.clone()).collect();
        let result = self
            .store
            .write(move |tx| {
                let extra_out = extra(tx)?;
                for (old, new) in &changed {
                    // The locks keep revocations of one authority apart; anything else that
                    // changed a certificate meanwhile makes this call refuse, not overwrite.
                    let now_stored = cert_store::get(tx, &old.id)?;
                    if now_stored.as_ref().map(|c| c.status) != Some(old.status) {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "certificate {} changed while it was being revoked; try again",
                            old.id
                        )));
                    }
                    cert_store::update_status(tx, new)?;
                    let action = match new.status {
                        CertStatus::Valid => "certificate.release",
                        CertStatus::OnHold => "certificate.hold",
                        CertStatus::Revoked => "certificate.revoke",
                    };
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &who,
                            action,
                            target_type: "certificate",
                            target_id: &new.id,
                            detail: serde_json::json!({
                                "authority_id": new.authority_id,
                                "serial": new.serial,
                                "reason": reason.name(),
                                "reason_code": reason.code(),
                            })
                            .to_string(),
                        },
                    )?;
                }
                for (last, crl) in &crls {
                    if authority_store::last_crl_number(tx, &crl.authority_id)? != *last {
                        return Err(ServiceError::FailedPrecondition(
                            "the authority published a CRL meanwhile; try again".into(),
                        ));
                    }
                    authority_store::insert_crl(tx, crl)?;
                    audit::append(
                        tx,
                        audit::AuditEntry {
                            actor: &who,
                            action: "crl.publish",
                            target_type: "authority",
                            target_id: &crl.authority_id,
                            detail: serde_json::json!({ "crl_number": crl.crl_number }).to_string(),
                        },
                    )?;
                }
                Ok(extra_out)
            })
            .await;
        drop(guards);
        result.map(|extra_out| (out, extra_out))
    }

    fn crl_lock(&self, authority_id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, ServiceError> {
        let mut locks =
            self.crl_locks.lock().map_err(|_| ServiceError::Internal("CRL lock table poisoned".into()))?;
        Ok(locks.entry(authority_id.to_owned()).or_default().clone())
    }

    /// The authority's latest CRL. When it is in the second half of its validity (or past
    /// it), a new one with the same entries is signed and published first, so relying
    /// parties never receive a CRL past its nextUpdate just because nothing was revoked.
    pub async fn crl(&self, authority_id: &str) -> Result<CrlRecord, ServiceError> {
        let id = validate::id("authority_id", authority_id)?;
        let latest = self.latest_crl(&id).await?;
        if latest.next_update - store::now() > (CRL_VALIDITY / 2).as_secs() as i64 {
            return Ok(latest);
        }
        let _guard = self.crl_lock(&id)?.lock_owned().await;
        let key = id.clone();
        let (authority, revoked, last) = self
            .store
            .read(move |c| {
                let a = authority_store::get(c, &key)?
                    .ok_or_else(|| ServiceError::Internal(format!("authority {key} vanished")))?;
                Ok::<_, ServiceError>((
                    a,
                    cert_store::not_valid_of(c, &key)?,
                    authority_store::last_crl_number(c, &key)?,
                ))
            })
            .await?;
        if last != latest.crl_number {
            // Someone published meanwhile (a revocation, or another renewal).
            return self.latest_crl(&id).await;
        }
        let cert = match &authority.certificate_der {
            Some(der) => pki::parse_certificate(der).map_err(pki_internal)?,
            None => return Ok(latest),
        };
        let signer = self.signer(&authority)?;
        let crl = sign_crl(&signer, &authority, &cert, last + 1, revoked).await?;
        let published = crl.clone();
        self.store
            .write(move |tx| {
                if authority_store::last_crl_number(tx, &crl.authority_id)? != last {
                    return Err(ServiceError::FailedPrecondition(
                        "the authority published a CRL meanwhile; try again".into(),
                    ));
                }
                authority_store::insert_crl(tx, &crl)?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: "system",
                        action: "crl.publish",
                        target_type: "authority",
                        target_id: &crl.authority_id,
                        detail: serde_json::json!({ "crl_number": crl.crl_number, "why": "renewal" })
                            .to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(published)
    }

    async fn latest_crl(&self, id: &str) -> Result<CrlRecord, ServiceError> {
        let key = id.to_owned();
        let (authority, crl) = self
            .store
            .read(move |c| {
                Ok::<_, ServiceError>((authority_store::get(c, &key)?, authority_store::latest_crl(c, &key)?))
            })
            .await?;
        let authority =
            authority.ok_or_else(|| ServiceError::NotFound(format!("no authority with id {id}")))?;
        crl.ok_or_else(|| {
            ServiceError::FailedPrecondition(format!(
                "authority {} has no CRL yet (it has no certificate yet)",
                authority.name
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RevocationReason as R;

    #[test]
    fn transitions() {
        assert_eq!(next_state(CertStatus::Valid, R::KeyCompromise), Ok((CertStatus::Revoked, Some(1))));
        assert_eq!(next_state(CertStatus::Valid, R::Unspecified), Ok((CertStatus::Revoked, Some(0))));
        assert_eq!(next_state(CertStatus::Valid, R::CertificateHold), Ok((CertStatus::OnHold, Some(6))));
        assert_eq!(next_state(CertStatus::OnHold, R::RemoveFromCrl), Ok((CertStatus::Valid, None)));
        assert_eq!(next_state(CertStatus::OnHold, R::Superseded), Ok((CertStatus::Revoked, Some(4))));
        assert!(next_state(CertStatus::Valid, R::RemoveFromCrl).is_err());
        assert!(next_state(CertStatus::OnHold, R::CertificateHold).is_err());
        for r in R::ALL {
            assert!(next_state(CertStatus::Revoked, r).is_err());
        }
    }

    #[test]
    fn reason_seven_and_out_of_range_name_the_field() {
        for code in [7, 11, 1000] {
            match reason_from_code(code) {
                Err(ServiceError::InvalidArgument { field, .. }) => assert_eq!(field, "reason_code"),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert_eq!(reason_from_code(8).ok(), Some(R::RemoveFromCrl));
    }
}
