//! The operator console in the terminal (ratatui): what the procedure is doing, the decision
//! due, and the keys. It runs on its own thread and draws from the shared [`View`] ten times a
//! second, so it stays responsive whatever the driver is doing (loading a CT, planning).
//!
//! Keys are read as bytes from the raw-mode terminal by a thread of their own, not by
//! crossterm's event reader: on a terminal that has gone (its window closed, the tmux session
//! killed) that reader loops on end-of-file without returning, so the console would neither
//! notice nor let the procedure end. Here the end of input is the operator leaving.

use std::io::Read as _;
use std::sync::mpsc;
use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use ratatui::{DefaultTerminal, Frame};
use stylet_procedure::ports::Prompt;
use stylet_suite::{Key, Keys, View};

/// The keys, as the console's footer shows them.
pub(crate) const HELP: &str =
    "y yes  n no  1-9 plan  p pause  r resume  a abort  x retract  e ablation ended  w Slicer arm/disarm  SPACE e-stop  q quit (when ended)";

/// The terminal, in raw mode on the alternate screen until dropped.
pub(crate) struct Console {
    terminal: DefaultTerminal,
}

impl Console {
    /// Takes over the terminal.
    ///
    /// # Errors
    /// When stdin/stdout is not a terminal.
    pub(crate) fn open() -> std::io::Result<Self> {
        Ok(Console { terminal: ratatui::try_init()? })
    }

    /// Draws and reads keys until the procedure has ended and the operator pressed q, or until it
    /// has ended after the operator left: an ending signal (`end`), the terminal's input ending
    /// or a terminal error is the operator leaving ([`Keys::leave`]).
    ///
    /// # Errors
    /// A terminal I/O error (the procedure then stops without its console: the supervisor's
    /// heartbeat comes from the driver, not from here).
    pub(crate) fn run(mut self, keys: &Keys, end: &crate::signals::EndRequest) -> std::io::Result<()> {
        let view = keys.view();
        let input = key_bytes();
        let mut left = false;
        let leave = |why: &str, left: &mut bool| {
            if !*left {
                *left = true;
                keys.leave(why);
            }
        };
        let result = (|| loop {
            let snapshot = view.lock().map(|v| v.clone()).unwrap_or_else(|p| p.into_inner().clone());
            if left && snapshot.ended.is_some() {
                return Ok(());
            }
            if end.asked() {
                leave("asked to end by a signal", &mut left);
            }
            self.terminal.draw(|f| draw(f, &snapshot))?;
            let byte = match input.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(b)) => b,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Ok(Err(e)) => {
                    leave(&format!("the console's input failed: {e}"), &mut left);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    leave("the console's input ended", &mut left);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if byte == b'q' && snapshot.ended.is_some() {
                return Ok(());
            }
            // Ctrl-C in raw mode is the byte 0x03, not a signal: an abort.
            let key = if byte == 0x03 { Some(Key::Abort) } else { key_for(char::from(byte)) };
            match key {
                Some(key) => {
                    if let Err(e) = keys.press(key) {
                        keys.note(&format!("{key:?}: {e}"));
                    }
                }
                None if byte == b'q' => {
                    keys.note(
                        "q leaves once the procedure has ended (a aborts it; the arm then holds until you decide)",
                    );
                }
                // The rest of an escape sequence (arrow and function keys) says nothing more.
                None if byte == 0x1b || !byte.is_ascii_graphic() => {}
                None => keys.note(&format!("the key {} does nothing here ({HELP})", char::from(byte))),
            }
        })();
        if let Err(e) = &result {
            leave(&format!("the console failed: {e}"), &mut left);
        }
        result
    }
}

/// The terminal's input, byte by byte, from a thread of its own (never joined: it may sit in a
/// read until the process ends). The channel closes at the end of input; a read error is sent.
fn key_bytes() -> mpsc::Receiver<std::io::Result<u8>> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new().name("stylet-console-keys".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if buf[..n].iter().any(|b| tx.send(Ok(*b)).is_err()) {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

impl Drop for Console {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The key's meaning.
pub(crate) fn key_for(c: char) -> Option<Key> {
    Some(match c {
        'y' => Key::Yes,
        'n' => Key::No,
        c @ '1'..='9' => Key::Choose(usize::from(c as u8 - b'1')),
        'p' => Key::Pause,
        'r' => Key::Resume,
        'a' => Key::Abort,
        'x' => Key::Retract,
        'e' => Key::EndAblation,
        ' ' => Key::EStop,
        'w' => Key::Network,
        _ => return None,
    })
}

/// The question and its keys.
pub(crate) fn prompt_text(p: &Prompt) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match p {
        Prompt::Start => lines.push(Line::from("Start the procedure (the planning CT is loaded)?  y / a")),
        Prompt::ChoosePlan { options } => {
            lines.push(Line::from("Choose a plan (its number), or a to abort:"));
            for (i, o) in options.iter().enumerate().take(9) {
                lines.push(Line::from(format!(
                    "  {}  plan {}: {} position(s), margin {:.1} mm{}",
                    i + 1,
                    o.index,
                    o.positions,
                    o.margin_mm,
                    if o.high_risk { "  HIGH RISK (OAR-2)" } else { "" }
                )));
            }
        }
        Prompt::OverrideHighRisk { index, rules } => {
            lines.push(Line::from(format!("Plan {index} is high-risk (OAR-2): {}", rules.join("; "))));
            lines.push(Line::from("Execute it anyway?  y / n / a"));
        }
        Prompt::StartAblation { setting, position } => {
            lines.push(Line::from(format!("Position {} of {}: the needle is at the target.", position.0, position.1)));
            lines.push(Line::from(format!(
                "Start the generator at {setting}, then press y (n / a). Press e when it has stopped."
            )));
        }
        Prompt::AfterFault { fault } => {
            lines.push(Line::from(format!("The supervisor latched {fault}; the arm holds.")));
            lines.push(Line::from("Reset and resume?  y / a"));
        }
        Prompt::RetractNeedle { why } => {
            lines.push(Line::from(format!("Stopped ({why}) with the needle in tissue; the arm holds.")));
            lines.push(Line::from("Withdraw the needle now?  y (withdraw) / n (keep holding)"));
        }
        Prompt::Registration => {
            lines.push(Line::from("Waiting for the calibration (robot to image) from 3D Slicer (CLB_).  a aborts"));
        }
        Prompt::CheckpointsExhausted { taken } => {
            lines.push(Line::from(format!("INS-3: {taken} checkpoint CTs taken, the limit. Go on?  y / a")));
        }
    }
    lines
}

/// One frame of the console.
pub(crate) fn draw(f: &mut Frame<'_>, v: &View) {
    let status_rows = if v.network.is_some() { 4 } else { 3 };
    let [status, gate, depth, prompt, faults, log, help] = Layout::vertical([
        Constraint::Length(status_rows),
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(7),
        Constraint::Length(4),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let ended = v.ended.as_ref().map(|e| format!("   ENDED: {e} (q to leave)")).unwrap_or_default();
    let line = Line::from(vec![
        Span::raw(format!("t {:7.1} s   phase ", v.t_s)),
        Span::styled(v.phase.clone(), bold),
        Span::raw("   supervisor "),
        Span::styled(v.supervisor.clone(), bold),
        Span::raw(format!(
            "   drives {}   pedal {}",
            if v.drives_on { "ON" } else { "off" },
            if v.pedal { "PRESSED" } else { "up" }
        )),
        Span::styled(ended, bold.fg(Color::Yellow)),
    ]);
    let network = v.network.as_ref().map(|n| {
        let style = if n.starts_with("ARMED") { bold.fg(Color::Magenta) } else { Style::new() };
        Line::from(vec![Span::raw("3D Slicer: "), Span::styled(n.clone(), style)])
    });
    let status_lines: Vec<Line<'_>> = std::iter::once(line).chain(network).collect();
    f.render_widget(Paragraph::new(status_lines).block(Block::bordered().title(" Stylet procedure ")), status);
    let gate_line = match v.gate {
        Some(g) => Line::from(vec![
            Span::raw(format!("surrogate {:+6.2} mm   predicted {:+6.2} mm   gate ", g.signal_mm, g.predicted_mm)),
            if g.open {
                Span::styled("OPEN", bold.fg(Color::Green))
            } else {
                Span::styled("closed", bold.fg(Color::Red))
            },
        ]),
        None => Line::from("no respiratory samples yet"),
    };
    f.render_widget(Paragraph::new(gate_line).block(Block::bordered().title(" respiration (RESP-2) ")), gate);
    draw_depth(f, v, depth);
    let (title, text, style) = match &v.prompt {
        Some((n, p)) => (format!(" decision {n} "), prompt_text(p), Style::new().fg(Color::Yellow)),
        None => (" decision ".into(), vec![Line::from("none due")], Style::new()),
    };
    f.render_widget(
        Paragraph::new(text).style(style).wrap(Wrap { trim: false }).block(Block::bordered().title(title)),
        prompt,
    );
    let fault_lines: Vec<Line<'_>> = if v.faults.is_empty() {
        vec![Line::from("none")]
    } else {
        v.faults
            .iter()
            .rev()
            .take(2)
            .map(|(t, code, what)| Line::styled(format!("[{t:7.1} s] {code}: {what}"), Style::new().fg(Color::Red)))
            .collect()
    };
    f.render_widget(Paragraph::new(fault_lines).block(Block::bordered().title(" faults ")), faults);
    let rows = usize::from(log.height.saturating_sub(2));
    let lines: Vec<Line<'_>> = v
        .log
        .iter()
        .skip(v.log.len().saturating_sub(rows))
        .map(|(t, l)| Line::from(format!("[{t:7.1} s] {l}")))
        .collect();
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title(" log ")), log);
    f.render_widget(Paragraph::new(HELP), help);
}

fn draw_depth(f: &mut Frame<'_>, v: &View, area: Rect) {
    let block = Block::bordered().title(" insertion depth ");
    match (v.inserted_mm, v.planned_mm) {
        (Some(d), Some(p)) if p > 0.0 => {
            let g = Gauge::default()
                .block(block)
                .ratio((d / p).clamp(0.0, 1.0))
                .label(format!("{d:.1} of {p:.1} mm"))
                .gauge_style(Style::new().fg(Color::Cyan));
            f.render_widget(g, area);
        }
        (d, _) => {
            let text = d.map_or("-".to_string(), |d| format!("{d:.1} mm (no plan yet)"));
            f.render_widget(Paragraph::new(text).block(block), area);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use stylet_procedure::ports::{Event as Ev, PlanOption};

    fn screen(v: &View) -> String {
        let mut t = Terminal::new(TestBackend::new(120, 36)).unwrap();
        t.draw(|f| draw(f, v)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn the_console_shows_the_phase_gate_depth_prompt_and_faults() {
        let mut v = View::new(Some((2, 20.0)));
        v.apply(1.0, &Ev::Gate { signal_mm: 1.25, predicted_mm: 0.5, open: true });
        v.apply(2.0, &Ev::Fault { code: "HAZ-11", detail: "control cycle started 11 ms late" });
        v.planned_mm = Some(80.0);
        v.inserted_mm = Some(20.0);
        let opt = PlanOption {
            index: 3,
            positions: 1,
            margin_mm: 6.5,
            high_risk: true,
            entry: stylet_core::frame::Point::new(0.0, 0.0, 0.0),
            tip: stylet_core::frame::Point::new(0.0, 0.0, 80.0),
        };
        v.prompt = Some((4, Prompt::ChoosePlan { options: vec![opt] }));
        let s = screen(&v);
        for want in [
            "gate OPEN",
            "+1.25 mm",
            "20.0 of 80.0 mm",
            "decision 4",
            "plan 3: 1 position(s), margin 6.5 mm  HIGH RISK",
            "HAZ-11: control cycle",
            "SPACE e-stop",
        ] {
            assert!(s.contains(want), "{want:?} not on the screen:\n{s}");
        }
        v.ended = Some("Done".into());
        assert!(screen(&v).contains("ENDED: Done (q to leave)"));
        assert!(!screen(&v).contains("3D Slicer"));
        v.network = Some("ARMED for 10.1.2.3:50123".into());
        assert!(screen(&v).contains("3D Slicer: ARMED for 10.1.2.3:50123"));
    }

    #[test]
    fn keys() {
        assert_eq!(key_for('3'), Some(Key::Choose(2)));
        assert_eq!(key_for(' '), Some(Key::EStop));
        assert_eq!(key_for('w'), Some(Key::Network));
        assert_eq!(key_for('z'), None);
    }
}
