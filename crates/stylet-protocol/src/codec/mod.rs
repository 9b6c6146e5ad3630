//! Framing and (de)serialisation of messages.

use core::fmt;

use crate::cobs;
use crate::message::{
    fault_code, nack_reason, ControllerInfo, ControllerState, FaultReport, JointArray, JointSetpoint, JointState,
    Message, MessageType, Setpoint, Status, MAX_JOINTS,
};

/// CRC-32C (Castagnoli, iSCSI): poly 0x1EDC6F41, reflected, init and xorout 0xFFFFFFFF.
/// Slice-by-16 tables (16 KiB, in flash on firmware): about 3x faster than byte-wise.
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// Bytes before the body: type (1) and sequence number (2).
const HEADER: usize = 3;
/// The CRC trailer.
const TRAILER: usize = 4;
/// The largest body: a controller state with [`MAX_JOINTS`] joints.
const MAX_BODY: usize = 8 + 2 + 2 + 2 + 1 + MAX_JOINTS * (8 + 4 + 4);
/// The largest payload (header, body, CRC).
pub const MAX_PAYLOAD: usize = HEADER + MAX_BODY + TRAILER;
/// The largest frame on the wire, COBS overhead and delimiter included.
pub const MAX_FRAME: usize = cobs::max_encoded_len(MAX_PAYLOAD) + 1;

/// A decoded frame: its sequence number and message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    /// The sender's sequence number (wraps at 65536).
    pub seq: u16,
    /// The message.
    pub message: Message,
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A value does not fit its wire field (e.g. more joints than [`MAX_JOINTS`]).
    TooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message does not fit the frame")
    }
}

impl core::error::Error for EncodeError {}

/// Why received bytes were not a valid frame. After any of these the decoder is ready for the
/// next frame: it resynchronises at the next 0x00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More bytes than the largest frame arrived before a delimiter; they were discarded.
    Oversize,
    /// The bytes between two delimiters are not valid COBS.
    Cobs,
    /// The payload is shorter than its header and CRC.
    TooShort {
        /// Payload length.
        len: usize,
    },
    /// The CRC does not match: the frame was corrupted.
    Crc {
        /// CRC carried by the frame.
        received: u32,
        /// CRC computed over the frame.
        computed: u32,
    },
    /// An unknown message type byte.
    UnknownType(u8),
    /// The body length does not match the message type.
    BadLength {
        /// The type byte.
        msg_type: u8,
        /// The body length received.
        len: usize,
    },
    /// A joint count above [`MAX_JOINTS`].
    TooManyJoints(u8),
    /// A position, velocity or current that is NaN or infinite.
    NonFinite,
    /// An enumerated field with an unknown value.
    BadEnum {
        /// The type byte.
        msg_type: u8,
        /// The value received.
        value: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Oversize => write!(f, "frame longer than {MAX_FRAME} bytes discarded"),
            DecodeError::Cobs => f.write_str("invalid COBS encoding"),
            DecodeError::TooShort { len } => {
                write!(f, "payload of {len} bytes is shorter than header and CRC")
            }
            DecodeError::Crc { received, computed } => {
                write!(f, "CRC mismatch: frame says {received:#010x}, computed {computed:#010x}")
            }
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t:#04x}"),
            DecodeError::BadLength { msg_type, len } => {
                write!(f, "message type {msg_type:#04x} with a body of {len} bytes")
            }
            DecodeError::TooManyJoints(n) => write!(f, "{n} joints (at most {MAX_JOINTS})"),
            DecodeError::NonFinite => f.write_str("non-finite joint value"),
            DecodeError::BadEnum { msg_type, value } => {
                write!(f, "message type {msg_type:#04x} with unknown code {value}")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// Little-endian writer over a fixed buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.at + bytes.len();
        self.buf.get_mut(self.at..end).ok_or(EncodeError::TooLarge)?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}

/// Little-endian reader over a body.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.buf.get(self.at..self.at + N)?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn f32(&mut self) -> Option<f32> {
        self.take().map(f32::from_le_bytes)
    }
    fn f64(&mut self) -> Option<f64> {
        self.take().map(f64::from_le_bytes)
    }
    fn done(&self) -> bool {
        self.at == self.buf.len()
    }
}

fn write_body(w: &mut Writer<'_>, message: &Message) -> Result<(), EncodeError> {
    match message {
        Message::Hello { protocol_version, host_id } => {
            w.put(&protocol_version.to_le_bytes())?;
            w.put(&host_id.to_le_bytes())
        }
        Message::Enable { watchdog_ms } => w.put(&watchdog_ms.to_le_bytes()),
        Message::Disable | Message::EStop | Message::ResetFaults => Ok(()),
        Message::Setpoint(s) => {
            w.put(&s.host_time_us.to_le_bytes())?;
            w.put(&[s.joints.len() as u8])?;
            for j in s.joints.as_slice() {
                w.put(&j.position.to_le_bytes())?;
                w.put(&j.velocity.to_le_bytes())?;
            }
            Ok(())
        }
        Message::Heartbeat { host_time_us } => w.put(&host_time_us.to_le_bytes()),
        Message::HelloAck(i) => {
            w.put(&i.protocol_version.to_le_bytes())?;
            w.put(&i.controller_id.to_le_bytes())?;
            w.put(&[i.joint_count])?;
            w.put(&i.firmware)
        }
        Message::State(s) => {
            w.put(&s.controller_time_us.to_le_bytes())?;
            w.put(&s.last_setpoint_seq.to_le_bytes())?;
            w.put(&s.status.0.to_le_bytes())?;
            w.put(&s.joint_faults.to_le_bytes())?;
            w.put(&[s.joints.len() as u8])?;
            for j in s.joints.as_slice() {
                w.put(&j.position.to_le_bytes())?;
                w.put(&j.velocity.to_le_bytes())?;
                w.put(&j.current_a.to_le_bytes())?;
            }
            Ok(())
        }
        Message::Fault(f) => {
            w.put(&[f.code as u8, f.joint])?;
            w.put(&f.value.to_le_bytes())
        }
        Message::Ack { seq, msg_type } => {
            w.put(&seq.to_le_bytes())?;
            w.put(&[*msg_type])
        }
        Message::Nack { seq, msg_type, reason } => {
            w.put(&seq.to_le_bytes())?;
            w.put(&[*msg_type, *reason as u8])
        }
    }
}

/// Encodes one message as a complete frame (COBS, trailing 0x00) into `out`, returning its length.
///
/// # Errors
/// [`EncodeError::TooLarge`] when `out` is shorter than the frame ([`MAX_FRAME`] always suffices).
pub fn encode_frame(seq: u16, message: &Message, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut payload = [0u8; MAX_PAYLOAD];
    let mut w = Writer { buf: &mut payload, at: 0 };
    w.put(&[message.message_type() as u8])?;
    w.put(&seq.to_le_bytes())?;
    write_body(&mut w, message)?;
    let crc = CRC.checksum(&w.buf[..w.at]);
    w.put(&crc.to_le_bytes())?;
    let len = w.at;
    let n = cobs::encode(&payload[..len], out).ok_or(EncodeError::TooLarge)?;
    *out.get_mut(n).ok_or(EncodeError::TooLarge)? = 0;
    Ok(n + 1)
}

fn finite(x: f64) -> Result<f64, DecodeError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(DecodeError::NonFinite)
    }
}

fn read_body(t: u8, body: &[u8]) -> Result<Message, DecodeError> {
    let kind = MessageType::from_u8(t).ok_or(DecodeError::UnknownType(t))?;
    let bad_len = DecodeError::BadLength { msg_type: t, len: body.len() };
    let mut r = Reader { buf: body, at: 0 };
    let joints_of = |n: u8| -> Result<usize, DecodeError> {
        if usize::from(n) > MAX_JOINTS {
            Err(DecodeError::TooManyJoints(n))
        } else {
            Ok(usize::from(n))
        }
    };
    let message = (|| -> Result<Option<Message>, DecodeError> {
        Ok(Some(match kind {
            MessageType::Hello => {
                let (Some(protocol_version), Some(host_id)) = (r.u16(), r.u32()) else {
                    return Ok(None);
                };
                Message::Hello { protocol_version, host_id }
            }
            MessageType::Enable => {
                let Some(watchdog_ms) = r.u16() else {
                    return Ok(None);
                };
                Message::Enable { watchdog_ms }
            }
            MessageType::Disable => Message::Disable,
            MessageType::EStop => Message::EStop,
            MessageType::ResetFaults => Message::ResetFaults,
            MessageType::Setpoint => {
                let (Some(host_time_us), Some(n)) = (r.u64(), r.u8()) else {
                    return Ok(None);
                };
                let n = joints_of(n)?;
                let mut joints = JointArray::<JointSetpoint>::from_fn(n, |_| JointSetpoint::default())
                    .ok_or(DecodeError::TooManyJoints(n as u8))?;
                for j in joints.as_mut_slice() {
                    let (Some(p), Some(v)) = (r.f64(), r.f32()) else {
                        return Ok(None);
                    };
                    j.position = finite(p)?;
                    j.velocity = finite(f64::from(v))? as f32;
                }
                Message::Setpoint(Setpoint { host_time_us, joints })
            }
            MessageType::Heartbeat => {
                let Some(host_time_us) = r.u64() else {
                    return Ok(None);
                };
                Message::Heartbeat { host_time_us }
            }
            MessageType::HelloAck => {
                let (Some(protocol_version), Some(controller_id), Some(joint_count)) = (r.u16(), r.u32(), r.u8())
                else {
                    return Ok(None);
                };
                let Some(firmware) = r.take::<3>() else {
                    return Ok(None);
                };
                Message::HelloAck(ControllerInfo { protocol_version, controller_id, joint_count, firmware })
            }
            MessageType::State => {
                let (Some(controller_time_us), Some(last_setpoint_seq), Some(status), Some(joint_faults), Some(n)) =
                    (r.u64(), r.u16(), r.u16(), r.u16(), r.u8())
                else {
                    return Ok(None);
                };
                let n = joints_of(n)?;
                let mut joints = JointArray::<JointState>::from_fn(n, |_| JointState::default())
                    .ok_or(DecodeError::TooManyJoints(n as u8))?;
                for j in joints.as_mut_slice() {
                    let (Some(p), Some(v), Some(c)) = (r.f64(), r.f32(), r.f32()) else {
                        return Ok(None);
                    };
                    j.position = finite(p)?;
                    j.velocity = finite(f64::from(v))? as f32;
                    j.current_a = finite(f64::from(c))? as f32;
                }
                Message::State(ControllerState {
                    controller_time_us,
                    last_setpoint_seq,
                    status: Status(status),
                    joint_faults,
                    joints,
                })
            }
            MessageType::Fault => {
                let (Some(code), Some(joint), Some(value)) = (r.u8(), r.u8(), r.f32()) else {
                    return Ok(None);
                };
                let code = fault_code(code).ok_or(DecodeError::BadEnum { msg_type: t, value: code })?;
                Message::Fault(FaultReport { code, joint, value })
            }
            MessageType::Ack => {
                let (Some(seq), Some(msg_type)) = (r.u16(), r.u8()) else {
                    return Ok(None);
                };
                Message::Ack { seq, msg_type }
            }
            MessageType::Nack => {
                let (Some(seq), Some(msg_type), Some(reason)) = (r.u16(), r.u8(), r.u8()) else {
                    return Ok(None);
                };
                let reason = nack_reason(reason).ok_or(DecodeError::BadEnum { msg_type: t, value: reason })?;
                Message::Nack { seq, msg_type, reason }
            }
        }))
    })()?;
    match message {
        Some(m) if r.done() => Ok(m),
        _ => Err(bad_len),
    }
}

/// Decodes one payload (already COBS-decoded, delimiter removed).
///
/// # Errors
/// Any [`DecodeError`] but [`DecodeError::Oversize`] and [`DecodeError::Cobs`].
pub fn decode_payload(payload: &[u8]) -> Result<Frame, DecodeError> {
    if payload.len() < HEADER + TRAILER {
        return Err(DecodeError::TooShort { len: payload.len() });
    }
    let (data, crc_bytes) = payload.split_at(payload.len() - TRAILER);
    let received = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = CRC.checksum(data);
    if received != computed {
        return Err(DecodeError::Crc { received, computed });
    }
    let seq = u16::from_le_bytes([data[1], data[2]]);
    let message = read_body(data[0], &data[HEADER..])?;
    Ok(Frame { seq, message })
}

/// A streaming frame decoder with a fixed buffer: feed it bytes as they arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: [u8; MAX_FRAME],
    len: usize,
    overflowed: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// An empty decoder.
    #[must_use]
    pub const fn new() -> Self {
        FrameDecoder { buf: [0; MAX_FRAME], len: 0, overflowed: false }
    }

    /// Feeds one byte; returns a result when the byte ends a frame (a 0x00 after at least one byte).
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame, DecodeError>> {
        if byte != 0 {
            if self.len < self.buf.len() {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflowed = true;
            }
            return None;
        }
        let len = core::mem::replace(&mut self.len, 0);
        if core::mem::replace(&mut self.overflowed, false) {
            return Some(Err(DecodeError::Oversize));
        }
        if len == 0 {
            return None;
        }
        let mut payload = [0u8; MAX_PAYLOAD + 2];
        let Some(n) = cobs::decode(&self.buf[..len], &mut payload) else {
            return Some(Err(DecodeError::Cobs));
        };
        Some(decode_payload(&payload[..n]))
    }

    /// Feeds a slice, calling `on_frame` for every frame it completes (or fails). Same result as
    /// pushing byte by byte, but copies the runs between delimiters in bulk.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(Result<Frame, DecodeError>)) {
        while !bytes.is_empty() {
            let (run, rest) = match bytes.iter().position(|&b| b == 0) {
                Some(z) => (&bytes[..z], Some(&bytes[z + 1..])),
                None => (bytes, None),
            };
            let room = self.buf.len() - self.len;
            let take = run.len().min(room);
            self.buf[self.len..self.len + take].copy_from_slice(&run[..take]);
            self.len += take;
            if take < run.len() {
                self.overflowed = true;
            }
            match rest {
                Some(rest) => {
                    if let Some(r) = self.push(0) {
                        on_frame(r);
                    }
                    bytes = rest;
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
