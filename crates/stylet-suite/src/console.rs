//! The operator console's model, apart from how it is drawn: the [`Operator`] port on the
//! driver's side ([`ConsoleOperator`]), the keys on the operator's side ([`Keys`]), and what the
//! console shows ([`View`], kept up to date from the procedure's events by [`ViewSink`]).
//!
//! A key answers only the prompt that was on the screen when it was pressed: each prompt the
//! driver asks gets a number, the key carries the number it saw, and a key for an earlier
//! prompt is ignored (a double press never answers the next question, e.g. to start an ablation).
//! The software e-stop does not go through the driver: it presses the supervisor's e-stop
//! directly, and the ablation's end goes straight to the device.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use stylet_procedure::ports::{Answer, Event, EventSink, Operator, Prompt, Request};

use crate::ablation::AblationEnd;

/// Lines the console keeps.
const LOG_LINES: usize = 200;

/// A key the operator pressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Yes / go on.
    Yes,
    /// No.
    No,
    /// Plan number `n` of the list shown (0-based).
    Choose(usize),
    /// Hold.
    Pause,
    /// Go on after a hold.
    Resume,
    /// Stop the procedure (an answer to the prompt on screen, else a request).
    Abort,
    /// Withdraw the needle (after an abort or a fault).
    Retract,
    /// The generator has stopped: the ablation ended.
    EndAblation,
    /// The software e-stop: drives off, brakes on, latched.
    EStop,
    /// Arm network control (3D Slicer may move the arm), or disarm it when armed.
    Network,
    /// Not a key: the console closed, or the process was asked to end ([`Keys::leave`]).
    Leave,
}

/// The respiratory gate as last reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateView {
    /// The surrogate, mm.
    pub signal_mm: f64,
    /// Its prediction at the horizon, mm.
    pub predicted_mm: f64,
    /// Open.
    pub open: bool,
}

/// What the console shows.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// Procedure time of the newest event, s.
    pub t_s: f64,
    /// The workflow phase.
    pub phase: String,
    /// The supervisor's state.
    pub supervisor: String,
    /// The foot pedal pressed (INS-2), drives enabled.
    pub pedal: bool,
    /// Drives enabled.
    pub drives_on: bool,
    /// Latched faults: time, hazard ID, what happened.
    pub faults: Vec<(f64, String, String)>,
    /// The gate.
    pub gate: Option<GateView>,
    /// Needle depth past the skin, mm (the insertion joint beyond the stand-off).
    pub inserted_mm: Option<f64>,
    /// The planned depth, entry to tip, mm.
    pub planned_mm: Option<f64>,
    /// The decision due now, with its number.
    pub prompt: Option<(u64, Prompt)>,
    /// The procedure's notes and the operator's actions, newest last.
    pub log: VecDeque<(f64, String)>,
    /// Set when the procedure ended, with how.
    pub ended: Option<String>,
    /// Network control (3D Slicer), when the procedure serves it: armed for whom, or not.
    pub network: Option<String>,
    insertion: Option<(usize, f64)>,
}

impl View {
    /// An empty view; `insertion` is the insertion joint's index and the stand-off, mm.
    #[must_use]
    pub fn new(insertion: Option<(usize, f64)>) -> Self {
        View {
            t_s: 0.0,
            phase: "SetUp".into(),
            supervisor: "-".into(),
            pedal: false,
            drives_on: false,
            faults: Vec::new(),
            gate: None,
            inserted_mm: None,
            planned_mm: None,
            prompt: None,
            log: VecDeque::new(),
            ended: None,
            network: None,
            insertion,
        }
    }

    /// A line in the console's log.
    pub fn say(&mut self, t_s: f64, line: impl Into<String>) {
        self.log.push_back((t_s, line.into()));
        while self.log.len() > LOG_LINES {
            self.log.pop_front();
        }
    }

    /// Takes in one procedure event.
    pub fn apply(&mut self, t_s: f64, e: &Event<'_>) {
        self.t_s = self.t_s.max(t_s);
        match e {
            Event::Workflow(tr) => {
                self.phase = format!("{:?}", tr.to);
                self.say(t_s, format!("{:?} -> {:?}: {}", tr.from, tr.to, tr.reason));
            }
            Event::Note(text) => self.say(t_s, *text),
            Event::Operator { action, detail } => self.say(t_s, format!("operator: {action} {detail}")),
            Event::SupervisorState { to, reason, .. } => {
                self.supervisor = (*to).to_string();
                if !reason.is_empty() {
                    self.say(t_s, format!("supervisor: {to} ({reason})"));
                }
            }
            Event::Fault { code, detail } => {
                self.faults.push((t_s, (*code).to_string(), (*detail).to_string()));
                self.say(t_s, format!("FAULT {code}: {detail}"));
            }
            Event::Snapshot(s) => {
                self.supervisor = s.state.name().to_string();
                self.pedal = s.pedal;
                self.drives_on = s.drives_on;
                if let Some((joint, standoff_mm)) = self.insertion {
                    if let Some(q) = s.measured.as_slice().get(joint) {
                        self.inserted_mm = Some((q - standoff_mm).max(0.0));
                    }
                }
            }
            Event::Gate { signal_mm, predicted_mm, open } => {
                self.gate = Some(GateView { signal_mm: *signal_mm, predicted_mm: *predicted_mm, open: *open });
            }
            Event::Plan { entry, tip, .. } => {
                self.planned_mm = Some((tip.to_nalgebra() - entry.to_nalgebra()).norm());
            }
            Event::TipMeasured(p) => {
                let v = p.to_nalgebra();
                self.say(t_s, format!("tip measured at LPS ({:.1}, {:.1}, {:.1}) mm", v.x, v.y, v.z));
            }
            _ => {}
        }
    }
}

fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    // A panic elsewhere while drawing must not take the console down with it.
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps a [`View`] up to date from the events, beside another sink.
#[allow(missing_debug_implementations)]
pub struct ViewSink<'a> {
    /// Where the events go as well (the procedure log, telemetry).
    pub inner: &'a mut dyn EventSink,
    /// The console's view.
    pub view: Arc<Mutex<View>>,
}

impl EventSink for ViewSink<'_> {
    fn event(&mut self, t_s: f64, e: Event<'_>) {
        lock(&self.view).apply(t_s, &e);
        self.inner.event(t_s, e);
    }
}

/// The operator's side: the keys, sent with the number of the prompt on screen.
#[derive(Clone)]
pub struct Keys {
    tx: Sender<(Option<u64>, Key)>,
    view: Arc<Mutex<View>>,
    ablation_end: AblationEnd,
    estop: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    network: Option<crate::arming::NetworkControl>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// The key [`Key::Network`] arms and disarms `network`.
    #[must_use]
    pub fn with_network(mut self, network: crate::arming::NetworkControl) -> Self {
        self.network = Some(network);
        self
    }

    /// The view the keys answer.
    #[must_use]
    pub fn view(&self) -> Arc<Mutex<View>> {
        Arc::clone(&self.view)
    }

    /// A line in the console's log (what the console itself has to say).
    pub fn note(&self, line: &str) {
        let mut v = lock(&self.view);
        let t = v.t_s;
        v.say(t, line);
    }

    /// The operator has left (the console closed, or the process was asked to end): the
    /// procedure stops as on an abort and ends with the drives off, nothing more asked
    /// ([`Request::Leave`]).
    pub fn leave(&self, why: &str) {
        self.note(&format!("the operator has left ({why}): the procedure stops"));
        let _ = self.tx.send((None, Key::Leave));
    }

    /// One key press.
    ///
    /// # Errors
    /// When the e-stop could not be pressed (the supervisor is gone) or the procedure ended.
    pub fn press(&self, key: Key) -> Result<(), String> {
        let (seq, t) = {
            let v = lock(&self.view);
            (v.prompt.as_ref().map(|(n, _)| *n), v.t_s)
        };
        match key {
            Key::EStop => {
                let r = (self.estop)();
                let how = r.as_ref().err().map_or("latched", String::as_str);
                lock(&self.view).say(t, format!("operator: software e-stop ({how})"));
                r
            }
            Key::Network => match &self.network {
                Some(n) => {
                    n.toggle();
                    Ok(())
                }
                None => Err("no network front end (stylet procedure --igtl)".to_string()),
            },
            Key::EndAblation => {
                self.ablation_end.confirm();
                lock(&self.view).say(t, "operator: the generator has stopped (ablation ended)");
                Ok(())
            }
            _ => self.tx.send((seq, key)).map_err(|_| "the procedure has ended".to_string()),
        }
    }
}

/// The driver's side of the console.
#[derive(Debug)]
pub struct ConsoleOperator {
    keys: Receiver<(Option<u64>, Key)>,
    view: Arc<Mutex<View>>,
    due: Option<(u64, Prompt)>,
    asked: u64,
    /// An answer to the prompt `due`, given while the driver was busy between two asks.
    answered: Option<(u64, Answer)>,
    requests: VecDeque<Request>,
}

impl ConsoleOperator {
    /// The console over `view`: the driver's side, and the operator's keys (the software e-stop
    /// calls `estop`; the ablation's end goes to `ablation_end`).
    pub fn new(
        view: Arc<Mutex<View>>,
        ablation_end: AblationEnd,
        estop: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    ) -> (Self, Keys) {
        let (tx, keys) = mpsc::channel();
        let op = ConsoleOperator {
            keys,
            view: Arc::clone(&view),
            due: None,
            asked: 0,
            answered: None,
            requests: VecDeque::new(),
        };
        (op, Keys { tx, view, ablation_end, estop, network: None })
    }

    /// Sorts the keys pressed since the last call: the first answer to the prompt on screen,
    /// requests.
    fn take_keys(&mut self) {
        while let Ok((seq, key)) = self.keys.try_recv() {
            let current = self.due.as_ref().filter(|(n, _)| seq == Some(*n) && self.answered.is_none());
            let request = match key {
                Key::Pause => Some(Request::Pause),
                Key::Resume => Some(Request::Resume),
                Key::Retract => Some(Request::Retract),
                Key::Leave => Some(Request::Leave),
                Key::Abort if current.is_none() => Some(Request::Abort),
                _ => None,
            };
            if let Some(r) = request {
                self.requests.push_back(r);
                continue;
            }
            match current {
                Some((n, prompt)) => match valid(prompt, key) {
                    Ok(a) => self.answered = Some((*n, a)),
                    Err(why) => self.say(why),
                },
                None => self.say(format!("{key:?} ignored: it answered no question on screen now")),
            }
        }
    }

    /// `prompt` was answered elsewhere (3D Slicer): it leaves the screen, and a key pressed for
    /// it answers nothing.
    pub fn answered_elsewhere(&mut self, prompt: &Prompt, answer: Answer) {
        if self.due.as_ref().is_some_and(|(_, p)| p == prompt) {
            self.due = None;
            self.answered = None;
            lock(&self.view).prompt = None;
            self.say(format!("answered from 3D Slicer: {answer:?}"));
        }
    }

    fn say(&self, line: String) {
        let mut v = lock(&self.view);
        let t = v.t_s;
        v.say(t, line);
    }
}

/// The answer `key` gives to `prompt`, or why it gives none.
fn valid(prompt: &Prompt, key: Key) -> Result<Answer, String> {
    match (prompt, key) {
        (_, Key::Abort) => Ok(Answer::Abort),
        (Prompt::ChoosePlan { options }, Key::Choose(n)) => match options.get(n) {
            Some(o) => Ok(Answer::Choose { index: o.index }),
            None => Err(format!("there is no plan {} (1 to {})", n + 1, options.len())),
        },
        (Prompt::ChoosePlan { .. }, _) => Err("choose a plan by its number, or abort".into()),
        (_, Key::Yes) => Ok(Answer::Yes),
        (_, Key::No) => Ok(Answer::No),
        (_, k) => Err(format!("{k:?} does not answer this question (yes, no or abort)")),
    }
}

impl Operator for ConsoleOperator {
    fn answer(&mut self, prompt: &Prompt) -> Option<Answer> {
        if self.due.as_ref().is_none_or(|(_, p)| p != prompt) {
            self.asked += 1;
            self.due = Some((self.asked, prompt.clone()));
            lock(&self.view).prompt = self.due.clone();
        }
        self.take_keys();
        let due = self.due.as_ref().map(|(n, _)| *n);
        let (n, a) = self.answered.take()?;
        if Some(n) != due {
            return None;
        }
        self.due = None;
        lock(&self.view).prompt = None;
        Some(a)
    }

    fn request(&mut self) -> Option<Request> {
        self.take_keys();
        self.requests.pop_front()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stylet_procedure::ports::PlanOption;

    fn console() -> (ConsoleOperator, Keys, Arc<std::sync::atomic::AtomicUsize>) {
        let view = Arc::new(Mutex::new(View::new(Some((2, 20.0)))));
        let pressed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = Arc::clone(&pressed);
        let estop = Arc::new(move || {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        let (op, keys) = ConsoleOperator::new(view, AblationEnd::default(), estop);
        (op, keys, pressed)
    }

    #[test]
    fn a_key_answers_only_the_prompt_it_was_pressed_for() {
        let (mut op, keys, _) = console();
        let start = Prompt::Start;
        assert_eq!(op.answer(&start), None);
        assert_eq!(keys.view().lock().unwrap().prompt.as_ref().map(|p| p.0), Some(1));
        keys.press(Key::Yes).unwrap();
        keys.press(Key::Yes).unwrap(); // a double press
        assert_eq!(op.answer(&start), Some(Answer::Yes));
        assert!(keys.view().lock().unwrap().prompt.is_none());
        // The second press was for prompt 1: it does not answer the next question.
        let ablate = Prompt::StartAblation { setting: "mwa-generic 100W-8min".into(), position: (1, 1) };
        assert_eq!(op.answer(&ablate), None);
        assert_eq!(op.answer(&ablate), None);
        keys.press(Key::No).unwrap();
        assert_eq!(op.answer(&ablate), Some(Answer::No));
        let log = keys.view().lock().unwrap().log.clone();
        assert!(log.iter().any(|(_, l)| l.contains("Yes ignored")), "{log:?}");
    }

    #[test]
    fn plans_are_chosen_by_number_and_other_keys_are_refused_with_why() {
        let (mut op, keys, _) = console();
        let opt = |index| PlanOption {
            index,
            positions: 1,
            margin_mm: 6.0,
            high_risk: false,
            entry: stylet_core::frame::Point::new(0.0, 0.0, 0.0),
            tip: stylet_core::frame::Point::new(0.0, 0.0, 80.0),
        };
        let prompt = Prompt::ChoosePlan { options: vec![opt(4), opt(7)] };
        assert_eq!(op.answer(&prompt), None);
        keys.press(Key::Yes).unwrap();
        keys.press(Key::Choose(5)).unwrap();
        assert_eq!(op.answer(&prompt), None);
        keys.press(Key::Choose(1)).unwrap();
        assert_eq!(op.answer(&prompt), Some(Answer::Choose { index: 7 }));
        let log: Vec<String> = keys.view().lock().unwrap().log.iter().map(|l| l.1.clone()).collect();
        assert!(log.iter().any(|l| l.contains("choose a plan")) && log.iter().any(|l| l.contains("no plan 6")));
    }

    #[test]
    fn requests_and_the_estop_do_not_wait_for_a_prompt() {
        let (mut op, keys, estop) = console();
        keys.press(Key::Pause).unwrap();
        keys.press(Key::Abort).unwrap();
        keys.press(Key::EStop).unwrap();
        assert_eq!(estop.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(op.request(), Some(Request::Pause));
        assert_eq!(op.request(), Some(Request::Abort));
        assert_eq!(op.request(), None);
        // With a prompt on screen, abort answers it.
        let p = Prompt::AfterFault { fault: "HAZ-8".into() };
        assert_eq!(op.answer(&p), None);
        keys.press(Key::Abort).unwrap();
        assert_eq!(op.answer(&p), Some(Answer::Abort));
        // The console closing is the operator leaving: a request, whatever is on screen.
        let _ = op.answer(&Prompt::Start);
        keys.leave("the console's input ended");
        assert_eq!(op.request(), Some(Request::Leave));
        assert!(keys.view().lock().unwrap().log.iter().any(|(_, l)| l.contains("the operator has left")));
        drop(op);
        assert!(keys.press(Key::Yes).is_err(), "the procedure ended");
    }

    #[test]
    fn the_view_follows_the_events() {
        use stylet_core::frame::Point;
        let mut v = View::new(Some((2, 20.0)));
        v.apply(1.0, &Event::Gate { signal_mm: 1.5, predicted_mm: 1.2, open: true });
        v.apply(
            2.0,
            &Event::Plan {
                entry: Point::new(0.0, 0.0, 0.0),
                tip: Point::new(0.0, 30.0, 40.0),
                zone_centre: Point::new(0.0, 27.0, 36.0),
                zone_mm: (52.0, 33.0),
            },
        );
        v.apply(3.0, &Event::Fault { code: "HAZ-8", detail: "no controller state for 16 ms" });
        assert_eq!(v.gate.map(|g| g.open), Some(true));
        assert!((v.planned_mm.unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(v.faults[0].1, "HAZ-8");
        assert_eq!(v.t_s, 3.0);
        assert!(v.log.back().unwrap().1.contains("FAULT HAZ-8"));
    }
}
