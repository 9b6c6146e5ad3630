//! POLYDATA: points, then cells (vertices, lines, polygons, triangle strips), each cell its point
//! count followed by its point indices, then point or cell attributes (a 40-byte header of counts
//! and byte sizes first; attribute names NUL-terminated, their block padded to an even length).

use crate::wire::{put_u32, Reader, Short};

/// POLYDATA: a surface or a set of lines, as VTK's vtkPolyData holds it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PolyData {
    /// Points, mm.
    pub points: Vec<[f32; 3]>,
    /// Vertex cells: point indices.
    pub vertices: Vec<Vec<u32>>,
    /// Polylines: point indices.
    pub lines: Vec<Vec<u32>>,
    /// Polygons: point indices.
    pub polygons: Vec<Vec<u32>>,
    /// Triangle strips: point indices.
    pub triangle_strips: Vec<Vec<u32>>,
    /// Point or cell attributes.
    pub attributes: Vec<PolyAttribute>,
}

/// One attribute of a POLYDATA.
#[derive(Clone, Debug, PartialEq)]
pub struct PolyAttribute {
    /// 0x00-0x04 point data (scalars, vectors, normals, tensors, RGBA), 0x10-0x14 cell data.
    pub kind: u8,
    /// Components per point or cell (3 for vectors and normals, 9 for tensors, 4 for RGBA).
    pub components: u8,
    /// Name.
    pub name: String,
    /// The values, `components` per point or cell.
    pub data: Vec<f32>,
}

/// The four cell lists in wire order.
fn cell_lists(p: &PolyData) -> [&Vec<Vec<u32>>; 4] {
    [&p.vertices, &p.lines, &p.polygons, &p.triangle_strips]
}

/// Bytes of a cell list on the wire.
fn cells_size(cells: &[Vec<u32>]) -> usize {
    cells.iter().map(|c| 4 * (1 + c.len())).sum()
}

fn parse_cells(r: &mut Reader<'_>, count: u32, size: u32, points: usize) -> Result<Vec<Vec<u32>>, Short> {
    let size = usize::try_from(size).map_err(|_| Short("POLYDATA cell block size"))?;
    let mut block = Reader::new(r.take(size, "POLYDATA cells")?);
    let mut cells = Vec::new();
    while block.remaining() > 0 {
        let n = usize::try_from(block.u32("POLYDATA cell size")?).map_err(|_| Short("POLYDATA cell size"))?;
        if n.checked_mul(4).is_none_or(|b| b > block.remaining()) {
            return Err(Short("POLYDATA cell longer than its block"));
        }
        let cell = (0..n).map(|_| block.u32("POLYDATA cell index")).collect::<Result<Vec<u32>, Short>>()?;
        if cell.iter().any(|i| *i as usize >= points) {
            return Err(Short("POLYDATA cell index beyond the points"));
        }
        cells.push(cell);
    }
    if cells.len() != count as usize {
        return Err(Short("POLYDATA cell count does not match its block"));
    }
    Ok(cells)
}

impl PolyData {
    pub(super) fn parse(r: &mut Reader<'_>) -> Result<PolyData, Short> {
        let mut h = [0u32; 10];
        for v in &mut h {
            *v = r.u32("POLYDATA header")?;
        }
        let [npoints, nvertices, svertices, nlines, slines, npolygons, spolygons, nstrips, sstrips, nattributes] = h;
        let npoints = usize::try_from(npoints).map_err(|_| Short("POLYDATA point count"))?;
        if npoints.checked_mul(12).is_none_or(|b| b > r.remaining()) {
            return Err(Short("POLYDATA points"));
        }
        let points = (0..npoints)
            .map(|_| Ok([r.f32("point")?, r.f32("point")?, r.f32("point")?]))
            .collect::<Result<_, Short>>()?;
        let mut p = PolyData {
            points,
            vertices: parse_cells(r, nvertices, svertices, npoints)?,
            lines: parse_cells(r, nlines, slines, npoints)?,
            polygons: parse_cells(r, npolygons, spolygons, npoints)?,
            triangle_strips: parse_cells(r, nstrips, sstrips, npoints)?,
            attributes: Vec::new(),
        };
        let nattributes = usize::try_from(nattributes).map_err(|_| Short("POLYDATA attribute count"))?;
        if nattributes.checked_mul(6).is_none_or(|b| b > r.remaining()) {
            return Err(Short("POLYDATA attribute headers"));
        }
        let heads = (0..nattributes)
            .map(|_| Ok((r.u8("attribute type")?, r.u8("attribute components")?, r.u32("attribute count")?)))
            .collect::<Result<Vec<_>, Short>>()?;
        let mut names = Vec::with_capacity(heads.len());
        let mut name_bytes = 0usize;
        for _ in &heads {
            let mut name = Vec::new();
            loop {
                let c = r.u8("attribute name")?;
                name_bytes += 1;
                if c == 0 {
                    break;
                }
                name.push(c);
            }
            names.push(String::from_utf8_lossy(&name).into_owned());
        }
        if name_bytes % 2 == 1 {
            r.u8("attribute name padding")?;
        }
        for ((kind, components, n), name) in heads.into_iter().zip(names) {
            let values = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(usize::from(components)))
                .filter(|v| v.checked_mul(4).is_some_and(|b| b <= r.remaining()))
                .ok_or(Short("POLYDATA attribute data"))?;
            let data = (0..values).map(|_| r.f32("attribute value")).collect::<Result<Vec<f32>, Short>>()?;
            p.attributes.push(PolyAttribute { kind, components, name, data });
        }
        Ok(p)
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        put_u32(out, self.points.len() as u32);
        for cells in cell_lists(self) {
            put_u32(out, cells.len() as u32);
            put_u32(out, cells_size(cells) as u32);
        }
        put_u32(out, self.attributes.len() as u32);
        for p in &self.points {
            for v in p {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        for cells in cell_lists(self) {
            for c in cells {
                put_u32(out, c.len() as u32);
                for i in c {
                    put_u32(out, *i);
                }
            }
        }
        for a in &self.attributes {
            out.extend_from_slice(&[a.kind, a.components]);
            put_u32(out, (a.data.len() / usize::from(a.components.max(1))) as u32);
        }
        let mut name_bytes = 0;
        for a in &self.attributes {
            out.extend_from_slice(a.name.as_bytes());
            out.push(0);
            name_bytes += a.name.len() + 1;
        }
        if name_bytes % 2 == 1 {
            out.push(0);
        }
        for a in &self.attributes {
            for v in &a.data {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// Whether every count fits its field, every index names a point and every attribute holds
    /// whole points or cells.
    pub(super) fn check(&self) -> Result<(), String> {
        if u32::try_from(self.points.len()).is_err() {
            return Err("POLYDATA has more points than a u32 counts".into());
        }
        for cells in cell_lists(self) {
            if u32::try_from(cells_size(cells)).is_err() {
                return Err("POLYDATA cell block larger than a u32 counts".into());
            }
            if let Some(i) = cells.iter().flatten().find(|i| **i as usize >= self.points.len()) {
                return Err(format!("POLYDATA cell index {i} beyond its {} points", self.points.len()));
            }
        }
        for a in &self.attributes {
            if a.components == 0 || a.data.len() % usize::from(a.components) != 0 {
                return Err(format!(
                    "POLYDATA attribute {:?}: {} values are not whole groups of {}",
                    a.name,
                    a.data.len(),
                    a.components
                ));
            }
            if a.name.as_bytes().contains(&0) {
                return Err(format!("POLYDATA attribute name {:?} holds a NUL", a.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Body, Header, Message, HEADER_SIZE};
    use proptest::prelude::*;

    fn round_trip(p: &PolyData) -> Result<Body, crate::IgtlError> {
        let bytes = Message::new("ZONE", Body::PolyData(p.clone())).encode()?;
        let h = Header::parse(&bytes)?;
        Message::decode(&h, &bytes[HEADER_SIZE..]).map(|m| m.body)
    }

    /// A POLYDATA whose cells index its points, with scalar and vector point attributes.
    fn polydata() -> impl Strategy<Value = PolyData> {
        proptest::collection::vec(proptest::array::uniform3(-1e3f32..1e3), 1..20)
            .prop_flat_map(|points| {
                let n = points.len() as u32;
                let cells = move || proptest::collection::vec(proptest::collection::vec(0..n, 1..6), 0..5);
                (Just(points), cells(), cells(), cells(), cells(), proptest::collection::vec("[a-z_]{0,12}", 0..3))
            })
            .prop_map(|(points, vertices, lines, polygons, triangle_strips, names)| {
                let attributes = names
                    .into_iter()
                    .enumerate()
                    .map(|(k, name)| {
                        let components = if k % 2 == 0 { 1 } else { 3 };
                        PolyAttribute {
                            kind: if k % 2 == 0 { 0x00 } else { 0x01 },
                            components,
                            name,
                            data: (0..points.len() * usize::from(components)).map(|v| v as f32 * 0.5).collect(),
                        }
                    })
                    .collect();
                PolyData { points, vertices, lines, polygons, triangle_strips, attributes }
            })
    }

    proptest! {
        #[test]
        fn polydata_round_trips(p in polydata()) {
            prop_assert_eq!(round_trip(&p).unwrap(), Body::PolyData(p));
        }
    }

    #[test]
    fn an_index_beyond_the_points_is_refused_both_ways() {
        let p = PolyData { points: vec![[0.0; 3]; 3], polygons: vec![vec![0, 1, 3]], ..PolyData::default() };
        let e = round_trip(&p).unwrap_err().to_string();
        assert!(e.contains("cell index 3 beyond its 3 points"), "{e}");
        // The same bytes from a peer: refused on decode.
        let mut ok = PolyData { polygons: vec![vec![0, 1, 2]], ..p };
        let mut bytes = Message::new("ZONE", Body::PolyData(ok.clone())).encode().unwrap();
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&7u32.to_be_bytes());
        let body = bytes[HEADER_SIZE..].to_vec();
        let mut h = Header::parse(&bytes).unwrap();
        h.crc = crate::crc64(&body);
        let e = Message::decode(&h, &body).unwrap_err().to_string();
        assert!(e.contains("beyond the points"), "{e}");
        ok.attributes.push(PolyAttribute { kind: 0, components: 3, name: "v".into(), data: vec![1.0; 4] });
        assert!(round_trip(&ok).unwrap_err().to_string().contains("not whole groups of 3"));
    }
}
