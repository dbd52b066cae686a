//! cardhsmd as a library: the layers of the daemon, top to bottom in request flow.
//!
//! `grpc/` decodes requests and encodes answers; `service/` holds the domain logic and
//! authorization; `store/` (SQLite) and `token/` (PKCS#11) are the back ends it drives.
//! `app` wires them together and runs the server.

pub mod app;
pub mod grpc;
pub mod metrics;
pub mod pki;
pub mod reader;
pub mod rest;
pub mod service;
pub mod store;
pub mod token;
