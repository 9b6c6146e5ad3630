//! A blocking OpenIGTLink client (std TCP): what Stylet uses to talk to a peer that is the server
//! (a navigation system, pyigtl's server), and what tests use to exercise the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::{Decoder, IgtlError, Message};

/// A client connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    decoder: Decoder,
}

/// A client-side failure.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum ClientError {
    /// OpenIGTLink connection to {addr}: {source}
    Io {
        /// Peer.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// OpenIGTLink: {0}
    Igtl(#[from] IgtlError),
}

impl Client {
    /// Connects.
    ///
    /// # Errors
    /// [`ClientError::Io`] naming the address.
    pub fn connect(addr: SocketAddr, max_body: usize) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io { addr: addr.to_string(), source };
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(Self { stream, decoder: Decoder::new(max_body) })
    }

    /// Sends a message.
    ///
    /// # Errors
    /// [`ClientError`]: encoding or the socket.
    pub fn send(&mut self, m: &Message) -> Result<(), ClientError> {
        let bytes = m.encode()?;
        let addr = self.peer();
        self.stream.write_all(&bytes).map_err(|source| ClientError::Io { addr, source })
    }

    fn peer(&self) -> String {
        self.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default()
    }

    /// The next message (or a rejected one's error) within `timeout`; `Ok(None)` on timeout.
    ///
    /// # Errors
    /// [`ClientError`]: the socket, or a message that could not be decoded.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        let t0 = Instant::now();
        let mut buf = [0u8; 16 << 10];
        loop {
            if let Some(r) = self.decoder.next_message() {
                return Ok(Some(r?));
            }
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            let addr = self.peer();
            let io = |source| ClientError::Io { addr: addr.clone(), source };
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).map_err(io)?;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed by the peer")));
                }
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Waits for a message from `device` (others are skipped) within `timeout`.
    ///
    /// # Errors
    /// As [`Client::recv`].
    pub fn wait_for(&mut self, device: &str, timeout: Duration) -> Result<Option<Message>, ClientError> {
        let t0 = Instant::now();
        while let Some(m) = self.recv(timeout.saturating_sub(t0.elapsed()))? {
            if m.device_name == device {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
}
