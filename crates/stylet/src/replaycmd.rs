//! `stylet replay`: read a procedure log back (and `stylet sim record`, a log writer for the
//! crash tests).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use std::process::ExitCode;

use serde_json::json;
use stylet_recorder::{read_log, Event, FsyncPolicy, Recorder};

/// Options of `stylet replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The procedure log.
    log: PathBuf,
    /// Print JSON: the header, counts, where the log was cut, and (with --records) every record.
    #[arg(long)]
    json: bool,
    /// Include every record in the output.
    #[arg(long)]
    records: bool,
    /// Replay the procedure into a rerun recording written here (docs/telemetry.md).
    #[arg(long, conflicts_with = "viewer")]
    rrd: Option<PathBuf>,
    /// Replay the procedure into a spawned rerun viewer (`rerun` on PATH).
    #[arg(long)]
    viewer: bool,
    /// Also write the procedure as MCAP here (Foxglove, PlotJuggler, the mcap tools): a JSON
    /// channel per record kind, one per measurement (docs/recorder.md).
    #[arg(long, value_name = "FILE")]
    mcap: Option<PathBuf>,
}

/// Every record as rerun items on the `procedure_time` timeline: state changes, operator actions,
/// faults and notes as text under `log/...`, commands and samples as scalars per value.
fn to_rerun(records: &[stylet_recorder::Record], tel: &stylet_telemetry::Telemetry) {
    use stylet_telemetry::{Item, Level};
    let text = |path: String, t_s: f64, text: String, level: Level| tel.log(Item::Text { path, t_s, text, level });
    for r in records {
        let t_s = r.t_s;
        match &r.event {
            Event::State { machine, from, to, reason } => {
                text(format!("log/state/{machine}"), t_s, format!("{from} -> {to}: {reason}"), Level::Info);
            }
            Event::Operator { action, detail } => {
                text("log/operator".into(), t_s, format!("{action}: {detail}"), Level::Info)
            }
            Event::Fault { code, detail } => text("log/fault".into(), t_s, format!("{code}: {detail}"), Level::Error),
            Event::Note { text: n } => text("log/note".into(), t_s, n.clone(), Level::Info),
            Event::Command { name, values } | Event::Sample { name, values } => {
                let kind = if matches!(r.event, Event::Command { .. }) { "commands" } else { "samples" };
                for (i, v) in values.iter().enumerate() {
                    tel.log(Item::Scalar { path: format!("{kind}/{name}/{i}"), t_s, value: *v });
                }
            }
        }
    }
}

pub(crate) fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let log = read_log(&args.log)?;
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for r in &log.records {
        *kinds.entry(r.event.kind()).or_insert(0) += 1;
    }
    let span = (log.records.first().map(|r| r.t_s), log.records.last().map(|r| r.t_s));
    // The control loop's timing, as the run summed it up at its end.
    let timing = log.records.iter().rev().find_map(|r| match &r.event {
        Event::Sample { name, values } if name == "cycle_timing" => Some(crate::realtime::timing_from_sample(values)),
        _ => None,
    });
    let rerun = match (&args.rrd, args.viewer) {
        (Some(p), _) => Some(stylet_telemetry::Sink::File(p.clone())),
        (None, true) => Some(stylet_telemetry::Sink::Spawn),
        (None, false) => None,
    };
    let replayed = match rerun {
        Some(sink) => {
            // Blocking sends are fine here (no control loop): size the channel for the whole log.
            let tel = stylet_telemetry::Telemetry::start("stylet_replay", &sink, log.records.len() * 8 + 16)?;
            to_rerun(&log.records, &tel);
            Some(tel.finish()?)
        }
        None => None,
    };
    let mcap = match &args.mcap {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let stats = stylet_recorder::write_mcap(&log, std::io::BufWriter::new(file))
                .with_context(|| format!("{}", path.display()))?;
            Some(json!({ "file": path, "messages": stats.messages, "channels": stats.channels }))
        }
        None => None,
    };
    if args.json {
        let mut out = json!({
            "log": args.log, "header": log.header, "bytes": log.bytes,
            "records": log.records.len(), "kinds": kinds, "t_s": [span.0, span.1], "cut": log.cut,
            "rerun": replayed.map(|s| json!({ "logged": s.logged, "dropped": s.dropped, "rrd": args.rrd })),
            "cycle_timing": timing, "mcap": mcap,
        });
        if args.records {
            out["record_list"] = json!(log.records);
        }
        say!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    say!("{}: {} v{}, procedure {:?}", args.log.display(), log.header.format, log.header.version, log.header.procedure);
    say!("{} records over {:.3} s: {kinds:?}", log.records.len(), span.1.unwrap_or(0.0) - span.0.unwrap_or(0.0));
    if let Some(t) = &timing {
        say!(
            "control loop: {} cycles, {} stall(s), {} late cycle(s), lateness p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            t["cycles"], t["stalls"], t["late_cycles"], t["p50_us"], t["p99_us"], t["p999_us"], t["max_us"]
        );
    }
    for r in log
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::State { .. } | Event::Fault { .. } | Event::Operator { .. }))
    {
        say!("  {:>10.3} s  {}", r.t_s, serde_json::to_string(&r.event).unwrap_or_default());
    }
    if let Some(s) = replayed {
        say!(
            "replayed into rerun: {} items{}",
            s.logged,
            args.rrd.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default()
        );
    }
    if let Some(m) = &mcap {
        say!(
            "MCAP: {} ({} messages on {} channels)",
            args.mcap.as_deref().unwrap_or(Path::new("?")).display(),
            m["messages"],
            m["channels"]
        );
    }
    match &log.cut {
        None => say!("complete: ends on a whole record"),
        Some(c) => {
            say!("CUT at byte {} (line {}): {}; everything before it is intact", c.byte_offset, c.line, c.reason)
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `stylet sim record`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordArgs {
    /// The log to create.
    #[arg(long)]
    out: PathBuf,
    /// Records to write (0: until killed).
    #[arg(long, default_value_t = 0)]
    records: u64,
}

/// Writes a stream of every kind of record as fast as the recorder takes them: the process the
/// kill -9 tests kill.
pub(crate) fn record(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let rec = Recorder::create(&args.out, "sim record (crash test)", 0, FsyncPolicy::default(), 4096)?;
    let mut i = 0u64;
    while args.records == 0 || i < args.records {
        let t = i as f64 * 1e-3;
        let e = match i % 5 {
            0 => Event::Command { name: "setpoint".into(), values: vec![t, -t, 0.5 * t, 1.0, 2.0, 3.0, 4.0] },
            1 => Event::Sample { name: "respiration".into(), values: vec![(t * 1.7).sin()] },
            2 => Event::State {
                machine: "workflow".into(),
                from: "insertion".into(),
                to: "checkpoint_ct".into(),
                reason: format!("step {i}"),
            },
            3 => Event::Operator { action: "pedal".into(), detail: "held".into() },
            _ => Event::Note { text: format!("record {i}") },
        };
        if rec.record(t, e) {
            i += 1;
        } else {
            std::thread::yield_now();
        }
    }
    let stats = rec.close()?;
    say!("{}", json!({ "written": stats.written, "dropped": stats.dropped, "fsyncs": stats.fsyncs }));
    Ok(ExitCode::SUCCESS)
}
