//! The command line as a user meets it: help, config errors that name file, key and value, and
//! clear failures on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const STYLET: &str = env!("CARGO_BIN_EXE_stylet");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_config(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stylet-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(dir.join("robot")).unwrap();
    for f in [
        "robot/robot.toml",
        "robot/kinematics.toml",
        "robot/stylet_arm.urdf",
        "safety.toml",
        "sim.toml",
        "registration.toml",
    ] {
        std::fs::copy(repo().join("config").join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(STYLET).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for c in ["config", "sim", "bringup", "bench"] {
        assert!(text.contains(c), "{text}");
    }
}

/// Installed anywhere (issue 19, item 3): from an empty folder, with no ./config and no
/// STYLET_CONFIG, every command runs on the defaults built into the binary; `config init` writes
/// them out for editing, and STYLET_CONFIG or --config points at the edited copy.
#[test]
fn the_binary_runs_from_an_empty_folder_on_its_built_in_config() {
    let root = std::env::temp_dir().join(format!("stylet-anywhere-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (empty, cache) = (root.join("empty"), root.join("cache"));
    std::fs::create_dir_all(&empty).unwrap();
    let stylet = |args: &[&str], config_env: Option<&Path>| {
        let mut cmd = Command::new(STYLET);
        cmd.args(args).current_dir(&empty).env("XDG_CACHE_HOME", &cache).env_remove("STYLET_CONFIG");
        if let Some(c) = config_env {
            cmd.env("STYLET_CONFIG", c);
        }
        cmd.output().unwrap()
    };
    // The built-in defaults, checked where they were written (under the cache, not here).
    let out = stylet(&["config", "check", "--json"], None);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked: Vec<&str> = v["checked"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(checked.iter().all(|c| c.starts_with(cache.join("stylet").to_str().unwrap())), "{checked:?}");
    assert!(checked.iter().any(|c| c.ends_with("scenarios/easy.toml")), "{checked:?}");
    // A whole procedure, in virtual time, from the empty folder; with -v its log lines in words.
    let out = stylet(&["demo", "--json", "--out", "run", "-v"], None);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], v["expected_outcome"], "{v}");
    assert!(empty.join("run/procedure.log").is_file());
    assert!(log.lines().any(|l| l.contains(" INFO stylet_procedure::driver: workflow")), "{log}");
    assert!(log.lines().any(|l| l.contains(" INFO stylet_safety: ") && l.contains("aligning -> aligned")), "{log}");
    assert!(!log.contains("DEBUG"), "-v is information, not debugging");
    // The defaults written out, refused a second time without --force, edited and used.
    let mine = empty.join("mine");
    let out = stylet(&["config", "init", "mine"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(mine.join("robot/stylet_arm.urdf").is_file() && mine.join("scenarios/easy.toml").is_file());
    let out = stylet(&["config", "init", "mine"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--force") && err.contains("safety.toml"), "{err}");
    let safety = std::fs::read_to_string(mine.join("safety.toml")).unwrap();
    let broken = safety.replacen("rule = ", "rule_typo = ", 1);
    assert_ne!(broken, safety);
    std::fs::write(mine.join("safety.toml"), broken).unwrap();
    let out = stylet(&["config", "check"], Some(&mine));
    assert!(!out.status.success(), "STYLET_CONFIG is the config: {out:?}");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(mine.join("safety.toml").to_str().unwrap()), "{text}");
    // A folder that is not there: said once, with the way out.
    let out = stylet(&["resp", "eval", "--trace", "x.csv", "--config", "nowhere"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nowhere") && err.contains("config init"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Logs as JSON lines (issue 19, item 2): the procedure's, the control thread's events (bridged
/// from its channel), and a dependency's (rerun, through the `log` facade); STYLET_LOG filters.
#[test]
fn logs_come_as_json_lines_from_stylet_and_its_dependencies() {
    let out_dir = std::env::temp_dir().join(format!("stylet-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new(STYLET)
        .args(["demo", "--log-json", "--out"])
        .arg(&out_dir)
        .arg("--config")
        .arg(repo().join("config"))
        .env("STYLET_LOG", "debug,stylet_safety=info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let by =
        |target: &str| lines.iter().filter(|v| v["target"].as_str().is_some_and(|t| t.starts_with(target))).count();
    assert!(by("stylet_procedure") > 5 && by("stylet_safety") > 5 && by("re_") > 0, "{log}");
    for v in &lines {
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["fields"].is_object(), "{v}");
        // The filter: stylet_safety at information and above only.
        if v["target"] == "stylet_safety" {
            assert!(["INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap_or_default()), "{v}");
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// Shell completions that bash takes and completes with, and a manual page per command.
#[test]
fn completions_complete_in_bash_and_every_command_has_a_manual_page() {
    let script = Command::new(STYLET).args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success(), "{script:?}");
    let dir = std::env::temp_dir().join(format!("stylet-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stylet.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    // What bash offers after `stylet con` and after `stylet config `.
    let complete = |words: &str, cword: usize| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; \
             _stylet stylet \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("stylet con", 1), ["config"]);
    let sub = complete("stylet config ''", 2);
    assert!(sub.contains(&"check".to_string()) && sub.contains(&"init".to_string()), "{sub:?}");
    let man = dir.join("man");
    let out = Command::new(STYLET).arg("man").arg(&man).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let demo = std::fs::read_to_string(man.join("stylet-demo.1")).unwrap();
    assert!(demo.contains(".TH stylet-demo 1") && demo.contains("scenario"), "{demo}");
    for page in ["stylet.1", "stylet-config-init.1", "stylet-resp-eval.1", "stylet-procedure.1"] {
        assert!(man.join(page).is_file(), "{page}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn repository_config_checks_clean() {
    let out = Command::new(STYLET).args(["config", "check", "--json"]).arg(repo().join("config")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let checked: Vec<&str> = v["checked"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for f in [
        "robot.toml",
        "safety.toml",
        "kinematics.toml",
        "registration.toml",
        "realtime.toml",
        "sim.toml",
        "scenarios/easy.toml",
        "markers/frame-beads-4mm.toml",
    ] {
        assert!(checked.iter().any(|c| c.ends_with(f)), "{f} not checked: {checked:?}");
    }
}

#[test]
fn config_errors_name_file_key_and_value() {
    let dir = copy_config("bad");
    let safety = std::fs::read_to_string(dir.join("safety.toml")).unwrap();
    std::fs::write(
        dir.join("safety.toml"),
        safety.replace("max_depth_mm = 180.0", "max_depth_mm = 5000.0").replace("rule = \"INS-2\"", "rule = \"INS-9\""),
    )
    .unwrap();
    let sim = std::fs::read_to_string(dir.join("sim.toml")).unwrap();
    std::fs::write(dir.join("sim.toml"), sim.replace("seed = 1", "seed = 1\nturbo = true")).unwrap();
    // robot.toml no longer agreeing with the URDF (one robot model): refused by joint and value.
    let robot = std::fs::read_to_string(dir.join("robot/robot.toml")).unwrap();
    std::fs::write(dir.join("robot/robot.toml"), robot.replace("max_velocity_mm_s = 10.0", "max_velocity_mm_s = 12.0"))
        .unwrap();
    let out = Command::new(STYLET).args(["config", "check"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("safety.toml") && text.contains("`insertion_depth.max_depth_mm` = 5000"), "{text}");
    assert!(text.contains("`enable_interlock.rule` = \"INS-9\""), "{text}");
    assert!(text.contains("sim.toml") && text.contains("turbo"), "{text}");
    assert!(text.contains("needle_insertion_joint: max_velocity 12 mm/s against the URDF's 10 mm/s"), "{text}");
}

#[test]
fn bringup_on_a_missing_device_fails_clearly() {
    let out = Command::new(STYLET)
        .args(["bringup", "--port", "/dev/does-not-exist", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/does-not-exist"), "{err}");
}

#[test]
fn bad_fault_spec_is_refused_before_starting() {
    let out = Command::new(STYLET)
        .args(["sim", "controller", "--fault", "melt@1", "--duration-s", "0.1", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("melt@1"));
}

fn run_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(STYLET).args(args).arg("--config").arg(repo().join("config")).output().unwrap();
    parse_json(&out)
}

fn run_json_no_config(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    parse_json(&Command::new(STYLET).args(args).output().unwrap())
}

fn parse_json(out: &std::process::Output) -> (Option<i32>, serde_json::Value) {
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} / {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code(), v)
}

#[test]
fn fk_prints_the_tip_pose_in_mm() {
    // Home of the reference arm, needle retracted.
    let (code, v) = run_json(&[
        "fk",
        "--json",
        "--joints",
        "0,-1.5707963267948966,1.5707963267948966,-1.5707963267948966,-1.5707963267948966,0,0",
    ]);
    assert_eq!(code, Some(0));
    let p: Vec<f64> = v["tip"]["position_mm"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    // UR5e at (0, -90, 90, -90, -90, 0) deg from the standard DH table, plus the 60 mm needle
    // driver along the tool z axis (computed independently of Stylet).
    let expected = [-491.9, -133.3, 427.9];
    for (a, b) in p.iter().zip(expected) {
        assert!((a - b).abs() < 0.01, "{p:?}");
    }
    assert_eq!(v["chain"]["joints"].as_array().unwrap().len(), 7);
    assert_eq!(v["within_limits"], true);
    let q = v["tip"]["quaternion_xyzw"].as_array().unwrap();
    let norm: f64 = q.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-9);
}

#[test]
fn ik_prints_ranked_fk_checked_solutions_or_the_reason() {
    let (code, v) = run_json(&["ik", "--json", "--entry", "500,300,150", "--target", "520,340,40"]);
    assert_eq!(code, Some(0), "{v}");
    let sols = v["solutions"].as_array().unwrap();
    assert!(!sols.is_empty());
    for s in sols {
        assert!(s["fk_check"]["position_error_mm"].as_f64().unwrap() < 0.01);
        assert!(s["fk_check"]["axis_error_deg"].as_f64().unwrap() < 0.01);
        assert_eq!(s["fk_check"]["within_limits"], true);
        assert!(s["clearance_mm"].as_f64().unwrap() > 0.0, "config keep-outs applied: {s}");
    }
    let (code, v) = run_json(&["ik", "--json", "--entry", "3000,0,0", "--target", "3100,0,0"]);
    assert_eq!(code, Some(2));
    assert!(v["reason"].as_str().unwrap().contains("reach"), "{v}");
}

#[test]
fn ik_on_another_urdf_and_bad_chains() {
    let panda = repo().join("config/robot/arms/panda.urdf");
    let (code, v) = run_json(&[
        "ik",
        "--json",
        "--urdf",
        panda.to_str().unwrap(),
        "--base",
        "panda_link0",
        "--tip",
        "panda_link8",
        "--entry",
        "400,0,300",
        "--target",
        "400,0,100",
    ]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["chain"]["joints"].as_array().unwrap().len(), 7);
    let out = Command::new(STYLET)
        .args([
            "ik",
            "--urdf",
            panda.to_str().unwrap(),
            "--base",
            "panda_link0",
            "--tip",
            "gripper",
            "--entry",
            "1,2,3",
            "--target",
            "4,5,6",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gripper") && err.contains("panda_link8"), "{err}");
    let bad = std::env::temp_dir().join(format!("stylet-bad-{}.urdf", std::process::id()));
    std::fs::write(&bad, "<robot name='x'><link name='a'/><joint").unwrap();
    let out = Command::new(STYLET)
        .args(["fk", "--urdf", bad.to_str().unwrap(), "--base", "a", "--tip", "a", "--joints", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"));
}

fn write_points(tag: &str, pts: &[[f64; 3]]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("stylet-pts-{}-{tag}.txt", std::process::id()));
    let text: String = std::iter::once("# x y z (mm)\nx,y,z\n".to_string())
        .chain(pts.iter().map(|q| format!("{}, {}, {}\n", q[0], q[1], q[2])))
        .collect();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn register_point_lists_ordered_unordered_and_refused() {
    let frame = [
        [0.0, 0.0, 0.0],
        [120.0, 0.0, 0.0],
        [0.0, 90.0, 0.0],
        [135.0, 80.0, 10.0],
        [60.0, 140.0, 35.0],
        [20.0, 40.0, 70.0],
        [100.0, 30.0, 55.0],
    ];
    // CT = robot rotated 90 deg about z and shifted: robot_from_ct maps back.
    let ct: Vec<[f64; 3]> = frame.iter().map(|p| [-p[1] + 10.0, p[0] - 20.0, p[2] + 300.0]).collect();
    let ct_file = write_points("ct", &ct);
    let robot_file = write_points("robot", &frame);
    let (code, v) = run_json(&[
        "register",
        "--json",
        "--ct-points",
        ct_file.to_str().unwrap(),
        "--robot-points",
        robot_file.to_str().unwrap(),
        "--target",
        "40,60,330",
    ]);
    assert_eq!(code, Some(0), "{v}");
    let m = &v["robot_from_ct"];
    // Robot x = CT y + 20, robot y = -(CT x - 10), z - 300.
    assert!((m[0][1].as_f64().unwrap() - 1.0).abs() < 1e-9 && (m[0][3].as_f64().unwrap() - 20.0).abs() < 1e-6, "{m}");
    assert!(v["fre_rms_mm"].as_f64().unwrap() < 1e-6);
    assert!(v["predicted_tre_mm"].is_number());
    assert_eq!(v["markers"].as_array().unwrap().len(), 7);

    // Unordered: shuffled, one marker missing, one extra blob.
    let mut shuffled: Vec<[f64; 3]> = ct.iter().rev().skip(1).copied().collect();
    shuffled.push([500.0, 500.0, 500.0]);
    let shuffled_file = write_points("shuffled", &shuffled);
    let (code, v) = run_json(&[
        "register",
        "--json",
        "--unordered",
        "--ct-points",
        shuffled_file.to_str().unwrap(),
        "--robot-points",
        robot_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["markers_used"], 6);
    assert!(v["fre_rms_mm"].as_f64().unwrap() < 1e-6);

    // A moved marker is refused with its index.
    let mut moved = ct.clone();
    moved[3][2] += 6.0;
    let moved_file = write_points("moved", &moved);
    let (code, v) = run_json(&[
        "register",
        "--json",
        "--ct-points",
        moved_file.to_str().unwrap(),
        "--robot-points",
        robot_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(v["reason"].as_str().unwrap().contains("marker 3"), "{v}");

    // A malformed point file names file and line.
    let bad = std::env::temp_dir().join(format!("stylet-pts-{}-bad.txt", std::process::id()));
    std::fs::write(&bad, "1 2 3\n4 five 6\n").unwrap();
    let out = Command::new(STYLET)
        .args([
            "register",
            "--ct-points",
            bad.to_str().unwrap(),
            "--robot-points",
            robot_file.to_str().unwrap(),
            "--config",
        ])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2", bad.display())), "{err}");
}

#[test]
fn phantom_fiducials_and_ct_registration_end_to_end() {
    let out = std::env::temp_dir().join(format!("stylet-phantom-{}", std::process::id()));
    let (code, truth) = run_json(&[
        "sim",
        "phantom",
        "--json",
        "--seed",
        "5",
        "--dims",
        "240,240,180",
        "--spacing-mm",
        "1,1,1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{truth}");
    let ct = out.join("ct.nii.gz");
    // The label map lies on the CT grid; a label map of another scan does not.
    let labels = out.join("labels.nii.gz");
    let o = Command::new(STYLET)
        .args(["ct", "info", "--json", ct.to_str().unwrap(), "--labels", labels.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(info["labels"]["voxels_per_label"]["2"].as_u64().unwrap() > 1000, "liver voxels: {info}");
    let other = repo().join("../shared/data/ct/totalsegmentator-abdomen/example_seg.nii.gz");
    let bad = Command::new(STYLET)
        .args(["ct", "info", ct.to_str().unwrap(), "--labels", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not match the CT grid"));
    let (code, f) = run_json(&["fiducials", "--json", "--ct", ct.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(f["markers"].as_array().unwrap().len(), 7, "{f}");
    // --marker-config: the shipped bead config finds the same; a 10 mm marker config finds none
    // (the 4 mm beads are too small for it) and says why each was rejected.
    let beads = repo().join("config/markers/frame-beads-4mm.toml");
    let (code, same) =
        run_json(&["fiducials", "--json", "--ct", ct.to_str().unwrap(), "--marker-config", beads.to_str().unwrap()]);
    assert_eq!((code, &same), (Some(0), &f));
    let big = std::env::temp_dir().join(format!("stylet-markers-10mm-{}.toml", std::process::id()));
    std::fs::write(&big, std::fs::read_to_string(&beads).unwrap().replace("diameter_mm = 4.0", "diameter_mm = 10.0"))
        .unwrap();
    let (code, none) =
        run_json(&["fiducials", "--json", "--ct", ct.to_str().unwrap(), "--marker-config", big.to_str().unwrap()]);
    let _ = std::fs::remove_file(&big);
    assert_eq!(code, Some(0));
    assert_eq!(none["markers"].as_array().unwrap().len(), 0, "{none}");
    assert!(
        none["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["reason"].as_str().unwrap().starts_with("too small"))
            .count()
            >= 7,
        "{none}"
    );
    let t: Vec<f64> = truth["tumour_in_ct_lps_mm"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let target = format!("{},{},{}", t[0], t[1], t[2]);
    let frame = repo().join("config/robot/marker_frame.txt");
    let (code, reg) = run_json(&[
        "register",
        "--json",
        "--ct",
        ct.to_str().unwrap(),
        "--robot-fiducials",
        frame.to_str().unwrap(),
        "--target",
        &target,
    ]);
    assert_eq!(code, Some(0), "{reg}");
    // Error at the tumour against the ground truth.
    let m = |v: &serde_json::Value| -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect()
    };
    let (est, tru) = (m(&reg["robot_from_ct"]), m(&truth["robot_from_ct"]));
    let apply = |a: &Vec<Vec<f64>>| -> Vec<f64> {
        (0..3).map(|r| a[r][0] * t[0] + a[r][1] * t[1] + a[r][2] * t[2] + a[r][3]).collect()
    };
    let (pe, pt) = (apply(&est), apply(&tru));
    let err = ((pe[0] - pt[0]).powi(2) + (pe[1] - pt[1]).powi(2) + (pe[2] - pt[2]).powi(2)).sqrt();
    assert!(err < 0.5, "error at the tumour {err} mm");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn phantom_scenario_as_jpeg2000_dicom_reads_back() {
    let out = std::env::temp_dir().join(format!("stylet-phantom-j2k-{}", std::process::id()));
    let scenario = repo().join("config/scenarios/two-tumours.toml");
    let (code, truth) = run_json(&[
        "sim",
        "phantom",
        "--json",
        "--scenario",
        scenario.to_str().unwrap(),
        "--dims",
        "200,200,190",
        "--spacing-mm",
        "1,1,1",
        "--dicom",
        "jpeg2000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{truth}");
    assert_eq!(truth["tumours"].as_array().unwrap().len(), 2, "{truth}");
    assert_eq!(truth["seed"], 7);
    let dicom = out.join("dicom");
    let (code, info) = run_json_no_config(&["ct", "info", "--json", dicom.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{info}");
    assert_eq!(info["geometry"]["dimensions"], serde_json::json!([200, 200, 190]), "{info}");
    assert!(info.to_string().contains("1.2.840.10008.1.2.4.90"), "transfer syntax not reported: {info}");
    // Same geometry and HU range (to the int16 quantum) as the NIfTI written beside it.
    let (code, nifti) = run_json_no_config(&["ct", "info", "--json", out.join("ct.nii.gz").to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(info["geometry"]["bounds_lps_mm"], nifti["geometry"]["bounds_lps_mm"]);
    for i in 0..2 {
        let (a, b) = (
            info["geometry"]["value_range"][i].as_f64().unwrap(),
            nifti["geometry"]["value_range"][i].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 0.5, "HU range {a} vs {b}");
    }
    // One bead missing (index 3) and two bead-like extras: the 6 frame beads present are found,
    // and every detection is a bead (frame or extra; an extra that lands in bone merges with it).
    let (code, f) = run_json(&["fiducials", "--json", "--ct", dicom.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let pt = |p: &serde_json::Value| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap(), p[2].as_f64().unwrap()];
    let pts = |v: &serde_json::Value| -> Vec<[f64; 3]> { v.as_array().unwrap().iter().map(pt).collect() };
    let frame = pts(&truth["markers_in_ct_lps_mm"]);
    let extras = pts(&truth["extra_beads_in_ct_lps_mm"]);
    let dist =
        |a: &[f64; 3], b: &[f64; 3]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
    let found: Vec<[f64; 3]> = f["markers"].as_array().unwrap().iter().map(|m| pt(&m["center_lps_mm"])).collect();
    for (i, m) in frame.iter().enumerate() {
        let hit = found.iter().any(|d| dist(d, m) < 1.0);
        assert_eq!(hit, i != 3, "frame bead {i}: {f}");
    }
    for d in &found {
        assert!(frame.iter().chain(&extras).any(|m| dist(d, m) < 1.0), "{d:?} is no bead");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resp_eval_cross_validates_by_recording_on_the_real_traces() {
    let dir = repo().join("../shared/data/respiration/krilavicius");
    let (code, v) =
        run_json(&["resp", "eval", "--cv", "--json", "--dir", dir.to_str().unwrap(), "--horizon-ms", "400"]);
    assert_eq!(code, Some(0), "{v}");
    let h = &v["horizons"][0];
    assert_eq!((h["recordings"].as_u64(), h["traces"].as_u64()), (Some(5), Some(15)), "{h}");
    let candidates: Vec<&str> = h["candidates"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    let mut seen = std::collections::BTreeSet::new();
    for f in h["folds"].as_array().unwrap() {
        assert!(candidates.contains(&f["chosen"].as_str().unwrap()), "{f}");
        let rec = f["recording"].as_str().unwrap();
        for t in f["traces"].as_array().unwrap() {
            // The markers of one recording are held out together, and each trace once.
            let name = t["trace"].as_str().unwrap();
            assert!(name.starts_with(rec), "{name} held out with {rec}");
            assert!(seen.insert(name.to_string()), "{name} twice");
            let ratio = t["ratio_to_hold"].as_f64().unwrap();
            assert!(ratio.is_finite() && ratio > 0.0, "{t}");
        }
    }
    assert_eq!(seen.len(), 15);
    // Issue 16's goal, held out: <= 0.45x on average, no trace worse than 0.9x, and prediction
    // beats holding the last sample on every trace.
    let o = &h["held_out"];
    assert!(o["mean_ratio_to_hold"].as_f64().unwrap() <= 0.45, "{o}");
    assert!(o["worst_ratio_to_hold"].as_f64().unwrap() <= 0.9, "{o}");
    assert_eq!(o["traces_worse_than_hold"], 0, "{o}");
    // The gate keeps its promise held out: every trace's p95 residual inside the window, and it
    // opens at least 35 % of the time on average (issue 16, item 3).
    assert!(o["worst_residual_p95_minus_window_mm"].as_f64().unwrap() <= 0.0, "{o}");
    assert!(o["mean_duty_cycle"].as_f64().unwrap() >= 0.35, "{o}");
    // --cv needs a folder of recordings.
    let out = Command::new(STYLET)
        .args(["resp", "eval", "--cv", "--trace"])
        .arg(dir.join("201205101522-LAC-1-N-138-6.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--dir"), "{out:?}");
}

/// A real respiratory belt in ADC counts (systole's recording, tests/peers/belt_from_systole.py)
/// at 1000 Hz and at 25 Hz: `resp eval` resamples it to the working rate and, uncalibrated,
/// scales it from its breathing amplitude; the gate's window is then 30 % of that amplitude.
#[test]
fn resp_eval_takes_a_belt_in_adc_counts_at_1000_and_at_25_hz() {
    let dir = std::env::temp_dir().join(format!("stylet-belt-{}", std::process::id()));
    let made = Command::new("python3")
        .arg(repo().join("tests/peers/belt_from_systole.py"))
        .arg(&dir)
        // Ten minutes from the fifth: the first five hold large movement artefacts (on them the
        // blend is 1.008x of holding the last sample: issue 16, item 2).
        .args(["10", "5"])
        .output()
        .unwrap();
    if made.status.code() == Some(2) {
        assert!(std::env::var_os("CI").is_none(), "systole is required in CI (.ci/run installs it)");
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&made.stderr).trim());
        return;
    }
    assert!(made.status.success(), "{made:?}");
    let mut ratios = Vec::new();
    for (rate, file) in [(1000.0, "belt-1000hz-counts.csv"), (25.0, "belt-25hz-counts.csv")] {
        let trace = dir.join(file);
        let (code, v) =
            run_json(&["resp", "eval", "--json", "--trace", trace.to_str().unwrap(), "--horizon-ms", "400"]);
        assert_eq!(code, Some(0), "{v}");
        let t = &v["traces"][0];
        assert_eq!(t["unit"], "counts", "{t}");
        assert_eq!(t["samples"].as_u64(), Some((600.0 * rate) as u64), "{t}");
        // 10 minutes at the 10 Hz working rate, whatever the sensor's.
        let working = t["working_rate_samples"].as_u64().unwrap();
        assert!((5990..=6001).contains(&working), "{working} samples at the working rate: {t}");
        let k = t["mm_per_unit"].as_f64().unwrap();
        assert!(k > 0.0 && k < 0.01, "a 16-bit belt has many counts per mm-equivalent: {t}");
        let h = &t["horizons"][0];
        let hold = h["hold_rmse_mm"].as_f64().unwrap();
        assert!(hold > 1.0 && hold < 10.0, "in mm-equivalent, not counts: {h}");
        let combined = h["methods"].as_array().unwrap().iter().find(|m| m["method"] == "combined").unwrap();
        let ratio = combined["ratio_to_hold"].as_f64().unwrap();
        // Never worse than holding the last sample (the blend falls back when it is losing).
        assert!(ratio <= 1.0, "{combined}");
        ratios.push(ratio);
        let g = &h["gate"];
        assert!(g["duty_cycle"].as_f64().unwrap() > 0.2, "{g}");
        assert!(g["residual_p95_mm"].as_f64().unwrap() <= g["window_half_width_mm"].as_f64().unwrap(), "{g}");
    }
    // The two rates of one belt give one answer.
    assert!((ratios[0] - ratios[1]).abs() < 0.05, "{ratios:?}");
    // The run as numbers, and the prediction over the belt's artefact-free stretches.
    let timeline = dir.join("timeline.csv");
    let trace = dir.join("belt-25hz-counts.csv");
    let out = Command::new(STYLET)
        .args(["resp", "eval", "--horizon-ms", "400", "--trace"])
        .arg(&trace)
        .arg("--timeline")
        .arg(&timeline)
        .arg("--config")
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&timeline).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# horizon_s = 0.4"));
    assert_eq!(lines.next(), Some("t_s,value_mm,predicted_mm,open,reference_mm"));
    assert!((5990..=6001).contains(&lines.count()), "one row per working-rate sample");
    let clean =
        Command::new("python3").arg(repo().join("bench/artefact_free_ratio.py")).arg(&timeline).output().unwrap();
    assert!(clean.status.success(), "{clean:?}");
    let report = String::from_utf8_lossy(&clean.stdout);
    let free = report
        .lines()
        .find_map(|l| l.strip_prefix("artefact-free parts: ratio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse::<f64>().ok())
        .unwrap();
    // Issue 16's 0.6x holds where the belt is not moving with the patient (docs/PERFORMANCE.md).
    assert!(free <= 0.6, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The gate's trade-off over the shared traces: duty against the worst residual for each window
/// and margin, as a table and a picture; the shipped gate keeps every trace inside its window.
#[test]
fn resp_eval_plots_the_gates_trade_off() {
    let dir = repo().join("../shared/data/respiration/krilavicius");
    let png = std::env::temp_dir().join(format!("stylet-tradeoff-{}.png", std::process::id()));
    let (code, v) = run_json(&[
        "resp",
        "eval",
        "--json",
        "--dir",
        dir.to_str().unwrap(),
        "--horizon-ms",
        "400",
        "--tradeoff",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{v}");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 21, "{v}");
    let at = |hw: f64, k: f64| {
        points
            .iter()
            .find(|p| p["half_width_mm"].as_f64() == Some(hw) && p["confidence_factor"].as_f64() == Some(k))
            .unwrap()
    };
    let shipped = at(3.0, 1.0);
    assert_eq!(shipped["traces_outside"], 0, "{shipped}");
    assert!(shipped["mean_duty"].as_f64().unwrap() >= 0.35, "{shipped}");
    // A wider window opens more, a larger margin less.
    let duty = |p: &serde_json::Value| p["mean_duty"].as_f64().unwrap();
    assert!(duty(at(4.0, 1.0)) > duty(shipped) && duty(shipped) > duty(at(2.0, 1.0)), "{v}");
    assert!(duty(at(3.0, 0.0)) > duty(shipped) && duty(shipped) > duty(at(3.0, 2.0)), "{v}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let _ = std::fs::remove_file(png);
}

#[test]
fn resp_eval_on_real_traces_with_json_and_a_plot() {
    let dir = repo().join("../shared/data/respiration/krilavicius");
    let trace = dir.join("201205101522-LAC-1-N-138-6.csv");
    let png = std::env::temp_dir().join(format!("stylet-resp-{}.png", std::process::id()));
    let (code, v) = run_json(&[
        "resp",
        "eval",
        "--json",
        "--trace",
        trace.to_str().unwrap(),
        "--horizon-ms",
        "200,400",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{v}");
    let bytes = std::fs::read(&png).unwrap();
    let _ = std::fs::remove_file(&png);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let h = &v["traces"][0]["horizons"];
    assert_eq!(h.as_array().unwrap().len(), 2);
    for k in 0..2 {
        let methods = h[k]["methods"].as_array().unwrap();
        let combined = methods.iter().find(|m| m["method"] == "combined").unwrap();
        // Prediction beats holding the last sample on this regular trace at both horizons.
        assert!(combined["ratio_to_hold"].as_f64().unwrap() < 0.5, "{}", h[k]);
        let gate = &h[k]["gate"];
        assert!(gate["duty_cycle"].as_f64().unwrap() > 0.3, "{gate}");
        assert!(gate["residual_p95_mm"].as_f64().unwrap() <= gate["window_half_width_mm"].as_f64().unwrap());
    }
    // A folder: one entry per trace and a summary; a plain CSV trace is read too.
    let csv_dir = std::env::temp_dir().join(format!("stylet-resp-dir-{}", std::process::id()));
    std::fs::create_dir_all(&csv_dir).unwrap();
    let mut text = String::from("t_s,value\n");
    for i in 0..900 {
        let t = f64::from(i) * 0.1;
        text.push_str(&format!("{t:.1},{:.3}\n", 8.0 * (std::f64::consts::PI * t / 4.0).sin().powi(6)));
    }
    text.push_str("90.0,not-a-number\n");
    std::fs::write(csv_dir.join("synthetic.csv"), text).unwrap();
    std::fs::copy(&trace, csv_dir.join("real.csv")).unwrap();
    let (code, v) = run_json(&["resp", "eval", "--json", "--dir", csv_dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&csv_dir);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["traces"].as_array().unwrap().len(), 2);
    assert_eq!(v["summary"][0]["traces"], 2);
    let synthetic = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trace"].as_str().unwrap().ends_with("synthetic.csv"))
        .unwrap();
    assert_eq!(synthetic["rows_reported"][0]["line"], 902, "{synthetic}");
}

/// A small phantom (160 x 160 x 127 voxels of 1.5 mm) for the planning tests, in a fresh folder
/// (`extra`: more `sim phantom` options).
fn plan_phantom(tag: &str, extra: &[&str]) -> PathBuf {
    let out = std::env::temp_dir().join(format!("stylet-{tag}-{}", std::process::id()));
    let mut args = vec!["sim", "phantom", "--json", "--dims", "160,160,127", "--spacing-mm", "1.5,1.5,1.5"];
    args.extend(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, _) = run_json(&args);
    assert_eq!(code, Some(0));
    out
}

/// `stylet plan --dicom-seg` (issue 19, item 1): the tumour and the best plan's zone as a DICOM
/// Segmentation on the CT series, read by highdicom and pydicom (tests/peers/read_seg.py) and
/// checked by dciodvfy; a CT file that is not DICOM is refused, naming it.
#[test]
fn plan_writes_the_tumour_and_the_zone_as_a_dicom_segmentation() {
    let out = plan_phantom("plan-dicom-seg", &["--dicom"]);
    let (dicom, labels, seg) = (out.join("dicom"), out.join("labels.nii.gz"), out.join("plan.seg.dcm"));
    let (code, v) = run_json(&[
        "plan",
        "--json",
        "--ct",
        dicom.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--tumour",
        "3",
        "--dicom-seg",
        seg.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{v}");
    let tumour_voxels = v["report"]["tumour_voxels"].as_u64().unwrap();
    assert_eq!(v["dicom_seg"]["voxels"][0].as_u64().unwrap(), tumour_voxels, "{}", v["dicom_seg"]);
    assert!(v["dicom_seg"]["voxels"][1].as_u64().unwrap() > tumour_voxels, "{}", v["dicom_seg"]);
    let o = Command::new("python3").arg(repo().join("tests/peers/read_seg.py")).arg(&seg).output().unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&o.stderr));
    } else {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["source_instances"], 127, "{r}");
        let labels: Vec<&str> =
            r["segments"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
        assert_eq!(labels, ["Tumour", "Planned ablation zone"]);
        let read: Vec<u64> = ["1", "2"]
            .iter()
            .map(|n| r["by_position"][n].as_array().unwrap().iter().map(|f| f["on"][0].as_u64().unwrap()).sum())
            .collect();
        assert_eq!(read[0], tumour_voxels, "{r}");
        assert_eq!(read[1], v["dicom_seg"]["voxels"][1].as_u64().unwrap());
    }
    match Command::new("dciodvfy").arg(&seg).output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
            assert!(!text.lines().any(|l| l.starts_with("Error")), "{text}");
        }
        Err(e) => assert!(std::env::var_os("CI").is_none(), "dciodvfy: {e}"),
    }
    let nifti = out.join("ct.nii.gz");
    let o = Command::new(STYLET)
        .args(["plan", "--ct", nifti.to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--tumour", "3"])
        .arg("--dicom-seg")
        .arg(out.join("no.seg.dcm"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--dicom-seg needs the CT as a DICOM series folder") && err.contains("ct.nii.gz"), "{err}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn plan_on_a_phantom_with_json_picture_and_clear_errors() {
    let out = plan_phantom("plan", &[]);
    let (ct, labels, png) = (out.join("ct.nii.gz"), out.join("labels.nii.gz"), out.join("plan.png"));
    let (code, v) = run_json(&[
        "plan",
        "--json",
        "--ct",
        ct.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--tumour",
        "3",
        "--png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["label_table"], "phantom");
    let plans = v["report"]["plans"].as_array().unwrap();
    assert!(!plans.is_empty(), "{v}");
    let rules: Vec<&str> = plans[0]["checks"].as_array().unwrap().iter().map(|c| c["rule"].as_str().unwrap()).collect();
    for r in ["PATH-1", "PATH-2", "PATH-3", "PATH-4", "PATH-5", "PATH-6", "MAR-1", "OAR-1", "OAR-2", "OAR-3"] {
        assert!(rules.contains(&r), "{r} missing: {rules:?}");
    }
    assert!(plans[0]["positions"][0]["entry_lps_mm"].as_array().unwrap().len() == 3);
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    // With the registration (here the phantom's ground truth), only plans the arm reaches.
    let truth = out.join("truth.json");
    let (code, r) = run_json(&[
        "plan",
        "--json",
        "--ct",
        ct.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--tumour",
        "3",
        "--registration",
        truth.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{r}");
    assert!(r["robot"]["reachable"].as_u64().unwrap() > 0, "{}", r["robot"]);
    assert!(!r["report"]["plans"].as_array().unwrap().is_empty());
    // A registration that scales is no rigid transform: refused, naming the file and the field.
    let mut scaled: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    for r in 0..3 {
        for c in 0..3 {
            scaled["robot_from_ct"][r][c] = serde_json::json!(scaled["robot_from_ct"][r][c].as_f64().unwrap() * 1.02);
        }
    }
    let scaled_path = out.join("scaled.json");
    std::fs::write(&scaled_path, scaled.to_string()).unwrap();
    let o = Command::new(STYLET)
        .args(["plan", "--ct", ct.to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--tumour", "3"])
        .arg("--registration")
        .arg(&scaled_path)
        .arg("--config")
        .arg(repo().join("config"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("scaled.json") && err.contains("robot_from_ct") && err.contains("not a rigid transform"),
        "{err}"
    );
    // A target outside the liver: a clear error naming the point and what is there.
    let o = Command::new(STYLET)
        .args([
            "plan",
            "--ct",
            ct.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--target=100,0,0",
            "--config",
        ])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("outside the liver") && err.contains("100.0"), "{err}");
    // A label map from another scan.
    let other = repo().join("../shared/data/ct/totalsegmentator-abdomen/example_seg.nii.gz");
    let o = Command::new(STYLET)
        .args(["plan", "--ct", ct.to_str().unwrap(), "--labels", other.to_str().unwrap(), "--target=0,0,0", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not lie on the CT grid"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Writes `v` as a 3D Slicer-style `.seg.nrrd` (uint8, LPS, a leading list axis of one layer)
/// naming each label value's segment.
fn write_seg_nrrd(v: &stylet_imaging::Volume, names: &[(u32, &str)], path: &std::path::Path) {
    let axis = |k: usize| {
        let d = v.direction.column(k) * v.spacing_mm[k];
        format!("({},{},{})", d[0], d[1], d[2])
    };
    let mut h = format!(
        "NRRD0004\ntype: unsigned char\ndimension: 4\nspace: left-posterior-superior\nsizes: 1 {} {} {}\n\
         space directions: none {} {} {}\nkinds: list domain domain domain\nencoding: raw\n\
         space origin: ({},{},{})\n",
        v.dims[0],
        v.dims[1],
        v.dims[2],
        axis(0),
        axis(1),
        axis(2),
        v.origin.to_array()[0],
        v.origin.to_array()[1],
        v.origin.to_array()[2]
    );
    for (i, (value, name)) in names.iter().enumerate() {
        h += &format!("Segment{i}_Name:={name}\nSegment{i}_LabelValue:={value}\nSegment{i}_Layer:=0\n");
    }
    h += "\n";
    let mut bytes = h.into_bytes();
    bytes.extend(v.voxels.iter().map(|x| x.round() as u8));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn plan_reads_a_slicer_segmentation_by_its_segment_names() {
    let out = plan_phantom("plan-seg", &[]);
    let (ct, labels, seg) = (out.join("ct.nii.gz"), out.join("labels.nii.gz"), out.join("labels.seg.nrrd"));
    // The phantom's label values under the names a user might give them in Slicer.
    let names = [
        (1, "Body"),
        (2, "Liver"),
        (3, "Liver tumor"),
        (4, "Hepatic and portal veins"),
        (5, "Ribs"),
        (6, "Lungs"),
        (7, "Gallbladder"),
        (8, "Bile duct"),
        (9, "Bowel"),
        (10, "Bone anchor (metal)"),
        (11, "Vertebrae"),
        (12, "Heart"),
    ];
    write_seg_nrrd(&stylet_imaging::load_nifti(&labels).unwrap(), &names, &seg);
    let plan = |labels: &std::path::Path| {
        let (code, v) = run_json(&[
            "plan",
            "--json",
            "--ct",
            ct.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--tumour",
            "3",
        ]);
        assert_eq!(code, Some(0), "{v}");
        v
    };
    let (by_names, by_table) = (plan(&seg), plan(&labels));
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(by_names["label_table"], "segment names");
    let classes: Vec<&str> =
        by_names["label_classes"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(
        classes,
        [
            "background",
            "body",
            "liver",
            "tumour",
            "vessel",
            "bone",
            "lung",
            "gallbladder",
            "bile_duct",
            "bowel",
            "bone",
            "spine",
            "heart"
        ]
    );
    // The same classes as the phantom's own table: the same plans.
    assert_eq!(by_names["report"]["plans"], by_table["report"]["plans"]);
    assert!(!by_names["report"]["plans"].as_array().unwrap().is_empty());
}

#[test]
fn dicom_listen_prints_the_series_storescu_and_dicom_send_send_and_stops_after_them() {
    use std::io::{BufRead, BufReader};
    // DCMTK's storescu, not pynetdicom's app of the same name that may come first on the PATH.
    let storescu =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join("storescu")).find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).to_lowercase().contains("dcmtk"))
        });
    let Some(storescu) = storescu else {
        assert!(std::env::var_os("CI").is_none(), "storescu not found: apt install dcmtk");
        eprintln!("SKIPPED: storescu not found (apt install dcmtk)");
        return;
    };
    let work = std::env::temp_dir().join(format!("stylet-cli-dicom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (nx, ny, nz) = (24, 20, 5);
    let v = stylet_imaging::Volume {
        dims: [nx, ny, nz],
        spacing_mm: [0.8, 0.8, 2.0],
        origin: stylet_core::frame::Point::new(-10.0, -8.0, -100.0),
        direction: nalgebra::Matrix3::identity(),
        voxels: (0..nx * ny * nz).map(|i| (i % 900) as f32 - 500.0).collect(),
    };
    let files = stylet_imaging::write_series(
        &v,
        &work.join("sent"),
        "1.2.826.0.1.3680043.10.2",
        "1.2.826.0.1.3680043.10.2.1",
        "cli",
    )
    .unwrap();
    let files2 = stylet_imaging::write_series(
        &v,
        &work.join("sent2"),
        "1.2.826.0.1.3680043.10.2",
        "1.2.826.0.1.3680043.10.2.2",
        "cli",
    )
    .unwrap();
    let rx = work.join("received");
    let mut node = Command::new(STYLET)
        .args([
            "dicom",
            "listen",
            "--port",
            "0",
            "--json",
            "--series",
            "2",
            "--quiet-s",
            "0.5",
            "--allow-aet",
            "SCANNER",
        ])
        .arg("--out")
        .arg(&rx)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "listening", "{first}");
    let addr: std::net::SocketAddr = first["address"].as_str().unwrap().parse().unwrap();
    let sent = Command::new(storescu)
        .args(["-aet", "SCANNER", "-aec", "STYLET", &addr.ip().to_string(), &addr.port().to_string()])
        .args(&files)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    // Stylet's own sender: refused for a calling AE title not allowed, with the node named; then
    // the second series, sent as SCANNER.
    let to = format!("STYLET@{addr}");
    let refused = Command::new(STYLET)
        .args(["dicom", "send", "--to", &to, "--aet", "OTHER"])
        .arg(work.join("sent2"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&to), "{}", String::from_utf8_lossy(&refused.stderr));
    let (code, sent2) = parse_json(
        &Command::new(STYLET)
            .args(["dicom", "send", "--json", "--to", &to, "--aet", "SCANNER"])
            .arg(work.join("sent2"))
            .output()
            .unwrap(),
    );
    assert_eq!(code, Some(0), "{sent2}");
    assert_eq!(sent2["sent"], files2.len(), "{sent2}");
    let done: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert!(node.wait().unwrap().success());
    let series: Vec<&serde_json::Value> = done.iter().filter(|e| e["event"] == "series").collect();
    assert_eq!(series.len(), 2, "{done:?}");
    for s in series {
        assert_eq!(s["state"], "complete", "{s}");
        assert_eq!(s["instances"], 5, "{s}");
        assert_eq!(s["volume"]["dimensions"], serde_json::json!([24, 20, 5]), "{s}");
    }
}

/// `stylet verify` (issue 18, item 4) on the phantom: the post-ablation CT rendered from a known
/// zone (the liver moved by another breath-hold); the margin within 1 mm of the truth's, VER-1's
/// verdict and exit status, where the rim is left, the margin map drawn; bad inputs named.
#[test]
fn verify_measures_the_margin_on_a_post_ablation_ct_and_says_when_ver1_fails() {
    use stylet_core::frame::{Ct, Point, Vector};
    use stylet_planning::heat_sink::ZoneShape;
    let out = std::env::temp_dir().join(format!("stylet-verify-cli-{}", std::process::id()));
    let (code, _) = run_json(&[
        "sim",
        "phantom",
        "--json",
        "--dims",
        "240,240,160",
        "--spacing-mm",
        "1.0,1.0,1.2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    let (ct_path, labels_path) = (out.join("ct.nii.gz"), out.join("labels.nii.gz"));
    let pre = stylet_imaging::load_nifti(&ct_path).unwrap();
    let labels = stylet_imaging::load_nifti(&labels_path).unwrap();
    let [nx, ny, _] = pre.dims;
    let tumour: Vec<usize> = (0..labels.voxels.len()).filter(|&i| labels.voxels[i] == 3.0).collect();
    let at = |i: usize| pre.ct_from_index((i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64);
    let centre =
        tumour.iter().fold(nalgebra::Vector3::zeros(), |a, &i| a + at(i).to_nalgebra().coords) / tumour.len() as f64;
    let is_t = |i: i64| i >= 0 && (i as usize) < labels.voxels.len() && labels.voxels[i as usize] == 3.0;
    let surface: Vec<Point<Ct>> = tumour
        .iter()
        .filter(|&&i| {
            let i = i as i64;
            let (sx, sy, sz) = (1, nx as i64, (nx * ny) as i64);
            [i - sx, i + sx, i - sy, i + sy, i - sz, i + sz].iter().any(|&q| !is_t(q))
        })
        .map(|&i| at(i))
        .collect();
    let axis = nalgebra::Vector3::new(0.3, -0.9, 0.3).normalize();
    let zone = stylet_planning::Zone {
        device: "test".into(),
        setting: "test".into(),
        long_mm: 60.0,
        short_mm: 40.0,
        centre_from_tip_mm: 5.0,
        power_w: 100.0,
        time_s: 480.0,
    };
    // Margins of about 9 and 3 mm: each verdict clear of VER-1's 5 mm by more than the 1 mm the
    // measurement may be off.
    for (name, offset, seed) in [("centred", [0.0, 0.0, -1.0], 5), ("off", [7.0, 0.0, 0.0], 6)] {
        let c = centre + nalgebra::Vector3::from(offset);
        let shape = ZoneShape::ellipsoid(Point::from_coords(c), axis, zone.long_mm, zone.short_mm);
        let tissue: Vec<bool> = labels.voxels.iter().map(|l| [2.0, 3.0, 4.0].contains(l)).collect();
        let mask: Vec<bool> = shape.mask(&pre).iter().zip(&tissue).map(|(z, t)| *z && *t).collect();
        let tip = Point::<Ct>::from_coords(c + axis * 5.0);
        let entry = Point::<Ct>::from_coords(c + axis * 120.0);
        let post = stylet_sim::post_ablation::render_post_ablation(
            &pre,
            &labels,
            &[stylet_sim::post_ablation::Ablated { zone: mask, tip, entry }],
            Vector::new(1.0, -1.5, 6.0),
            &stylet_sim::post_ablation::Look::default(),
            1.0,
            seed,
        );
        let post_path = out.join(format!("post-{name}.nii.gz"));
        stylet_imaging::write_nifti(&post, &post_path).unwrap();
        let truth = stylet_planning::margin_mm(
            &surface,
            &zone,
            &[(Point::from_coords(c), stylet_core::frame::Vector::from_nalgebra(axis))],
        );
        let png = out.join(format!("margin-{name}.png"));
        let rrd = out.join(format!("margin-{name}.rrd"));
        let (code, v) = run_json(&[
            "verify",
            "--rrd",
            rrd.to_str().unwrap(),
            "--json",
            "--pre",
            ct_path.to_str().unwrap(),
            "--post",
            post_path.to_str().unwrap(),
            "--tumour",
            labels_path.to_str().unwrap(),
            "--tumour-label",
            "3",
            "--png",
            png.to_str().unwrap(),
        ]);
        let margin = v["min_margin_mm"].as_f64().unwrap_or_else(|| panic!("{name}: {v}"));
        assert!((margin - truth).abs() <= 1.0, "{name}: margin {margin} vs the truth's {truth}: {v}");
        let shift: Vec<f64> = v["liver_shift_mm"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!(((shift[0] - 1.0).powi(2) + (shift[1] + 1.5).powi(2) + (shift[2] - 6.0).powi(2)).sqrt() < 1.0, "{v}");
        // The markers are where they were: no motion on the table.
        assert_eq!(v["markers"]["used"], true, "{v}");
        assert!(v["markers"]["translation_mm"].as_f64().unwrap() < 0.3, "{v}");
        let pass = truth >= 5.0;
        assert_eq!(v["ver1"]["pass"], pass, "{name}: truth {truth}: {v}");
        assert_eq!(code, Some(if pass { 0 } else { 2 }), "{name}: {v}");
        if !pass {
            // The zone went left (+x): the rim left untreated is on the right.
            assert!(v["under_treated_where"].as_str().unwrap().contains("right"), "{v}");
            assert!(v["under_treated_fraction"].as_f64().unwrap() > 0.0, "{v}");
        }
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"), "{}", png.display());
        // The margin map in rerun, read back by rerun's own reader.
        let o = Command::new("python3").arg(repo().join("tests/peers/read_rrd.py")).arg(&rrd).output().unwrap();
        if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
            eprintln!("SKIPPED: {}", String::from_utf8_lossy(&o.stderr));
            continue;
        }
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let e = &r["entities"];
        for path in ["/verify/tumour/held", "/verify/zone", "/verify/min_margin", "/verify/verdict"] {
            assert!(e[path].is_object(), "{name}: {path} missing: {}", e);
        }
        assert_eq!(e["/verify/tumour/under"].is_object(), !pass, "{name}: {e}");
    }
    // Bad inputs, named.
    let o = Command::new(STYLET)
        .args(["verify", "--pre", ct_path.to_str().unwrap(), "--post", ct_path.to_str().unwrap(), "--tumour"])
        .arg(&labels_path)
        .args(["--tumour-label", "99", "--no-markers", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no tumour voxels") && err.contains("label 99"), "{err}");
    let o = Command::new(STYLET)
        .args(["verify", "--pre", ct_path.to_str().unwrap(), "--post", ct_path.to_str().unwrap(), "--tumour"])
        .arg(&labels_path)
        .args(["--tumour-label", "3", "--no-markers", "--config"])
        .arg(repo().join("config"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no ablation zone at the seed"),
        "the planning CT is no post-ablation CT: {err}"
    );
    let _ = std::fs::remove_dir_all(out);
}
