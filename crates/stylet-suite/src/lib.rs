//! The CT suite's devices behind the procedure's ports (`stylet procedure`): the site config
//! that names them, the planning inputs from files, and CTs from the scanner over DICOM or a
//! watched folder, checked against the planning CT before the driver sees them.

pub mod ct;
pub mod planning;
pub mod site;

pub use ct::{Arrivals, FolderWatch, ScannerCt};
pub use site::{Site, SiteError};
