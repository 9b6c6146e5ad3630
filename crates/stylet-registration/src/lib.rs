//! CT-to-robot registration.
//!
//! - [`rigid::register`]: rigid point registration by the Umeyama method (reflection-safe), FRE
//!   per marker and RMS, leave-one-out residuals, and the Fitzpatrick-West-Maurer predicted TRE at
//!   the planned target; quality gates refuse a registration whose predicted TRE or worst residual
//!   exceeds its limit. FRE alone is never reported as accuracy.
//! - [`matching::match_markers`]: correspondence without labels between detected CT markers and
//!   the registration frame's geometry, tolerating missing and extra detections.
//! - [`points`]: the point-file format.
//!
//! Pure: data in, data out; frames in the types (`Transform<Robot, Ct>`).

pub mod config;
pub mod matching;
pub mod points;
pub mod rigid;

pub use config::{FiducialConfig, RegistrationConfig};
pub use matching::match_markers;
pub use points::{parse_points, read_points, PointFileError};
pub use rigid::{predicted_tre, register, umeyama, Gates, MarkerResidual, Registration, RegistrationError};
