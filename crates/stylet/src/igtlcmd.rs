//! `stylet igtl serve`: the simulated procedure with 3D Slicer as its operator, over
//! OpenIGTLink's BWH convention (docs/igtl.md).
//!
//! Slicer's phases answer the procedure driver's prompts (`stylet_suite::slicer`); the driver
//! moves the arm through the supervisor, and every insertion step needs the respiratory gate
//! (RESP-2) and the pedal (INS-2) as at the console. The network can ask; it cannot bypass.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::demo::{DemoArgs, SlicerSetup};

/// Options of `stylet igtl serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// TCP port (0: any free port, printed on stderr).
    #[arg(long, default_value_t = stylet_igtl::server::DEFAULT_PORT)]
    port: u16,
    /// Address to listen on; anything but loopback needs --allow-remote and --allow-peer.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Allow listening on a non-loopback address (logged).
    #[arg(long)]
    allow_remote: bool,
    /// A host that may connect from the network (repeat for more; this host itself always may).
    /// Anyone else's connection is closed at once and logged.
    #[arg(long = "allow-peer", value_name = "ADDRESS")]
    allow_peers: Vec<IpAddr>,
    /// Take the registration from Slicer's calibration (TRANSFORM CLB_<id>, robot to image,
    /// RAS; checked rigid) instead of the fiducials in the planning CT.
    #[arg(long)]
    calibration_from_slicer: bool,
    /// Scenario file (the simulated patient and world) [default: CONFIG/scenarios/easy.toml].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed [default: the scenario's].
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder for the procedure log and telemetry [default: a new temporary folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print the run's summary as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let addr = SocketAddr::new(args.bind, args.port);
    anyhow::ensure!(
        addr.ip().is_loopback() || args.allow_remote,
        "refusing to listen on {addr}: not loopback (pass --allow-remote)"
    );
    anyhow::ensure!(
        addr.ip().is_loopback() || !args.allow_peers.is_empty(),
        "refusing to listen on {addr} for nobody: name the hosts that may connect (--allow-peer ADDRESS)"
    );
    let demo = DemoArgs::for_slicer(args.config.clone(), args.scenario.clone(), args.seed, args.out.clone(), args.json);
    let setup = SlicerSetup {
        addr,
        allow_remote: args.allow_remote,
        allowed_peers: args.allow_peers.clone(),
        peer_calibration: args.calibration_from_slicer,
    };
    crate::demo::run_with(&demo, Some(setup))
}
