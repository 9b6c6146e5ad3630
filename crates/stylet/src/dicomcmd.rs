//! `stylet dicom listen`: the DICOM node alone, printing each series as it completes; `stylet dicom
//! send`: files to a node, as a scanner sends them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use stylet_dicom_node::{DicomNode, NodeConfig, NodeEvent, SeriesOutcome};
use stylet_imaging::load_series;

/// Options of `stylet dicom listen`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListenArgs {
    /// TCP port (104 and 11112 are DICOM's usual ones; 0 picks a free port).
    #[arg(long, default_value_t = 11112)]
    port: u16,
    /// The folder received series are stored in (one sub-folder per SeriesInstanceUID).
    #[arg(long)]
    out: PathBuf,
    /// This node's AE title (the called AE title senders must use).
    #[arg(long, default_value = "STYLET")]
    aet: String,
    /// Address to bind (0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Calling AE titles allowed (repeat; none: any).
    #[arg(long = "allow-aet")]
    allow_aet: Vec<String>,
    /// Peer addresses allowed (repeat; none: any).
    #[arg(long = "allow-peer")]
    allow_peer: Vec<IpAddr>,
    /// Seconds without news of a series before it is complete.
    #[arg(long, default_value_t = 2.0)]
    quiet_s: f64,
    /// Stop after this many complete series (default: run until killed).
    #[arg(long)]
    series: Option<usize>,
    /// Print every event (associations, each instance) as well.
    #[arg(long)]
    verbose: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn listen(args: &ListenArgs) -> anyhow::Result<ExitCode> {
    let mut config = NodeConfig::local(&args.aet, args.port, args.out.clone());
    config.bind_address = args.bind;
    config.allowed_calling_ae_titles.clone_from(&args.allow_aet);
    config.allowed_peer_addresses.clone_from(&args.allow_peer);
    config.series_quiet_s = args.quiet_s;
    let node = DicomNode::start(config)?;
    let addr = node.local_addr();
    if args.json {
        say(&json!({ "event": "listening", "address": addr.to_string(), "ae_title": args.aet }).to_string())?;
    } else {
        say(&format!("listening on {addr} as {} (storing to {})", args.aet, args.out.display()))?;
    }
    let mut complete = 0;
    while args.series.is_none_or(|n| complete < n) {
        let Ok(event) = node.events().recv() else { break };
        // Without --verbose: series, refusals and refused instances only.
        let chatty = matches!(
            event,
            NodeEvent::Stored { .. } | NodeEvent::Echo { .. } | NodeEvent::Associated { .. } | NodeEvent::Ended { .. }
        );
        let loaded = match &event {
            NodeEvent::Series(SeriesOutcome::Complete(s)) => {
                complete += 1;
                Some(load_series(&s.dir, Some(&s.series_uid)).map_err(|e| e.to_string()))
            }
            _ => None,
        };
        if args.json {
            let mut j = serde_json::to_value(&event)?;
            match &loaded {
                Some(Ok((v, r))) => {
                    j["volume"] = json!({ "dimensions": v.dims, "spacing_mm": v.spacing_mm, "series": r });
                }
                Some(Err(e)) => j["load_error"] = json!(e),
                None => {}
            }
            if !chatty || args.verbose {
                say(&j.to_string())?;
            }
            continue;
        }
        let line = match (&event, &loaded) {
            (NodeEvent::Series(SeriesOutcome::Complete(s)), Some(Ok((v, r)))) => format!(
                "series {} complete: {} instances from {}, {}x{}x{} voxels of {:.2}x{:.2}x{:.2} mm, {} ({}), in {}",
                s.series_uid,
                s.instances,
                s.calling_aes.join(", "),
                v.dims[0],
                v.dims[1],
                v.dims[2],
                v.spacing_mm[0],
                v.spacing_mm[1],
                v.spacing_mm[2],
                r.description,
                r.transfer_syntax,
                s.dir.display()
            ),
            (NodeEvent::Series(SeriesOutcome::Complete(s)), Some(Err(e))) => {
                format!("series {} complete ({} instances) but does not load: {e}", s.series_uid, s.instances)
            }
            (NodeEvent::Series(SeriesOutcome::Partial { series, reason }), _) => format!(
                "series {} PARTIAL ({} instances; {reason}): not used, kept in {}",
                series.series_uid,
                series.instances,
                series.dir.display()
            ),
            (NodeEvent::Refused { peer, reason }, _) => format!("refused {peer}: {reason}"),
            (NodeEvent::InstanceRefused { status, reason, .. }, _) => {
                format!("instance refused (status 0x{status:04X}): {reason}")
            }
            (e, _) if args.verbose => format!("{e:?}"),
            _ => continue,
        };
        say(&line)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line to stdout; a reader that went away ends the command (the node stops; what it
/// stored stays).
fn say(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| anyhow::anyhow!("stdout: {e}"))
}

/// `AE@HOST:PORT` as a destination, with our AE title `calling`.
pub(crate) fn destination(node: &str, calling: &str) -> anyhow::Result<stylet_dicom_node::Destination> {
    let (ae, addr) = node.split_once('@').with_context(|| format!("{node:?}: expected AE@HOST:PORT"))?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("{node:?}: {addr:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{node:?}: {addr:?} resolves to nothing"))?;
    Ok(stylet_dicom_node::Destination { addr, called_ae_title: ae.to_string(), calling_ae_title: calling.to_string() })
}

/// Options of `stylet dicom send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The node to send to.
    #[arg(long, value_name = "AE@HOST:PORT")]
    to: String,
    /// Our AE title (the calling AE title).
    #[arg(long, default_value = "STYLET")]
    aet: String,
    /// DICOM files, or folders of them (every file directly inside).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `stylet dicom send`: the files on one association (C-STORE), each status checked.
pub(crate) fn send(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let dest = destination(&args.to, &args.aet)?;
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    anyhow::ensure!(!files.is_empty(), "no files in {:?}", args.paths);
    let started = std::time::Instant::now();
    let sent = stylet_dicom_node::send_series(&dest, &files)?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        say!("{}", serde_json::json!({ "to": args.to, "sent": sent, "seconds": seconds }));
    } else {
        say!("sent {sent} file(s) to {} in {seconds:.2} s", args.to);
    }
    Ok(ExitCode::SUCCESS)
}
