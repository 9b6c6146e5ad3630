//! The site config (`config/site.toml`): which devices of this CT suite `stylet procedure`
//! drives, and the planning inputs. Every field is checked when it is loaded; an error names the
//! file, the field and the value. Relative paths are taken from the file's own folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stylet_dicom_node::NodeConfig;
use stylet_planning::TumourSpec;

/// Why a site config cannot be used. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum SiteError {
    /// cannot read {path}: {reason}
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// {path}: {reason}
    Parse {
        /// The file.
        path: String,
        /// What the TOML parser said (with the key and the line).
        reason: String,
    },
    /// {path}: {field} = {value}: {why}
    Field {
        /// The file.
        path: String,
        /// The field, dotted.
        field: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// A serial device.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSite {
    /// The device path (`/dev/ttyUSB0`, `/dev/serial/by-id/...`).
    pub port: String,
    /// Baud rate.
    pub baud: u32,
}

/// Where CTs come from during the procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CtSourceKind {
    /// The scanner sends each series to Stylet's DICOM node (`[ct.dicom]`).
    Dicom,
    /// Each series appears as a new sub-folder of a watched folder (`[ct.folder]`).
    Folder,
}

/// The watched-folder source.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSite {
    /// The folder whose new sub-folders are series.
    pub watch: PathBuf,
    /// A sub-folder is complete after this long without a change, s.
    pub quiet_s: f64,
}

/// CTs during the procedure.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtSite {
    /// `dicom` or `folder`.
    pub source: CtSourceKind,
    /// How long to wait for a CT once asked for, s.
    pub timeout_s: f64,
    /// The scanner's clock, minutes east of UTC, for an AcquisitionDateTime written without an
    /// offset (and no TimezoneOffsetFromUTC).
    #[serde(default)]
    pub scanner_utc_offset_min: i32,
    /// The DICOM node (with `source = "dicom"`).
    pub dicom: Option<NodeConfig>,
    /// The watched folder (with `source = "folder"`).
    pub folder: Option<FolderSite>,
}

/// What to plan on.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanningSite {
    /// The planning CT: a folder of DICOM files.
    pub ct: PathBuf,
    /// Its SeriesInstanceUID, when the folder holds several.
    pub series: Option<String>,
    /// The label map on the planning CT's grid: NIfTI, NRRD or a 3D Slicer `.seg.nrrd`.
    pub labels: PathBuf,
    /// The label table (`labels.toml`) that says what the values mean, or `auto`.
    #[serde(default = "auto")]
    pub label_table: String,
    /// The tumour: this label value (its `component`-th largest part)...
    pub tumour_label: Option<u32>,
    /// ... largest first.
    #[serde(default)]
    pub component: usize,
    /// ... or a target point, LPS mm, treated as a tumour of `tumour_diameter_mm`.
    pub target_lps_mm: Option<[f64; 3]>,
    /// With `target_lps_mm`: the tumour's diameter, mm.
    pub tumour_diameter_mm: Option<f64>,
}

fn auto() -> String {
    "auto".into()
}

/// The ablation device: manual, the operator starts and ends it; the setting is what the plan
/// assumes (`devices.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationSite {
    /// Device name in `devices.toml`.
    pub device: String,
    /// Setting name of that device.
    pub setting: String,
}

/// 3D Slicer's connection (`stylet procedure --igtl`): where the OpenIGTLink server listens and
/// who may connect. Slicer moves the arm only once the operator arms network control at the
/// console.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgtlSite {
    /// The address to listen on (`127.0.0.1`: this host only).
    #[serde(default = "loopback")]
    pub bind: std::net::IpAddr,
    /// The TCP port.
    #[serde(default = "igtl_port")]
    pub port: u16,
    /// The workstations that may connect (addresses); anyone else's connection is closed at
    /// once and logged. Needed with any bind beyond loopback.
    #[serde(default)]
    pub allowed_peers: Vec<std::net::IpAddr>,
    /// Take the CT-to-robot registration from 3D Slicer's calibration (`CLB_`, checked rigid)
    /// instead of the fiducials in the planning CT.
    #[serde(default)]
    pub calibration_from_slicer: bool,
}

impl Default for IgtlSite {
    fn default() -> Self {
        IgtlSite { bind: loopback(), port: igtl_port(), allowed_peers: Vec::new(), calibration_from_slicer: false }
    }
}

fn loopback() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}

fn igtl_port() -> u16 {
    stylet_igtl::server::DEFAULT_PORT
}

/// The site: every device `stylet procedure` drives, and the planning inputs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The arm's motor controller.
    pub controller: SerialSite,
    /// The respiratory sensor (lines `<t_ms>,<value_mm>`).
    pub respiration: SerialSite,
    /// CTs.
    pub ct: CtSite,
    /// The planning inputs.
    pub planning: PlanningSite,
    /// The ablation device.
    pub ablation: AblationSite,
    /// 3D Slicer (with `stylet procedure --igtl`; loopback, port 18944 when absent).
    #[serde(default)]
    pub igtl: IgtlSite,
}

impl Site {
    /// Reads and checks `path`; relative paths in it are taken from its folder.
    ///
    /// # Errors
    /// A [`SiteError`] naming the file, and the field and value where one is wrong.
    pub fn load(path: &Path) -> Result<Self, SiteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SiteError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text`, as read from `path`.
    ///
    /// # Errors
    /// A [`SiteError`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, SiteError> {
        let mut site: Site = toml::from_str(text)
            .map_err(|e| SiteError::Parse { path: path.display().to_string(), reason: e.to_string() })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut site.planning.ct);
        resolve(&mut site.planning.labels);
        if let Some(d) = site.ct.dicom.as_mut() {
            resolve(&mut d.storage_dir);
        }
        if let Some(f) = site.ct.folder.as_mut() {
            resolve(&mut f.watch);
        }
        site.check(path)?;
        Ok(site)
    }

    fn check(&self, path: &Path) -> Result<(), SiteError> {
        let bad = |field: &str, value: String, why: &str| {
            Err(SiteError::Field { path: path.display().to_string(), field: field.into(), value, why: why.into() })
        };
        for (name, s) in [("controller", &self.controller), ("respiration", &self.respiration)] {
            if s.port.trim().is_empty() {
                return bad(&format!("{name}.port"), format!("{:?}", s.port), "a serial device path");
            }
            if !(1200..=12_000_000).contains(&s.baud) {
                return bad(&format!("{name}.baud"), s.baud.to_string(), "must be 1200 to 12000000");
            }
        }
        if self.controller.port == self.respiration.port {
            return bad("respiration.port", format!("{:?}", self.respiration.port), "is the controller's port too");
        }
        if !(self.ct.timeout_s.is_finite() && (10.0..=3600.0).contains(&self.ct.timeout_s)) {
            return bad("ct.timeout_s", self.ct.timeout_s.to_string(), "must be 10 to 3600");
        }
        if self.ct.scanner_utc_offset_min.abs() > 14 * 60 {
            return bad(
                "ct.scanner_utc_offset_min",
                self.ct.scanner_utc_offset_min.to_string(),
                "must be within +-840",
            );
        }
        match (self.ct.source, &self.ct.dicom, &self.ct.folder) {
            (CtSourceKind::Dicom, None, _) => {
                return bad("ct.dicom", "absent".into(), "source = \"dicom\" needs [ct.dicom]")
            }
            (CtSourceKind::Folder, _, None) => {
                return bad("ct.folder", "absent".into(), "source = \"folder\" needs [ct.folder]")
            }
            _ => {}
        }
        if let Some(d) = &self.ct.dicom {
            if let Err(stylet_dicom_node::NodeError::Config { field, value, why }) = d.validate() {
                return bad(&format!("ct.dicom.{field}"), value, &why);
            }
        }
        if !self.igtl.bind.is_loopback() && self.igtl.allowed_peers.is_empty() {
            return bad(
                "igtl.allowed_peers",
                "[]".into(),
                &format!("igtl.bind = {} reaches other hosts: name the workstations that may connect", self.igtl.bind),
            );
        }
        if let Some(f) = &self.ct.folder {
            if !(f.quiet_s.is_finite() && (0.1..=600.0).contains(&f.quiet_s)) {
                return bad("ct.folder.quiet_s", f.quiet_s.to_string(), "must be 0.1 to 600");
            }
        }
        let p = &self.planning;
        match (p.tumour_label, p.target_lps_mm, p.tumour_diameter_mm) {
            (Some(_), None, None) => {}
            (None, Some(t), Some(d)) => {
                if !t.iter().all(|x| x.is_finite()) {
                    return bad("planning.target_lps_mm", format!("{t:?}"), "three finite coordinates, LPS mm");
                }
                if !(d.is_finite() && (2.0..=100.0).contains(&d)) {
                    return bad("planning.tumour_diameter_mm", d.to_string(), "must be 2 to 100");
                }
            }
            (None, Some(_), None) => {
                return bad(
                    "planning.tumour_diameter_mm",
                    "absent".into(),
                    "a target point needs the tumour's diameter",
                )
            }
            (Some(v), Some(_), _) => {
                return bad("planning.tumour_label", v.to_string(), "give a tumour label or a target point, not both")
            }
            _ => {
                return bad(
                    "planning.tumour_label",
                    "absent".into(),
                    "give the tumour's label value, or target_lps_mm with tumour_diameter_mm",
                )
            }
        }
        Ok(())
    }

    /// The tumour to plan on.
    #[must_use]
    pub fn tumour(&self) -> TumourSpec {
        let p = &self.planning;
        match (p.tumour_label, p.target_lps_mm) {
            (Some(value), _) => TumourSpec::Label { value, component: p.component },
            (None, Some([x, y, z])) => TumourSpec::Sphere {
                centre: stylet_core::frame::Point::new(x, y, z),
                diameter_mm: p.tumour_diameter_mm.unwrap_or(20.0),
            },
            (None, None) => TumourSpec::Label { value: 0, component: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/site.toml")).unwrap()
    }

    #[test]
    fn the_shipped_site_loads_with_paths_from_its_folder() {
        let site = Site::parse(&shipped(), Path::new("/etc/stylet/site.toml")).unwrap();
        assert!(site.planning.ct.starts_with("/etc/stylet"));
        assert_eq!(site.ct.source, CtSourceKind::Dicom);
        assert!(site.ct.dicom.as_ref().unwrap().storage_dir.starts_with("/etc/stylet"));
        assert_eq!(site.igtl, IgtlSite::default());
        // Without [igtl]: this host only, on the protocol's port.
        let cut = shipped().split("\n[igtl]").next().unwrap().to_string();
        assert_eq!(Site::parse(&cut, Path::new("site.toml")).unwrap().igtl.port, 18944);
        let remote = shipped()
            .replace("bind = \"127.0.0.1\"", "bind = \"0.0.0.0\"")
            .replace("allowed_peers = []", "allowed_peers = [\"10.1.2.3\"]");
        assert_eq!(
            Site::parse(&remote, Path::new("site.toml")).unwrap().igtl.allowed_peers,
            vec![std::net::IpAddr::from([10, 1, 2, 3])]
        );
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_value() {
        let path = Path::new("site.toml");
        let cases = [
            ("baud = 115200", "baud = 7", "respiration.baud = 7"),
            ("timeout_s = 600.0", "timeout_s = 1.0", "ct.timeout_s = 1"),
            ("ae_title = \"STYLET\"", "ae_title = \"A-TITLE-LONGER-THAN-16\"", "ct.dicom.ae_title"),
            ("tumour_label = 2", "tumour_label = 2\ntarget_lps_mm = [0.0, 0.0, 0.0]", "not both"),
            ("tumour_label = 2", "", "planning.tumour_label = absent"),
            ("source = \"dicom\"", "source = \"pacs\"", "unknown variant"),
            ("[ablation]", "[ablation]\ncolour = 1", "unknown field"),
            (
                "bind = \"127.0.0.1\"",
                "bind = \"0.0.0.0\"",
                "igtl.allowed_peers = []: igtl.bind = 0.0.0.0 reaches other hosts",
            ),
            ("bind = \"127.0.0.1\"", "bind = \"the-slicer-pc\"", "invalid IP address"),
        ];
        for (from, to, expect) in cases {
            let text = shipped();
            assert!(text.contains(from), "{from}");
            let err = Site::parse(&text.replacen(from, to, 1), path).unwrap_err().to_string();
            assert!(err.starts_with("site.toml: ") && err.contains(expect), "{to}: {err}");
        }
    }
}
