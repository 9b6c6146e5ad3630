//! Prints the test vectors of docs/protocol.md: `cargo run -p stylet-protocol --example vectors`.
#![allow(clippy::unwrap_used)]

use stylet_protocol::{
    encode_frame, ControllerInfo, ControllerState, JointArray, JointSetpoint, JointState, Message, NackReason,
    Setpoint, Status, MAX_FRAME,
};

/// The documented vectors: (name, sequence number, message).
fn vectors() -> Vec<(&'static str, u16, Message)> {
    vec![
        ("Hello v1, host 1", 1, Message::Hello { protocol_version: 1, host_id: 1 }),
        (
            "HelloAck id 4242, 7 joints, fw 0.1.0",
            1,
            Message::HelloAck(ControllerInfo {
                protocol_version: 1,
                controller_id: 4242,
                joint_count: 7,
                firmware: [0, 1, 0],
            }),
        ),
        ("Enable, watchdog 20 ms", 2, Message::Enable { watchdog_ms: 20 }),
        ("Disable", 3, Message::Disable),
        (
            "Setpoint t=1000 us, 2 joints",
            4,
            Message::Setpoint(Setpoint {
                host_time_us: 1000,
                joints: JointArray::from_slice(&[
                    JointSetpoint { position: 0.5, velocity: 0.25 },
                    JointSetpoint { position: -1.0, velocity: 0.0 },
                ])
                .unwrap(),
            }),
        ),
        ("Heartbeat t=2000 us", 5, Message::Heartbeat { host_time_us: 2000 }),
        (
            "State t=3000 us, drives on + pedal, 1 joint",
            6,
            Message::State(ControllerState {
                controller_time_us: 3000,
                last_setpoint_seq: 4,
                status: Status(Status::DRIVES_ENABLED | Status::PEDAL_INPUT),
                joint_faults: 0,
                joints: JointArray::from_slice(&[JointState { position: 0.5, velocity: 0.0, current_a: 1.5 }]).unwrap(),
            }),
        ),
        (
            "Nack seq 4 Setpoint: watchdog tripped",
            7,
            Message::Nack { seq: 4, msg_type: 0x04, reason: NackReason::WatchdogTripped },
        ),
        ("EStop", 8, Message::EStop),
    ]
}

fn main() {
    for (name, seq, m) in vectors() {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(seq, &m, &mut buf).unwrap();
        let hex: Vec<String> = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
        println!("| {name} | {seq} | `{}` |", hex.join(" "));
    }
}
