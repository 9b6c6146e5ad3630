//! When a received series is complete: a pure state machine over what the associations
//! delivered and when (seconds on the caller's clock), so the rules are tested without a network.
//!
//! - A series is complete once `quiet_s` has passed since its last instance and since the last
//!   PDU of every open association that delivered to it (an instance still in transfer holds it).
//! - An association that ends in an abort (or breaks) makes every series it delivered to and
//!   that was not yet complete *partial*: reported once, never complete.
//! - A partial or complete series that receives instances again from a later association is
//!   being re-sent: it is receiving again, and completes (again) under the same rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

/// One association, as the node numbers them.
pub type AssociationId = u64;

/// One stored instance, as the tracker needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredInstance {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SOPInstanceUID.
    pub sop_instance_uid: String,
    /// The series' folder.
    pub dir: PathBuf,
    /// PatientID as sent.
    pub patient_id: String,
    /// FrameOfReferenceUID as sent (empty when missing).
    pub frame_of_reference_uid: String,
    /// The sender's AE title.
    pub calling_ae: String,
}

/// A series the tracker reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// The folder its files are in (only its own files).
    pub dir: PathBuf,
    /// Instances received (distinct SOPInstanceUIDs).
    pub instances: usize,
    /// PatientID of the instances (the last one's).
    pub patient_id: String,
    /// FrameOfReferenceUID of the instances (the last one's).
    pub frame_of_reference_uid: String,
    /// The AE titles that sent it.
    pub calling_aes: Vec<String>,
}

/// What became of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SeriesOutcome {
    /// Complete: safe to load.
    Complete(Series),
    /// Cut off: never to be used.
    Partial {
        /// The series as far as it came.
        series: Series,
        /// Why (the association's end).
        reason: String,
    },
}

#[derive(Debug)]
struct State {
    dir: PathBuf,
    instances: BTreeSet<String>,
    last_s: f64,
    delivering: BTreeSet<AssociationId>,
    patient_id: String,
    frame_of_reference_uid: String,
    calling_aes: BTreeSet<String>,
    settled: bool,
}

impl State {
    fn series(&self, uid: &str) -> Series {
        Series {
            series_uid: uid.to_string(),
            dir: self.dir.clone(),
            instances: self.instances.len(),
            patient_id: self.patient_id.clone(),
            frame_of_reference_uid: self.frame_of_reference_uid.clone(),
            calling_aes: self.calling_aes.iter().cloned().collect(),
        }
    }
}

/// The series being received and the associations delivering them.
#[derive(Debug)]
pub struct SeriesTracker {
    quiet_s: f64,
    series: BTreeMap<String, State>,
    /// Open associations and their last PDU, seconds.
    open: BTreeMap<AssociationId, f64>,
}

impl SeriesTracker {
    /// A tracker that calls a series complete after `quiet_s` without news of it.
    pub fn new(quiet_s: f64) -> Self {
        Self { quiet_s, series: BTreeMap::new(), open: BTreeMap::new() }
    }

    /// An association was accepted, or sent a PDU (it is alive).
    pub fn activity(&mut self, id: AssociationId, now_s: f64) {
        self.open.insert(id, now_s);
    }

    /// An instance was stored (its file is in place).
    pub fn stored(&mut self, id: AssociationId, instance: &StoredInstance, now_s: f64) {
        self.open.insert(id, now_s);
        let s = self.series.entry(instance.series_uid.clone()).or_insert_with(|| State {
            dir: instance.dir.clone(),
            instances: BTreeSet::new(),
            last_s: now_s,
            delivering: BTreeSet::new(),
            patient_id: String::new(),
            frame_of_reference_uid: String::new(),
            calling_aes: BTreeSet::new(),
            settled: false,
        });
        s.instances.insert(instance.sop_instance_uid.clone());
        s.last_s = now_s;
        s.delivering.insert(id);
        s.patient_id.clone_from(&instance.patient_id);
        s.frame_of_reference_uid.clone_from(&instance.frame_of_reference_uid);
        s.calling_aes.insert(instance.calling_ae.clone());
        s.settled = false;
    }

    /// An association ended: released (`aborted` = None) or aborted, broken or timed out
    /// (`aborted` = the reason). Returns the series it leaves partial.
    pub fn ended(&mut self, id: AssociationId, aborted: Option<&str>, now_s: f64) -> Vec<SeriesOutcome> {
        self.open.remove(&id);
        let mut out = Vec::new();
        for (uid, s) in &mut self.series {
            if !s.delivering.remove(&id) {
                continue;
            }
            s.last_s = s.last_s.max(now_s);
            if let (Some(reason), false) = (aborted, s.settled) {
                s.settled = true;
                out.push(SeriesOutcome::Partial { series: s.series(uid), reason: reason.to_string() });
            }
        }
        out
    }

    /// Open associations without a PDU for `timeout_s` or more.
    pub fn silent(&self, now_s: f64, timeout_s: f64) -> Vec<AssociationId> {
        self.open.iter().filter(|(_, &t)| now_s - t >= timeout_s).map(|(&id, _)| id).collect()
    }

    /// The series that became complete by `now_s`.
    pub fn due(&mut self, now_s: f64) -> Vec<SeriesOutcome> {
        let mut out = Vec::new();
        for (uid, s) in &mut self.series {
            if s.settled {
                continue;
            }
            let busy = s.delivering.iter().filter_map(|id| self.open.get(id)).any(|&t| now_s - t < self.quiet_s);
            if !busy && now_s - s.last_s >= self.quiet_s {
                s.settled = true;
                out.push(SeriesOutcome::Complete(s.series(uid)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(series: &str, sop: &str) -> StoredInstance {
        StoredInstance {
            series_uid: series.into(),
            sop_instance_uid: sop.into(),
            dir: PathBuf::from(format!("/store/{series}")),
            patient_id: "P1".into(),
            frame_of_reference_uid: "1.2.3".into(),
            calling_ae: "SCANNER".into(),
        }
    }

    fn complete(v: &[SeriesOutcome]) -> Vec<(String, usize)> {
        v.iter()
            .filter_map(|o| match o {
                SeriesOutcome::Complete(s) => Some((s.series_uid.clone(), s.instances)),
                SeriesOutcome::Partial { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_series_is_complete_after_the_quiet_time_and_only_once() {
        let mut t = SeriesTracker::new(2.0);
        t.activity(1, 0.0);
        t.stored(1, &inst("1.1", "1.1.1"), 0.5);
        t.stored(1, &inst("1.1", "1.1.2"), 1.0);
        t.stored(1, &inst("1.1", "1.1.2"), 1.2); // the same instance again counts once
        assert!(t.due(2.9).is_empty());
        assert!(t.ended(1, None, 3.0).is_empty());
        assert!(t.due(4.9).is_empty(), "quiet since the release, not since the last instance");
        assert_eq!(complete(&t.due(5.0)), vec![("1.1".to_string(), 2)]);
        assert!(t.due(100.0).is_empty());
    }

    #[test]
    fn an_instance_still_in_transfer_holds_the_series() {
        let mut t = SeriesTracker::new(2.0);
        t.stored(1, &inst("1.1", "a"), 0.0);
        for k in 1..10 {
            t.activity(1, f64::from(k)); // PDUs of the next, large instance
        }
        assert!(t.due(10.5).is_empty());
        assert_eq!(complete(&t.due(11.0)).len(), 1, "an open but idle association does not hold it");
    }

    #[test]
    fn an_abort_leaves_its_series_partial_never_complete_until_it_is_sent_again() {
        let mut t = SeriesTracker::new(2.0);
        t.stored(1, &inst("1.1", "a"), 0.0);
        t.stored(2, &inst("1.2", "b"), 0.0);
        assert!(t.ended(2, None, 0.5).is_empty());
        let partial = t.ended(1, Some("aborted by the sender"), 1.0);
        assert!(
            matches!(&partial[..], [SeriesOutcome::Partial { series, reason }]
                if series.series_uid == "1.1" && reason == "aborted by the sender"),
            "{partial:?}"
        );
        assert_eq!(complete(&t.due(50.0)), vec![("1.2".to_string(), 1)]);
        // Sent again from the start by a new association: complete with both instances.
        t.stored(3, &inst("1.1", "a"), 60.0);
        t.stored(3, &inst("1.1", "c"), 60.5);
        t.ended(3, None, 61.0);
        assert_eq!(complete(&t.due(63.0)), vec![("1.1".to_string(), 2)]);
    }

    #[test]
    fn an_association_without_a_pdu_for_the_timeout_is_silent() {
        let mut t = SeriesTracker::new(2.0);
        t.activity(1, 0.0);
        t.activity(2, 5.0);
        assert_eq!(t.silent(9.9, 10.0), Vec::<AssociationId>::new());
        assert_eq!(t.silent(10.0, 10.0), vec![1]);
        t.ended(1, Some("silent"), 10.0);
        assert_eq!(t.silent(20.0, 10.0), vec![2]);
    }

    #[test]
    fn an_abort_after_a_series_completed_does_not_unmake_it() {
        let mut t = SeriesTracker::new(2.0);
        t.stored(1, &inst("1.1", "a"), 0.0);
        assert_eq!(complete(&t.due(3.0)).len(), 1);
        assert!(t.ended(1, Some("peer closed"), 10.0).is_empty());
    }
}
