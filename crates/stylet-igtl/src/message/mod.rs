//! Messages: the 58-byte header, the version-2 extended header and metadata, and the bodies
//! ([`body`], by type: [`spatial`], [`image`], [`polydata`]).

mod body;
mod image;
mod polydata;
mod spatial;

pub use body::{status, Body, Query};
pub use image::{Image, ImageMeta};
pub use polydata::{PolyAttribute, PolyData};
pub use spatial::{Orientation, PointElement, TrajElement};

use crate::wire::{put_text, put_u16, put_u32, put_u64, Reader, Short};
use crate::IgtlError;
use body::check_fields;

/// Header size, bytes.
pub const HEADER_SIZE: usize = 58;
/// Extended header size (header version 2), bytes.
pub const EXTENDED_HEADER_SIZE: usize = 12;

const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);

/// CRC-64/ECMA-182 (init 0, not reflected, no final xor) of a body.
#[must_use]
pub fn crc64(body: &[u8]) -> u64 {
    CRC.checksum(body)
}

/// The fixed header, as on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1 (protocol v1/v2) or 2 (protocol v3: extended header and metadata in the body).
    pub version: u16,
    /// Message type, e.g. `TRANSFORM`, `GET_IMAGE` (at most 12 bytes).
    pub type_name: String,
    /// Device name (at most 20 bytes).
    pub device_name: String,
    /// Timestamp: seconds in the upper 32 bits, fraction of a second in the lower 32.
    pub timestamp: u64,
    /// Body size, bytes.
    pub body_size: u64,
    /// CRC-64 of the body.
    pub crc: u64,
}

impl Header {
    /// Parses the 58 header bytes.
    ///
    /// # Errors
    /// [`IgtlError::ShortHeader`] with fewer than 58 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, IgtlError> {
        let mut r = Reader::new(b.get(..HEADER_SIZE).ok_or(IgtlError::ShortHeader { got: b.len() })?);
        let short = |_: Short| IgtlError::ShortHeader { got: b.len() };
        Ok(Self {
            version: r.u16("version").map_err(short)?,
            type_name: r.text(12, "type").map_err(short)?,
            device_name: r.text(20, "device name").map_err(short)?,
            timestamp: r.u64("timestamp").map_err(short)?,
            body_size: r.u64("body size").map_err(short)?,
            crc: r.u64("crc").map_err(short)?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        put_u16(out, self.version);
        put_text(out, &self.type_name, 12);
        put_text(out, &self.device_name, 20);
        put_u64(out, self.timestamp);
        put_u64(out, self.body_size);
        put_u64(out, self.crc);
    }
}

/// One metadata entry (header version 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaEntry {
    /// Key.
    pub key: String,
    /// Value encoding (IANA MIBenum; 3 = US-ASCII, 106 = UTF-8).
    pub encoding: u16,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// What header version 2 adds: the message id and metadata.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Extended {
    /// Message id.
    pub message_id: u32,
    /// Metadata, in order.
    pub metadata: Vec<MetaEntry>,
}

/// A whole message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Header version: 1, or 2 with [`Message::extended`].
    pub version: u16,
    /// Device name (at most 20 bytes).
    pub device_name: String,
    /// Timestamp (seconds << 32 | fraction).
    pub timestamp: u64,
    /// Header version 2's message id and metadata.
    pub extended: Option<Extended>,
    /// The body.
    pub body: Body,
}

impl Message {
    /// A version-1 message.
    #[must_use]
    pub fn new(device_name: &str, body: Body) -> Self {
        Self { version: 1, device_name: device_name.to_string(), timestamp: 0, extended: None, body }
    }

    /// Decodes a header and its body (the body exactly `header.body_size` bytes), checking the
    /// CRC.
    ///
    /// # Errors
    /// [`IgtlError`]: bad CRC, unsupported version, missing extended header, malformed body.
    pub fn decode(header: &Header, body: &[u8]) -> Result<Self, IgtlError> {
        let actual = crc64(body);
        if actual != header.crc {
            return Err(IgtlError::Crc {
                type_name: header.type_name.clone(),
                device: header.device_name.clone(),
                expected: header.crc,
                actual,
            });
        }
        let bad = |reason: &str| IgtlError::Body { type_name: header.type_name.clone(), reason: reason.to_string() };
        let (content, extended) = match header.version {
            1 => (body, None),
            2 => {
                let mut r = Reader::new(body);
                let missing = |_: Short| IgtlError::MissingExtendedHeader {
                    type_name: header.type_name.clone(),
                    body_size: body.len(),
                };
                let ext_size = r.u16("extended header size").map_err(missing)?;
                let meta_header_size = r.u16("metadata header size").map_err(missing)?;
                let meta_size = r.u32("metadata size").map_err(missing)?;
                let message_id = r.u32("message id").map_err(missing)?;
                // Protocol v3's extended header is 12 bytes and says so first: anything else is a
                // version-1 body under a version-2 header.
                if usize::from(ext_size) != EXTENDED_HEADER_SIZE {
                    return Err(missing(Short("extended header size")));
                }
                let meta_total = usize::from(meta_header_size)
                    .checked_add(usize::try_from(meta_size).map_err(|_| bad("metadata size"))?)
                    .ok_or_else(|| bad("metadata size"))?;
                let content_end = body
                    .len()
                    .checked_sub(meta_total)
                    .filter(|e| *e >= usize::from(ext_size))
                    .ok_or_else(|| bad("metadata larger than the body"))?;
                let content = &body[usize::from(ext_size)..content_end];
                let metadata = parse_metadata(&body[content_end..], meta_header_size).map_err(|Short(f)| bad(f))?;
                (content, Some(Extended { message_id, metadata }))
            }
            v => return Err(IgtlError::Version(v)),
        };
        let body = Body::parse(&header.type_name, content).map_err(|Short(f)| bad(f))?;
        Ok(Self {
            version: header.version,
            device_name: header.device_name.clone(),
            timestamp: header.timestamp,
            extended,
            body,
        })
    }

    /// Encodes header and body.
    ///
    /// # Errors
    /// [`IgtlError::Encode`] when a name does not fit its field or a value does not fit its
    /// length field.
    pub fn encode(&self) -> Result<Vec<u8>, IgtlError> {
        let type_name = self.body.type_name();
        let refuse = |reason: String| IgtlError::Encode { type_name: type_name.clone(), reason };
        if type_name.len() > 12 {
            return Err(refuse(format!("type name {type_name:?} is longer than 12 bytes")));
        }
        if self.device_name.len() > 20 {
            return Err(refuse(format!("device name {:?} is longer than 20 bytes", self.device_name)));
        }
        check_fields(&self.body).map_err(refuse)?;
        let mut body = Vec::new();
        match (self.version, &self.extended) {
            (1, _) => self.body.write(&mut body),
            (2, ext) => {
                let ext = ext.clone().unwrap_or_default();
                let meta_header_size = 2 + 8 * ext.metadata.len();
                let meta_size: usize = ext.metadata.iter().map(|m| m.key.len() + m.value.len()).sum();
                put_u16(&mut body, EXTENDED_HEADER_SIZE as u16);
                put_u16(&mut body, u16::try_from(meta_header_size).map_err(|_| refuse("too much metadata".into()))?);
                put_u32(&mut body, u32::try_from(meta_size).map_err(|_| refuse("too much metadata".into()))?);
                put_u32(&mut body, ext.message_id);
                self.body.write(&mut body);
                put_u16(&mut body, ext.metadata.len() as u16);
                for m in &ext.metadata {
                    let k =
                        u16::try_from(m.key.len()).map_err(|_| refuse(format!("metadata key {:?} too long", m.key)))?;
                    let v = u32::try_from(m.value.len()).map_err(|_| refuse("metadata value too long".into()))?;
                    put_u16(&mut body, k);
                    put_u16(&mut body, m.encoding);
                    put_u32(&mut body, v);
                }
                for m in &ext.metadata {
                    body.extend_from_slice(m.key.as_bytes());
                    body.extend_from_slice(&m.value);
                }
            }
            (v, _) => return Err(IgtlError::Version(v)),
        }
        let header = Header {
            version: self.version,
            type_name: type_name.clone(),
            device_name: self.device_name.clone(),
            timestamp: self.timestamp,
            body_size: body.len() as u64,
            crc: crc64(&body),
        };
        let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
        header.write(&mut out);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

fn parse_metadata(b: &[u8], header_size: u16) -> Result<Vec<MetaEntry>, Short> {
    if header_size == 0 && b.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(b);
    let count = r.u16("metadata index count")?;
    if usize::from(header_size) != 2 + 8 * usize::from(count) {
        return Err(Short("metadata header size does not match its entry count"));
    }
    let mut heads = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        heads.push((r.u16("metadata key size")?, r.u16("metadata encoding")?, r.u32("metadata value size")?));
    }
    let mut out = Vec::with_capacity(heads.len());
    for (k, encoding, v) in heads {
        let key = String::from_utf8_lossy(r.take(usize::from(k), "metadata key")?).into_owned();
        let value = r.take(usize::try_from(v).map_err(|_| Short("metadata value"))?, "metadata value")?.to_vec();
        out.push(MetaEntry { key, encoding, value });
    }
    if r.remaining() > 0 {
        return Err(Short("bytes left over after the metadata"));
    }
    Ok(out)
}
