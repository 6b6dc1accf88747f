//! The few SSH wire primitives (RFC 4251 §5) a KRL is made of.

use crate::KrlError;

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A `string`: 32-bit big-endian length, then the bytes.
pub(crate) fn put_string(
    out: &mut Vec<u8>,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), KrlError> {
    let len = u32::try_from(bytes.len()).map_err(|_| KrlError::TooLarge(what))?;
    put_u32(out, len);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Writes a `string` whose body `fill` appends in place, then patches its length.
/// Sections nest three deep; building each in place avoids copying the bulk
/// (100,000 serials are 800 kB as a list) once per level.
pub(crate) fn put_nested(
    out: &mut Vec<u8>,
    what: &'static str,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), KrlError>,
) -> Result<(), KrlError> {
    let at = out.len();
    put_u32(out, 0);
    fill(out)?;
    let len = u32::try_from(out.len() - at - 4).map_err(|_| KrlError::TooLarge(what))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], KrlError> {
        if self.rest.len() < n {
            return Err(KrlError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, KrlError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, KrlError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, KrlError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<&'a [u8], KrlError> {
        let len = self.u32(what)? as usize;
        self.bytes(len, what)
    }

    /// A `string` read the way OpenSSH's `sshbuf_get_cstring` does: an
    /// embedded NUL is an error.
    pub(crate) fn cstring(&mut self, what: &'static str) -> Result<&'a [u8], KrlError> {
        let raw = self.string(what)?;
        if raw.contains(&0) {
            return Err(KrlError::BadString(what));
        }
        Ok(raw)
    }

    /// A [`Reader::cstring`] that must also be UTF-8, as our key ids are `String`s.
    pub(crate) fn text(&mut self, what: &'static str) -> Result<String, KrlError> {
        let raw = self.cstring(what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| KrlError::BadString(what))
    }

    /// Fails unless every byte of the section was consumed, as OpenSSH does.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), KrlError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(KrlError::TrailingData(self.rest.len(), what))
        }
    }
}
