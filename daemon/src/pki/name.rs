//! Distinguished names, between the service layer and X.509: a subject typed by a user or a
//! profile template (`CN=device 1,O=Acme,C=CZ`) becomes a `Name` here before a certificate or
//! CSR is built; a `Name` read from a certificate is split into CN/O/OU/L/S/C for listings.

use super::PkiError;
use der::asn1::{Any, ObjectIdentifier};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
pub use x509_cert::name::Name;
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};

const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
const C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const STREET: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.9");
const O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const EMAIL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");
const DC: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25");
const UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");

/// How one attribute type is written and encoded.
struct AttrSpec {
    /// Names accepted when parsing (upper case); the first is the one rendered.
    names: &'static [&'static str],
    oid: ObjectIdentifier,
    tag: Tag,
    /// Upper bound in characters (RFC 5280 Appendix A `ub-*`).
    max_len: usize,
}

const ATTRS: &[AttrSpec] = &[
    AttrSpec { names: &["CN"], oid: CN, tag: Tag::Utf8String, max_len: 64 },
    AttrSpec { names: &["O"], oid: O, tag: Tag::Utf8String, max_len: 64 },
    AttrSpec { names: &["OU"], oid: OU, tag: Tag::Utf8String, max_len: 64 },
    AttrSpec { names: &["L"], oid: L, tag: Tag::Utf8String, max_len: 128 },
    AttrSpec { names: &["ST", "S"], oid: ST, tag: Tag::Utf8String, max_len: 128 },
    AttrSpec { names: &["C"], oid: C, tag: Tag::PrintableString, max_len: 2 },
    AttrSpec { names: &["STREET"], oid: STREET, tag: Tag::Utf8String, max_len: 128 },
    AttrSpec { names: &["SERIALNUMBER"], oid: SERIAL_NUMBER, tag: Tag::PrintableString, max_len: 64 },
    AttrSpec { names: &["E", "EMAILADDRESS"], oid: EMAIL, tag: Tag::Ia5String, max_len: 255 },
    AttrSpec { names: &["DC"], oid: DC, tag: Tag::Ia5String, max_len: 63 },
    AttrSpec { names: &["UID"], oid: UID, tag: Tag::Utf8String, max_len: 256 },
];

fn spec_by_name(name: &str) -> Option<&'static AttrSpec> {
    let upper = name.to_ascii_uppercase();
    ATTRS.iter().find(|s| s.names.contains(&upper.as_str()))
}

fn spec_by_oid(oid: &ObjectIdentifier) -> Option<&'static AttrSpec> {
    ATTRS.iter().find(|s| s.oid == *oid)
}

fn bad(detail: impl Into<String>) -> PkiError {
    PkiError::InvalidName { detail: detail.into() }
}

/// One character of the input and whether it came from an escape (escaped characters are
/// never separators and never trimmed).
#[derive(Clone, Copy)]
struct Ch {
    c: char,
    escaped: bool,
}

/// Parses an RFC 4514 string (`CN=device 1,O=Acme,OU=Ops,L=Brno,ST=JM,C=CZ`) into a `Name`.
///
/// - Order is RFC 4514's: most specific first; the DER sequence is the reverse (C first),
///   which is also what `openssl -subj /C=CZ/.../CN=device 1` makes.
/// - Attribute types (case-insensitive): CN, O, OU, L, ST (or S), C, STREET, SERIALNUMBER,
///   E (or emailAddress), DC, UID. `+` joins attributes into one multi-valued RDN.
/// - Escapes: `\,` `\+` `\"` `\\` `\<` `\>` `\;` `\=` `\#` `\ ` and `\XX` hex pairs (UTF-8
///   bytes). Unescaped spaces around types and values are ignored (`CN=a, O=b` works);
///   `"`, `;`, `<`, `>` must be escaped; `#` hex values are not accepted.
/// - Values: non-empty, within RFC 5280's upper bounds (CN/O/OU 64 characters, L/ST 128, …);
///   C is exactly two letters (upper-cased); SERIALNUMBER is PrintableString; E and DC ASCII.
pub fn parse_name(dn: &str) -> Result<Name, PkiError> {
    let chars = unescape(dn)?;
    if chars.iter().all(|ch| !ch.escaped && ch.c.is_whitespace()) {
        return Err(bad("the name is empty"));
    }
    let mut rdns = Vec::new();
    for rdn in split(&chars, ',') {
        let mut set = RelativeDistinguishedName::default();
        for atv in split(rdn, '+') {
            let atv = parse_atv(atv)?;
            // X.501: an attribute type occurs at most once in one RDN.
            if set.iter().any(|a| a.oid == atv.oid) {
                return Err(bad("an attribute type is repeated inside one multi-valued RDN"));
            }
            set.insert(atv).map_err(|e| PkiError::encoding("an RDN", e))?;
        }
        rdns.push(set);
    }
    rdns.reverse();
    let mut seq = RdnSequence::default();
    for rdn in rdns {
        seq.push(rdn);
    }
    let der = seq.to_der().map_err(|e| PkiError::encoding("a name", e))?;
    Name::from_der(&der).map_err(|e| PkiError::encoding("a name", e))
}

/// Resolves escapes. A `\XX` sequence run is collected as bytes and must be UTF-8.
fn unescape(dn: &str) -> Result<Vec<Ch>, PkiError> {
    let mut out = Vec::with_capacity(dn.len());
    let mut it = dn.chars().peekable();
    let mut pending: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, out: &mut Vec<Ch>| -> Result<(), PkiError> {
        if pending.is_empty() {
            return Ok(());
        }
        let s = std::str::from_utf8(pending).map_err(|_| bad("\\XX escapes do not form UTF-8"))?;
        out.extend(s.chars().map(|c| Ch { c, escaped: true }));
        pending.clear();
        Ok(())
    };
    while let Some(c) = it.next() {
        if c != '\\' {
            flush(&mut pending, &mut out)?;
            out.push(Ch { c, escaped: false });
            continue;
        }
        let Some(next) = it.next() else {
            return Err(bad("the name ends with a lone backslash"));
        };
        if next.is_ascii_hexdigit() {
            let Some(low) = it.next().filter(char::is_ascii_hexdigit) else {
                return Err(bad(format!("\\{next} is neither a special character nor a hex pair")));
            };
            let byte = u8::from_str_radix(&format!("{next}{low}"), 16).map_err(|_| bad("bad hex escape"))?;
            pending.push(byte);
            continue;
        }
        flush(&mut pending, &mut out)?;
        if matches!(next, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#' | ' ') {
            out.push(Ch { c: next, escaped: true });
        } else {
            return Err(bad(format!("\\{next} is not a valid escape")));
        }
    }
    flush(&mut pending, &mut out)?;
    Ok(out)
}

fn split(chars: &[Ch], sep: char) -> impl Iterator<Item = &[Ch]> {
    chars.split(move |ch| !ch.escaped && ch.c == sep)
}

fn trim(mut chars: &[Ch]) -> &[Ch] {
    while let Some((first, rest)) = chars.split_first() {
        if first.escaped || !first.c.is_whitespace() {
            break;
        }
        chars = rest;
    }
    while let Some((last, rest)) = chars.split_last() {
        if last.escaped || !last.c.is_whitespace() {
            break;
        }
        chars = rest;
    }
    chars
}

fn parse_atv(atv: &[Ch]) -> Result<AttributeTypeAndValue, PkiError> {
    let eq = atv
        .iter()
        .position(|ch| !ch.escaped && ch.c == '=')
        .ok_or_else(|| bad(format!("{:?} is not TYPE=value", collect(trim(atv)))))?;
    let (key, rest) = atv.split_at(eq);
    let key = collect(trim(key));
    if key.is_empty() {
        return Err(bad("an attribute has no type (empty RDN or stray separator?)"));
    }
    let spec = spec_by_name(&key).ok_or_else(|| {
        bad(format!(
            "unknown attribute type {key:?}: use CN, O, OU, L, ST, C, STREET, SERIALNUMBER, E, DC or UID"
        ))
    })?;
    let name = spec.names.first().copied().unwrap_or_default();
    let raw = trim(rest.get(1..).unwrap_or_default());
    if let Some(ch) = raw.iter().find(|ch| !ch.escaped && matches!(ch.c, '"' | ';' | '<' | '>')) {
        return Err(bad(format!("{name}: the character {:?} must be escaped with a backslash", ch.c)));
    }
    if raw.first().is_some_and(|ch| !ch.escaped && ch.c == '#') {
        return Err(bad(format!("{name}: hex-encoded (#) values are not accepted")));
    }
    let mut value = collect(raw);
    if value.is_empty() {
        return Err(bad(format!("{name} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("{name} contains a control character")));
    }
    let len = value.chars().count();
    if len > spec.max_len {
        return Err(bad(format!("{name} is {len} characters long, at most {} allowed", spec.max_len)));
    }
    if spec.oid == C {
        if len != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad(format!("C must be a two-letter country code, not {value:?}")));
        }
        value = value.to_ascii_uppercase();
    } else if spec.tag == Tag::PrintableString
        && let Some(c) = value.chars().find(|c| !is_printable(*c))
    {
        return Err(bad(format!("{name} may not contain {c:?} (PrintableString)")));
    } else if spec.tag == Tag::Ia5String && !value.is_ascii() {
        return Err(bad(format!("{name} must be ASCII")));
    }
    let value = Any::new(spec.tag, value.into_bytes()).map_err(|e| PkiError::encoding("an attribute", e))?;
    Ok(AttributeTypeAndValue { oid: spec.oid, value })
}

fn collect(chars: &[Ch]) -> String {
    chars.iter().map(|ch| ch.c).collect()
}

/// The PrintableString alphabet (X.680).
fn is_printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// The text of a directory string value, whatever string type encodes it; None for a value
/// that is not a string.
pub(crate) fn attr_text(value: &Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Tag::PrintableString | Tag::Ia5String | Tag::VisibleString | Tag::NumericString => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        // T.61 is in practice written as Latin-1.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let pairs = bytes.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units: Vec<u16> = pairs.map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 4514 rendering, most specific RDN first: `CN=device 1,O=Acme,C=CZ`. Known types use
/// their short names (ST for stateOrProvinceName); other types and non-string values are
/// written as `OID=#hex` of the value's DER. `parse_name(format_name(n))` gives `n` back for
/// names `parse_name` can make.
pub fn format_name(name: &Name) -> String {
    let rdns: Vec<String> =
        name.iter_rdn().map(|rdn| rdn.iter().map(format_atv).collect::<Vec<_>>().join("+")).collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn format_atv(atv: &AttributeTypeAndValue) -> String {
    let key = spec_by_oid(&atv.oid).and_then(|s| s.names.first().copied());
    match (key, attr_text(&atv.value)) {
        (Some(key), Some(text)) => format!("{key}={}", escape_value(&text)),
        _ => {
            let hex = atv.value.to_der().map(|d| super::pem::to_hex(&d)).unwrap_or_default();
            format!("{}=#{hex}", atv.oid)
        }
    }
}

fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A name split into the parts device APIs list. A part that occurs more than once (two OUs)
/// has its values joined with ", " in certificate (DER) order; a missing part is None.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameParts {
    pub cn: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub l: Option<String>,
    /// stateOrProvinceName (ST), called S by device APIs.
    pub s: Option<String>,
    pub c: Option<String>,
}

/// Splits a name into CN, O, OU, L, S(T), C. Other attributes are left out.
pub fn name_parts(name: &Name) -> NameParts {
    let mut parts = NameParts::default();
    for atv in name.iter() {
        let slot = match atv.oid {
            oid if oid == CN => &mut parts.cn,
            oid if oid == O => &mut parts.o,
            oid if oid == OU => &mut parts.ou,
            oid if oid == L => &mut parts.l,
            oid if oid == ST => &mut parts.s,
            oid if oid == C => &mut parts.c,
            _ => continue,
        };
        let Some(text) = attr_text(&atv.value) else { continue };
        match slot {
            Some(existing) => {
                existing.push_str(", ");
                existing.push_str(&text);
            }
            None => *slot = Some(text),
        }
    }
    parts
}

/// The RFC 4514 string of the parts that are set, most specific first (`CN=…,OU=…,O=…,L=…,
/// ST=…,C=…`), each value escaped: the subject [`parse_name`] takes back, for APIs that send
/// a subject as separate fields.
pub fn format_parts(parts: &NameParts) -> String {
    let keyed = [
        ("CN", &parts.cn),
        ("OU", &parts.ou),
        ("O", &parts.o),
        ("L", &parts.l),
        ("ST", &parts.s),
        ("C", &parts.c),
    ];
    keyed
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|v| format!("{key}={}", escape_value(v))))
        .collect::<Vec<_>>()
        .join(",")
}

/// The first CN of a name, if any.
pub fn common_name(name: &Name) -> Option<String> {
    name.iter().find(|atv| atv.oid == CN).and_then(|atv| attr_text(&atv.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_order(name: &Name) -> Vec<(String, Tag, String)> {
        name.iter()
            .map(|a| (a.oid.to_string(), a.value.tag(), attr_text(&a.value).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn parses_the_usual_subject() {
        let n = parse_name("CN=device 1,O=Acme,OU=Ops,L=Brno,ST=JM,C=CZ").expect("parses");
        let got = der_order(&n);
        let want = [
            ("2.5.4.6", Tag::PrintableString, "CZ"),
            ("2.5.4.8", Tag::Utf8String, "JM"),
            ("2.5.4.7", Tag::Utf8String, "Brno"),
            ("2.5.4.11", Tag::Utf8String, "Ops"),
            ("2.5.4.10", Tag::Utf8String, "Acme"),
            ("2.5.4.3", Tag::Utf8String, "device 1"),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1, g.2.as_str()), w);
        }
        assert_eq!(format_name(&n), "CN=device 1,O=Acme,OU=Ops,L=Brno,ST=JM,C=CZ");
        let parts = name_parts(&n);
        assert_eq!(
            parts,
            NameParts {
                cn: Some("device 1".into()),
                o: Some("Acme".into()),
                ou: Some("Ops".into()),
                l: Some("Brno".into()),
                s: Some("JM".into()),
                c: Some("CZ".into()),
            }
        );
        assert_eq!(common_name(&n).as_deref(), Some("device 1"));
    }

    #[test]
    fn aliases_spaces_and_case() {
        let a = parse_name("cn = device 1 , o=Acme, S=JM, c=cz").expect("parses");
        let b = parse_name("CN=device 1,O=Acme,ST=JM,C=CZ").expect("parses");
        assert_eq!(a, b);
    }

    #[test]
    fn parts_format_to_a_name_that_parses_back_to_them() {
        let parts = NameParts {
            cn: Some("vpn, gateway #1".into()),
            o: Some("Acme+Co".into()),
            c: Some("CZ".into()),
            ..NameParts::default()
        };
        let dn = format_parts(&parts);
        assert_eq!(name_parts(&parse_name(&dn).expect("parses")), parts, "{dn}");
    }

    #[test]
    fn escapes_round_trip() {
        let dn = r#"CN=Smith\, John \+ co \"x\" \<y\> \; \\,O=\#hash,OU=\ padded\ "#;
        let n = parse_name(dn).expect("parses");
        let parts = name_parts(&n);
        assert_eq!(parts.cn.as_deref(), Some(r#"Smith, John + co "x" <y> ; \"#));
        assert_eq!(parts.o.as_deref(), Some("#hash"));
        assert_eq!(parts.ou.as_deref(), Some(" padded "));
        let again = parse_name(&format_name(&n)).expect("re-parses");
        assert_eq!(again, n);
    }

    #[test]
    fn hex_escapes_are_utf8() {
        let n = parse_name(r"CN=Zden\C4\9Bk,O=P\C5\99\C3\ADklad").expect("parses");
        let parts = name_parts(&n);
        assert_eq!(parts.cn.as_deref(), Some("Zdeněk"));
        assert_eq!(parts.o.as_deref(), Some("Příklad"));
        assert!(matches!(parse_name(r"CN=\C4"), Err(PkiError::InvalidName { .. })));
        // Non-ASCII characters written directly are fine too.
        assert_eq!(name_parts(&parse_name("CN=Zdeněk").expect("parses")).cn.as_deref(), Some("Zdeněk"));
    }

    #[test]
    fn multi_valued_rdn_and_repeats() {
        let n = parse_name("CN=a+UID=u1,OU=one,OU=two,O=Acme").expect("parses");
        assert_eq!(n.iter_rdn().count(), 4);
        assert_eq!(n.iter_rdn().last().map(|r| r.len()), Some(2));
        assert_eq!(name_parts(&n).ou.as_deref(), Some("two, one"));
        let again = parse_name(&format_name(&n)).expect("re-parses");
        assert_eq!(again, n);
        assert!(parse_name("CN=a+CN=a").is_err());
    }

    #[test]
    fn rejects_bad_names() {
        for dn in [
            "",
            "   ",
            "CN",
            "=x",
            "CN=",
            "CN=a,,O=b",
            "CN=a,",
            "XX=a",
            "C=CZE",
            "C=C1",
            "C=",
            "CN=a;O=b",
            "CN=a\"b",
            "CN=#0403414243",
            "CN=a\\",
            "CN=a\\q",
            "CN=a\\4",
            "SERIALNUMBER=a_b",
            "E=ž@example.com",
            "CN=bell\u{7}",
        ] {
            assert!(matches!(parse_name(dn), Err(PkiError::InvalidName { .. })), "{dn:?} accepted");
        }
        let long = format!("CN={}", "x".repeat(65));
        assert!(matches!(parse_name(&long), Err(PkiError::InvalidName { .. })));
        let ok = format!("CN={}", "x".repeat(64));
        assert!(parse_name(&ok).is_ok());
    }

    #[test]
    fn lower_case_country_is_upper_cased() {
        let n = parse_name("C=cz").expect("parses");
        assert_eq!(name_parts(&n).c.as_deref(), Some("CZ"));
    }

    #[test]
    fn other_string_types_are_read() {
        let bmp = Any::new(Tag::BmpString, vec![0x00, 0x41, 0x01, 0x1B]).expect("any");
        assert_eq!(attr_text(&bmp).as_deref(), Some("Aě"));
        let t61 = Any::new(Tag::TeletexString, vec![0x41, 0xE9]).expect("any");
        assert_eq!(attr_text(&t61).as_deref(), Some("Aé"));
        let int = Any::new(Tag::Integer, vec![0x01]).expect("any");
        assert_eq!(attr_text(&int), None);
    }

    #[test]
    fn unknown_attributes_render_as_hex() {
        let mut rdn = RelativeDistinguishedName::default();
        let value = Any::new(Tag::Utf8String, b"x".to_vec()).expect("any");
        rdn.insert(AttributeTypeAndValue { oid: ObjectIdentifier::new_unwrap("1.2.3.4"), value })
            .expect("insert");
        let mut seq = RdnSequence::default();
        seq.push(rdn);
        let name = Name::from_der(&seq.to_der().expect("der")).expect("name");
        assert_eq!(format_name(&name), "1.2.3.4=#0c0178");
        assert_eq!(name_parts(&name), NameParts::default());
    }
}
