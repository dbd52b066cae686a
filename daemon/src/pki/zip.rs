//! ZIP archives at the edges of the batch service: `ZipStreamWriter` writes the archive a
//! batch download streams (one PKCS#12 or PEM per device and a manifest) onto any
//! `std::io::Write`, chunk by chunk, never holding the archive whole; `read_zip` opens an
//! uploaded ZIP of CSR files (UploadCsrBatch) with a ceiling on how much it may inflate.
//!
//! Writer choices:
//! - Entries are STORED, not deflated: PKCS#12 files are mostly ciphertext (encrypted bags)
//!   and certificates are signed DER in base64, so deflate would save little and cost CPU on
//!   the hot path of a 10,000-device download.
//! - The bytes of an entry are in hand when it is added, so its CRC-32 and sizes go into the
//!   local header: no data descriptor, no Seek — the writer only appends.
//! - Names are UTF-8 (general-purpose flag bit 11) and must be relative paths without `..`,
//!   backslashes or duplicates: unzip would otherwise write outside the target directory or
//!   overwrite a file.
//! - ZIP64 is written when it is needed: more than 65,535 entries, or a central directory that
//!   starts (or a local header that sits) past 4 GiB. A single entry of 4 GiB or more is
//!   refused (`InvalidInput`): nothing a batch produces comes near it, and refusing keeps the
//!   local headers ZIP64-free.
//!
//! Reader choices: a small reader of our own rather than the `zip` crate (whose current
//! releases need a newer Rust than the workspace's `rust-version` and bring a dozen
//! compression codecs we would never accept): STORED and DEFLATE entries only (what every
//! zip tool writes), inflated by the pure-Rust `miniz_oxide` with a hard limit, CRC-checked.

use super::PkiError;
use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// General-purpose flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 0x0800;
/// General-purpose flag bit 0: the entry is encrypted.
const FLAG_ENCRYPTED: u16 = 0x0001;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
/// "Version needed to extract": 2.0 for plain entries, 4.5 once ZIP64 structures appear.
const VERSION_PLAIN: u16 = 20;
const VERSION_ZIP64: u16 = 45;
/// "Version made by": Unix (3) in the high byte, so unzip applies the mode bits below.
const MADE_BY_UNIX: u16 = 3 << 8;
/// External attributes: a regular file, rw-r--r--.
const UNIX_FILE_MODE: u32 = 0o100_644 << 16;
const U16_MAX: u64 = 0xFFFF;
const U32_MAX: u64 = 0xFFFF_FFFF;

/// What the central directory needs to remember of each entry.
#[derive(Debug)]
struct CentralEntry {
    name: String,
    crc32: u32,
    size: u32,
    offset: u64,
}

/// Writes a ZIP archive front to back onto `W` (a socket, a channel, a file: no Seek needed).
/// Add entries with `add_file`, then `finish` writes the central directory and hands `W` back.
/// Between calls the caller may drain what was written through `get_mut` (a download streams
/// each chunk as it is produced).
#[derive(Debug)]
pub struct ZipStreamWriter<W: Write> {
    out: W,
    /// Bytes written so far: the offset of the next local header.
    offset: u64,
    entries: Vec<CentralEntry>,
    names: HashSet<String>,
    dos_time: u16,
    dos_date: u16,
}

impl<W: Write> ZipStreamWriter<W> {
    /// A writer whose entries carry the current time.
    pub fn new(out: W) -> ZipStreamWriter<W> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        ZipStreamWriter::with_time(out, now)
    }

    /// A writer whose entries carry `unix_seconds` (UTC) as their modification time, so the
    /// same inputs make the same bytes (a download restarted after a crash).
    pub fn with_time(out: W, unix_seconds: u64) -> ZipStreamWriter<W> {
        let (dos_time, dos_date) = dos_date_time(unix_seconds);
        ZipStreamWriter { out, offset: 0, entries: Vec::new(), names: HashSet::new(), dos_time, dos_date }
    }

    /// The sink, to drain what has been written so far.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Entries added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends one STORED entry. Refuses (`InvalidInput`, nothing written) a name that is
    /// empty, absolute, has a `..` component, a backslash or a control character, or is taken
    /// already, and data of 4 GiB or more.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        check_entry_name(name)?;
        if self.names.contains(name) {
            return Err(invalid_input(format!("ZIP entry {name:?} is already in the archive")));
        }
        let size = u32::try_from(bytes.len())
            .ok()
            .filter(|s| u64::from(*s) < U32_MAX)
            .ok_or_else(|| invalid_input(format!("ZIP entry {name:?} is 4 GiB or larger")))?;
        let crc32 = crc32fast::hash(bytes);
        let name_len = u16::try_from(name.len()).map_err(|_| invalid_input("ZIP entry name too long"))?;

        let mut header = Vec::with_capacity(30 + name.len());
        put_u32(&mut header, LOCAL_HEADER_SIG);
        put_u16(&mut header, VERSION_PLAIN);
        put_u16(&mut header, FLAG_UTF8);
        put_u16(&mut header, METHOD_STORED);
        put_u16(&mut header, self.dos_time);
        put_u16(&mut header, self.dos_date);
        put_u32(&mut header, crc32);
        put_u32(&mut header, size); // compressed size: STORED
        put_u32(&mut header, size);
        put_u16(&mut header, name_len);
        put_u16(&mut header, 0); // no extra field
        header.extend_from_slice(name.as_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(bytes)?;

        self.entries.push(CentralEntry { name: name.to_owned(), crc32, size, offset: self.offset });
        self.names.insert(name.to_owned());
        self.offset += header.len() as u64 + u64::from(size);
        Ok(())
    }

    /// Writes the central directory (ZIP64 records when needed), flushes, and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_offset = self.offset;
        let mut cd = Vec::with_capacity(self.entries.len() * 80);
        for e in &self.entries {
            let zip64_offset = e.offset >= U32_MAX;
            put_u32(&mut cd, CENTRAL_HEADER_SIG);
            let version = if zip64_offset { VERSION_ZIP64 } else { VERSION_PLAIN };
            put_u16(&mut cd, MADE_BY_UNIX | version);
            put_u16(&mut cd, version);
            put_u16(&mut cd, FLAG_UTF8);
            put_u16(&mut cd, METHOD_STORED);
            put_u16(&mut cd, self.dos_time);
            put_u16(&mut cd, self.dos_date);
            put_u32(&mut cd, e.crc32);
            put_u32(&mut cd, e.size);
            put_u32(&mut cd, e.size);
            // Checked in add_file.
            put_u16(&mut cd, e.name.len() as u16);
            put_u16(&mut cd, if zip64_offset { 12 } else { 0 });
            put_u16(&mut cd, 0); // comment
            put_u16(&mut cd, 0); // disk number start
            put_u16(&mut cd, 0); // internal attributes
            put_u32(&mut cd, UNIX_FILE_MODE);
            put_u32(&mut cd, if zip64_offset { U32_MAX as u32 } else { e.offset as u32 });
            cd.extend_from_slice(e.name.as_bytes());
            if zip64_offset {
                put_u16(&mut cd, ZIP64_EXTRA_ID);
                put_u16(&mut cd, 8);
                put_u64(&mut cd, e.offset);
            }
        }
        let cd_size = cd.len() as u64;
        let count = self.entries.len() as u64;
        let zip64 = count >= U16_MAX || cd_offset >= U32_MAX || cd_size >= U32_MAX;
        if zip64 {
            let record_offset = cd_offset + cd_size;
            put_u32(&mut cd, ZIP64_EOCD_SIG);
            put_u64(&mut cd, 44); // size of the rest of this record
            put_u16(&mut cd, MADE_BY_UNIX | VERSION_ZIP64);
            put_u16(&mut cd, VERSION_ZIP64);
            put_u32(&mut cd, 0); // this disk
            put_u32(&mut cd, 0); // disk of the central directory
            put_u64(&mut cd, count);
            put_u64(&mut cd, count);
            put_u64(&mut cd, cd_size);
            put_u64(&mut cd, cd_offset);
            put_u32(&mut cd, ZIP64_LOCATOR_SIG);
            put_u32(&mut cd, 0);
            put_u64(&mut cd, record_offset);
            put_u32(&mut cd, 1); // total disks
        }
        put_u32(&mut cd, EOCD_SIG);
        put_u16(&mut cd, 0);
        put_u16(&mut cd, 0);
        let count16 = count.min(U16_MAX) as u16;
        put_u16(&mut cd, count16);
        put_u16(&mut cd, count16);
        put_u32(&mut cd, cd_size.min(U32_MAX) as u32);
        put_u32(&mut cd, cd_offset.min(U32_MAX) as u32);
        put_u16(&mut cd, 0); // comment
        self.out.write_all(&cd)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn invalid_input(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

fn check_entry_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name.split('/').any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(invalid_input(format!("{name:?} is not a safe ZIP entry name (a relative file path)")));
    }
    Ok(())
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS time and date of a UTC instant, clamped to the years DOS can say (1980–2107).
fn dos_date_time(unix_seconds: u64) -> (u16, u16) {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year < 1980 {
        return (0, (1 << 5) | 1); // 1980-01-01 00:00
    }
    if year > 2107 {
        return ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31);
    }
    let time = ((secs / 3600) << 11) | (((secs % 3600) / 60) << 5) | ((secs % 60) / 2);
    let date = ((year - 1980) << 9) | (month << 5) | day;
    (time as u16, date as u16)
}

/// One file of an uploaded ZIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The entry's path inside the archive, as stored (UTF-8; other encodings lossily).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Does this upload look like a ZIP (a local header, or an empty archive's end record)?
pub fn looks_like_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(&LOCAL_HEADER_SIG.to_le_bytes()) || bytes.starts_with(&EOCD_SIG.to_le_bytes())
}

/// Reads every file of a ZIP held in memory, in central-directory order. Directories and
/// macOS `__MACOSX/` metadata are skipped. Only STORED and DEFLATE entries are accepted;
/// encrypted ones are refused. The uncompressed sizes the archive declares must add up to at
/// most `max_inflated` bytes, and each entry is inflated with its declared size as a hard
/// limit and its CRC-32 checked, so a ZIP bomb fails before it allocates. Errors are
/// `Malformed { what: "ZIP" }` naming the entry.
pub fn read_zip(bytes: &[u8], max_inflated: u64) -> Result<Vec<ZipEntry>, PkiError> {
    let end = find_end(bytes)?;
    let mut entries = Vec::new();
    let mut total: u64 = 0;
    let mut pos = usize::try_from(end.cd_offset).map_err(|_| bad("central directory offset"))?;
    for index in 0..end.count {
        let h = CentralHeader::parse(bytes, pos)
            .ok_or_else(|| bad(format!("central directory entry {} is truncated or corrupt", index + 1)))?;
        pos = h.next;
        if h.name.ends_with('/') || h.name.starts_with("__MACOSX/") {
            continue;
        }
        let name = h.name;
        if h.flags & FLAG_ENCRYPTED != 0 {
            return Err(bad(format!("entry {name:?} is encrypted, which is not supported")));
        }
        total = total.saturating_add(h.size);
        if total > max_inflated {
            return Err(bad(format!(
                "the files would inflate past {max_inflated} bytes (at entry {name:?}); not unpacked"
            )));
        }
        let data = local_data(bytes, h.offset, h.compressed_size)
            .ok_or_else(|| bad(format!("entry {name:?}: its data lies outside the archive")))?;
        // Bounded by max_inflated above, which the caller keeps to a small multiple of the
        // upload limit.
        let size = h.size as usize;
        let content = match h.method {
            METHOD_STORED if h.compressed_size == h.size => data.to_vec(),
            METHOD_STORED => return Err(bad(format!("entry {name:?}: stored with two different sizes"))),
            METHOD_DEFLATED => miniz_oxide::inflate::decompress_to_vec_with_limit(data, size)
                .map_err(|e| bad(format!("entry {name:?}: inflating failed ({:?})", e.status)))?,
            other => {
                return Err(bad(format!(
                    "entry {name:?} uses compression method {other}; only stored and deflated entries are accepted"
                )));
            }
        };
        if content.len() != size {
            return Err(bad(format!("entry {name:?}: {} bytes, the archive says {size}", content.len())));
        }
        if crc32fast::hash(&content) != h.crc32 {
            return Err(bad(format!("entry {name:?}: CRC-32 mismatch")));
        }
        entries.push(ZipEntry { name, bytes: content });
    }
    Ok(entries)
}

fn bad(detail: impl std::fmt::Display) -> PkiError {
    PkiError::malformed("ZIP", detail)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Where the central directory is and how many entries it holds.
#[derive(Debug)]
struct End {
    count: u64,
    cd_offset: u64,
}

fn find_end(b: &[u8]) -> Result<End, PkiError> {
    const EOCD_LEN: usize = 22;
    if b.len() < EOCD_LEN {
        return Err(bad("too short to be a ZIP archive"));
    }
    // The end record sits before a comment of at most 65,535 bytes.
    let lowest = b.len().saturating_sub(EOCD_LEN + 0xFFFF);
    let at = (lowest..=b.len() - EOCD_LEN)
        .rev()
        .find(|&i| u32_at(b, i) == Some(EOCD_SIG))
        .ok_or_else(|| bad("no end of central directory record"))?;
    let count = u16_at(b, at + 10).map(u64::from).ok_or_else(|| bad("end record"))?;
    let cd_offset = u32_at(b, at + 16).map(u64::from).ok_or_else(|| bad("end record"))?;
    if count != U16_MAX && cd_offset != U32_MAX {
        return Ok(End { count, cd_offset });
    }
    // ZIP64: the locator sits just before the end record and points at the ZIP64 record.
    let locator = at.checked_sub(20).ok_or_else(|| bad("ZIP64 locator missing"))?;
    if u32_at(b, locator) != Some(ZIP64_LOCATOR_SIG) {
        return Err(bad("ZIP64 locator missing"));
    }
    let record = u64_at(b, locator + 8)
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| u32_at(b, o) == Some(ZIP64_EOCD_SIG))
        .ok_or_else(|| bad("ZIP64 end record missing"))?;
    let count = u64_at(b, record + 32).ok_or_else(|| bad("ZIP64 end record truncated"))?;
    let cd_offset = u64_at(b, record + 48).ok_or_else(|| bad("ZIP64 end record truncated"))?;
    Ok(End { count, cd_offset })
}

#[derive(Debug)]
struct CentralHeader {
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    offset: u64,
    name: String,
    /// Where the next central header starts.
    next: usize,
}

impl CentralHeader {
    fn parse(b: &[u8], at: usize) -> Option<CentralHeader> {
        if u32_at(b, at)? != CENTRAL_HEADER_SIG {
            return None;
        }
        let flags = u16_at(b, at + 8)?;
        let method = u16_at(b, at + 10)?;
        let crc32 = u32_at(b, at + 16)?;
        let mut compressed_size = u64::from(u32_at(b, at + 20)?);
        let mut size = u64::from(u32_at(b, at + 24)?);
        let name_len = usize::from(u16_at(b, at + 28)?);
        let extra_len = usize::from(u16_at(b, at + 30)?);
        let comment_len = usize::from(u16_at(b, at + 32)?);
        let mut offset = u64::from(u32_at(b, at + 42)?);
        let name_start = at + 46;
        let name_bytes = b.get(name_start..name_start + name_len)?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = b.get(name_start + name_len..name_start + name_len + extra_len)?;
        // ZIP64 extra field: only the fields saturated in the header are present, in order.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e)?;
            let len = usize::from(u16_at(extra, e + 2)?);
            let body = extra.get(e + 4..e + 4 + len)?;
            if id == ZIP64_EXTRA_ID {
                let mut f = 0;
                for field in [&mut size, &mut compressed_size, &mut offset] {
                    if *field == U32_MAX {
                        *field = u64_at(body, f)?;
                        f += 8;
                    }
                }
            }
            e += 4 + len;
        }
        Some(CentralHeader {
            flags,
            method,
            crc32,
            compressed_size,
            size,
            offset,
            name,
            next: name_start + name_len + extra_len + comment_len,
        })
    }
}

/// The data of the entry whose local header is at `offset` (the local header's own name and
/// extra lengths may differ from the central directory's).
fn local_data(b: &[u8], offset: u64, compressed_size: u64) -> Option<&[u8]> {
    let at = usize::try_from(offset).ok()?;
    if u32_at(b, at)? != LOCAL_HEADER_SIG {
        return None;
    }
    let start = at + 30 + usize::from(u16_at(b, at + 26)?) + usize::from(u16_at(b, at + 28)?);
    let len = usize::try_from(compressed_size).ok()?;
    b.get(start..start.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Checks an archive with the system's unzip (Info-ZIP), or Python's zipfile where unzip
    /// is missing; the machine setup (scripts/install-deps.sh) installs unzip.
    fn external_test(zip: &[u8]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.zip");
        std::fs::write(&path, zip).expect("write");
        let out = match Command::new("unzip").arg("-t").arg(&path).output() {
            Ok(out) => out,
            Err(_) => Command::new("python3")
                .args(["-m", "zipfile", "-t"])
                .arg(&path)
                .output()
                .expect("neither unzip nor python3 is installed"),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the archive does not test clean:\n{text}");
        text
    }

    /// Unpacks with unzip and returns (name, bytes) of every file, sorted.
    fn unzip_all(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.zip");
        std::fs::write(&path, zip).expect("write");
        let out_dir = dir.path().join("out");
        let out = Command::new("unzip").arg("-q").arg(&path).arg("-d").arg(&out_dir).output().expect("unzip");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut files = Vec::new();
        let mut stack = vec![out_dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(&out_dir).expect("prefix").to_string_lossy().into_owned();
                    files.push((rel, std::fs::read(&p).expect("read")));
                }
            }
        }
        files.sort();
        files
    }

    fn sample() -> Vec<(String, Vec<u8>)> {
        vec![
            ("manifest.csv".into(), b"device_id,cn,serial,file\n1,dev-1,01,dev-1.p12\n".to_vec()),
            ("dev-1.p12".into(), (0..=255u8).cycle().take(3000).collect()),
            ("empty.txt".into(), Vec::new()),
            ("certs/zařízení-č.2.pem".into(), b"-----BEGIN CERTIFICATE-----\n".to_vec()),
        ]
    }

    fn write(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut w = ZipStreamWriter::with_time(Vec::new(), 1_764_000_000);
        for (n, b) in entries {
            w.add_file(n, b).expect("add");
        }
        w.finish().expect("finish")
    }

    #[test]
    fn output_tests_clean_and_round_trips_through_unzip() {
        let entries = sample();
        let zip = write(&entries);
        let report = external_test(&zip);
        assert!(report.contains("No errors") || report.contains("Done testing"), "{report}");
        let mut want = entries.clone();
        want.sort();
        assert_eq!(unzip_all(&zip), want);
    }

    #[test]
    fn python_zipfile_reads_names_and_bytes() {
        let entries = sample();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.zip");
        std::fs::write(&path, write(&entries)).expect("write");
        let script = "import sys,zipfile,hashlib\nz=zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\n\
                      for i in z.infolist(): print(i.filename, i.file_size, hashlib.sha256(z.read(i)).hexdigest(), i.date_time)";
        let out = Command::new("python3").args(["-c", script]).arg(&path).output().expect("python3");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), entries.len());
        for ((name, bytes), line) in entries.iter().zip(&lines) {
            let digest = crate::pki::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
            // 1_764_000_000 is 2025-11-24 16:00:00 UTC.
            assert_eq!(*line, format!("{name} {} {digest} (2025, 11, 24, 16, 0, 0)", bytes.len()));
        }
    }

    #[test]
    fn streams_as_it_goes() {
        let mut w = ZipStreamWriter::new(Vec::new());
        w.add_file("a.bin", &[7u8; 1000]).expect("add");
        let first = std::mem::take(w.get_mut());
        assert_eq!(first.len(), 30 + 5 + 1000, "the entry is written when it is added");
        assert_eq!(w.bytes_written(), first.len() as u64);
        w.add_file("b.bin", &[8u8; 10]).expect("add");
        let second = std::mem::take(w.get_mut());
        let tail = w.finish().expect("finish");
        let whole = [first, second, tail].concat();
        let got = read_zip(&whole, 10_000).expect("reads");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes, vec![7u8; 1000]);
        external_test(&whole);
    }

    #[test]
    fn unsafe_or_duplicate_names_are_refused() {
        let mut w = ZipStreamWriter::new(Vec::new());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "dir/", "a//b", "a\nb", "./a"] {
            let e = w.add_file(bad, b"x").expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert_eq!(w.bytes_written(), 0, "nothing written for refused names");
        w.add_file("a.pem", b"x").expect("first");
        assert_eq!(w.add_file("a.pem", b"y").expect_err("dup").kind(), io::ErrorKind::InvalidInput);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn more_than_65535_entries_use_zip64() {
        let mut w = ZipStreamWriter::new(Vec::new());
        let n = 70_000;
        for i in 0..n {
            w.add_file(&format!("d/{i}.txt"), i.to_string().as_bytes()).expect("add");
        }
        let zip = w.finish().expect("finish");
        assert!(zip.windows(4).any(|s| s == ZIP64_EOCD_SIG.to_le_bytes()), "ZIP64 end record written");
        external_test(&zip);
        let got = read_zip(&zip, u64::MAX).expect("reads back");
        assert_eq!(got.len(), n);
        assert_eq!(got[69_999].name, "d/69999.txt");
        assert_eq!(got[69_999].bytes, b"69999");
    }

    #[test]
    fn offsets_past_4_gib_get_zip64_extra_fields() {
        // Writing 4 GiB in a unit test is too slow: start the writer as if 4 GiB were behind
        // it and check the central directory it then writes, through our reader.
        let mut w = ZipStreamWriter::with_time(Vec::new(), 0);
        w.add_file("low.txt", b"low").expect("add");
        w.offset = 5 << 30;
        w.add_file("high.txt", b"high").expect("add");
        let bytes = w.finish().expect("finish");
        // The ZIP64 end record gives the logical central-directory offset (past 4 GiB).
        let record = bytes.windows(4).position(|s| s == ZIP64_EOCD_SIG.to_le_bytes()).expect("ZIP64 record");
        assert_eq!(u64_at(&bytes, record + 32), Some(2), "entries");
        assert_eq!(u64_at(&bytes, record + 48), Some((5u64 << 30) + 30 + 8 + 4), "central directory offset");
        let eocd = bytes.len() - 22;
        assert_eq!(u32_at(&bytes, eocd + 16), Some(0xFFFF_FFFF), "the classic record defers to ZIP64");
        let cd_start = 30 + 7 + 3 + 30 + 8 + 4;
        let low = CentralHeader::parse(&bytes, cd_start).expect("low");
        assert_eq!((low.name.as_str(), low.offset), ("low.txt", 0));
        let high = CentralHeader::parse(&bytes, low.next).expect("high");
        assert_eq!((high.name.as_str(), high.offset, high.size), ("high.txt", 5 << 30, 4));
    }

    #[test]
    fn dos_times() {
        assert_eq!(dos_date_time(0), (0, (1 << 5) | 1), "before 1980 clamps");
        // 2000-02-29 13:45:58 UTC
        let (t, d) = dos_date_time(951_831_958);
        assert_eq!((d >> 9, (d >> 5) & 0xF, d & 0x1F), (20, 2, 29));
        assert_eq!((t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2), (13, 45, 58));
    }

    /// A ZIP made by Python with deflate, a directory entry and macOS metadata.
    fn python_zip(files: &[(&str, &[u8])], dir: &std::path::Path) -> Vec<u8> {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        for (n, b) in files {
            std::fs::write(src.join(n), b).expect("write");
        }
        let out = dir.join("in.zip");
        let script = "import sys,zipfile,os\nz=zipfile.ZipFile(sys.argv[2],'w',zipfile.ZIP_DEFLATED)\n\
                      z.writestr('csrs/','')\nz.writestr('__MACOSX/._a','junk')\n\
                      for n in sorted(os.listdir(sys.argv[1])): z.write(os.path.join(sys.argv[1],n),'csrs/'+n)\nz.close()";
        let st = Command::new("python3").args(["-c", script]).arg(&src).arg(&out).status().expect("python3");
        assert!(st.success());
        std::fs::read(out).expect("read")
    }

    #[test]
    fn reads_deflated_zips_from_other_tools() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = b"hello hello hello hello hello hello".repeat(50);
        let zip = python_zip(&[("a.pem", &a), ("b.der", &[1, 2, 3])], dir.path());
        let got = read_zip(&zip, 1 << 20).expect("reads");
        let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["csrs/a.pem", "csrs/b.der"], "directories and __MACOSX skipped");
        assert_eq!(got[0].bytes, a);
        assert_eq!(got[1].bytes, [1, 2, 3]);
    }

    #[test]
    fn zip_bombs_and_corruption_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zeros = vec![0u8; 5 << 20];
        let zip = python_zip(&[("zeros.bin", &zeros)], dir.path());
        assert!(zip.len() < 64 * 1024, "deflate packs zeros: {}", zip.len());
        let err = read_zip(&zip, 1 << 20).expect_err("over the limit").to_string();
        assert!(err.contains("inflate past 1048576 bytes") && err.contains("zeros.bin"), "{err}");
        // A header that lies about the size: inflation stops at the declared size.
        let mut lying = write(&[("x".into(), vec![1; 10])]);
        let cd = find_end(&lying).expect("end").cd_offset as usize;
        lying[cd + 24..cd + 28].copy_from_slice(&5u32.to_le_bytes());
        assert!(read_zip(&lying, 1 << 20).is_err());
        // A flipped data byte fails the CRC.
        let mut flipped = write(&[("x".into(), vec![1; 10])]);
        flipped[32] ^= 0xFF;
        let err = read_zip(&flipped, 1 << 20).expect_err("crc").to_string();
        assert!(err.contains("CRC-32"), "{err}");
        for junk in [&b""[..], b"PK", b"not a zip at all, just text....."] {
            assert!(matches!(read_zip(junk, 1 << 20), Err(PkiError::Malformed { what: "ZIP", .. })));
        }
        let whole = write(&sample());
        for cut in [10, whole.len() / 2, whole.len() - 30] {
            assert!(read_zip(&whole[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        assert!(looks_like_zip(&whole) && !looks_like_zip(b"-----BEGIN"));
    }
}
