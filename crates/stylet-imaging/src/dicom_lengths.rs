//! A check of a DICOM file's declared element lengths against its size, before dicom-rs reads
//! it: dicom-parser 0.10 reserves and fills a buffer of the declared length before it notices the
//! file is shorter, so a damaged 6 KB file cost 3.5 GB of memory and 4.6 s (found by the
//! `ct_inputs` fuzz target). This walks the element headers only (values are skipped with seeks),
//! in little- and big-endian transfer syntaxes; deflated data sets (which no CT scanner sends)
//! are left to dicom-rs.

use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// Undefined length.
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Nesting deeper than this is refused (sequences in sequences).
const MAX_DEPTH: usize = 32;

struct Cursor<R> {
    r: R,
    pos: u64,
    len: u64,
    /// The data set is big endian (the file meta group never is).
    be: bool,
    /// The transfer syntax encapsulates pixel data (else dicom-rs reads the items of an
    /// undefined-length value as data sets, and so does this walk).
    encapsulated: bool,
    /// Where the top-level Pixel Data element starts, once walked past.
    pixel_data_at: Option<u64>,
}

impl<R: Read + Seek> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|_| format!("ends inside an element header at byte {}", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let be = self.be;
        self.bytes::<2>().map(|b| if be { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }
    fn u32(&mut self) -> Result<u32, String> {
        let be = self.be;
        self.bytes::<4>().map(|b| if be { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    /// Whether the next four bytes are an item tag (FFFE,E000); the position does not move.
    fn peek_item(&mut self) -> Result<bool, String> {
        if self.len.saturating_sub(self.pos) < 4 {
            return Ok(false);
        }
        let b = self.bytes::<4>()?;
        self.r.seek_relative(-4).map_err(|e| e.to_string())?;
        self.pos -= 4;
        let item = if self.be { [0xFF, 0xFE, 0xE0, 0x00] } else { [0xFE, 0xFF, 0x00, 0xE0] };
        Ok(b == item)
    }
    /// Skips `n` value bytes of element `tag`, refusing a value that runs past the end.
    fn skip(&mut self, n: u32, tag: (u16, u16)) -> Result<(), String> {
        let remaining = self.len.saturating_sub(self.pos);
        if u64::from(n) > remaining {
            return Err(format!(
                "element ({:04X},{:04X}) declares {n} bytes at byte {} but only {remaining} remain",
                tag.0, tag.1, self.pos
            ));
        }
        self.r.seek_relative(i64::from(n)).map_err(|e| e.to_string())?;
        self.pos += u64::from(n);
        Ok(())
    }
}

/// Value representations with a 2-byte length in explicit VR; every other, unknown ones included,
/// has 2 reserved bytes and a 4-byte length (as dicom-rs reads them).
fn short_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// The size of one value of a binary VR (1 for the others): dicom-rs reads `len / size` values
/// of such an element and then counts `len` bytes as read, so a length that is not a multiple
/// of the size leaves its reading out of step with the data (and the next "header" it reads
/// may declare gigabytes).
fn value_size(vr: [u8; 2]) -> u32 {
    match &vr {
        b"AT" | b"UL" | b"SL" | b"FL" | b"OL" | b"OF" => 4,
        b"US" | b"SS" | b"OW" => 2,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// The VR dicom-rs gives an element in implicit VR: group lengths are UL, the others the
/// standard dictionary's (relaxed), unknown ones UN.
fn implicit_vr(tag: (u16, u16)) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary as _, DataDictionaryEntry as _};
    if tag.1 == 0x0000 {
        return *b"UL";
    }
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map_or(*b"UN", |e| e.vr().relaxed().to_bytes())
}

/// The VR and value length after an explicit-VR tag, and the header's size with the tag.
fn vr_and_length<R: Read + Seek>(c: &mut Cursor<R>) -> Result<([u8; 2], u32, u32), String> {
    let vr = c.bytes::<2>()?;
    if short_vr(vr) {
        Ok((vr, u32::from(c.u16()?), 8))
    } else {
        c.u16()?;
        Ok((vr, c.u32()?, 12))
    }
}

/// Reads elements up to `end` (the end of the file when `None`), or up to an item or sequence
/// delimiter when nested. `fragments`: the items are encapsulated pixel data (bytes), not data
/// sets.
fn elements<R: Read + Seek>(
    c: &mut Cursor<R>,
    explicit: bool,
    depth: usize,
    end: Option<u64>,
    fragments: bool,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("sequences nested deeper than {MAX_DEPTH}"));
    }
    while c.pos < end.unwrap_or(c.len).min(c.len) {
        let tag = (c.u16()?, c.u16()?);
        if tag.0 == 0xFFFE {
            // Items and delimiters: no VR, a 4-byte length. Not at a data set's top level, where
            // dicom-rs reads one as a plain element and this walk would go into it.
            if depth == 0 && tag.1 == 0xE000 {
                return Err(format!("an item (FFFE,E000) at byte {} outside any sequence", c.pos - 4));
            }
            let len = c.u32()?;
            match tag.1 {
                0xE00D | 0xE0DD if depth > 0 => return Ok(()),
                0xE00D | 0xE0DD => {}
                0xE000 if len == UNDEFINED => elements(c, explicit, depth + 1, None, false)?,
                0xE000 if fragments => c.skip(len, tag)?,
                0xE000 => nested(c, len, tag, explicit, depth)?,
                _ if len == UNDEFINED => {}
                _ => c.skip(len, tag)?,
            }
            continue;
        }
        let pixel_data = tag == (0x7FE0, 0x0010);
        if pixel_data && depth == 0 && c.pixel_data_at.is_none() {
            c.pixel_data_at = Some(c.pos - 4);
        }
        let (vr, len, sequence, encapsulated) = if explicit {
            let (vr, len, _) = vr_and_length(c)?;
            (vr, len, &vr == b"SQ", pixel_data)
        } else {
            let len = c.u32()?;
            let vr = implicit_vr(tag);
            // Implicit VR: a sequence by the dictionary, or a value that opens with an item tag.
            let sequence = len != UNDEFINED && !pixel_data && (&vr == b"SQ" || (len >= 8 && c.peek_item()?));
            (vr, len, sequence, pixel_data)
        };
        let size = value_size(vr);
        if len != UNDEFINED && !sequence && len % size != 0 {
            return Err(format!(
                "element ({:04X},{:04X}) of VR {} declares {len} bytes at byte {}: not a multiple of {size}",
                tag.0,
                tag.1,
                String::from_utf8_lossy(&vr),
                c.pos
            ));
        }
        if len == UNDEFINED {
            // A sequence, or encapsulated pixel data: items up to the sequence delimiter. As
            // dicom-rs decides it (`is_encapsulated_pixeldata`): only Pixel Data of undefined
            // length holds fragments, whatever the transfer syntax; any other element of undefined
            // length is a sequence of data sets, whatever its VR (ct_inputs found an OB one in an
            // RLE file whose items dicom-rs parsed, and reserved 3.7 GB for, while this walk
            // skipped them as fragments).
            elements(c, explicit, depth + 1, None, encapsulated)?;
        } else if sequence {
            nested(c, len, tag, explicit, depth)?;
        } else {
            c.skip(len, tag)?;
        }
    }
    Ok(())
}

/// The elements inside a value of defined length `len` (a sequence or an item), then on after it.
fn nested<R: Read + Seek>(
    c: &mut Cursor<R>,
    len: u32,
    tag: (u16, u16),
    explicit: bool,
    depth: usize,
) -> Result<(), String> {
    let remaining = c.len.saturating_sub(c.pos);
    if u64::from(len) > remaining {
        return Err(format!(
            "element ({:04X},{:04X}) declares {len} bytes at byte {} but only {remaining} remain",
            tag.0, tag.1, c.pos
        ));
    }
    let end = c.pos + u64::from(len);
    elements(c, explicit, depth + 1, Some(end), false)?;
    if c.pos > end {
        return Err(format!(
            "an element inside ({:04X},{:04X}) runs {} bytes past its end at byte {end}",
            tag.0,
            tag.1,
            c.pos - end
        ));
    }
    if c.pos < end {
        c.r.seek_relative((end - c.pos) as i64).map_err(|e| e.to_string())?;
        c.pos = end;
    }
    Ok(())
}

/// Whether the file has the DICOM magic after a 128-byte preamble (`Some(true)`), at its start
/// (`Some(false)`), or neither (`None`), as dicom-rs decides it.
#[must_use]
pub fn preamble_of(path: &Path) -> Option<bool> {
    let mut head = Vec::with_capacity(132);
    std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::open(path).ok()?, 132), &mut head).ok()?;
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        Some(true)
    } else if head.len() >= 4 && &head[..4] == b"DICM" {
        Some(false)
    } else {
        None
    }
}

/// Whether every element length declared in the file at `path` fits in the file (the error says
/// which element does not, and where). `Ok` also when
/// the file is not a DICOM Part 10 file or its data set is deflated (dicom-rs decides).
pub fn check(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut c = Cursor {
        r: BufReader::with_capacity(4096, file),
        pos: 0,
        len,
        be: false,
        encapsulated: false,
        pixel_data_at: None,
    };
    // Where dicom-rs finds the magic (its `ReadPreamble::Auto`): after a 128-byte preamble, or
    // at the very start (a file without the preamble; ct_inputs found one whose meta header
    // declared a 4 GB value that dicom-rs reserved, past a check that looked only at byte 128).
    match preamble_of(path) {
        Some(true) => c.skip(128, (0, 0))?,
        Some(false) => {}
        None => return Ok(()),
    }
    if len < 4 || &c.bytes::<4>()? != b"DICM" {
        return Ok(());
    }
    // File meta group, read as dicom-rs reads it: explicit VR little endian, (0002,0000) first,
    // then elements until its group length is used up, whatever their tags.
    // dicom-rs takes any VR there (a fuzzed "UI" reached its pixel data reader past this check),
    // only the tag and a length of 4 must be right.
    if (c.u16()?, c.u16()?) != (0x0002, 0x0000) || vr_and_length(&mut c)?.1 != 4 {
        return Ok(()); // dicom-rs refuses it before reading any value
    }
    let group_length = c.u32()?;
    let (mut read, mut syntax) = (0u32, Vec::new());
    while read < group_length {
        let tag = (c.u16()?, c.u16()?);
        let (header, n) = if tag.0 == 0xFFFE {
            (8, c.u32()?)
        } else {
            let (_, n, header) = vr_and_length(&mut c)?;
            (header, n)
        };
        if n == UNDEFINED {
            return Ok(()); // refused by dicom-rs
        }
        if tag == (0x0002, 0x0010) && n <= 64 && u64::from(n) <= c.len.saturating_sub(c.pos) {
            syntax = vec![0u8; n as usize];
            c.r.read_exact(&mut syntax).map_err(|e| e.to_string())?;
            c.pos += u64::from(n);
        } else {
            c.skip(n, tag)?;
        }
        read = read.saturating_add(header).saturating_add(n);
    }
    let syntax =
        String::from_utf8_lossy(&syntax).trim_end_matches(|ch: char| ch.is_whitespace() || ch == '\0').to_string();
    c.encapsulated = !matches!(
        syntax.as_str(),
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99"
    );
    match syntax.as_str() {
        // Implicit VR little endian.
        "1.2.840.10008.1.2" => elements(&mut c, false, 0, None, false),
        // Explicit VR big endian.
        "1.2.840.10008.1.2.2" => {
            c.be = true;
            elements(&mut c, true, 0, None, false)
        }
        // Deflated data sets: not walked here.
        "1.2.840.10008.1.2.1.99" => Ok(()),
        // Explicit VR little endian and every encapsulated (compressed) syntax.
        _ => elements(&mut c, true, 0, None, false),
    }
}

/// Whether every element length declared in a data set received over the network (`bytes`, in
/// `transfer_syntax`, no preamble or file meta) fits in it: what the DICOM node checks before
/// dicom-rs reads a command set or an instance. A deflated data set is refused here (it cannot
/// be checked before it is inflated; no CT scanner sends one).
///
/// # Errors
/// Which element does not fit, and where.
pub fn check_data_set(bytes: &[u8], transfer_syntax: &str) -> Result<(), String> {
    pixel_data_offset(bytes, transfer_syntax).map(|_| ())
}

/// [`check_data_set`], and where the data set's top-level Pixel Data element starts (its length
/// when it has none): the bytes before it are the data set without its pixels, which a reader
/// that needs only the attributes can parse alone.
///
/// # Errors
/// As [`check_data_set`].
pub fn pixel_data_offset(bytes: &[u8], transfer_syntax: &str) -> Result<usize, String> {
    let syntax = transfer_syntax.trim_end_matches(|ch: char| ch.is_whitespace() || ch == '\0');
    let len = bytes.len() as u64;
    let mut c =
        Cursor { r: std::io::Cursor::new(bytes), pos: 0, len, be: false, encapsulated: false, pixel_data_at: None };
    c.encapsulated = !matches!(syntax, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2");
    match syntax {
        "1.2.840.10008.1.2" => elements(&mut c, false, 0, None, false),
        "1.2.840.10008.1.2.2" => {
            c.be = true;
            elements(&mut c, true, 0, None, false)
        }
        "1.2.840.10008.1.2.1.99" => Err("a deflated data set cannot be checked before it is inflated".into()),
        _ => elements(&mut c, true, 0, None, false),
    }?;
    Ok(c.pixel_data_at.map_or(bytes.len(), |at| usize::try_from(at).unwrap_or(bytes.len())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(meta_and_data: &[u8]) -> std::path::PathBuf {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        b.extend_from_slice(meta_and_data);
        let p = std::env::temp_dir().join(format!("stylet-lengths-{}-{}.dcm", std::process::id(), b.len()));
        std::fs::write(&p, b).unwrap();
        p
    }

    fn meta(syntax: &str) -> Vec<u8> {
        let mut uid = syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        // (0002,0000) group length, then (0002,0010) the transfer syntax.
        let mut b = vec![0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0];
        b.extend_from_slice(&(8 + uid.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        b.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        b.extend_from_slice(&uid);
        b
    }

    #[test]
    fn a_value_longer_than_the_file_is_named() {
        let mut b = meta("1.2.840.10008.1.2.1");
        // (7FE0,0010) OW declaring 3.5 GB, followed by 4 bytes.
        b.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        b.extend_from_slice(&3_500_000_000u32.to_le_bytes());
        b.extend_from_slice(&[1, 2, 3, 4]);
        let p = file(&b);
        let e = check(&p).unwrap_err();
        let _ = std::fs::remove_file(&p);
        assert!(e.contains("(7FE0,0010)") && e.contains("3500000000"), "{e}");
    }

    #[test]
    fn sequences_items_and_encapsulated_pixels_walk_through() {
        let mut b = meta("1.2.840.10008.1.2.4.90");
        // (0008,1140) SQ undefined length: one item of undefined length holding (0008,1150) UI
        // "1.2", then the item and sequence delimiters.
        b.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, b'U', b'I', 4, 0, b'1', b'.', b'2', 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        // Encapsulated pixel data: an empty offset table and one 4-byte fragment.
        b.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 9, 9, 9, 9]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let p = file(&b);
        let r = check(&p);
        // A fragment that overruns.
        let n = b.len();
        b[n - 16] = 200;
        let q = file(&[b.as_slice(), &[0u8; 2]].concat());
        let e = check(&q);
        let _ = (std::fs::remove_file(&p), std::fs::remove_file(&q));
        assert_eq!(r, Ok(()));
        assert!(e.is_err_and(|e| e.contains("(FFFE,E000)")));
    }

    #[test]
    fn a_data_set_from_the_network_is_checked_in_memory() {
        // Implicit VR little endian: (0000,0002) of 4 bytes, "1.2\\0": it fits.
        let mut ok = vec![0x00, 0x00, 0x02, 0x00, 4, 0, 0, 0];
        ok.extend_from_slice(b"1.2\0");
        assert_eq!(check_data_set(&ok, "1.2.840.10008.1.2"), Ok(()));
        // The same element declaring 4 GB.
        let bad = [0x00, 0x00, 0x02, 0x00, 0xF0, 0xFF, 0xFF, 0xFF];
        let e = check_data_set(&bad, "1.2.840.10008.1.2").unwrap_err();
        assert!(e.contains("(0000,0002) declares 4294967280 bytes"), "{e}");
        assert!(check_data_set(&ok, "1.2.840.10008.1.2.1.99").unwrap_err().contains("deflated"));
    }

    #[test]
    fn the_pixel_data_offset_is_where_the_top_level_pixel_data_starts() {
        // Explicit VR little endian: (0020,000E) UI "1.2", a sequence (0008,1140) holding an
        // item with a (7FE0,0010) of its own (not the data set's), then the pixels.
        let mut set = vec![0x20, 0x00, 0x0E, 0x00, b'U', b'I', 4, 0];
        set.extend_from_slice(b"1.2\0");
        let item_pixels = [0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 9, 9];
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(item_pixels.len() as u32).to_le_bytes());
        item.extend_from_slice(&item_pixels);
        set.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0]);
        set.extend_from_slice(&(item.len() as u32).to_le_bytes());
        set.extend_from_slice(&item);
        let at = set.len();
        set.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
        let explicit = "1.2.840.10008.1.2.1";
        assert_eq!(pixel_data_offset(&set, explicit), Ok(at));
        // Without pixels: the whole data set.
        assert_eq!(pixel_data_offset(&set[..at], explicit), Ok(at));
        // A damaged length is refused as by check_data_set.
        let mut bad = set.clone();
        bad[at + 8] = 0xFF;
        assert!(pixel_data_offset(&bad, explicit).is_err());
    }

    #[test]
    fn what_would_put_dicom_rs_out_of_step_is_refused() {
        let implicit = "1.2.840.10008.1.2";
        // A group length (UL) of 1 byte: dicom-rs reads no value and counts a byte read.
        let e = check_data_set(&[0x08, 0x00, 0x00, 0x00, 1, 0, 0, 0, 0], implicit).unwrap_err();
        assert!(e.contains("(0008,0000) of VR UL declares 1 bytes") && e.contains("multiple of 4"), "{e}");
        // Explicit VR: an FD of 4 bytes.
        let e =
            check_data_set(&[0x18, 0x00, 0x88, 0x00, b'F', b'D', 4, 0, 0, 0, 0, 0], "1.2.840.10008.1.2.1").unwrap_err();
        assert!(e.contains("multiple of 8"), "{e}");
        // An item outside any sequence (the fuzz target suite_inputs found these three).
        let e = check_data_set(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0], implicit).unwrap_err();
        assert!(e.contains("outside any sequence"), "{e}");
        // A sequence (by the dictionary: (0008,1115) Referenced Series Sequence) whose item holds
        // an element running past the item's end.
        let mut sq = vec![0x08, 0x00, 0x15, 0x11, 18, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 10, 0, 0, 0];
        sq.extend_from_slice(&[0x08, 0x00, 0x50, 0x00, 2, 0, 0, 0, b'1', 0]);
        assert_eq!(check_data_set(&sq, implicit), Ok(()));
        sq[12] = 6; // the item now ends inside its element
        let e = check_data_set(&sq, implicit).unwrap_err();
        assert!(e.contains("runs") && e.contains("past its end"), "{e}");
    }

    #[test]
    fn an_element_of_undefined_length_other_than_pixel_data_is_a_sequence_as_dicom_rs_reads_it() {
        // Found by ct_inputs: in an RLE file, (0000,0000) OB of undefined length, whose items
        // dicom-rs parses as data sets (one declaring 3,758,161,918 bytes, which it reserved).
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/ct_inputs-oom-482aac56.dcm");
        let e = check(&p).unwrap_err();
        assert!(e.contains("remain") || e.contains("past"), "{e}");
    }

    #[test]
    fn a_file_without_the_preamble_is_checked_as_dicom_rs_reads_it() {
        // Found by ct_inputs: "DICM" at byte 0 (dicom-rs reads such a file), then a meta element
        // (0002,0002) declaring 4,042,272,305 bytes, which dicom-rs reserved.
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/ct_inputs-oom-8653d952.dcm");
        assert_eq!(preamble_of(&p), Some(false));
        let e = check(&p).unwrap_err();
        assert!(e.contains("4042272305"), "{e}");
    }

    #[test]
    fn a_meta_group_length_of_any_vr_is_read_as_dicom_rs_reads_it() {
        // Found by ct_inputs: (0002,0000) with VR "UI" (dicom-rs reads its value all the same)
        // and an RLE offset-table item declaring 0x55555555 bytes, which dicom-rs reserved.
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/ct_inputs-oom-098e2010.dcm");
        let e = check(&p).unwrap_err();
        assert!(e.contains("1431655765") || e.contains("remain"), "{e}");
    }
}
