//! The BWH robot convention that Slicer-based robot projects use (SlicerProstate / ProstateNav,
//! "OpenIGTLink for robot control"), as a pure state machine: messages in, replies and requested
//! actions out. The server feeds it and executes the actions through the procedure workflow; it
//! never moves anything itself, so motion from the network still needs the local operator's enable
//! input (INS-2) and passes the supervisor.
//!
//! - `STRING(CMD_<id>, "<PHASE>")` is answered at once with `STRING(ACK_<id>, "<PHASE>")`; when the
//!   phase is entered (or refused) a `STATUS` named after the phase follows.
//! - `TRANSFORM(CLB_<id>)`: the registration (robot to image, RAS), echoed as `TRANSFORM(ACK_<id>)`.
//! - `TRANSFORM(TGT_<id>)`: the target (its translation, RAS), echoed as `TRANSFORM(ACK_<id>)`;
//!   `TRAJ` and `POINT` give entry and target too.
//! - Refusals as `STATUS`: targeting before calibration -> device not ready; moving without a
//!   target -> configuration error; an unknown phase -> unknown instruction.
//!
//! Coordinates: Slicer speaks RAS; what this module hands out is LPS (Stylet's CT frame).

use stylet_core::frame::{Ct, Needle, Point, Robot, Transform};

use crate::{lps_from_ras, status, Body, Message, Orientation};

/// The workflow phases of the convention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Connected, nothing set.
    #[default]
    StartUp,
    /// Planning in Slicer.
    Planning,
    /// Registration being sent.
    Calibration,
    /// Target being sent.
    Targeting,
    /// Moving to the target.
    MoveToTarget,
    /// Manual control.
    Manual,
    /// Stopped (controlled).
    Stop,
    /// Emergency stop.
    Emergency,
}

impl Phase {
    /// The wire name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Phase::StartUp => "START_UP",
            Phase::Planning => "PLANNING",
            Phase::Calibration => "CALIBRATION",
            Phase::Targeting => "TARGETING",
            Phase::MoveToTarget => "MOVE_TO_TARGET",
            Phase::Manual => "MANUAL",
            Phase::Stop => "STOP",
            Phase::Emergency => "EMERGENCY",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Phase::StartUp,
            Phase::Planning,
            Phase::Calibration,
            Phase::Targeting,
            Phase::MoveToTarget,
            Phase::Manual,
            Phase::Stop,
            Phase::Emergency,
        ]
        .into_iter()
        .find(|p| p.name() == s.trim().trim_end_matches('\0'))
    }
}

/// What the robot side is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Enter a phase (the server reports back with [`Bwh::completed`]).
    Enter(Phase),
    /// Use this registration: `image_from_robot` (the CT's LPS, mm), checked rigid (a scaled,
    /// sheared or mirrored matrix is refused with a STATUS and never becomes an action).
    Registration(Transform<Ct, Robot>),
    /// A message the convention does not consume (an IMAGE, a STATUS, a query), for the
    /// procedure side to use.
    Received(Box<Message>),
    /// Aim at this target (LPS, mm), with an entry point when the peer gave one.
    Target {
        /// Entry, LPS mm.
        entry: Option<Point<Ct>>,
        /// Target, LPS mm.
        target: Point<Ct>,
    },
}

/// Who registers the CT to the robot and chooses the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Convention {
    /// The peer: CALIBRATION takes Slicer's `CLB_` matrix and TARGETING its `TGT_`, `TRAJ` or
    /// `POINT`; TARGETING before a calibration and MOVE_TO_TARGET before a target are refused.
    #[default]
    PeerPlans,
    /// Stylet's procedure: it registers on the CT's fiducials and plans under the clinical rules
    /// itself, and sends its plans for review; a target from the network (`TGT_`, `TRAJ`,
    /// `POINT`) is passed on to choose among them (no calibration needed: the registration is
    /// Stylet's), a `CLB_` is refused with a STATUS saying so, and whether a phase can be
    /// entered is the procedure's to say.
    StyletPlans,
    /// As [`Convention::StyletPlans`], but the site takes the registration from the peer: a
    /// rigid `CLB_` (robot to image, RAS) is passed on as [`Action::Registration`] and the
    /// procedure uses it instead of its fiducials.
    StyletPlansPeerCalibrates,
}

/// The convention's state.
#[derive(Clone, Debug, Default)]
pub struct Bwh {
    phase: Phase,
    convention: Convention,
    calibrated: bool,
    target: Option<Point<Ct>>,
}

/// A point Slicer sent (RAS, single precision) in the CT's LPS.
fn ras_point(a: [f32; 3]) -> Point<Ct> {
    let [x, y, z] = lps_from_ras(a.map(f64::from));
    Point::new(x, y, z)
}

/// The STATUS refusing a target sent before a calibration.
fn not_calibrated() -> Message {
    status("TARGETING", status::NOT_READY, "NOT_CALIBRATED", "target before calibration".into())
}

fn reply(device: String, body: Body) -> Message {
    Message::new(&device, body)
}

fn status(device: &str, code: u16, error_name: &str, message: String) -> Message {
    reply(device.to_string(), Body::Status { code, subcode: 0, error_name: error_name.to_string(), message })
}

/// A 4x4 row-major matrix from TRANSFORM's column order (R11 R21 R31 R12 R22 R32 R13 R23 R33 TX TY TZ).
#[must_use]
pub fn matrix_from_transform(t: &[f32; 12]) -> [[f64; 4]; 4] {
    let f = |i: usize| f64::from(t[i]);
    [[f(0), f(3), f(6), f(9)], [f(1), f(4), f(7), f(10)], [f(2), f(5), f(8), f(11)], [0.0, 0.0, 0.0, 1.0]]
}

/// TRANSFORM's 12 values from a row-major 4x4.
#[must_use]
pub fn transform_from_matrix(m: &[[f64; 4]; 4]) -> [f32; 12] {
    let g = |r: usize, c: usize| m[r][c] as f32;
    [g(0, 0), g(1, 0), g(2, 0), g(0, 1), g(1, 1), g(2, 1), g(0, 2), g(1, 2), g(2, 2), g(0, 3), g(1, 3), g(2, 3)]
}

/// A transform given in RAS on its output side, expressed in LPS: `ct_from_slicer` times it
/// (`stylet_core::frame::lps_ras_flip_rows`).
#[must_use]
pub fn lps_from_ras_matrix(m: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    stylet_core::frame::lps_ras_flip_rows(*m)
}

impl Bwh {
    /// The convention's state at connection, under `convention`.
    #[must_use]
    pub fn new(convention: Convention) -> Self {
        Self { convention, ..Self::default() }
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Handles one message from the peer: the replies to send now and the actions to take.
    pub fn handle(&mut self, m: &Message) -> (Vec<Message>, Vec<Action>) {
        let device = m.device_name.as_str();
        let mut out = Vec::new();
        let mut actions = Vec::new();
        match (&m.body, device) {
            (Body::String { value, .. }, d) if d.starts_with("CMD_") => {
                let id = &d[4..];
                let text = String::from_utf8_lossy(value).into_owned();
                out.push(reply(format!("ACK_{id}"), Body::String { encoding: 3, value: value.clone() }));
                match Phase::parse(&text) {
                    None => out.push(status(
                        text.trim(),
                        status::UNKNOWN_INSTRUCTION,
                        "UNKNOWN_PHASE",
                        format!("unknown phase {text:?}"),
                    )),
                    Some(p) => match self.refusal(p) {
                        Some((code, name, why)) => out.push(status(p.name(), code, name, why)),
                        None => {
                            self.phase = p;
                            actions.push(Action::Enter(p));
                        }
                    },
                }
            }
            (Body::Transform(t), d) if d.starts_with("CLB_") && self.convention == Convention::StyletPlans => {
                out.push(reply(format!("ACK_{}", &d[4..]), Body::Transform(*t)));
                out.push(status(
                    Phase::Calibration.name(),
                    status::CONFIG_ERROR,
                    "STYLET_REGISTERS",
                    "not taken: Stylet registers the CT to the robot on the arm's fiducials itself \
                     (TRANSFORM REGISTRATION); this site does not take a calibration from the network"
                        .into(),
                ));
            }
            (Body::Transform(t), d) if d.starts_with("CLB_") => {
                out.push(reply(format!("ACK_{}", &d[4..]), Body::Transform(*t)));
                // A matrix from the network is taken only when rigid: a scaled, sheared or
                // mirrored one would put every target somewhere else.
                match Transform::try_from_rows(lps_from_ras_matrix(&matrix_from_transform(t))) {
                    Ok(image_from_robot) => {
                        self.calibrated = true;
                        actions.push(Action::Registration(image_from_robot));
                    }
                    Err(e) => {
                        out.push(self.completed(Phase::Calibration, false, &format!("the calibration matrix is {e}")))
                    }
                }
            }
            (Body::Transform(t), d) if d.starts_with("TGT_") => {
                out.push(reply(format!("ACK_{}", &d[4..]), Body::Transform(*t)));
                self.aim(None, ras_point([t[9], t[10], t[11]]), &mut out, &mut actions);
            }
            (Body::Traj(v), _) => {
                if let Some(t) = v.iter().find(|t| t.kind == 3) {
                    self.aim(Some(ras_point(t.entry)), ras_point(t.target), &mut out, &mut actions);
                }
            }
            (Body::Point(v), _) if v.len() >= 2 => {
                self.aim(Some(ras_point(v[0].position)), ras_point(v[1].position), &mut out, &mut actions);
            }
            _ => actions.push(Action::Received(Box::new(m.clone()))),
        }
        (out, actions)
    }

    /// A target (and entry) from the peer: taken once calibrated, else refused.
    fn aim(&mut self, entry: Option<Point<Ct>>, target: Point<Ct>, out: &mut Vec<Message>, actions: &mut Vec<Action>) {
        if self.calibrated || self.convention != Convention::PeerPlans {
            self.target = Some(target);
            actions.push(Action::Target { entry, target });
        } else {
            out.push(not_calibrated());
        }
    }

    fn refusal(&self, p: Phase) -> Option<(u16, &'static str, String)> {
        let peer_plans = self.convention == Convention::PeerPlans;
        match p {
            Phase::Targeting if peer_plans && !self.calibrated => {
                Some((status::NOT_READY, "NOT_CALIBRATED", "targeting needs a calibration (CLB_) first".into()))
            }
            Phase::MoveToTarget if peer_plans && self.target.is_none() => {
                Some((status::CONFIG_ERROR, "NO_TARGET", "moving needs a target (TGT_) first".into()))
            }
            Phase::MoveToTarget if self.phase == Phase::Emergency => {
                Some((status::PANIC, "EMERGENCY", "emergency stop: reset locally first".into()))
            }
            _ => None,
        }
    }

    /// The STATUS that reports a phase as entered (`ok`) or failed, named after the phase.
    #[must_use]
    pub fn completed(&self, p: Phase, ok: bool, message: &str) -> Message {
        if ok {
            status(p.name(), status::OK, "", message.to_string())
        } else {
            status(p.name(), status::UNKNOWN_ERROR, "FAILED", message.to_string())
        }
    }

    /// `TRANSFORM(CURRENT_POSITION)`: the needle tip pose, `image_from_tip` in the CT's LPS,
    /// sent in RAS.
    #[must_use]
    pub fn current_position(image_from_tip: Transform<Ct, Needle>) -> Message {
        // LPS -> RAS is the same sign flip.
        reply(
            "CURRENT_POSITION".into(),
            Body::Transform(transform_from_matrix(&lps_from_ras_matrix(&image_from_tip.to_matrix_rows()))),
        )
    }

    /// The tip position as POSITION (RAS), for peers that prefer it.
    #[must_use]
    pub fn current_position_point(tip: Point<Ct>) -> Message {
        let r = crate::ras_from_lps(tip.to_array());
        reply(
            "CURRENT_POSITION".into(),
            Body::Position { position: [r[0] as f32, r[1] as f32, r[2] as f32], orientation: Orientation::None },
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn cmd(id: &str, phase: &str) -> Message {
        Message::new(&format!("CMD_{id}"), Body::String { encoding: 3, value: phase.as_bytes().to_vec() })
    }

    fn code_of(m: &Message) -> Option<(String, u16)> {
        match &m.body {
            Body::Status { code, .. } => Some((m.device_name.clone(), *code)),
            _ => None,
        }
    }

    #[test]
    fn the_bwh_sequence_with_refusals_in_the_wrong_phase() {
        let mut b = Bwh::default();
        // START_UP: acknowledged, entered.
        let (out, act) = b.handle(&cmd("0001", "START_UP"));
        assert_eq!(out[0].device_name, "ACK_0001");
        assert_eq!(out[0].body, Body::String { encoding: 3, value: b"START_UP".to_vec() });
        assert_eq!(act, vec![Action::Enter(Phase::StartUp)]);
        // TARGETING before CALIBRATION: acknowledged, then refused: device not ready.
        let (out, act) = b.handle(&cmd("0002", "TARGETING"));
        assert_eq!(out[0].device_name, "ACK_0002");
        assert_eq!(code_of(&out[1]), Some(("TARGETING".into(), status::NOT_READY)));
        assert!(act.is_empty());
        // MOVE_TO_TARGET without a target: configuration error.
        let (out, _) = b.handle(&cmd("0003", "MOVE_TO_TARGET"));
        assert_eq!(code_of(&out[1]), Some(("MOVE_TO_TARGET".into(), status::CONFIG_ERROR)));
        // CALIBRATION with a matrix: echoed, converted to LPS.
        b.handle(&cmd("0004", "CALIBRATION"));
        let mut t = [0.0f32; 12];
        t[0] = 1.0;
        t[4] = 1.0;
        t[8] = 1.0;
        t[9] = 10.0;
        t[10] = 20.0;
        t[11] = 30.0;
        let (out, act) = b.handle(&Message::new("CLB_0005", Body::Transform(t)));
        assert_eq!(out[0].device_name, "ACK_0005");
        assert_eq!(out[0].body, Body::Transform(t));
        let Action::Registration(m) = &act[0] else { panic!("{act:?}") };
        let m = m.to_matrix_rows();
        assert_eq!(m[0], [-1.0, 0.0, 0.0, -10.0]);
        assert_eq!(m[1], [0.0, -1.0, 0.0, -20.0]);
        assert_eq!(m[2], [0.0, 0.0, 1.0, 30.0]);
        // TARGETING, then a target in RAS: LPS out.
        let (_, act) = b.handle(&cmd("0006", "TARGETING"));
        assert_eq!(act, vec![Action::Enter(Phase::Targeting)]);
        let mut tg = [0.0f32; 12];
        tg[9] = 5.0;
        tg[10] = -6.0;
        tg[11] = 7.0;
        let (out, act) = b.handle(&Message::new("TGT_0007", Body::Transform(tg)));
        assert_eq!(out[0].device_name, "ACK_0007");
        assert_eq!(act, vec![Action::Target { entry: None, target: Point::new(-5.0, 6.0, 7.0) }]);
        // Now moving is accepted.
        let (out, act) = b.handle(&cmd("0008", "MOVE_TO_TARGET"));
        assert_eq!(out.len(), 1);
        assert_eq!(act, vec![Action::Enter(Phase::MoveToTarget)]);
        assert_eq!(
            code_of(&b.completed(Phase::MoveToTarget, true, "at target")),
            Some(("MOVE_TO_TARGET".into(), status::OK))
        );
        // EMERGENCY is always taken.
        let (_, act) = b.handle(&cmd("0009", "EMERGENCY"));
        assert_eq!(act, vec![Action::Enter(Phase::Emergency)]);
        let (out, _) = b.handle(&cmd("0010", "MOVE_TO_TARGET"));
        assert_eq!(code_of(&out[1]), Some(("MOVE_TO_TARGET".into(), status::PANIC)));
        // An unknown phase.
        let (out, _) = b.handle(&cmd("0011", "DANCE"));
        assert_eq!(code_of(&out[1]).map(|c| c.1), Some(status::UNKNOWN_INSTRUCTION));
    }

    #[test]
    fn a_calibration_that_is_not_rigid_is_refused_and_leaves_the_robot_uncalibrated() {
        let mut b = Bwh::default();
        let mut t = [0.0f32; 12];
        (t[0], t[4], t[8]) = (1.1, 1.0, 1.0); // x scaled by 10 %
        let (out, act) = b.handle(&Message::new("CLB_0001", Body::Transform(t)));
        assert_eq!(out[0].device_name, "ACK_0001");
        assert_eq!(code_of(&out[1]), Some(("CALIBRATION".into(), status::UNKNOWN_ERROR)));
        let Body::Status { message, .. } = &out[1].body else { panic!("{out:?}") };
        assert!(message.contains("not a rigid transform"), "{message}");
        assert!(act.is_empty(), "{act:?}");
        let (out, _) = b.handle(&cmd("0002", "TARGETING"));
        assert_eq!(code_of(&out[1]), Some(("TARGETING".into(), status::NOT_READY)));
    }

    #[test]
    fn when_stylet_plans_a_calibration_is_refused_a_target_passed_on_and_phases_are_the_procedures() {
        let mut b = Bwh::new(Convention::StyletPlans);
        // TARGETING and MOVE_TO_TARGET are not refused by the convention: the procedure decides.
        let (out, act) = b.handle(&cmd("0001", "TARGETING"));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(act, vec![Action::Enter(Phase::Targeting)]);
        let (_, act) = b.handle(&cmd("0002", "MOVE_TO_TARGET"));
        assert_eq!(act, vec![Action::Enter(Phase::MoveToTarget)]);
        // A calibration matrix, even a rigid one: echoed, refused with the reason, no action.
        let mut t = [0.0f32; 12];
        (t[0], t[4], t[8]) = (1.0, 1.0, 1.0);
        let (out, act) = b.handle(&Message::new("CLB_0003", Body::Transform(t)));
        assert_eq!(out[0].device_name, "ACK_0003");
        assert_eq!(code_of(&out[1]), Some(("CALIBRATION".into(), status::CONFIG_ERROR)));
        assert!(act.is_empty(), "{act:?}");
        // A target, without a calibration: passed on (in LPS) for the procedure to choose by.
        (t[9], t[10], t[11]) = (10.0, -20.0, 30.0);
        let (out, act) = b.handle(&Message::new("TGT_0004", Body::Transform(t)));
        assert_eq!(out.len(), 1, "only the ACK: {out:?}");
        assert_eq!(act, vec![Action::Target { entry: None, target: Point::new(-10.0, 20.0, 30.0) }]);
        // After EMERGENCY, moving is refused by the convention itself.
        b.handle(&cmd("0005", "EMERGENCY"));
        let (out, act) = b.handle(&cmd("0006", "MOVE_TO_TARGET"));
        assert_eq!(code_of(&out[1]), Some(("MOVE_TO_TARGET".into(), status::PANIC)));
        assert!(act.is_empty());
    }

    #[test]
    fn where_the_site_takes_the_peers_calibration_a_rigid_clb_is_passed_on_and_another_refused() {
        let mut b = Bwh::new(Convention::StyletPlansPeerCalibrates);
        let mut t = [0.0f32; 12];
        (t[0], t[4], t[8], t[9]) = (1.0, 1.0, 1.0, 5.0);
        let (out, act) = b.handle(&Message::new("CLB_0001", Body::Transform(t)));
        assert_eq!(out.len(), 1, "only the ACK: {out:?}");
        let [Action::Registration(m)] = act.as_slice() else { panic!("{act:?}") };
        // RAS to LPS: x and y flip on the image side.
        assert_eq!(*m * Point::new(0.0, 0.0, 0.0), Point::new(-5.0, 0.0, 0.0));
        t[0] = 2.0;
        let (out, act) = b.handle(&Message::new("CLB_0002", Body::Transform(t)));
        assert!(act.is_empty(), "{act:?}");
        assert_eq!(code_of(&out[1]).map(|c| c.0), Some("CALIBRATION".into()));
    }

    #[test]
    fn matrices_round_trip_through_transform_order() {
        let m = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0], [0.0, 0.0, 0.0, 1.0]];
        assert_eq!(matrix_from_transform(&transform_from_matrix(&m)), m);
        assert_eq!(lps_from_ras_matrix(&lps_from_ras_matrix(&m)), m);
        let Body::Position { position, .. } = Bwh::current_position_point(Point::new(1.0, 2.0, 3.0)).body else {
            panic!()
        };
        assert_eq!(position, [-1.0, -2.0, 3.0]);
    }
}
