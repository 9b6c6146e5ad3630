//! `stylet`: the command-line interface.

/// Prints a line to standard output; a closed pipe (`stylet ... | head`) is not an error.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod bench;
mod bringup;
mod configcmd;
mod configdir;
mod ctcmd;
mod demo;
mod dicomcmd;
mod dicomresults;
mod igtlcmd;
mod kincmd;
mod logs;
mod plancmd;
mod plot;
mod procedurecmd;
mod realtime;
mod regcmd;
mod replaycmd;
mod respcmd;
mod signals;
mod simcmd;
mod simworld;
mod verifycmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Stylet: a control stack for robotic needle guidance in CT-guided liver ablation.
///
/// Every command prints a human report, or JSON with --json. Config lives in a folder (robot/,
/// safety.toml, respiration.toml, scenarios/, ...), found in this order: --config DIR, the
/// STYLET_CONFIG environment variable, ./config, the defaults built into the binary.
/// `stylet config init DIR` writes those defaults out for editing.
#[derive(Debug, Parser)]
#[command(name = "stylet", version, about, long_about = None)]
struct Cli {
    /// More log lines on standard error: -v information, -vv debugging, -vvv tracing (else
    /// warnings and errors; STYLET_LOG=FILTER wins, e.g. STYLET_LOG=stylet_procedure=debug).
    #[arg(short = 'v', action = clap::ArgAction::Count, global = true)]
    log_verbosity: u8,
    /// Log lines as JSON objects, one per line.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Validate configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// CT volumes.
    Ct {
        #[command(subcommand)]
        command: CtCmd,
    },
    /// Simulators.
    Sim {
        #[command(subcommand)]
        command: SimCmd,
    },
    /// Bring up a controller: handshake, enable, home, move each joint a little, prove the
    /// controller watchdog trips when the host goes silent, disable.
    Bringup(bringup::Args),
    /// Forward kinematics: the tip pose of a URDF chain for given joint values.
    Fk(kincmd::FkArgs),
    /// Needle-axis inverse kinematics: every solution placing the tip at a stand-off before the entry
    /// with the needle on the entry -> target line, ranked, or why there is none.
    Ik(kincmd::IkArgs),
    /// Detect the registration frame's markers in a CT: centroids (LPS, mm) with uncertainty.
    Fiducials(ctcmd::FiducialArgs),
    /// CT-to-robot registration from marker point lists: robot_from_ct, FRE, predicted TRE at the
    /// target, per-marker residuals; refused with the reason when a quality gate fails.
    Register(regcmd::Args),
    /// Measurements.
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
    /// Ranked needle trajectories under the clinical rules (PATH, MAR, OAR, IND), each with a
    /// rule-by-rule report, or "no safe path" with the reasons; --png draws the best.
    Plan(plancmd::PlanArgs),
    /// A complete simulated procedure on a scenario: patient and CT, registration, planning,
    /// alignment and gated insertion through the supervisor on the simulated controller,
    /// checkpoint CTs, ablation, verification, retraction; ends with a summary.
    Demo(demo::DemoArgs),
    /// Shell completions on standard output, e.g. `stylet completions bash >
    /// ~/.local/share/bash-completion/completions/stylet`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Manual pages: one per command (stylet.1, stylet-demo.1, ...) into a folder, e.g. `stylet
    /// man ~/.local/share/man/man1`; without one, stylet(1) on standard output.
    Man {
        /// The folder to write the pages to.
        dir: Option<PathBuf>,
    },
    /// The procedure on the CT suite's devices named in the site config (config/site.toml,
    /// docs/site.md): the arm's controller and the respiratory sensor on their serial ports, CTs
    /// from the scanner (DICOM node or watched folder), the ablation device run by hand, and the
    /// operator at a terminal console.
    Procedure(procedurecmd::ProcedureArgs),
    /// Verification from a post-ablation contrast CT (VER-1): the ablation zone found and brought
    /// into the planning CT's frame (the markers, then the liver), the 3-D margin around the
    /// tumour, where it is under VER-1's margin; exit status 2 when a supplementary ablation is
    /// called for; --png draws the margin map.
    Verify(verifycmd::VerifyArgs),
    /// Read a procedure log back: header, records by kind, state changes and faults, and where
    /// the log was cut if the process died mid-write.
    Replay(replaycmd::ReplayArgs),
    /// OpenIGTLink (3D Slicer): the simulated procedure with Slicer as its operator (docs/igtl.md).
    Igtl {
        #[command(subcommand)]
        command: IgtlCmd,
    },
    /// DICOM networking: the node CTs arrive at from the scanner.
    Dicom {
        #[command(subcommand)]
        command: DicomCmd,
    },
    /// Respiration: prediction and gating on breathing traces.
    Resp {
        #[command(subcommand)]
        command: RespCmd,
    },
}

#[derive(Debug, Subcommand)]
enum IgtlCmd {
    /// The simulated procedure (a scenario's world) with 3D Slicer as its operator over an
    /// OpenIGTLink server (default 127.0.0.1:18944, BWH convention): START_UP starts it,
    /// TARGETING shows Stylet's plan, MOVE_TO_TARGET executes it through the supervisor (every
    /// insertion step gated, RESP-2, and pedal-enabled, INS-2), STOP and EMERGENCY stop it;
    /// other decisions come as STRING PROMPT, answered with STRING ANSWER. The plan (POINT PLAN),
    /// the registration, the workflow phase, the gate and the needle (CURRENT_POSITION) stream.
    Serve(igtlcmd::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum DicomCmd {
    /// A DICOM storage node (C-STORE SCP, C-ECHO): stores series as they arrive and prints each
    /// one when complete (after --quiet-s without news) with its volume; a series cut off by an
    /// aborted association is reported partial and never used.
    Listen(dicomcmd::ListenArgs),
    /// Send DICOM files (or folders of them) to a node on one association (C-STORE SCU), as a
    /// scanner does; each instance's status is checked.
    Send(dicomcmd::SendArgs),
}

#[derive(Debug, Subcommand)]
enum RespCmd {
    /// Prediction RMSE against no prediction per horizon, gate duty cycle and the residual motion
    /// inside the gate, on one trace (--trace) or every trace of a folder (--dir); --plot draws one.
    Eval(respcmd::EvalArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check every file of a config folder; exits non-zero with readable errors.
    Check {
        /// The config folder [default: $STYLET_CONFIG, else ./config, else the built-in defaults].
        #[arg(env = "STYLET_CONFIG", default_value = configdir::DEFAULT, value_parser = configdir::resolve, hide_default_value = true)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the built-in default config to a folder, for editing; use it with --config DIR or
    /// STYLET_CONFIG=DIR (or as ./config).
    Init {
        /// The folder (created if missing).
        dir: PathBuf,
        /// Overwrite files that exist already (else nothing is written when one does).
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CtCmd {
    /// Series, dimensions, spacing, orientation, LPS bounding box and HU range of a DICOM series
    /// folder or a NIfTI or NRRD file.
    Info(ctcmd::InfoArgs),
}

#[derive(Debug, Subcommand)]
enum SimCmd {
    /// Run the simulated motor controller on a new pty and print its device path.
    Controller(simcmd::Args),
    /// Generate a CT phantom (NIfTI, LPS geometry) with the registration frame's markers at a known
    /// pose, ribs, a contrast vessel, a metal wire with streaks and a tumour, plus its ground truth.
    Phantom(simcmd::PhantomArgs),
    /// The simulated patient as a process of its own for `stylet procedure`: the controller and
    /// the respiratory sensor on ptys, a CT scanner that scans when asked on stdin and sends each
    /// series to a DICOM node, the planning CT and labels as files; the truth at the end.
    World(simworld::WorldArgs),
    /// Run the simulated respiratory sensor on a new pty (the scenario's breathing as the live
    /// sensor's `<t_ms>,<value_mm>` lines, in real time) and print its device path.
    Sensor(simcmd::SensorArgs),
    /// Write a procedure log as fast as possible (for the kill -9 tests of the recorder).
    #[command(hide = true)]
    Record(replaycmd::RecordArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Run the supervisor loop at its rate against the simulated controller over a pty and
    /// report cycle lateness (p50, p99, p99.9, max).
    Loop(bench::Args),
    /// IK success rate and time on random reachable lines, side by side with the `k` crate's solver.
    Ik(kincmd::BenchIkArgs),
    /// Exact Euclidean distance transform of one label of a NIfTI label map (best of N runs);
    /// `bench/edt_side_by_side.sh` runs scipy.ndimage.distance_transform_edt beside it.
    Edt(plancmd::BenchEdtArgs),
    /// Verification from a post-ablation CT (the liver's shift, the zone, the margin map) on
    /// simulated CTs of a given size (default 512 x 512 x 300), and the marker detection in both.
    Verify(verifycmd::BenchVerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init(cli.log_verbosity, cli.log_json);
    let result = match cli.command {
        Top::Config { command: ConfigCmd::Check { dir, json } } => configcmd::check(&dir, json),
        Top::Config { command: ConfigCmd::Init { dir, force, json } } => configcmd::init(&dir, force, json),
        Top::Sim { command: SimCmd::Controller(args) } => simcmd::run(&args),
        Top::Sim { command: SimCmd::Phantom(args) } => simcmd::phantom(&args),
        Top::Sim { command: SimCmd::Sensor(args) } => simcmd::sensor(&args),
        Top::Sim { command: SimCmd::World(args) } => simworld::run(&args),
        Top::Bringup(args) => bringup::run(&args),
        Top::Verify(args) => verifycmd::run(&args),
        Top::Bench { command: BenchCmd::Loop(args) } => bench::run(&args),
        Top::Bench { command: BenchCmd::Ik(args) } => kincmd::bench_ik(&args),
        Top::Bench { command: BenchCmd::Edt(args) } => plancmd::bench_edt(&args),
        Top::Bench { command: BenchCmd::Verify(args) } => verifycmd::bench_verify(&args),
        Top::Fk(args) => kincmd::fk(&args),
        Top::Ct { command: CtCmd::Info(args) } => ctcmd::info(&args),
        Top::Register(args) => regcmd::run(&args),
        Top::Fiducials(args) => ctcmd::fiducials(&args),
        Top::Ik(args) => kincmd::ik(&args),
        Top::Resp { command: RespCmd::Eval(args) } => respcmd::eval(&args),
        Top::Dicom { command: DicomCmd::Listen(args) } => dicomcmd::listen(&args),
        Top::Dicom { command: DicomCmd::Send(args) } => dicomcmd::send(&args),
        Top::Plan(args) => plancmd::run(&args),
        Top::Replay(args) => replaycmd::replay(&args),
        Top::Demo(args) => demo::run(&args),
        Top::Completions { shell } => {
            // Into a buffer first: the generator panics on a closed pipe (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stylet", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(ExitCode::SUCCESS)
        }
        Top::Man { dir } => man(dir.as_deref()),
        Top::Procedure(args) => procedurecmd::run(&args),
        Top::Igtl { command: IgtlCmd::Serve(args) } => igtlcmd::serve(&args),
        Top::Sim { command: SimCmd::Record(args) } => replaycmd::record(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `stylet man`: every command's page into `dir`, or stylet(1) on standard output.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir).with_context(|| format!("writing to {}", dir.display()))?;
            let pages = std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
                .count();
            say!("{pages} manual pages in {} (`man -l {}/stylet.1`)", dir.display(), dir.display());
        }
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).context("writing the page")?,
    }
    Ok(ExitCode::SUCCESS)
}
