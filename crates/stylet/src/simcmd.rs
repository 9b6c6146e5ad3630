//! `stylet sim controller`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use stylet_safety::SafetyConfig;
use stylet_sim::pty::{serve, Pty};
use stylet_sim::{Controller, FaultSpec, SimConfig, WireMonitor};

/// Options of `stylet sim controller`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config folder (robot/robot.toml, safety.toml, sim.toml).
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// Inject a fault (repeatable), e.g. `drop=0.05`, `stuck=2@1.5`, `estop@3`: see docs/sim.md.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Stop when standard input closes (for test harnesses).
    #[arg(long)]
    stop_on_eof: bool,
    /// Print JSON lines: the device first, the wire monitor's report at exit.
    #[arg(long)]
    json: bool,
}

/// Builds the controller model from a config folder (also used by `stylet bench loop`).
pub(crate) fn controller_from(config: &std::path::Path, faults: &[String]) -> anyhow::Result<Controller> {
    let safety = SafetyConfig::load_dir(config)?;
    let mut sim = SimConfig::load(&config.join("sim.toml"))?;
    for f in faults {
        sim.faults.push(FaultSpec::parse(f)?);
    }
    let monitor = WireMonitor::new(&safety.robot, safety.in_tissue_depth_mm, safety.max_depth_mm);
    Ok(Controller::new(sim, safety.robot, monitor))
}

/// A simulated controller running in this process on its own pty (for `--sim` and benches).
pub(crate) struct InProcessSim {
    /// The pty device path.
    pub(crate) path: String,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<stylet_sim::MonitorReport>,
}

impl InProcessSim {
    pub(crate) fn start(config: &std::path::Path, faults: &[String]) -> anyhow::Result<Self> {
        let mut controller = controller_from(config, faults)?;
        let mut pty = Pty::open().context("starting the simulated controller")?;
        let path = pty.path.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("stylet-sim".into()).spawn(move || {
            serve(&mut pty, &mut controller, &flag);
            controller.monitor().report().clone()
        })?;
        Ok(InProcessSim { path, stop, thread })
    }

    /// Stops the controller and returns its wire monitor's report.
    pub(crate) fn stop(self) -> anyhow::Result<stylet_sim::MonitorReport> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().map_err(|_| anyhow::anyhow!("simulated controller thread panicked"))
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut controller = controller_from(&args.config, &args.faults)?;
    let mut pty = Pty::open().context("starting the simulated controller")?;
    let stop = Arc::new(AtomicBool::new(false));
    if args.json {
        say!("{}", json!({ "device": pty.path }));
    } else {
        say!("simulated controller on {}", pty.path);
        say!("connect with: stylet bringup --port {}", pty.path);
    }
    std::io::stdout().flush().ok();
    if args.stop_on_eof {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            stop.store(true, Ordering::SeqCst);
        });
    }
    if let Some(s) = args.duration_s {
        let stop = Arc::clone(&stop);
        let d = Duration::from_secs_f64(s.clamp(0.0, 1e7));
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::SeqCst);
        });
    }
    serve(&mut pty, &mut controller, &stop);
    let report = controller.monitor().report();
    if args.json {
        say!("{}", json!({ "monitor": report, "nacks": controller.nacks() }));
    } else {
        say!(
            "wire monitor: {} setpoints, {} outside the envelope{}",
            report.setpoints,
            report.violations,
            report.first.as_deref().map(|f| format!(" (first: {f})")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
