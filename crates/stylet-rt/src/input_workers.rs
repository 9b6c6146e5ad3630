//! The kernel's serial input workers at a real-time priority while a control loop runs.
//!
//! A serial line's received bytes (a pty's and a USB-serial adapter's alike) reach the line
//! discipline, and so the link's reader, through the tty flip buffer, whose work the kernel runs
//! on its unbound workqueue: the `kworker/uN:M` threads of the normal-priority unbound pool,
//! SCHED_OTHER at nice 0. On a host whose cores are busy with other normal-priority work, those
//! workers wait for their turn like any other thread, and a controller state reaches the runner
//! tens of milliseconds late (HAZ-8; docs/safety.md, "Latency budget").
//!
//! While a process that keeps the arm's timing runs, [`InputWorkers`] keeps every such worker at
//! SCHED_FIFO at the configured priority (below the link's I/O thread): the workers the pool has
//! now, and those it creates later (the pool grows and shrinks with its work), found by a scan of
//! `/proc` every [`SCAN_PERIOD`]. Workers of other pools (per-core, high-priority) and rescuers
//! are left as they are.
//!
//! It also keeps the unbound workqueues off the real-time core (`/sys/devices/virtual/workqueue/
//! cpumask`, the heavy-work cores). Without that, a raised worker that wakes while the real-time
//! core idles is placed there (the real-time scheduler picks the core running the least), and a
//! long work item in kernel code delays the runner's next cycle: measured on this project's
//! 2-core VM, every `bench loop` with a busy loop on the other core latched HAZ-11 (cycles
//! 11-20 ms late) until the workqueues were kept off the real-time core; then none did.
//!
//! When it stops (dropped, or the process ends normally), it puts back the workers it raised and
//! the cpumask it replaced. Two Stylet processes at once (a simulated controller and a
//! bring-up) agree: each writes the mask when it finds it different, remembers what it replaced,
//! and writes that back at the end.
//!
//! The policy of another thread is set with `chrt` (util-linux), which needs CAP_SYS_NICE like
//! the real-time policy of Stylet's own threads: this workspace makes no system call of its own
//! (no `unsafe`), and the maintained crates it uses set policies by pthread only.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the unbound workqueues' cpumask is set (root).
const WQ_CPUMASK: &str = "/sys/devices/virtual/workqueue/cpumask";

/// The cpumask of `cores` as the workqueue file takes it (hex, 32-bit groups separated by commas).
#[must_use]
pub fn cpumask_hex(cores: &[usize]) -> String {
    let top = cores.iter().max().map_or(0, |m| m / 32);
    let mut groups: Vec<String> = (0..=top)
        .map(|g| {
            let bits = cores.iter().filter(|c| **c / 32 == g).fold(0u32, |acc, c| acc | (1 << (c % 32)));
            format!("{bits:08x}")
        })
        .collect();
    groups.reverse();
    groups.join(",")
}

/// Parses a cpumask as the kernel prints it (`3`, `00000003`, `ff,ffffffff`).
#[must_use]
pub fn parse_cpumask(text: &str) -> Option<Vec<usize>> {
    let mut cores = Vec::new();
    for (g, group) in text.trim().split(',').rev().enumerate() {
        let bits = u32::from_str_radix(group, 16).ok()?;
        cores.extend((0..32).filter(|b| bits & (1 << b) != 0).map(|b| g * 32 + b));
    }
    Some(cores)
}

/// How often the workers the kernel created since are looked for.
pub const SCAN_PERIOD: Duration = Duration::from_millis(200);

/// One kernel thread, as `/proc/PID/stat` and `/proc/PID/comm` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelThread {
    /// Thread id.
    pub tid: u32,
    /// `comm`, e.g. `kworker/u8:1-events_unbound`.
    pub comm: String,
    /// Nice value.
    pub nice: i32,
    /// Scheduling policy number (0 SCHED_OTHER, 1 SCHED_FIFO, 2 SCHED_RR, ...).
    pub policy: u32,
    /// Real-time priority (0 for the normal policies).
    pub rt_priority: u32,
}

/// Parses `/proc/PID/stat` (fields after the command in parentheses, which may hold spaces).
#[must_use]
pub fn parse_stat(tid: u32, comm: &str, stat: &str) -> Option<KernelThread> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc_pid_stat(5) is fields[n - 3]: nice is 19, rt_priority 40, policy 41.
    Some(KernelThread {
        tid,
        comm: comm.trim_end().to_string(),
        nice: fields.get(16)?.parse().ok()?,
        rt_priority: fields.get(37)?.parse().ok()?,
        policy: fields.get(38)?.parse().ok()?,
    })
}

/// Whether `comm` names a worker of an unbound pool (`kworker/u8:1`, `kworker/u8:1-events_unbound`),
/// not a per-core worker (`kworker/0:1`) or a rescuer (`kworker/R-...`).
#[must_use]
pub fn is_unbound_worker(comm: &str) -> bool {
    let Some(id) = comm.strip_prefix("kworker/u") else { return false };
    let id = id.split('-').next().unwrap_or("");
    match id.split_once(':') {
        Some((pool, n)) => {
            !pool.is_empty()
                && !n.is_empty()
                && pool.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The workers to raise among `threads`: unbound, normal pool (nice 0), still SCHED_OTHER.
#[must_use]
pub fn to_raise(threads: &[KernelThread]) -> Vec<u32> {
    threads.iter().filter(|t| is_unbound_worker(&t.comm) && t.nice == 0 && t.policy == 0).map(|t| t.tid).collect()
}

/// Every unbound worker now in `/proc`.
fn scan(proc_dir: &Path) -> Vec<KernelThread> {
    let Ok(entries) = std::fs::read_dir(proc_dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            if !is_unbound_worker(comm.trim_end()) {
                return None;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            parse_stat(tid, &comm, &stat)
        })
        .collect()
}

fn chrt(args: &[String]) -> Result<(), String> {
    let out = Command::new("chrt").args(args).output().map_err(|e| format!("chrt (util-linux) not run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// What [`InputWorkers`] has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkersReport {
    /// The priority the workers are kept at.
    pub priority: u8,
    /// Workers raised so far (including ones the kernel has since retired; counted by
    /// [`InputWorkers::report`]).
    pub raised: usize,
    /// The first refusal, if the host refused (no CAP_SYS_NICE, no `chrt`).
    pub refused: Option<String>,
    /// The cores the unbound workqueues are kept on, if they are.
    pub workqueue_cores: Option<Vec<usize>>,
    /// Why they are not, if they are not.
    pub workqueue_refused: Option<String>,
}

struct Shared {
    raised: Mutex<BTreeSet<u32>>,
    report: Mutex<WorkersReport>,
    stop: AtomicBool,
    /// The cpumask to keep (hex) and the one it replaced, if it replaced one.
    mask: Option<String>,
    replaced_mask: Mutex<Option<String>>,
}

/// Writes the workqueue cpumask when it differs from `mask`, remembering the first one replaced.
fn keep_mask(s: &Shared) -> Result<(), String> {
    let Some(mask) = &s.mask else { return Ok(()) };
    let now = std::fs::read_to_string(WQ_CPUMASK).map_err(|e| format!("{WQ_CPUMASK}: {e}"))?;
    if parse_cpumask(&now) == parse_cpumask(mask) {
        return Ok(());
    }
    std::fs::write(WQ_CPUMASK, mask).map_err(|e| format!("{WQ_CPUMASK}: {e}"))?;
    s.replaced_mask.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(now.trim().to_string());
    Ok(())
}

/// Keeps the kernel's unbound workers at SCHED_FIFO while it lives (see the module's doc).
pub struct InputWorkers {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl InputWorkers {
    /// Keeps the unbound workqueues on `keep_on` (the heavy-work cores; `None` or every core
    /// leaves the mask as it is), raises the unbound workers there are now to SCHED_FIFO
    /// `priority`, and starts the scan that does both again for what the kernel changes later.
    /// If the host refuses the first raise, no scan is started and the report says why.
    #[must_use]
    pub fn start(priority: u8, keep_on: Option<&[usize]>) -> Self {
        let shared = Arc::new(Shared {
            raised: Mutex::new(BTreeSet::new()),
            report: Mutex::new(WorkersReport { priority, ..WorkersReport::default() }),
            stop: AtomicBool::new(false),
            mask: keep_on.filter(|c| !c.is_empty()).map(cpumask_hex),
            replaced_mask: Mutex::new(None),
        });
        {
            let mut r = shared.report.lock().unwrap_or_else(PoisonError::into_inner);
            match keep_mask(&shared) {
                Ok(()) => r.workqueue_cores = keep_on.map(<[usize]>::to_vec),
                Err(e) => {
                    r.workqueue_refused = Some(format!(
                        "keeping the kernel's unbound workqueues off the real-time core refused ({e}): \
                         kernel work may delay the runner"
                    ));
                }
            }
        }
        let ok = raise_new(&shared, priority);
        let thread = ok
            .then(|| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name("stylet-input-workers".into())
                    .spawn(move || {
                        while !s.stop.load(Ordering::Relaxed) {
                            std::thread::sleep(SCAN_PERIOD);
                            let _ = keep_mask(&s);
                            raise_new(&s, priority);
                        }
                    })
                    .ok()
            })
            .flatten();
        InputWorkers { shared, thread }
    }

    /// What was done so far.
    #[must_use]
    pub fn report(&self) -> WorkersReport {
        let mut r = self.shared.report.lock().unwrap_or_else(PoisonError::into_inner).clone();
        r.raised = self.shared.raised.lock().unwrap_or_else(PoisonError::into_inner).len();
        r
    }
}

impl std::fmt::Debug for InputWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InputWorkers({:?})", self.report())
    }
}

/// Raises every worker still at SCHED_OTHER; false once the host refused.
fn raise_new(s: &Shared, priority: u8) -> bool {
    for tid in to_raise(&scan(Path::new("/proc"))) {
        match chrt(&["-f".into(), "-p".into(), priority.to_string(), tid.to_string()]) {
            Ok(()) => {
                s.raised.lock().unwrap_or_else(PoisonError::into_inner).insert(tid);
            }
            // A worker the kernel retired since the scan.
            Err(_) if !Path::new(&format!("/proc/{tid}")).exists() => {}
            Err(e) => {
                let mut r = s.report.lock().unwrap_or_else(PoisonError::into_inner);
                r.refused.get_or_insert(format!(
                    "raising the kernel's serial input workers (kworker/u*, tty flip buffer) to SCHED_FIFO {priority} \
                     refused ({e}): serial input waits behind other normal-priority work"
                ));
                return false;
            }
        }
    }
    true
}

impl Drop for InputWorkers {
    /// Stops the scan and puts the workers it raised back to SCHED_OTHER (those still workers of
    /// an unbound pool at the priority given; the kernel may have retired or reused the rest).
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let priority = self.shared.report.lock().unwrap_or_else(PoisonError::into_inner).priority;
        if let Some(mask) = self.shared.replaced_mask.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = std::fs::write(WQ_CPUMASK, mask);
        }
        let raised = std::mem::take(&mut *self.shared.raised.lock().unwrap_or_else(PoisonError::into_inner));
        for t in scan(Path::new("/proc")) {
            if raised.contains(&t.tid) && t.policy == 1 && t.rt_priority == u32::from(priority) {
                let _ = chrt(&["-o".into(), "-p".into(), "0".into(), t.tid.to_string()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // A kworker's /proc/PID/stat on kernel 6.18 (SCHED_OTHER, nice 0), and one raised by chrt.
    const STAT: &str = "33 (kworker/u8:1-events_unbound) I 2 0 0 0 -1 69238880 0 0 0 0 0 52 0 0 20 0 1 0 5 0 0 \
                        18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";
    const RAISED: &str = "33 (kworker/u8:1-events_unbound) I 2 0 0 0 -1 69238880 0 0 0 0 0 52 0 0 -71 0 1 0 5 0 0 \
                          18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 70 1 0 0 0 0 0 0 0 0 0 0 0";

    #[test]
    fn stat_fields_are_read() {
        let t = parse_stat(33, "kworker/u8:1-events_unbound\n", STAT).unwrap();
        assert_eq!((t.nice, t.policy, t.rt_priority), (0, 0, 0));
        assert_eq!(t.comm, "kworker/u8:1-events_unbound");
        let r = parse_stat(33, "kworker/u8:1", RAISED).unwrap();
        assert_eq!((r.policy, r.rt_priority), (1, 70));
        assert_eq!(parse_stat(1, "x", "1 (x) S 0"), None);
    }

    #[test]
    fn only_unbound_pool_workers_are_chosen() {
        for yes in ["kworker/u8:1", "kworker/u8:1-events_unbound", "kworker/u16:12-flush-8:0"] {
            assert!(is_unbound_worker(yes), "{yes}");
        }
        for no in ["kworker/0:1-events", "kworker/0:1H-kblockd", "kworker/R-writeback", "kworker/u", "ksoftirqd/0"] {
            assert!(!is_unbound_worker(no), "{no}");
        }
        let t = |tid, comm: &str, nice, policy| KernelThread { tid, comm: comm.into(), nice, policy, rt_priority: 0 };
        let threads = [
            t(1, "kworker/u8:1-events_unbound", 0, 0),
            t(2, "kworker/u9:0", -20, 0),
            t(3, "kworker/u8:2", 0, 1),
            t(4, "kworker/0:1-events", 0, 0),
        ];
        assert_eq!(to_raise(&threads), vec![1], "normal pool, not yet raised");
    }

    #[test]
    fn cpumasks_are_written_and_read_as_the_kernel_does() {
        assert_eq!(cpumask_hex(&[0]), "00000001");
        assert_eq!(cpumask_hex(&[0, 1]), "00000003");
        assert_eq!(cpumask_hex(&[1, 33]), "00000002,00000002");
        assert_eq!(parse_cpumask("3\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpumask("00000002,00000002"), Some(vec![1, 33]));
        assert_eq!(parse_cpumask("zz"), None);
    }

    #[test]
    fn the_workers_are_raised_while_it_lives_and_put_back_after_or_refused_with_the_reason() {
        let w = InputWorkers::start(7, None);
        let r = w.report();
        let now = scan(Path::new("/proc"));
        if let Some(why) = &r.refused {
            assert!(why.contains("SCHED_FIFO 7 refused"), "{why}");
            return;
        }
        // Another process (a concurrent test) may have raised some first, at its own priority.
        let ours: Vec<u32> = now.iter().filter(|t| t.policy == 1 && t.rt_priority == 7).map(|t| t.tid).collect();
        assert!(r.raised >= ours.len(), "{r:?} {now:?}");
        assert!(now.iter().filter(|t| t.nice == 0).any(|t| t.policy == 1), "some worker is raised: {now:?}");
        drop(w);
        let after = scan(Path::new("/proc"));
        assert!(after.iter().all(|t| !(ours.contains(&t.tid) && t.policy == 1 && t.rt_priority == 7)), "{after:?}");
    }
}
