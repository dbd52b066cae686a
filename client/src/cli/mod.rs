//! The `cardhsm` tool's own modules: argument definitions, command execution (PKI commands in
//! [`issuance`]), password input and output formatting. `main` parses [`args::Cli`] and hands it
//! to [`run::run`].

pub mod admins;
pub mod args;
pub mod batches;
pub mod issuance;
pub mod orgs;
pub mod output;
pub mod password;
pub mod privileges;
pub mod run;
pub mod sessions;
pub mod store;
pub mod system;
pub mod users;
