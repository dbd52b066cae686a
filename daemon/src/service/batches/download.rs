//! DownloadBatch, inside the batch service: the batch's ZIP built while it streams. Device
//! rows are read a page at a time and appended to a `pki::ZipStreamWriter` over a small
//! buffer; whenever the buffer holds a chunk's worth it goes down a bounded channel to the
//! gRPC stream, so memory holds one page of devices and one chunk, never the archive (the
//! manifest, a line per device, is the one thing kept until the end).

use super::{Batch, Kind};
use crate::pki::{self, ZipStreamWriter};
use crate::service::ServiceError;
use crate::store::Store;
use crate::store::batches::{self as batch_store, DeviceFile};
use std::collections::HashMap;

/// The chunks of a download, in order; an error ends it.
pub type ChunkReceiver = tokio::sync::mpsc::Receiver<Result<Vec<u8>, ServiceError>>;

/// Bytes per chunk sent (gRPC messages stay well under the 4 MiB default limit).
const CHUNK_BYTES: usize = 256 * 1024;
/// Device rows read per store round trip.
const PAGE: u32 = 256;

/// Starts producing the ZIP of `b` (already checked: the caller may download it).
pub fn start(store: Store, b: Batch) -> ChunkReceiver {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = produce(&store, &b, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn produce(
    store: &Store,
    b: &Batch,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, ServiceError>>,
) -> Result<(), ServiceError> {
    let csr = Kind::parse(&b.kind) == Some(Kind::Csr);
    // The batch's finishing time stamps every entry: the same batch makes the same bytes.
    let stamp = u64::try_from(b.finished_at.unwrap_or(b.created_at)).unwrap_or(0);
    let mut zip = ZipStreamWriter::with_time(Vec::with_capacity(CHUNK_BYTES * 2), stamp);
    let mut names = FileNames::default();
    let mut manifest = String::from("device_id,common_name,serial,file_name\r\n");
    let mut cursor = None;
    loop {
        let (id, after) = (b.id.clone(), cursor);
        let page = store
            .read(move |c| batch_store::issued_files(c, &id, after, PAGE).map_err(ServiceError::from))
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.position);
        for f in page {
            let (name, bytes) = entry(&mut names, &f, csr, &b.id)?;
            zip.add_file(&name, &bytes).map_err(|e| ServiceError::Internal(format!("ZIP: {e}")))?;
            for (i, field) in
                [f.position.to_string(), f.common_name.clone(), f.serial.clone(), name].iter().enumerate()
            {
                if i > 0 {
                    manifest.push(',');
                }
                manifest.push_str(&csv_field(field));
            }
            manifest.push_str("\r\n");
            if zip.get_mut().len() >= CHUNK_BYTES && !send(tx, zip.get_mut()).await {
                return Ok(());
            }
        }
    }
    zip.add_file("manifest.csv", manifest.as_bytes())
        .map_err(|e| ServiceError::Internal(format!("ZIP: {e}")))?;
    let mut rest = zip.finish().map_err(|e| ServiceError::Internal(format!("ZIP: {e}")))?;
    while !rest.is_empty() {
        let take = rest.len().min(CHUNK_BYTES);
        let tail = rest.split_off(take);
        if tx.send(Ok(rest)).await.is_err() {
            return Ok(());
        }
        rest = tail;
    }
    Ok(())
}

/// Sends what the buffer holds; false when the caller went away.
async fn send(tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, ServiceError>>, buf: &mut Vec<u8>) -> bool {
    let chunk = std::mem::replace(buf, Vec::with_capacity(CHUNK_BYTES * 2));
    tx.send(Ok(chunk)).await.is_ok()
}

/// One device's entry: its file name and bytes.
fn entry(
    names: &mut FileNames,
    f: &DeviceFile,
    csr: bool,
    batch_id: &str,
) -> Result<(String, Vec<u8>), ServiceError> {
    let stem = names.unique(&safe_name(&f.common_name, f.position));
    if csr {
        let der = f.certificate_der.as_ref().ok_or_else(|| {
            ServiceError::Internal(format!("device {} of batch {batch_id} has no certificate", f.position))
        })?;
        Ok((format!("{stem}.pem"), pki::pem_encode(pki::PEM_CERTIFICATE, der).into_bytes()))
    } else {
        let p12 = f.pkcs12.clone().ok_or_else(|| {
            ServiceError::FailedPrecondition(format!("the files of batch {batch_id} have been removed"))
        })?;
        Ok((format!("{stem}.p12"), p12))
    }
}

/// A common name as a file name: letters, digits, `.`, `_`, `-` kept, anything else `_`, no
/// leading dot, at most 100 characters; `device-<position>` when nothing is left.
fn safe_name(cn: &str, position: u32) -> String {
    let mut s: String = cn
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(100)
        .collect();
    while s.starts_with('.') {
        s.remove(0);
    }
    if s.is_empty() || s.chars().all(|c| c == '_') { format!("device-{position}") } else { s }
}

/// Makes names unique, case-insensitively (Windows and macOS unpack case-insensitively):
/// the second `x` becomes `x-2`, and so on.
#[derive(Default)]
struct FileNames {
    used: HashMap<String, u32>,
}

impl FileNames {
    fn unique(&mut self, stem: &str) -> String {
        let mut n = 1u32;
        loop {
            let candidate = if n == 1 { stem.to_owned() } else { format!("{stem}-{n}") };
            let key = candidate.to_lowercase();
            if let std::collections::hash_map::Entry::Vacant(v) = self.used.entry(key) {
                v.insert(1);
                return candidate;
            }
            n += 1;
        }
    }
}

/// An RFC 4180 field: quoted when it holds a comma, quote or line break.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\r', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_unique() {
        assert_eq!(safe_name("0name", 0), "0name");
        assert_eq!(safe_name("../etc/passwd", 3), "_etc_passwd");
        assert_eq!(safe_name("a b/c", 1), "a_b_c");
        assert_eq!(safe_name("///", 7), "device-7");
        assert_eq!(safe_name("", 2), "device-2");
        let mut n = FileNames::default();
        assert_eq!(n.unique("x"), "x");
        assert_eq!(n.unique("X"), "X-2");
        assert_eq!(n.unique("x"), "x-3");
        assert_eq!(n.unique("x-2"), "x-2-2");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
