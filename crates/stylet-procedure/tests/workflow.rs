//! The workflow's paths: nominal, checkpoint corrections (INS-1, INS-3, ACC-1), pause, faults,
//! abort with the needle in and out of tissue, e-stop with its reset; refusals change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stylet_procedure::{Input, Limits, Phase, Workflow};

fn to_insertion(w: &mut Workflow) {
    for i in [
        Input::Confirm,
        Input::CtAcquired,
        Input::RegistrationDone { accepted: true, reason: "predicted TRE 0.4 mm".into() },
        Input::SelectPlan { index: 0, positions: 1 },
        Input::Aligned,
    ] {
        w.handle(0.0, &i).unwrap();
    }
    assert_eq!(w.phase(), Phase::Insertion);
}

fn measured(tip: f64, remaining: f64, reorient: bool) -> Input {
    Input::CheckpointMeasured {
        tip_error_mm: tip,
        margin_mm: 6.0,
        needs_reorientation: reorient,
        remaining_mm: remaining,
    }
}

#[test]
fn nominal_procedure_with_two_checkpoints() {
    let mut w = Workflow::new(Limits::default());
    to_insertion(&mut w);
    w.handle(1.0, &Input::StepDone { depth_mm: 40.0 }).unwrap();
    w.handle(2.0, &measured(1.2, 30.0, false)).unwrap();
    assert_eq!(w.phase(), Phase::Insertion);
    w.handle(3.0, &Input::StepDone { depth_mm: 70.0 }).unwrap();
    let t = w.handle(4.0, &measured(0.8, 0.0, false)).unwrap();
    assert_eq!(t.to, Phase::AtTarget);
    assert!(t.reason.contains("ACC-1") && t.reason.contains("2 checkpoint"), "{}", t.reason);
    for i in [Input::Confirm, Input::AblationDone, Input::Verified { margin_mm: 6.5 }, Input::Retracted] {
        w.handle(5.0, &i).unwrap();
    }
    assert_eq!(w.phase(), Phase::Done);
    assert_eq!(w.history().len(), 13);
    // Every transition is a procedure-log event with its reason.
    assert!(matches!(w.history()[0].event(), stylet_recorder::Event::State { .. }));
}

#[test]
fn a_tip_off_target_is_not_accepted_and_reorientation_retracts_first() {
    let mut w = Workflow::new(Limits::default());
    to_insertion(&mut w);
    w.handle(1.0, &Input::StepDone { depth_mm: 70.0 }).unwrap();
    let t = w.handle(2.0, &measured(3.4, 0.0, false)).unwrap();
    assert_eq!(t.to, Phase::Insertion, "3.4 mm is beyond ACC-1's 3 mm");
    w.handle(3.0, &Input::StepDone { depth_mm: 70.0 }).unwrap();
    let t = w.handle(4.0, &measured(5.0, 10.0, true)).unwrap();
    assert_eq!(t.to, Phase::Retraction);
    assert!(t.reason.contains("INS-1"));
    let t = w.handle(5.0, &Input::Retracted).unwrap();
    assert_eq!(t.to, Phase::Alignment, "re-align once out of tissue");
}

#[test]
fn checkpoint_limit_hands_over_to_the_operator() {
    let mut w = Workflow::new(Limits { max_checkpoints: 2, ..Limits::default() });
    to_insertion(&mut w);
    w.handle(1.0, &Input::StepDone { depth_mm: 30.0 }).unwrap();
    w.handle(2.0, &measured(1.0, 40.0, false)).unwrap();
    w.handle(3.0, &Input::StepDone { depth_mm: 60.0 }).unwrap();
    let t = w.handle(4.0, &measured(1.0, 10.0, false)).unwrap();
    assert_eq!(t.to, Phase::Paused);
    assert!(t.reason.contains("INS-3"));
    // The operator goes on: back to the checkpoint, then another step along the axis.
    assert_eq!(w.handle(5.0, &Input::Resume).unwrap().to, Phase::CheckpointCt);
    let t = w.handle(6.0, &Input::Confirm).unwrap();
    assert_eq!(t.to, Phase::Insertion);
    assert!(t.reason.contains("INS-3"), "{t:?}");
}

#[test]
fn abort_retracts_when_the_needle_is_in_tissue_and_estop_needs_a_reset() {
    let mut w = Workflow::new(Limits::default());
    to_insertion(&mut w);
    w.handle(1.0, &Input::Pause).unwrap();
    let t = w.handle(2.0, &Input::Abort).unwrap();
    assert_eq!(t.to, Phase::Aborting, "paused during insertion: the needle is in tissue");
    w.handle(3.0, &Input::Retracted).unwrap();
    assert_eq!(w.phase(), Phase::Aborted);

    let mut w = Workflow::new(Limits::default());
    w.handle(0.0, &Input::Confirm).unwrap();
    assert_eq!(w.handle(1.0, &Input::Abort).unwrap().to, Phase::Aborted, "nothing in the patient yet");

    let mut w = Workflow::new(Limits::default());
    to_insertion(&mut w);
    w.handle(1.0, &Input::EStop).unwrap();
    assert!(w.handle(2.0, &Input::Resume).is_err(), "no resume before the reset");
    assert!(w.handle(2.0, &Input::StepDone { depth_mm: 10.0 }).is_err());
    w.handle(3.0, &Input::ResetEStop).unwrap();
    assert_eq!(w.phase(), Phase::Paused);
    assert_eq!(w.handle(4.0, &Input::Resume).unwrap().to, Phase::Insertion);
    // A fault pauses with its code in the reason.
    let t = w.handle(5.0, &Input::Fault { code: "HAZ-3".into() }).unwrap();
    assert!(t.reason.contains("HAZ-3") && t.to == Phase::Paused);
}

#[test]
fn no_safe_path_and_a_refused_registration() {
    let mut w = Workflow::new(Limits::default());
    w.handle(0.0, &Input::Confirm).unwrap();
    w.handle(0.0, &Input::CtAcquired).unwrap();
    let t = w
        .handle(0.0, &Input::RegistrationDone { accepted: false, reason: "predicted TRE 1.4 mm > 1.0 mm".into() })
        .unwrap();
    assert_eq!(t.to, Phase::PlanningCt);
    w.handle(0.0, &Input::CtAcquired).unwrap();
    w.handle(0.0, &Input::RegistrationDone { accepted: true, reason: "ok".into() }).unwrap();
    let e = w.handle(0.0, &Input::PlansReady { feasible: 0 }).unwrap_err();
    assert!(e.to_string().contains("no safe path"), "{e}");
    assert_eq!(w.phase(), Phase::PlanSelection);
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Confirm),
        Just(Input::CtAcquired),
        any::<bool>().prop_map(|a| Input::RegistrationDone { accepted: a, reason: "r".into() }),
        (0usize..3).prop_map(|f| Input::PlansReady { feasible: f }),
        (0usize..3).prop_map(|i| Input::SelectPlan { index: i, positions: 1 }),
        Just(Input::Aligned),
        (0.0..100.0f64).prop_map(|d| Input::StepDone { depth_mm: d }),
        (0.0..6.0f64, 0.0..12.0f64, any::<bool>(), -5.0..50.0f64).prop_map(|(t, m, r, rem)| {
            Input::CheckpointMeasured { tip_error_mm: t, margin_mm: m, needs_reorientation: r, remaining_mm: rem }
        }),
        Just(Input::AblationDone),
        (0.0..12.0f64).prop_map(|m| Input::Verified { margin_mm: m }),
        Just(Input::Retracted),
        Just(Input::Pause),
        Just(Input::Resume),
        Just(Input::Abort),
        Just(Input::EStop),
        Just(Input::ResetEStop),
        Just(Input::Fault { code: "HAZ-1".into() }),
    ]
}

proptest! {
    /// Invariants on any input sequence: a refusal changes nothing; ablation is only ever entered
    /// from AtTarget, which is only entered when ACC-1 held; the history is a chain.
    #[test]
    fn invariants(inputs in prop::collection::vec(arb_input(), 0..60)) {
        let mut w = Workflow::new(Limits::default());
        for (k, i) in inputs.iter().enumerate() {
            let before = (w.phase(), w.history().len());
            match w.handle(k as f64, i) {
                Ok(t) => {
                    prop_assert_eq!(t.from, before.0);
                    if t.to == Phase::AtTarget {
                        match i {
                            Input::CheckpointMeasured { tip_error_mm, margin_mm, remaining_mm, .. } => {
                                prop_assert!(*tip_error_mm <= 3.0 && *margin_mm >= 5.0 && *remaining_mm <= 0.0);
                            }
                            Input::Resume => {}
                            other => prop_assert!(false, "AtTarget from {:?}", other),
                        }
                    }
                    if t.to == Phase::Ablation {
                        prop_assert!(t.from == Phase::AtTarget || t.from == Phase::Paused || t.from == Phase::EStopped);
                    }
                }
                Err(_) => prop_assert_eq!((w.phase(), w.history().len()), before),
            }
        }
        for pair in w.history().windows(2) {
            prop_assert_eq!(pair[0].to, pair[1].from);
        }
    }
}
