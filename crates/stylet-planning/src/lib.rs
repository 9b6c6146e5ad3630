//! Needle trajectory planning under the clinical rules (docs/planning.md).
//!
//! - [`edt`]: exact Euclidean distance transforms on anisotropic grids.
//! - [`config`]: label tables, ablation devices (MAR-2), clinical thresholds by rule ID.
//! - [`heat_sink`]: the ablation zone shrunk toward vessels that carry its heat away (OAR-3).
//! - [`geometry`]: point-to-spheroid distance, connected components.
//! - [`plan`]: candidates on the skin, PATH/MAR/OAR rules, overlapping zones (MAR-3), ranking.

pub mod config;
pub mod edt;
pub(crate) mod geometry;
pub mod heat_sink;
pub mod plan;

pub use config::{load_zone, Class, LabelTable, Rules, Zone};
pub use plan::{margin_mm, plan, Plan, PlanError, PlanInput, PlanReport, Position, RuleCheck, Status, TumourSpec};
