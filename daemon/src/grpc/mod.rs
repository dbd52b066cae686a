//! Wire layer for gRPC: the tonic server with our services, the standard health and
//! reflection services, TLS (optionally client-certificate TLS), and the authentication layer
//! that every request passes first.

mod admins;
mod auth_layer;
mod batches;
mod certstore;
mod convert;
mod ecosystems;
mod handlers;
mod issuance;
mod organizations;
mod sessions;
pub mod status;
mod system;

pub use auth_layer::principal;

use crate::service::Services;
use cardhsm_proto::v1 as pb;
use hsm_config::ServerConfig;
use std::future::Future;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: cannot read {path}: {message}")]
    TlsFile { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Tls(tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Transport(tonic::transport::Error),
}

/// Serves until `shutdown` resolves, then drains in-flight calls.
pub async fn serve(
    config: &ServerConfig,
    listener: tokio::net::TcpListener,
    services: Services,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<pb::auth_service_server::AuthServiceServer<handlers::AuthApi>>().await;
    health.set_serving::<pb::card_service_server::CardServiceServer<handlers::CardApi>>().await;
    health.set_serving::<pb::user_service_server::UserServiceServer<handlers::UserApi>>().await;
    health.set_serving::<pb::session_service_server::SessionServiceServer<sessions::SessionApi>>().await;
    health.set_serving::<pb::issuance_service_server::IssuanceServiceServer<issuance::IssuanceApi>>().await;
    health
        .set_serving::<pb::certificate_store_service_server::CertificateStoreServiceServer<certstore::CertStoreApi>>()
        .await;
    health
        .set_serving::<pb::organization_service_server::OrganizationServiceServer<organizations::OrganizationApi>>()
        .await;

    health.set_serving::<pb::batch_service_server::BatchServiceServer<batches::BatchApi>>().await;
    health.set_serving::<pb::admin_service_server::AdminServiceServer<admins::AdminApi>>().await;
    health
        .set_serving::<pb::ecosystem_service_server::EcosystemServiceServer<ecosystems::EcosystemApi>>()
        .await;
    health
        .set_serving::<pb::privilege_service_server::PrivilegeServiceServer<ecosystems::PrivilegeApi>>()
        .await;
    health.set_serving::<pb::system_service_server::SystemServiceServer<system::SystemApi>>().await;
    // Per-subsystem entries (cardhsm.store, cardhsm.token.<serial>, cardhsm.readers).
    services.system.spawn_health(health.clone());
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cardhsm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cardhsm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| ServeError::TlsFile { path: p.display().to_string(), message: e.to_string() })
        };
        let mut tls_config =
            ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert_file)?, read(&tls.key_file)?));
        if let Some(ca) = &tls.client_ca_file {
            tls_config = tls_config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(tls_config).map_err(ServeError::Tls)?;
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // Uploads are checked per field against `max_upload_bytes` by the services (an error that
    // names the field); the transport limit leaves room for a message with several of them.
    let max_message =
        usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX).saturating_mul(2) + 64 * 1024;
    builder
        .layer(auth_layer::AuthLayer::new(services.auth.clone(), services.admins.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::auth_service_server::AuthServiceServer::new(handlers::AuthApi(services.clone())))
        .add_service(pb::card_service_server::CardServiceServer::new(handlers::CardApi(services.clone())))
        .add_service(
            pb::issuance_service_server::IssuanceServiceServer::new(issuance::IssuanceApi(services.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            pb::certificate_store_service_server::CertificateStoreServiceServer::new(
                certstore::CertStoreApi(services.clone()),
            )
            .max_decoding_message_size(max_message),
        )
        .add_service(
            pb::organization_service_server::OrganizationServiceServer::new(organizations::OrganizationApi(
                services.clone(),
            ))
            .max_decoding_message_size(max_message),
        )
        .add_service(
            pb::batch_service_server::BatchServiceServer::new(batches::BatchApi(services.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(pb::admin_service_server::AdminServiceServer::new(admins::AdminApi(services.clone())))
        .add_service(pb::ecosystem_service_server::EcosystemServiceServer::new(ecosystems::EcosystemApi(
            services.clone(),
        )))
        .add_service(pb::privilege_service_server::PrivilegeServiceServer::new(ecosystems::PrivilegeApi(
            services.clone(),
        )))
        .add_service(pb::session_service_server::SessionServiceServer::new(sessions::SessionApi(
            services.clone(),
        )))
        .add_service(
            pb::system_service_server::SystemServiceServer::new(system::SystemApi(services.clone()))
                .max_decoding_message_size(crate::service::backup::MAX_ARCHIVE_BYTES + 64 * 1024),
        )
        .add_service(pb::user_service_server::UserServiceServer::new(handlers::UserApi(services)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(ServeError::Transport)
}
