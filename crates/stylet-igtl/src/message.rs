//! Messages: the 58-byte header, the version-2 extended header and metadata, and the bodies.

use crate::wire::{put_f32s, put_text, put_u16, put_u32, put_u64, text_from, Reader, Short};
use crate::IgtlError;

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

/// POSITION's orientation part (its three body sizes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Orientation {
    /// 12-byte body: position only.
    None,
    /// 24-byte body: quaternion x, y, z (w follows from the unit norm).
    Xyz([f32; 3]),
    /// 28-byte body: quaternion x, y, z, w.
    Xyzw([f32; 4]),
}

/// One POINT element (136 bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct PointElement {
    /// Name (64).
    pub name: String,
    /// Group (32), e.g. `Landmark`, `Fiducial`.
    pub group: String,
    /// Colour RGBA.
    pub rgba: [u8; 4],
    /// Position, mm (RAS in 3D Slicer).
    pub position: [f32; 3],
    /// Diameter, mm.
    pub diameter: f32,
    /// Owner image (20).
    pub owner: String,
}

/// One TRAJ element (150 bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct TrajElement {
    /// Name (64).
    pub name: String,
    /// Group (32), e.g. `TRAJECTORY`.
    pub group: String,
    /// 1: entry only, 2: target only, 3: both.
    pub kind: i8,
    /// Colour RGBA.
    pub rgba: [u8; 4],
    /// Entry point, mm.
    pub entry: [f32; 3],
    /// Target point, mm.
    pub target: [f32; 3],
    /// Radius, mm.
    pub radius: f32,
    /// Owner image (20).
    pub owner: String,
}

/// IMAGE (72-byte image header, then the pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Image header version (1).
    pub header_version: u16,
    /// Components per pixel.
    pub components: u8,
    /// Scalar type: 2 int8, 3 uint8, 4 int16, 5 uint16, 6 int32, 7 uint32, 10 float32, 11 float64.
    pub scalar_type: u8,
    /// 1 big endian, 2 little endian.
    pub endian: u8,
    /// 1 RAS, 2 LPS.
    pub coordinate: u8,
    /// Image size, pixels.
    pub size: [u16; 3],
    /// tx ty tz sx sy sz nx ny nz px py pz: the axes scaled by the spacing, and the centre.
    pub matrix: [f32; 12],
    /// Sub-volume offset.
    pub subvolume_offset: [u16; 3],
    /// Sub-volume size (the pixels sent).
    pub subvolume_size: [u16; 3],
    /// The sub-volume's pixels.
    pub pixels: Vec<u8>,
}

impl Image {
    /// Bytes per scalar of `scalar_type`, if known.
    #[must_use]
    pub fn scalar_bytes(scalar_type: u8) -> Option<usize> {
        Some(match scalar_type {
            2 | 3 => 1,
            4 | 5 => 2,
            6 | 7 | 10 => 4,
            11 => 8,
            _ => return None,
        })
    }
}

/// A query prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// `GET_`: send one.
    Get,
    /// `STT_`: start streaming.
    Start,
    /// `STP_`: stop streaming.
    Stop,
    /// `RTS_`: a reply to one of those.
    Reply,
}

impl Query {
    fn prefix(self) -> &'static str {
        match self {
            Query::Get => "GET_",
            Query::Start => "STT_",
            Query::Stop => "STP_",
            Query::Reply => "RTS_",
        }
    }
}

/// STATUS codes.
pub mod status {
    /// Invalid.
    pub const INVALID: u16 = 0;
    /// OK.
    pub const OK: u16 = 1;
    /// Unknown error.
    pub const UNKNOWN_ERROR: u16 = 2;
    /// Panic mode (emergency).
    pub const PANIC: u16 = 3;
    /// Not found.
    pub const NOT_FOUND: u16 = 4;
    /// Access denied.
    pub const ACCESS_DENIED: u16 = 5;
    /// Busy.
    pub const BUSY: u16 = 6;
    /// Time out / connection lost.
    pub const TIME_OUT: u16 = 7;
    /// Overflow.
    pub const OVERFLOW: u16 = 8;
    /// Checksum error.
    pub const CHECKSUM_ERROR: u16 = 9;
    /// Configuration error.
    pub const CONFIG_ERROR: u16 = 10;
    /// Not enough resource (memory, storage).
    pub const RESOURCE_ERROR: u16 = 11;
    /// Illegal / unknown instruction.
    pub const UNKNOWN_INSTRUCTION: u16 = 12;
    /// Device not ready (starting up).
    pub const NOT_READY: u16 = 13;
    /// Manual mode (device does not accept commands).
    pub const MANUAL_MODE: u16 = 14;
    /// Device disabled.
    pub const DISABLED: u16 = 15;
    /// Device not present.
    pub const NOT_PRESENT: u16 = 16;
    /// Device version not known.
    pub const UNKNOWN_VERSION: u16 = 17;
    /// Hardware failure.
    pub const HARDWARE_FAILURE: u16 = 18;
    /// Exiting / shut down in progress.
    pub const SHUTTING_DOWN: u16 = 19;
}

/// A message body.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// TRANSFORM: R11 R21 R31 R12 R22 R32 R13 R23 R33 TX TY TZ (a 4x4 matrix's upper 3x4, by column).
    Transform([f32; 12]),
    /// POSITION.
    Position {
        /// Position, mm.
        position: [f32; 3],
        /// Orientation, as the body size says.
        orientation: Orientation,
    },
    /// POINT.
    Point(Vec<PointElement>),
    /// TRAJ.
    Traj(Vec<TrajElement>),
    /// STATUS.
    Status {
        /// Code (see [`status`]).
        code: u16,
        /// Device-specific sub-code.
        subcode: i64,
        /// Error name (20).
        error_name: String,
        /// Message.
        message: String,
    },
    /// STRING.
    String {
        /// Encoding (IANA MIBenum; 3 = US-ASCII).
        encoding: u16,
        /// The bytes.
        value: Vec<u8>,
    },
    /// COMMAND, or its reply RTS_COMMAND (`reply`).
    Command {
        /// Whether this is RTS_COMMAND.
        reply: bool,
        /// Command id.
        id: u32,
        /// Command name (128).
        name: String,
        /// Encoding of the command text.
        encoding: u16,
        /// The command text.
        command: Vec<u8>,
    },
    /// CAPABILITY: the message types the sender supports.
    Capability(Vec<String>),
    /// IMAGE.
    Image(Image),
    /// GET_/STT_/STP_/RTS_ of a type (RTS_COMMAND is [`Body::Command`]); the body as sent.
    Query {
        /// Which.
        query: Query,
        /// Of what type, e.g. `IMAGE`, `TDATA`.
        of: String,
        /// The body (empty for most).
        body: Vec<u8>,
    },
    /// A type this codec does not interpret, kept as bytes.
    Other {
        /// Its type name.
        type_name: String,
        /// Its body.
        body: Vec<u8>,
    },
}

impl Body {
    /// The header's type name.
    #[must_use]
    pub fn type_name(&self) -> String {
        match self {
            Body::Transform(_) => "TRANSFORM".into(),
            Body::Position { .. } => "POSITION".into(),
            Body::Point(_) => "POINT".into(),
            Body::Traj(_) => "TRAJ".into(),
            Body::Status { .. } => "STATUS".into(),
            Body::String { .. } => "STRING".into(),
            Body::Command { reply: false, .. } => "COMMAND".into(),
            Body::Command { reply: true, .. } => "RTS_COMMAND".into(),
            Body::Capability(_) => "CAPABILITY".into(),
            Body::Image(_) => "IMAGE".into(),
            Body::Query { query, of, .. } => format!("{}{of}", query.prefix()),
            Body::Other { type_name, .. } => type_name.clone(),
        }
    }

    /// Whether the codec interprets this type (as opposed to keeping its bytes).
    #[must_use]
    pub fn is_interpreted(&self) -> bool {
        !matches!(self, Body::Other { .. })
    }

    fn parse(type_name: &str, b: &[u8]) -> Result<Body, Short> {
        let mut r = Reader::new(b);
        let body = match type_name {
            "TRANSFORM" => Body::Transform(r.f32s("matrix")?),
            "POSITION" => {
                let position = r.f32s("position")?;
                let orientation = match b.len() {
                    12 => Orientation::None,
                    24 => Orientation::Xyz(r.f32s("quaternion")?),
                    28 => Orientation::Xyzw(r.f32s("quaternion")?),
                    _ => return Err(Short("POSITION body must be 12, 24 or 28 bytes")),
                };
                Body::Position { position, orientation }
            }
            "POINT" => {
                if !b.len().is_multiple_of(136) {
                    return Err(Short("POINT body must be a multiple of 136 bytes"));
                }
                let mut v = Vec::with_capacity(b.len() / 136);
                while r.remaining() > 0 {
                    v.push(PointElement {
                        name: r.text(64, "point name")?,
                        group: r.text(32, "point group")?,
                        rgba: [r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?],
                        position: r.f32s("point position")?,
                        diameter: r.f32("point diameter")?,
                        owner: r.text(20, "point owner")?,
                    });
                }
                Body::Point(v)
            }
            "TRAJ" | "TRAJECTORY" => {
                if !b.len().is_multiple_of(150) {
                    return Err(Short("TRAJ body must be a multiple of 150 bytes"));
                }
                let mut v = Vec::with_capacity(b.len() / 150);
                while r.remaining() > 0 {
                    let name = r.text(64, "trajectory name")?;
                    let group = r.text(32, "trajectory group")?;
                    let kind = r.i8("trajectory type")?;
                    let _reserved = r.u8("reserved")?;
                    v.push(TrajElement {
                        name,
                        group,
                        kind,
                        rgba: [r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?, r.u8("rgba")?],
                        entry: r.f32s("entry")?,
                        target: r.f32s("target")?,
                        radius: r.f32("radius")?,
                        owner: r.text(20, "trajectory owner")?,
                    });
                }
                Body::Traj(v)
            }
            "STATUS" => Body::Status {
                code: r.u16("status code")?,
                subcode: r.i64("status subcode")?,
                error_name: r.text(20, "status error name")?,
                message: text_from(r.rest()),
            },
            "STRING" => {
                let encoding = r.u16("string encoding")?;
                let n = r.u16("string length")?;
                Body::String { encoding, value: r.take(usize::from(n), "string")?.to_vec() }
            }
            "COMMAND" | "RTS_COMMAND" => {
                let id = r.u32("command id")?;
                let name = r.text(128, "command name")?;
                let encoding = r.u16("command encoding")?;
                let n = r.u32("command length")?;
                let len = usize::try_from(n).map_err(|_| Short("command"))?;
                Body::Command {
                    reply: type_name == "RTS_COMMAND",
                    id,
                    name,
                    encoding,
                    command: r.take(len, "command")?.to_vec(),
                }
            }
            "CAPABILITY" => {
                if !b.len().is_multiple_of(12) {
                    return Err(Short("CAPABILITY body must be a multiple of 12 bytes"));
                }
                Body::Capability(r.rest().chunks(12).map(text_from).collect())
            }
            "IMAGE" => {
                let mut img = Image {
                    header_version: r.u16("image header version")?,
                    components: r.u8("components")?,
                    scalar_type: r.u8("scalar type")?,
                    endian: r.u8("endian")?,
                    coordinate: r.u8("coordinate")?,
                    size: [r.u16("size")?, r.u16("size")?, r.u16("size")?],
                    matrix: r.f32s("matrix")?,
                    subvolume_offset: [r.u16("offset")?, r.u16("offset")?, r.u16("offset")?],
                    subvolume_size: [r.u16("subvolume")?, r.u16("subvolume")?, r.u16("subvolume")?],
                    pixels: Vec::new(),
                };
                let per = Image::scalar_bytes(img.scalar_type).ok_or(Short("IMAGE scalar type unknown"))?;
                let n = img.subvolume_size.iter().map(|s| usize::from(*s)).product::<usize>()
                    * usize::from(img.components)
                    * per;
                img.pixels = r.take(n, "image pixels")?.to_vec();
                Body::Image(img)
            }
            t => {
                let query =
                    [("GET_", Query::Get), ("STT_", Query::Start), ("STP_", Query::Stop), ("RTS_", Query::Reply)]
                        .into_iter()
                        .find_map(|(p, q)| t.strip_prefix(p).map(|of| (q, of)));
                match query {
                    Some((query, of)) => Body::Query { query, of: of.to_string(), body: b.to_vec() },
                    None => Body::Other { type_name: t.to_string(), body: b.to_vec() },
                }
            }
        };
        if r.remaining() > 0 && !matches!(body, Body::Status { .. } | Body::Query { .. } | Body::Other { .. }) {
            return Err(Short("bytes left over after the body"));
        }
        Ok(body)
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Body::Transform(m) => put_f32s(out, m),
            Body::Position { position, orientation } => {
                put_f32s(out, position);
                match orientation {
                    Orientation::None => {}
                    Orientation::Xyz(q) => put_f32s(out, q),
                    Orientation::Xyzw(q) => put_f32s(out, q),
                }
            }
            Body::Point(v) => {
                for p in v {
                    put_text(out, &p.name, 64);
                    put_text(out, &p.group, 32);
                    out.extend_from_slice(&p.rgba);
                    put_f32s(out, &p.position);
                    put_f32s(out, &[p.diameter]);
                    put_text(out, &p.owner, 20);
                }
            }
            Body::Traj(v) => {
                for t in v {
                    put_text(out, &t.name, 64);
                    put_text(out, &t.group, 32);
                    out.extend_from_slice(&t.kind.to_be_bytes());
                    out.push(0);
                    out.extend_from_slice(&t.rgba);
                    put_f32s(out, &t.entry);
                    put_f32s(out, &t.target);
                    put_f32s(out, &[t.radius]);
                    put_text(out, &t.owner, 20);
                }
            }
            Body::Status { code, subcode, error_name, message } => {
                put_u16(out, *code);
                out.extend_from_slice(&subcode.to_be_bytes());
                put_text(out, error_name, 20);
                out.extend_from_slice(message.as_bytes());
                out.push(0);
            }
            Body::String { encoding, value } => {
                put_u16(out, *encoding);
                put_u16(out, u16::try_from(value.len()).unwrap_or(u16::MAX));
                out.extend_from_slice(&value[..value.len().min(usize::from(u16::MAX))]);
            }
            Body::Command { id, name, encoding, command, .. } => {
                put_u32(out, *id);
                put_text(out, name, 128);
                put_u16(out, *encoding);
                put_u32(out, u32::try_from(command.len()).unwrap_or(u32::MAX));
                out.extend_from_slice(command);
            }
            Body::Capability(v) => {
                for t in v {
                    put_text(out, t, 12);
                }
            }
            Body::Image(img) => {
                put_u16(out, img.header_version);
                out.extend_from_slice(&[img.components, img.scalar_type, img.endian, img.coordinate]);
                for s in img.size {
                    put_u16(out, s);
                }
                put_f32s(out, &img.matrix);
                for s in img.subvolume_offset.iter().chain(&img.subvolume_size) {
                    put_u16(out, *s);
                }
                out.extend_from_slice(&img.pixels);
            }
            Body::Query { body, .. } | Body::Other { body, .. } => out.extend_from_slice(body),
        }
    }
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

fn check_fields(body: &Body) -> Result<(), String> {
    let fits = |what: &str, s: &str, n: usize| {
        if s.len() > n {
            Err(format!("{what} {s:?} is longer than {n} bytes"))
        } else {
            Ok(())
        }
    };
    match body {
        Body::Point(v) => v.iter().try_for_each(|p| {
            fits("point name", &p.name, 64)?;
            fits("point group", &p.group, 32)?;
            fits("point owner", &p.owner, 20)
        }),
        Body::Traj(v) => v.iter().try_for_each(|t| {
            fits("trajectory name", &t.name, 64)?;
            fits("trajectory group", &t.group, 32)?;
            fits("trajectory owner", &t.owner, 20)
        }),
        Body::Status { error_name, .. } => fits("status error name", error_name, 20),
        Body::String { value, .. } if value.len() > usize::from(u16::MAX) => {
            Err(format!("string of {} bytes is longer than 65535", value.len()))
        }
        Body::Command { name, .. } => fits("command name", name, 128),
        Body::Capability(v) => v.iter().try_for_each(|t| fits("capability type", t, 12)),
        Body::Image(img) => {
            let per = Image::scalar_bytes(img.scalar_type).ok_or("IMAGE scalar type unknown")?;
            let n = img.subvolume_size.iter().map(|s| usize::from(*s)).product::<usize>()
                * usize::from(img.components)
                * per;
            if n == img.pixels.len() {
                Ok(())
            } else {
                Err(format!("IMAGE has {} pixel bytes for a sub-volume of {n}", img.pixels.len()))
            }
        }
        _ => Ok(()),
    }
}
