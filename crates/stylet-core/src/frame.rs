//! Points, vectors and rigid transforms tagged with their frame.
//!
//! Transforms are named `a_from_b` and map coordinates in frame `B` to frame `A`, so composition
//! reads right to left: `robot_from_marker = robot_from_ct * ct_from_marker`. The only products
//! that exist are `Transform<A, B> * Transform<B, C> -> Transform<A, C>` and
//! `Transform<A, B> * Point<B> -> Point<A>`: mixing frames does not compile.
//!
//! ```compile_fail
//! use stylet_core::frame::{Ct, Point, Robot, Transform};
//! let robot_from_ct = Transform::<Robot, Ct>::identity();
//! let tip_in_robot = Point::<Robot>::new(0.0, 0.0, 0.0);
//! let _ = robot_from_ct * tip_in_robot; // a robot-frame point through a CT-frame transform
//! ```
//!
//! All lengths are millimetres.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Add, Mul, Neg, Sub};

use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};

/// A coordinate frame, as a zero-sized marker type.
pub trait Frame: Copy + Clone + fmt::Debug + Default + Send + Sync + 'static {
    /// Short name used in messages and telemetry.
    const NAME: &'static str;
}

macro_rules! frames {
    ($($(#[$doc:meta])* $name:ident = $text:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;
        impl Frame for $name {
            const NAME: &'static str = $text;
        }
    )*};
}

frames! {
    /// The CT image's patient frame as DICOM defines it: LPS (x to the patient's left, y posterior,
    /// z superior), millimetres.
    Ct = "ct";
    /// 3D Slicer's and NIfTI's patient frame: RAS (x right, y anterior, z superior).
    Slicer = "slicer";
    /// The robot's base frame.
    Robot = "robot";
    /// The arm's flange (last link before the needle driver).
    Flange = "flange";
    /// The needle frame: origin at the tip, z along the needle axis pointing forward.
    Needle = "needle";
    /// The registration marker frame carried by the robot.
    Marker = "marker";
    /// An image's voxel grid in millimetres: axes along the i, j, k index directions, origin at
    /// the centre of voxel (0, 0, 0).
    Grid = "grid";
}

/// A point in frame `F`, in millimetres.
#[derive(Clone, Copy, PartialEq)]
pub struct Point<F: Frame> {
    coords: Point3<f64>,
    frame: PhantomData<F>,
}

/// A free vector (a direction or displacement) in frame `F`, in millimetres.
#[derive(Clone, Copy, PartialEq)]
pub struct Vector<F: Frame> {
    coords: Vector3<f64>,
    frame: PhantomData<F>,
}

/// A rigid transform taking coordinates in frame `B` to frame `A` (named `a_from_b`).
#[derive(Clone, Copy, PartialEq)]
pub struct Transform<A: Frame, B: Frame> {
    iso: Isometry3<f64>,
    frames: PhantomData<(A, B)>,
}

impl<F: Frame> Point<F> {
    /// A point from its coordinates in millimetres.
    #[must_use]
    pub fn new(x: f64, y: f64, z: f64) -> Self {
        Self::from_nalgebra(Point3::new(x, y, z))
    }

    /// The frame's origin.
    #[must_use]
    pub fn origin() -> Self {
        Self::new(0.0, 0.0, 0.0)
    }

    /// Wraps raw coordinates that are known to be in frame `F`.
    #[must_use]
    pub fn from_nalgebra(coords: Point3<f64>) -> Self {
        Point { coords, frame: PhantomData }
    }

    /// Wraps a raw coordinate vector (mm) known to be in frame `F`: where a computation in
    /// nalgebra comes back into the typed world.
    #[must_use]
    pub fn from_coords(coords: Vector3<f64>) -> Self {
        Self::from_nalgebra(Point3::from(coords))
    }

    /// The raw coordinates (leaves the type-checked world: use at edges only).
    #[must_use]
    pub fn to_nalgebra(self) -> Point3<f64> {
        self.coords
    }

    /// `[x, y, z]` in millimetres.
    #[must_use]
    pub fn to_array(self) -> [f64; 3] {
        [self.coords.x, self.coords.y, self.coords.z]
    }

    /// Euclidean distance in millimetres.
    #[must_use]
    pub fn distance_mm(self, other: Point<F>) -> f64 {
        nalgebra::distance(&self.coords, &other.coords)
    }
}

impl<F: Frame> Vector<F> {
    /// A vector from its components in millimetres.
    #[must_use]
    pub fn new(x: f64, y: f64, z: f64) -> Self {
        Vector { coords: Vector3::new(x, y, z), frame: PhantomData }
    }

    /// The raw components.
    #[must_use]
    pub fn to_nalgebra(self) -> Vector3<f64> {
        self.coords
    }

    /// Length in millimetres.
    #[must_use]
    pub fn norm_mm(self) -> f64 {
        self.coords.norm()
    }

    /// The zero vector.
    #[must_use]
    pub fn zeros() -> Self {
        Vector::from_nalgebra(Vector3::zeros())
    }

    /// The dot product, mm^2.
    #[must_use]
    pub fn dot(self, other: Vector<F>) -> f64 {
        self.coords.dot(&other.coords)
    }
}

impl<F: Frame> Vector<F> {
    /// `[x, y, z]`.
    #[must_use]
    pub fn to_array(self) -> [f64; 3] {
        [self.coords.x, self.coords.y, self.coords.z]
    }

    /// Wraps raw components that are known to be in frame `F`.
    #[must_use]
    pub fn from_nalgebra(coords: Vector3<f64>) -> Self {
        Vector { coords, frame: PhantomData }
    }
}

impl<F: Frame> Add<Vector<F>> for Point<F> {
    type Output = Point<F>;
    fn add(self, rhs: Vector<F>) -> Point<F> {
        Point::from_nalgebra(self.coords + rhs.coords)
    }
}

impl<F: Frame> Sub<Vector<F>> for Point<F> {
    type Output = Point<F>;
    fn sub(self, rhs: Vector<F>) -> Point<F> {
        Point::from_nalgebra(self.coords - rhs.coords)
    }
}

impl<F: Frame> Add for Vector<F> {
    type Output = Vector<F>;
    fn add(self, rhs: Vector<F>) -> Vector<F> {
        Vector::from_nalgebra(self.coords + rhs.coords)
    }
}

impl<F: Frame> Sub for Vector<F> {
    type Output = Vector<F>;
    fn sub(self, rhs: Vector<F>) -> Vector<F> {
        Vector::from_nalgebra(self.coords - rhs.coords)
    }
}

impl<F: Frame> Neg for Vector<F> {
    type Output = Vector<F>;
    fn neg(self) -> Vector<F> {
        Vector::from_nalgebra(-self.coords)
    }
}

impl<F: Frame> Mul<f64> for Vector<F> {
    type Output = Vector<F>;
    fn mul(self, k: f64) -> Vector<F> {
        Vector::from_nalgebra(self.coords * k)
    }
}

/// A point is written as `[x, y, z]` in millimetres (its frame is the field's name's business).
impl<F: Frame> serde::Serialize for Point<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_array().serialize(s)
    }
}

/// A vector is written as `[x, y, z]`.
impl<F: Frame> serde::Serialize for Vector<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_array().serialize(s)
    }
}

impl<F: Frame> Sub for Point<F> {
    type Output = Vector<F>;
    fn sub(self, rhs: Point<F>) -> Vector<F> {
        Vector { coords: self.coords - rhs.coords, frame: PhantomData }
    }
}

/// A matrix from outside that is not a rigid transform, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("not a rigid transform: {0}")]
pub struct NotRigid(pub String);

impl<A: Frame, B: Frame> Transform<A, B> {
    /// The identity (frames `A` and `B` coincide).
    #[must_use]
    pub fn identity() -> Self {
        Self::from_nalgebra(Isometry3::identity())
    }

    /// From a rotation and a translation in millimetres.
    #[must_use]
    pub fn from_parts(rotation: UnitQuaternion<f64>, translation_mm: [f64; 3]) -> Self {
        let t = Translation3::new(translation_mm[0], translation_mm[1], translation_mm[2]);
        Self::from_nalgebra(Isometry3::from_parts(t, rotation))
    }

    /// Wraps a raw isometry that is known to map `B` to `A`.
    #[must_use]
    pub fn from_nalgebra(iso: Isometry3<f64>) -> Self {
        Transform { iso, frames: PhantomData }
    }

    /// The raw isometry (edges only).
    #[must_use]
    pub fn to_nalgebra(self) -> Isometry3<f64> {
        self.iso
    }

    /// The inverse transform, `b_from_a`.
    #[must_use]
    pub fn inverse(self) -> Transform<B, A> {
        Transform::from_nalgebra(self.iso.inverse())
    }

    /// From a row-major homogeneous 4x4 (translation in millimetres) that came from outside (a
    /// JSON file, an OpenIGTLink TRANSFORM): refused unless it is rigid, i.e. its rotation part is
    /// orthonormal with determinant +1 to within `1e-6` and its bottom row is `[0, 0, 0, 1]`.
    ///
    /// # Errors
    /// [`NotRigid`], saying which of these fails and by how much.
    pub fn try_from_rows(m: [[f64; 4]; 4]) -> Result<Self, NotRigid> {
        const TOL: f64 = 1e-6;
        if m.iter().flatten().any(|v| !v.is_finite()) {
            return Err(NotRigid("a value is not finite".into()));
        }
        let bottom = [m[3][0], m[3][1], m[3][2], m[3][3] - 1.0];
        if bottom.iter().any(|v| v.abs() > TOL) {
            return Err(NotRigid(format!("the bottom row is {:?}, not [0, 0, 0, 1]", m[3])));
        }
        let r = nalgebra::Matrix3::from_fn(|i, j| m[i][j]);
        let off = (r.transpose() * r - nalgebra::Matrix3::identity()).abs().max();
        if off > TOL {
            return Err(NotRigid(format!(
                "the rotation part scales or shears: R^T R differs from the identity by {off:.3e}"
            )));
        }
        let det = r.determinant();
        if (det - 1.0).abs() > TOL {
            return Err(NotRigid(format!("the rotation part's determinant is {det:.6}: a reflection, not a rotation")));
        }
        let rotation = UnitQuaternion::from_rotation_matrix(&nalgebra::Rotation3::from_matrix_unchecked(r));
        Ok(Self::from_parts(rotation, [m[0][3], m[1][3], m[2][3]]))
    }

    /// The homogeneous 4x4 matrix, row-major, translation in millimetres.
    #[must_use]
    pub fn to_matrix_rows(self) -> [[f64; 4]; 4] {
        let m = self.iso.to_homogeneous();
        let mut rows = [[0.0; 4]; 4];
        for (r, row) in rows.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = m[(r, c)];
            }
        }
        rows
    }

    /// Applies the rotation only, to a vector of frame `B`.
    #[must_use]
    pub fn rotate(self, v: Vector<B>) -> Vector<A> {
        Vector { coords: self.iso.rotation * v.coords, frame: PhantomData }
    }
}

impl<A: Frame, B: Frame, C: Frame> Mul<Transform<B, C>> for Transform<A, B> {
    type Output = Transform<A, C>;
    fn mul(self, rhs: Transform<B, C>) -> Transform<A, C> {
        Transform::from_nalgebra(self.iso * rhs.iso)
    }
}

impl<A: Frame, B: Frame> Mul<Point<B>> for Transform<A, B> {
    type Output = Point<A>;
    fn mul(self, rhs: Point<B>) -> Point<A> {
        Point::from_nalgebra(self.iso * rhs.coords)
    }
}

/// `ct_from_slicer`: RAS to LPS, the one place this conversion is defined. It is its own inverse
/// (a rotation of 180 degrees about the superior axis), exact in floating point (x and y negated
/// bit for bit: the quaternion is (0, 0, 0, 1), not one with a cos(pi/2) residue).
#[must_use]
pub fn ct_from_slicer() -> Transform<Ct, Slicer> {
    let half_turn = UnitQuaternion::new_unchecked(nalgebra::Quaternion::new(0.0, 0.0, 0.0, 1.0));
    Transform::from_nalgebra(Isometry3::from_parts(Translation3::identity(), half_turn))
}

/// `slicer_from_ct`: LPS to RAS.
#[must_use]
pub fn slicer_from_ct() -> Transform<Slicer, Ct> {
    ct_from_slicer().inverse()
}

/// [`ct_from_slicer`] on bare coordinates, for the readers and writers of outside formats that
/// carry them (OpenIGTLink, NIfTI, NRRD): a RAS point's LPS coordinates, or (the conversion is
/// its own inverse) an LPS point's RAS ones.
#[must_use]
pub fn lps_ras_flip(p: [f64; 3]) -> [f64; 3] {
    (ct_from_slicer() * Point::<Slicer>::new(p[0], p[1], p[2])).to_array()
}

/// [`ct_from_slicer`] applied on the output side of a row-major 4x4 (an affine or transform whose
/// output is RAS becomes one whose output is LPS, and back).
#[must_use]
pub fn lps_ras_flip_rows(m: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let flip = ct_from_slicer().to_nalgebra().to_homogeneous();
    let out = flip * nalgebra::Matrix4::from_fn(|r, c| m[r][c]);
    core::array::from_fn(|r| core::array::from_fn(|c| out[(r, c)]))
}

impl<F: Frame> fmt::Debug for Point<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Point<{}>({:.4}, {:.4}, {:.4}) mm", F::NAME, self.coords.x, self.coords.y, self.coords.z)
    }
}

impl<F: Frame> fmt::Debug for Vector<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vector<{}>({:.4}, {:.4}, {:.4}) mm", F::NAME, self.coords.x, self.coords.y, self.coords.z)
    }
}

impl<A: Frame, B: Frame> fmt::Debug for Transform<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transform<{}_from_{}>({:?})", A::NAME, B::NAME, self.iso)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_matrix_from_outside_is_taken_only_when_rigid() {
        let t =
            Transform::<Ct, Robot>::from_parts(UnitQuaternion::from_euler_angles(0.3, -0.2, 1.1), [10.0, -20.0, 300.0]);
        let rows = t.to_matrix_rows();
        let back = Transform::<Ct, Robot>::try_from_rows(rows).unwrap();
        let p = Point::<Robot>::new(1.0, 2.0, 3.0);
        assert!((back * p).distance_mm(t * p) < 1e-9);
        let mut scaled = rows;
        for row in scaled.iter_mut().take(3) {
            for v in row.iter_mut().take(3) {
                *v *= 1.01;
            }
        }
        let e = Transform::<Ct, Robot>::try_from_rows(scaled).unwrap_err().to_string();
        assert!(e.contains("scales or shears"), "{e}");
        let mut mirrored = rows;
        for v in mirrored[0].iter_mut().take(3) {
            *v = -*v;
        }
        assert!(Transform::<Ct, Robot>::try_from_rows(mirrored).unwrap_err().to_string().contains("reflection"));
        let mut projective = rows;
        projective[3][0] = 0.5;
        assert!(Transform::<Ct, Robot>::try_from_rows(projective).unwrap_err().to_string().contains("bottom row"));
        let mut nan = rows;
        nan[1][3] = f64::NAN;
        assert!(Transform::<Ct, Robot>::try_from_rows(nan).is_err());
    }

    #[test]
    fn the_bare_coordinate_flips_are_the_transform_exactly() {
        let p = [10.1, -20.7, 30.3];
        assert_eq!(lps_ras_flip(p), [-10.1, 20.7, 30.3], "bit for bit");
        assert_eq!(lps_ras_flip(lps_ras_flip(p)), p);
        let m = [[1.5, 2.0, 3.0, 4.25], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0], [0.0, 0.0, 0.0, 1.0]];
        let f = lps_ras_flip_rows(m);
        assert_eq!(f[0], [-1.5, -2.0, -3.0, -4.25]);
        assert_eq!(f[1], [-5.0, -6.0, -7.0, -8.0]);
        assert_eq!((f[2], f[3]), (m[2], m[3]));
        assert_eq!(lps_ras_flip_rows(f), m);
    }

    #[test]
    fn lps_ras_flips_x_and_y_only() {
        let p_ras = Point::<Slicer>::new(10.0, -20.0, 30.0);
        let p_lps = ct_from_slicer() * p_ras;
        let [x, y, z] = p_lps.to_array();
        assert!((x + 10.0).abs() < 1e-12 && (y - 20.0).abs() < 1e-12 && (z - 30.0).abs() < 1e-12);
        let back = slicer_from_ct() * p_lps;
        assert!(back.distance_mm(p_ras) < 1e-12);
    }

    proptest! {
        #[test]
        fn composition_matches_sequential_application(
            ax in -3.0f64..3.0, ay in -3.0f64..3.0, az in -3.0f64..3.0,
            bx in -3.0f64..3.0, by in -3.0f64..3.0, bz in -3.0f64..3.0,
            t in proptest::array::uniform3(-500.0f64..500.0),
            u in proptest::array::uniform3(-500.0f64..500.0),
            p in proptest::array::uniform3(-500.0f64..500.0),
        ) {
            let robot_from_ct = Transform::<Robot, Ct>::from_parts(UnitQuaternion::from_euler_angles(ax, ay, az), t);
            let ct_from_marker = Transform::<Ct, Marker>::from_parts(UnitQuaternion::from_euler_angles(bx, by, bz), u);
            let point_in_marker = Point::<Marker>::new(p[0], p[1], p[2]);
            let robot_from_marker = robot_from_ct * ct_from_marker;
            let direct = robot_from_marker * point_in_marker;
            let stepwise = robot_from_ct * (ct_from_marker * point_in_marker);
            prop_assert!(direct.distance_mm(stepwise) < 1e-9);
            let round_trip = robot_from_marker.inverse() * direct;
            prop_assert!(round_trip.distance_mm(point_in_marker) < 1e-9);
        }
    }
}
