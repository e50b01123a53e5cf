//! Deterministic assignment: a lead's key hashed with a salt to a point in [0, 1), the traffic
//! range an experiment takes of its layer, and the arm a point falls in.
//!
//! The hash is FNV-1a (64 bits) followed by MurmurHash3's 64-bit finaliser, so keys that differ
//! in one character (`lead-1`, `lead-2`) land far apart; it depends on nothing but the bytes, so
//! assignments are the same on every machine and after every restart. It is written out here
//! rather than taken from a crate: it is a dozen lines, and its output is part of what an
//! experiment means (a crate's hash could change under an upgrade).

/// FNV-1a over `parts`, with a `/` between them.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= u64::from(b'/');
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in p.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// MurmurHash3's 64-bit finaliser: every input bit moves every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The point in [0, 1) of `key` under `salt` (and a `purpose`, so one salt gives independent
/// points for traffic and for arms).
pub fn point(salt: &str, purpose: &str, key: &str) -> f64 {
    (fmix64(fnv1a(&[salt, purpose, key])) >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm whose share of the cumulative `shares` holds `u`; the last arm takes any rounding
/// remainder.
pub fn arm_at(shares: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, s) in shares.iter().enumerate() {
        acc += s;
        if u < acc {
            return i;
        }
    }
    shares.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_stable_and_uniform() {
        // Stable: these values are part of what running experiments mean (computed
        // independently, from the definition of FNV-1a and fmix64, in Python).
        assert_eq!(point("s", "arm", "lead-1"), 0.8292774144952713);
        assert_eq!(point("layer:main", "traffic", "l-0"), 0.07127415070350973);
        assert_ne!(point("s", "arm", "lead-1"), point("t", "arm", "lead-1"));
        assert_ne!(point("s", "arm", "lead-1"), point("s", "traffic", "lead-1"));
        let n = 100_000;
        let mut bins = [0u32; 10];
        for i in 0..n {
            bins[(point("salt", "arm", &format!("lead-{i}")) * 10.0) as usize] += 1;
        }
        let expected = n as f64 / 10.0;
        let chi: f64 = bins.iter().map(|&b| (b as f64 - expected).powi(2) / expected).sum();
        // 9 degrees of freedom: 27.88 is the 0.999 quantile.
        assert!(chi < 27.88, "{bins:?} chi2 {chi}");
    }

    #[test]
    fn arms_follow_cumulative_shares() {
        let s = [0.2, 0.3, 0.5];
        assert_eq!(arm_at(&s, 0.0), 0);
        assert_eq!(arm_at(&s, 0.2), 1);
        assert_eq!(arm_at(&s, 0.49), 1);
        assert_eq!(arm_at(&s, 0.999_999), 2);
        assert_eq!(arm_at(&[0.5, 0.499_999_9], 0.999_999_99), 1);
    }
}
