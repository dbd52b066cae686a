//! REST routes of the batch PKI platform (`/auth/...`, `/api/v1/...`): field names in
//! camelCase as its clients send them, errors in the plain shape.

pub mod auth;
pub mod batches;
pub mod certificates;
pub mod directory;

use super::Routes;

pub fn routes() -> Routes {
    auth::routes().merge(batches::routes()).merge(certificates::routes()).merge(directory::routes())
}

/// Every rule of the family.
#[cfg(test)]
pub fn rules() -> Vec<super::auth::Rule> {
    [auth::RULES, batches::RULES, certificates::RULES, directory::RULES].concat()
}
