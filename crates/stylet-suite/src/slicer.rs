//! 3D Slicer as the procedure's operator, over OpenIGTLink's BWH convention (docs/igtl.md).
//!
//! The phases Slicer sends answer the procedure driver's prompts; nothing from the network moves
//! the arm by itself. START_UP starts the procedure (the planning CT, Stylet's own registration
//! and plans); TARGETING reports the plan Stylet chose, reachable by the arm; MOVE_TO_TARGET
//! executes it through the driver's steps, every insertion step under the respiratory gate
//! (RESP-2) and the pedal (INS-2), which the supervisor checks; STOP stops the procedure as the
//! console's abort does; EMERGENCY presses the software e-stop. The other decisions (start the
//! ablation, withdraw the needle, go on after a fault) are announced as `STRING PROMPT` and
//! answered with `STRING ANSWER` (`yes`, `no`, `abort`, `retract`, `plan N`).
//!
//! [`FrontEnd`] is the convention's logic as a pure state machine (actions and prompts in,
//! replies out); [`SlicerOperator`] puts it on a running server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stylet_igtl::bwh::{Action, Phase};

use crate::arming::NetworkControl;
use crate::console::ConsoleOperator;
use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_igtl::server::ServerHandle;
use stylet_igtl::{status, Body, Message};
use stylet_procedure::ports::{Answer, Operator, PlanOption, Prompt, Request};

/// The device name of the prompts Stylet sends (STRING).
pub const PROMPT_DEVICE: &str = "PROMPT";
/// The device name of the answers Slicer sends (STRING).
pub const ANSWER_DEVICE: &str = "ANSWER";

/// What the front end sends back.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A STATUS named after the phase: entered (or done) when `ok`, failed otherwise.
    Completed {
        /// The phase.
        phase: Phase,
        /// Entered or done.
        ok: bool,
        /// What happened.
        text: String,
    },
    /// A STATUS refusing a phase (or an answer): its code (`stylet_igtl::status`), error name and
    /// reason.
    Refused {
        /// The STATUS's device name.
        device: String,
        /// The code.
        code: u16,
        /// The error name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// `STRING PROMPT`: the decision now due, and how to give it.
    Prompt(String),
    /// `POINT PLANS`: the plans offered, for review (each plan's entry and target).
    Plans(Vec<PlanOption>),
}

/// How far Slicer's entry and target may be from a plan's for the plan to be the one Slicer
/// aimed at, mm.
pub const AIM_TOLERANCE_MM: f64 = 10.0;

/// The BWH convention's side of the procedure: Slicer's phases and answers in, the driver's
/// answers and requests out.
#[derive(Debug, Default)]
pub struct FrontEnd {
    started: bool,
    /// TARGETING was asked before the plans were ready: reported when they are.
    targeting: bool,
    /// MOVE_TO_TARGET was given for the plan choice now due.
    go: bool,
    /// A plan picked with `ANSWER plan N` or by Slicer's target (1-based, as shown).
    picked: Option<usize>,
    /// Slicer's target (TGT_, TRAJ, POINT): its entry if given, and the target (CT).
    aim: Option<(Option<Point<Ct>>, Point<Ct>)>,
    /// The site takes the registration from Slicer (its CLB_).
    takes_calibration: bool,
    /// Slicer's calibration, checked rigid by the convention.
    calibration: Option<Transform<Robot, Ct>>,
    /// The plan is being executed (MOVE_TO_TARGET taken).
    moving: bool,
    /// STOP or EMERGENCY was given: nothing more moves.
    stopped_by: Option<Phase>,
    /// The answer to the prompt shown, typed after it was shown.
    answer: Option<Answer>,
    requests: VecDeque<Request>,
    shown: Option<Prompt>,
    out: Vec<Reply>,
}

impl FrontEnd {
    /// One action of the convention (from the server).
    pub fn take(&mut self, action: Action) {
        match action {
            Action::Enter(p) => self.enter(p),
            Action::Received(m) => self.received(&m),
            Action::Target { entry, target } => {
                self.aim = Some((entry, target));
                if let Some(Prompt::ChoosePlan { options }) = self.shown.clone() {
                    self.match_aim(&options);
                }
            }
            // Passed on only where the site takes Slicer's calibration
            // (`Convention::StyletPlansPeerCalibrates`).
            Action::Registration(image_from_robot) if self.takes_calibration => {
                self.calibration = Some(image_from_robot.inverse());
                if self.shown != Some(Prompt::Registration) {
                    self.done(Phase::Calibration, true, "calibration received: it will be the registration");
                }
            }
            Action::Registration(_) => {}
        }
    }

    fn enter(&mut self, p: Phase) {
        match p {
            Phase::StartUp if self.started => self.done(p, true, "already started"),
            Phase::StartUp => self.started = true,
            Phase::Planning => self.done(
                p,
                true,
                "Stylet plans from the planning CT under the clinical rules; its plan follows as POINT PLAN",
            ),
            Phase::Calibration if self.takes_calibration => self.done(
                p,
                true,
                "this site takes the registration from 3D Slicer: send TRANSFORM CLB_<id> (robot to image, RAS)",
            ),
            Phase::Calibration => self.done(
                p,
                true,
                "Stylet registers the CT to the robot on the arm's fiducials; the registration follows as TRANSFORM REGISTRATION",
            ),
            Phase::Targeting if !self.started => self.refuse(p, status::NOT_READY, "NOT_STARTED", "START_UP first"),
            Phase::Targeting => match &self.shown {
                Some(Prompt::ChoosePlan { options }) => {
                    let text = plans_text(options);
                    self.done(p, true, &text);
                }
                _ => self.targeting = true,
            },
            Phase::MoveToTarget => self.move_to_target(),
            Phase::Stop => {
                self.stopped_by = Some(p);
                self.requests.push_back(Request::Abort);
                self.done(
                    p,
                    true,
                    "controlled stop: the procedure stops, the arm holds under the supervisor; ANSWER retract withdraws the needle",
                );
            }
            Phase::Emergency => {
                self.stopped_by = Some(p);
                self.requests.push_back(Request::EStop);
                self.done(p, true, "software e-stop: drives off, brakes on, latched; a reset needs the console");
            }
            Phase::Manual => self.refuse(
                p,
                status::CONFIG_ERROR,
                "NOT_OFFERED",
                "manual motion is not offered: the arm moves only through the procedure's supervised, gated steps",
            ),
        }
    }

    fn move_to_target(&mut self) {
        let p = Phase::MoveToTarget;
        if !self.started {
            self.refuse(p, status::NOT_READY, "NOT_STARTED", "START_UP first");
        } else if self.stopped_by.is_some() {
            self.refuse(p, status::PANIC, "STOPPED", "the procedure was stopped; it cannot move again");
        } else if self.moving {
            self.done(p, true, "already executing the plan");
        } else if matches!(self.shown, Some(Prompt::ChoosePlan { .. })) {
            self.go = true;
        } else {
            self.refuse(
                p,
                status::CONFIG_ERROR,
                "NO_PLAN",
                "no plan to execute yet: wait for TARGETING's STATUS (planning CT, registration and plans first)",
            );
        }
    }

    fn received(&mut self, m: &Message) {
        let Body::String { value, .. } = &m.body else { return };
        if m.device_name != ANSWER_DEVICE {
            return;
        }
        let text = answer_text(value);
        match text.as_str() {
            "yes" => self.answer = Some(Answer::Yes),
            "no" => self.answer = Some(Answer::No),
            "abort" => self.answer = Some(Answer::Abort),
            "retract" => self.requests.push_back(Request::Retract),
            t => match t.strip_prefix("plan ").and_then(|n| n.trim().parse::<usize>().ok()) {
                Some(n) if n >= 1 => self.picked = Some(n),
                _ => self.out.push(Reply::Refused {
                    device: ANSWER_DEVICE.into(),
                    code: status::UNKNOWN_INSTRUCTION,
                    name: "UNKNOWN_ANSWER",
                    reason: format!("{text:?} is no answer: yes, no, abort, retract or plan N"),
                }),
            },
        }
    }

    /// The driver asks `prompt`: shown once, answered when Slicer has.
    pub fn ask(&mut self, prompt: &Prompt) -> Option<Answer> {
        if self.shown.as_ref() != Some(prompt) {
            self.show(prompt);
            return None;
        }
        match prompt {
            Prompt::Start => self.started.then(|| {
                self.done(Phase::StartUp, true, "procedure started: planning CT, fiducials, registration, plans");
                Answer::Yes
            }),
            Prompt::Registration => {
                if let Some(a) = self.answer.take().filter(|a| *a == Answer::Abort) {
                    return Some(a);
                }
                self.calibration.is_some().then(|| {
                    self.done(Phase::Calibration, true, "calibration taken as the registration (rigid)");
                    Answer::Yes
                })
            }
            Prompt::ChoosePlan { options } => {
                if let Some(a) = self.answer.take().filter(|a| *a == Answer::Abort) {
                    return Some(a);
                }
                if !self.go {
                    return None;
                }
                self.go = false;
                let picked = match self.picked.take() {
                    Some(n) => match options.get(n - 1) {
                        Some(o) => o,
                        None => {
                            let why = format!("there is no plan {n} (1 to {})", options.len());
                            self.refuse(Phase::MoveToTarget, status::CONFIG_ERROR, "NO_SUCH_PLAN", &why);
                            return None;
                        }
                    },
                    // The best plan that is not high-risk (OAR-2), else the best (the driver then
                    // asks for the explicit override).
                    None => options.iter().find(|o| !o.high_risk).or(options.first())?,
                };
                self.moving = true;
                Some(Answer::Choose { index: picked.index })
            }
            _ => self.answer.take(),
        }
    }

    fn show(&mut self, prompt: &Prompt) {
        self.shown = Some(prompt.clone());
        // An answer typed before the question was asked answers nothing.
        self.answer = None;
        let text = match prompt {
            Prompt::Start => "start the procedure: START_UP".to_string(),
            Prompt::ChoosePlan { options } => {
                self.out.push(Reply::Plans(options.clone()));
                if std::mem::take(&mut self.targeting) {
                    let text = plans_text(options);
                    self.done(Phase::Targeting, true, &text);
                }
                if self.aim.is_some() {
                    self.match_aim(options);
                }
                format!("{}; MOVE_TO_TARGET executes it (ANSWER plan N first to pick another)", plans_text(options))
            }
            Prompt::OverrideHighRisk { index, rules } => format!(
                "plan {} is high-risk ({}): ANSWER yes to execute it anyway, no for another",
                index + 1,
                rules.join("; ")
            ),
            Prompt::StartAblation { setting, position } => {
                self.done(
                    Phase::MoveToTarget,
                    true,
                    &format!(
                        "the needle is at the target of position {} of {} (ACC-1 accepted)",
                        position.0, position.1
                    ),
                );
                format!(
                    "start the ablation ({setting}) at position {} of {}: ANSWER yes or abort",
                    position.0, position.1
                )
            }
            Prompt::AfterFault { fault } => {
                format!("the supervisor latched {fault}; the arm holds: ANSWER yes resets, abort ends the procedure")
            }
            Prompt::RetractNeedle { why } => format!("{why}: ANSWER yes withdraws the needle, no keeps it held"),
            Prompt::CheckpointsExhausted { taken } => {
                format!("INS-3: {taken} checkpoint CTs taken, none left: ANSWER yes goes on, abort stops")
            }
            Prompt::Registration => {
                "the registration: send the calibration as TRANSFORM CLB_<id> (robot to image, RAS); ANSWER abort stops"
                    .to_string()
            }
        };
        self.out.push(Reply::Prompt(text));
    }

    /// Slicer's target chooses among the plans offered: with an entry, the plan whose entry and
    /// target are both within [`AIM_TOLERANCE_MM`] of Slicer's (the nearest); with a target
    /// alone, the best plan (not high-risk first) whose target is. It is then the plan
    /// MOVE_TO_TARGET executes (STATUS PLANNING says which, and how far); none: refused with the
    /// nearest, and Stylet's plans stand.
    fn match_aim(&mut self, options: &[PlanOption]) {
        let Some((entry, target)) = self.aim.take() else { return };
        let far = |o: &PlanOption| {
            let tip = (o.tip - target).norm_mm();
            (entry.map_or(0.0, |e| (o.entry - e).norm_mm()), tip)
        };
        let worst = |o: &PlanOption| {
            let (e, t) = far(o);
            e.max(t)
        };
        let within: Vec<usize> = (0..options.len()).filter(|&i| worst(&options[i]) <= AIM_TOLERANCE_MM).collect();
        let chosen = if entry.is_some() {
            within.iter().copied().min_by(|&a, &b| worst(&options[a]).total_cmp(&worst(&options[b])))
        } else {
            within.iter().copied().find(|&i| !options[i].high_risk).or(within.first().copied())
        };
        match chosen {
            Some(i) => {
                self.picked = Some(i + 1);
                let (e, t) = far(&options[i]);
                let entry_text = if entry.is_some() { format!("entry {e:.1} mm and ") } else { String::new() };
                self.done(
                    Phase::Planning,
                    true,
                    &format!(
                        "plan {} matches your target ({entry_text}target {t:.1} mm away; margin {:.1} mm{}): MOVE_TO_TARGET executes it",
                        i + 1,
                        options[i].margin_mm,
                        if options[i].high_risk { ", high-risk (OAR-2): an override is asked" } else { "" }
                    ),
                );
            }
            None => {
                let nearest = (0..options.len()).min_by(|&a, &b| worst(&options[a]).total_cmp(&worst(&options[b])));
                let why = nearest.map_or("no plan is offered".to_string(), |i| {
                    format!("the nearest is plan {} at {:.1} mm", i + 1, worst(&options[i]))
                });
                self.refuse(
                    Phase::Planning,
                    status::CONFIG_ERROR,
                    "NO_MATCHING_PLAN",
                    &format!(
                        "no plan under the clinical rules {} within {AIM_TOLERANCE_MM} mm of yours ({why}); Stylet's plans are in POINT PLANS",
                        if entry.is_some() { "enters and ends" } else { "ends" }
                    ),
                );
            }
        }
    }

    /// A front end for a site that takes the registration from Slicer's calibration.
    #[must_use]
    pub fn taking_calibration() -> Self {
        FrontEnd { takes_calibration: true, ..FrontEnd::default() }
    }

    /// Slicer's calibration, once received (robot from CT).
    #[must_use]
    pub fn calibration(&self) -> Option<Transform<Robot, Ct>> {
        self.calibration
    }

    /// A request made since the last call.
    pub fn request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// `prompt` was answered elsewhere (at the console): Slicer is told what follows from it.
    pub fn answered_elsewhere(&mut self, prompt: &Prompt, answer: Answer) {
        match (prompt, answer) {
            (Prompt::Start, Answer::Yes) if !self.started => {
                self.started = true;
                self.done(
                    Phase::StartUp,
                    true,
                    "procedure started at the console: planning CT, fiducials, registration, plans",
                );
            }
            (Prompt::ChoosePlan { options }, Answer::Choose { index }) => {
                self.moving = true;
                self.go = false;
                let n = options.iter().position(|o| o.index == index).map_or(0, |i| i + 1);
                self.done(Phase::MoveToTarget, true, &format!("plan {n} chosen at the console: executing it"));
            }
            _ => {}
        }
        // The prompt is no longer due: an answer typed for it answers nothing.
        self.shown = None;
        self.answer = None;
    }

    /// The replies made since the last call.
    pub fn replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.out)
    }

    /// Whether the plan is being executed (MOVE_TO_TARGET was taken and not yet reported done).
    #[must_use]
    pub fn moving(&self) -> bool {
        self.moving
    }

    /// The phase by which the peer stopped the procedure (STOP or EMERGENCY), if it did.
    #[must_use]
    pub fn stopped_by(&self) -> Option<Phase> {
        self.stopped_by
    }

    fn done(&mut self, phase: Phase, ok: bool, text: &str) {
        self.out.push(Reply::Completed { phase, ok, text: text.to_string() });
    }

    fn refuse(&mut self, phase: Phase, code: u16, name: &'static str, reason: &str) {
        self.out.push(Reply::Refused { device: phase.name().into(), code, name, reason: reason.to_string() });
    }
}

/// The plans offered, best first, as Slicer is told.
fn plans_text(options: &[stylet_procedure::ports::PlanOption]) -> String {
    let list: Vec<String> = options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            format!(
                "plan {}: {} position(s), margin {:.1} mm{}",
                i + 1,
                o.positions,
                o.margin_mm,
                if o.high_risk { ", high-risk (OAR-2)" } else { "" }
            )
        })
        .collect();
    format!("reachable by the arm: {}", list.join("; "))
}

/// `POINT PLANS`: each plan's entry and target (RAS), named `plan N entry` and `plan N target`,
/// grouped by plan; high-risk plans in red, the others yellow.
fn plans_message(options: &[PlanOption]) -> Message {
    let element = |n: usize, what: &str, p: Point<Ct>, high_risk: bool| {
        let r = stylet_igtl::ras_from_lps(p.to_array());
        stylet_igtl::PointElement {
            name: format!("plan {n} {what}"),
            group: format!("Plan {n}"),
            rgba: if high_risk { [255, 60, 60, 255] } else { [255, 255, 0, 255] },
            position: r.map(|x| x as f32),
            diameter: 2.0,
            owner: String::new(),
        }
    };
    let points = options
        .iter()
        .enumerate()
        .flat_map(|(i, o)| {
            [element(i + 1, "entry", o.entry, o.high_risk), element(i + 1, "target", o.tip, o.high_risk)]
        })
        .collect();
    Message::new("PLANS", Body::Point(points))
}

/// 3D Slicer as the [`Operator`]: the [`FrontEnd`] on a running OpenIGTLink server (started
/// with `stylet_igtl::bwh::Convention::StyletPlans`).
#[derive(Debug)]
pub struct SlicerOperator {
    server: ServerHandle,
    front: FrontEnd,
    leave: Option<Arc<AtomicBool>>,
    left: bool,
    network: Option<NetworkControl>,
}

impl SlicerOperator {
    /// Slicer over `server`.
    #[must_use]
    pub fn new(server: ServerHandle) -> Self {
        Self { server, front: FrontEnd::default(), leave: None, left: false, network: None }
    }

    /// The site takes the registration from Slicer's calibration (the server runs
    /// `Convention::StyletPlansPeerCalibrates`).
    #[must_use]
    pub fn taking_calibration(mut self) -> Self {
        self.front = FrontEnd::taking_calibration();
        self
    }

    /// A command that moves the arm is taken only from a peer for which `network` is armed (at
    /// the console); STOP and EMERGENCY disarm it.
    #[must_use]
    pub fn armed_by(mut self, network: NetworkControl) -> Self {
        self.network = Some(network);
        self
    }

    /// The operator leaves ([`Request::Leave`]) once `flag` is set (a signal asked the process
    /// to end).
    #[must_use]
    pub fn leave_when(mut self, flag: Arc<AtomicBool>) -> Self {
        self.leave = Some(flag);
        self
    }

    /// Takes what the peers sent, sends what the front end replied.
    fn exchange(&mut self) {
        if let Some(n) = &self.network {
            n.refresh(&self.server.peers());
        }
        while let Ok(r) = self.server.requests.try_recv() {
            if !self.may(&r) {
                continue;
            }
            self.front.take(r.action);
        }
        self.send();
    }

    /// Whether the request is taken: without network control, all are; with it, a command that
    /// moves the arm only from an armed peer (else refused with the reason). STOP and
    /// EMERGENCY disarm.
    fn may(&self, r: &stylet_igtl::server::Request) -> bool {
        let Some(n) = &self.network else { return true };
        if let Action::Enter(p @ (Phase::Stop | Phase::Emergency)) = &r.action {
            n.disarm(&format!("{} from 3D Slicer", p.name()));
            return true;
        }
        let Some(device) = moves_arm(&r.action) else { return true };
        if n.allows(r.client) {
            return true;
        }
        let who = self
            .server
            .peers()
            .iter()
            .find(|(c, _)| *c == r.client)
            .map_or("a peer now gone".into(), |(_, a)| a.to_string());
        let reason = "network control is not armed at the console: the operator arms it there (key w) for the 3D Slicer connected";
        n.note(format!("refused {device} from {who}: {reason}"));
        self.server.broadcast(Message::new(
            device,
            Body::Status {
                code: status::ACCESS_DENIED,
                subcode: 0,
                error_name: "NOT_ARMED".into(),
                message: reason.into(),
            },
        ));
        false
    }

    fn send(&mut self) {
        for r in self.front.replies() {
            match r {
                Reply::Completed { phase, ok, text } => self.server.completed(phase, ok, &text),
                Reply::Refused { device, code, name, reason } => self.server.broadcast(Message::new(
                    &device,
                    Body::Status { code, subcode: 0, error_name: name.to_string(), message: reason },
                )),
                Reply::Prompt(text) => self
                    .server
                    .broadcast(Message::new(PROMPT_DEVICE, Body::String { encoding: 3, value: text.into_bytes() })),
                Reply::Plans(options) => self.server.broadcast(plans_message(&options)),
            }
        }
    }

    /// The phase by which the peer stopped the procedure (STOP or EMERGENCY), if it did.
    #[must_use]
    pub fn stopped_by(&self) -> Option<Phase> {
        self.front.stopped_by()
    }

    /// The procedure has ended: a STATUS for MOVE_TO_TARGET when it was executing, and the
    /// last word as a prompt. Returns the server (to stop it).
    pub fn ended(mut self, ok: bool, text: &str) -> ServerHandle {
        self.exchange();
        if self.front.moving() || !ok {
            self.server.completed(Phase::MoveToTarget, ok, text);
        }
        self.server.broadcast(Message::new(
            PROMPT_DEVICE,
            Body::String { encoding: 3, value: format!("the procedure has ended: {text}").into_bytes() },
        ));
        self.server
    }
}

/// An `ANSWER`'s text as the front end reads it: trimmed, NUL-free, lower case.
fn answer_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).trim().trim_end_matches('\0').to_ascii_lowercase()
}

/// The device name under which a request that moves the arm is answered, if `action` is one:
/// MOVE_TO_TARGET, and an answer that goes on (anything but `abort` and `no`: a reset, a
/// retraction, an override, the next step).
fn moves_arm(action: &Action) -> Option<&'static str> {
    match action {
        Action::Enter(Phase::MoveToTarget) => Some(Phase::MoveToTarget.name()),
        Action::Received(m) if m.device_name == ANSWER_DEVICE => match &m.body {
            Body::String { value, .. } => {
                let text = answer_text(value);
                (text != "abort" && text != "no").then_some(ANSWER_DEVICE)
            }
            _ => None,
        },
        _ => None,
    }
}

impl Operator for SlicerOperator {
    fn answer(&mut self, prompt: &Prompt) -> Option<Answer> {
        self.exchange();
        let a = self.front.ask(prompt);
        self.send();
        a
    }

    fn request(&mut self) -> Option<Request> {
        if !self.left && self.leave.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            self.left = true;
            return Some(Request::Leave);
        }
        self.exchange();
        self.front.request()
    }

    fn registration(&mut self) -> Option<Transform<Robot, Ct>> {
        self.front.calibration()
    }

    fn operator_notices(&mut self, sink: &mut dyn FnMut(String)) {
        if let Some(n) = &self.network {
            for line in n.take_notices() {
                sink(line);
            }
        }
    }
}

/// The CT suite's operator (`stylet procedure`): the console, and 3D Slicer when it is served
/// (`--igtl`). A prompt is shown on both and the first answer counts (the other is told);
/// requests come from both, the console's first. Slicer moves the arm only while the console
/// has armed network control ([`NetworkControl`]); a stop from either disarms it.
#[derive(Debug)]
pub struct SuiteOperator {
    /// The console.
    pub console: ConsoleOperator,
    /// 3D Slicer, armed by the console's [`NetworkControl`].
    pub slicer: Option<SlicerOperator>,
}

impl Operator for SuiteOperator {
    fn answer(&mut self, prompt: &Prompt) -> Option<Answer> {
        if let Some(a) = self.console.answer(prompt) {
            if let Some(s) = &mut self.slicer {
                s.front.answered_elsewhere(prompt, a);
                s.send();
            }
            return Some(a);
        }
        let a = self.slicer.as_mut()?.answer(prompt)?;
        self.console.answered_elsewhere(prompt, a);
        Some(a)
    }

    fn request(&mut self) -> Option<Request> {
        let r = self.console.request().or_else(|| self.slicer.as_mut().and_then(SlicerOperator::request))?;
        if let (Some(n), Request::Abort | Request::EStop | Request::Leave) =
            (self.slicer.as_ref().and_then(|s| s.network.as_ref()), r)
        {
            n.disarm(&format!("{r:?}"));
        }
        Some(r)
    }

    fn operator_notices(&mut self, sink: &mut dyn FnMut(String)) {
        if let Some(s) = &mut self.slicer {
            s.operator_notices(sink);
        }
    }

    fn registration(&mut self) -> Option<Transform<Robot, Ct>> {
        self.slicer.as_mut()?.registration()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use stylet_procedure::ports::PlanOption;

    fn plans() -> Prompt {
        Prompt::ChoosePlan {
            options: vec![
                PlanOption {
                    index: 3,
                    positions: 1,
                    margin_mm: 6.0,
                    high_risk: true,
                    entry: stylet_core::frame::Point::new(0.0, 0.0, 0.0),
                    tip: stylet_core::frame::Point::new(0.0, 0.0, 80.0),
                },
                PlanOption {
                    index: 5,
                    positions: 2,
                    margin_mm: 5.5,
                    high_risk: false,
                    entry: stylet_core::frame::Point::new(0.0, 0.0, 0.0),
                    tip: stylet_core::frame::Point::new(0.0, 0.0, 80.0),
                },
            ],
        }
    }

    fn answer_text(f: &mut FrontEnd, text: &str) {
        f.take(Action::Received(Box::new(Message::new(
            ANSWER_DEVICE,
            Body::String { encoding: 3, value: text.as_bytes().to_vec() },
        ))));
    }

    fn refused(r: &[Reply]) -> Vec<(String, u16)> {
        r.iter()
            .filter_map(|r| match r {
                Reply::Refused { device, code, .. } => Some((device.clone(), *code)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_bwh_phases_answer_the_drivers_prompts_and_nothing_moves_before_move_to_target() {
        let mut f = FrontEnd::default();
        // Nothing before START_UP: the start prompt is shown and waits; phases are refused.
        assert_eq!(f.ask(&Prompt::Start), None);
        assert_eq!(f.ask(&Prompt::Start), None);
        f.take(Action::Enter(Phase::Targeting));
        f.take(Action::Enter(Phase::MoveToTarget));
        let r = f.replies();
        assert!(matches!(&r[0], Reply::Prompt(t) if t.contains("START_UP")), "{r:?}");
        assert_eq!(
            refused(&r),
            vec![("TARGETING".into(), status::NOT_READY), ("MOVE_TO_TARGET".into(), status::NOT_READY)]
        );
        f.take(Action::Enter(Phase::StartUp));
        assert_eq!(f.ask(&Prompt::Start), Some(Answer::Yes));
        // TARGETING before the plans: reported once they are offered.
        f.take(Action::Enter(Phase::Targeting));
        // MOVE_TO_TARGET before the plans: refused.
        f.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(refused(&f.replies()), vec![("MOVE_TO_TARGET".into(), status::CONFIG_ERROR)]);
        assert_eq!(f.ask(&plans()), None);
        let r = f.replies();
        assert!(
            r.iter().any(|x| matches!(x, Reply::Completed { phase: Phase::Targeting, ok: true, text } if text.contains("plan 2: 2 position(s)"))),
            "{r:?}"
        );
        // The plan choice waits for MOVE_TO_TARGET; then the best plan that is not high-risk.
        assert_eq!(f.ask(&plans()), None);
        assert_eq!(f.ask(&plans()), None);
        f.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(f.ask(&plans()), Some(Answer::Choose { index: 5 }));
        assert!(f.moving());
        // The ablation: announced with MOVE_TO_TARGET's STATUS; an answer typed before the
        // question answers nothing; one typed after it does.
        let ablate = Prompt::StartAblation { setting: "100 W".into(), position: (1, 2) };
        answer_text(&mut f, "yes");
        assert_eq!(f.ask(&ablate), None);
        assert_eq!(f.ask(&ablate), None);
        let r = f.replies();
        assert!(r.iter().any(|x| matches!(x, Reply::Completed { phase: Phase::MoveToTarget, ok: true, .. })), "{r:?}");
        answer_text(&mut f, "YES");
        assert_eq!(f.ask(&ablate), Some(Answer::Yes));
        // Unknown answers are refused with the reason; MANUAL is not offered.
        answer_text(&mut f, "maybe");
        f.take(Action::Enter(Phase::Manual));
        assert_eq!(
            refused(&f.replies()),
            vec![("ANSWER".into(), status::UNKNOWN_INSTRUCTION), ("MANUAL".into(), status::CONFIG_ERROR)]
        );
    }

    #[test]
    fn a_picked_plan_stop_and_emergency() {
        let mut f = FrontEnd::default();
        f.take(Action::Enter(Phase::StartUp));
        f.ask(&Prompt::Start);
        assert_eq!(f.ask(&Prompt::Start), Some(Answer::Yes));
        f.ask(&plans());
        answer_text(&mut f, "plan 1");
        f.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(f.ask(&plans()), Some(Answer::Choose { index: 3 }));
        answer_text(&mut f, "retract");
        assert_eq!(f.request(), Some(Request::Retract));
        f.take(Action::Enter(Phase::Stop));
        assert_eq!(f.request(), Some(Request::Abort));
        f.take(Action::Enter(Phase::Emergency));
        assert_eq!(f.request(), Some(Request::EStop));
        assert_eq!(f.request(), None);
        f.replies();
        // Stopped: moving again is refused.
        let mut g = FrontEnd::default();
        g.take(Action::Enter(Phase::StartUp));
        g.take(Action::Enter(Phase::Emergency));
        g.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(refused(&g.replies()), vec![("MOVE_TO_TARGET".into(), status::PANIC)]);
    }

    #[test]
    fn slicers_target_chooses_among_the_plans_offered_or_is_refused_with_the_nearest() {
        let option = |index, entry: [f64; 3], tip: [f64; 3], high_risk| PlanOption {
            index,
            positions: 1,
            margin_mm: 6.0,
            high_risk,
            entry: Point::new(entry[0], entry[1], entry[2]),
            tip: Point::new(tip[0], tip[1], tip[2]),
        };
        let plans = Prompt::ChoosePlan {
            options: vec![
                option(4, [0.0, 100.0, 0.0], [0.0, 0.0, 0.0], true),
                option(7, [100.0, 0.0, 0.0], [1.0, 0.0, 0.0], false),
                option(9, [0.0, 0.0, 100.0], [0.0, 1.0, 0.0], false),
            ],
        };
        let started = || {
            let mut f = FrontEnd::default();
            f.take(Action::Enter(Phase::StartUp));
            f.ask(&Prompt::Start);
            f.ask(&Prompt::Start);
            f
        };
        let aim = |f: &mut FrontEnd, entry: Option<[f64; 3]>, target: [f64; 3]| {
            f.take(Action::Target {
                entry: entry.map(|e| Point::new(e[0], e[1], e[2])),
                target: Point::new(target[0], target[1], target[2]),
            });
        };
        let planning = |r: &[Reply]| {
            r.iter()
                .find_map(|x| match x {
                    Reply::Completed { phase: Phase::Planning, ok, text } => Some((*ok, text.clone())),
                    Reply::Refused { device, code, reason, .. } if device == "PLANNING" => {
                        Some((*code == 0, reason.clone()))
                    }
                    _ => None,
                })
                .unwrap()
        };
        // With an entry, before the plans are offered: matched when they are, the nearest; the
        // plans go out for review.
        let mut f = started();
        aim(&mut f, Some([3.0, 2.0, 96.0]), [0.0, 2.0, 1.0]);
        f.ask(&plans);
        let r = f.replies();
        assert!(r.iter().any(|x| matches!(x, Reply::Plans(o) if o.len() == 3)), "{r:?}");
        let (ok, text) = planning(&r);
        assert!(ok && text.starts_with("plan 3 matches"), "{text}");
        f.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(f.ask(&plans), Some(Answer::Choose { index: 9 }));
        // A target alone, once offered: the best plan that is not high-risk ending near it.
        let mut g = started();
        g.ask(&plans);
        g.replies();
        aim(&mut g, None, [0.5, 0.0, 0.0]);
        assert!(planning(&g.replies()).1.starts_with("plan 2 matches"));
        g.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(g.ask(&plans), Some(Answer::Choose { index: 7 }));
        // Nothing near: refused with the nearest; Stylet's best plan stands.
        let mut h = started();
        h.ask(&plans);
        h.replies();
        aim(&mut h, Some([0.0, 0.0, 140.0]), [0.0, 1.0, 0.0]);
        let r = h.replies();
        assert_eq!(refused(&r), vec![("PLANNING".into(), status::CONFIG_ERROR)]);
        assert!(planning(&r).1.contains("the nearest is plan 3 at 40.0 mm"), "{r:?}");
        h.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(h.ask(&plans), Some(Answer::Choose { index: 7 }));
    }

    #[test]
    fn where_the_site_takes_slicers_calibration_it_answers_the_registration_prompt() {
        let rigid = Transform::<Ct, Robot>::try_from_rows([
            [0.0, -1.0, 0.0, 10.0],
            [1.0, 0.0, 0.0, 20.0],
            [0.0, 0.0, 1.0, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ])
        .unwrap();
        // Not taken where the site registers on the fiducials.
        let mut f = FrontEnd::default();
        f.take(Action::Registration(rigid));
        assert_eq!(f.calibration(), None);
        // Taken where it takes Slicer's: the prompt waits for it, then is answered yes.
        let mut g = FrontEnd::taking_calibration();
        g.take(Action::Enter(Phase::Calibration));
        assert!(matches!(&g.replies()[0], Reply::Completed { text, .. } if text.contains("CLB_")));
        assert_eq!(g.ask(&Prompt::Registration), None);
        assert_eq!(g.ask(&Prompt::Registration), None);
        g.take(Action::Registration(rigid));
        assert_eq!(g.ask(&Prompt::Registration), Some(Answer::Yes));
        let robot_from_ct = g.calibration().unwrap();
        let p = robot_from_ct * Point::<Ct>::new(10.0, 20.0, 30.0);
        assert!((p - Point::<Robot>::new(0.0, 0.0, 0.0)).norm_mm() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_plan_number_that_is_not_offered_is_refused_and_nothing_is_chosen() {
        let mut f = FrontEnd::default();
        f.take(Action::Enter(Phase::StartUp));
        f.ask(&Prompt::Start);
        f.ask(&Prompt::Start);
        f.ask(&plans());
        answer_text(&mut f, "plan 7");
        f.take(Action::Enter(Phase::MoveToTarget));
        assert_eq!(f.ask(&plans()), None);
        assert!(!f.moving());
        assert_eq!(refused(&f.replies()), vec![("MOVE_TO_TARGET".into(), status::CONFIG_ERROR)]);
    }
}
