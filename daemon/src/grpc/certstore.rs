//! gRPC handlers of `cardhsm.v1.CertificateStoreService`: decode a request, call the
//! certificate-store service with the caller's principal, encode the answer (domain ↔ wire
//! mapping included here, since it concerns only this service). No logic lives here.

use super::auth_layer::principal;
use super::convert::hex;
use super::status::{GrpcResult, to_status};
use crate::pki::{self, NameParts, PEM_CERTIFICATE, PEM_CERTIFICATE_REQUEST, pem_encode};
use crate::service::Services;
use crate::service::certstore::{CsrKeyType, CsrRequest, Curve, ImportRequest, StoredCertificate};
use crate::service::issuance::Password;
use cardhsm_proto::v1 as pb;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::{Request, Response};
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct CertStoreApi(pub Services);

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn dn_to_pb(p: NameParts) -> pb::DistinguishedName {
    pb::DistinguishedName {
        cn: p.cn.unwrap_or_default(),
        o: p.o.unwrap_or_default(),
        ou: p.ou.unwrap_or_default(),
        l: p.l.unwrap_or_default(),
        s: p.s.unwrap_or_default(),
        c: p.c.unwrap_or_default(),
    }
}

fn stored_to_pb(s: StoredCertificate) -> pb::StoredCertificate {
    let c = s.cert;
    pb::StoredCertificate {
        fingerprint: c.sha1_fingerprint,
        sha256_fingerprint: c.sha256_fingerprint,
        subject: Some(dn_to_pb(pki::name_parts(&c.subject))),
        issuer: Some(dn_to_pb(pki::name_parts(&c.issuer))),
        id: hex(&s.id),
        label: s.label,
        start_date: unix(c.not_before),
        end_date: unix(c.not_after),
        protected: s.protected,
        system_use_only: s.system_use_only,
        has_private_key: s.has_private_key,
        certificate_pem: pem_encode(PEM_CERTIFICATE, &c.der),
        subject_dn: c.subject_dn,
        issuer_dn: c.issuer_dn,
        serial_number: c.serial_hex,
        source: s.source.map(|x| x.as_str().to_owned()).unwrap_or_default(),
    }
}

fn key_type_from_pb(v: i32) -> Option<CsrKeyType> {
    match pb::CsrKeyType::try_from(v).ok()? {
        pb::CsrKeyType::Ecdsa => Some(CsrKeyType::Ecdsa),
        pb::CsrKeyType::Rsa => Some(CsrKeyType::Rsa),
        pb::CsrKeyType::Unspecified => None,
    }
}

fn curve_from_pb(v: i32) -> Option<Curve> {
    match pb::EcCurve::try_from(v) {
        Ok(pb::EcCurve::Unspecified) => None,
        Ok(pb::EcCurve::P256) => Some(Curve::P256),
        Ok(pb::EcCurve::P384) => Some(Curve::P384),
        Err(_) => Some(Curve::Unknown(v)),
    }
}

#[tonic::async_trait]
impl pb::certificate_store_service_server::CertificateStoreService for CertStoreApi {
    async fn list_certificates(
        &self,
        req: Request<pb::ListCertificatesRequest>,
    ) -> GrpcResult<pb::ListCertificatesResponse> {
        let r = req.into_inner();
        let found = self.0.certstore.list(&r.token, &r.id).await.map_err(to_status)?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: found.into_iter().map(stored_to_pb).collect(),
        }))
    }

    async fn import_certificate(
        &self,
        req: Request<pb::ImportCertificateRequest>,
    ) -> GrpcResult<pb::ImportCertificateResponse> {
        let p = principal(&req)?;
        let mut r = req.into_inner();
        let request = ImportRequest {
            token: r.token,
            cert: r.cert,
            private_key: Zeroizing::new(std::mem::take(&mut r.private_key)),
            password: Password(Zeroizing::new(std::mem::take(&mut r.password))),
            id: r.id,
            label: r.label,
            protected: r.protected,
            system_use_only: r.system_use_only,
        };
        let done = if r.certificate_only {
            self.0.certstore.import_without_key(&p, request).await
        } else {
            self.0.certstore.import(&p, request).await
        }
        .map_err(to_status)?;
        Ok(Response::new(pb::ImportCertificateResponse {
            fingerprint: done.certificate.cert.sha1_fingerprint.clone(),
            replaced: done.replaced.unwrap_or_default(),
            certificate: Some(stored_to_pb(done.certificate)),
        }))
    }

    async fn delete_certificate(
        &self,
        req: Request<pb::DeleteCertificateRequest>,
    ) -> GrpcResult<pb::DeleteCertificateResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let deleted = self.0.certstore.delete(&p, &r.token, &r.id).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteCertificateResponse { deleted }))
    }

    async fn create_csr(&self, req: Request<pb::CreateCsrRequest>) -> GrpcResult<pb::CreateCsrResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let request = CsrRequest {
            token: r.token,
            subject: r.subject,
            key_type: key_type_from_pb(r.key_type),
            curve: curve_from_pb(r.curve),
            rsa_bits: r.rsa_bits,
        };
        let csr = self.0.certstore.create_csr(&p, request).await.map_err(to_status)?;
        Ok(Response::new(pb::CreateCsrResponse {
            csr_pem: pem_encode(PEM_CERTIFICATE_REQUEST, &csr.csr_der),
            id: hex(&csr.object_id),
            key_algorithm: csr.key_algorithm,
            csr_id: csr.id,
        }))
    }

    async fn complete_csr(&self, req: Request<pb::CompleteCsrRequest>) -> GrpcResult<pb::StoredCertificate> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let stored = self
            .0
            .certstore
            .complete_csr(&p, &r.token, &r.csr_id, &r.certificate)
            .await
            .map_err(to_status)?;
        Ok(Response::new(stored_to_pb(stored)))
    }

    async fn delete_certificate_by_subject(
        &self,
        req: Request<pb::DeleteCertificateBySubjectRequest>,
    ) -> GrpcResult<pb::DeleteCertificateBySubjectResponse> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let done =
            self.0.certstore.delete_by_subject(&p, &r.token, &r.subject_cn).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteCertificateBySubjectResponse {
            deleted: done.certificates,
            deleted_csrs: done.csrs,
        }))
    }
}
