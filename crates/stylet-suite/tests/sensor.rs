//! The respiratory sensor over a real pty: samples in order on the procedure clock, an
//! unreadable line reported, the sensor unplugged reported.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use stylet_procedure::ports::Respiration;
use stylet_respiration::Sample;
use stylet_suite::site::SerialSite;
use stylet_suite::{SensorRespiration, WallClock};

/// Polls until `done` holds or 10 s pass (a deadline for a hang, not a timing check).
fn poll(
    sensor: &mut SensorRespiration,
    clock: WallClock,
    done: impl Fn(&[Sample], &[String]) -> bool,
) -> (Vec<Sample>, Vec<String>) {
    let (mut got, mut notices) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&got, &notices) && Instant::now() < deadline {
        let now = clock.now_s();
        sensor.samples(now, &mut |s| {
            assert!(s.t_s <= now, "a sample at {} handed out at {now}", s.t_s);
            got.push(s);
        });
        sensor.respiration_notices(&mut |n| notices.push(n));
        std::thread::sleep(Duration::from_millis(5));
    }
    (got, notices)
}

#[test]
fn samples_arrive_in_order_on_the_procedure_clock_and_an_unplugged_sensor_is_reported() {
    let pty = stylet_sim::pty::Pty::open().unwrap();
    let site = SerialSite { port: pty.path.clone(), baud: 115_200 };
    let clock = WallClock::start();
    let mut sensor = SensorRespiration::open(&site, clock).unwrap();
    let mut master = pty.into_master();
    let mut text = String::from("# a belt\n");
    let values: Vec<f64> = (0..40).map(|i| (f64::from(i) * 0.3).sin() * 5.0).collect();
    for (i, v) in values.iter().enumerate() {
        // The sensor's own clock, far from the procedure's.
        text.push_str(&format!("{},{v:.4}\n", 900_000 + 10 * i));
        if i == 10 {
            text.push_str("12;garbage\n");
        }
    }
    master.write_all(text.as_bytes()).unwrap();
    master.flush().unwrap();
    let last = values[values.len() - 1];
    let (got, notices) =
        poll(&mut sensor, clock, |g, n| g.last().is_some_and(|s| (s.value_mm - last).abs() < 1e-4) && !n.is_empty());
    // Sent in one burst, so the first samples may be timed at their arrival and later ones
    // dropped as not after it; every sample handed out is in order and was sent.
    assert!(got.len() >= values.len() / 2, "{} of {} samples", got.len(), values.len());
    assert!(got.windows(2).all(|w| w[1].t_s > w[0].t_s), "{got:?}");
    let mut sent = values.iter();
    for s in &got {
        assert!(sent.any(|v| (v - s.value_mm).abs() < 1e-4), "{} was not sent (or out of order)", s.value_mm);
    }
    assert!(notices.iter().any(|n| n.contains("line 13 skipped") && n.contains(&site.port)), "{notices:?}");
    // Unplugged: the master side goes away.
    drop(master);
    let (_, notices) = poll(&mut sensor, clock, |_, n| n.iter().any(|l| l.contains("is gone")));
    assert!(notices.iter().any(|n| n.contains("is gone") && n.contains("gate stays closed")), "{notices:?}");
}

#[test]
fn a_sensor_that_cannot_be_opened_is_an_error_naming_the_port() {
    let site = SerialSite { port: "/dev/stylet-no-such-sensor".into(), baud: 115_200 };
    let err = SensorRespiration::open(&site, WallClock::start()).unwrap_err().to_string();
    assert!(err.contains("/dev/stylet-no-such-sensor"), "{err}");
}
