//! CTs from the scanner: the [`CtSource`] port over Stylet's DICOM node (the scanner sends each
//! series, C-STORE) or, as the fallback, a watched folder (each series a new sub-folder).
//!
//! A series is used only when it answers a request, arrived whole (the node's quiet time after
//! its last instance; a series cut off mid-transfer is never used), loads as one volume, and is of
//! the planning CT's patient and frame of reference; every other series is refused with the
//! reason, given as a notice, and the source keeps waiting. Loading runs on a worker thread, so
//! the driver's ticks (heartbeat, gate) go on while a series decodes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use stylet_dicom_node::{DicomNode, NodeEvent, SeriesOutcome};
use stylet_imaging::{SeriesIdentity, SeriesReport, Volume};
use stylet_procedure::ports::{Acquired, CtPurpose, CtSource, PlanningCt, PortError};

use crate::site::FolderSite;

/// Where series arrive.
#[derive(Debug)]
pub enum Arrivals {
    /// Stylet's DICOM node.
    Node(DicomNode),
    /// A watched folder.
    Folder(FolderWatch),
}

/// A series that arrived whole, not yet looked at.
#[derive(Clone, Debug, PartialEq)]
struct Arrived {
    dir: PathBuf,
    /// Its SeriesInstanceUID, when the node knew it.
    series_uid: Option<String>,
    /// When its first file arrived, procedure s.
    first_s: f64,
}

type Load = JoinHandle<Result<(Volume, SeriesReport), String>>;

/// The scanner behind the [`CtSource`] port.
#[derive(Debug)]
pub struct ScannerCt {
    planning: Option<PlanningCt>,
    identity: SeriesIdentity,
    planning_series: String,
    arrivals: Arrivals,
    epoch: Instant,
    epoch_unix_s: f64,
    utc_offset_min: i32,
    /// The CT asked for, and when, procedure s.
    asked: Option<(CtPurpose, f64)>,
    first_stored: BTreeMap<String, f64>,
    waiting: VecDeque<Arrived>,
    loading: Option<(Arrived, Load)>,
    used: BTreeSet<String>,
    notices: Vec<String>,
}

impl ScannerCt {
    /// The source: the planning CT (handed out once) with its identity and SeriesInstanceUID,
    /// series arriving at `arrivals`, the procedure clock's start `epoch`, and the scanner's
    /// clock offset for acquisition times written without one.
    #[must_use]
    pub fn new(
        planning: PlanningCt,
        report: &SeriesReport,
        arrivals: Arrivals,
        epoch: Instant,
        utc_offset_min: i32,
    ) -> Self {
        ScannerCt {
            planning: Some(planning),
            identity: report.identity.clone(),
            planning_series: report.series_uid.clone(),
            arrivals,
            epoch,
            epoch_unix_s: unix_now() - epoch.elapsed().as_secs_f64(),
            utc_offset_min,
            asked: None,
            first_stored: BTreeMap::new(),
            waiting: VecDeque::new(),
            loading: None,
            used: BTreeSet::new(),
            notices: Vec::new(),
        }
    }

    fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Takes what arrived since the last call.
    fn collect(&mut self) {
        let now = self.now_s();
        match &mut self.arrivals {
            Arrivals::Node(node) => {
                while let Ok(e) = node.events().try_recv() {
                    match e {
                        NodeEvent::Stored { series_uid, .. } => {
                            self.first_stored.entry(series_uid).or_insert(now);
                        }
                        NodeEvent::Series(SeriesOutcome::Complete(s)) => {
                            let first_s = self.first_stored.remove(&s.series_uid).unwrap_or(now);
                            self.waiting.push_back(Arrived { dir: s.dir, series_uid: Some(s.series_uid), first_s });
                        }
                        NodeEvent::Series(SeriesOutcome::Partial { series, reason }) => {
                            self.first_stored.remove(&series.series_uid);
                            self.notices.push(format!(
                                "series {} cut off after {} instance(s) ({reason}): never used; send it again whole",
                                series.series_uid, series.instances
                            ));
                        }
                        NodeEvent::Refused { peer, reason } => {
                            self.notices.push(format!("DICOM node: refused {peer}: {reason}"));
                        }
                        NodeEvent::InstanceRefused { reason, status, .. } => {
                            self.notices
                                .push(format!("DICOM node: an instance refused (status {status:#06x}): {reason}"));
                        }
                        // An association cut off before it stored anything (one that stored
                        // some is reported as a partial series).
                        NodeEvent::Ended { how, instances: 0, .. } if how != "released" => {
                            self.notices.push(format!("DICOM node: an association ended without a series: {how}"));
                        }
                        NodeEvent::Associated { .. } | NodeEvent::Echo { .. } | NodeEvent::Ended { .. } => {}
                    }
                }
            }
            Arrivals::Folder(w) => {
                for (dir, first_s) in w.poll(now) {
                    self.waiting.push_back(Arrived { dir, series_uid: None, first_s });
                }
            }
        }
    }

    /// Starts loading the next series that answers the request; the others are refused.
    fn next_load(&mut self) {
        while self.loading.is_none() {
            let Some(a) = self.waiting.pop_front() else { return };
            let name = a.series_uid.clone().unwrap_or_else(|| a.dir.display().to_string());
            let Some((purpose, asked_s)) = self.asked else {
                self.notices.push(format!("series {name} arrived while no CT was asked for: not used"));
                continue;
            };
            // A second early: the node's clock and the driver's are one, the folder's mtime
            // scan is coarser.
            if a.first_s < asked_s - 1.0 {
                self.notices.push(format!(
                    "series {name} began arriving {:.1} s before the {purpose:?} CT was asked for: not used",
                    asked_s - a.first_s
                ));
                continue;
            }
            let dir = a.dir.clone();
            let uid = a.series_uid.clone();
            let spawned = std::thread::Builder::new()
                .name("stylet-ct-load".into())
                .spawn(move || stylet_imaging::load_series(&dir, uid.as_deref()).map_err(|e| e.to_string()));
            match spawned {
                Ok(h) => self.loading = Some((a, h)),
                Err(e) => self.notices.push(format!("series {name}: cannot start its loader: {e}")),
            }
        }
    }

    /// The series loaded, if its loader is done and it is of the planning CT's patient and frame.
    fn finished(&mut self) -> Option<Acquired> {
        let done = self.loading.as_ref().is_some_and(|(_, h)| h.is_finished());
        if !done {
            return None;
        }
        let (a, h) = self.loading.take()?;
        let name = a.series_uid.clone().unwrap_or_else(|| a.dir.display().to_string());
        let (volume, report) = match h.join() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.notices.push(format!("series {name} cannot be used: {e}"));
                return None;
            }
            Err(_) => {
                self.notices.push(format!("series {name}: its loader failed"));
                return None;
            }
        };
        if report.series_uid == self.planning_series || !self.used.insert(report.series_uid.clone()) {
            self.notices.push(format!("series {} was used before (sent again?): not used again", report.series_uid));
            return None;
        }
        if let Some(why) = report.identity.differs_from(&self.identity) {
            self.notices.push(format!("series {} refused: {why}", report.series_uid));
            return None;
        }
        let (purpose, asked_s) = self.asked.take()?;
        let acquired_s = self.acquired_s(&report.identity, asked_s, a.first_s, &report.series_uid);
        Some(Acquired {
            volume,
            acquired_s,
            source: format!(
                "{purpose:?} CT, series {} ({} slices, {})",
                report.series_uid,
                report.slices,
                a.dir.display()
            ),
        })
    }

    /// When the series was taken on the procedure clock: its AcquisitionDateTime where that lies
    /// between the request and the first file's arrival, else the arrival (with a notice: the
    /// breath-hold level the RESP-3 reference takes is then a guess).
    fn acquired_s(&mut self, id: &SeriesIdentity, asked_s: f64, first_s: f64, uid: &str) -> f64 {
        let taken = id.acquisition_datetime.as_deref().and_then(|dt| unix_seconds(dt, self.utc_offset_min));
        match taken.map(|t| t - self.epoch_unix_s) {
            Some(t) if t >= asked_s - 2.0 && t <= first_s + 1.0 => t,
            Some(t) => {
                self.notices.push(format!(
                    "series {uid}: AcquisitionDateTime is {:.1} s from the request, outside the time it could have been taken (scanner clock not synchronised? ct.scanner_utc_offset_min); taken as when it arrived",
                    t - asked_s
                ));
                first_s
            }
            None => {
                self.notices.push(format!("series {uid}: no AcquisitionDateTime; taken as when it arrived"));
                first_s
            }
        }
    }
}

impl CtSource for ScannerCt {
    fn planning(&mut self) -> Result<Option<PlanningCt>, PortError> {
        Ok(self.planning.take())
    }

    fn request_ct(&mut self, purpose: CtPurpose) -> Result<(), PortError> {
        self.collect();
        // What arrived before this request answers none of it.
        while let Some(a) = self.waiting.pop_front() {
            let name = a.series_uid.unwrap_or_else(|| a.dir.display().to_string());
            self.notices.push(format!("series {name} arrived while no CT was asked for: not used"));
        }
        self.asked = Some((purpose, self.now_s()));
        Ok(())
    }

    fn poll_ct(&mut self) -> Result<Option<Acquired>, PortError> {
        self.collect();
        self.next_load();
        Ok(self.finished())
    }

    fn notices(&mut self, sink: &mut dyn FnMut(String)) {
        for n in self.notices.drain(..) {
            sink(n);
        }
    }
}

/// The wall clock as Unix seconds (0 before 1970).
#[must_use]
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Unix seconds as a DICOM DT in UTC (`YYYYMMDDHHMMSS.FFFFFF+0000`): [`unix_seconds`]'s inverse
/// (H. Hinnant's civil_from_days).
#[must_use]
pub fn dicom_datetime(unix_s: f64) -> String {
    let secs = unix_s.floor() as i64;
    let micros = ((unix_s - unix_s.floor()) * 1e6).round().min(999_999.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}.{micros:06}+0000", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A DICOM DT (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`, at least to the seconds) as Unix seconds; the offset
/// is the value's own or `default_offset_min`.
#[must_use]
pub fn unix_seconds(dt: &str, default_offset_min: i32) -> Option<f64> {
    let dt = dt.trim();
    let (body, offset_min) = match dt.find(['+', '-']) {
        Some(i) => {
            let (b, z) = dt.split_at(i);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits = z.get(1..)?;
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (h, m): (i32, i32) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
            (b, sign * (h * 60 + m))
        }
        None => (dt, default_offset_min),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if whole.len() != 14 || !whole.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| whole[a..b].parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (n(0, 4)?, n(4, 6)?, n(6, 8)?, n(8, 10)?, n(10, 12)?, n(12, 14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let fraction = if frac.is_empty() { 0.0 } else { format!("0.{frac}").parse::<f64>().ok()? };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - i64::from(offset_min) * 60;
    Some(secs as f64 + fraction)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A folder whose new sub-folders are series: complete once nothing in one changed for the
/// quiet time. Sub-folders there at the start are not new.
#[derive(Debug)]
pub struct FolderWatch {
    dir: PathBuf,
    quiet_s: f64,
    before: BTreeSet<PathBuf>,
    seen: BTreeMap<PathBuf, Watched>,
    last_scan_s: f64,
}

#[derive(Debug)]
struct Watched {
    first_s: f64,
    changed_s: f64,
    signature: (usize, u64, u128),
    done: bool,
}

impl FolderWatch {
    /// Watches `site.watch` (created if absent).
    ///
    /// # Errors
    /// The folder cannot be created or read.
    pub fn start(site: &FolderSite) -> Result<Self, String> {
        let dir = site.watch.clone();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let before = sub_folders(&dir)?.into_iter().collect();
        Ok(FolderWatch { dir, quiet_s: site.quiet_s, before, seen: BTreeMap::new(), last_scan_s: f64::NEG_INFINITY })
    }

    /// The sub-folders complete by `now_s`, each once, with when each was first seen.
    pub fn poll(&mut self, now_s: f64) -> Vec<(PathBuf, f64)> {
        if now_s - self.last_scan_s < 0.25 {
            return Vec::new();
        }
        self.last_scan_s = now_s;
        let Ok(dirs) = sub_folders(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for d in dirs {
            if self.before.contains(&d) {
                continue;
            }
            let sig = signature(&d);
            let w = self.seen.entry(d.clone()).or_insert(Watched {
                first_s: now_s,
                changed_s: now_s,
                signature: sig,
                done: false,
            });
            if w.signature != sig {
                w.signature = sig;
                w.changed_s = now_s;
                w.done = false;
            }
            if !w.done && sig.0 > 0 && now_s - w.changed_s >= self.quiet_s {
                w.done = true;
                out.push((d, w.first_s));
            }
        }
        out
    }
}

fn sub_folders(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    v.sort();
    Ok(v)
}

/// Files, bytes and the newest modification (ns) in `dir`: what changes while a series is written.
fn signature(dir: &Path) -> (usize, u64, u128) {
    let mut sig = (0, 0, 0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_file() {
                    sig.0 += 1;
                    sig.1 += m.len();
                    let t =
                        m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
                    sig.2 = sig.2.max(t);
                }
            }
        }
    }
    sig
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dicom_datetimes_written_read_back() {
        for t in [0.0, 951_782_400.25, 1_796_300_000.5, 4_102_444_799.999_999] {
            let dt = dicom_datetime(t);
            let back = unix_seconds(&dt, 0).unwrap();
            assert!((back - t).abs() < 1e-5, "{t} -> {dt} -> {back}");
        }
        assert_eq!(dicom_datetime(951_782_400.0), "20000229000000.000000+0000");
    }

    #[test]
    fn dicom_date_times_with_and_without_their_offset() {
        assert_eq!(unix_seconds("19700101000000", 0), Some(0.0));
        assert_eq!(unix_seconds("20261202185200.25", 0), Some(1_796_237_520.25));
        assert_eq!(unix_seconds("20261202195200.25+0100", 0), Some(1_796_237_520.25));
        assert_eq!(unix_seconds("20261202195200.25", 60), Some(1_796_237_520.25));
        assert_eq!(unix_seconds("20000229120000-0500", 0), Some(951_843_600.0));
        for bad in ["", "2026", "20261302000000", "20261202185200+1", "2026120218520x", "20261202185200.x"] {
            assert_eq!(unix_seconds(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn a_sub_folder_is_complete_after_the_quiet_time_and_only_new_ones_count() {
        let root = std::env::temp_dir().join(format!("stylet-suite-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("old")).unwrap();
        std::fs::write(root.join("old").join("a.dcm"), b"x").unwrap();
        let mut w = FolderWatch::start(&FolderSite { watch: root.clone(), quiet_s: 2.0 }).unwrap();
        let new = root.join("new");
        std::fs::create_dir_all(&new).unwrap();
        assert!(w.poll(10.0).is_empty(), "an empty folder is not a series");
        std::fs::write(new.join("1.dcm"), b"one").unwrap();
        assert!(w.poll(11.0).is_empty());
        std::fs::write(new.join("2.dcm"), b"two").unwrap();
        assert!(w.poll(12.5).is_empty(), "still arriving");
        assert_eq!(w.poll(14.6), vec![(new.clone(), 10.0)]);
        assert!(w.poll(20.0).is_empty(), "reported once");
        let _ = std::fs::remove_dir_all(&root);
    }
}
