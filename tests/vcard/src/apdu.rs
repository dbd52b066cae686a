//! ISO 7816-4 command APDUs as the virtual card receives them from the reader (short and
//! extended length), and the status words it answers with.

/// A parsed command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; None when absent (case 1 and 3).
    pub le: Option<usize>,
}

impl Command {
    /// Command chaining (ISO 7816-4 5.1.1): more data follows in the next command.
    pub fn chained(&self) -> bool {
        self.cla & 0x10 != 0
    }

    /// Parses the four APDU cases in short and extended form.
    pub fn parse(b: &[u8]) -> Result<Command, u16> {
        if b.len() < 4 {
            return Err(SW_WRONG_LENGTH);
        }
        let (cla, ins, p1, p2) = (b[0], b[1], b[2], b[3]);
        let body = &b[4..];
        let short_le = |v: u8| if v == 0 { 256 } else { usize::from(v) };
        let ext_le = |hi: u8, lo: u8| {
            let v = usize::from(hi) << 8 | usize::from(lo);
            if v == 0 { 65536 } else { v }
        };
        let (data, le) = match body.len() {
            0 => (Vec::new(), None),
            1 => (Vec::new(), Some(short_le(body[0]))),
            _ if body[0] != 0 => {
                let lc = usize::from(body[0]);
                match body.len() - 1 {
                    n if n == lc => (body[1..].to_vec(), None),
                    n if n == lc + 1 => (body[1..=lc].to_vec(), Some(short_le(body[lc + 1]))),
                    _ => return Err(SW_WRONG_LENGTH),
                }
            }
            3 => (Vec::new(), Some(ext_le(body[1], body[2]))),
            _ => {
                let lc = usize::from(body[1]) << 8 | usize::from(body[2]);
                let rest = &body[3..];
                match rest.len() {
                    n if n == lc => (rest.to_vec(), None),
                    n if n == lc + 2 => (rest[..lc].to_vec(), Some(ext_le(rest[lc], rest[lc + 1]))),
                    _ => return Err(SW_WRONG_LENGTH),
                }
            }
        };
        Ok(Command { cla, ins, p1, p2, data, le })
    }
}

pub const SW_OK: u16 = 0x9000;
pub const SW_WRONG_LENGTH: u16 = 0x6700;
pub const SW_SECURITY_NOT_SATISFIED: u16 = 0x6982;
pub const SW_AUTH_BLOCKED: u16 = 0x6983;
pub const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
pub const SW_WRONG_DATA: u16 = 0x6A80;
pub const SW_FILE_NOT_FOUND: u16 = 0x6A82;
pub const SW_INCORRECT_P1P2: u16 = 0x6A86;
pub const SW_REF_NOT_FOUND: u16 = 0x6A88;
pub const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
pub const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;

/// `data` followed by the status word.
pub fn respond(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

/// BER-TLV with a one- or two-byte tag and definite length.
pub fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

/// Reads one BER-TLV from the front of `b`: (tag bytes, value, rest).
pub fn read_tlv(b: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let tag_len =
        if b.first()? & 0x1F == 0x1F { 1 + b[1..].iter().position(|x| x & 0x80 == 0)? + 1 } else { 1 };
    let (tag, rest) = b.split_at_checked(tag_len)?;
    let (len, rest) = match *rest.first()? {
        n if n < 0x80 => (usize::from(n), &rest[1..]),
        0x81 => (usize::from(*rest.get(1)?), &rest[2..]),
        0x82 => (usize::from(*rest.get(1)?) << 8 | usize::from(*rest.get(2)?), &rest[3..]),
        _ => return None,
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_cases_short_and_extended() {
        assert_eq!(Command::parse(&[0, 0xA4, 4, 0]).map(|c| (c.data, c.le)), Ok((vec![], None)));
        assert_eq!(Command::parse(&[0, 0xCB, 0x3F, 0xFF, 0]).map(|c| c.le), Ok(Some(256)));
        let c = Command::parse(&[0, 0x20, 0, 0x80, 2, 1, 2]).expect("case 3");
        assert_eq!((c.data, c.le), (vec![1, 2], None));
        let c = Command::parse(&[0, 0xCB, 0x3F, 0xFF, 1, 9, 0]).expect("case 4");
        assert_eq!((c.data, c.le), (vec![9], Some(256)));
        let c = Command::parse(&[0, 0xDB, 0x3F, 0xFF, 0, 0, 2, 7, 8, 0, 0]).expect("extended case 4");
        assert_eq!((c.data, c.le), (vec![7, 8], Some(65536)));
        assert_eq!(Command::parse(&[0, 0x20, 0, 0x80, 5, 1]), Err(SW_WRONG_LENGTH));
        assert!(Command::parse(&[0x10, 0xDB, 0x3F, 0xFF, 1, 1]).expect("chained").chained());
    }

    #[test]
    fn tlv_round_trip() {
        for n in [0usize, 5, 127, 128, 255, 256, 1000] {
            let v = vec![0xAB; n];
            let t = tlv(&[0x7F, 0x49], &v);
            let (tag, value, rest) = read_tlv(&t).expect("reads back");
            assert_eq!((tag, value, rest.len()), (&[0x7F, 0x49][..], &v[..], 0));
        }
    }
}
