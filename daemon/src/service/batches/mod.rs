//! The batch service (BatchService), between the gRPC handlers and the store, the issuance
//! service and the batch engine: batches of device certificates from a generator, a single
//! request, a CSV file or uploaded CSRs. Creating a batch validates everything, reserves the
//! organization's balance and stores the batch with all its devices in one transaction; the
//! engine (`engine.rs`) then issues the devices and finishes the batch. `inputs` parses the
//! uploaded files, `download` streams the ZIP, `secret` keeps the PKCS#12 password at rest.
//!
//! Status rules (BatchStatus in batches.proto):
//! PENDING_CREATION → PENDING_ISSUE → READY_FOR_DOWNLOAD | ISSUED_PARTLY | BROKEN;
//! READY_FOR_DOWNLOAD | ISSUED_PARTLY → PROCESSING_REJECT → REJECTED (only before the first
//! download); READY_FOR_DOWNLOAD | ISSUED_PARTLY | ZIP_REMOVED_AFTER_EXPIRATION →
//! PROCESSING_REVOKE → REVOKED (only after a download); READY_FOR_DOWNLOAD | ISSUED_PARTLY →
//! ZIP_REMOVED_AFTER_EXPIRATION when the files expire.

mod download;
mod engine;
pub mod inputs;
mod secret;

use super::issuance::profiles::{Profile, Scope};
use super::issuance::{IssuanceService, MAX_PKCS12_PASSWORD_CHARS, MIN_PKCS12_PASSWORD_CHARS, Password};
use super::{OrgScope, Principal, Role, ServiceError, validate};
use crate::pki;
use crate::store::batches::{self as batch_store, BatchFilter, BatchRecord};
use crate::store::organizations as org_store;
use crate::store::{self, Store, audit};
use std::collections::HashMap;
use std::sync::Arc;

pub use download::ChunkReceiver;
pub use engine::Progress;

/// The longest batch name.
pub const MAX_NAME_CHARS: usize = 255;
/// How many generated values PreviewBatch shows.
const PREVIEW_SERIALS: usize = 10;
/// The one generator: consecutive numbers in the commonName.
pub const SERIAL_GENERATOR: &str = "serial";
/// What a generated value replaces in the commonName template (else it is prepended).
const SERIAL_PLACEHOLDER: &str = "{serial}";

/// A batch's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    PendingCreation,
    PendingIssue,
    IssuedPartly,
    ReadyForDownload,
    ZipRemoved,
    ProcessingReject,
    ProcessingRevoke,
    Rejected,
    Revoked,
    Broken,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::PendingCreation,
        Status::PendingIssue,
        Status::IssuedPartly,
        Status::ReadyForDownload,
        Status::ZipRemoved,
        Status::ProcessingReject,
        Status::ProcessingRevoke,
        Status::Rejected,
        Status::Revoked,
        Status::Broken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingCreation => "PENDING_CREATION",
            Status::PendingIssue => "PENDING_ISSUE",
            Status::IssuedPartly => "ISSUED_PARTLY",
            Status::ReadyForDownload => "READY_FOR_DOWNLOAD",
            Status::ZipRemoved => "ZIP_REMOVED_AFTER_EXPIRATION",
            Status::ProcessingReject => "PROCESSING_REJECT",
            Status::ProcessingRevoke => "PROCESSING_REVOKE",
            Status::Rejected => "REJECTED",
            Status::Revoked => "REVOKED",
            Status::Broken => "BROKEN",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// For people (GetBatchStatus).
    pub fn text(self) -> &'static str {
        match self {
            Status::PendingCreation => "Pending creation",
            Status::PendingIssue => "Processing",
            Status::IssuedPartly => "Issued partly",
            Status::ReadyForDownload => "Ready for download",
            Status::ZipRemoved => "Zip removed after expiration",
            Status::ProcessingReject => "Processing reject",
            Status::ProcessingRevoke => "Processing revoke",
            Status::Rejected => "Rejected",
            Status::Revoked => "Revoked",
            Status::Broken => "Failed",
        }
    }

    /// Statuses the engine still has work in (resumed at start).
    pub const ENGINE_WORK: [Status; 4] =
        [Status::PendingCreation, Status::PendingIssue, Status::ProcessingReject, Status::ProcessingRevoke];

    pub fn engine_work(self) -> bool {
        Status::ENGINE_WORK.contains(&self)
    }

    /// Finished issuing with files to download.
    fn has_files(self) -> bool {
        matches!(self, Status::ReadyForDownload | Status::IssuedPartly)
    }
}

/// Where a batch's devices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Generator,
    Single,
    Csv,
    Csr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Generator => "GENERATOR",
            Kind::Single => "SINGLE",
            Kind::Csv => "CSV",
            Kind::Csr => "CSR",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Generator, Kind::Single, Kind::Csv, Kind::Csr].into_iter().find(|k| k.as_str() == s)
    }
}

pub use crate::store::batches::BatchRecord as Batch;

/// What every create request names.
#[derive(Debug, Clone, Default)]
pub struct NewBatch {
    pub organization_id: String,
    pub authority_id: String,
    pub profile_id: String,
    pub name: String,
    pub params: HashMap<String, String>,
    /// Empty: the profile's first key algorithm. Not for CSR batches.
    pub key_type: String,
    /// Empty: generated. Not for CSR batches.
    pub pkcs12_password: Password,
    pub validity_years: u32,
}

/// CreateBatch's generator.
#[derive(Debug, Clone, Default)]
pub struct GeneratorInput {
    pub generator_id: String,
    pub start_value: i64,
    pub increment: i64,
    pub batch_size: u32,
}

/// A created batch, with the generated password when the request left it empty (shown once).
#[derive(Debug, Clone)]
pub struct Created {
    pub batch: Batch,
    pub generated_password: Option<Password>,
}

/// PreviewBatch's answer.
#[derive(Debug, Clone)]
pub struct Preview {
    pub first_device_params: HashMap<String, String>,
    pub first_subject_dn: String,
    pub serials: Vec<String>,
    pub batch_size: u32,
    pub available_balance: i64,
}

/// A generator, as ListGenerators describes it.
#[derive(Debug, Clone)]
pub struct GeneratorInfo {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub target_parameter: &'static str,
    /// (name, input type, required, default, description)
    pub parameters: Vec<(&'static str, &'static str, bool, &'static str, &'static str)>,
}

/// ListBatches' filters, as the wire gives them (validated here).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub batch_id: String,
    pub organization_id: String,
    pub created_from: i64,
    pub created_to: i64,
    pub size_from: u32,
    pub size_to: u32,
    pub status: Option<Status>,
    pub name: String,
    pub page: u32,
    pub size: u32,
    pub sort_by: String,
    pub descending: bool,
}

/// One audit entry of a batch or device.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub log_id: i64,
    pub batch_id: String,
    pub kind: String,
    pub user: String,
    pub time: i64,
    pub message: String,
}

/// GetDeviceStatistics' answer.
#[derive(Debug, Clone, Default)]
pub struct Statistics {
    pub ordered: u64,
    pub issued: u64,
    pub days: Vec<(String, u64, u64)>,
}

/// One device as the store gets it at creation.
#[derive(Debug, Clone)]
struct DeviceInput {
    params: HashMap<String, String>,
    csr_der: Option<Vec<u8>>,
}

/// The audit target of a batch, and of one of its devices.
pub(crate) const BATCH_TARGET: &str = "batch";
pub(crate) const DEVICE_TARGET: &str = "batch_device";

pub(crate) fn device_target(batch_id: &str, position: u32) -> String {
    format!("{batch_id}/{position}")
}

#[derive(Debug)]
pub struct BatchService {
    store: Store,
    issuance: Arc<IssuanceService>,
    engine: Arc<engine::Engine>,
    max_batch_size: u32,
    max_upload_bytes: usize,
}

impl BatchService {
    /// Builds the service and its engine (not started: see [`BatchService::start`]). Blocking
    /// (loads the password key): call from start-up.
    pub fn new(
        config: &hsm_config::Config,
        store: Store,
        issuance: Arc<IssuanceService>,
    ) -> Result<BatchService, ServiceError> {
        let key = secret::PasswordKey::load(&store)?;
        let engine = Arc::new(engine::Engine::new(&config.batches, store.clone(), issuance.clone(), key));
        Ok(BatchService {
            store,
            issuance,
            engine,
            max_batch_size: config.batches.max_batch_size,
            max_upload_bytes: usize::try_from(config.server.max_upload_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Resumes every unfinished batch and starts the file-expiry sweeper. Call once, inside
    /// the runtime, after start-up.
    pub async fn start(&self) -> Result<(), ServiceError> {
        self.engine.clone().start().await
    }

    /// SIGTERM: stop taking work, let in-flight transactions commit.
    pub fn stop(&self) {
        self.engine.stop();
    }

    /// Waits until every worker has stopped, at most `limit`. True when they all did.
    pub async fn stopped(&self, limit: std::time::Duration) -> bool {
        self.engine.stopped(limit).await
    }

    // ---- creating ---------------------------------------------------------------------

    /// CreateBatch: `batch_size` devices whose commonName the serial generator fills.
    pub async fn create_generated(
        &self,
        actor: &Principal,
        new: NewBatch,
        generator: GeneratorInput,
    ) -> Result<Created, ServiceError> {
        let profile = self.profile_for(actor, &new)?;
        let new = self.with_organization_parameters(&profile, new).await?;
        let devices = generated_devices(&profile, &new.params, &generator, self.max_batch_size)?;
        self.create(actor, Kind::Generator, SERIAL_GENERATOR, new, profile, devices).await
    }

    /// CreateSingleCertBatch: one device.
    pub async fn create_single(&self, actor: &Principal, new: NewBatch) -> Result<Created, ServiceError> {
        let profile = self.profile_for(actor, &new)?;
        let new = self.with_organization_parameters(&profile, new).await?;
        let devices = vec![DeviceInput { params: new.params.clone(), csr_der: None }];
        self.create(actor, Kind::Single, "", new, profile, devices).await
    }

    /// UploadCsvBatch: one device per row.
    pub async fn create_from_csv(
        &self,
        actor: &Principal,
        new: NewBatch,
        file: Vec<u8>,
    ) -> Result<Created, ServiceError> {
        let profile = self.profile_for(actor, &new)?;
        let new = self.with_organization_parameters(&profile, new).await?;
        validate::upload(inputs::CSV_FIELD, file.len(), self.max_upload_bytes)?;
        let (p, shared) = (profile.clone(), new.params.clone());
        let rows = tokio::task::spawn_blocking(move || inputs::parse_csv(&file, &p, &shared))
            .await
            .map_err(|e| ServiceError::Internal(format!("CSV task: {e}")))??;
        if rows.len() > self.max_batch_size as usize {
            return Err(ServiceError::invalid(
                inputs::CSV_FIELD,
                format!("has {} rows; a batch holds at most {}", rows.len(), self.max_batch_size),
            ));
        }
        let devices = rows.into_iter().map(|r| DeviceInput { params: r.params, csr_der: None }).collect();
        self.create(actor, Kind::Csv, "", new, profile, devices).await
    }

    /// UploadCsrBatch: one device per CSR.
    pub async fn create_from_csrs(
        &self,
        actor: &Principal,
        new: NewBatch,
        files: Vec<u8>,
    ) -> Result<Created, ServiceError> {
        let profile = self.profile_for(actor, &new)?;
        validate::upload(inputs::CSR_FIELD, files.len(), self.max_upload_bytes)?;
        let limit = self.max_upload_bytes;
        let csrs = tokio::task::spawn_blocking(move || inputs::parse_csr_bundle(&files, limit))
            .await
            .map_err(|e| ServiceError::Internal(format!("CSR task: {e}")))??;
        if csrs.len() > self.max_batch_size as usize {
            return Err(ServiceError::invalid(
                inputs::CSR_FIELD,
                format!("holds {} CSRs; a batch holds at most {}", csrs.len(), self.max_batch_size),
            ));
        }
        let mut devices = Vec::with_capacity(csrs.len());
        for c in csrs {
            let kind = c.csr.key_kind.to_string();
            if !profile.key_algorithms.contains(&kind) {
                return Err(ServiceError::invalid(
                    inputs::CSR_FIELD,
                    format!(
                        "{}: profile {} does not accept {kind} keys (accepts {})",
                        c.source,
                        profile.id,
                        profile.key_algorithms.join(", ")
                    ),
                ));
            }
            profile.resolve(&new.params, &c.csr.subject).map_err(|e| prefix_error(&c.source, e))?;
            devices.push(DeviceInput { params: new.params.clone(), csr_der: Some(c.csr.der) });
        }
        self.create(actor, Kind::Csr, "", new, profile, devices).await
    }

    /// PreviewBatch: what CreateBatch would make.
    pub async fn preview(
        &self,
        actor: &Principal,
        new: NewBatch,
        generator: GeneratorInput,
    ) -> Result<Preview, ServiceError> {
        let profile = self.profile_for(actor, &new)?;
        let new = self.with_organization_parameters(&profile, new).await?;
        let devices = generated_devices(&profile, &new.params, &generator, self.max_batch_size)?;
        let first =
            devices.first().ok_or_else(|| ServiceError::invalid("batch_size", "must be at least 1"))?;
        let resolved = profile.resolve(&first.params, &pki::Name::default())?;
        self.checked(&profile, Kind::Generator, &new)?;
        self.issuance.batch_signing(&new.authority_id, &profile.id, new.validity_years).await?;
        let (org, authority) =
            (validate::id("organization_id", &new.organization_id)?, new.authority_id.clone());
        let size = generator.batch_size;
        let available = self.store.read(move |c| available(c, &org, &authority, size)).await?;
        let serials = (0..devices.len().min(PREVIEW_SERIALS))
            .map(|i| serial_value(&generator, i as u64).to_string())
            .collect();
        Ok(Preview {
            first_device_params: first.params.clone(),
            first_subject_dn: resolved.subject_dn,
            serials,
            batch_size: generator.batch_size,
            available_balance: available,
        })
    }

    /// ListGenerators: the serial generator, when the profile has a commonName parameter.
    pub fn generators(
        &self,
        actor: &Principal,
        profile_id: &str,
    ) -> Result<Vec<GeneratorInfo>, ServiceError> {
        let profile = self.issuance.profile(profile_id).map_err(|e| rename_field(e, "profile_id"))?;
        if !actor.may_use_profile(&profile.id) {
            return Err(ServiceError::PermissionDenied(format!("you may not use profile {}", profile.id)));
        }
        if !profile.parameters.iter().any(|p| p.name == "commonName") {
            return Ok(Vec::new());
        }
        Ok(vec![GeneratorInfo {
            id: SERIAL_GENERATOR,
            name: "Serial number",
            description: "Device i (from 0) gets start_value + i * increment in its commonName: in place of \
                          {serial} in the commonName given, else in front of it",
            target_parameter: "commonName",
            parameters: vec![
                ("start_value", "integer", false, "0", "the first device's number"),
                ("increment", "integer", false, "1", "added for each next device (0 means 1)"),
            ],
        }])
    }

    /// Checks what every create names and that the caller may use it; returns the profile.
    fn profile_for(&self, actor: &Principal, new: &NewBatch) -> Result<Profile, ServiceError> {
        let org = validate::id("organization_id", &new.organization_id)?;
        if !actor.in_organization(&org) {
            return Err(ServiceError::NotFound(format!("no organization with id {org}")));
        }
        validate::id("authority_id", &new.authority_id)?;
        let profile = self.issuance.profile(&new.profile_id).map_err(|e| rename_field(e, "profile_id"))?;
        if !actor.may_use_profile(&profile.id) {
            return Err(ServiceError::PermissionDenied(format!(
                "your privileges do not include profile {}",
                profile.id
            )));
        }
        Ok(profile.clone())
    }

    /// Profile parameters whose scopes include ORGANIZATION and that the request leaves empty
    /// take the organization's value (its ORGANIZATION, CITY, STATE, COUNTRY and
    /// MANUFACTURER_ID parameters feed subject DNs), so every device carries its
    /// organization's identity without each request repeating it. A value the request gives
    /// wins. Not for CSR batches, whose subjects are the requesters'.
    async fn with_organization_parameters(
        &self,
        profile: &Profile,
        mut new: NewBatch,
    ) -> Result<NewBatch, ServiceError> {
        let id = new.organization_id.clone();
        let Some(org) = self.store.read(move |c| org_store::get(c, &id).map_err(ServiceError::from)).await?
        else {
            // `create` answers NOT_FOUND for it.
            return Ok(new);
        };
        for p in profile.parameters.iter().filter(|p| p.scopes.contains(&Scope::Organization)) {
            if new.params.get(&p.name).is_some_and(|v| !v.trim().is_empty()) {
                continue;
            }
            let value = match p.name.to_ascii_lowercase().as_str() {
                "organization" => &org.organization,
                "locality" | "city" => &org.city,
                "state" | "stateorprovince" => &org.state,
                "country" => &org.country,
                "manufacturerid" | "manufacturer_id" => &org.manufacturer_id,
                _ => &None,
            };
            if let Some(v) = value {
                new.params.insert(p.name.clone(), v.clone());
            }
        }
        Ok(new)
    }

    /// The key generated for each device of a non-CSR batch.
    fn key_kind(&self, profile: &Profile, key_type: &str) -> Result<(String, pki::KeyKind), ServiceError> {
        let name = match key_type.trim() {
            "" => profile.key_algorithms.first().cloned().unwrap_or_default(),
            k => k.to_owned(),
        };
        if !profile.key_algorithms.contains(&name) {
            return Err(ServiceError::invalid(
                "key_type",
                format!(
                    "profile {} does not accept {name} keys (accepts {})",
                    profile.id,
                    profile.key_algorithms.join(", ")
                ),
            ));
        }
        let algorithm: hsm_config::KeyAlgorithm =
            name.parse().map_err(|e: String| ServiceError::invalid("key_type", e))?;
        let kind = match algorithm {
            hsm_config::KeyAlgorithm::EcP256 => pki::KeyKind::EcP256,
            hsm_config::KeyAlgorithm::EcP384 => pki::KeyKind::EcP384,
            hsm_config::KeyAlgorithm::Rsa2048 => pki::KeyKind::Rsa { bits: 2048 },
            hsm_config::KeyAlgorithm::Rsa3072 => pki::KeyKind::Rsa { bits: 3072 },
            hsm_config::KeyAlgorithm::Rsa4096 => pki::KeyKind::Rsa { bits: 4096 },
        };
        Ok((name, kind))
    }

    /// The name, key type and PKCS#12 password of a request (generated when empty), checked.
    #[allow(clippy::type_complexity, reason = "a private tuple of checked parts, named at the one caller")]
    fn checked(
        &self,
        profile: &Profile,
        kind: Kind,
        new: &NewBatch,
    ) -> Result<(String, String, Option<Password>, Option<Password>), ServiceError> {
        let name = validate::text("batch_name", &new.name, MAX_NAME_CHARS)?;
        if name.is_empty() {
            return Err(ServiceError::invalid("batch_name", "is required"));
        }
        let (key_type, password, generated_password) = if kind == Kind::Csr {
            (String::new(), None, None)
        } else {
            let (key_type, _) = self.key_kind(profile, &new.key_type)?;
            let given = !new.pkcs12_password.0.is_empty();
            let password = if given { new.pkcs12_password.clone() } else { secret::generate_password() };
            let chars = password.0.chars().count();
            if !(MIN_PKCS12_PASSWORD_CHARS..=MAX_PKCS12_PASSWORD_CHARS).contains(&chars) {
                return Err(ServiceError::invalid(
                    "pkcs12_password",
                    format!(
                        "must be {MIN_PKCS12_PASSWORD_CHARS} to {MAX_PKCS12_PASSWORD_CHARS} characters (or empty to have one generated)"
                    ),
                ));
            }
            (key_type, Some(password.clone()), (!given).then_some(password))
        };
        Ok((name, key_type, password, generated_password))
    }

    /// Validates the rest, then stores the batch, its devices, the reservation and the audit
    /// record in one transaction, and hands the batch to the engine.
    async fn create(
        &self,
        actor: &Principal,
        kind: Kind,
        generator_id: &str,
        new: NewBatch,
        profile: Profile,
        devices: Vec<DeviceInput>,
    ) -> Result<Created, ServiceError> {
        let (name, key_type, password, generated_password) = self.checked(&profile, kind, &new)?;
        let organization_id = validate::id("organization_id", &new.organization_id)?;
        let authority_id = validate::id("authority_id", &new.authority_id)?;
        // Every device's parameters pass the profile now, so a batch is never stored with a
        // device that cannot be issued (CSV and CSR inputs were checked by their parsers).
        if matches!(kind, Kind::Generator | Kind::Single) {
            let p = profile.clone();
            let params: Vec<HashMap<String, String>> = devices.iter().map(|d| d.params.clone()).collect();
            let single = kind == Kind::Single;
            tokio::task::spawn_blocking(move || {
                for (i, params) in params.iter().enumerate() {
                    p.resolve(params, &pki::Name::default())
                        .map_err(|e| if single { e } else { prefix_error(&format!("device {i}"), e) })?;
                }
                Ok::<_, ServiceError>(())
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("validation task: {e}")))??;
        }
        // The authority must be able to issue under the profile now.
        self.issuance.batch_signing(&authority_id, &profile.id, new.validity_years).await?;
        let validity_years =
            if new.validity_years == 0 { profile.validity_years } else { new.validity_years };
        let size =
            u32::try_from(devices.len()).map_err(|_| ServiceError::invalid("batch_size", "is too large"))?;
        let now = store::now();
        let batch = BatchRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            kind: kind.as_str().to_owned(),
            status: Status::PendingCreation.as_str().to_owned(),
            status_reason: String::new(),
            organization_id: organization_id.clone(),
            authority_id: authority_id.clone(),
            profile_id: profile.id.clone(),
            key_type,
            validity_years,
            generator_id: generator_id.to_owned(),
            batch_size: size,
            issued: 0,
            failed: 0,
            reserved: size,
            created_by: actor.username.clone(),
            created_at: now,
            updated_at: now,
            finished_at: None,
            first_downloaded_at: None,
            files_removed_at: None,
        };
        let sealed = match &password {
            Some(p) => Some(self.engine.key().seal(&batch.id, p)?),
            None => None,
        };
        let rows: Vec<(String, Option<Vec<u8>>)> = devices
            .into_iter()
            .map(|d| {
                let json = serde_json::to_string(
                    &d.params.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                )
                .map_err(|e| ServiceError::Internal(format!("device parameters: {e}")))?;
                Ok((json, d.csr_der))
            })
            .collect::<Result<_, ServiceError>>()?;
        let record = batch.clone();
        let who = actor.username.clone();
        self.store
            .write(move |tx| {
                available(tx, &record.organization_id, &record.authority_id, record.batch_size)?;
                batch_store::insert(tx, &record, sealed.as_deref())?;
                for (i, (params, csr)) in rows.iter().enumerate() {
                    batch_store::insert_device(tx, &record.id, i as u32, params, csr.as_deref())?;
                }
                org_store::move_balance(
                    tx,
                    &record.organization_id,
                    &record.authority_id,
                    i64::from(record.batch_size),
                    0,
                    record.created_at,
                )?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "batch.create",
                        target_type: BATCH_TARGET,
                        target_id: &record.id,
                        detail: serde_json::json!({
                            "name": record.name,
                            "kind": record.kind,
                            "organization_id": record.organization_id,
                            "authority_id": record.authority_id,
                            "profile_id": record.profile_id,
                            "batch_size": record.batch_size,
                            "reserved": record.batch_size,
                        })
                        .to_string(),
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        self.engine.kick(&batch.id);
        Ok(Created { batch, generated_password })
    }

    // ---- reading ----------------------------------------------------------------------

    /// A batch the caller may see; NOT_FOUND for one it may not (as if it did not exist).
    pub async fn get(&self, actor: &Principal, id: &str) -> Result<Batch, ServiceError> {
        let id = validate::id("id", id)?;
        let key = id.clone();
        let found = self.store.read(move |c| batch_store::get(c, &key).map_err(ServiceError::from)).await?;
        match found {
            Some(b) if visible(actor, &b) => Ok(b),
            _ => Err(ServiceError::NotFound(format!("no batch with id {id}"))),
        }
    }

    pub async fn list(&self, actor: &Principal, f: ListFilter) -> Result<(Vec<Batch>, u64), ServiceError> {
        let batch_id = match f.batch_id.trim() {
            "" => None,
            v => Some(validate::id("batch_id", v)?),
        };
        let organization_id = match f.organization_id.trim() {
            "" => None,
            v => Some(validate::id("organization_id", v)?),
        };
        let name = validate::text("name", &f.name, MAX_NAME_CHARS)?;
        if f.size_from > 0 && f.size_to > 0 && f.size_from > f.size_to {
            return Err(ServiceError::invalid("size_to", "must not be less than size_from"));
        }
        if f.created_from > 0 && f.created_to > 0 && f.created_from > f.created_to {
            return Err(ServiceError::invalid("created_to", "must not be before created_from"));
        }
        let sort_by = match f.sort_by.trim() {
            "" => "created_at",
            s => batch_store::SORTABLE.into_iter().find(|c| c.eq_ignore_ascii_case(s)).ok_or_else(|| {
                ServiceError::invalid(
                    "sort_by",
                    format!("must be one of {}", batch_store::SORTABLE.join(", ")),
                )
            })?,
        };
        let size = match f.size {
            0 => 20,
            s if s <= 100 => s,
            _ => return Err(ServiceError::invalid("size", "must be at most 100")),
        };
        let filter = BatchFilter {
            batch_id,
            organization_id,
            organizations: match &actor.scope {
                OrgScope::All => None,
                OrgScope::Only(ids) => Some(ids.iter().cloned().collect()),
                OrgScope::None => Some(Vec::new()),
            },
            profiles: profile_filter(actor),
            created_from: (f.created_from > 0).then_some(f.created_from),
            created_to: (f.created_to > 0).then_some(f.created_to),
            size_from: (f.size_from > 0).then_some(f.size_from),
            size_to: (f.size_to > 0).then_some(f.size_to),
            status: f.status.map(|s| s.as_str().to_owned()),
            name: (!name.is_empty()).then_some(name),
            sort_by,
            descending: f.descending,
        };
        let (offset, limit) = (u64::from(f.page) * u64::from(size), u64::from(size));
        self.store
            .read(move |c| batch_store::list(c, &filter, offset, limit).map_err(ServiceError::from))
            .await
    }

    /// (active, success, failed) devices.
    pub async fn processing_info(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<(u32, u32, u32), ServiceError> {
        let b = self.get(actor, id).await?;
        let active = b.batch_size.saturating_sub(b.issued + b.failed);
        Ok((active, b.issued, b.failed))
    }

    pub async fn batch_audit_log(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let b = self.get(actor, id).await?;
        self.audit_for(BATCH_TARGET, b.id.clone(), b.id).await
    }

    pub async fn device_audit_log(
        &self,
        actor: &Principal,
        id: &str,
        position: u32,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let b = self.get(actor, id).await?;
        if position >= b.batch_size {
            return Err(ServiceError::NotFound(format!(
                "batch {} has no device {position} (it has {})",
                b.id, b.batch_size
            )));
        }
        self.audit_for(DEVICE_TARGET, device_target(&b.id, position), b.id).await
    }

    async fn audit_for(
        &self,
        target_type: &'static str,
        target: String,
        batch_id: String,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let rows = self
            .store
            .read(move |c| audit::for_target(c, target_type, &target).map_err(ServiceError::from))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                log_id: r.id,
                batch_id: batch_id.clone(),
                kind: r.action,
                user: r.actor,
                time: r.at,
                message: r.detail,
            })
            .collect())
    }

    /// Devices ordered and issued per day in the caller's organizations (or one of them).
    pub async fn statistics(
        &self,
        actor: &Principal,
        organization_id: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Statistics, ServiceError> {
        let orgs: Option<Vec<String>> = match organization_id.trim() {
            "" => match &actor.scope {
                OrgScope::All => None,
                OrgScope::Only(ids) => Some(ids.iter().cloned().collect()),
                OrgScope::None => Some(Vec::new()),
            },
            v => {
                let id = validate::id("organization_id", v)?;
                if !actor.in_organization(&id) {
                    return Err(ServiceError::NotFound(format!("no organization with id {id}")));
                }
                Some(vec![id])
            }
        };
        let from = day("from_day", from_day)?;
        let to = day("to_day", to_day)?;
        let days = self
            .store
            .read(move |c| {
                // Defaults: the last 30 days, UTC, as SQLite counts them.
                let to = match to {
                    Some(d) => d,
                    None => c
                        .query_row("SELECT date('now')", [], |r| r.get(0))
                        .map_err(store::StoreError::from)?,
                };
                let from = match from {
                    Some(d) => d,
                    None => c
                        .query_row("SELECT date(?1, '-29 days')", [&to], |r| r.get(0))
                        .map_err(store::StoreError::from)?,
                };
                batch_store::daily_counts_for(c, orgs.as_deref(), &from, &to).map_err(ServiceError::from)
            })
            .await?;
        Ok(Statistics {
            ordered: days.iter().map(|d| d.1).sum(),
            issued: days.iter().map(|d| d.2).sum(),
            days,
        })
    }

    // ---- reject, revoke, download, watch ----------------------------------------------

    /// RejectBatch: only from READY_FOR_DOWNLOAD or ISSUED_PARTLY, before the first download.
    pub async fn reject(&self, actor: &Principal, id: &str, reason: &str) -> Result<Batch, ServiceError> {
        let reason = validate::text("reason", reason, 1024)?;
        if reason.is_empty() {
            return Err(ServiceError::invalid("reason", "is required"));
        }
        let b = self.get(actor, id).await?;
        self.engine.begin_final(actor, &b.id, engine::Ending::Reject { reason }).await?;
        self.get(actor, &b.id).await
    }

    /// RevokeBatch: only after a download; every certificate revoked with `reason_code`.
    pub async fn revoke(
        &self,
        actor: &Principal,
        id: &str,
        reason_code: u32,
        comment: &str,
    ) -> Result<Batch, ServiceError> {
        let comment = validate::text("comment", comment, 1024)?;
        let reason = pki::RevocationReason::from_code(i64::from(reason_code)).map_err(|_| {
            ServiceError::invalid(
                "reason",
                format!("{reason_code} is not an RFC 5280 reason code (0-10; 7 is unused)"),
            )
        })?;
        if matches!(reason, pki::RevocationReason::RemoveFromCrl | pki::RevocationReason::CertificateHold) {
            return Err(ServiceError::invalid(
                "reason",
                "a batch is revoked for good: not hold or removeFromCRL",
            ));
        }
        let b = self.get(actor, id).await?;
        self.engine.begin_final(actor, &b.id, engine::Ending::Revoke { reason_code, comment }).await?;
        self.get(actor, &b.id).await
    }

    /// DownloadBatch: the ZIP, in chunks, produced while the caller reads them.
    pub async fn download(&self, actor: &Principal, id: &str) -> Result<ChunkReceiver, ServiceError> {
        let b = self.get(actor, id).await?;
        let status = Status::parse(&b.status).unwrap_or(Status::Broken);
        if !status.has_files() {
            return Err(ServiceError::FailedPrecondition(format!(
                "batch {} is {}: only a batch ready for download (or issued partly) can be downloaded",
                b.id,
                status.as_str()
            )));
        }
        let (key, who) = (b.id.clone(), actor.username.clone());
        self.store
            .write(move |tx| {
                let current = batch_store::get(tx, &key)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no batch with id {key}")))?;
                if !Status::parse(&current.status).is_some_and(Status::has_files) {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "batch {key} changed meanwhile; try again"
                    )));
                }
                let first = batch_store::mark_downloaded(tx, &key, store::now())?;
                audit::append(
                    tx,
                    audit::AuditEntry {
                        actor: &who,
                        action: "batch.download",
                        target_type: BATCH_TARGET,
                        target_id: &key,
                        detail: serde_json::json!({ "first": first }).to_string(),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(download::start(self.store.clone(), b))
    }

    /// WatchBatch: progress events until the engine is done with the batch.
    pub async fn watch(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Progress, ServiceError>>, ServiceError> {
        let b = self.get(actor, id).await?;
        Ok(self.engine.watch(b))
    }
}

/// What the organization may still issue from the authority, after checking that the
/// organization is active, the authority assigned to it and enabled, and that `size` fits
/// (FAILED_PRECONDITION naming what is available and what was asked).
fn available(
    conn: &rusqlite::Connection,
    organization_id: &str,
    authority_id: &str,
    size: u32,
) -> Result<i64, ServiceError> {
    let org = org_store::get(conn, organization_id)?
        .ok_or_else(|| ServiceError::NotFound(format!("no organization with id {organization_id}")))?;
    if !org.active {
        return Err(ServiceError::FailedPrecondition(format!("organization {} is inactive", org.name)));
    }
    let assigned = org_store::get_authority(conn, organization_id, authority_id)?.ok_or_else(|| {
        ServiceError::invalid(
            "authority_id",
            format!("authority {authority_id} is not assigned to organization {}", org.name),
        )
    })?;
    if !assigned.enabled {
        return Err(ServiceError::FailedPrecondition(format!(
            "authority {} is disabled for organization {}",
            assigned.authority_name, org.name
        )));
    }
    let available = (assigned.balance - assigned.used - assigned.reserved).max(0);
    if available < i64::from(size) {
        return Err(ServiceError::FailedPrecondition(format!(
            "the balance of authority {} for organization {} is short: available {available}, asked {size}",
            assigned.authority_name, org.name
        )));
    }
    Ok(available)
}

/// Whether `actor` may see batch `b`.
fn visible(actor: &Principal, b: &Batch) -> bool {
    actor.in_organization(&b.organization_id) && actor.may_use_profile(&b.profile_id)
}

/// USER-only callers see the batches of the profiles their privileges name.
fn profile_filter(actor: &Principal) -> Option<Vec<String>> {
    if actor.roles.iter().all(|r| *r == Role::User) {
        Some(actor.profiles.iter().cloned().collect())
    } else {
        None
    }
}

/// `YYYY-MM-DD` or empty.
fn day(field: &str, v: &str) -> Result<Option<String>, ServiceError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let b = v.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&v[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&v[8..10].parse::<u32>().unwrap_or(0));
    if ok { Ok(Some(v.to_owned())) } else { Err(ServiceError::invalid(field, "must be a day as YYYY-MM-DD")) }
}

/// The generator's value for device `i`.
fn serial_value(g: &GeneratorInput, i: u64) -> i128 {
    let inc = if g.increment == 0 { 1 } else { g.increment };
    i128::from(g.start_value) + i128::from(i) * i128::from(inc)
}

/// The devices of a generator batch: the commonName template filled with each value.
fn generated_devices(
    profile: &Profile,
    params: &HashMap<String, String>,
    g: &GeneratorInput,
    max: u32,
) -> Result<Vec<DeviceInput>, ServiceError> {
    if g.generator_id.trim() != SERIAL_GENERATOR {
        return Err(ServiceError::invalid(
            "generator_id",
            format!("{:?} is not a generator (ListGenerators: {SERIAL_GENERATOR})", g.generator_id.trim()),
        ));
    }
    let Some(target) = profile.parameters.iter().find(|p| p.name == "commonName") else {
        return Err(ServiceError::invalid(
            "generator_id",
            format!("profile {} has no commonName parameter to generate", profile.id),
        ));
    };
    if !target.scopes.contains(&Scope::Batch) && !target.scopes.contains(&Scope::Request) {
        return Err(ServiceError::invalid(
            "generator_id",
            format!("profile {}'s commonName cannot be given by a batch", profile.id),
        ));
    }
    if g.batch_size == 0 || g.batch_size > max {
        return Err(ServiceError::invalid("batch_size", format!("must be 1 to {max}")));
    }
    let template = params.get("commonName").cloned().unwrap_or_default();
    let last = serial_value(g, u64::from(g.batch_size - 1));
    if last > i128::from(i64::MAX) || last < i128::from(i64::MIN) {
        return Err(ServiceError::invalid(
            "generator_params",
            "the last device's value does not fit 64 bits",
        ));
    }
    Ok((0..u64::from(g.batch_size))
        .map(|i| {
            let value = serial_value(g, i).to_string();
            let cn = if template.contains(SERIAL_PLACEHOLDER) {
                template.replace(SERIAL_PLACEHOLDER, &value)
            } else {
                format!("{value}{template}")
            };
            let mut p = params.clone();
            p.insert("commonName".to_owned(), cn);
            DeviceInput { params: p, csr_der: None }
        })
        .collect())
}

/// An error about one device or input, saying which.
fn prefix_error(what: &str, e: ServiceError) -> ServiceError {
    match e {
        ServiceError::InvalidArgument { field, message } => {
            ServiceError::InvalidArgument { field, message: format!("{what}: {message}") }
        }
        other => other,
    }
}

/// A lookup by id that failed, reported on the request's field.
fn rename_field(e: ServiceError, field: &str) -> ServiceError {
    match e {
        ServiceError::NotFound(m) => ServiceError::invalid(field, m),
        ServiceError::InvalidArgument { message, .. } => ServiceError::invalid(field, message),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_days_are_checked() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(day("from_day", "2026-01-31").expect("ok").as_deref(), Some("2026-01-31"));
        assert_eq!(day("from_day", "").expect("ok"), None);
        for bad in ["2026-13-01", "2026-1-1", "yesterday", "2026-01-32"] {
            assert!(day("from_day", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serial_values_count_from_start_by_increment() {
        let g = GeneratorInput { generator_id: "serial".into(), start_value: 5, increment: 0, batch_size: 3 };
        assert_eq!((0..3).map(|i| serial_value(&g, i)).collect::<Vec<_>>(), [5, 6, 7]);
        let g = GeneratorInput { increment: -2, ..g };
        assert_eq!(serial_value(&g, 2), 1);
    }
}
