//! The Stylet wire protocol between the host and the motor controller.
//!
//! Pure, allocation-free and `no_std` (disable the default `std` feature) so that controller
//! firmware links the very same codec. Specified byte by byte in `docs/protocol.md`.
//!
//! A frame on the wire is `COBS(payload) 0x00`, with
//! `payload = type:u8 | seq:u16 LE | body | crc32c:u32 LE` and the CRC (CRC-32C, Castagnoli)
//! taken over `type | seq | body`. A receiver that sees garbage resynchronises at the next 0x00.

#![cfg_attr(not(feature = "std"), no_std)]

pub mod cobs;
mod codec;
mod message;

pub use codec::{decode_payload, encode_frame, DecodeError, EncodeError, Frame, FrameDecoder, MAX_FRAME, MAX_PAYLOAD};
pub use message::{
    ControllerInfo, ControllerState, FaultCode, FaultReport, JointArray, JointSetpoint, JointState, Message,
    MessageType, NackReason, Setpoint, Status, MAX_JOINTS, PROTOCOL_VERSION,
};
