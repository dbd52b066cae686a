//! Page tokens for list calls: opaque to clients, an offset to us.

use super::ServiceError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A decoded page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

/// Checks `page_size` (0 = default) and decodes `page_token` ("" = first page). `field` is the
/// request field holding the paging message, for error messages.
pub fn decode(field: &str, page_size: u32, page_token: &str) -> Result<Page, ServiceError> {
    if page_size > MAX_PAGE_SIZE {
        return Err(ServiceError::invalid(
            format!("{field}.page_size"),
            format!("must be at most {MAX_PAGE_SIZE}"),
        ));
    }
    let limit = if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size } as u64;
    if page_token.is_empty() {
        return Ok(Page { offset: 0, limit });
    }
    let bad = || ServiceError::invalid(format!("{field}.page_token"), "is not a token this server issued");
    let raw = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let offset = text.strip_prefix("o:").and_then(|n| n.parse::<u64>().ok()).ok_or_else(bad)?;
    Ok(Page { offset, limit })
}

/// The token for the page after `page`, or "" when `total` is reached.
pub fn next_token(page: Page, returned: usize, total: u64) -> String {
    let next = page.offset + returned as u64;
    if returned == 0 || next >= total { String::new() } else { URL_SAFE_NO_PAD.encode(format!("o:{next}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_last_page() {
        let first = decode("page", 0, "").expect("first");
        assert_eq!(first, Page { offset: 0, limit: 100 });
        let token = next_token(Page { offset: 0, limit: 2 }, 2, 5);
        assert_eq!(decode("page", 2, &token).expect("next"), Page { offset: 2, limit: 2 });
        assert_eq!(next_token(Page { offset: 4, limit: 2 }, 1, 5), "");
    }

    #[test]
    fn bad_size_and_token_name_the_field() {
        match decode("page", 1001, "") {
            Err(ServiceError::InvalidArgument { field, .. }) => assert_eq!(field, "page.page_size"),
            other => panic!("{other:?}"),
        }
        match decode("page", 0, "garbage!") {
            Err(ServiceError::InvalidArgument { field, .. }) => assert_eq!(field, "page.page_token"),
            other => panic!("{other:?}"),
        }
    }
}
