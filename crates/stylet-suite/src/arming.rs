//! Who may move the arm over the network (docs/igtl.md, "Network control"): in the CT suite a
//! command from 3D Slicer that moves the arm is taken only while the operator has armed network
//! control at the console.
//!
//! The console's key arms it for the peers connected at that moment (a peer that connects later
//! is not armed); until then, and once it has lapsed, such a command is refused with a STATUS
//! naming the reason. It lapses when an armed peer disconnects, on STOP or EMERGENCY (from
//! Slicer or the console), when the operator leaves, and on any fault the supervisor latches.
//! Every change is shown on the console and written to the procedure log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::console::View;

/// The arming, shared by the console (its key, its screen) and the Slicer operator (its
/// checks). Cloning shares it.
#[derive(Clone, Debug)]
pub struct NetworkControl {
    inner: Arc<Mutex<State>>,
    view: Arc<Mutex<View>>,
}

#[derive(Debug, Default)]
struct State {
    /// The operator pressed the key to arm; taken up at the next [`NetworkControl::refresh`].
    asked: bool,
    /// The peers armed (client number, address); empty: not armed.
    armed: Vec<(u64, SocketAddr)>,
    /// The faults on the console when it was armed: a new one disarms.
    faults_at_arming: usize,
    /// The peers connected now.
    peers: Vec<(u64, SocketAddr)>,
    /// For the procedure log.
    notices: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn addresses(peers: &[(u64, SocketAddr)]) -> String {
    peers.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>().join(", ")
}

impl NetworkControl {
    /// Not armed; its state is shown in `view`.
    #[must_use]
    pub fn new(view: Arc<Mutex<View>>) -> Self {
        let nc = NetworkControl { inner: Arc::new(Mutex::new(State::default())), view };
        nc.show(&lock(&nc.inner));
        nc
    }

    /// The console's key: arms network control for the peers connected now, or disarms it
    /// when it is armed.
    pub fn toggle(&self) {
        let mut s = lock(&self.inner);
        if s.armed.is_empty() {
            s.asked = true;
            drop(s);
            self.say("operator: arm network control (3D Slicer)");
        } else {
            drop(s);
            self.disarm("disarmed at the console");
        }
    }

    /// Disarms (if armed), saying why.
    pub fn disarm(&self, why: &str) {
        let mut s = lock(&self.inner);
        s.asked = false;
        if s.armed.is_empty() {
            return;
        }
        self.lapse(&mut s, why);
    }

    /// Whether client `client` may move the arm now.
    #[must_use]
    pub fn allows(&self, client: u64) -> bool {
        lock(&self.inner).armed.iter().any(|(c, _)| *c == client)
    }

    /// Whether network control is armed.
    #[must_use]
    pub fn armed(&self) -> bool {
        !lock(&self.inner).armed.is_empty()
    }

    /// The peers connected now (from the server): takes up an arming the operator asked for,
    /// and lapses when an armed peer has gone or the supervisor latched a fault since arming.
    pub fn refresh(&self, peers: &[(u64, SocketAddr)]) {
        let (faults, supervisor) = {
            let v = lock(&self.view);
            (v.faults.len(), v.supervisor.clone())
        };
        let mut s = lock(&self.inner);
        let stopped = supervisor == "fault" || supervisor == "estop";
        if std::mem::take(&mut s.asked) {
            let line = if peers.is_empty() {
                "network control not armed: no 3D Slicer is connected".to_string()
            } else if stopped {
                format!("network control not armed: the supervisor is in {supervisor}")
            } else {
                s.armed = peers.to_vec();
                s.faults_at_arming = faults;
                format!("network control ARMED at the console for {}: 3D Slicer may move the arm", addresses(peers))
            };
            self.changed(&mut s, line);
        }
        if !s.armed.is_empty() {
            let gone: Vec<(u64, SocketAddr)> =
                s.armed.iter().filter(|a| !peers.iter().any(|p| p.0 == a.0)).copied().collect();
            let why = if !gone.is_empty() {
                Some(format!("{} disconnected", addresses(&gone)))
            } else if faults > s.faults_at_arming || stopped {
                Some(format!("the supervisor is in {supervisor}"))
            } else {
                None
            };
            if let Some(why) = why {
                self.lapse(&mut s, &why);
            }
        }
        if s.peers != peers {
            s.peers = peers.to_vec();
            self.show(&s);
        }
    }

    /// Something to show on the console and write to the procedure log (a command refused).
    pub fn note(&self, line: String) {
        self.say(&line);
        lock(&self.inner).notices.push(line);
    }

    /// The lines for the procedure log since the last call.
    #[must_use]
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.inner).notices)
    }

    /// Disarms, saying why, on the console and in the log.
    fn lapse(&self, s: &mut State, why: &str) {
        s.armed.clear();
        self.changed(s, format!("network control lapsed ({why}): 3D Slicer can no longer move the arm"));
    }

    fn changed(&self, s: &mut State, line: String) {
        self.say(&line);
        s.notices.push(line);
        self.show(s);
    }

    fn say(&self, line: &str) {
        let mut v = lock(&self.view);
        let t = v.t_s;
        v.say(t, line);
    }

    fn show(&self, s: &State) {
        let text = match (s.armed.is_empty(), s.peers.is_empty()) {
            (false, _) => format!("ARMED for {}", addresses(&s.armed)),
            (true, true) => "not armed, no peer connected".to_string(),
            (true, false) => format!("not armed ({} connected; w arms)", addresses(&s.peers)),
        };
        lock(&self.view).network = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u64) -> (u64, SocketAddr) {
        (n, SocketAddr::from(([127, 0, 0, 1], 40000 + u16::try_from(n).unwrap_or(0))))
    }

    fn control() -> (NetworkControl, Arc<Mutex<View>>) {
        let view = Arc::new(Mutex::new(View::new(None)));
        (NetworkControl::new(Arc::clone(&view)), view)
    }

    #[test]
    fn arming_takes_the_peers_connected_then_and_lapses_when_one_disconnects() {
        let (nc, view) = control();
        assert_eq!(lock(&view).network.as_deref(), Some("not armed, no peer connected"));
        // Asked with nobody connected: not armed, said why.
        nc.toggle();
        nc.refresh(&[]);
        assert!(!nc.armed());
        assert_eq!(nc.take_notices(), vec!["network control not armed: no 3D Slicer is connected".to_string()]);
        nc.refresh(&[peer(1)]);
        assert!(lock(&view).network.as_deref().is_some_and(|t| t.contains("w arms")));
        nc.toggle();
        nc.refresh(&[peer(1)]);
        assert!(nc.allows(1));
        assert!(lock(&view).network.as_deref().is_some_and(|t| t.starts_with("ARMED for 127.0.0.1:40001")));
        // A peer connecting later is not armed.
        nc.refresh(&[peer(1), peer(2)]);
        assert!(nc.allows(1) && !nc.allows(2));
        // The armed peer goes: lapsed, and a reconnection (a new client) is not armed.
        nc.refresh(&[peer(2)]);
        assert!(!nc.armed() && !nc.allows(1));
        nc.refresh(&[peer(2), peer(3)]);
        assert!(!nc.allows(3));
        let notes = nc.take_notices();
        assert!(notes[0].contains("ARMED"), "{notes:?}");
        assert!(notes[1].contains("lapsed (127.0.0.1:40001 disconnected)"), "{notes:?}");
        assert!(lock(&view).log.iter().any(|(_, l)| l.contains("lapsed")));
    }

    #[test]
    fn a_fault_a_stop_or_the_key_again_disarms() {
        let (nc, view) = control();
        let arm = |nc: &NetworkControl| {
            nc.toggle();
            nc.refresh(&[peer(1)]);
            assert!(nc.allows(1));
        };
        arm(&nc);
        lock(&view).faults.push((1.0, "HAZ-4".into(), "following error".into()));
        nc.refresh(&[peer(1)]);
        assert!(!nc.armed());
        // Not armable while the supervisor is latched.
        lock(&view).supervisor = "fault".into();
        nc.toggle();
        nc.refresh(&[peer(1)]);
        assert!(!nc.armed());
        lock(&view).supervisor = "holding".into();
        arm(&nc);
        nc.disarm("STOP from 3D Slicer");
        assert!(!nc.armed());
        arm(&nc);
        nc.toggle();
        assert!(!nc.armed());
        let notes = nc.take_notices();
        assert!(notes.iter().any(|n| n.contains("the supervisor is in fault")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("STOP from 3D Slicer")), "{notes:?}");
        assert!(notes.last().is_some_and(|n| n.contains("disarmed at the console")), "{notes:?}");
    }
}
