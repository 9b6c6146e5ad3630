//! Big-endian readers and writers over byte slices, and fixed-size NUL-padded text fields.
//! Every read is bounds-checked: a short body is an error naming the field, never a panic.

/// A body too short for a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Short(pub(crate) &'static str);

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Short> {
        let end = self.at.checked_add(n).ok_or(Short(field))?;
        let s = self.bytes.get(self.at..end).ok_or(Short(field))?;
        self.at = end;
        Ok(s)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.bytes[self.at..];
        self.at = self.bytes.len();
        s
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Short> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Short> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i8(&mut self, field: &'static str) -> Result<i8, Short> {
        Ok(i8::from_be_bytes(self.array::<1>(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, Short> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, Short> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn f32(&mut self, field: &'static str) -> Result<f32, Short> {
        Ok(f32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn f32s<const N: usize>(&mut self, field: &'static str) -> Result<[f32; N], Short> {
        let mut out = [0.0f32; N];
        for v in &mut out {
            *v = self.f32(field)?;
        }
        Ok(out)
    }

    /// A fixed-size text field: the bytes up to the first NUL.
    pub(crate) fn text(&mut self, n: usize, field: &'static str) -> Result<String, Short> {
        Ok(text_from(self.take(n, field)?))
    }
}

/// The bytes up to the first NUL, as text (invalid UTF-8 replaced).
pub(crate) fn text_from(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_be_bytes());
    }
}

/// Writes `s` into a field of `n` bytes, NUL-padded; text longer than the field is cut (the
/// encoder checks lengths first and refuses what does not fit).
pub(crate) fn put_text(out: &mut Vec<u8>, s: &str, n: usize) {
    let b = s.as_bytes();
    let k = b.len().min(n);
    out.extend_from_slice(&b[..k]);
    out.resize(out.len() + (n - k), 0);
}
