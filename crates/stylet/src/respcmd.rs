//! `stylet resp eval`: prediction and gating figures on recorded breathing traces.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use stylet_respiration::eval::{evaluate, run, HorizonReport};
use stylet_respiration::{read_trace, Method, OnDrift, RespirationConfig, TraceFormat};

/// Trace file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Krilavicius when the header names a Frame column, else plain CSV.
    Auto,
    /// Krilavicius marker CSV (`"Frame";"Timestamp";"x";"y";"z"`, decimal commas).
    Krilavicius,
    /// Plain `t_s,value` CSV.
    Csv,
}

/// Options of `stylet resp eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// One trace file.
    #[arg(long, required_unless_present = "dir", conflicts_with = "dir")]
    trace: Option<PathBuf>,
    /// Every `.csv` trace of a folder, with a summary.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Trace format.
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
    /// Prediction horizons, ms [default: the config's horizon].
    #[arg(long = "horizon-ms", value_delimiter = ',')]
    horizons_ms: Vec<f64>,
    /// Write a PNG of signal, prediction and gate (one trace, first horizon).
    #[arg(long, requires = "trace")]
    plot: Option<PathBuf>,
    /// Write the run as CSV (one trace, first horizon): per working-rate sample its time, the
    /// signal, the prediction made then for the horizon ahead, the gate and its reference.
    #[arg(long, requires = "trace")]
    timeline: Option<PathBuf>,
    /// Seconds of the trace to plot, from... to.
    #[arg(long, value_delimiter = ',', default_value = "20,80")]
    plot_span_s: Vec<f64>,
    /// Cross-validate by recording (with --dir): for each recording (the markers of one session
    /// together), the predictor settings that do best on the others, scored on it
    /// (docs/respiration.md, "Cross-validation").
    #[arg(long, conflicts_with_all = ["plot", "timeline"])]
    cv: bool,
    /// With --dir: the gate's trade-off as a PNG, mean duty against the worst trace's p95
    /// residual, for window half-widths of 1 to 4 mm and confidence factors 0, 1 and 2 (the
    /// first horizon; a table is printed too).
    #[arg(long, requires = "dir", conflicts_with_all = ["plot", "cv"])]
    tradeoff: Option<PathBuf>,
    /// The config folder (respiration.toml).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

const METHODS: [Method; 4] = [Method::WaveletRls, Method::Pattern, Method::Reservoir, Method::Combined];

fn format_of(path: &Path, f: Format) -> anyhow::Result<TraceFormat> {
    Ok(match f {
        Format::Krilavicius => TraceFormat::Krilavicius,
        Format::Csv => TraceFormat::Csv,
        Format::Auto => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            stylet_respiration::trace::detect_format(&text)
        }
    })
}

struct TraceResult {
    path: PathBuf,
    json: serde_json::Value,
    reports: Vec<HorizonReport>,
}

/// A trace as the processor sees it: its principal axis, resampled to the working rate and in mm
/// (a sensor in other units calibrated as `[sensor]` says, or from its breathing amplitude).
struct Signal {
    t_s: Vec<f64>,
    mm: Vec<f64>,
    axis: nalgebra::Vector3<f64>,
    calibration: stylet_respiration::Calibration,
    /// mm per unit once known.
    mm_per_unit: Option<f64>,
}

fn signal_of(trace: &stylet_respiration::Trace, cfg: &RespirationConfig) -> Signal {
    let (values, axis) = trace.principal_axis();
    let calibration = cfg.calibration_for(&trace.unit);
    let mut c = stylet_respiration::Conditioner::new(cfg.period_s, calibration);
    let (mut t_s, mut mm) = (Vec::new(), Vec::new());
    for (&t, &v) in trace.t_s.iter().zip(&values) {
        c.push(stylet_respiration::Sample { t_s: t, value_mm: v }, &mut |s| {
            t_s.push(s.t_s);
            mm.push(s.value_mm);
        });
    }
    Signal { t_s, mm, axis, calibration, mm_per_unit: c.mm_per_unit() }
}

fn eval_one(path: &Path, args: &EvalArgs, cfg: &RespirationConfig, horizons: &[f64]) -> anyhow::Result<TraceResult> {
    let trace = read_trace(path, format_of(path, args.format)?)?;
    let sig = signal_of(&trace, cfg);
    anyhow::ensure!(
        sig.t_s.len() > 1,
        "{}: no breathing to calibrate {} on in its first {} s (a flat signal)",
        path.display(),
        trace.unit,
        cfg.calibrate_s
    );
    let (signal, axis) = (&sig.mm, sig.axis);
    let reports: Vec<HorizonReport> =
        horizons.iter().map(|h| evaluate(&sig.t_s, signal, cfg, h * 1e-3, &METHODS)).collect();
    let p2p =
        signal.iter().copied().fold(f64::NEG_INFINITY, f64::max) - signal.iter().copied().fold(f64::INFINITY, f64::min);
    let json = json!({
        "trace": path,
        "samples": trace.t_s.len(),
        "duration_s": trace.t_s.last().unwrap_or(&0.0) - trace.t_s.first().unwrap_or(&0.0),
        "median_interval_s": trace.median_interval_s(),
        "unit": trace.unit,
        "calibration": sig.calibration,
        "mm_per_unit": sig.mm_per_unit,
        "working_rate_samples": sig.t_s.len(),
        "rows_reported": trace.issues,
        "principal_axis": [axis.x, axis.y, axis.z],
        "peak_to_peak_mm": p2p,
        "horizons": reports,
    });
    if args.plot.is_some() || args.timeline.is_some() {
        let c = RespirationConfig { horizon_s: horizons[0] * 1e-3, on_drift: OnDrift::ReReference, ..cfg.clone() };
        let (tl, _) = run(&sig.t_s, signal, &c);
        if let Some(png) = &args.plot {
            let span = match args.plot_span_s.as_slice() {
                [a, b] if b > a => (*a, *b),
                other => anyhow::bail!("--plot-span-s takes FROM,TO seconds with FROM < TO, got {other:?}"),
            };
            crate::plot::respiration_png(png, &tl, c.horizon_s, c.window_half_width_mm, span)
                .with_context(|| format!("writing {}", png.display()))?;
        }
        if let Some(csv) = &args.timeline {
            std::fs::write(csv, timeline_csv(&tl, c.horizon_s))
                .with_context(|| format!("writing {}", csv.display()))?;
        }
    }
    Ok(TraceResult { path: path.to_path_buf(), json, reports })
}

/// The run as CSV: `t_s,value_mm,predicted_mm,open,reference_mm` (the prediction made at `t_s`
/// for `horizon_s` later; the reference empty before there is one).
fn timeline_csv(tl: &stylet_respiration::eval::Timeline, horizon_s: f64) -> String {
    let mut out = format!("# horizon_s = {horizon_s}\nt_s,value_mm,predicted_mm,open,reference_mm\n");
    for i in 0..tl.t_s.len() {
        let reference =
            if tl.reference_mm[i].is_finite() { format!("{:.6}", tl.reference_mm[i]) } else { String::new() };
        out.push_str(&format!(
            "{:.4},{:.6},{:.6},{},{reference}\n",
            tl.t_s[i],
            tl.value_mm[i],
            tl.predicted_mm[i],
            u8::from(tl.open[i])
        ));
    }
    out
}

pub(crate) fn eval(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.cv || args.dir.is_some(),
        "--cv needs --dir DIR: a folder of recordings to hold out one by one"
    );
    let cfg = RespirationConfig::load(&args.config.join("respiration.toml"))?;
    let horizons = if args.horizons_ms.is_empty() { vec![cfg.horizon_s * 1e3] } else { args.horizons_ms.clone() };
    for h in &horizons {
        anyhow::ensure!(h.is_finite() && (0.0..=2000.0).contains(h), "--horizon-ms {h}: must be within [0, 2000]");
    }
    let files: Vec<PathBuf> = match (&args.trace, &args.dir) {
        (Some(t), _) => vec![t.clone()],
        (None, Some(d)) => {
            let mut f: Vec<PathBuf> = std::fs::read_dir(d)
                .with_context(|| format!("reading {}", d.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                .collect();
            f.sort();
            anyhow::ensure!(!f.is_empty(), "{}: no .csv traces", d.display());
            f
        }
        (None, None) => anyhow::bail!("give --trace FILE or --dir DIR"),
    };
    if args.cv {
        return cross_validated(args, &cfg, &horizons, &files);
    }
    if let Some(png) = &args.tradeoff {
        return tradeoff(args, &cfg, horizons[0], &files, png);
    }
    let bar = (files.len() > 1 && !args.json).then(|| {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} traces {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut results = Vec::new();
    for f in &files {
        if let Some(b) = &bar {
            b.set_message(f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
        }
        results.push(eval_one(f, args, &cfg, &horizons)?);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary: Vec<serde_json::Value> = horizons
        .iter()
        .enumerate()
        .map(|(k, h)| {
            let mean = |f: &dyn Fn(&HorizonReport) -> f64| {
                results.iter().map(|r| f(&r.reports[k])).sum::<f64>() / results.len() as f64
            };
            let methods: Vec<serde_json::Value> = METHODS
                .iter()
                .enumerate()
                .map(|(m, method)| json!({ "method": method, "mean_ratio_to_hold": mean(&|r| r.methods[m].ratio_to_hold) }))
                .collect();
            json!({
                "horizon_ms": h,
                "traces": results.len(),
                "methods": methods,
                "mean_duty_cycle": mean(&|r| r.gate.duty_cycle),
                "min_duty_cycle": results.iter().map(|r| r.reports[k].gate.duty_cycle).fold(f64::INFINITY, f64::min),
                "max_residual_p95_mm": results.iter().map(|r| r.reports[k].gate.residual_p95_mm).fold(0.0, f64::max),
                "window_half_width_mm": cfg.window_half_width_mm,
            })
        })
        .collect();
    if args.json {
        let traces: Vec<&serde_json::Value> = results.iter().map(|r| &r.json).collect();
        say!("{}", json!({ "config_method": cfg.method, "traces": traces, "summary": summary }));
        return Ok(ExitCode::SUCCESS);
    }
    for (k, h) in horizons.iter().enumerate() {
        say!("horizon {h} ms (prediction RMSE / no-prediction RMSE; gate of the {:?} method)", cfg.method);
        say!(
            "{:<34} {:>8} {:>7} {:>7} {:>9} {:>8} {:>6} {:>8} {:>8}",
            "trace",
            "hold mm",
            "rls",
            "pattern",
            "reservoir",
            "combined",
            "duty",
            "res p95",
            "res max"
        );
        for r in &results {
            let rep = &r.reports[k];
            say!(
                "{:<34} {:>8.2} {:>7.3} {:>7.3} {:>9.3} {:>8.3} {:>5.1}% {:>8.2} {:>8.2}",
                r.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
                rep.hold_rmse_mm,
                rep.methods[0].ratio_to_hold,
                rep.methods[1].ratio_to_hold,
                rep.methods[2].ratio_to_hold,
                rep.methods[3].ratio_to_hold,
                100.0 * rep.gate.duty_cycle,
                rep.gate.residual_p95_mm,
                rep.gate.residual_max_mm
            );
        }
        let s = &summary[k];
        say!(
            "{:<34} {:>8} {:>7.3} {:>7.3} {:>9.3} {:>8.3} {:>5.1}% {:>8.2}   (window +-{} mm)",
            format!("mean over {} trace(s)", results.len()),
            "",
            s["methods"][0]["mean_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            s["methods"][1]["mean_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            s["methods"][2]["mean_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            s["methods"][3]["mean_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            100.0 * s["mean_duty_cycle"].as_f64().unwrap_or(f64::NAN),
            s["max_residual_p95_mm"].as_f64().unwrap_or(f64::NAN),
            cfg.window_half_width_mm
        );
    }
    if let Some(p) = &args.plot {
        say!("plot: {}", p.display());
    }
    if let Some(p) = &args.timeline {
        say!("timeline: {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--cv`: leave-one-recording-out over the settings of [`stylet_respiration::cv::candidates`].
fn cross_validated(
    args: &EvalArgs,
    cfg: &RespirationConfig,
    horizons: &[f64],
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    use stylet_respiration::cv::{candidates, cross_validate, recording_of};
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let mut traces = Vec::new();
    for f in files {
        let trace = read_trace(f, format_of(f, args.format)?)?;
        let sig = signal_of(&trace, cfg);
        traces.push((sig.t_s, sig.mm));
    }
    let recordings: Vec<String> = files.iter().map(|f| recording_of(&name(f))).collect();
    let cands = candidates(cfg);
    let bar = (!args.json).then(|| {
        let b = indicatif::ProgressBar::new((horizons.len() * (cands.len() + 1) * traces.len()) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut out = Vec::new();
    for &h in horizons {
        let run_all = |c: &RespirationConfig| -> Vec<HorizonReport> {
            traces
                .iter()
                .map(|(t, v)| {
                    let r = evaluate(t, v, c, h * 1e-3, &[c.method]);
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                    r
                })
                .collect()
        };
        let shipped = run_all(cfg);
        let reports: Vec<Vec<HorizonReport>> = cands.iter().map(|c| run_all(&c.cfg)).collect();
        let scores: Vec<Vec<f64>> =
            reports.iter().map(|rs| rs.iter().map(|r| r.methods[0].ratio_to_hold).collect()).collect();
        let folds = cross_validate(&scores, &recordings)?;
        let mut held_out = Vec::new();
        let fold_json: Vec<serde_json::Value> = folds
            .iter()
            .map(|f| {
                let rows: Vec<serde_json::Value> = f
                    .traces
                    .iter()
                    .map(|&i| {
                        let r = &reports[f.chosen][i];
                        held_out.push((r.methods[0].ratio_to_hold, r.gate));
                        json!({
                            "trace": name(&files[i]),
                            "ratio_to_hold": r.methods[0].ratio_to_hold,
                            "duty_cycle": r.gate.duty_cycle,
                            "residual_p95_mm": r.gate.residual_p95_mm,
                            "shipped_ratio_to_hold": shipped[i].methods[0].ratio_to_hold,
                        })
                    })
                    .collect();
                json!({
                    "recording": f.recording,
                    "chosen": cands[f.chosen].name,
                    "training_mean_ratio": f.training_score,
                    "traces": rows,
                })
            })
            .collect();
        let n = held_out.len() as f64;
        let mean =
            |f: &dyn Fn(&(f64, stylet_respiration::eval::GateStats)) -> f64| held_out.iter().map(f).sum::<f64>() / n;
        let worst_excess =
            held_out.iter().map(|(_, g)| g.residual_p95_mm - g.window_half_width_mm).fold(f64::NEG_INFINITY, f64::max);
        out.push(json!({
            "horizon_ms": h,
            "recordings": folds.len(),
            "traces": held_out.len(),
            "candidates": cands.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            "folds": fold_json,
            "held_out": {
                "mean_ratio_to_hold": mean(&|x| x.0),
                "worst_ratio_to_hold": held_out.iter().map(|x| x.0).fold(f64::NEG_INFINITY, f64::max),
                "traces_worse_than_hold": held_out.iter().filter(|x| x.0 >= 1.0).count(),
                "mean_duty_cycle": mean(&|x| x.1.duty_cycle),
                "worst_residual_p95_minus_window_mm": worst_excess,
            },
            "shipped_in_sample_mean_ratio_to_hold":
                shipped.iter().map(|r| r.methods[0].ratio_to_hold).sum::<f64>() / shipped.len().max(1) as f64,
            "window_half_width_mm": cfg.window_half_width_mm,
        }));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        say!("{}", json!({ "cross_validation": "leave one recording out", "horizons": out }));
        return Ok(ExitCode::SUCCESS);
    }
    print_cross_validation(&out);
    Ok(ExitCode::SUCCESS)
}

/// The table of `--cv` for a person: per held-out recording, the setting chosen on the others
/// and its figures, then the held-out means.
fn print_cross_validation(out: &[serde_json::Value]) {
    for h in out {
        say!(
            "horizon {} ms, leave one recording out: {} recordings, {} traces, {} candidate settings",
            h["horizon_ms"],
            h["recordings"],
            h["traces"],
            h["candidates"].as_array().map_or(0, Vec::len)
        );
        say!(
            "{:<14} {:<40} {:<34} {:>8} {:>6} {:>8} {:>8}",
            "held out",
            "chosen on the others",
            "trace",
            "ratio",
            "duty",
            "res p95",
            "shipped"
        );
        for f in h["folds"].as_array().into_iter().flatten() {
            for (k, t) in f["traces"].as_array().into_iter().flatten().enumerate() {
                let (rec, chosen) = if k == 0 {
                    (f["recording"].as_str().unwrap_or(""), f["chosen"].as_str().unwrap_or(""))
                } else {
                    ("", "")
                };
                say!(
                    "{:<14} {:<40} {:<34} {:>8.3} {:>5.1}% {:>8.2} {:>8.3}",
                    rec,
                    chosen,
                    t["trace"].as_str().unwrap_or(""),
                    t["ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
                    100.0 * t["duty_cycle"].as_f64().unwrap_or(f64::NAN),
                    t["residual_p95_mm"].as_f64().unwrap_or(f64::NAN),
                    t["shipped_ratio_to_hold"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
        let o = &h["held_out"];
        say!(
            "held out: mean ratio {:.3} (shipped settings in sample {:.3}), worst {:.3}, {} trace(s) no better than holding; mean duty {:.1} %; worst p95 residual {:+.2} mm against the +-{} mm window",
            o["mean_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            h["shipped_in_sample_mean_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            o["worst_ratio_to_hold"].as_f64().unwrap_or(f64::NAN),
            o["traces_worse_than_hold"],
            100.0 * o["mean_duty_cycle"].as_f64().unwrap_or(f64::NAN),
            o["worst_residual_p95_minus_window_mm"].as_f64().unwrap_or(f64::NAN),
            h["window_half_width_mm"]
        );
    }
}

/// Window half-widths and confidence factors of `--tradeoff`.
const TRADEOFF_HALF_WIDTHS_MM: [f64; 7] = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0];
const TRADEOFF_FACTORS: [f64; 3] = [0.0, 1.0, 2.0];

fn tradeoff(
    args: &EvalArgs,
    cfg: &RespirationConfig,
    horizon_ms: f64,
    files: &[PathBuf],
    png: &Path,
) -> anyhow::Result<ExitCode> {
    let mut traces = Vec::new();
    for f in files {
        let sig = signal_of(&read_trace(f, format_of(f, args.format)?)?, cfg);
        traces.push((sig.t_s, sig.mm));
    }
    let points = stylet_respiration::eval::tradeoff(
        &traces,
        cfg,
        horizon_ms * 1e-3,
        &TRADEOFF_HALF_WIDTHS_MM,
        &TRADEOFF_FACTORS,
    );
    crate::plot::tradeoff_png(png, &points).with_context(|| format!("writing {}", png.display()))?;
    if args.json {
        say!("{}", json!({ "horizon_ms": horizon_ms, "traces": traces.len(), "points": points, "plot": png }));
        return Ok(ExitCode::SUCCESS);
    }
    say!("gate trade-off at {horizon_ms:.0} ms over {} traces (the configured predictor)", traces.len());
    say!("{:>10} {:>10} {:>10} {:>12} {:>14}", "half-width", "confidence", "mean duty", "worst p95", "traces outside");
    for p in &points {
        say!(
            "{:>8.1}mm {:>10.1} {:>9.1}% {:>10.2}mm {:>14}",
            p.half_width_mm,
            p.confidence_factor,
            100.0 * p.mean_duty,
            p.worst_p95_mm,
            p.traces_outside
        );
    }
    say!("plot: {}", png.display());
    Ok(ExitCode::SUCCESS)
}
