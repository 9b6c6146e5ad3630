//! The procedure's events fanned out: the procedure log, the rerun telemetry, OpenIGTLink, and
//! the terminal (progress bar and log lines).

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_procedure::ports::{Event, EventSink};
use stylet_recorder::{Event as LogEvent, Recorder};
use stylet_safety::runner::RunnerEvent;
use stylet_telemetry::{Level, Logger};

use super::view;

/// Organs at risk within this distance of a planned path go to 3D Slicer as POLYDATA, mm.
const OAR_RADIUS_MM: f64 = 15.0;

/// Whether the needle must keep clear of a structure of this class (OAR rules): not the body,
/// soft tissue, the liver or the tumour.
fn is_at_risk(class: stylet_planning::Class) -> bool {
    use stylet_planning::Class as C;
    !matches!(class, C::Background | C::Body | C::SoftTissue | C::Liver | C::Tumour)
}

/// The distance from `p` to the segment from `a` to `b`, mm.
fn distance_to_segment(p: Vector3<f64>, a: Vector3<f64>, b: Vector3<f64>) -> f64 {
    let ab = b - a;
    let s = if ab.norm_squared() > 0.0 { ((p - a).dot(&ab) / ab.norm_squared()).clamp(0.0, 1.0) } else { 0.0 };
    (p - (a + ab * s)).norm()
}

/// Where the demo's events go.
pub(crate) struct Fanout {
    pub(crate) rec: Recorder,
    pub(crate) tel: Logger,
    pub(crate) igtl: Option<stylet_igtl::server::Broadcaster>,
    /// Whether the CT volumes go out over OpenIGTLink too (tens of MB each): only where no
    /// wall-clock control loop runs beside them (`igtl serve`'s paced virtual time). Beside a
    /// wall-clock loop, streaming a planning CT through loopback delayed the serial line's
    /// controller states past HAZ-8's 15 ms on 2 cores.
    pub(crate) igtl_volumes: bool,
    pub(crate) bar: indicatif::ProgressBar,
    pub(crate) quiet: bool,
    /// For the robot's pose: the model and the registration (once known).
    pub(crate) arm: stylet_kinematics::Arm,
    pub(crate) ct_from_robot: Option<Transform<Ct, Robot>>,
    pub(crate) needle_mm: f64,
    last_fk_s: f64,
    last_gate_s: f64,
    last_joints_s: f64,
    last_timing_s: f64,
    stalls_logged: u64,
    /// The gate as last sent over OpenIGTLink.
    gate_sent: Option<bool>,
    /// The planning CT's labels, kept while OpenIGTLink is served: the organs at risk near each
    /// planned path go out as POLYDATA.
    labels: Option<(stylet_imaging::Volume, stylet_planning::LabelTable)>,
    /// The wall-clock time (since the Unix epoch) of the procedure's time 0, taken at its first
    /// event: OpenIGTLink messages are stamped with when their content was true in the
    /// procedure's time (a paced virtual run's messages keep the virtual time's intervals).
    epoch: Option<std::time::Duration>,
}

impl Fanout {
    pub(crate) fn new(
        rec: Recorder,
        tel: Logger,
        igtl: Option<stylet_igtl::server::Broadcaster>,
        bar: indicatif::ProgressBar,
        quiet: bool,
        arm: stylet_kinematics::Arm,
        needle_mm: f64,
    ) -> Self {
        Fanout {
            rec,
            tel,
            igtl,
            igtl_volumes: false,
            bar,
            quiet,
            arm,
            ct_from_robot: None,
            needle_mm,
            last_fk_s: f64::NEG_INFINITY,
            last_gate_s: f64::NEG_INFINITY,
            last_joints_s: f64::NEG_INFINITY,
            last_timing_s: f64::NEG_INFINITY,
            stalls_logged: 0,
            gate_sent: None,
            labels: None,
            epoch: None,
        }
    }

    /// Sends `m` to the OpenIGTLink peers stamped with the procedure's time `t`.
    fn send(&mut self, t: f64, mut m: stylet_igtl::Message) {
        let Some(b) = &self.igtl else { return };
        let since_start = std::time::Duration::from_secs_f64(t.max(0.0));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let epoch = *self.epoch.get_or_insert_with(|| now.saturating_sub(since_start));
        m.timestamp = stylet_igtl::timestamp_from_unix(epoch + since_start);
        b.broadcast(m);
    }

    /// A note at the start of the run.
    pub(crate) fn event_note(&mut self, text: &str) {
        self.say(0.0, text);
    }

    fn say(&mut self, t: f64, text: &str) {
        self.rec.record(t, LogEvent::Note { text: text.to_string() });
        view::text(&self.tel, "log/procedure", t, text.to_string(), Level::Info);
        if self.quiet {
        } else if self.bar.is_hidden() {
            say!("[{t:7.2} s] {text}");
        } else {
            self.bar.println(format!("[{t:7.2} s] {text}"));
        }
    }

    fn supervisor(&mut self, t: f64, e: &RunnerEvent) {
        let text = e.to_string();
        let level = if text.starts_with("fault") { Level::Error } else { Level::Info };
        view::text(&self.tel, "events", t, text, level);
    }

    fn timing(&mut self, t: f64, timing: &stylet_safety::runner::Timing) {
        if timing.stalls > self.stalls_logged {
            self.stalls_logged = timing.stalls;
            self.rec.record(t, crate::realtime::timing_sample("cycle_stall", timing, None));
        }
        if t - self.last_timing_s < 0.1 {
            return;
        }
        self.last_timing_s = t;
        view::scalar(&self.tel, "timing/worst_lateness_us", t, timing.worst_lateness.as_secs_f64() * 1e6);
        view::scalar(&self.tel, "timing/stalls", t, timing.stalls as f64);
        view::scalar(&self.tel, "timing/late_cycles", t, timing.late_cycles as f64);
    }

    fn snapshot(&mut self, t: f64, snap: &stylet_safety::Snapshot) {
        // 20 Hz of joints is what a viewer shows; virtual time would send them faster than the
        // recording is written.
        if t - self.last_joints_s >= 0.05 {
            self.last_joints_s = t;
            for (i, (m, c)) in snap.measured.as_slice().iter().zip(snap.commanded.as_slice()).enumerate() {
                view::scalar(&self.tel, &format!("joints/{i}/measured"), t, *m);
                view::scalar(&self.tel, &format!("joints/{i}/commanded"), t, *c);
            }
        }
        let Some(ct_from_robot) = self.ct_from_robot else { return };
        // The needle at 10 Hz or more: snapshots come every driver tick or so (10 to 12 ms of
        // procedure time), so sending once 80 ms have passed keeps every interval within 0.1 s.
        if t - self.last_fk_s < 0.08 {
            return;
        }
        self.last_fk_s = t;
        view::robot(&self.tel, t, &self.arm, snap.measured.as_slice(), ct_from_robot, self.needle_mm);
        if self.igtl.is_some() {
            let tip = ct_from_robot * self.arm.tip_pose(snap.measured.as_slice());
            self.send(t, stylet_igtl::bwh::Bwh::current_position(tip));
        }
    }

    /// A CT volume to the OpenIGTLink peers as IMAGE `device` (RAS), when there are any.
    fn send_ct(&mut self, t: f64, device: &str, v: &stylet_imaging::Volume) {
        if self.igtl.is_none() || !self.igtl_volumes {
            return;
        }
        let d = v.direction;
        let direction = std::array::from_fn(|c| [d[(0, c)], d[(1, c)], d[(2, c)]]);
        match stylet_igtl::scene::ct_image(v.dims, v.spacing_mm, v.origin, direction, &v.voxels) {
            Ok(img) => self.send(t, stylet_igtl::Message::new(device, stylet_igtl::Body::Image(img))),
            Err(e) => self.say(t, &format!("{device} not sent over OpenIGTLink: {e}")),
        }
    }

    /// An ablation zone to the OpenIGTLink peers as POLYDATA `device` (RAS).
    fn send_zone(&mut self, t: f64, device: &str, centre: Point<Ct>, axis: Vector3<f64>, zone_mm: (f64, f64)) {
        if self.igtl.is_some() {
            let surface = stylet_igtl::scene::ellipsoid(centre, axis.into(), zone_mm.0, zone_mm.1);
            self.send(t, stylet_igtl::Message::new(device, stylet_igtl::Body::PolyData(surface)));
        }
    }

    /// The organs at risk within [`OAR_RADIUS_MM`] of the path from `outside` to `tip` (and as
    /// far beyond the tip), one POLYDATA per class (`OAR_VESSEL`, `OAR_BONE`, ...), their voxels'
    /// surface cut where the cylinder ends.
    fn send_organs_at_risk(&mut self, t: f64, outside: Point<Ct>, tip: Point<Ct>) {
        let Some((labels, table)) = &self.labels else { return };
        let (a, b) = (outside.to_nalgebra().coords, tip.to_nalgebra().coords);
        let beyond = b + (b - a).try_normalize(1e-9).unwrap_or_else(Vector3::z) * OAR_RADIUS_MM;
        let near = |p: Vector3<f64>| distance_to_segment(p, a, beyond) <= OAR_RADIUS_MM;
        // The index box around the cylinder.
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for end in [a, beyond] {
            for corner in 0..8u8 {
                let d = Vector3::from_fn(|r, _| if corner >> r & 1 == 1 { OAR_RADIUS_MM } else { -OAR_RADIUS_MM });
                let Some(ijk) = labels.index_from_ct(Point::from_coords(end + d)) else { continue };
                for r in 0..3 {
                    let x = ijk[r].round().clamp(0.0, (labels.dims[r] - 1) as f64) as usize;
                    lo[r] = lo[r].min(x);
                    hi[r] = hi[r].max(x + 1);
                }
            }
        }
        if (0..3).any(|r| lo[r] >= hi[r]) {
            return;
        }
        let class_at = |i: usize, j: usize, k: usize| -> Option<stylet_planning::Class> {
            let v = labels.get(i, j, k)?;
            let class = table.class(v.round().max(0.0) as u32)?;
            let at = labels.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
            (is_at_risk(class) && near(at)).then_some(class)
        };
        let mut classes = Vec::new();
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                for i in lo[0]..hi[0] {
                    if let Some(c) = class_at(i, j, k).filter(|c| !classes.contains(c)) {
                        classes.push(c);
                    }
                }
            }
        }
        let d = labels.direction;
        let grid = stylet_igtl::scene::Grid {
            dims: labels.dims,
            spacing_mm: labels.spacing_mm,
            origin: labels.origin,
            direction: std::array::from_fn(|c| [d[(0, c)], d[(1, c)], d[(2, c)]]),
        };
        let mut surfaces = Vec::new();
        for class in classes {
            let surface = stylet_igtl::scene::voxel_surface(&grid, lo, hi, |i, j, k| class_at(i, j, k) == Some(class));
            let device = format!("OAR_{}", format!("{class:?}").to_uppercase());
            surfaces.push((device, surface));
        }
        for (device, surface) in surfaces {
            self.send(t, stylet_igtl::Message::new(&device, stylet_igtl::Body::PolyData(surface)));
        }
    }

    fn plan(&mut self, entry: Vector3<f64>, tip: Vector3<f64>, centre: Vector3<f64>, zone: (f64, f64)) {
        let axis = (tip - entry).try_normalize(1e-9).unwrap_or_else(Vector3::z);
        view::point(&self.tel, "world/target", None, centre, 1.5, [255, 40, 40, 255]);
        view::line(&self.tel, "world/plan", entry - axis * 30.0, tip, 0.5, [255, 255, 0, 255]);
        view::zone(&self.tel, "world/zone/planned", centre, axis, zone.0, zone.1);
        if let Some(b) = &self.igtl {
            let point = |name: &str, p: Vector3<f64>| {
                let r = stylet_igtl::ras_from_lps([p.x, p.y, p.z]);
                stylet_igtl::PointElement {
                    name: name.into(),
                    group: "Plan".into(),
                    rgba: [255, 255, 0, 255],
                    position: [r[0] as f32, r[1] as f32, r[2] as f32],
                    diameter: 2.0,
                    owner: String::new(),
                }
            };
            b.broadcast(stylet_igtl::Message::new(
                "PLAN",
                stylet_igtl::Body::Point(vec![point("entry", entry), point("target", tip)]),
            ));
        }
    }
}

impl EventSink for Fanout {
    fn event(&mut self, t: f64, e: Event<'_>) {
        match e {
            Event::Workflow(tr) => {
                self.rec.record(t, tr.event());
                view::text(&self.tel, "state/workflow", t, format!("{:?}", tr.to), Level::Info);
                let phase = format!("{:?}", tr.to);
                self.send(
                    t,
                    stylet_igtl::Message::new(
                        "WORKFLOW",
                        stylet_igtl::Body::String { encoding: 3, value: phase.into_bytes() },
                    ),
                );
                self.bar.inc(1);
                self.bar.set_message(format!("{:?}", tr.to));
                self.say(t, &format!("workflow {:?} -> {:?}: {}", tr.from, tr.to, tr.reason));
            }
            Event::Note(text) => self.say(t, text),
            Event::Operator { action, detail } => {
                self.rec.record(t, LogEvent::Operator { action: action.into(), detail: detail.into() });
            }
            Event::Supervisor(ev) => self.supervisor(t, ev),
            Event::SupervisorState { from, to, reason } => {
                self.rec.record(
                    t,
                    LogEvent::State {
                        machine: "supervisor".into(),
                        from: from.into(),
                        to: to.into(),
                        reason: reason.into(),
                    },
                );
                view::text(&self.tel, "state/supervisor", t, to.to_string(), Level::Info);
            }
            Event::Fault { code, detail } => {
                self.rec.record(t, LogEvent::Fault { code: code.into(), detail: detail.into() });
            }
            Event::Move(goal) => {
                self.rec.record(t, LogEvent::Command { name: "move".into(), values: goal.to_vec() });
            }
            Event::Snapshot(snap) => self.snapshot(t, snap),
            Event::Gate { signal_mm, predicted_mm, open } => {
                if t - self.last_gate_s >= 0.05 {
                    self.last_gate_s = t;
                    if signal_mm.is_finite() {
                        view::scalar(&self.tel, "respiration/signal_mm", t, signal_mm);
                    }
                    view::scalar(&self.tel, "respiration/gate_open", t, f64::from(u8::from(open)));
                    view::scalar(&self.tel, "respiration/predicted_mm", t, predicted_mm);
                }
                if self.igtl.is_some() && self.gate_sent != Some(open) {
                    self.gate_sent = Some(open);
                    let state = if open { "open" } else { "closed" };
                    self.send(
                        t,
                        stylet_igtl::Message::new(
                            "GATE",
                            stylet_igtl::Body::String { encoding: 3, value: state.as_bytes().to_vec() },
                        ),
                    );
                }
            }
            Event::PlanningCt(p) => {
                self.send_ct(t, "CT_PLANNING", &p.ct.volume);
                if self.igtl.is_some() {
                    self.labels = Some((p.labels.clone(), p.table.clone()));
                }
                view::structures(&self.tel, &p.labels, &p.table, 4);
                let v = &p.ct.volume;
                let [nx, ny, nz] = v.dims;
                let centre = v.ct_from_index(nx as f64 / 2.0, ny as f64 / 2.0, nz as f64 / 2.0).to_nalgebra().coords;
                view::axial_slice(&self.tel, v, centre);
            }
            Event::Fiducials(points) => {
                self.tel.log(stylet_telemetry::Item::Points {
                    path: "world/fiducials".into(),
                    t_s: None,
                    points: points.iter().map(|p| p.to_array().map(|x| x as f32)).collect(),
                    radius_mm: 2.0,
                    color: [80, 255, 80, 255],
                });
            }
            Event::Registered(robot_from_ct) => {
                let ct_from_robot = robot_from_ct.inverse();
                self.ct_from_robot = Some(ct_from_robot);
                if let Some(b) = &self.igtl {
                    // Slicer's convention for a registration: robot to image, in RAS (the LPS/RAS
                    // flip on the image side).
                    let rows = stylet_core::frame::lps_ras_flip_rows(ct_from_robot.to_matrix_rows());
                    b.broadcast(stylet_igtl::Message::new(
                        "REGISTRATION",
                        stylet_igtl::Body::Transform(stylet_igtl::bwh::transform_from_matrix(&rows)),
                    ));
                }
            }
            Event::Plan { entry, tip, zone_centre, zone_mm } => {
                let v = |p: Point<Ct>| p.to_nalgebra().coords;
                self.plan(v(entry), v(tip), v(zone_centre), zone_mm);
                // The planned path from 30 mm outside the skin to the tip, and the planned zone.
                let axis = (v(tip) - v(entry)).try_normalize(1e-9).unwrap_or_else(Vector3::z);
                let outside = Point::from_coords(v(entry) - axis * 30.0);
                if self.igtl.is_some() {
                    let path = stylet_igtl::scene::polyline(&[outside, tip]);
                    self.send(t, stylet_igtl::Message::new("NEEDLE_PATH", stylet_igtl::Body::PolyData(path)));
                    self.send_organs_at_risk(t, outside, tip);
                }
                self.send_zone(t, "ZONE_PLANNED", zone_centre, axis, zone_mm);
            }
            Event::NeedleCt { purpose, volume } => {
                let device = match purpose {
                    stylet_procedure::ports::CtPurpose::Confirmation => "CT_CONFIRMATION",
                    stylet_procedure::ports::CtPurpose::Checkpoint => "CT_CHECKPOINT",
                };
                self.send_ct(t, device, volume);
            }
            Event::Ablated { zone_centre, axis, zone_mm } => {
                let (c, a) = (zone_centre.to_nalgebra().coords, Vector3::from(axis));
                view::zone(&self.tel, "world/zone/achieved", c, a, zone_mm.0, zone_mm.1);
                self.send_zone(t, "ZONE_ACHIEVED", zone_centre, a, zone_mm);
            }
            Event::TipMeasured(p) => {
                view::point(
                    &self.tel,
                    "world/checkpoint_tip",
                    Some(t),
                    p.to_nalgebra().coords,
                    1.2,
                    [255, 0, 255, 255],
                );
            }
            Event::LoopTiming(timing) => self.timing(t, timing),
        }
    }
}
