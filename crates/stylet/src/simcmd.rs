//! `stylet sim controller`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use stylet_core::frame::Robot;
use stylet_safety::SafetyConfig;
use stylet_sim::pty::{serve, serve_with, Pty};
use stylet_sim::{Controller, FaultSpec, SimConfig};

/// Options of `stylet sim controller`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config folder (robot/robot.toml, safety.toml, sim.toml).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
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
    Ok(stylet_sim::lockstep::controller_for(&safety, sim))
}

/// What a simulated controller reports when it stops.
#[derive(Clone, Debug)]
pub(crate) struct SimEnd {
    /// The wire monitor: setpoints outside the envelope.
    pub(crate) monitor: stylet_sim::MonitorReport,
    /// How the controller's end of the serial line served the host.
    pub(crate) line: stylet_sim::pty::LineReport,
}

/// A simulated controller running in this process on its own pty (for `--sim` and benches).
pub(crate) struct InProcessSim {
    /// The pty device path.
    pub(crate) path: String,
    stop: Arc<AtomicBool>,
    /// Faults to inject: the controller's real-time thread only tries the lock (std's channels
    /// can make a receiver spin on a sender preempted mid-write).
    inject: Arc<std::sync::Mutex<Vec<stylet_sim::FaultKind>>>,
    truth: Arc<std::sync::Mutex<Vec<f64>>>,
    drives: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<SimEnd>,
    /// What the controller's thread obtained of the schedule it asked for.
    pub(crate) scheduling: Option<stylet_rt::Obtained>,
}

impl InProcessSim {
    /// Starts the controller on a new pty; its thread first asks for `schedule` (it stands for the
    /// controller's microcontroller, so it gets the real-time treatment the host's loop gets).
    pub(crate) fn start(
        config: &std::path::Path,
        faults: &[String],
        schedule: Option<stylet_rt::ThreadSchedule>,
    ) -> anyhow::Result<Self> {
        let mut controller = controller_from(config, faults)?;
        let mut pty = Pty::open().context("starting the simulated controller")?;
        let path = pty.path.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let inject = Arc::new(std::sync::Mutex::new(Vec::<stylet_sim::FaultKind>::new()));
        let injected = Arc::clone(&inject);
        let truth = Arc::new(std::sync::Mutex::new(controller.positions()));
        let shared = Arc::clone(&truth);
        let drives = Arc::new(AtomicBool::new(false));
        let drives_now = Arc::clone(&drives);
        let (sched_tx, sched_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name("stylet-sim".into()).spawn(move || {
            let _ = sched_tx.send(schedule.map(|s| s.apply_to_current_thread()));
            let line = serve_with(&mut pty, &mut controller, &flag, &mut |c, _| {
                // Injected now: due at once (times count from the first enable).
                if let Ok(mut kinds) = injected.try_lock() {
                    for kind in kinds.drain(..) {
                        c.inject(FaultSpec { kind, at_s: 0.0 });
                    }
                }
                drives_now.store(c.drives(), Ordering::Relaxed);
                if let Ok(mut t) = shared.try_lock() {
                    t.clear();
                    t.extend(c.positions());
                }
            });
            SimEnd { monitor: controller.monitor().report().clone(), line }
        })?;
        let scheduling = sched_rx.recv().ok().flatten();
        Ok(InProcessSim { path, stop, inject, truth, drives, thread, scheduling })
    }

    /// Injects a fault now (it takes effect once the controller has enabled its drives).
    pub(crate) fn inject(&self, kind: stylet_sim::FaultKind) {
        if let Ok(mut kinds) = self.inject.lock() {
            kinds.push(kind);
        }
    }

    /// The arm's true joint positions (ground truth: what the encoders measure without their
    /// noise and offsets).
    pub(crate) fn true_positions(&self) -> Vec<f64> {
        self.truth.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Whether the controller's drives are really on (ground truth, whatever the link says).
    pub(crate) fn drives_on(&self) -> bool {
        self.drives.load(Ordering::Relaxed)
    }

    /// Stops the controller and returns its wire monitor's report and how its line served.
    pub(crate) fn stop(self) -> anyhow::Result<SimEnd> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().map_err(|_| anyhow::anyhow!("simulated controller thread panicked"))
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // This process stands for the controller's microcontroller: its serving thread (this one)
    // gets the real-time treatment the host's control loop gets.
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::CurrentAndFuture)?;
    let obtained = rt.schedule(stylet_rt::Role::Controller).apply_to_current_thread();
    let mut controller = controller_from(&args.config, &args.faults)?;
    let mut pty = Pty::open().context("starting the simulated controller")?;
    let stop = Arc::new(AtomicBool::new(false));
    // SIGTERM, SIGHUP or SIGINT ends it as `--stop-on-eof` does, the host tuning put back.
    crate::signals::EndRequest::watch_into(Arc::clone(&stop)).context("watching for SIGTERM, SIGHUP and SIGINT")?;
    if args.json {
        say!("{}", json!({ "device": pty.path, "realtime": { "controller": obtained, "process": rt.report } }));
    } else {
        say!("simulated controller on {}", pty.path);
        say!("real-time: {obtained}");
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
    let line = serve(&mut pty, &mut controller, &stop);
    let report = controller.monitor().report();
    if args.json {
        say!("{}", json!({ "monitor": report, "nacks": controller.nacks(), "line": line }));
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

/// How the DICOM series is encoded.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum DicomEncoding {
    /// Explicit VR Little Endian.
    Uncompressed,
    /// JPEG 2000 lossless (1.2.840.10008.1.2.4.90), as PACS often send CT.
    Jpeg2000,
}

/// Options of `stylet sim phantom`. The patient comes from a scenario file; the options below
/// override its `[phantom]` values.
#[derive(Debug, clap::Args)]
pub(crate) struct PhantomArgs {
    /// Output folder (created): ct.nii.gz, labels.nii.gz, truth.json (and dicom/ with --dicom).
    #[arg(long)]
    out: PathBuf,
    /// Scenario file [default: CONFIG/scenarios/easy.toml].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Volume size: columns,rows,slices.
    #[arg(long, value_delimiter = ',')]
    dims: Option<Vec<usize>>,
    /// Voxel size, mm: x,y,z.
    #[arg(long, value_delimiter = ',')]
    spacing_mm: Option<Vec<f64>>,
    /// Image noise, HU.
    #[arg(long)]
    noise_hu: Option<f64>,
    /// Also write the CT as a DICOM series in DIR/dicom (uncompressed unless jpeg2000 is given).
    #[arg(long, num_args = 0..=1, default_missing_value = "uncompressed", value_name = "ENCODING")]
    dicom: Option<DicomEncoding>,
    /// Leave these frame beads out of the image (indices, comma-separated).
    #[arg(long, value_delimiter = ',')]
    missing_beads: Option<Vec<usize>>,
    /// Add this many bead-like bright spheres that are not on the frame.
    #[arg(long)]
    extra_beads: Option<usize>,
    /// The config folder (robot/marker_frame.txt, registration.toml, scenarios/).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn phantom(args: &PhantomArgs) -> anyhow::Result<ExitCode> {
    let scenario_path = args.scenario.clone().unwrap_or_else(|| args.config.join("scenarios").join("easy.toml"));
    let scenario = stylet_sim::scenario::Scenario::load(&scenario_path)?;
    let mut ps = scenario.phantom;
    if let Some(dims) = &args.dims {
        anyhow::ensure!(
            dims.len() == 3 && dims.iter().all(|d| (8..=2048).contains(d)),
            "--dims takes three sizes in 8..2048, got {dims:?}"
        );
        ps.dims = [dims[0], dims[1], dims[2]];
    }
    if let Some(sp) = &args.spacing_mm {
        anyhow::ensure!(
            sp.len() == 3 && sp.iter().all(|s| *s > 0.05 && *s < 10.0),
            "--spacing-mm takes three sizes in (0.05, 10) mm, got {sp:?}"
        );
        ps.spacing_mm = [sp[0], sp[1], sp[2]];
    }
    for (i, t) in ps.tumours.iter().enumerate() {
        anyhow::ensure!(
            stylet_sim::phantom::tumour_inside_liver(t, ps.dims, ps.spacing_mm),
            "tumour {i} of {} does not fit inside the liver of a {:?} x {:?} mm volume",
            scenario_path.display(),
            ps.dims,
            ps.spacing_mm
        );
    }
    let frame_path = args.config.join("robot").join("marker_frame.txt");
    let markers = stylet_registration::read_points::<Robot>(&frame_path)?;
    let cfg = stylet_registration::RegistrationConfig::load(&args.config.join("registration.toml"))?;
    let spec = stylet_sim::phantom::PhantomSpec {
        seed: args.seed.unwrap_or(ps.seed),
        dims: ps.dims,
        spacing_mm: ps.spacing_mm,
        markers_in_robot: markers,
        marker_diameter_mm: cfg.fiducials.diameter_mm,
        noise_hu: args.noise_hu.unwrap_or(ps.noise_hu),
        missing_beads: args.missing_beads.clone().unwrap_or(ps.missing_beads),
        extra_beads: args.extra_beads.unwrap_or(ps.extra_beads),
        tumours: ps.tumours,
        metal_wire: ps.metal_wire,
    };
    let ph = stylet_sim::phantom::generate(&spec);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let ct_path = args.out.join("ct.nii.gz");
    stylet_imaging::write_nifti(&ph.volume, &ct_path)?;
    let labels_path = args.out.join("labels.nii.gz");
    stylet_imaging::write_nifti(&ph.labels, &labels_path)?;
    let truth = json!({
        "seed": spec.seed,
        "scenario": scenario_path,
        "ct": ct_path,
        "labels": labels_path,
        "label_table": stylet_sim::phantom::LABELS.iter().map(|(v, n)| json!({ "value": v, "name": n })).collect::<Vec<_>>(),
        "extra_beads_in_ct_lps_mm": ph.extra_beads_in_ct,
        "marker_frame": frame_path,
        "ct_from_robot": ph.ct_from_robot.to_matrix_rows(),
        "robot_from_ct": ph.ct_from_robot.inverse().to_matrix_rows(),
        "markers_in_ct_lps_mm": ph.markers_in_ct,
        "tumour_in_ct_lps_mm": ph.tumour_in_ct,
        "tumours": ph.tumours_in_ct.iter().map(|(c, d)| json!({ "centre_in_ct_lps_mm": c, "diameter_mm": d })).collect::<Vec<_>>(),
    });
    std::fs::write(args.out.join("truth.json"), truth.to_string())?;
    if let Some(encoding) = args.dicom {
        let study = format!("1.2.826.0.1.3680043.10.543.{}", spec.seed);
        let encoding = match encoding {
            DicomEncoding::Uncompressed => stylet_imaging::PixelEncoding::Uncompressed,
            DicomEncoding::Jpeg2000 => stylet_imaging::PixelEncoding::Jpeg2000Lossless,
        };
        stylet_imaging::write_series_encoded(
            &ph.volume,
            &args.out.join("dicom"),
            &study,
            &format!("{study}.1"),
            "Stylet phantom",
            encoding,
        )?;
    }
    if args.json {
        say!("{truth}");
    } else {
        say!(
            "phantom {}x{}x{} at {:?} mm written to {}",
            spec.dims[0],
            spec.dims[1],
            spec.dims[2],
            spec.spacing_mm,
            args.out.display()
        );
        say!("ground truth: {}", args.out.join("truth.json").display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `stylet sim sensor`.
#[derive(Debug, clap::Args)]
pub(crate) struct SensorArgs {
    /// Scenario whose breathing the sensor reads [default: CONFIG/scenarios/easy.toml].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed of the breathing [default: the scenario's].
    #[arg(long)]
    seed: Option<u64>,
    /// The sensor's clock at its first sample, ms (a sensor's clock is its own).
    #[arg(long, default_value_t = 1_000_000)]
    clock_start_ms: u64,
    /// Stop after this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON: the device.
    #[arg(long)]
    json: bool,
}

/// `stylet sim sensor`: the simulated respiratory sensor on a new pty, sending the scenario's
/// breathing as the live sensor's lines (`<t_ms>,<value_mm>`) in real time.
pub(crate) fn sensor(args: &SensorArgs) -> anyhow::Result<ExitCode> {
    let path = args.scenario.clone().unwrap_or_else(|| args.config.join("scenarios").join("easy.toml"));
    let scenario = stylet_sim::scenario::Scenario::load(&path)?;
    let seed = args.seed.unwrap_or(scenario.phantom.seed);
    let mut model = stylet_sim::breathing::Breathing::new(stylet_sim::breathing::BreathingSpec {
        seed,
        ..scenario.breathing.clone()
    });
    let pty = Pty::open().context("starting the simulated sensor")?;
    if args.json {
        say!("{}", json!({ "device": pty.path }));
    } else {
        say!("simulated respiratory sensor on {}", pty.path);
    }
    std::io::stdout().flush().ok();
    let mut master = pty.into_master();
    let start = std::time::Instant::now();
    let end_s = args.duration_s.unwrap_or(f64::INFINITY);
    let _ = writeln!(master, "# stylet simulated respiratory sensor, {}", path.display());
    loop {
        let s = model.next_sensor_sample();
        if s.t_s > end_s {
            break;
        }
        let wait = s.t_s - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        // A host that is not reading fills the pty: drop rather than block, as a sensor would.
        let line = format!("{:.1},{:.4}\n", args.clock_start_ms as f64 + s.t_s * 1e3, s.value_mm);
        let _ = master.write_all(line.as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}
