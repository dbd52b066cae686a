//! Inside the issuance service, in front of the store: the authorities as issuing needs them —
//! record, parsed certificate, signer and chain — built from one read of the store and thrown
//! away whenever an authority changes (every change goes through this service, which calls
//! [`AuthorityCache::invalidate`] after it commits). Saves two store reads, a certificate
//! parse and a key parse per certificate issued. A generation counter keeps a load that raced
//! with a change from installing the old state.

use super::{chain_in, pki_internal};
use crate::pki::{self, TokenSigner};
use crate::service::ServiceError;
use crate::store::Store;
use crate::store::authorities::{self as authority_store, AuthorityRecord};
use crate::token::TokenManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One authority, ready to sign.
#[derive(Debug)]
pub(super) struct IssuingAuthority {
    pub(super) record: AuthorityRecord,
    /// Its certificate, then its issuers' (what goes next to an issued certificate).
    pub(super) chain: Vec<Vec<u8>>,
    /// None while an EXTERNAL authority waits for its certificate.
    pub(super) certificate: Option<pki::ParsedCertificate>,
    pub(super) signer: TokenSigner,
}

type Snapshot = Arc<HashMap<String, Arc<IssuingAuthority>>>;

#[derive(Debug, Default)]
pub(super) struct AuthorityCache {
    generation: AtomicU64,
    current: Mutex<Option<Snapshot>>,
}

impl AuthorityCache {
    /// Forget everything; the next lookup reads the store again. Call after an authority
    /// change has committed.
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = self.current.lock() {
            *c = None;
        }
    }

    /// The authority with this id.
    pub(super) async fn by_id(
        &self,
        store: &Store,
        tokens: &TokenManager,
        id: &str,
    ) -> Result<Option<Arc<IssuingAuthority>>, ServiceError> {
        Ok(self.snapshot(store, tokens).await?.get(id).cloned())
    }

    /// The authority with this name (names are unique, case-insensitively).
    pub(super) async fn by_name(
        &self,
        store: &Store,
        tokens: &TokenManager,
        name: &str,
    ) -> Result<Option<Arc<IssuingAuthority>>, ServiceError> {
        Ok(self
            .snapshot(store, tokens)
            .await?
            .values()
            .find(|a| a.record.name.eq_ignore_ascii_case(name))
            .cloned())
    }

    async fn snapshot(&self, store: &Store, tokens: &TokenManager) -> Result<Snapshot, ServiceError> {
        if let Ok(c) = self.current.lock()
            && let Some(s) = c.as_ref()
        {
            return Ok(s.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let all = store.read(|c| authority_store::list(c).map_err(ServiceError::from)).await?;
        let mut map = HashMap::with_capacity(all.len());
        for a in &all {
            let certificate = match &a.certificate_der {
                Some(der) => Some(pki::parse_certificate(der).map_err(pki_internal)?),
                None => None,
            };
            let signer =
                TokenSigner::new(tokens.clone(), &a.token_serial, a.key_id.clone(), &a.public_key_der)
                    .map_err(pki_internal)?;
            let issuing =
                IssuingAuthority { record: a.clone(), chain: chain_in(&all, a), certificate, signer };
            map.insert(a.id.clone(), Arc::new(issuing));
        }
        let snapshot: Snapshot = Arc::new(map);
        if let Ok(mut c) = self.current.lock()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            *c = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}
