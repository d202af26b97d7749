//! Sharded ingest: `--shard K/N` takes a stable share of the discovered series, so N
//! machines (a Slurm job array, an indexed Kubernetes Job) each ingest one share into the
//! same store. A series belongs to shard `u64::from_be_bytes(SHA-256(series id)[..8]) mod N`:
//! the same on every machine and for every order in which files are found.

use sha2::{Digest, Sha256};

/// One share of the series: `index` of `count` (0-based, as Slurm's `SLURM_ARRAY_TASK_ID`
/// with `--array=0-(N-1)` and Kubernetes' `JOB_COMPLETION_INDEX` count).
///
/// ```
/// use ctstream::ingest::shard::Shard;
/// let s: Shard = "1/4".parse().unwrap();
/// assert_eq!((s.index, s.count), (1, 4));
/// // Every series is in exactly one of the four shards.
/// let all: Vec<Shard> = (0..4).map(|k| Shard { index: k, count: 4 }).collect();
/// assert_eq!(all.iter().filter(|s| s.contains("1.3.6.1.4.1.14519.5.2.1.6279")).count(), 1);
/// assert!("4/4".parse::<Shard>().is_err() && "0/0".parse::<Shard>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which share, `0..count`.
    pub index: u32,
    /// How many shares.
    pub count: u32,
}

/// The most shards a store may be split into.
pub const MAX_SHARDS: u32 = 100_000;

impl Shard {
    /// The shard series `id` belongs to, of `count`.
    pub fn of(id: &str, count: u32) -> u32 {
        let d = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether series `id` is in this shard.
    pub fn contains(&self, id: &str) -> bool {
        Shard::of(id, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `K/N` with `0 <= K < N <= 100000`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || {
            format!("`{s}`: give K/N, the shard K (0-based) of N, with 0 <= K < N <= {MAX_SHARDS}")
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256("abc") = ba7816bf 8f01cfea 414140de ... (FIPS 180-2, appendix B.1), so its
    /// first 8 bytes are 0xba7816bf8f01cfea = 13436514500253700074; mod 7 that is
    /// 13436514500253700074 - 7 * 1919502071464814296 = 2, and mod 1000 it is 74.
    #[test]
    fn the_shard_is_the_first_eight_bytes_of_sha256_mod_n() {
        assert_eq!(0xba78_16bf_8f01_cfea_u64, 13_436_514_500_253_700_074);
        assert_eq!(Shard::of("abc", 7), 2);
        assert_eq!(Shard::of("abc", 1000), 74);
        assert_eq!(Shard::of("abc", 1), 0);
        assert!(Shard { index: 2, count: 7 }.contains("abc"));
    }

    #[test]
    fn shards_parse_and_refuse() {
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(" 3 / 8 ".parse::<Shard>(), Ok(Shard { index: 3, count: 8 }));
        for bad in ["", "3", "1/1", "-1/4", "a/4", "1/0", "1/100001", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
