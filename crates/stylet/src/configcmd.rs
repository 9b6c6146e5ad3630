//! `stylet config check` and `stylet config init`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use stylet_core::config::RobotConfig;
use stylet_safety::SafetyConfig;
use stylet_sim::SimConfig;

/// Loads every config file of `dir`; reports all that fail.
pub(crate) fn check(dir: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut errors: Vec<String> = Vec::new();
    let mut checked: Vec<String> = Vec::new();
    let robot_path = dir.join("robot").join("robot.toml");
    let robot = match RobotConfig::load(&robot_path) {
        Ok(r) => {
            checked.push(robot_path.display().to_string());
            Some(r)
        }
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let safety_path = dir.join("safety.toml");
    if let Some(robot) = robot.clone() {
        match SafetyConfig::load(&safety_path, robot) {
            Ok(_) => checked.push(safety_path.display().to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    } else {
        errors.push(format!("{}: not checked (needs a valid robot config)", safety_path.display()));
    }
    let kin_path = dir.join("robot").join("kinematics.toml");
    match stylet_kinematics::KinematicsConfig::load(&kin_path) {
        Ok(k) => match stylet_kinematics::Arm::from_urdf_file(&k.urdf, &k.base_link, &k.tip_link) {
            Ok(arm) => {
                checked.push(kin_path.display().to_string());
                checked.push(k.urdf.display().to_string());
                if let Some(r) = &robot {
                    // The one robot model: robot.toml and the URDF must describe the same arm.
                    if let Err(e) = stylet_kinematics::RobotModel::new(r.clone(), &robot_path, k.clone(), arm) {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        },
        Err(e) => errors.push(e.to_string()),
    }
    let reg_path = dir.join("registration.toml");
    match stylet_registration::RegistrationConfig::load(&reg_path) {
        Ok(_) => checked.push(reg_path.display().to_string()),
        Err(e) => errors.push(e.to_string()),
    }
    let sim_path = dir.join("sim.toml");
    match SimConfig::load(&sim_path) {
        Ok(_) => checked.push(sim_path.display().to_string()),
        Err(e) => errors.push(e.to_string()),
    }
    let rt_path = dir.join("realtime.toml");
    match stylet_rt::RealtimeConfig::load(&rt_path) {
        Ok(_) => checked.push(rt_path.display().to_string()),
        Err(e) => errors.push(e.to_string()),
    }
    let resp_path = dir.join("respiration.toml");
    match stylet_respiration::RespirationConfig::load(&resp_path) {
        Ok(_) => checked.push(resp_path.display().to_string()),
        Err(e) => errors.push(e.to_string()),
    }
    // Planning: thresholds by rule ID, both label tables, every device setting.
    let rules_path = dir.join("clinical-rules.toml");
    match stylet_planning::Rules::load(&rules_path) {
        Ok(_) => checked.push(rules_path.display().to_string()),
        Err(e) => errors.push(e.to_string()),
    }
    let labels_path = dir.join("labels.toml");
    match ["phantom", "totalsegmentator"]
        .iter()
        .map(|t| stylet_planning::LabelTable::load(&labels_path, t))
        .find_map(Result::err)
    {
        None => checked.push(labels_path.display().to_string()),
        Some(e) => errors.push(e.to_string()),
    }
    let devices_path = dir.join("devices.toml");
    match stylet_planning::load_zone(&devices_path, "mwa-generic", "100W-8min") {
        Ok(_) => checked.push(devices_path.display().to_string()),
        Err(e) => errors.push(e.to_string()),
    }
    // The CT suite: its devices, and the ablation setting it names among devices.toml's.
    let site_path = dir.join("site.toml");
    match stylet_suite::Site::load(&site_path) {
        Ok(site) => match stylet_planning::load_zone(&devices_path, &site.ablation.device, &site.ablation.setting) {
            Ok(_) => checked.push(site_path.display().to_string()),
            Err(e) => errors.push(format!("{}: [ablation]: {e}", site_path.display())),
        },
        Err(e) => errors.push(e.to_string()),
    }
    for (sub, load) in [
        ("scenarios", (|p: &Path| stylet_sim::scenario::Scenario::load(p).map(|_| ())) as fn(&Path) -> _),
        ("markers", |p: &Path| stylet_registration::FiducialConfig::load(p).map(|_| ())),
    ] {
        for path in toml_files(&dir.join(sub)) {
            match load(&path) {
                Ok(()) => checked.push(path.display().to_string()),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    if as_json {
        say!("{}", json!({ "ok": errors.is_empty(), "checked": checked, "errors": errors }));
    } else {
        for c in &checked {
            say!("ok     {c}");
        }
        for e in &errors {
            for (i, line) in e.lines().enumerate() {
                say!("{} {line}", if i == 0 { "error " } else { "      " });
            }
        }
        if let Some(r) = robot {
            if errors.is_empty() {
                say!("robot {:?}: {} joints", r.name, r.joints.len());
            }
        }
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// The `.toml` files of a folder, sorted (none when it does not exist).
fn toml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Writes the built-in defaults to `dir` (`stylet config init`).
pub(crate) fn init(dir: &Path, force: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let written = crate::configdir::write_all(dir, force)
        .map_err(|e| anyhow::anyhow!("stylet config init {}: {e}", dir.display()))?;
    if as_json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        say!("{}", json!({ "dir": dir, "files": files }));
    } else {
        say!("wrote the default config, {} files, to {}", written.len(), dir.display());
        say!(
            "use it with --config {0} or STYLET_CONFIG={0}; `stylet config check {0}` checks your edits",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
