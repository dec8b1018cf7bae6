//! base64url without padding (RFC 4648 §5), as JOSE (RFC 7515 §2) and PKCE (RFC 7636 §3) use
//! it. Small on purpose: the browser SDK carries it in its wasm, where the `base64` crate's
//! general engine cost 6 KB. Decoding is strict like that crate's `URL_SAFE_NO_PAD`: no
//! padding, no other alphabet, no stray bits in the last character; the tests compare the two.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = String::with_capacity((bytes.len() * 4).div_ceil(3));
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The bytes of a base64url text, or `None` when it is not canonical base64url.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return None,
            };
            n |= u32::from(v) << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        if n & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return None;
        }
        out.extend((0..bytes).map(|i| (n >> (16 - 8 * i)) as u8));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encodes_as_the_base64_crate_does_and_decodes_back(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let text = super::encode(&bytes);
            prop_assert_eq!(&text, &URL_SAFE_NO_PAD.encode(&bytes));
            prop_assert_eq!(super::decode(&text), Some(bytes));
        }

        #[test]
        fn accepts_exactly_what_the_base64_crate_accepts(text in "[A-Za-z0-9_=+/.-]{0,12}") {
            prop_assert_eq!(super::decode(&text), URL_SAFE_NO_PAD.decode(&text).ok());
        }

        #[test]
        fn refuses_stray_bits_as_the_base64_crate_does(text in "[A-Za-z0-9_-]{1,11}") {
            prop_assert_eq!(super::decode(&text), URL_SAFE_NO_PAD.decode(&text).ok());
        }
    }

    #[test]
    fn rfc_4648_vectors() {
        for (plain, coded) in [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(super::encode(plain), coded);
            assert_eq!(super::decode(coded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(super::decode("Zg=="), None);
        assert_eq!(super::decode("Zh"), None, "stray bits");
        assert_eq!(super::decode("+/"), None, "the other alphabet");
    }
}
