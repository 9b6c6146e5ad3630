//! Heavy work leaves the runner's core alone. The process is prepared as config/realtime.toml
//! asks (the real-time core, heavy work off it), the supervisor's thread runs at 1 kHz on the
//! wall clock, and a planning job on the easy scenario's phantom runs beside it. A watcher reads
//! every thread's allowed cores from /proc while the job runs: the runner is on the real-time
//! core alone, and every other thread (the planner's workers included) stays off it. The
//! runner's lateness during the job is printed, not asserted (timing belongs to bench/soak.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stylet_core::{Clock, MonotonicClock};
use stylet_rt::{MemoryLock, RealtimeConfig, Role};
use stylet_safety::fake::FakeActuator;
use stylet_safety::{runner, SafetyConfig, Supervisor};

/// Each thread's id, name and allowed cores, as /proc says.
fn threads() -> Vec<(String, String, Vec<usize>)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else { continue };
        out.push((t.file_name().to_string_lossy().into_owned(), name, parse_list(list.trim())));
    }
    out
}

/// "0-2,5" -> [0, 1, 2, 5].
fn parse_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

#[test]
fn planning_beside_the_runner_stays_off_its_core() {
    let _turn = common::wall_clock_turn();
    let config = common::repo().join("config");
    let cores = stylet_rt::allowed_cores();
    // The test harness's own threads were started before; the check is on what starts after.
    let harness: Vec<String> =
        threads().into_iter().filter(|(_, n, _)| !n.starts_with("planning_beside")).map(|t| t.0).collect();
    let rt = RealtimeConfig::load_dir(&config).unwrap().prepare_process(MemoryLock::Current);
    let rt_core = rt.report.realtime_core.unwrap();
    if cores.len() < 2 {
        assert!(rt.report.refused.iter().any(|r| r.contains("only core")), "{:?}", rt.report);
        return;
    }
    assert!(!rt.report.heavy_work_cores.contains(&rt_core), "{:?}", rt.report);

    let cfg = SafetyConfig::load_dir(&config).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let fake = FakeActuator::new(cfg.robot.home());
    let h = runner::spawn_with(Supervisor::new(cfg).unwrap(), fake, clock, Some(rt.schedule(Role::Runner))).unwrap();
    assert_eq!(h.scheduling().unwrap().core, Some(rt_core), "{:?}", h.scheduling());

    // The watcher: every thread's allowed cores, sampled while the job runs.
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let started_before = harness.clone();
    let watcher = std::thread::spawn(move || {
        let mut seen: BTreeMap<(String, String), Vec<Vec<usize>>> = BTreeMap::new();
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            let now: Vec<_> = threads().into_iter().filter(|t| !started_before.contains(&t.0)).collect();
            most = most.max(now.len());
            for (tid, name, allowed) in now {
                let e = seen.entry((tid, name)).or_default();
                if !e.contains(&allowed) {
                    e.push(allowed);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        (seen, most)
    });

    // The job: the easy scenario's phantom, planned under the clinical rules.
    let scenario = stylet_sim::scenario::Scenario::load(&config.join("scenarios/easy.toml")).unwrap();
    let ps = scenario.phantom;
    let frame = stylet_registration::read_points(&config.join("robot/marker_frame.txt")).unwrap();
    let reg = stylet_registration::RegistrationConfig::load(&config.join("registration.toml")).unwrap();
    let threads_before = threads().len() - harness.len();
    let ph = stylet_sim::phantom::generate(&stylet_sim::phantom::PhantomSpec {
        seed: ps.seed,
        dims: ps.dims,
        spacing_mm: ps.spacing_mm,
        markers_in_robot: frame,
        marker_diameter_mm: reg.fiducials.diameter_mm,
        noise_hu: ps.noise_hu,
        missing_beads: ps.missing_beads.clone(),
        extra_beads: ps.extra_beads,
        tumours: ps.tumours.clone(),
        metal_wire: ps.metal_wire,
    });
    let report = stylet_planning::plan(&stylet_planning::PlanInput {
        ct: &ph.volume,
        labels: &ph.labels,
        table: &stylet_planning::LabelTable::load(&config.join("labels.toml"), "phantom").unwrap(),
        tumour: stylet_planning::TumourSpec::Label { value: 3, component: 0 },
        zone: stylet_planning::load_zone(&config.join("devices.toml"), "mwa-generic", "100W-8min").unwrap(),
        rules: stylet_planning::Rules::load(&config.join("clinical-rules.toml")).unwrap(),
        max_plans: 20,
    })
    .unwrap();
    assert!(report.feasible > 0, "the job planned nothing");
    done.store(true, Ordering::Relaxed);
    let (seen, most) = watcher.join().unwrap();
    let sched = h.scheduling().map(ToString::to_string).unwrap_or_default();
    let run = h.shutdown().unwrap();

    // The planner started workers of its own while it ran.
    assert!(most > threads_before, "no worker thread seen ({most} threads at most, {threads_before} before)");
    for ((_, name), masks) in &seen {
        for allowed in masks {
            if name.starts_with("stylet-supervis") {
                assert_eq!(allowed, &vec![rt_core], "the runner's cores");
            } else {
                assert!(!allowed.contains(&rt_core), "thread {name:?} may run on the real-time core: {allowed:?}");
            }
        }
    }
    let us = |n: stylet_core::Nanos| n.as_secs_f64() * 1e6;
    eprintln!(
        "runner beside planning: {} cycles, {} stall(s), {} late cycle(s), lateness p50 {:.0} us, p99 {:.0} us, max {:.0} us; \
         runner {}; {} threads started beside it",
        run.lateness.cycles(),
        run.stalls,
        run.late_cycles,
        us(run.lateness.quantile(0.5)),
        us(run.lateness.quantile(0.99)),
        us(run.lateness.max()),
        sched,
        seen.len()
    );
}
