//! `stylet sim world`: the simulated patient as a process of its own, behind the same interfaces
//! as a CT suite's devices, for `stylet procedure` in another process: the arm's controller on a
//! pty, the respiratory sensor on a pty (the patient's breathing, live), and a CT scanner that
//! scans when the technologist asks (a line on stdin) and sends the series to a DICOM node
//! (C-STORE). The planning CT and its labels are written as files for the site config. At the
//! end (`end` or end of input) it prints what only the world knows: the true tip at the last CT
//! and its distance to the tumour, and the controller's wire monitor.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context as _;
use serde_json::json;
use stylet_dicom_node::{Destination, Sender};
use stylet_imaging::{PixelEncoding, SeriesMeta};
use stylet_procedure::ports::{Clock as _, CtPurpose, CtSource as _, Respiration as _};
use stylet_safety::SafetyConfig;
use stylet_sim::world::HostDrivenArm;
use stylet_suite::ct::{dicom_datetime, unix_now};

/// Options of `stylet sim world`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorldArgs {
    /// Scenario file [default: CONFIG/scenarios/easy.toml].
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed (patient, noise, needle deflection) [default: the scenario's].
    #[arg(long)]
    seed: Option<u64>,
    /// The DICOM node the scanner sends its series to.
    #[arg(long, value_name = "AE@HOST:PORT")]
    node: String,
    /// The scanner's own AE title.
    #[arg(long, default_value = "CT_SCANNER")]
    aet: String,
    /// Output folder: planning/ (the planning CT as DICOM, its labels) and scans/ (each series sent).
    #[arg(long)]
    out: PathBuf,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON lines (the devices first, then one per scan, the truth at the end).
    #[arg(long)]
    json: bool,
}

/// What the technologist can ask on stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// Take a CT now (in the next end-exhale breath-hold) and send it.
    Scan,
    /// Take it, but send it as another patient's series (a mix-up at the scanner).
    ScanOtherPatient,
    /// Take it, and cut the transfer off half-way (A-ABORT).
    ScanCut,
    /// Unplug the respiratory sensor (its pty closes).
    UnplugSensor,
    /// Finish: print the truth.
    End,
}

fn parse_ask(line: &str) -> Option<Ask> {
    Some(match line.trim() {
        "scan" => Ask::Scan,
        "scan other-patient" => Ask::ScanOtherPatient,
        "scan cut" => Ask::ScanCut,
        "unplug sensor" => Ask::UnplugSensor,
        "end" | "quit" => Ask::End,
        _ => return None,
    })
}

/// Writes `volume` as a series under `dir` and sends it (all, or the first half then A-ABORT).
fn send_scan(
    volume: &stylet_imaging::Volume,
    dir: &Path,
    meta: &SeriesMeta,
    dest: &Destination,
    cut: bool,
) -> anyhow::Result<usize> {
    let files = stylet_imaging::write_series_with(volume, dir, meta, PixelEncoding::Uncompressed)?;
    let mut sender = Sender::connect(dest, &files)?;
    let n = if cut { files.len() / 2 } else { files.len() };
    for f in &files[..n] {
        sender.store(f)?;
    }
    if cut {
        sender.abort()?;
    } else {
        sender.release()?;
    }
    Ok(n)
}

pub(crate) fn run(args: &WorldArgs) -> anyhow::Result<ExitCode> {
    let path = args.scenario.clone().unwrap_or_else(|| args.config.join("scenarios").join("easy.toml"));
    let scenario = stylet_sim::scenario::Scenario::load(&path)?;
    let seed = args.seed.unwrap_or(scenario.phantom.seed);
    let dest = crate::dicomcmd::destination(&args.node, &args.aet)?;
    let dcfg = crate::demo::driver_config(&args.config)?;
    let safety = SafetyConfig::load_dir(&args.config)?;
    // SIGTERM, SIGHUP (its terminal closed) or SIGINT ends it as `end` does, the host tuning
    // put back (crate::signals).
    let end = crate::signals::EndRequest::watch().context("watching for SIGTERM, SIGHUP and SIGINT")?;
    let rt = crate::realtime::prepare(&args.config, stylet_rt::MemoryLock::Current)?;
    let controller =
        crate::simcmd::InProcessSim::start(&args.config, &[], Some(rt.schedule(stylet_rt::Role::Controller)))?;
    let controller_path = controller.path.clone();
    let arm = HostDrivenArm::new(controller, safety);
    let mut world = crate::demo::world(arm, &scenario, seed, &args.config, &dcfg)?;

    // The planning CT, as the scanner stored it before the procedure, and its segmentation.
    let planning = world.planning()?.context("the world has no planning CT")?;
    let study = format!("1.2.826.0.1.3680043.10.543.{seed}");
    let (ct_dir, labels, tumour_label) = write_planning(&planning, &study, &args.out.join("planning"))?;

    let sensor = stylet_sim::pty::Pty::open().context("the respiratory sensor's pty")?;
    let sensor_path = sensor.path.clone();
    let mut sensor = Some(sensor.into_master());
    let devices = json!({
        "controller": controller_path, "sensor": sensor_path, "planning_ct": ct_dir, "labels": labels,
        "tumour_label": tumour_label, "node": args.node, "scenario": path, "seed": seed,
    });
    if args.json {
        say!("{devices}");
    } else {
        say!("simulated patient ({}, seed {seed})", path.display());
        say!("  controller on {controller_path}");
        say!("  respiratory sensor on {sensor_path}");
        say!("  planning CT {} with labels {} (tumour label {tumour_label:?})", ct_dir.display(), labels.display());
        say!("  scanner sends to {}", args.node);
        say!("type `scan` to take a CT (`scan other-patient`, `scan cut`), `unplug sensor`, `end` to finish");
    }
    std::io::stdout().flush().ok();

    let asked = read_asks();

    let epoch_unix = unix_now() - world.now_s();
    let (mut pending, mut scans, mut sends) = (None::<Ask>, 0usize, Vec::new());
    let (done_tx, done) = mpsc::channel::<serde_json::Value>();
    loop {
        if end.asked() {
            eprintln!("asked to end by a signal: the world ends");
            break;
        }
        world.wait(0.01);
        let now = world.now_s();
        let mut lines = String::new();
        world.samples(now, &mut |s| {
            // The sensor went live when the world started: no backlog.
            if s.t_s >= 0.0 {
                lines.push_str(&format!("{:.1},{:.4}\n", 1.0e6 + s.t_s * 1e3, s.value_mm));
            }
        });
        if let Some(m) = sensor.as_mut() {
            let _ = m.write_all(lines.as_bytes());
        }
        while let Ok(v) = done.try_recv() {
            print_line(&v);
        }
        match asked.try_recv() {
            Ok(Ask::End) | Err(mpsc::TryRecvError::Disconnected) => break,
            Ok(Ask::UnplugSensor) => {
                sensor = None;
                print_line(&json!({ "sensor": "unplugged" }));
            }
            Ok(a) if pending.is_none() => {
                let inserted = world.world_truth(dcfg.zone.centre_from_tip_mm)["inserted_mm"].as_f64().unwrap_or(0.0);
                let purpose = if inserted > 0.0 { CtPurpose::Checkpoint } else { CtPurpose::Confirmation };
                match world.request_ct(purpose) {
                    Ok(()) => pending = Some(a),
                    Err(e) => eprintln!("scan: {e}"),
                }
            }
            Ok(_) => eprintln!("scan: a CT is being taken already"),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if let (Some(a), Some(ct)) = (pending, world.poll_ct().ok().flatten()) {
            pending = None;
            scans += 1;
            let mut meta = SeriesMeta::phantom(
                &study,
                &format!("{study}.{}", 100 + scans),
                &format!("Stylet phantom: {}", ct.source),
            );
            meta.acquisition_datetime = Some(dicom_datetime(epoch_unix + ct.acquired_s));
            if a == Ask::ScanOtherPatient {
                meta.patient_id = "SOMEONE-ELSE".into();
                meta.patient_name = "Else^Someone".into();
            }
            let dir = args.out.join("scans").join(format!("{scans:03}"));
            let (dest, tx, series) = (dest.clone(), done_tx.clone(), meta.series_uid.clone());
            sends.push(std::thread::spawn(move || {
                let r = send_scan(&ct.volume, &dir, &meta, &dest, a == Ask::ScanCut);
                let _ = tx.send(match r {
                    Ok(n) => json!({ "scan": scans, "series": series, "sent_files": n, "cut": a == Ask::ScanCut,
                                     "other_patient": a == Ask::ScanOtherPatient, "acquired_s": ct.acquired_s }),
                    Err(e) => json!({ "scan": scans, "series": series, "error": format!("{e:#}") }),
                });
            }));
        }
    }
    for s in sends {
        let _ = s.join();
    }
    while let Ok(v) = done.try_recv() {
        print_line(&v);
    }
    let truth = world.world_truth(dcfg.zone.centre_from_tip_mm);
    let sim = world.arm.controller.stop()?;
    let monitor = sim.monitor;
    let end = json!({ "truth": truth, "wire_monitor": monitor, "controller_line": sim.line });
    if args.json {
        say!("{end}");
    } else {
        say!(
            "the true zone centre at the last CT: {} mm from the tumour centre (the tip {} mm); wire monitor: {} setpoints, {} outside the envelope",
            truth["zone_centre_to_tumour_centre_mm"].as_f64().map_or("-".into(), |d| format!("{d:.2}")),
            truth["tip_to_tumour_centre_mm"].as_f64().map_or("-".into(), |d| format!("{d:.2}")),
            monitor.setpoints,
            monitor.violations
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The operator's requests, read from standard input on a thread of their own; `End` when it
/// closes.
fn read_asks() -> mpsc::Receiver<Ask> {
    let (asks, asked) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match parse_ask(&line) {
                Some(a) => {
                    if asks.send(a).is_err() {
                        return;
                    }
                }
                None if line.trim().is_empty() => {}
                None => eprintln!("unknown: {line:?} (scan, scan other-patient, scan cut, unplug sensor, end)"),
            }
        }
        let _ = asks.send(Ask::End);
    });
    asked
}

/// The planning CT as the scanner stored it before the procedure (a DICOM series in `dir/ct`)
/// and its segmentation (`dir/labels.nii.gz`): both paths and the tumour's label.
fn write_planning(
    planning: &stylet_procedure::ports::PlanningCt,
    study: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(PathBuf, PathBuf, Option<u32>)> {
    let mut meta = SeriesMeta::phantom(study, &format!("{study}.1"), "Stylet phantom: planning CT");
    meta.acquisition_datetime = Some(dicom_datetime(unix_now() + planning.ct.acquired_s));
    let ct_dir = dir.join("ct");
    let _ = std::fs::remove_dir_all(&ct_dir);
    stylet_imaging::write_series_with(&planning.ct.volume, &ct_dir, &meta, PixelEncoding::Uncompressed)?;
    let labels = dir.join("labels.nii.gz");
    stylet_imaging::write_nifti(&planning.labels, &labels)?;
    let tumour_label = match planning.tumour {
        stylet_planning::TumourSpec::Label { value, .. } => Some(value),
        stylet_planning::TumourSpec::Sphere { .. } => None,
    };
    Ok((ct_dir, labels, tumour_label))
}

/// One event of the world, as a JSON line (with or without --json: a test or a person reads it).
fn print_line(v: &serde_json::Value) {
    say!("{v}");
    std::io::stdout().flush().ok();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_technologists_lines() {
        assert_eq!(parse_ask(" scan \n"), Some(Ask::Scan));
        assert_eq!(parse_ask("scan cut"), Some(Ask::ScanCut));
        assert_eq!(parse_ask("scan other-patient"), Some(Ask::ScanOtherPatient));
        assert_eq!(parse_ask("unplug sensor"), Some(Ask::UnplugSensor));
        assert_eq!(parse_ask("end"), Some(Ask::End));
        assert_eq!(parse_ask("scna"), None);
    }
}
