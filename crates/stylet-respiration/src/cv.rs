//! Cross-validation by recording (`stylet resp eval --cv`): the predictor's settings are chosen
//! on some recordings and scored on another, never on the one they are scored on.
//!
//! Every trace of one recording (the markers of one session: one patient's breathing seen from
//! several places) is in the same fold, so that no fold learns a patient it is then scored on.
//! A fold's settings are the [`candidates`] entry with the lowest mean prediction ratio (RMSE
//! over holding the last sample) over the other folds' traces; the figures reported are that
//! entry's on the fold's own traces. Each trace is run on its own (the predictors adapt online
//! within a trace and carry nothing between traces), so a score matrix of candidates x traces
//! holds everything the selection needs ([`cross_validate`]).

use std::collections::BTreeSet;

use crate::config::{Method, RespirationConfig};

/// One setting of the predictor that cross-validation may choose.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// A name that says what differs from the base config.
    pub name: String,
    /// The settings.
    pub cfg: RespirationConfig,
}

/// The settings cross-validation chooses among: each predictor with its own main parameters
/// varied around the shipped values (wavelet-RLS: the forgetting factor and the decomposition's
/// levels; pattern matching: the neighbours averaged; the blend: all three), the rest as in
/// `base`.
#[must_use]
pub fn candidates(base: &RespirationConfig) -> Vec<Candidate> {
    let forgetting = [0.99, 0.995, 0.999];
    let levels = [4, 5];
    let neighbours = [5, 10, 20];
    let mut out = Vec::new();
    for l in levels {
        for f in forgetting {
            out.push(Candidate {
                name: format!("wavelet_rls levels {l} forgetting {f}"),
                cfg: RespirationConfig {
                    method: Method::WaveletRls,
                    wavelet_levels: l,
                    rls_forgetting: f,
                    ..base.clone()
                },
            });
        }
    }
    for k in neighbours {
        out.push(Candidate {
            name: format!("pattern neighbours {k}"),
            cfg: RespirationConfig { method: Method::Pattern, pattern_neighbours: k, ..base.clone() },
        });
    }
    for l in levels {
        for f in forgetting {
            for k in neighbours {
                out.push(Candidate {
                    name: format!("combined levels {l} forgetting {f} neighbours {k}"),
                    cfg: RespirationConfig {
                        method: Method::Combined,
                        wavelet_levels: l,
                        rls_forgetting: f,
                        pattern_neighbours: k,
                        ..base.clone()
                    },
                });
            }
        }
    }
    out
}

/// The recording a trace belongs to, from its file name: the Krilavicius names
/// (`DATE-SITE-1-CONDITION-DURATIONs-6.csv`) start with the recording's date and time, shared by
/// its markers; any other name is a recording of its own (its whole stem).
#[must_use]
pub fn recording_of(file_name: &str) -> String {
    let stem = file_name.strip_suffix(".csv").unwrap_or(file_name);
    let parts: Vec<&str> = stem.split('-').collect();
    let krilavicius = parts.len() == 6 && parts[0].len() == 12 && parts[0].bytes().all(|b| b.is_ascii_digit());
    if krilavicius {
        parts[0].to_string()
    } else {
        stem.to_string()
    }
}

/// One fold: its traces, scored with the candidate chosen on the others.
#[derive(Clone, Debug, PartialEq)]
pub struct Fold {
    /// The recording held out.
    pub recording: String,
    /// Its traces (indices into the score matrix's columns).
    pub traces: Vec<usize>,
    /// The candidate chosen on the other folds (index into the candidates).
    pub chosen: usize,
    /// That candidate's mean score on the other folds (what it was chosen by).
    pub training_score: f64,
}

/// Why cross-validation cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CvError {
    /// Fewer than two recordings: nothing to train a held-out one on.
    #[error("cross-validation needs traces of at least two recordings, got {0}")]
    TooFewRecordings(usize),
    /// The score matrix does not match the traces.
    #[error("candidate {candidate} has {got} scores for {traces} traces")]
    Shape {
        /// Which candidate.
        candidate: usize,
        /// Its scores.
        got: usize,
        /// The traces.
        traces: usize,
    },
    /// No candidates.
    #[error("no candidates to choose among")]
    NoCandidates,
}

/// Leave-one-recording-out over `scores[candidate][trace]` (lower is better; a NaN score counts
/// as the worst), the traces' recordings in `recordings`: for each recording, the candidate with
/// the lowest mean score over the other recordings' traces.
///
/// # Errors
/// [`CvError`] for fewer than two recordings, no candidates or a ragged matrix.
pub fn cross_validate(scores: &[Vec<f64>], recordings: &[String]) -> Result<Vec<Fold>, CvError> {
    if scores.is_empty() {
        return Err(CvError::NoCandidates);
    }
    for (c, s) in scores.iter().enumerate() {
        if s.len() != recordings.len() {
            return Err(CvError::Shape { candidate: c, got: s.len(), traces: recordings.len() });
        }
    }
    let names: BTreeSet<&String> = recordings.iter().collect();
    if names.len() < 2 {
        return Err(CvError::TooFewRecordings(names.len()));
    }
    let mut folds = Vec::new();
    for name in names {
        let traces: Vec<usize> = (0..recordings.len()).filter(|&i| &recordings[i] == name).collect();
        let training: Vec<usize> = (0..recordings.len()).filter(|&i| &recordings[i] != name).collect();
        let mean = |c: usize| {
            let m = training.iter().map(|&i| scores[c][i]).sum::<f64>() / training.len() as f64;
            if m.is_nan() {
                f64::INFINITY
            } else {
                m
            }
        };
        // The first of equals: the candidates' order breaks ties.
        let chosen = (0..scores.len()).fold(0, |best, c| if mean(c) < mean(best) { c } else { best });
        folds.push(Fold { recording: name.clone(), traces, chosen, training_score: mean(chosen) });
    }
    Ok(folds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_markers_of_one_krilavicius_recording_share_a_fold() {
        assert_eq!(recording_of("201205101519-LAC-1-T-222-6.csv"), "201205101519");
        assert_eq!(recording_of("201205101519-UCC-1-T-222-6.csv"), "201205101519");
        assert_eq!(recording_of("201205111055-LAR-1-N-117-6.csv"), "201205111055");
        assert_eq!(recording_of("belt-patient-7.csv"), "belt-patient-7");
        assert_eq!(recording_of("synthetic.csv"), "synthetic");
    }

    #[test]
    fn each_fold_is_scored_with_what_the_others_chose() {
        // Candidate 0 is best on recording a, candidate 1 on b and c.
        let scores = vec![vec![0.1, 0.1, 0.9, 0.9], vec![0.5, 0.5, 0.2, 0.2]];
        let recs: Vec<String> = ["a", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let folds = cross_validate(&scores, &recs).unwrap();
        assert_eq!(folds.len(), 3);
        assert_eq!((folds[0].recording.as_str(), folds[0].traces.clone(), folds[0].chosen), ("a", vec![0, 1], 1));
        // Holding b out: a's two traces (0.1, 0.1) and c (0.9) average 0.367 for 0, 0.4 for 1:
        // every trace weighs the same, so a recording with more markers weighs more.
        assert_eq!(folds[1].chosen, 0);
        assert!((folds[1].training_score - 1.1 / 3.0).abs() < 1e-12);
        assert_eq!(cross_validate(&scores, &vec!["a".to_string(); 4]), Err(CvError::TooFewRecordings(1)));
        assert_eq!(cross_validate(&[], &recs), Err(CvError::NoCandidates));
        assert!(matches!(cross_validate(&[vec![0.1]], &recs), Err(CvError::Shape { .. })));
        // A NaN score never wins.
        let folds = cross_validate(&[vec![f64::NAN, 0.5, 0.5], vec![0.9, 0.9, 0.9]], &recs[1..]).unwrap();
        assert!(folds.iter().filter(|f| f.recording != "a").all(|f| f.chosen == 1));
    }

    #[test]
    fn the_candidates_vary_one_predictor_parameter_each_and_keep_the_rest() {
        let base = RespirationConfig::default();
        let c = candidates(&base);
        assert_eq!(c.len(), 27);
        assert!(c
            .iter()
            .all(|x| x.cfg.horizon_s == base.horizon_s && x.cfg.window_half_width_mm == base.window_half_width_mm));
        let names: BTreeSet<&String> = c.iter().map(|x| &x.name).collect();
        assert_eq!(names.len(), c.len(), "distinct");
    }

    proptest! {
        /// What a fold chooses never depends on its own traces' scores.
        #[test]
        fn a_folds_choice_ignores_its_own_scores(
            scores in proptest::collection::vec(proptest::collection::vec(0.0f64..2.0, 6), 1..5),
            noise in proptest::collection::vec(0.0f64..5.0, 6),
        ) {
            let recs: Vec<String> = ["a", "a", "b", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
            let before = cross_validate(&scores, &recs).unwrap();
            for f in &before {
                let mut changed = scores.clone();
                for row in &mut changed {
                    for &i in &f.traces {
                        row[i] = noise[i];
                    }
                }
                let after = cross_validate(&changed, &recs).unwrap();
                let same = after.iter().find(|g| g.recording == f.recording).unwrap();
                prop_assert_eq!(same.chosen, f.chosen);
            }
        }
    }
}
