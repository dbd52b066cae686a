//! Batch inputs, inside the batch service: UploadCsvBatch and UploadCsrBatch hand their
//! uploaded file to these pure functions before anything is stored. `parse_csv` turns an
//! RFC 4180 file into one parameter map per device, every row checked against the profile;
//! `parse_csr_bundle` turns a PEM of many CSRs, or a ZIP of CSR files, into parsed CSRs whose
//! signatures verified. Errors are INVALID_ARGUMENT on the request's file field and name the
//! row and column, or the CSR, at fault: one bad row or CSR refuses the whole upload.

use crate::pki::{self, PEM_CERTIFICATE_REQUEST, PEM_NEW_CERTIFICATE_REQUEST, ParsedCsr};
use crate::service::ServiceError;
use crate::service::issuance::profiles::Profile;
use std::collections::HashMap;

/// The request field of UploadCsvBatch that carries the CSV.
pub const CSV_FIELD: &str = "file";
/// The request field of UploadCsrBatch that carries the PEM or ZIP.
pub const CSR_FIELD: &str = "files";
/// An uploaded ZIP may inflate to at most this many times `server.max_upload_bytes`: CSRs
/// compress about 1.3:1, so 4 is generous for honest archives and stops a ZIP bomb early.
pub const ZIP_INFLATE_FACTOR: u64 = 4;

/// One device of a CSV batch: its row number in the file (the header is row 1, as a
/// spreadsheet shows it) and its parameters — the request's shared ones, overridden by the
/// row's non-empty cells, keyed by the profile's own spelling of each parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvDevice {
    pub row: usize,
    pub params: HashMap<String, String>,
}

/// Parses an UploadCsvBatch file (RFC 4180) for `profile`:
/// - ASCII or UTF-8, a leading UTF-8 BOM is dropped; a field that is not UTF-8 is refused
///   naming its row and column;
/// - quoted fields with doubled quotes and embedded commas and line breaks; CRLF or LF line
///   ends; blank lines are skipped (they still count in row numbers);
/// - a header row naming the profile's parameters in any order and any case: an unknown or
///   repeated column is refused naming it; a required parameter that neither a column, the
///   request's `shared` parameters nor the profile's default provides is refused naming it;
/// - every row has as many fields as the header;
/// - every device's parameters (`shared` with the row's non-empty cells over them) pass
///   `Profile::resolve`, the check single requests pass; its error becomes
///   `row N, column "name": …`;
/// - a file with no data row is refused.
pub fn parse_csv(
    bytes: &[u8],
    profile: &Profile,
    shared: &HashMap<String, String>,
) -> Result<Vec<CsvDevice>, ServiceError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let records = split_records(bytes)?;
    let mut records = records.into_iter().filter(|r| !(r.fields.len() == 1 && r.fields[0].is_empty()));
    let header = records
        .next()
        .ok_or_else(|| csv_error("is empty: a header row naming the profile's parameters is expected"))?;
    let columns = header_columns(&header, profile)?;
    for p in &profile.parameters {
        let provided = columns.contains(&p.name)
            || shared.get(&p.name).is_some_and(|v| !v.trim().is_empty())
            || !p.value.is_empty();
        if p.required && !provided {
            return Err(csv_error(format!(
                "has no column {:?}, a required parameter of profile {}",
                p.name, profile.id
            )));
        }
    }
    let empty_subject = pki::Name::default();
    let mut devices = Vec::new();
    for record in records {
        let row = record.row;
        if record.fields.len() != columns.len() {
            return Err(csv_error(format!(
                "row {row} has {} fields, the header has {}",
                record.fields.len(),
                columns.len()
            )));
        }
        let mut params = shared.clone();
        for (column, raw) in columns.iter().zip(record.fields) {
            let value = String::from_utf8(raw)
                .map_err(|_| csv_error(format!("row {row}, column {column:?}: is not valid UTF-8")))?;
            if !value.trim().is_empty() {
                params.insert(column.clone(), value);
            }
        }
        if let Err(e) = profile.resolve(&params, &empty_subject) {
            return Err(match e {
                ServiceError::InvalidArgument { field, message } => match field.strip_prefix("params.") {
                    Some(name) => csv_error(format!("row {row}, column {name:?}: {message}")),
                    None => csv_error(format!("row {row}: {message}")),
                },
                other => other,
            });
        }
        devices.push(CsvDevice { row, params });
    }
    if devices.is_empty() {
        return Err(csv_error("has a header row but no data rows"));
    }
    Ok(devices)
}

fn csv_error(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(CSV_FIELD, message)
}

/// The header's columns as the profile spells its parameter names.
fn header_columns(header: &Record, profile: &Profile) -> Result<Vec<String>, ServiceError> {
    let mut columns: Vec<String> = Vec::with_capacity(header.fields.len());
    for raw in &header.fields {
        let name =
            std::str::from_utf8(raw).map_err(|_| csv_error("the header row is not valid UTF-8"))?.trim();
        let param =
            profile.parameters.iter().find(|p| p.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
                let known: Vec<&str> = profile.parameters.iter().map(|p| p.name.as_str()).collect();
                csv_error(format!(
                    "the header names column {name:?}, which is not a parameter of profile {} (known: {})",
                    profile.id,
                    known.join(", ")
                ))
            })?;
        if columns.contains(&param.name) {
            return Err(csv_error(format!("the header names column {:?} twice", param.name)));
        }
        columns.push(param.name.clone());
    }
    Ok(columns)
}

/// One CSV record: its 1-based number among the file's records, and its raw fields.
#[derive(Debug)]
struct Record {
    row: usize,
    fields: Vec<Vec<u8>>,
}

/// Splits RFC 4180 records. Works on bytes (quote, comma, CR and LF never occur inside a
/// UTF-8 multi-byte sequence), so UTF-8 is checked per field afterwards, where the error can
/// name the column.
fn split_records(b: &[u8]) -> Result<Vec<Record>, ServiceError> {
    let mut records = Vec::new();
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut field = Vec::new();
    let mut row = 1;
    let mut i = 0;
    // At the start of a field: may it open a quoted field?
    let mut at_field_start = true;
    while i < b.len() {
        let c = b[i];
        if at_field_start && c == b'"' {
            // A quoted field runs to the next quote not doubled.
            let start_row = row;
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(csv_error(format!(
                            "row {start_row}: a quoted field is not closed before the end of the file"
                        )));
                    }
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        field.push(other);
                        i += 1;
                    }
                }
            }
            match b.get(i) {
                None | Some(b',' | b'\r' | b'\n') => {}
                Some(_) => {
                    return Err(csv_error(format!(
                        "row {start_row}: text after the closing quote of a field (a quote inside a field must be doubled)"
                    )));
                }
            }
            at_field_start = false;
            continue;
        }
        match c {
            b',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            b'\r' | b'\n' => {
                if c == b'\r' && b.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                fields.push(std::mem::take(&mut field));
                records.push(Record { row, fields: std::mem::take(&mut fields) });
                row += 1;
                at_field_start = true;
            }
            b'"' => {
                return Err(csv_error(format!(
                    "row {row}: a quote inside an unquoted field (quote the whole field and double the quote)"
                )));
            }
            other => {
                field.push(other);
                at_field_start = false;
            }
        }
        i += 1;
    }
    // The last record needs no line end.
    if !fields.is_empty() || !field.is_empty() || !at_field_start {
        fields.push(field);
        records.push(Record { row, fields });
    }
    Ok(records)
}

/// One CSR of an UploadCsrBatch: where it came from (for people: `CSR 3` of a PEM, or the
/// file name inside a ZIP, with `#n` when that file holds several) and the parsed request.
#[derive(Debug, Clone)]
pub struct CsrInput {
    pub source: String,
    pub csr: ParsedCsr,
}

/// Parses an UploadCsrBatch file: one PEM holding many `CERTIFICATE REQUEST` blocks, or a ZIP
/// of CSR files (each PEM with one or more requests, or DER), or a single DER request. Every
/// CSR is parsed and its self-signature verified (`pki::parse_csr`); the first bad one refuses
/// the upload naming it. A ZIP may inflate to at most `max_upload_bytes` ×
/// `ZIP_INFLATE_FACTOR`. No CSR at all is an error.
pub fn parse_csr_bundle(bytes: &[u8], max_upload_bytes: usize) -> Result<Vec<CsrInput>, ServiceError> {
    let csrs = if pki::looks_like_zip(bytes) {
        let limit = (max_upload_bytes as u64).saturating_mul(ZIP_INFLATE_FACTOR);
        let entries =
            pki::read_zip(bytes, limit).map_err(|e| ServiceError::invalid(CSR_FIELD, e.to_string()))?;
        let mut csrs = Vec::new();
        for entry in entries {
            if pki::looks_like_pem(&entry.bytes) {
                let several = pem_csrs(&entry.bytes, &entry.name)?;
                let n = several.len();
                for (i, csr) in several.into_iter().enumerate() {
                    let source =
                        if n == 1 { entry.name.clone() } else { format!("{} #{}", entry.name, i + 1) };
                    csrs.push(CsrInput { source, csr });
                }
            } else {
                let csr = pki::parse_csr(&entry.bytes).map_err(|e| csr_error(&entry.name, e))?;
                csrs.push(CsrInput { source: entry.name, csr });
            }
        }
        csrs
    } else if pki::looks_like_pem(bytes) {
        pem_csrs(bytes, "")?
            .into_iter()
            .enumerate()
            .map(|(i, csr)| CsrInput { source: format!("CSR {}", i + 1), csr })
            .collect()
    } else if bytes.first() == Some(&0x30) {
        vec![CsrInput {
            source: "CSR 1".into(),
            csr: pki::parse_csr(bytes).map_err(|e| csr_error("CSR 1", e))?,
        }]
    } else if bytes.is_empty() {
        return Err(ServiceError::invalid(
            CSR_FIELD,
            "is empty: a PEM of CSRs or a ZIP of CSR files is expected",
        ));
    } else {
        return Err(ServiceError::invalid(
            CSR_FIELD,
            "is neither a PEM of CSRs, a ZIP of CSR files nor a DER CSR",
        ));
    };
    if csrs.is_empty() {
        return Err(ServiceError::invalid(CSR_FIELD, "holds no certificate request"));
    }
    Ok(csrs)
}

/// Every CSR of a PEM text, in order. `file` is the ZIP entry's name ("" for the upload
/// itself), so an error names `file CSR n` or `CSR n`.
fn pem_csrs(text: &[u8], file: &str) -> Result<Vec<ParsedCsr>, ServiceError> {
    let blocks = pki::pem_decode_all(text).map_err(|e| {
        let source = if file.is_empty() { "the PEM".to_owned() } else { format!("{file:?}") };
        ServiceError::invalid(CSR_FIELD, format!("{source}: {e}"))
    })?;
    let mut out = Vec::with_capacity(blocks.len());
    for (i, (label, der)) in blocks.into_iter().enumerate() {
        let source = if file.is_empty() { format!("CSR {}", i + 1) } else { format!("{file} CSR {}", i + 1) };
        if label != PEM_CERTIFICATE_REQUEST && label != PEM_NEW_CERTIFICATE_REQUEST {
            return Err(ServiceError::invalid(
                CSR_FIELD,
                format!("{source}: a PEM block labelled {label:?}, not {PEM_CERTIFICATE_REQUEST:?}"),
            ));
        }
        out.push(pki::parse_csr(&der).map_err(|e| csr_error(&source, e))?);
    }
    Ok(out)
}

/// A CSR that does not pass `parse_csr` is the uploader's to fix: INVALID_ARGUMENT naming it.
fn csr_error(source: &str, e: pki::PkiError) -> ServiceError {
    ServiceError::invalid(CSR_FIELD, format!("{source}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::issuance::profiles::builtin_profiles;
    use std::process::Command;

    /// The built-in profiles, built once: their Unicode patterns are slow to compile in debug.
    fn profile(id: &str) -> Profile {
        static ALL: std::sync::OnceLock<Vec<Profile>> = std::sync::OnceLock::new();
        let all = ALL.get_or_init(|| builtin_profiles().expect("builtins"));
        all.iter().find(|p| p.id == id).expect("profile").clone()
    }

    fn message(r: Result<impl std::fmt::Debug, ServiceError>, want_field: &str) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, message }) => {
                assert_eq!(field, want_field, "{message}");
                message
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn csv(text: &str) -> Result<Vec<CsvDevice>, ServiceError> {
        parse_csv(text.as_bytes(), &profile("ecc-device"), &HashMap::new())
    }

    fn cn_of(d: &CsvDevice) -> &str {
        d.params.get("commonName").map(String::as_str).unwrap_or("")
    }

    #[test]
    fn columns_in_any_order_and_case() {
        let devices =
            csv("Country,COMMONNAME,organization\r\nCZ,dev-1,Acme\r\nDE,dev-2,\r\n").expect("parses");
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].row, 2);
        assert_eq!(cn_of(&devices[0]), "dev-1");
        assert_eq!(devices[0].params.get("country").map(String::as_str), Some("CZ"));
        assert_eq!(devices[0].params.get("organization").map(String::as_str), Some("Acme"));
        assert!(!devices[1].params.contains_key("organization"), "an empty cell gives no value");
    }

    #[test]
    fn rfc4180_quoting() {
        let text = "commonName,organization\n\"dev 1\",\"Acme, Inc.\"\n\"dev-2\",\"Say \"\"hi\"\"\"\ndev-3,\"two\nlines\"\n";
        let devices = csv("commonName,organization\n\"dev 1\",\"Acme, Inc.\"\n").expect("quoted fields");
        assert_eq!((cn_of(&devices[0]), devices[0].params["organization"].as_str()), ("dev 1", "Acme, Inc."));
        let records = split_records(text.as_bytes()).expect("splits");
        assert_eq!(records[2].fields[1], b"Say \"hi\"");
        assert_eq!(records[3].fields[1], b"two\nlines");
        // The embedded line break is one record, not two: but organization rejects it.
        let err = message(csv(text), CSV_FIELD);
        assert!(err.starts_with("row 3, column \"organization\""), "{err}");
        // No final line end, LF only, and blank lines skipped (row numbers still count them).
        let devices = csv("commonName\n\ndev-1\n\ndev-2").expect("parses");
        assert_eq!(
            devices.iter().map(|d| (d.row, cn_of(d))).collect::<Vec<_>>(),
            [(3, "dev-1"), (5, "dev-2")]
        );
        // An empty quoted field as the last one.
        let devices = csv("commonName,organization\r\ndev-1,\"\"").expect("parses");
        assert!(!devices[0].params.contains_key("organization"));
    }

    #[test]
    fn utf8_bom_and_bad_utf8() {
        let p = profile("ecc-device");
        let mut bytes = b"\xEF\xBB\xBFcommonName,organization\n".to_vec();
        bytes.extend_from_slice("dev-1,Žluťoučký kůň\n".as_bytes());
        let devices = parse_csv(&bytes, &p, &HashMap::new()).expect("BOM is dropped");
        assert_eq!(devices[0].params["organization"], "Žluťoučký kůň");
        let bad = b"commonName,organization\ndev-1,Acme\ndev-2,Acme \xC5\n";
        let err = message(parse_csv(bad, &p, &HashMap::new()), CSV_FIELD);
        assert_eq!(err, "row 3, column \"organization\": is not valid UTF-8");
    }

    #[test]
    fn bad_value_names_row_and_column() {
        let text = "commonName,country\ndev-1,CZ\ndev-2,CZ\ndev-3,cz\n";
        let err = message(csv(text), CSV_FIELD);
        assert!(err.starts_with("row 4, column \"country\": \"cz\""), "{err}");
        let err = message(csv("commonName,country\n,CZ\n"), CSV_FIELD);
        assert_eq!(err, "row 2, column \"commonName\": is required");
    }

    #[test]
    fn header_problems_name_the_column() {
        let err = message(csv("commonName,colour\ndev-1,red\n"), CSV_FIELD);
        assert!(err.contains("column \"colour\"") && err.contains("known: commonName"), "{err}");
        let err = message(csv("organization,country\nAcme,CZ\n"), CSV_FIELD);
        assert!(err.contains("no column \"commonName\""), "{err}");
        let err = message(csv("commonName,CommonName\na,b\n"), CSV_FIELD);
        assert!(err.contains("\"commonName\" twice"), "{err}");
    }

    #[test]
    fn shared_parameters_fill_and_rows_override() {
        let p = profile("ecc-device");
        let shared: HashMap<String, String> =
            [("commonName".to_owned(), "shared".to_owned()), ("organization".to_owned(), "Acme".to_owned())]
                .into();
        // A required parameter given for the whole batch needs no column.
        let devices = parse_csv(b"country\nCZ\nDE\n", &p, &shared).expect("parses");
        assert_eq!(cn_of(&devices[1]), "shared");
        let devices = parse_csv(b"organization,commonName\nOther,d1\n,d2\n", &p, &shared).expect("parses");
        assert_eq!(devices[0].params["organization"], "Other");
        assert_eq!(devices[1].params["organization"], "Acme");
    }

    #[test]
    fn shape_errors() {
        assert!(message(csv(""), CSV_FIELD).contains("is empty"));
        assert!(message(csv("\u{feff}"), CSV_FIELD).contains("is empty"));
        assert!(message(csv("commonName\r\n"), CSV_FIELD).contains("no data rows"));
        assert_eq!(
            message(csv("commonName,country\ndev-1,CZ\ndev-2\n"), CSV_FIELD),
            "row 3 has 1 fields, the header has 2"
        );
        assert!(
            message(csv("commonName\n\"dev-1\n"), CSV_FIELD)
                .starts_with("row 2: a quoted field is not closed")
        );
        assert!(
            message(csv("commonName\n\"dev\"x\n"), CSV_FIELD)
                .starts_with("row 2: text after the closing quote")
        );
        assert!(
            message(csv("commonName\nde\"v\n"), CSV_FIELD).starts_with("row 2: a quote inside an unquoted")
        );
    }

    /// A fresh P-256 CSR from openssl, PEM (`der` false) or DER.
    fn openssl_csr(cn: &str, der: bool) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-keyout", "/dev/null", "-subj", &format!("/CN={cn}"), "-outform"])
            .arg(if der { "DER" } else { "PEM" })
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn cns(inputs: &[CsrInput]) -> Vec<(String, String)> {
        inputs
            .iter()
            .map(|c| (c.source.clone(), pki::common_name(&c.csr.subject).unwrap_or_default()))
            .collect()
    }

    fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = pki::ZipStreamWriter::new(Vec::new());
        for (n, b) in files {
            w.add_file(n, b).expect("add");
        }
        w.finish().expect("finish")
    }

    #[test]
    fn pem_bundle_of_many_csrs() {
        let mut pem = b"a comment before\n".to_vec();
        for cn in ["d1", "d2", "d3"] {
            pem.extend(openssl_csr(cn, false));
        }
        let got = parse_csr_bundle(&pem, 1 << 20).expect("parses");
        assert_eq!(
            cns(&got),
            [("CSR 1".into(), "d1".into()), ("CSR 2".into(), "d2".into()), ("CSR 3".into(), "d3".into())]
        );
        let der = openssl_csr("single", true);
        assert_eq!(cns(&parse_csr_bundle(&der, 1 << 20).expect("DER")), [("CSR 1".into(), "single".into())]);
    }

    #[test]
    fn one_bad_csr_is_named() {
        let good = openssl_csr("d1", false);
        let other = String::from_utf8(openssl_csr("d2", false)).expect("pem");
        // Tamper with the second CSR's body: its signature (or its structure) no longer holds.
        let der = pki::pem_decode(other.as_bytes()).expect("pem").1;
        let mut tampered = der.clone();
        let at = tampered.windows(2).position(|w| w == b"d2").expect("CN in DER");
        tampered[at] = b'X';
        let bad = pki::pem_encode(PEM_CERTIFICATE_REQUEST, &tampered);
        let bundle = [good.clone(), bad.clone().into_bytes()].concat();
        let err = message(parse_csr_bundle(&bundle, 1 << 20), CSR_FIELD);
        assert!(err.starts_with("CSR 2: ") && err.contains("signature"), "{err}");

        let cert_block = pki::pem_encode("CERTIFICATE", &der);
        let err =
            message(parse_csr_bundle(&[good.clone(), cert_block.into_bytes()].concat(), 1 << 20), CSR_FIELD);
        assert!(err.starts_with("CSR 2: a PEM block labelled \"CERTIFICATE\""), "{err}");

        let z = zip(&[("ok.pem", &good), ("broken.der", &tampered)]);
        let err = message(parse_csr_bundle(&z, 1 << 20), CSR_FIELD);
        assert!(err.starts_with("broken.der: "), "{err}");
    }

    #[test]
    fn zip_of_pem_and_der_files() {
        let two = [openssl_csr("p1", false), openssl_csr("p2", false)].concat();
        let z = zip(&[
            ("a/one.der", &openssl_csr("d1", true)),
            ("b.pem", &two),
            ("c.csr", &openssl_csr("c", false)),
        ]);
        let got = parse_csr_bundle(&z, 1 << 20).expect("parses");
        assert_eq!(
            cns(&got),
            [
                ("a/one.der".into(), "d1".into()),
                ("b.pem #1".into(), "p1".into()),
                ("b.pem #2".into(), "p2".into()),
                ("c.csr".into(), "c".into())
            ]
        );
        // Inflation is bounded by the upload limit times the factor.
        let err = message(parse_csr_bundle(&z, 100), CSR_FIELD);
        assert!(err.contains("inflate past 400 bytes"), "{err}");
    }

    #[test]
    fn nothing_or_garbage_is_refused() {
        assert!(message(parse_csr_bundle(b"", 1 << 20), CSR_FIELD).contains("is empty"));
        assert!(message(parse_csr_bundle(b"hello", 1 << 20), CSR_FIELD).contains("neither"));
        assert!(message(parse_csr_bundle(&zip(&[]), 1 << 20), CSR_FIELD).contains("no certificate request"));
        let err = message(parse_csr_bundle(&zip(&[("readme.txt", b"hi")]), 1 << 20), CSR_FIELD);
        assert!(err.starts_with("readme.txt: malformed CSR"), "{err}");
    }
}
