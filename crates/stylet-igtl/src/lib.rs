//! OpenIGTLink: the codec (protocol v1-v3) that lets 3D Slicer and other navigation peers drive
//! and watch Stylet (docs/igtl.md).
//!
//! Pure and allocation-bounded: [`Decoder`] takes bytes as they arrive and yields messages; a
//! body larger than its configured maximum is skipped by its size without being buffered (the
//! stream stays aligned), a bad CRC or a malformed body is an error for that message only, and a
//! type the codec does not interpret comes back as [`Body::Other`] with its bytes.
//!
//! Coordinates on the wire are whatever the peer uses: 3D Slicer sends RAS. [`ras_from_lps`] and
//! [`lps_from_ras`] convert at the boundary (Stylet's CT frame is LPS).

pub mod bwh;
pub mod client;
mod message;
pub mod scene;
pub mod server;
mod wire;

pub use message::{
    crc64, status, Body, Extended, Header, Image, ImageMeta, Message, MetaEntry, Orientation, PointElement,
    PolyAttribute, PolyData, Query, TrajElement, EXTENDED_HEADER_SIZE, HEADER_SIZE,
};

/// What went wrong with one message. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, Eq, docsplay::Display, thiserror::Error)]
pub enum IgtlError {
    /// header too short: {got} of 58 bytes
    ShortHeader {
        /// Bytes available.
        got: usize,
    },
    /// header version {0} is not supported (1: protocol v1/v2, 2: protocol v3)
    Version(u16),
    /// {type_name:?}: a body of {body_size} bytes exceeds the {max} byte limit; skipped by its size
    TooLarge {
        /// Type.
        type_name: String,
        /// Declared body size.
        body_size: u64,
        /// The limit.
        max: usize,
    },
    /// {type_name:?} from {device:?}: CRC-64 mismatch (header {expected:#018x}, body {actual:#018x})
    Crc {
        /// Type.
        type_name: String,
        /// Device.
        device: String,
        /// CRC in the header.
        expected: u64,
        /// CRC of the body received.
        actual: u64,
    },
    /// {type_name:?}: header version 2 but the body ({body_size} bytes) has no 12-byte extended header
    MissingExtendedHeader {
        /// Type.
        type_name: String,
        /// Body size.
        body_size: usize,
    },
    /// {type_name:?}: malformed body: {reason}
    Body {
        /// Type.
        type_name: String,
        /// What is wrong.
        reason: String,
    },
    /// {type_name:?} cannot be encoded: {reason}
    Encode {
        /// Type.
        type_name: String,
        /// What does not fit.
        reason: String,
    },
}

/// Incremental decoder of a byte stream (a TCP connection).
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_body: usize,
    skip: u64,
}

impl Decoder {
    /// A decoder that never buffers more than `max_body` body bytes (plus a header).
    #[must_use]
    pub fn new(max_body: usize) -> Self {
        Self { buf: Vec::new(), max_body, skip: 0 }
    }

    /// Adds received bytes. Bytes of a body being skipped are dropped at once.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(bytes.len());
            self.skip -= n as u64;
            bytes = &bytes[n..];
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held (never more than a header plus the maximum body plus what one push added).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, an error for a message that could not be taken (the stream
    /// continues after it), or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Option<Result<Message, IgtlError>> {
        if self.skip > 0 || self.buf.len() < HEADER_SIZE {
            return None;
        }
        let header = match Header::parse(&self.buf) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        if header.body_size > self.max_body as u64 {
            // Skip the body by its size without holding it.
            let have = (self.buf.len() - HEADER_SIZE) as u64;
            let drop = have.min(header.body_size);
            self.skip = header.body_size - drop;
            self.buf.drain(..HEADER_SIZE + usize::try_from(drop).unwrap_or(usize::MAX));
            return Some(Err(IgtlError::TooLarge {
                type_name: header.type_name,
                body_size: header.body_size,
                max: self.max_body,
            }));
        }
        let size = usize::try_from(header.body_size).ok()?;
        let end = HEADER_SIZE + size;
        if self.buf.len() < end {
            return None;
        }
        let r = Message::decode(&header, &self.buf[HEADER_SIZE..end]);
        self.buf.drain(..end);
        Some(r)
    }
}

/// An OpenIGTLink timestamp from a time since the Unix epoch: whole seconds in the upper 32 bits,
/// the fraction of a second in units of 2^-32 s in the lower 32 (the protocol's 32.32 format).
#[must_use]
pub fn timestamp_from_unix(since_epoch: std::time::Duration) -> u64 {
    let seconds = since_epoch.as_secs() & 0xFFFF_FFFF;
    let fraction = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The time since the Unix epoch an OpenIGTLink timestamp stands for.
#[must_use]
pub fn unix_from_timestamp(timestamp: u64) -> std::time::Duration {
    let nanos = ((timestamp & 0xFFFF_FFFF) * 1_000_000_000 + (1 << 31)) >> 32;
    std::time::Duration::new(timestamp >> 32, u32::try_from(nanos.min(999_999_999)).unwrap_or(0))
}

/// A point in 3D Slicer's RAS from Stylet's LPS (`stylet_core::frame::slicer_from_ct`).
#[must_use]
pub fn ras_from_lps(p: [f64; 3]) -> [f64; 3] {
    stylet_core::frame::lps_ras_flip(p)
}

/// A point in Stylet's LPS from 3D Slicer's RAS (`stylet_core::frame::ct_from_slicer`).
#[must_use]
pub fn lps_from_ras(p: [f64; 3]) -> [f64; 3] {
    stylet_core::frame::lps_ras_flip(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_seconds_and_a_binary_fraction() {
        assert_eq!(timestamp_from_unix(Duration::new(1_700_000_000, 500_000_000)), (1_700_000_000 << 32) | (1 << 31));
        assert_eq!(unix_from_timestamp((5 << 32) | (1 << 30)), Duration::new(5, 250_000_000));
    }

    proptest! {
        #[test]
        fn timestamps_round_trip_within_a_nanosecond(secs in 0u64..u64::from(u32::MAX), nanos in 0u32..1_000_000_000) {
            let back = unix_from_timestamp(timestamp_from_unix(Duration::new(secs, nanos)));
            prop_assert_eq!(back.as_secs(), secs);
            prop_assert!((i64::from(back.subsec_nanos()) - i64::from(nanos)).abs() <= 1);
        }
    }
}
