//! The CT suite's devices behind the procedure's ports (`stylet procedure`): the site config
//! that names them, the planning inputs from files, CTs from the scanner over DICOM or a watched
//! folder (checked against the planning CT before the driver sees them), the respiratory sensor
//! on a serial port, the ablation device run by hand, the operator console's model, and the
//! world that puts them together with the supervisor's runner.

pub mod ablation;
pub mod clock;
pub mod console;
pub mod ct;
pub mod planning;
pub mod respiration;
pub mod site;
pub mod world;

pub use ablation::{AblationEnd, ManualAblation};
pub use clock::WallClock;
pub use console::{ConsoleOperator, Key, Keys, View, ViewSink};
pub use ct::{Arrivals, FolderWatch, ScannerCt};
pub use respiration::{ClockSync, SensorRespiration};
pub use site::{Site, SiteError};
pub use world::SuiteWorld;
