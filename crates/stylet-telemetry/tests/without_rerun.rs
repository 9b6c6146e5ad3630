//! A build without the `rerun` feature (a controller-only host, issue 19): the API is the same,
//! nothing is recorded, and asking for a recording is an error that says why.
//! `cargo test -p stylet-telemetry --no-default-features` (in .ci/run).
#![cfg(not(feature = "rerun"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stylet_telemetry::{Item, Sink, Telemetry, TelemetryError, BUILT};

#[test]
fn every_sink_is_refused_with_the_reason() {
    const { assert!(!BUILT) };
    for sink in [Sink::File("t.rrd".into()), Sink::Spawn, Sink::Connect("rerun+http://127.0.0.1:9876/proxy".into())] {
        let e = Telemetry::start("test", &sink, 8).unwrap_err();
        assert!(matches!(e, TelemetryError::NotBuilt { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("without the `telemetry` feature"), "{text}");
        assert!(text.starts_with(&sink.to_string()), "{text}");
    }
    assert!(!std::path::Path::new("t.rrd").exists(), "nothing written");
}

#[test]
fn off_still_takes_items_and_logs_nothing() {
    let t = Telemetry::off();
    t.log(Item::Scalar { path: "a".into(), t_s: 0.0, value: 1.0 });
    let s = t.finish().unwrap();
    assert_eq!((s.logged, s.dropped), (0, 0));
}
