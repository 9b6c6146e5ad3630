//! The DICOM node the CT scanner sends series to: a C-STORE SCP that also answers C-ECHO, over
//! dicom-rs's `dicom-ul`. Files are written as they arrive, one folder per SeriesInstanceUID; a
//! series is reported complete only after a quiet time ([`tracker`]) and a series cut off by an
//! aborted association is reported partial and never complete. Who may call (AE titles, peer
//! addresses) and where files go are configuration ([`NodeConfig`]).
//!
//! [`send`] is the other side, a C-STORE SCU (what a scanner does).
//!
//! The node knows nothing of the procedure: whether a series belongs to the planning CT's patient
//! and frame of reference is for its user to decide from [`Series`].

mod association;
mod node;
pub mod send;
pub mod tracker;

pub use association::{parse_command, DimseCommand};
pub use node::{DicomNode, NodeConfig, NodeError, NodeEvent};
pub use send::{send_series, Destination, SendError, Sender};
pub use tracker::{Series, SeriesOutcome, SeriesTracker};

/// The SOP classes the node stores: CT images (and enhanced CT). Other classes are refused at
/// association (the scanner learns at once).
pub const STORAGE_SOP_CLASSES: [&str; 2] = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"];

/// The Verification SOP class (C-ECHO).
pub const VERIFICATION_SOP_CLASS: &str = "1.2.840.10008.1.1";

/// Transfer syntaxes accepted: the native ones and the encapsulated ones stylet-imaging decodes.
/// Not Deflated Explicit VR Little Endian: its element lengths cannot be checked before it is
/// inflated (dicom-rs reserves what an element declares), and no CT scanner sends it.
pub const TRANSFER_SYNTAXES: [&str; 7] = [
    "1.2.840.10008.1.2.1",    // Explicit VR Little Endian
    "1.2.840.10008.1.2",      // Implicit VR Little Endian
    "1.2.840.10008.1.2.4.70", // JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.57", // JPEG Lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
    "1.2.840.10008.1.2.5",    // RLE Lossless
];
