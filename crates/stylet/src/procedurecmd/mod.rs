//! `stylet procedure`: the procedure on the CT suite's devices, as `config/site.toml` names
//! them (docs/site.md): the supervisor's runner over the motor controller's serial link, the
//! respiratory sensor on its serial port, CTs from the scanner (the DICOM node or a watched
//! folder), the ablation device run by hand, and the operator at the terminal console.
//!
//! Composition only: the devices are `stylet_suite`'s, the procedure is
//! `stylet_procedure::Driver`, the console's model is `stylet_suite::console`; this file starts
//! them in order (a device that cannot be opened is an error before anything moves) and shuts
//! them down in order (drives off, the runner stopped, the procedure log closed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;
use stylet_procedure::runner_motion::RunnerMotion;
use stylet_procedure::{Driver, Outcome};
use stylet_recorder::{FsyncPolicy, Recorder};
use stylet_safety::{Command, SafetyConfig};
use stylet_suite::ct::unix_now;
use stylet_suite::{
    AblationEnd, Arrivals, ConsoleOperator, FolderWatch, ManualAblation, NetworkControl, ScannerCt, SensorRespiration,
    Site, SuiteOperator, SuiteWorld, View, ViewSink, WallClock,
};
use stylet_telemetry::{Sink, Telemetry};

mod console;

/// Options of `stylet procedure`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProcedureArgs {
    /// The site config: devices and planning inputs [default: CONFIG/site.toml].
    #[arg(long)]
    site: Option<PathBuf>,
    /// The config folder (robot, safety, clinical rules, devices, respiration).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Output folder for the procedure log and telemetry [default: a new folder under the
    /// system's temporary folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as JSON when the procedure has ended.
    #[arg(long)]
    json: bool,
    /// Serve 3D Slicer over OpenIGTLink as the site's [igtl] says (default: this host, port
    /// 18944): it sees the scene (CTs, plan, path, zones, needle) and may answer; it moves the
    /// arm only while network control is armed at the console (key w).
    #[arg(long)]
    igtl: bool,
}

pub(crate) fn run(args: &ProcedureArgs) -> anyhow::Result<ExitCode> {
    let t_start = Instant::now();
    // SIGTERM or SIGHUP (the terminal closed) is the operator leaving: the procedure stops, the
    // drives go off under the supervisor and the host tuning is put back (crate::signals).
    let end = crate::signals::EndRequest::watch().context("watching for SIGTERM, SIGHUP and SIGINT")?;
    let site_path = args.site.clone().unwrap_or_else(|| args.config.join("site.toml"));
    let site = Site::load(&site_path)?;
    let mut dcfg = crate::demo::driver_config(&args.config)?;
    dcfg.zone =
        stylet_planning::load_zone(&args.config.join("devices.toml"), &site.ablation.device, &site.ablation.setting)?;
    dcfg.ct_timeout_s = site.ct.timeout_s;
    // At a console the arm holds until the operator decides.
    dcfg.hold_limit_s = None;
    dcfg.registration_from_operator = args.igtl && site.igtl.calibration_from_slicer;
    let safety = SafetyConfig::load_dir(&args.config)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => std::env::temp_dir().join(format!("stylet-procedure-{}", unix_now() as u64)),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The console owns the terminal: log lines go beside the procedure log.
    crate::logs::to_file(&out.join("stylet.log"))
        .with_context(|| format!("opening {}", out.join("stylet.log").display()))?;

    // The planning inputs first: nothing is opened for a plan that cannot be made.
    let clock = WallClock::start();
    let mut planning = stylet_suite::planning::load(&site, &args.config, 0.0)?;
    planning.inputs.ct.acquired_s = planning_acquired_s(&planning.report.identity, site.ct.scanner_utc_offset_min);
    let ct = scanner_ct(&site, &planning, clock)?;
    let respiration = SensorRespiration::open(&site.respiration, clock)?;
    // The console before the arm: without a terminal nothing starts.
    let terminal = console::Console::open().context("the operator console needs a terminal")?;

    // The log and telemetry.
    let log_path = out.join("procedure.log");
    let title = format!("procedure {}", site_path.display());
    let rec = Recorder::create(&log_path, &title, 0, FsyncPolicy::default(), 1 << 16)?;
    // A build without the `telemetry` feature writes no recording.
    let rrd = stylet_telemetry::BUILT.then(|| out.join("telemetry.rrd"));
    let telemetry = match &rrd {
        Some(rrd) => Telemetry::start("stylet_procedure", &Sink::File(rrd.clone()), 1 << 16)?,
        None => Telemetry::off(),
    };
    let needle_mm = dcfg.ik.standoff_mm + 200.0;
    let mut fan = crate::demo::sink::Fanout::new(
        rec,
        telemetry.logger(),
        None,
        indicatif::ProgressBar::hidden(),
        true,
        dcfg.arm.clone(),
        needle_mm,
    );

    // 3D Slicer, before the arm: a port that cannot be bound is an error before anything moves.
    let slicer = if args.igtl {
        let setup = crate::demo::SlicerSetup {
            addr: std::net::SocketAddr::new(site.igtl.bind, site.igtl.port),
            allow_remote: !site.igtl.bind.is_loopback(),
            allowed_peers: site.igtl.allowed_peers.clone(),
            peer_calibration: site.igtl.calibration_from_slicer,
        };
        Some(crate::demo::serve_slicer(&setup, &mut fan, "a front end (it moves the arm once armed at the console)")?)
    } else {
        None
    };

    // The arm: the supervisor's runner over the controller's link, scheduled as configured.
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::Current)?;
    let crate::realtime::ControlLoop { h, mut scheduling, stats: link_stats, .. } = crate::realtime::start(
        &rt,
        &args.config,
        &safety,
        Some((site.controller.port.as_str(), site.controller.baud)),
        &[],
    )?;
    fan.event_note(&format!(
        "site {}: controller {}, respiration {}",
        site_path.display(),
        site.controller.port,
        site.respiration.port
    ));

    // The console.
    let insertion = safety.robot.insertion_joint().map(|j| (j, dcfg.ik.standoff_mm));
    let view = Arc::new(Mutex::new(View::new(insertion)));
    let ablation_end = AblationEnd::default();
    let button = h.estop_button();
    let estop = Arc::new(move || button.press().map_err(|e| e.to_string()));
    let (console, keys) = ConsoleOperator::new(Arc::clone(&view), ablation_end.clone(), estop);
    let (slicer, keys) = match slicer {
        Some(s) => {
            let network = NetworkControl::new(Arc::clone(&view));
            (Some(s.armed_by(network.clone())), keys.with_network(network))
        }
        None => (None, keys),
    };
    let operator = SuiteOperator { console, slicer };
    let mut world = SuiteWorld {
        motion: RunnerMotion::new(h, safety.clone()),
        ct,
        respiration,
        operator,
        ablation: ManualAblation::new(clock, ablation_end),
        clock,
    };
    let driver_schedule = rt.schedule(stylet_rt::Role::Driver);
    let report = std::thread::scope(|s| {
        let keys = &keys;
        let ui = s.spawn(|| terminal.run(keys, &end));
        let driver = std::thread::Builder::new().name("stylet-driver".into()).spawn_scoped(s, || {
            scheduling.set_driver(driver_schedule.apply_to_current_thread());
            fan.event_note(&scheduling.line());
            let mut sink = ViewSink { inner: &mut fan, view: Arc::clone(&view) };
            let report = Driver::new(&mut world, &mut sink, dcfg.clone()).run();
            drives_off(&mut world.motion);
            report
        });
        let report = driver.map(|d| d.join());
        if let Ok(mut guard) = view.lock() {
            guard.ended = Some(match &report {
                Ok(Ok(r)) => format!("{:?}", r.outcome),
                _ => "the driver failed".into(),
            });
        }
        let ui = ui.join();
        (report, ui)
    });
    let (report, ui) = report;
    let report =
        report.context("starting the driver's thread")?.map_err(|_| anyhow::anyhow!("the driver's thread panicked"))?;
    let igtl = world.operator.slicer.take().map(|s| crate::demo::slicer_ended(s, &report));
    let run = world.motion.handle.shutdown().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut timing = crate::realtime::final_timing(&run, None, &fan.rec, clock.now_s());
    timing["link_errors"] = json!(run.snapshot.link_errors_total);
    let stats = fan.rec.close()?;
    drop(fan.tel);
    let tstats = telemetry.finish()?;
    // The results as DICOM on the planning CT; a failure to write them is said, and the summary
    // and the log stay.
    let ct = &planning.inputs.ct.volume;
    let dicom =
        crate::dicomresults::write(&out, &report, ct, &planning.report.meta(), &planning.report.instances, &dcfg.rules)
            .unwrap_or_else(|e| {
                eprintln!("{e:#}");
                json!({ "error": format!("{e:#}") })
            });
    let summary = json!({
        "outcome": format!("{:?}", report.outcome),
        "dicom": dicom,
        "driver": report,
        "site": site_path,
        "procedure_log": log_path,
        "log_records": stats.written,
        "telemetry": rrd,
        "telemetry_items": tstats.logged,
        "supervisor_events_dropped": run.events_dropped,
        "timing": timing,
        "link": crate::realtime::link_counts(&link_stats),
        "realtime": scheduling.json(),
        "seconds": t_start.elapsed().as_secs_f64(),
        "igtl": igtl,
    });
    if let Err(e) =
        ui.map_err(|_| anyhow::anyhow!("the console's thread panicked")).and_then(|r| r.map_err(anyhow::Error::from))
    {
        eprintln!("console: {e:#}");
    }
    let summary_path = out.join("summary.json");
    std::fs::write(&summary_path, format!("{summary:#}\n"))
        .with_context(|| format!("writing {}", summary_path.display()))?;
    if args.json {
        say!("{summary}");
    } else {
        say!("procedure ended: {}", summary["outcome"].as_str().unwrap_or("?"));
        say!("procedure log: {} ({} records; `stylet replay` reads it)", log_path.display(), stats.written);
        if let Some(rrd) = &rrd {
            say!("telemetry: {} ({} items)", rrd.display(), tstats.logged);
        }
        let dicom = &summary["dicom"];
        if let Some(sr) = dicom["sr"].as_str() {
            let seg = dicom["seg"].as_str().map(|s| format!("{s} (SEG), ")).unwrap_or_default();
            say!("results as DICOM: {seg}{sr} (SR), in the planning CT's study");
        }
    }
    Ok(match report.outcome {
        Outcome::Done => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    })
}

/// Where the checkpoint CTs come from: the site's DICOM node or its watched folder.
fn scanner_ct(site: &Site, planning: &stylet_suite::planning::Planning, clock: WallClock) -> anyhow::Result<ScannerCt> {
    let arrivals = match site.ct.source {
        stylet_suite::site::CtSourceKind::Dicom => {
            let node = site.ct.dicom.clone().context("the site has no [ct.dicom]")?;
            Arrivals::Node(stylet_dicom_node::DicomNode::start(node)?)
        }
        stylet_suite::site::CtSourceKind::Folder => {
            let folder = site.ct.folder.as_ref().context("the site has no [ct.folder]")?;
            Arrivals::Folder(FolderWatch::start(folder).map_err(anyhow::Error::msg)?)
        }
    };
    Ok(ScannerCt::new(
        planning.inputs.clone(),
        &planning.report,
        arrivals,
        clock.epoch(),
        site.ct.scanner_utc_offset_min,
    ))
}

/// Whatever the end, the drives go off under the supervisor before it stops: disabled where the
/// supervisor allows it (the needle out), else by the software e-stop (drives off, brakes on,
/// latched), never left to the controller's watchdog.
fn drives_off<A>(motion: &mut RunnerMotion<A>) {
    use stylet_procedure::ports::Motion as _;
    if motion.command(Command::DisableDrives).is_err() && motion.snapshot().is_ok_and(|s| s.drives_on) {
        motion.estop();
        let until = Instant::now() + std::time::Duration::from_secs(2);
        while Instant::now() < until && motion.snapshot().is_ok_and(|s| s.drives_on) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// When the planning CT was taken, on the procedure clock (negative: before it started), from
/// its AcquisitionDateTime; an hour ago when it has none. Older than the respiratory record
/// either way: the reference level is the tracked end-exhale baseline (RESP-3).
fn planning_acquired_s(identity: &stylet_imaging::SeriesIdentity, utc_offset_min: i32) -> f64 {
    let taken =
        identity.acquisition_datetime.as_deref().and_then(|dt| stylet_suite::ct::unix_seconds(dt, utc_offset_min));
    taken.map_or(-3600.0, |t| (t - unix_now()).min(-1.0))
}
