//! gRPC handlers of `cardhsm.v1.IssuanceService`: decode a request, call the issuance
//! service with the caller's principal, encode the answer (domain ↔ wire mapping included
//! here, since it concerns only this service). No logic lives here.

use super::auth_layer::principal;
use super::status::{GrpcResult, to_status};
use crate::pki::{PEM_CERTIFICATE, PEM_CERTIFICATE_REQUEST, PEM_X509_CRL, pem_encode};
use crate::service::issuance::profiles::{Parameter, Profile, Scope, eku_name, key_usage_name};
use crate::service::issuance::{
    AuthorityView, Certificate, IssueRequest, Kind, NewAuthority, Password, Status,
};
use crate::service::{ServiceError, Services};
use cardhsm_proto::v1 as pb;
use tonic::{Request, Response};
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct IssuanceApi(pub Services);

fn kind_to_pb(k: Kind) -> pb::AuthorityKind {
    match k {
        Kind::Root => pb::AuthorityKind::Root,
        Kind::Intermediate => pb::AuthorityKind::Intermediate,
        Kind::External => pb::AuthorityKind::External,
    }
}

fn kind_from_pb(v: i32) -> Option<Kind> {
    match pb::AuthorityKind::try_from(v).ok()? {
        pb::AuthorityKind::Root => Some(Kind::Root),
        pb::AuthorityKind::Intermediate => Some(Kind::Intermediate),
        pb::AuthorityKind::External => Some(Kind::External),
        pb::AuthorityKind::Unspecified => None,
    }
}

fn pem_chain(chain: &[Vec<u8>]) -> String {
    chain.iter().map(|der| pem_encode(PEM_CERTIFICATE, der)).collect()
}

fn authority_to_pb(v: AuthorityView) -> pb::Authority {
    let a = v.record;
    let status = if a.certificate_der.is_some() {
        pb::AuthorityStatus::Active
    } else {
        pb::AuthorityStatus::PendingCertificate
    };
    pb::Authority {
        id: a.id,
        name: a.name,
        kind: kind_to_pb(a.kind) as i32,
        parent_id: a.parent_id.unwrap_or_default(),
        key_algorithm: a.key_algorithm,
        subject_dn: a.subject_dn,
        enabled: a.enabled,
        status: status as i32,
        certificate_pem: a
            .certificate_der
            .as_deref()
            .map(|d| pem_encode(PEM_CERTIFICATE, d))
            .unwrap_or_default(),
        chain_pem: pem_chain(&v.chain),
        csr_pem: a.csr_der.as_deref().map(|d| pem_encode(PEM_CERTIFICATE_REQUEST, d)).unwrap_or_default(),
        not_before: a.not_before,
        not_after: a.not_after,
        issued_count: u64::try_from(a.issued_count).unwrap_or(0),
        created_at: a.created_at,
    }
}

fn scope_to_pb(s: Scope) -> i32 {
    (match s {
        Scope::Batch => pb::ParameterScope::Batch,
        Scope::Request => pb::ParameterScope::Request,
        Scope::Csr => pb::ParameterScope::Csr,
        Scope::CsrSubject => pb::ParameterScope::CsrSubject,
        Scope::Organization => pb::ParameterScope::Organization,
    }) as i32
}

fn parameter_to_pb(p: &Parameter) -> pb::ProfileParameter {
    pb::ProfileParameter {
        name: p.name.clone(),
        input_type: p.input_type.clone(),
        required: p.required,
        placeholder: p.placeholder.clone(),
        validation_pattern: p.validation_pattern.clone(),
        message: p.message.clone(),
        value: p.value.clone(),
        title: p.title.clone(),
        scopes: p.scopes.iter().copied().map(scope_to_pb).collect(),
        dynamic: p.dynamic,
    }
}

fn profile_to_pb(p: &Profile) -> pb::Profile {
    pb::Profile {
        id: p.id.clone(),
        name: p.name.clone(),
        key_algorithms: p.key_algorithms.clone(),
        authority_name: p.authority_name.clone().unwrap_or_default(),
        subject_dn: p.subject_dn.clone(),
        key_usages: p.key_usage.iter().map(|u| key_usage_name(*u).to_owned()).collect(),
        extended_key_usages: p.extended_key_usage.iter().map(|e| eku_name(*e)).collect(),
        validity_years: p.validity_years,
        max_validity_years: p.max_validity_years,
        parameters: p.parameters.iter().map(parameter_to_pb).collect(),
    }
}

fn summary_to_pb(c: Certificate) -> pb::CertificateSummary {
    let status = match c.status {
        Status::Revoked => pb::CertificateStatus::Revoked,
        Status::OnHold => pb::CertificateStatus::OnHold,
        Status::Valid if c.not_after < crate::store::now() => pb::CertificateStatus::Expired,
        Status::Valid => pb::CertificateStatus::Valid,
    };
    pb::CertificateSummary {
        id: c.id,
        common_name: c.common_name,
        serial_number: c.serial,
        created_at: c.created_at,
        status: status as i32,
        authority_id: c.authority_id,
        profile_id: c.profile_id,
        revocation_reason: c.revocation_reason.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
        revoked_at: c.revoked_at.unwrap_or(0),
        not_after: c.not_after,
        subject_dn: c.subject_dn,
    }
}

#[tonic::async_trait]
impl pb::issuance_service_server::IssuanceService for IssuanceApi {
    async fn create_authority(&self, req: Request<pb::CreateAuthorityRequest>) -> GrpcResult<pb::Authority> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let new = NewAuthority {
            name: r.name,
            key_algorithm: r.key_algorithm,
            subject_dn: r.subject_dn,
            validity_years: r.validity_years,
            kind: kind_from_pb(r.kind),
            parent_id: r.parent_id,
        };
        let view = self.0.issuance.create_authority(&p, new).await.map_err(to_status)?;
        Ok(Response::new(authority_to_pb(view)))
    }

    async fn import_authority_certificate(
        &self,
        req: Request<pb::ImportAuthorityCertificateRequest>,
    ) -> GrpcResult<pb::Authority> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let view =
            self.0.issuance.import_certificate(&p, &r.id, &r.certificate_pem).await.map_err(to_status)?;
        Ok(Response::new(authority_to_pb(view)))
    }

    async fn list_authorities(
        &self,
        _req: Request<pb::ListAuthoritiesRequest>,
    ) -> GrpcResult<pb::ListAuthoritiesResponse> {
        let all = self.0.issuance.list_authorities().await.map_err(to_status)?;
        Ok(Response::new(pb::ListAuthoritiesResponse {
            authorities: all.into_iter().map(authority_to_pb).collect(),
        }))
    }

    async fn get_authority(&self, req: Request<pb::GetAuthorityRequest>) -> GrpcResult<pb::Authority> {
        let view = self.0.issuance.get_authority(&req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(authority_to_pb(view)))
    }

    async fn set_authority_enabled(
        &self,
        req: Request<pb::SetAuthorityEnabledRequest>,
    ) -> GrpcResult<pb::Authority> {
        let actor = principal(&req)?;
        let r = req.into_inner();
        let view =
            self.0.issuance.set_authority_enabled(&actor, &r.id, r.enabled).await.map_err(to_status)?;
        Ok(Response::new(authority_to_pb(view)))
    }

    async fn list_profiles(
        &self,
        _req: Request<pb::ListProfilesRequest>,
    ) -> GrpcResult<pb::ListProfilesResponse> {
        Ok(Response::new(pb::ListProfilesResponse {
            profiles: self.0.issuance.profiles().iter().map(profile_to_pb).collect(),
        }))
    }

    async fn get_profile(&self, req: Request<pb::GetProfileRequest>) -> GrpcResult<pb::Profile> {
        let p = self.0.issuance.profile(&req.into_inner().id).map_err(to_status)?;
        Ok(Response::new(profile_to_pb(p)))
    }

    async fn get_profile_parameters(
        &self,
        req: Request<pb::GetProfileRequest>,
    ) -> GrpcResult<pb::GetProfileParametersResponse> {
        let p = self.0.issuance.profile(&req.into_inner().id).map_err(to_status)?;
        Ok(Response::new(pb::GetProfileParametersResponse {
            parameters: p.parameters.iter().map(parameter_to_pb).collect(),
        }))
    }

    async fn get_profile_subject_dn(
        &self,
        req: Request<pb::GetProfileRequest>,
    ) -> GrpcResult<pb::GetProfileSubjectDnResponse> {
        let p = self.0.issuance.profile(&req.into_inner().id).map_err(to_status)?;
        Ok(Response::new(pb::GetProfileSubjectDnResponse { subject_dn: p.subject_dn.clone() }))
    }

    async fn issue_certificate(
        &self,
        req: Request<pb::IssueCertificateRequest>,
    ) -> GrpcResult<pb::IssuedCertificate> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let issued = self
            .0
            .issuance
            .issue(
                &p,
                IssueRequest {
                    authority_id: r.authority_id,
                    profile_id: r.profile_id,
                    params: r.params.into_iter().collect(),
                    csr_pem: r.csr_pem,
                    validity_years: r.validity_years,
                    generate_key: r.generate_key,
                    key_type: r.key_type,
                    pkcs12_password: Password(Zeroizing::new(r.pkcs12_password)),
                },
            )
            .await
            .map_err(to_status)?;
        let c = issued.record;
        Ok(Response::new(pb::IssuedCertificate {
            certificate_pem: pem_encode(PEM_CERTIFICATE, &c.certificate_der),
            chain_pem: pem_chain(&issued.chain),
            id: c.id,
            serial_number: c.serial,
            subject_dn: c.subject_dn,
            not_before: c.not_before,
            not_after: c.not_after,
            pkcs12: issued.pkcs12.unwrap_or_default(),
        }))
    }

    async fn find_certificates(
        &self,
        req: Request<pb::FindCertificatesRequest>,
    ) -> GrpcResult<pb::FindCertificatesResponse> {
        let r = req.into_inner();
        let page = r.page.unwrap_or_default();
        let (rows, next, total) = self
            .0
            .issuance
            .find(&r.common_name, &r.serial_number, page.page_size, &page.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::FindCertificatesResponse {
            certificates: rows.into_iter().map(summary_to_pb).collect(),
            page: Some(pb::PageResponse { next_page_token: next, total_count: total }),
        }))
    }

    async fn revoke_certificates(
        &self,
        req: Request<pb::RevokeCertificatesRequest>,
    ) -> GrpcResult<pb::RevokeCertificatesResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let done = self.0.issuance.revoke_ids(&p, r.reason_code, &r.ids).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeCertificatesResponse {
            certificates: done.into_iter().map(summary_to_pb).collect(),
        }))
    }

    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> GrpcResult<pb::CertificateSummary> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let done = self
            .0
            .issuance
            .revoke_serial(&p, &r.profile_id, &r.serial_number, r.reason_code)
            .await
            .map_err(to_status)?;
        Ok(Response::new(summary_to_pb(done)))
    }

    async fn get_crl(&self, req: Request<pb::GetCrlRequest>) -> GrpcResult<pb::Crl> {
        let crl = self.0.issuance.crl(&req.into_inner().authority_id).await.map_err(to_status)?;
        Ok(Response::new(pb::Crl {
            crl_pem: pem_encode(PEM_X509_CRL, &crl.crl_der),
            crl_number: u64::try_from(crl.crl_number)
                .map_err(|_| to_status(ServiceError::Internal("negative CRL number".into())))?,
            this_update: crl.this_update,
            next_update: crl.next_update,
            crl_der: crl.crl_der,
        }))
    }
}
