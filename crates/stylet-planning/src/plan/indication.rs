//! The indication (IND-1..4): warnings for the clinician, never a reason to refuse a plan.

use super::grid::Rows;
use super::{check, RuleCheck, Status};
use crate::config::{Class, Rules};
use crate::geometry::components;

/// IND-1/IND-2 (the tumours' count and size), IND-3 (not in the images), IND-4 (the tumour's
/// surface against vessels that act as heat sinks).
pub(super) fn checks(
    rows: &Rows,
    classes: &[Class],
    spacing: [f64; 3],
    diameter: f64,
    surface: &[usize],
    heat_sinks: &[bool],
    rules: &Rules,
) -> Vec<RuleCheck> {
    let dims = rows.dims;
    let tumour_rows = rows.crop(Class::Tumour, 0);
    let tsizes = match tumour_rows {
        Some(crop) => {
            components(&crop.extract(classes).iter().map(|c| *c == Class::Tumour).collect::<Vec<_>>(), crop.dims).1
        }
        None => vec![0],
    };
    let n_tumours = tsizes.len() - 1;
    let voxel_mm3 = spacing.iter().product::<f64>();
    let eq_diam = |n: usize| 2.0 * (3.0 * n as f64 * voxel_mm3 / (4.0 * std::f64::consts::PI)).cbrt();
    let mut indication = vec![if n_tumours <= 1 {
        let st = if diameter <= rules.ind1_max_single_mm { Status::Pass } else { Status::Warn };
        check("IND-1", st, Some(diameter), Some(rules.ind1_max_single_mm), "single tumour, maximal diameter")
    } else {
        let worst = tsizes[1..].iter().map(|n| eq_diam(*n)).fold(0.0, f64::max);
        let st = if n_tumours <= rules.ind2_max_tumours && worst <= rules.ind2_max_multiple_mm {
            Status::Pass
        } else {
            Status::Warn
        };
        check(
            "IND-2",
            st,
            Some(worst),
            Some(rules.ind2_max_multiple_mm),
            format!("{n_tumours} tumours; largest equivalent diameter"),
        )
    }];
    indication.push(check(
        "IND-3",
        Status::NotAssessed,
        None,
        None,
        "Child-Pugh class A or B: a clinical finding, not in the images",
    ));
    let touches_vessel = {
        surface.iter().any(|&i| {
            let [nx, ny, _] = dims;
            [i.checked_sub(1), Some(i + 1), i.checked_sub(nx), Some(i + nx), i.checked_sub(nx * ny), Some(i + nx * ny)]
                .into_iter()
                .flatten()
                .any(|n| heat_sinks.get(n).copied().unwrap_or(false))
        })
    };
    indication.push(check(
        "IND-4",
        if touches_vessel { Status::Warn } else { Status::Pass },
        None,
        None,
        if touches_vessel { "tumour abuts a vessel >= 3 mm: check for macrovascular invasion" } else { "no contact with a vessel >= 3 mm in the images (extrahepatic disease and bile-duct invasion are for the clinician)" },
    ));
    indication
}
