//! Codec throughput: encode and decode of the two frames that dominate the link (a 7-joint
//! setpoint host->controller, a 7-joint state controller->host).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use stylet_protocol::{
    encode_frame, ControllerState, FrameDecoder, JointArray, JointSetpoint, JointState, Message, Setpoint, Status,
    MAX_FRAME,
};

fn messages() -> [(&'static str, Message); 2] {
    [
        (
            "setpoint7",
            Message::Setpoint(Setpoint {
                host_time_us: 1_234_567,
                joints: JointArray::from_fn(7, |i| JointSetpoint { position: 0.1 * i as f64, velocity: 0.01 }).unwrap(),
            }),
        ),
        (
            "state7",
            Message::State(ControllerState {
                controller_time_us: 7_654_321,
                last_setpoint_seq: 77,
                status: Status(Status::DRIVES_ENABLED | Status::PEDAL_INPUT),
                joint_faults: 0,
                joints: JointArray::from_fn(7, |i| JointState {
                    position: 0.1 * i as f64,
                    velocity: 0.01,
                    current_a: 0.5,
                })
                .unwrap(),
            }),
        ),
    ]
}

fn codec(c: &mut Criterion) {
    for (name, m) in messages() {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(1, &m, &mut buf).unwrap();
        let mut g = c.benchmark_group(format!("codec/{name}"));
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function("encode", |b| {
            let mut out = [0u8; MAX_FRAME];
            b.iter(|| encode_frame(black_box(1), black_box(&m), &mut out).unwrap());
        });
        g.bench_function("decode", |b| {
            let mut dec = FrameDecoder::new();
            b.iter(|| {
                let mut got = None;
                dec.feed(black_box(&buf[..n]), |r| got = Some(r));
                got
            });
        });
        g.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
