//! Message bodies: the [`Body`] of every type the codec interprets, parsed and written by type
//! (the spatial ones in [`super::spatial`], IMAGE in [`super::image`]).

use super::image::{Image, ImageMeta};
use super::polydata::PolyData;
use super::spatial::{self, Orientation, PointElement, TrajElement};
use crate::wire::{put_f32s, put_text, put_u16, put_u32, text_from, Reader, Short};

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
    pub(super) fn prefix(self) -> &'static str {
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
    /// IMGMETA: the images the sender has.
    ImgMeta(Vec<ImageMeta>),
    /// POLYDATA: a surface or lines.
    PolyData(PolyData),
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
            Body::ImgMeta(_) => "IMGMETA".into(),
            Body::PolyData(_) => "POLYDATA".into(),
            Body::Query { query, of, .. } => format!("{}{of}", query.prefix()),
            Body::Other { type_name, .. } => type_name.clone(),
        }
    }

    /// Whether the codec interprets this type (as opposed to keeping its bytes).
    #[must_use]
    pub fn is_interpreted(&self) -> bool {
        !matches!(self, Body::Other { .. })
    }

    pub(super) fn parse(type_name: &str, b: &[u8]) -> Result<Body, Short> {
        let mut r = Reader::new(b);
        let body = match type_name {
            "TRANSFORM" => Body::Transform(r.f32s("matrix")?),
            "POSITION" => spatial::parse_position(&mut r, b.len())?,
            "POINT" => Body::Point(spatial::parse_points(&mut r, b.len())?),
            "TRAJ" | "TRAJECTORY" => Body::Traj(spatial::parse_trajs(&mut r, b.len())?),
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
            "IMAGE" => Body::Image(Image::parse(&mut r)?),
            "IMGMETA" => Body::ImgMeta(ImageMeta::parse_all(&mut r, b.len())?),
            "POLYDATA" => Body::PolyData(PolyData::parse(&mut r)?),
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

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Body::Transform(m) => put_f32s(out, m),
            Body::Position { position, orientation } => spatial::write_position(out, position, orientation),
            Body::Point(v) => spatial::write_points(out, v),
            Body::Traj(v) => spatial::write_trajs(out, v),
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
            Body::Image(img) => img.write(out),
            Body::ImgMeta(v) => ImageMeta::write_all(out, v),
            Body::PolyData(p) => p.write(out),
            Body::Query { body, .. } | Body::Other { body, .. } => out.extend_from_slice(body),
        }
    }
}

/// Whether every name fits its field and every length its data (what encoding checks first).
pub(super) fn check_fields(body: &Body) -> Result<(), String> {
    match body {
        Body::Point(v) => spatial::check_points(v),
        Body::Traj(v) => spatial::check_trajs(v),
        Body::Status { error_name, .. } => fits("status error name", error_name, 20),
        Body::String { value, .. } if value.len() > usize::from(u16::MAX) => {
            Err(format!("string of {} bytes is longer than 65535", value.len()))
        }
        Body::Command { name, .. } => fits("command name", name, 128),
        Body::Capability(v) => v.iter().try_for_each(|t| fits("capability type", t, 12)),
        Body::Image(img) => img.check(),
        Body::ImgMeta(v) => ImageMeta::check_all(v),
        Body::PolyData(p) => p.check(),
        _ => Ok(()),
    }
}

/// `Ok` when `s` fits a field of `n` bytes, else what does not fit.
pub(super) fn fits(what: &str, s: &str, n: usize) -> Result<(), String> {
    if s.len() > n {
        Err(format!("{what} {s:?} is longer than {n} bytes"))
    } else {
        Ok(())
    }
}
