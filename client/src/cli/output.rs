//! How the CLI prints results: a tiny aligned-column [`Table`] for people and `serde_json` values
//! for programs (enum values by their lower-case names, bytes as hex, times as Unix seconds).
//! [`super::run`] picks one per command according to `--output`.

use cardhsm_client::names::{card_state_name, revoke_reason_name, role_name};
use cardhsm_client::v1::{
    CardInfo, CardKey, CardState, ListReadersResponse, PageResponse, ReaderEvent, ReaderEventKind, TokenInfo,
    User, WhoAmIResponse,
};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Columns of text, left-aligned, two spaces apart, without trailing blanks.
#[derive(Debug, Default)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first line names the columns.
    pub fn new(header: &[&str]) -> Self {
        Self { header: Some(header.iter().map(|h| (*h).to_owned()).collect()), rows: Vec::new() }
    }

    /// A table without a header line (for `name: value` listings).
    pub fn without_header() -> Self {
        Self::default()
    }

    /// Adds a row; cells are made printable (control characters escaped), and empty ones show `-`.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows.push(cells.into_iter().map(|c| printable(c.as_ref())).collect());
        self
    }

    /// The table as text, one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let lines: Vec<&Vec<String>> = self.header.iter().chain(&self.rows).collect();
        let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line.iter()) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for empty text; control characters (newlines, escape sequences from a hostile label)
/// escaped so they cannot break the layout or drive the terminal.
fn printable(text: &str) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`; `-` for 0 (unset).
pub fn time(unix: i64) -> String {
    if unix == 0 {
        return "-".to_owned();
    }
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn roles(values: &[i32]) -> Vec<String> {
    values.iter().map(|&r| role_name(r).into_owned()).collect()
}

/// Unknown memory sizes (`CK_UNAVAILABLE_INFORMATION`) are `u64::MAX`; JSON says `null`.
fn memory(value: u64) -> Value {
    if value == u64::MAX { Value::Null } else { json!(value) }
}

fn page_json(page: Option<&PageResponse>) -> (String, u64) {
    page.map_or((String::new(), 0), |p| (p.next_page_token.clone(), p.total_count))
}

/// A "(N of TOTAL things; next page: --page-token T)" line under a paged table.
pub fn page_footer(shown: usize, page: Option<&PageResponse>, things: &str) -> String {
    let (next, total) = page_json(page);
    let mut out = format!("({shown} of {total} {things}");
    if !next.is_empty() {
        let _ = write!(out, "; next page: --page-token {}", printable(&next));
    }
    out.push_str(")\n");
    out
}

// ---- cards ----

fn revoke_reason(card: &CardInfo) -> Option<String> {
    (card.state == i32::from(CardState::Revoked)).then(|| revoke_reason_name(card.revoke_reason).into_owned())
}

fn key_json(key: &CardKey) -> Value {
    json!({
        "key_id": key.key_id,
        "label": key.label,
        "algorithm": key.algorithm,
        "public_key_der": hex(&key.public_key_der),
        "certificate": key.certificate.as_ref().map(|c| json!({
            "certificate_id": c.certificate_id,
            "serial_number": c.serial_number,
            "status": c.status,
            "fingerprint": c.fingerprint,
            "not_after": c.not_after,
            "certificate_pem": c.certificate_pem,
        })),
    })
}

/// One card as JSON.
pub fn card_json(card: &CardInfo) -> Value {
    json!({
        "id": card.id,
        "serial_number": card.serial_number,
        "atr": card.atr,
        "label": card.label,
        "state": card_state_name(card.state),
        "pac_number": card.pac_number,
        "owner": card.owner,
        "token_present": card.token_present,
        "policy": card.policy,
        "pending_policy": card.pending_policy,
        "revoke_reason": revoke_reason(card),
        "keys": card.keys.iter().map(key_json).collect::<Vec<_>>(),
        "created_at": card.created_at,
        "updated_at": card.updated_at,
    })
}

/// One card for people: its fields, then its keys.
pub fn card_table(card: &CardInfo) -> String {
    let mut fields = Table::without_header();
    fields
        .row(["id:", &card.id])
        .row(["serial number:", &card.serial_number])
        .row(["owner:", &card.owner])
        .row(["state:", &card_state_name(card.state)])
        .row(["label:", &card.label])
        .row(["pac number:", &card.pac_number])
        .row(["policy:", &card.policy]);
    if !card.pending_policy.is_empty() {
        fields.row(["pending policy:", &card.pending_policy]);
    }
    if let Some(reason) = revoke_reason(card) {
        fields.row(["revoke reason:", &reason]);
    }
    fields
        .row(["token present:", yes_no(card.token_present)])
        .row(["atr:", &card.atr])
        .row(["created:", &time(card.created_at)])
        .row(["updated:", &time(card.updated_at)]);
    let mut out = fields.render();
    if !card.keys.is_empty() {
        let mut keys = Table::new(&["KEY ID", "LABEL", "ALGORITHM", "PUBLIC KEY", "CERTIFICATE"]);
        for key in &card.keys {
            let certificate = match &key.certificate {
                Some(c) => format!("{} serial {} until {}", c.status, c.serial_number, time(c.not_after)),
                None => "-".to_owned(),
            };
            keys.row([
                key.key_id.clone(),
                key.label.clone(),
                key.algorithm.clone(),
                format!("{} bytes DER", key.public_key_der.len()),
                certificate,
            ]);
        }
        out.push('\n');
        out.push_str(&keys.render());
    }
    out
}

/// A page of cards as JSON.
pub fn cards_json(cards: &[CardInfo], page: Option<&PageResponse>) -> Value {
    let (next, total) = page_json(page);
    json!({
        "cards": cards.iter().map(card_json).collect::<Vec<_>>(),
        "next_page_token": next,
        "total_count": total,
    })
}

/// A page of cards for people.
pub fn cards_table(cards: &[CardInfo], page: Option<&PageResponse>) -> String {
    let mut table =
        Table::new(&["ID", "SERIAL", "OWNER", "STATE", "POLICY", "LABEL", "PAC", "PRESENT", "UPDATED"]);
    for card in cards {
        table.row([
            card.id.clone(),
            card.serial_number.clone(),
            card.owner.clone(),
            card_state_name(card.state).into_owned(),
            card.policy.clone(),
            card.label.clone(),
            card.pac_number.clone(),
            yes_no(card.token_present).to_owned(),
            time(card.updated_at),
        ]);
    }
    table.render() + &page_footer(cards.len(), page, "cards")
}

// ---- tokens ----

fn token_json(token: &TokenInfo) -> Value {
    json!({
        "slot_id": token.slot_id,
        "label": token.label,
        "serial_number": token.serial_number,
        "manufacturer": token.manufacturer,
        "model": token.model,
        "present": token.present,
        "available": token.available,
        "role": token.role,
        "free_public_memory": memory(token.free_public_memory),
        "total_public_memory": memory(token.total_public_memory),
        "free_private_memory": memory(token.free_private_memory),
        "total_private_memory": memory(token.total_private_memory),
        "card_id": token.card_id,
    })
}

/// The daemon's tokens as JSON.
pub fn tokens_json(tokens: &[TokenInfo]) -> Value {
    json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>() })
}

/// The daemon's tokens for people.
pub fn tokens_table(tokens: &[TokenInfo]) -> String {
    let mut table = Table::new(&[
        "SLOT",
        "LABEL",
        "SERIAL",
        "MANUFACTURER",
        "MODEL",
        "ROLE",
        "PRESENT",
        "AVAILABLE",
        "CARD",
    ]);
    for token in tokens {
        table.row([
            token.slot_id.to_string(),
            token.label.clone(),
            token.serial_number.clone(),
            token.manufacturer.clone(),
            token.model.clone(),
            token.role.clone(),
            yes_no(token.present).to_owned(),
            yes_no(token.available).to_owned(),
            token.card_id.clone(),
        ]);
    }
    table.render()
}

// ---- readers ----

/// The PC/SC readers as JSON.
pub fn readers_json(list: &ListReadersResponse) -> Value {
    json!({
        "service_available": list.service_available,
        "readers": list.readers.iter().map(|r| json!({
            "name": r.name,
            "card_present": r.card_present,
            "atr": r.atr,
            "card_serial": r.card_serial,
        })).collect::<Vec<_>>(),
    })
}

/// The PC/SC readers for people.
pub fn readers_table(list: &ListReadersResponse) -> String {
    let mut table = Table::new(&["READER", "CARD", "ATR", "TOKEN SERIAL"]);
    for r in &list.readers {
        table.row([r.name.clone(), yes_no(r.card_present).to_owned(), r.atr.clone(), r.card_serial.clone()]);
    }
    let mut out = table.render();
    if !list.service_available {
        out.push_str("(pcscd is not answering)\n");
    }
    out
}

fn reader_event_kind(kind: i32) -> &'static str {
    match ReaderEventKind::try_from(kind) {
        Ok(ReaderEventKind::ReaderAdded) => "reader-added",
        Ok(ReaderEventKind::ReaderRemoved) => "reader-removed",
        Ok(ReaderEventKind::CardInserted) => "card-inserted",
        Ok(ReaderEventKind::CardRemoved) => "card-removed",
        _ => "unknown",
    }
}

/// One reader event as a JSON line.
pub fn reader_event_json(e: &ReaderEvent) -> Value {
    json!({
        "event": reader_event_kind(e.kind),
        "reader": e.reader,
        "atr": e.atr,
        "card_serial": e.card_serial,
        "at_ms": e.at_ms,
    })
}

/// One reader event for people: `card-inserted  Virtual PCD 00 00  atr 3b…  token 8899…`.
pub fn reader_event_line(e: &ReaderEvent) -> String {
    let mut line = format!("{:<15} {}", reader_event_kind(e.kind), printable(&e.reader));
    if !e.atr.is_empty() {
        let _ = write!(line, "  atr {}", e.atr);
    }
    if !e.card_serial.is_empty() {
        let _ = write!(line, "  token {}", printable(&e.card_serial));
    }
    line
}

// ---- users and identity ----

/// One user as JSON.
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "roles": roles(&user.roles),
        "enabled": user.enabled,
        "created_at": user.created_at,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "phone": user.phone,
        "email": user.email,
    })
}

/// One user for people.
pub fn user_table(user: &User) -> String {
    let mut table = Table::without_header();
    table
        .row(["id:", &user.id])
        .row(["username:", &user.username])
        .row(["roles:", &roles(&user.roles).join(",")])
        .row(["enabled:", yes_no(user.enabled)])
        .row(["created:", &time(user.created_at)])
        .row(["first name:", &user.first_name])
        .row(["last name:", &user.last_name])
        .row(["phone:", &user.phone])
        .row(["email:", &user.email]);
    table.render()
}

/// A page of users as JSON.
pub fn users_json(users: &[User], page: Option<&PageResponse>) -> Value {
    let (next, total) = page_json(page);
    json!({
        "users": users.iter().map(user_json).collect::<Vec<_>>(),
        "next_page_token": next,
        "total_count": total,
    })
}

/// A page of users for people.
pub fn users_table(users: &[User], page: Option<&PageResponse>) -> String {
    let mut table = Table::new(&["ID", "USERNAME", "ROLES", "ENABLED", "CREATED"]);
    for user in users {
        table.row([
            user.id.clone(),
            user.username.clone(),
            roles(&user.roles).join(","),
            yes_no(user.enabled).to_owned(),
            time(user.created_at),
        ]);
    }
    table.render() + &page_footer(users.len(), page, "users")
}

/// The caller as JSON.
pub fn whoami_json(me: &WhoAmIResponse) -> Value {
    json!({
        "user_id": me.user_id,
        "username": me.username,
        "roles": roles(&me.roles),
        "expires_at": me.expires_at,
    })
}

/// The caller for people.
pub fn whoami_table(me: &WhoAmIResponse) -> String {
    let mut table = Table::without_header();
    table
        .row(["username:", &me.username])
        .row(["user id:", &me.user_id])
        .row(["roles:", &roles(&me.roles).join(",")])
        .row(["token expires:", &time(me.expires_at)]);
    table.render()
}

/// A login as JSON (never the tokens).
pub fn login_json(endpoint: &str, username: &str, role_values: &[i32], expires_at: i64) -> Value {
    json!({
        "endpoint": endpoint,
        "username": username,
        "roles": roles(role_values),
        "access_expires_at": expires_at,
    })
}

/// A login for people (never the tokens).
pub fn login_table(endpoint: &str, username: &str, role_values: &[i32], expires_at: i64) -> String {
    format!(
        "logged in to {} as {} (roles: {}); access token expires {}\n",
        printable(endpoint),
        printable(username),
        printable(&roles(role_values).join(",")),
        time(expires_at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardhsm_client::v1::{RevokeReason, Role};

    #[test]
    fn table_aligns_columns_without_trailing_blanks() {
        let mut table = Table::new(&["ID", "STATE", "OWNER"]);
        table.row(["c-1", "active", "alice@corp.example"]).row(["card-22", "pending-update", ""]);
        assert_eq!(
            table.render(),
            "ID       STATE           OWNER\n\
             c-1      active          alice@corp.example\n\
             card-22  pending-update  -\n"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut table = Table::new(&["NAME", "X"]);
        table.row(["Jürgen", "1"]).row(["Al", "2"]);
        assert_eq!(table.render(), "NAME    X\nJürgen  1\nAl      2\n");
    }

    #[test]
    fn table_escapes_control_characters() {
        let mut table = Table::without_header();
        table.row(["label:", "evil\n\u{1b}[31mred"]);
        assert_eq!(table.render(), "label:  evil\\n\\u{1b}[31mred\n");
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
        assert_eq!(Table::without_header().render(), "");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1), "1970-01-01 00:00:01 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(time(-86_400), "1969-12-31 00:00:00 UTC");
    }

    fn revoked_card() -> CardInfo {
        CardInfo {
            id: "c-1".into(),
            serial_number: "0123".into(),
            state: CardState::Revoked.into(),
            revoke_reason: RevokeReason::UserRemoved.into(),
            owner: "alice@corp.example".into(),
            keys: vec![CardKey {
                key_id: "01".into(),
                label: "auth".into(),
                algorithm: "EC:P-256".into(),
                public_key_der: vec![0x30, 0x59, 0xff],
                certificate: Some(cardhsm_client::v1::CardCertificate {
                    certificate_id: "cert-1".into(),
                    serial_number: "0a1b".into(),
                    status: "REVOKED".into(),
                    fingerprint: "ab".repeat(20),
                    not_after: 1_700_000_000,
                    certificate_pem: String::new(),
                }),
            }],
            created_at: 1_700_000_000,
            ..CardInfo::default()
        }
    }

    #[test]
    fn card_json_uses_names_and_hex() {
        let value = card_json(&revoked_card());
        assert_eq!(value["state"], "revoked");
        assert_eq!(value["revoke_reason"], "user-removed");
        assert_eq!(value["keys"][0]["public_key_der"], "3059ff");
        assert_eq!(value["keys"][0]["certificate"]["status"], "REVOKED");
        assert_eq!(value["keys"][0]["certificate"]["serial_number"], "0a1b");
        assert_eq!(value["created_at"], 1_700_000_000);
        let active = CardInfo { state: CardState::Active.into(), ..revoked_card() };
        assert_eq!(card_json(&active)["revoke_reason"], Value::Null);
        assert_eq!(card_json(&active)["state"], "active");
    }

    #[test]
    fn card_table_shows_fields_and_keys() {
        let text = card_table(&revoked_card());
        assert!(text.contains("state:          revoked\n"), "{text}");
        assert!(text.contains("revoke reason:  user-removed\n"), "{text}");
        assert!(text.contains("KEY ID  LABEL  ALGORITHM  PUBLIC KEY   CERTIFICATE\n"), "{text}");
        assert!(
            text.contains(
                "01      auth   EC:P-256   3 bytes DER  REVOKED serial 0a1b until 2023-11-14 22:13:20 UTC\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn paged_lists_show_the_next_token() {
        let page = PageResponse { next_page_token: "p2".into(), total_count: 3 };
        let text = cards_table(&[revoked_card()], Some(&page));
        assert!(text.ends_with("(1 of 3 cards; next page: --page-token p2)\n"), "{text}");
        let value = cards_json(&[], Some(&page));
        assert_eq!(value["next_page_token"], "p2");
        assert_eq!(value["total_count"], 3);
        assert_eq!(users_table(&[], None), "ID  USERNAME  ROLES  ENABLED  CREATED\n(0 of 0 users)\n");
    }

    #[test]
    fn users_and_tokens() {
        let user = User {
            id: "u-1".into(),
            username: "bob".into(),
            roles: vec![Role::Admin.into(), Role::Operator.into()],
            enabled: true,
            created_at: 0,
            ..Default::default()
        };
        assert_eq!(user_json(&user)["roles"], json!(["admin", "operator"]));
        assert!(users_table(&[user], None).contains("u-1  bob       admin,operator  yes      -\n"));
        let token = TokenInfo {
            slot_id: 7,
            free_public_memory: u64::MAX,
            total_public_memory: 10,
            ..TokenInfo::default()
        };
        let value = tokens_json(&[token]);
        assert_eq!(value["tokens"][0]["slot_id"], 7);
        assert_eq!(value["tokens"][0]["free_public_memory"], Value::Null);
        assert_eq!(value["tokens"][0]["total_public_memory"], 10);
    }

    #[test]
    fn login_output_has_no_tokens() {
        let value = login_json("http://h:1", "admin", &[Role::Admin.into()], 5);
        assert_eq!(
            value,
            json!({"endpoint": "http://h:1", "username": "admin", "roles": ["admin"], "access_expires_at": 5})
        );
    }
}
