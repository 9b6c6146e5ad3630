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

/// Options of `stylet sim phantom`.
#[derive(Debug, clap::Args)]
pub(crate) struct PhantomArgs {
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder (created): ct.nii.gz, labels.nii.gz, truth.json (and dicom/ with --dicom).
    #[arg(long)]
    out: PathBuf,
    /// Volume size: columns,rows,slices.
    #[arg(long, value_delimiter = ',', default_value = "300,300,190")]
    dims: Vec<usize>,
    /// Voxel size, mm: x,y,z.
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.8,1.0")]
    spacing_mm: Vec<f64>,
    /// Image noise, HU.
    #[arg(long, default_value_t = 15.0)]
    noise_hu: f64,
    /// Also write the CT as a DICOM series (uncompressed) in DIR/dicom.
    #[arg(long)]
    dicom: bool,
    /// Leave these frame beads out of the image (indices, comma-separated).
    #[arg(long, value_delimiter = ',')]
    missing_beads: Vec<usize>,
    /// Add this many bead-like bright spheres that are not on the frame.
    #[arg(long, default_value_t = 0)]
    extra_beads: usize,
    /// The config folder (robot/marker_frame.txt, registration.toml).
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn phantom(args: &PhantomArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.dims.len() == 3 && args.dims.iter().all(|d| (8..=2048).contains(d)),
        "--dims takes three sizes in 8..2048, got {:?}",
        args.dims
    );
    anyhow::ensure!(
        args.spacing_mm.len() == 3 && args.spacing_mm.iter().all(|s| *s > 0.05 && *s < 10.0),
        "--spacing-mm takes three sizes in (0.05, 10) mm, got {:?}",
        args.spacing_mm
    );
    let frame_path = args.config.join("robot").join("marker_frame.txt");
    let markers = stylet_registration::read_points(&frame_path)?;
    let cfg = stylet_registration::RegistrationConfig::load(&args.config.join("registration.toml"))?;
    let spec = stylet_sim::phantom::PhantomSpec {
        seed: args.seed,
        dims: [args.dims[0], args.dims[1], args.dims[2]],
        spacing_mm: [args.spacing_mm[0], args.spacing_mm[1], args.spacing_mm[2]],
        markers_in_robot: markers,
        marker_diameter_mm: cfg.fiducials.diameter_mm,
        noise_hu: args.noise_hu,
        missing_beads: args.missing_beads.clone(),
        extra_beads: args.extra_beads,
    };
    let ph = stylet_sim::phantom::generate(&spec);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let ct_path = args.out.join("ct.nii.gz");
    stylet_imaging::write_nifti(&ph.volume, &ct_path)?;
    let labels_path = args.out.join("labels.nii.gz");
    stylet_imaging::write_nifti(&ph.labels, &labels_path)?;
    let m = |t: &nalgebra::Isometry3<f64>| {
        let h = t.to_homogeneous();
        (0..4).map(|r| (0..4).map(|c| h[(r, c)]).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    let truth = json!({
        "seed": args.seed,
        "ct": ct_path,
        "labels": labels_path,
        "label_table": stylet_sim::phantom::LABELS.iter().map(|(v, n)| json!({ "value": v, "name": n })).collect::<Vec<_>>(),
        "extra_beads_in_ct_lps_mm": ph.extra_beads_in_ct.iter().map(|p| [p.x, p.y, p.z]).collect::<Vec<_>>(),
        "marker_frame": frame_path,
        "ct_from_robot": m(&ph.ct_from_robot),
        "robot_from_ct": m(&ph.ct_from_robot.inverse()),
        "markers_in_ct_lps_mm": ph.markers_in_ct.iter().map(|p| [p.x, p.y, p.z]).collect::<Vec<_>>(),
        "tumour_in_ct_lps_mm": [ph.tumour_in_ct.x, ph.tumour_in_ct.y, ph.tumour_in_ct.z],
    });
    std::fs::write(args.out.join("truth.json"), truth.to_string())?;
    if args.dicom {
        let study = format!("1.2.826.0.1.3680043.10.543.{}", args.seed);
        stylet_imaging::write_series(
            &ph.volume,
            &args.out.join("dicom"),
            &study,
            &format!("{study}.1"),
            "Stylet phantom",
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
