//! The operator console in the terminal (ratatui): what the procedure is doing, the decision
//! due, and the keys. It runs on its own thread and draws from the shared [`View`] ten times a
//! second, so it stays responsive whatever the driver is doing (loading a CT, planning).

use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use ratatui::{DefaultTerminal, Frame};
use stylet_procedure::ports::Prompt;
use stylet_suite::{Key, Keys, View};

/// The keys, as the console's footer shows them.
pub(crate) const HELP: &str =
    "y yes  n no  1-9 plan  p pause  r resume  a abort  x retract  e ablation ended  SPACE e-stop  q quit (when ended)";

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

    /// Draws and reads keys until the procedure has ended and the operator pressed q.
    ///
    /// # Errors
    /// A terminal I/O error (the procedure goes on without its console: the supervisor's
    /// heartbeat comes from the driver, not from here; an abort is then pressed for it).
    pub(crate) fn run(mut self, keys: &Keys) -> std::io::Result<()> {
        let view = keys.view();
        let result = (|| loop {
            let snapshot = view.lock().map(|v| v.clone()).unwrap_or_else(|p| p.into_inner().clone());
            self.terminal.draw(|f| draw(f, &snapshot))?;
            if !event::poll(Duration::from_millis(100))? {
                continue;
            }
            let Event::Key(k) = event::read()? else { continue };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            if k.code == KeyCode::Char('q') && snapshot.ended.is_some() {
                return Ok(());
            }
            let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            let key = if ctrl_c { Some(Key::Abort) } else { key_for(k.code) };
            match key {
                Some(key) => {
                    if let Err(e) = keys.press(key) {
                        keys.note(&format!("{key:?}: {e}"));
                    }
                }
                None if k.code == KeyCode::Char('q') => {
                    keys.note(
                        "q leaves once the procedure has ended (a aborts it; the arm then holds until you decide)",
                    );
                }
                None => keys.note(&format!("the key {} does nothing here ({HELP})", k.code)),
            }
        })();
        if result.is_err() {
            let _ = keys.press(Key::Abort);
        }
        result
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The key's meaning.
pub(crate) fn key_for(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Char('y') => Key::Yes,
        KeyCode::Char('n') => Key::No,
        KeyCode::Char(c @ '1'..='9') => Key::Choose(usize::from(c as u8 - b'1')),
        KeyCode::Char('p') => Key::Pause,
        KeyCode::Char('r') => Key::Resume,
        KeyCode::Char('a') => Key::Abort,
        KeyCode::Char('x') => Key::Retract,
        KeyCode::Char('e') => Key::EndAblation,
        KeyCode::Char(' ') => Key::EStop,
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
        Prompt::CheckpointsExhausted { taken } => {
            lines.push(Line::from(format!("INS-3: {taken} checkpoint CTs taken, the limit. Go on?  y / a")));
        }
    }
    lines
}

/// One frame of the console.
pub(crate) fn draw(f: &mut Frame<'_>, v: &View) {
    let [status, gate, depth, prompt, faults, log, help] = Layout::vertical([
        Constraint::Length(3),
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
    f.render_widget(Paragraph::new(line).block(Block::bordered().title(" Stylet procedure ")), status);
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
        let opt = PlanOption { index: 3, positions: 1, margin_mm: 6.5, high_risk: true };
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
    }

    #[test]
    fn keys() {
        assert_eq!(key_for(KeyCode::Char('3')), Some(Key::Choose(2)));
        assert_eq!(key_for(KeyCode::Char(' ')), Some(Key::EStop));
        assert_eq!(key_for(KeyCode::Char('z')), None);
    }
}
