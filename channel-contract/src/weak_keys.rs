//! Small-order ed25519 public keys, recognised without curve arithmetic.
//!
//! NEAR's `ed25519_verify` verifies non-strictly: under a small-order public
//! key (the all-zero key among them) forged signatures pass. Edwards25519 has
//! eight small-order points; with the non-canonical encodings a verifier may
//! accept (sign bit on x = 0, y + p for y < 19) they have exactly the fourteen
//! encodings below. The contract refuses them all, so no channel or registry
//! entry ever holds a key that could verify a forgery.

const fn key(prefix: &[u8], fill: u8, last: u8) -> [u8; 32] {
    let mut k = [fill; 32];
    let mut i = 0;
    while i < prefix.len() {
        k[i] = prefix[i];
        i += 1;
    }
    k[31] = last;
    k
}

/// Every encoding of a small-order point.
pub const SMALL_ORDER_ENCODINGS: [[u8; 32]; 14] = [
    // y = 1 (the identity): canonical, sign bit set, y + p, y + p with sign bit.
    key(&[0x01], 0x00, 0x00),
    key(&[0x01], 0x00, 0x80),
    key(&[0xee], 0xff, 0x7f),
    key(&[0xee], 0xff, 0xff),
    // y = 0 (order 4): canonical, sign bit set, y + p, y + p with sign bit.
    key(&[0x00], 0x00, 0x00),
    key(&[0x00], 0x00, 0x80),
    key(&[0xed], 0xff, 0x7f),
    key(&[0xed], 0xff, 0xff),
    // y = -1 (order 2): canonical and with the sign bit.
    key(&[0xec], 0xff, 0x7f),
    key(&[0xec], 0xff, 0xff),
    // The four points of order 8.
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0xfa,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x85,
    ],
];

/// Whether `key` encodes a small-order point (and must never be stored).
pub fn is_small_order(key: &[u8; 32]) -> bool {
    SMALL_ORDER_ENCODINGS.iter().any(|k| k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_curve_library_on_every_listed_key() {
        for k in SMALL_ORDER_ENCODINGS {
            // Each listed encoding is one that ed25519-dalek decodes to a weak point.
            let v = ed25519_dalek::VerifyingKey::from_bytes(&k).expect("decodes");
            assert!(v.is_weak(), "{k:02x?}");
        }
        let mut seen = std::collections::HashSet::new();
        assert!(SMALL_ORDER_ENCODINGS.iter().all(|k| seen.insert(*k)), "no duplicates");
    }

    #[test]
    fn small_order_points_times_eight_are_the_identity_and_real_keys_pass() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        // Exhaustive over the torsion subgroup: every small-order point's
        // canonical encoding is in the list.
        let gen8 = CompressedEdwardsY(SMALL_ORDER_ENCODINGS[10]).decompress().expect("order-8 point");
        let mut p = curve25519_dalek::EdwardsPoint::default();
        for _ in 0..8 {
            assert!(is_small_order(&p.compress().to_bytes()), "{:02x?}", p.compress().to_bytes());
            p += gen8;
        }
        for seed in 0..64u8 {
            let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            assert!(!is_small_order(k.as_bytes()));
        }
    }
}
