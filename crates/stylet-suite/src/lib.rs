//! The CT suite's devices behind the procedure's ports (`stylet procedure`): the site config
//! that names them, the planning inputs from files, CTs from the scanner over DICOM or a watched
//! folder (checked against the planning CT before the driver sees them), the respiratory sensor
//! on a serial port, the ablation device run by hand, the operator console's model, 3D Slicer
//! as the operator (OpenIGTLink) with network control armed at the console, and the world that puts them together with the supervisor's
//! runner (or any world run by a live operator: `LiveWorld`).

pub mod ablation;
pub mod arming;
pub mod clock;
pub mod console;
pub mod ct;
pub mod live;
pub mod planning;
pub mod respiration;
pub mod site;
pub mod slicer;
pub mod world;

pub use ablation::{AblationEnd, ManualAblation};
pub use arming::NetworkControl;
pub use clock::WallClock;
pub use console::{ConsoleOperator, Key, Keys, View, ViewSink};
pub use ct::{Arrivals, FolderWatch, ScannerCt};
pub use live::LiveWorld;
pub use respiration::{ClockSync, SensorRespiration};
pub use site::{Site, SiteError};
pub use slicer::{FrontEnd, SlicerOperator, SuiteOperator};
pub use world::SuiteWorld;
