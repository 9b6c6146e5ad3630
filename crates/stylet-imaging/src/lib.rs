//! CT imaging: DICOM series, NIfTI and NRRD volumes and label maps as [`Volume`]s in the DICOM
//! patient frame (LPS).

pub mod derived;
pub mod dicom;
pub mod dicom_lengths;
pub mod fiducials;
pub mod needle;
pub mod nifti;
pub mod nrrd;
pub mod organ;
pub mod seg;
pub mod sr;
mod volume;
pub mod writer;

pub use dicom::{load_series, DicomError, SeriesIdentity, SeriesReport, SourceInstance};
pub use fiducials::{detect, Fiducial, FiducialSettings, Rejected};
pub use needle::{detect_needle, NeedleError, NeedleFound, NeedleSettings};
pub use nifti::{load_nifti, parse_nifti, write_nifti, NiftiError};
pub use nrrd::{load_nrrd, nrrd_segments, parse_nrrd, NrrdError, Segment};
pub use organ::{organ_shift, smooth_box, OrganError, OrganSettings, OrganShift};
pub use volume::Volume;
pub use writer::{write_series, write_series_encoded, write_series_with, PixelEncoding, SeriesMeta, WriteError};
