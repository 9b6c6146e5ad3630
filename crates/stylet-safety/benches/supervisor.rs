//! Supervisor step cost: one full cycle (ingest a controller state, admit a moving setpoint,
//! emit the command) on the reference 7-joint arm, following a long homing move.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use stylet_core::Nanos;
use stylet_safety::fake::FakeActuator;
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Actuator, Command, SafetyConfig, Supervisor};

struct Rig {
    sup: Supervisor,
    fake: FakeActuator,
    now: Nanos,
    period: Nanos,
}

impl Rig {
    fn new(cfg: &SafetyConfig) -> Self {
        let mut rig = Rig {
            sup: Supervisor::new(cfg.clone()).unwrap(),
            fake: FakeActuator::new(cfg.robot.home()),
            now: Nanos::ZERO,
            period: cfg.period,
        };
        rig.tick(None);
        rig.sup.command(rig.now, Command::StartHoming).unwrap();
        for _ in 0..3 {
            rig.tick(None);
        }
        rig
    }

    fn tick(&mut self, req: Option<&[stylet_protocol::JointSetpoint]>) {
        self.now = self.now.saturating_add(self.period);
        self.sup.heartbeat(self.now);
        let (sup, now) = (&mut self.sup, self.now);
        self.fake.poll(&mut |i| sup.handle(now, i));
        let out = self.sup.cycle(self.now, Nanos::ZERO, req);
        if let Some(cmd) = black_box(out.command) {
            self.fake.send(cmd);
        }
        self.fake.sent.clear();
    }
}

fn step(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let cfg = SafetyConfig::load_dir(&dir).unwrap();
    let home = cfg.robot.home();
    let mut goal = home.clone();
    for (g, j) in goal.iter_mut().zip(&cfg.robot.joints).take(6) {
        *g = (*g + 0.5).min(j.max - 0.1);
    }
    let traj = Trajectory::within(&cfg, &home, &goal, 0.2).unwrap();
    c.bench_function("supervisor/cycle_7_joints_moving", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let mut rig = Rig::new(&cfg);
                let run = (iters - done).min(traj.len() as u64);
                let t0 = Instant::now();
                for k in 0..run {
                    rig.tick(traj.sample(k as usize));
                }
                total += t0.elapsed();
                assert!(rig.sup.fault().is_none(), "{:?}", rig.sup.fault());
                done += run;
            }
            total
        });
    });
}

criterion_group!(benches, step);
criterion_main!(benches);
