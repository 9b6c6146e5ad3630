//! `stylet fk`, `stylet ik` and `stylet bench ik`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use nalgebra::Isometry3;
use serde_json::{json, Value};
use stylet_core::frame::{Point, Robot};
use stylet_kinematics::{
    check, random_reachable_lines, solve_all, solve_first, Arm, IkOptions, KeepOuts, KinematicsConfig, Motion,
    NeedleLine, RobotModel,
};

/// Which chain: an explicit URDF, or the reference arm from the config folder.
#[derive(Debug, clap::Args)]
pub(crate) struct ChainArgs {
    /// URDF file (default: the reference arm of `--config`).
    #[arg(long)]
    urdf: Option<PathBuf>,
    /// Base link name.
    #[arg(long)]
    base: Option<String>,
    /// Tip link name (its z axis is the needle axis).
    #[arg(long)]
    tip: Option<String>,
    /// The config folder (robot/kinematics.toml).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
}

impl ChainArgs {
    /// The reference arm of a config folder.
    pub(crate) fn reference(config: &Path) -> Self {
        Self { urdf: None, base: None, tip: None, config: config.to_path_buf() }
    }

    /// The chain and what goes with it. The reference arm comes from its one description
    /// (`RobotModel`: robot.toml checked against the URDF), its home from robot.toml; another
    /// chain (`--urdf`, or other links of the reference URDF) takes the config's IK options, the
    /// keep-outs only when it is of the reference URDF, and all zeros (clamped into each joint's
    /// range) as its home.
    pub(crate) fn load(&self) -> anyhow::Result<Chain> {
        if self.urdf.is_none() && self.base.is_none() && self.tip.is_none() {
            let model = RobotModel::load(&self.config)?;
            let home = model.robot.home();
            return Ok(Chain { arm: model.arm, ik: model.kinematics.ik, keepouts: model.kinematics.keepouts, home });
        }
        let kin_path = self.config.join("robot").join("kinematics.toml");
        let cfg =
            if kin_path.exists() || self.urdf.is_none() { Some(KinematicsConfig::load(&kin_path)?) } else { None };
        let urdf = match (&self.urdf, &cfg) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => c.urdf.clone(),
            (None, None) => anyhow::bail!("give --urdf FILE"),
        };
        let own = self.urdf.is_none();
        let base = self.base.clone().or_else(|| own.then(|| cfg.as_ref().map(|c| c.base_link.clone())).flatten());
        let tip = self.tip.clone().or_else(|| own.then(|| cfg.as_ref().map(|c| c.tip_link.clone())).flatten());
        let (Some(base), Some(tip)) = (base, tip) else { anyhow::bail!("give --base LINK and --tip LINK with --urdf") };
        let arm = Arm::from_urdf_file(&urdf, &base, &tip)?;
        let ik = cfg.as_ref().map(|c| c.ik.clone()).unwrap_or_default();
        let keepouts = if own { cfg.map(|c| c.keepouts).unwrap_or_default() } else { KeepOuts::default() };
        let home = arm.joints.iter().map(|j| 0.0f64.clamp(j.lower, j.upper)).collect();
        Ok(Chain { arm, ik, keepouts, home })
    }
}

/// A chain to solve on: the arm, its IK options, keep-outs and home (the IK's default seed).
#[derive(Debug)]
pub(crate) struct Chain {
    pub(crate) arm: Arm,
    pub(crate) ik: IkOptions,
    pub(crate) keepouts: KeepOuts,
    pub(crate) home: Vec<f64>,
}

/// Options of `stylet fk`.
#[derive(Debug, clap::Args)]
pub(crate) struct FkArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Joint values in chain order, base to tip: radians and metres, as in the URDF.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
    joints: Vec<f64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `stylet ik`.
#[derive(Debug, clap::Args)]
pub(crate) struct IkArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Skin entry point, mm in the robot base frame: X,Y,Z.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
    entry: Vec<f64>,
    /// Target point, mm in the robot base frame: X,Y,Z.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
    target: Vec<f64>,
    /// Seed joints (radians and metres as in the URDF; default: all zero, or the reference arm's home).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    seed: Option<Vec<f64>>,
    /// Tip stand-off before the entry, mm (default from the config, 10).
    #[arg(long)]
    standoff_mm: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn to_internal(arm: &Arm, q: &[f64]) -> Vec<f64> {
    arm.joints.iter().zip(q).map(|(j, v)| if j.motion == Motion::Prismatic { v * 1e3 } else { *v }).collect()
}

fn to_urdf_units(arm: &Arm, q: &[f64]) -> Vec<f64> {
    arm.joints.iter().zip(q).map(|(j, v)| if j.motion == Motion::Prismatic { v * 1e-3 } else { *v }).collect()
}

fn pose_json(t: &Isometry3<f64>) -> Value {
    let q = t.rotation.quaternion();
    let m = t.rotation.to_rotation_matrix();
    let rows: Vec<Vec<f64>> = (0..3).map(|r| (0..3).map(|c| m[(r, c)]).collect()).collect();
    json!({
        "position_mm": [t.translation.x, t.translation.y, t.translation.z],
        "quaternion_xyzw": [q.i, q.j, q.k, q.w],
        "rotation": rows,
    })
}

fn chain_json(arm: &Arm) -> Value {
    json!({ "robot": arm.name, "base": arm.base, "tip": arm.tip,
            "joints": arm.joints.iter().map(|j| j.name.clone()).collect::<Vec<_>>() })
}

pub(crate) fn fk(args: &FkArgs) -> anyhow::Result<ExitCode> {
    let arm = args.chain.load()?.arm;
    anyhow::ensure!(
        args.joints.len() == arm.dof(),
        "{} joint values given, the chain {} -> {} has {} ({})",
        args.joints.len(),
        arm.base,
        arm.tip,
        arm.dof(),
        arm.joints.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let q = to_internal(&arm, &args.joints);
    let tip = arm.tip_pose(&q).to_nalgebra();
    let out = json!({ "chain": chain_json(&arm), "within_limits": arm.within_limits(&q), "tip": pose_json(&tip) });
    if args.json {
        say!("{out}");
    } else {
        let p = tip.translation.vector;
        let r = &out["tip"]["quaternion_xyzw"];
        say!("{} -> {} ({} joints)", arm.base, arm.tip, arm.dof());
        say!("tip position: {:.4} {:.4} {:.4} mm", p.x, p.y, p.z);
        say!("orientation (x y z w): {} {} {} {}", r[0], r[1], r[2], r[3]);
        let m = tip.rotation.to_rotation_matrix();
        for row in 0..3 {
            say!("  [{:>9.6} {:>9.6} {:>9.6}]", m[(row, 0)], m[(row, 1)], m[(row, 2)]);
        }
        if !arm.within_limits(&q) {
            say!("warning: joints outside the URDF limits");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn ik(args: &IkArgs) -> anyhow::Result<ExitCode> {
    let Chain { arm, ik: mut opts, keepouts, home } = args.chain.load()?;
    if let Some(s) = args.standoff_mm {
        anyhow::ensure!(s.is_finite() && s >= 0.0, "--standoff-mm {s} must be >= 0");
        opts.standoff_mm = s;
    }
    let seed = match &args.seed {
        Some(s) => {
            anyhow::ensure!(s.len() == arm.dof(), "--seed has {} values, the chain has {} joints", s.len(), arm.dof());
            to_internal(&arm, s)
        }
        None => home,
    };
    for (name, p) in [("--entry", &args.entry), ("--target", &args.target)] {
        anyhow::ensure!(
            p.len() == 3 && p.iter().all(|x| x.is_finite()),
            "{name} takes three numbers X,Y,Z in mm, got {p:?}"
        );
    }
    // --entry and --target are in the robot base frame (mm).
    let p = |x: &[f64]| Point::<Robot>::new(x[0], x[1], x[2]);
    let line = NeedleLine { entry: p(&args.entry), target: p(&args.target) };
    let t0 = Instant::now();
    let result = solve_all(&arm, &line, &seed, &keepouts, &opts);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let out = match &result {
        Ok(sols) => json!({
            "chain": chain_json(&arm),
            "ok": true,
            "standoff_mm": opts.standoff_mm,
            "keepouts": keepouts.volumes.iter().map(|k| k.name().to_string()).collect::<Vec<_>>(),
            "solve_ms": ms,
            "solutions": sols.iter().map(|s| {
                let (dp, angle, in_limits) = check(&arm, &s.joints, &line, opts.standoff_mm);
                json!({
                    "joints": to_urdf_units(&arm, &s.joints),
                    "joints_deg_or_mm": arm.joints.iter().zip(&s.joints).map(|(j, q)| if j.motion == Motion::Prismatic { *q } else { q.to_degrees() }).collect::<Vec<_>>(),
                    "score": s.score,
                    "limit_margin": s.limit_margin,
                    "manipulability": s.manipulability,
                    "clearance_mm": if s.clearance_mm.is_finite() { json!(s.clearance_mm) } else { Value::Null },
                    "fk_check": { "position_error_mm": dp, "axis_error_deg": angle, "within_limits": in_limits },
                    "tip": pose_json(&arm.tip_pose(&s.joints).to_nalgebra()),
                })
            }).collect::<Vec<_>>(),
        }),
        Err(e) => json!({ "chain": chain_json(&arm), "ok": false, "reason": e.to_string(), "solve_ms": ms }),
    };
    if args.json {
        say!("{out}");
    } else {
        match &result {
            Ok(sols) => {
                say!("{} solution(s) for {} -> {}, best first ({ms:.2} ms):", sols.len(), arm.base, arm.tip);
                for (i, s) in out["solutions"].as_array().into_iter().flatten().enumerate() {
                    say!(
                        "  #{i} score {:.3}  joints (deg/mm) {}  fk check {:.2e} mm / {:.2e} deg",
                        s["score"].as_f64().unwrap_or(0.0),
                        s["joints_deg_or_mm"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| format!("{:.3}", v.as_f64().unwrap_or(0.0)))
                            .collect::<Vec<_>>()
                            .join(" "),
                        s["fk_check"]["position_error_mm"].as_f64().unwrap_or(0.0),
                        s["fk_check"]["axis_error_deg"].as_f64().unwrap_or(0.0),
                    );
                    let _ = sols;
                }
            }
            Err(e) => say!("no solution: {e}"),
        }
    }
    Ok(if result.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Options of `stylet bench ik`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchIkArgs {
    /// Random reachable lines to solve.
    #[arg(long, default_value_t = 10_000)]
    lines: usize,
    /// Random seed of the lines.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Also write the lines (with their 6-D target poses, metres) as JSON for peer solvers.
    #[arg(long)]
    export_lines: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99))
}

pub(crate) fn bench_ik(args: &BenchIkArgs) -> anyhow::Result<ExitCode> {
    let RobotModel { robot, kinematics: kin, arm } = RobotModel::load(&args.config)?;
    let (opts, home) = (kin.ik.clone(), robot.home());
    let lines = random_reachable_lines(&arm, args.lines, &opts, args.seed);
    let none = KeepOuts::default();
    let accept = |q: &[f64], line: &NeedleLine| {
        let (dp, angle, ok) = check(&arm, q, line, opts.standoff_mm);
        dp <= 0.01 && angle <= 0.01 && ok
    };
    // Ours: 5-DOF, roll free.
    let (mut ours_ok, mut ours_t) = (0usize, Vec::with_capacity(lines.len()));
    for (_, line) in &lines {
        let t0 = Instant::now();
        let r = solve_first(&arm, line, &home, &none, &opts);
        ours_t.push(t0.elapsed().as_secs_f64() * 1e6);
        if r.is_ok_and(|s| accept(&s.joints, line)) {
            ours_ok += 1;
        }
    }
    // k: 6-DOF target (the generating pose, roll fixed), from the same home seed, needle joint held.
    let baseline = stylet_kinematics::baseline::KBaseline::new(&kin.urdf, &arm)?;
    let home_si = to_urdf_units(&arm, &home);
    let (mut k_ok, mut k_t) = (0usize, Vec::with_capacity(lines.len()));
    for (q, line) in &lines {
        let target = arm.tip_pose(q);
        let t0 = Instant::now();
        let r = baseline.solve(&home, &target);
        k_t.push(t0.elapsed().as_secs_f64() * 1e6);
        if r.is_some_and(|qk| accept(&qk, line)) {
            k_ok += 1;
        }
    }
    if let Some(path) = &args.export_lines {
        let items: Vec<Value> = lines
            .iter()
            .map(|(q, line)| {
                let t = arm.tip_pose(q).to_nalgebra();
                let m = t.rotation.to_rotation_matrix();
                json!({
                    "q": to_urdf_units(&arm, q),
                    "entry_mm": line.entry.to_array(),
                    "target_mm": line.target.to_array(),
                    "pose_m": { "position": [t.translation.x * 1e-3, t.translation.y * 1e-3, t.translation.z * 1e-3],
                                "rotation": (0..3).map(|r| (0..3).map(|c| m[(r, c)]).collect::<Vec<_>>()).collect::<Vec<_>>() },
                })
            })
            .collect();
        let doc = json!({ "urdf": kin.urdf, "base": kin.base_link, "tip": kin.tip_link, "standoff_mm": opts.standoff_mm,
                          "seed": home_si, "lines": items });
        std::fs::write(path, doc.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    let (o50, o99) = quantiles(ours_t);
    let (k50, k99) = quantiles(k_t);
    let n = lines.len().max(1) as f64;
    let out = json!({
        "lines": lines.len(),
        "stylet": { "task": "5-DOF needle axis, roll free", "success": ours_ok as f64 / n, "p50_us": o50, "p99_us": o99 },
        "k": { "task": "6-DOF pose (roll fixed), JacobianIkSolver(1e-5 m, 0.01 deg, 0.5, 100)", "success": k_ok as f64 / n, "p50_us": k50, "p99_us": k99 },
        "median_ratio_stylet_over_k": o50 / k50,
    });
    if args.json {
        say!("{out}");
    } else {
        say!("{} random reachable lines from home (acceptance: 0.01 mm, 0.01 deg, within limits)", lines.len());
        say!("  stylet (5-DOF): success {:.2} %, median {o50:.1} us, p99 {o99:.1} us", 100.0 * ours_ok as f64 / n);
        say!("  k      (6-DOF): success {:.2} %, median {k50:.1} us, p99 {k99:.1} us", 100.0 * k_ok as f64 / n);
        say!("  median time ratio stylet/k: {:.3}", o50 / k50);
    }
    Ok(ExitCode::SUCCESS)
}
