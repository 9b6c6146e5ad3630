//! Consistent Overhead Byte Stuffing (Cheshire & Baker 1999): removes every 0x00 from a payload
//! so that 0x00 can delimit frames, at a cost of at most one byte per 254.

/// Longest encoding of `n` payload bytes (without the 0x00 delimiter).
#[must_use]
pub const fn max_encoded_len(n: usize) -> usize {
    n + n / 254 + 1
}

/// Encodes `src` into `dst`, returning the encoded length, or `None` when `dst` is too small.
#[must_use]
pub fn encode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let mut code_at = 0usize;
    let mut out = 1usize;
    let mut code: u8 = 1;
    if dst.is_empty() {
        return None;
    }
    for &b in src {
        if b == 0 {
            *dst.get_mut(code_at)? = code;
            code_at = out;
            out += 1;
            code = 1;
            if out > dst.len() {
                return None;
            }
        } else {
            *dst.get_mut(out)? = b;
            out += 1;
            code += 1;
            if code == 0xFF {
                *dst.get_mut(code_at)? = code;
                code_at = out;
                out += 1;
                code = 1;
                if out > dst.len() {
                    return None;
                }
            }
        }
    }
    *dst.get_mut(code_at)? = code;
    Some(out)
}

/// Decodes `src` (one frame, without its delimiter) into `dst`, returning the decoded length, or
/// `None` when `src` is not valid COBS (a zero byte, a code past the end) or `dst` is too small.
#[must_use]
pub fn decode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let mut i = 0usize;
    let mut out = 0usize;
    while i < src.len() {
        let code = src[i];
        if code == 0 {
            return None;
        }
        let run = usize::from(code) - 1;
        let end = i + 1 + run;
        if end > src.len() {
            return None;
        }
        let chunk = &src[i + 1..end];
        if chunk.contains(&0) {
            return None;
        }
        dst.get_mut(out..out + run)?.copy_from_slice(chunk);
        out += run;
        i = end;
        if code != 0xFF && i < src.len() {
            *dst.get_mut(out)? = 0;
            out += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        // Vectors from the COBS paper / Wikipedia.
        let cases: &[(&[u8], &[u8])] = &[
            (&[0x00], &[0x01, 0x01]),
            (&[0x00, 0x00], &[0x01, 0x01, 0x01]),
            (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
            (&[0x11, 0x22, 0x33, 0x44], &[0x05, 0x11, 0x22, 0x33, 0x44]),
            (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
        ];
        for (raw, enc) in cases {
            let mut buf = [0u8; 16];
            let n = encode(raw, &mut buf).unwrap();
            assert_eq!(&buf[..n], *enc);
            let mut back = [0u8; 16];
            let m = decode(enc, &mut back).unwrap();
            assert_eq!(&back[..m], *raw);
        }
    }

    proptest! {
        #[test]
        fn round_trip_and_no_zero(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut enc = [0u8; 700];
            let n = encode(&data, &mut enc).unwrap();
            prop_assert!(n <= max_encoded_len(data.len()));
            prop_assert!(!enc[..n].contains(&0));
            let mut dec = [0u8; 700];
            let m = decode(&enc[..n], &mut dec).unwrap();
            prop_assert_eq!(&dec[..m], &data[..]);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), cap in 0usize..300) {
            let mut dst = [0u8; 300];
            let _ = decode(&data, &mut dst[..cap]);
        }
    }
}
