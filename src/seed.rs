//! Counter-based randomness: every random choice draws from a generator seeded by the
//! tuple it belongs to, e.g. (seed, epoch, batch, item, purpose), so results never depend
//! on thread timing or on how many draws came before.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64's finaliser: a well-mixed 64-bit function of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit seed for a tuple of counters.
///
/// ```
/// use ctstream::seed::derive;
/// assert_eq!(derive(&[7, 0, 3]), derive(&[7, 0, 3]));
/// assert_ne!(derive(&[7, 0, 3]), derive(&[7, 3, 0]));
/// ```
pub fn derive(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15u64, |h, &p| mix(h ^ mix(p.wrapping_add(0x9E37_79B9_7F4A_7C15))))
}

/// FNV-1a (64 bit) of `bytes`: a stable hash for ids that must not change between
/// versions or platforms (derived DICOM series ids, the train/validation split).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// A generator for a tuple of counters.
pub fn rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive(parts))
}
