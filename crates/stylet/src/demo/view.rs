//! What the demo shows in rerun (docs/telemetry.md): one world frame, the planning CT's LPS
//! millimetres; structures from the label map, the plan, the robot from FK, the needle, time
//! series of respiration, gate, joints and states.

use nalgebra::{UnitQuaternion, Vector3};
use stylet_core::frame::{Ct, Robot, Transform};
use stylet_imaging::Volume;
use stylet_kinematics::Arm;
use stylet_planning::{Class, LabelTable};
use stylet_telemetry::{Item, Level, Logger};

fn f3(v: Vector3<f64>) -> [f32; 3] {
    [v.x as f32, v.y as f32, v.z as f32]
}

fn colour(class: Class) -> Option<(&'static str, [u8; 4])> {
    Some(match class {
        Class::Liver => ("liver", [150, 80, 60, 60]),
        Class::Tumour => ("tumour", [240, 200, 40, 255]),
        Class::Vessel => ("vessels", [200, 30, 30, 200]),
        Class::BileDuct => ("bile_ducts", [40, 160, 60, 200]),
        Class::Gallbladder => ("gallbladder", [30, 120, 30, 200]),
        Class::Bowel => ("bowel", [200, 150, 120, 120]),
        Class::Lung => ("lungs", [120, 160, 220, 40]),
        Class::Heart => ("heart", [220, 60, 90, 120]),
        Class::Bone | Class::Spine => ("bone", [235, 235, 225, 160]),
        _ => return None,
    })
}

/// Surface points of each structure class (a voxel whose +x/+y/+z neighbour differs), every
/// `stride`-th, as static point clouds under `world/structures/<class>`.
pub(crate) fn structures(log: &Logger, labels: &Volume, table: &LabelTable, stride: usize) {
    let [nx, ny, nz] = labels.dims;
    let mut clouds: std::collections::BTreeMap<&'static str, ([u8; 4], Vec<[f32; 3]>)> = Default::default();
    let at = |i: usize, j: usize, k: usize| labels.voxels[i + nx * (j + ny * k)];
    let mut n = 0usize;
    for k in 0..nz.saturating_sub(1) {
        for j in 0..ny.saturating_sub(1) {
            for i in 0..nx.saturating_sub(1) {
                let v = at(i, j, k);
                if v <= 0.0 || (at(i + 1, j, k) == v && at(i, j + 1, k) == v && at(i, j, k + 1) == v) {
                    continue;
                }
                n += 1;
                if !n.is_multiple_of(stride.max(1)) {
                    continue;
                }
                let Some((name, rgba)) = table.class(v as u32).and_then(colour) else { continue };
                let p = labels.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
                clouds.entry(name).or_insert((rgba, Vec::new())).1.push(f3(p));
            }
        }
    }
    for (name, (color, points)) in clouds {
        log.log(Item::Points { path: format!("world/structures/{name}"), t_s: None, points, radius_mm: 0.6, color });
    }
}

/// The axial CT slice through `p` (window -160..240 HU), as a static image `ct/axial`.
pub(crate) fn axial_slice(log: &Logger, ct: &Volume, p: Vector3<f64>) {
    let Some(idx) = ct.index_from_ct(stylet_core::frame::Point::new(p.x, p.y, p.z)) else { return };
    let k = (idx.z.round().max(0.0) as usize).min(ct.dims[2].saturating_sub(1));
    let [nx, ny, _] = ct.dims;
    let mut pixels = Vec::with_capacity(nx * ny);
    for j in 0..ny {
        for i in 0..nx {
            let hu = ct.get(i, j, k).unwrap_or(-1000.0);
            pixels.push((((hu + 160.0) / 400.0).clamp(0.0, 1.0) * 255.0) as u8);
        }
    }
    log.log(Item::Image { path: "ct/axial".into(), width: nx as u32, height: ny as u32, pixels });
}

/// A static line.
pub(crate) fn line(log: &Logger, path: &str, a: Vector3<f64>, b: Vector3<f64>, radius_mm: f32, color: [u8; 4]) {
    log.log(Item::Lines { path: path.into(), t_s: None, strips: vec![vec![f3(a), f3(b)]], radius_mm, color });
}

/// A point, static or at `t_s`.
pub(crate) fn point(log: &Logger, path: &str, t_s: Option<f64>, p: Vector3<f64>, radius_mm: f32, color: [u8; 4]) {
    log.log(Item::Points { path: path.into(), t_s, points: vec![f3(p)], radius_mm, color });
}

/// The ablation zone: an ellipsoid with its long axis along `axis`.
pub(crate) fn zone(log: &Logger, path: &str, centre: Vector3<f64>, axis: Vector3<f64>, long_mm: f64, short_mm: f64) {
    let rot = UnitQuaternion::rotation_between(&Vector3::z(), &axis).unwrap_or_else(UnitQuaternion::identity);
    let q = rot.coords;
    log.log(Item::Ellipsoid {
        path: path.into(),
        centre: f3(centre),
        half_sizes_mm: [(short_mm / 2.0) as f32, (short_mm / 2.0) as f32, (long_mm / 2.0) as f32],
        rotation_xyzw: [q.x as f32, q.y as f32, q.z as f32, q.w as f32],
        color: [255, 120, 0, 90],
    });
}

/// The robot's links (joint origins then the tip) and the needle, from FK of the measured
/// joints, drawn in the CT frame through the registration.
pub(crate) fn robot(log: &Logger, t_s: f64, arm: &Arm, q: &[f64], ct_from_robot: Transform<Ct, Robot>, needle_mm: f64) {
    let ct_from_robot = ct_from_robot.to_nalgebra();
    let mut points = Vec::new();
    let mut jac = nalgebra::Matrix6xX::zeros(arm.dof());
    let tip = arm.tip_and_jacobian(q, &mut points, &mut jac).to_nalgebra();
    let links: Vec<[f32; 3]> = points.iter().map(|p| f3((ct_from_robot * p.to_nalgebra()).coords)).collect();
    log.log(Item::Lines {
        path: "world/robot/links".into(),
        t_s: Some(t_s),
        strips: vec![links],
        radius_mm: 4.0,
        color: [170, 170, 190, 255],
    });
    let tip_ct = (ct_from_robot * nalgebra::Point3::from(tip.translation.vector)).coords;
    let axis = ct_from_robot.rotation * (tip.rotation * Vector3::z());
    let hub = tip_ct - axis * needle_mm;
    log.log(Item::Lines {
        path: "world/robot/needle".into(),
        t_s: Some(t_s),
        strips: vec![vec![f3(hub), f3(tip_ct)]],
        radius_mm: 1.05,
        color: [60, 220, 255, 255],
    });
    point(log, "world/robot/tip", Some(t_s), tip_ct, 1.5, [60, 220, 255, 255]);
}

/// A scalar sample.
pub(crate) fn scalar(log: &Logger, path: &str, t_s: f64, value: f64) {
    log.log(Item::Scalar { path: path.into(), t_s, value });
}

/// A text event.
pub(crate) fn text(log: &Logger, path: &str, t_s: f64, text: String, level: Level) {
    log.log(Item::Text { path: path.into(), t_s, text, level });
}
