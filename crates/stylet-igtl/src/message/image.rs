//! IMAGE: the 72-byte image header, then the sub-volume's pixels; IMGMETA: what images a sender
//! has, 260 bytes each.

use crate::wire::{put_f32s, put_text, put_u16, put_u64, Reader, Short};

/// IMAGE (72-byte image header, then the pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Image header version (1).
    pub header_version: u16,
    /// Components per pixel.
    pub components: u8,
    /// Scalar type: 2 int8, 3 uint8, 4 int16, 5 uint16, 6 int32, 7 uint32, 10 float32, 11 float64.
    pub scalar_type: u8,
    /// 1 big endian, 2 little endian.
    pub endian: u8,
    /// 1 RAS, 2 LPS.
    pub coordinate: u8,
    /// Image size, pixels.
    pub size: [u16; 3],
    /// tx ty tz sx sy sz nx ny nz px py pz: the axes scaled by the spacing, and the centre.
    pub matrix: [f32; 12],
    /// Sub-volume offset.
    pub subvolume_offset: [u16; 3],
    /// Sub-volume size (the pixels sent).
    pub subvolume_size: [u16; 3],
    /// The sub-volume's pixels.
    pub pixels: Vec<u8>,
}

impl Image {
    /// Bytes per scalar of `scalar_type`, if known.
    #[must_use]
    pub fn scalar_bytes(scalar_type: u8) -> Option<usize> {
        Some(match scalar_type {
            2 | 3 => 1,
            4 | 5 => 2,
            6 | 7 | 10 => 4,
            11 => 8,
            _ => return None,
        })
    }

    /// The image header and pixels.
    pub(super) fn parse(r: &mut Reader<'_>) -> Result<Image, Short> {
        let mut img = Image {
            header_version: r.u16("image header version")?,
            components: r.u8("components")?,
            scalar_type: r.u8("scalar type")?,
            endian: r.u8("endian")?,
            coordinate: r.u8("coordinate")?,
            size: [r.u16("size")?, r.u16("size")?, r.u16("size")?],
            matrix: r.f32s("matrix")?,
            subvolume_offset: [r.u16("offset")?, r.u16("offset")?, r.u16("offset")?],
            subvolume_size: [r.u16("subvolume")?, r.u16("subvolume")?, r.u16("subvolume")?],
            pixels: Vec::new(),
        };
        let per = Image::scalar_bytes(img.scalar_type).ok_or(Short("IMAGE scalar type unknown"))?;
        let n =
            img.subvolume_size.iter().map(|s| usize::from(*s)).product::<usize>() * usize::from(img.components) * per;
        img.pixels = r.take(n, "image pixels")?.to_vec();
        Ok(img)
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        put_u16(out, self.header_version);
        out.extend_from_slice(&[self.components, self.scalar_type, self.endian, self.coordinate]);
        for s in self.size {
            put_u16(out, s);
        }
        put_f32s(out, &self.matrix);
        for s in self.subvolume_offset.iter().chain(&self.subvolume_size) {
            put_u16(out, *s);
        }
        out.extend_from_slice(&self.pixels);
    }

    /// Whether the pixels are as many as the sub-volume's size says.
    pub(super) fn check(&self) -> Result<(), String> {
        let per = Image::scalar_bytes(self.scalar_type).ok_or("IMAGE scalar type unknown")?;
        let n =
            self.subvolume_size.iter().map(|s| usize::from(*s)).product::<usize>() * usize::from(self.components) * per;
        if n == self.pixels.len() {
            Ok(())
        } else {
            Err(format!("IMAGE has {} pixel bytes for a sub-volume of {n}", self.pixels.len()))
        }
    }
}

/// One image a sender has, as IMGMETA lists it (260 bytes on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageMeta {
    /// The image's name (64 bytes).
    pub name: String,
    /// The device name its IMAGE comes under, for a `GET_IMAGE` (20).
    pub device_name: String,
    /// Modality, e.g. `CT` (32).
    pub modality: String,
    /// Patient name (64).
    pub patient_name: String,
    /// Patient id (64).
    pub patient_id: String,
    /// When it was taken (OpenIGTLink 32.32 timestamp).
    pub timestamp: u64,
    /// Size, pixels.
    pub size: [u16; 3],
    /// Scalar type, as IMAGE's.
    pub scalar_type: u8,
}

impl ImageMeta {
    /// Bytes of one element.
    pub const SIZE: usize = 260;

    pub(super) fn parse_all(r: &mut Reader<'_>, len: usize) -> Result<Vec<ImageMeta>, Short> {
        if !len.is_multiple_of(Self::SIZE) {
            return Err(Short("IMGMETA body must be a multiple of 260 bytes"));
        }
        (0..len / Self::SIZE)
            .map(|_| {
                let meta = ImageMeta {
                    name: r.text(64, "image name")?,
                    device_name: r.text(20, "image device name")?,
                    modality: r.text(32, "modality")?,
                    patient_name: r.text(64, "patient name")?,
                    patient_id: r.text(64, "patient id")?,
                    timestamp: r.u64("image timestamp")?,
                    size: [r.u16("size")?, r.u16("size")?, r.u16("size")?],
                    scalar_type: r.u8("scalar type")?,
                };
                r.u8("reserved")?;
                Ok(meta)
            })
            .collect()
    }

    pub(super) fn write_all(out: &mut Vec<u8>, v: &[ImageMeta]) {
        for m in v {
            put_text(out, &m.name, 64);
            put_text(out, &m.device_name, 20);
            put_text(out, &m.modality, 32);
            put_text(out, &m.patient_name, 64);
            put_text(out, &m.patient_id, 64);
            put_u64(out, m.timestamp);
            for s in m.size {
                put_u16(out, s);
            }
            out.extend_from_slice(&[m.scalar_type, 0]);
        }
    }

    pub(super) fn check_all(v: &[ImageMeta]) -> Result<(), String> {
        v.iter().try_for_each(|m| {
            super::body::fits("image name", &m.name, 64)?;
            super::body::fits("image device name", &m.device_name, 20)?;
            super::body::fits("modality", &m.modality, 32)?;
            super::body::fits("patient name", &m.patient_name, 64)?;
            super::body::fits("patient id", &m.patient_id, 64)
        })
    }
}
