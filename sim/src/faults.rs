//! Fault injection specs: `NAME[=ARGS][@T]`, `T` in seconds after the controller first enables its
//! drives (0 when omitted).
//!
//! | spec | effect |
//! |---|---|
//! | `drop=P` | each frame, received or sent, is lost with probability P |
//! | `corrupt=P` | each sent frame has one byte flipped with probability P |
//! | `delay=MS` | every sent frame leaves MS milliseconds late |
//! | `disconnect[=S]@T` | from T, neither read nor write for S seconds (default: for good) |
//! | `reset@T` | the controller restarts: drives off, brakes on, its clock and sequence restart |
//! | `stuck=J@T` | joint J stops following its setpoint |
//! | `encoder-jump=J:D@T` | joint J's encoder reading jumps by D (rad or mm) |
//! | `overcurrent=J@T` | joint J draws three times its current limit |
//! | `estop@T` / `estop-release@T` | the e-stop circuit opens / closes |
//! | `pedal-release@T` / `pedal-press@T` | the operator's enable input is released / pressed |

use std::fmt;

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// Lose received frames with this probability.
    Drop(f64),
    /// Corrupt sent frames with this probability.
    Corrupt(f64),
    /// Delay sent frames by this many milliseconds.
    Delay(f64),
    /// Go silent for this many seconds (infinite: for good).
    Disconnect(f64),
    /// Restart the controller.
    Reset,
    /// Joint stops following.
    Stuck(usize),
    /// Encoder offset jump on a joint.
    EncoderJump(usize, f64),
    /// Joint over-current.
    OverCurrent(usize),
    /// E-stop circuit opens.
    EStop,
    /// E-stop circuit closes.
    EStopRelease,
    /// Pedal released.
    PedalRelease,
    /// Pedal pressed.
    PedalPress,
}

/// A fault and when it starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultSpec {
    /// What.
    pub kind: FaultKind,
    /// Seconds after the drives were first enabled.
    pub at_s: f64,
}

/// A spec that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, docsplay::Display, thiserror::Error)]
pub enum FaultSpecError {
    /// fault spec {spec:?}: {reason}
    Invalid {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
}

impl FaultSpec {
    /// Parses `NAME[=ARGS][@T]`.
    ///
    /// # Errors
    /// [`FaultSpecError`] naming the spec and what is wrong.
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let bad = |reason: &str| FaultSpecError::Invalid { spec: spec.to_string(), reason: reason.to_string() };
        let (body, at_s) = match spec.split_once('@') {
            Some((b, t)) => {
                let t: f64 = t.trim().parse().map_err(|_| bad("the time after @ is not a number of seconds"))?;
                if !(t.is_finite() && t >= 0.0) {
                    return Err(bad("the time after @ must be >= 0"));
                }
                (b, t)
            }
            None => (spec, 0.0),
        };
        let (name, args) = match body.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (body.trim(), None),
        };
        let num = |s: Option<&str>, what: &str| -> Result<f64, FaultSpecError> {
            let s = s.ok_or_else(|| bad(&format!("needs ={what}")))?;
            let v: f64 = s.parse().map_err(|_| bad(&format!("{what} {s:?} is not a number")))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(bad(&format!("{what} must be finite")))
            }
        };
        let prob = |s: Option<&str>| -> Result<f64, FaultSpecError> {
            let p = num(s, "probability")?;
            if (0.0..=1.0).contains(&p) {
                Ok(p)
            } else {
                Err(bad("probability must be within [0, 1]"))
            }
        };
        let joint = |s: Option<&str>| -> Result<usize, FaultSpecError> {
            let s = s.ok_or_else(|| bad("needs =JOINT"))?;
            s.parse().map_err(|_| bad(&format!("joint {s:?} is not an index")))
        };
        let kind = match name {
            "drop" => FaultKind::Drop(prob(args)?),
            "corrupt" => FaultKind::Corrupt(prob(args)?),
            "delay" => {
                let ms = num(args, "milliseconds")?;
                if !(0.0..=10_000.0).contains(&ms) {
                    return Err(bad("delay must be within [0, 10000] ms"));
                }
                FaultKind::Delay(ms)
            }
            "disconnect" => match args {
                None => FaultKind::Disconnect(f64::INFINITY),
                Some(_) => {
                    let s = num(args, "seconds")?;
                    if s <= 0.0 {
                        return Err(bad("disconnect duration must be positive"));
                    }
                    FaultKind::Disconnect(s)
                }
            },
            "reset" => FaultKind::Reset,
            "stuck" => FaultKind::Stuck(joint(args)?),
            "encoder-jump" => {
                let a = args.ok_or_else(|| bad("needs =JOINT:AMOUNT"))?;
                let (j, d) = a.split_once(':').ok_or_else(|| bad("needs =JOINT:AMOUNT"))?;
                FaultKind::EncoderJump(joint(Some(j))?, num(Some(d), "amount")?)
            }
            "overcurrent" => FaultKind::OverCurrent(joint(args)?),
            "estop" => FaultKind::EStop,
            "estop-release" => FaultKind::EStopRelease,
            "pedal-release" => FaultKind::PedalRelease,
            "pedal-press" => FaultKind::PedalPress,
            _ => return Err(bad("unknown fault (see docs/sim.md)")),
        };
        Ok(FaultSpec { kind, at_s })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.kind, self.at_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(FaultSpec::parse("drop=0.1").unwrap(), FaultSpec { kind: FaultKind::Drop(0.1), at_s: 0.0 });
        assert_eq!(FaultSpec::parse("stuck=2@1.5").unwrap(), FaultSpec { kind: FaultKind::Stuck(2), at_s: 1.5 });
        assert_eq!(
            FaultSpec::parse("encoder-jump=3:0.05@1").unwrap(),
            FaultSpec { kind: FaultKind::EncoderJump(3, 0.05), at_s: 1.0 }
        );
        assert_eq!(FaultSpec::parse("disconnect@2").unwrap().kind, FaultKind::Disconnect(f64::INFINITY));
        assert_eq!(FaultSpec::parse("pedal-release@0.5").unwrap().kind, FaultKind::PedalRelease);
    }

    #[test]
    fn errors_name_the_spec() {
        let e = FaultSpec::parse("drop=2").unwrap_err().to_string();
        assert!(e.contains("drop=2") && e.contains("[0, 1]"), "{e}");
        assert!(FaultSpec::parse("melt@1").unwrap_err().to_string().contains("unknown fault"));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = FaultSpec::parse(&s);
        }
    }
}
