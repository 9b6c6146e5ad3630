//! `stylet bench loop`: cycle lateness of the real supervisor loop over a real pty.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use stylet_safety::runner::{self, Operator};
use stylet_safety::{Command, MotionState, SafetyConfig};

/// Options of `stylet bench loop`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How long to hold the arm under supervision.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::CurrentAndFuture)?;
    let cfg = SafetyConfig::load_dir(&args.config)?;
    let crate::realtime::ControlLoop { h, sim, scheduling, .. } =
        crate::realtime::start(&rt, &args.config, &cfg, None, &[])?;
    let sim = sim.context("the simulated controller")?;
    let beat = |h: &runner::RunnerHandle<stylet_link::Link>| {
        let _ = h.send(Operator::Heartbeat);
    };
    let t0 = Instant::now();
    while h.snapshot().map(|s| s.state) != Some(MotionState::Connected) && t0.elapsed() < Duration::from_secs(2) {
        beat(&h);
        std::thread::sleep(Duration::from_millis(5));
    }
    beat(&h);
    let _ = h.command(Command::StartHoming);
    // SIGTERM, SIGHUP or SIGINT ends the hold early, as its own end does (drives off, the
    // host tuning put back).
    let end = crate::signals::EndRequest::watch().context("watching for SIGTERM, SIGHUP and SIGINT")?;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < args.seconds.max(0.1) && !end.asked() {
        beat(&h);
        std::thread::sleep(Duration::from_millis(20));
    }
    let held_s = t0.elapsed().as_secs_f64();
    let _ = h.command(Command::Complete);
    let _ = h.command(Command::DisableDrives);
    std::thread::sleep(Duration::from_millis(20));
    let report = h.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    let monitor = sim.stop()?.monitor;
    let lat = &report.lateness;
    let us = |d: stylet_core::Nanos| (d.0 as f64 / 1e3 * 10.0).round() / 10.0;
    let out = json!({
        "seconds": args.seconds,
        "held_s": (held_s * 1e3).round() / 1e3,
        "ended_by_signal": end.asked(),
        "rate_hz": 1.0 / cfg.dt(),
        "cycles": lat.cycles(),
        "stalls": report.stalls,
        "late_cycles": report.late_cycles,
        "lateness_us": { "p50": us(lat.quantile(0.5)), "p99": us(lat.quantile(0.99)), "p999": us(lat.quantile(0.999)), "max": us(lat.max()) },
        "fault": report.snapshot.fault.map(|f| f.to_string()),
        "drives_on": report.snapshot.drives_on,
        "realtime": scheduling.json(),
        "steal": crate::realtime::steal_json(&rt, t0, None),
        "wire_monitor": monitor,
    });
    if args.json {
        say!("{out}");
    } else {
        say!(
            "{} cycles at {} Hz: lateness p50 {} us, p99 {} us, p99.9 {} us, max {} us; fault: {}; wire monitor: {} setpoints, {} violations",
            out["cycles"], out["rate_hz"], out["lateness_us"]["p50"], out["lateness_us"]["p99"], out["lateness_us"]["p999"],
            out["lateness_us"]["max"], out["fault"], out["wire_monitor"]["setpoints"], out["wire_monitor"]["violations"]
        );
        say!("{}", scheduling.line());
        if end.asked() {
            say!("ended early by a signal after {held_s:.1} s");
        }
    }
    Ok(ExitCode::SUCCESS)
}
