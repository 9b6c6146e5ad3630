//! Conformance against the reference library's own test messages
//! (../shared/data/openigtlink/upstream-vectors/, from the C test suite of OpenIGTLink): every
//! vector decodes with a good CRC; every one whose type the codec interprets re-encodes byte for
//! byte. Then the stream decoder on hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stylet_igtl::{Body, Decoder, Header, IgtlError, Message, Orientation, HEADER_SIZE};

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/openigtlink/upstream-vectors");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn decode(bytes: &[u8]) -> Message {
    let h = Header::parse(bytes).unwrap();
    assert_eq!(bytes.len(), HEADER_SIZE + h.body_size as usize);
    Message::decode(&h, &bytes[HEADER_SIZE..]).unwrap()
}

#[test]
fn every_vector_decodes_and_the_interpreted_ones_reencode_byte_for_byte() {
    let all = vectors();
    assert_eq!(all.len(), 24, "{:?}", all.iter().map(|v| &v.0).collect::<Vec<_>>());
    let mut interpreted = Vec::new();
    for (name, bytes) in &all {
        let m = decode(bytes);
        if m.body.is_interpreted() {
            assert_eq!(&m.encode().unwrap(), bytes, "{name} did not re-encode byte for byte");
            interpreted.push(name.as_str());
        } else {
            // Kept as bytes: still re-encodes exactly.
            assert_eq!(&m.encode().unwrap(), bytes, "{name}");
        }
    }
    for want in [
        "capability",
        "command",
        "commandFormat2",
        "image",
        "imgmeta",
        "point",
        "polydata",
        "position",
        "positionFormat2",
        "status",
        "string",
        "trajectory",
        "trajectoryFormat2",
        "transform",
        "transformFormat2",
    ] {
        assert!(interpreted.contains(&want), "{want} not interpreted: {interpreted:?}");
    }
}

#[test]
fn vector_contents_are_what_the_reference_tests_wrote() {
    let all: std::collections::BTreeMap<String, Vec<u8>> = vectors().into_iter().collect();
    let m = decode(&all["string"]);
    assert_eq!(m.body, Body::String { encoding: 3, value: b"Welcome to OpenIGTLink".to_vec() });
    assert_eq!(m.device_name, "DeviceName");
    let m = decode(&all["status"]);
    let Body::Status { code, error_name, message, .. } = &m.body else { panic!("{m:?}") };
    assert_eq!((*code, error_name.as_str(), message.as_str()), (15, "ACTUATOR_DISABLED", "Actuator A is disabled."));
    let m = decode(&all["transformFormat2"]);
    assert_eq!(m.version, 2);
    let ext = m.extended.as_ref().unwrap();
    assert_eq!(ext.message_id, 1);
    let meta: Vec<(&str, &[u8])> = ext.metadata.iter().map(|e| (e.key.as_str(), e.value.as_slice())).collect();
    assert_eq!(meta, vec![("First patient age", &b"22"[..]), ("Second patient age", &b"25"[..])]);
    let Body::Transform(t) = m.body else { panic!() };
    assert!((t[9] - 46.0531).abs() < 1e-3, "{t:?}");
    let m = decode(&all["position"]);
    let Body::Position { orientation: Orientation::Xyzw(q), .. } = m.body else { panic!("{m:?}") };
    // The reference test's quaternion (0, 0.5774, 0.5774, 0.3333), as written.
    assert_eq!(q, [0.0, f32::from_bits(0x3f13_cd3a), f32::from_bits(0x3f13_cd3a), f32::from_bits(0x3eaa_aaab)]);
    let m = decode(&all["capability"]);
    assert_eq!(
        m.body,
        Body::Capability(vec!["IMAGE".into(), "GET_IMAGE".into(), "TRANSFORM".into(), "GET_TRANS".into()])
    );
    let m = decode(&all["imgmeta"]);
    let Body::ImgMeta(images) = &m.body else { panic!("{m:?}") };
    let got: Vec<(&str, &str, &str, [u16; 3])> =
        images.iter().map(|i| (i.name.as_str(), i.device_name.as_str(), i.modality.as_str(), i.size)).collect();
    assert_eq!(
        got,
        vec![
            ("IMAGE_DESCRIPTION_0", "IMAGE_0", "CT", [512, 512, 64]),
            ("IMAGE_DESCRIPTION_1", "IMAGE_1", "MRI", [256, 128, 32]),
            ("IMAGE_DESCRIPTION_2", "IMAGE_2", "PET", [256, 256, 32]),
        ]
    );
    assert_eq!(
        (images[2].patient_id.as_str(), images[2].timestamp, images[2].scalar_type),
        ("PATIENT_ID_2", 1_234_567_900, 5)
    );
    let m = decode(&all["polydata"]);
    let Body::PolyData(cube) = &m.body else { panic!("{m:?}") };
    assert_eq!((cube.points.len(), cube.polygons.len(), cube.lines.len()), (8, 6, 0));
    assert_eq!(cube.polygons[0], vec![0, 1, 2, 3]);
    assert_eq!(cube.attributes.len(), 1);
    assert_eq!(
        (cube.attributes[0].name.as_str(), cube.attributes[0].kind, cube.attributes[0].components),
        ("attr", 0, 1)
    );
    assert_eq!(cube.attributes[0].data, (0..8).map(|v| v as f32).collect::<Vec<_>>());
    let m = decode(&all["point"]);
    let Body::Point(p) = m.body else { panic!() };
    assert_eq!(p[0].name, "POINT_DESCRIPTION_0");
    assert_eq!(p[0].group, "Landmark");
}

#[test]
fn the_stream_decoder_takes_every_vector_byte_by_byte() {
    let all = vectors();
    let mut d = Decoder::new(1 << 20);
    let mut got = Vec::new();
    for (_, bytes) in &all {
        for b in bytes {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message() {
                got.push(m.unwrap().body.type_name());
            }
        }
    }
    assert_eq!(got.len(), all.len());
    assert_eq!(d.buffered(), 0);
}

#[test]
fn malformed_input_is_refused_and_the_stream_goes_on() {
    let all: std::collections::BTreeMap<String, Vec<u8>> = vectors().into_iter().collect();
    let good = all["string"].clone();
    let mut d = Decoder::new(4096);

    // Bad CRC: one body byte flipped.
    let mut bad = good.clone();
    bad[HEADER_SIZE + 5] ^= 0x20;
    d.push(&bad);
    d.push(&good);
    assert!(matches!(d.next_message(), Some(Err(IgtlError::Crc { .. }))));
    assert!(matches!(d.next_message(), Some(Ok(_))));

    // Truncated header: nothing yet, then the rest arrives.
    d.push(&good[..30]);
    assert_eq!(d.next_message(), None);
    d.push(&good[30..]);
    assert!(matches!(d.next_message(), Some(Ok(_))));

    // A huge BODY_SIZE: refused without buffering it; the body's bytes are skipped as they come
    // and the next message decodes.
    let mut huge = good[..HEADER_SIZE].to_vec();
    huge[42..50].copy_from_slice(&(10_000_000u64).to_be_bytes());
    d.push(&huge);
    assert!(matches!(d.next_message(), Some(Err(IgtlError::TooLarge { body_size: 10_000_000, .. }))));
    let chunk = vec![0xAB; 65_536];
    let mut left = 10_000_000usize;
    while left > 0 {
        let n = left.min(chunk.len());
        d.push(&chunk[..n]);
        left -= n;
        assert!(d.buffered() <= HEADER_SIZE + 4096);
        assert_eq!(d.next_message(), None);
    }
    d.push(&good);
    assert!(matches!(d.next_message(), Some(Ok(_))));

    // Header version 2 without its extended header.
    let mut v2 = good.clone();
    v2[1] = 2;
    d.push(&v2);
    assert!(matches!(d.next_message(), Some(Err(IgtlError::MissingExtendedHeader { .. }))), "{:?}", d.next_message());
    d.push(&good);
    assert!(matches!(d.next_message(), Some(Ok(_))));

    // An unknown version.
    let mut v9 = good.clone();
    v9[1] = 9;
    d.push(&v9);
    assert!(matches!(d.next_message(), Some(Err(IgtlError::Version(9)))));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn unknown_types_come_back_as_bytes() {
    let m = Message::new("x", Body::Other { type_name: "FOO".into(), body: vec![1, 2, 3] });
    let bytes = m.encode().unwrap();
    let mut d = Decoder::new(64);
    d.push(&bytes);
    assert_eq!(d.next_message(), Some(Ok(m)));
}

#[test]
fn names_that_do_not_fit_are_refused_on_encode() {
    let m = Message::new("a device name longer than twenty", Body::Transform([0.0; 12]));
    let e = m.encode().unwrap_err().to_string();
    assert!(e.contains("longer than 20 bytes"), "{e}");
}
