//! Where negative patches come from: a mixture of sources, each with its share.
//!
//! A network that sees negatives from inside the lungs only never learns that the body
//! wall and the mediastinum are background, and paints them; one that sees random
//! positions only wastes most of them on air. The mixture draws each negative from one
//! source, chosen with the source's share:
//!
//! - `lungs`: centred on a voxel drawn uniformly from the scan's lung mask (a random
//!   position in a scan without one);
//! - `body`: centred on a tissue voxel (at least [`BODY_MIN_HU`]) drawn uniformly from the
//!   scan: body wall, mediastinum, vessels, bone (the first of up to [`BODY_TRIES`] uniform
//!   positions whose voxel is tissue);
//! - `dense`: centred on a voxel of at least [`BODY_MIN_HU`] in or near the lungs: vessels,
//!   airway walls, the pleura, the ribs and the mediastinum where they meet the lungs,
//!   what a detector that looks in the lung region mistakes for nodules (the first of up
//!   to [`DENSE_TRIES`] positions, each a lung voxel drawn uniformly and moved by up to
//!   [`DENSE_REACH_MM`] along each axis, whose voxel is that dense; a `body` negative in a
//!   scan without a lung mask);
//! - `candidates`: centred on a class-0 candidate of the index (LUNA16's
//!   `candidates.csv`), with the positives' jitter;
//! - `random`: centred on a uniform position in the scan;
//! - `hard`: centred on a finding of an earlier prediction that hits no annotated nodule
//!   (hard-negative mining: [`super::LoaderConfig::hard_negatives`]), with the jitter.
//!
//! Written as on the command line: `lungs=0.5,body=0.3,candidates=0.2`, or one source
//! alone (`lungs`, share 1). Shares need not sum to 1: each is taken relative to their sum.

use serde::{Deserialize, Serialize};

/// One source of negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NegativeSource {
    /// A voxel of the lung mask.
    Lungs,
    /// A tissue voxel anywhere in the scan.
    Body,
    /// A tissue voxel in or near the lungs.
    Dense,
    /// A class-0 candidate of the index.
    Candidates,
    /// A uniform position.
    Random,
    /// A finding of an earlier prediction that hits no nodule.
    Hard,
}

impl NegativeSource {
    /// Every source, in the order shares are written.
    pub const ALL: [NegativeSource; 6] = [
        NegativeSource::Lungs,
        NegativeSource::Body,
        NegativeSource::Dense,
        NegativeSource::Candidates,
        NegativeSource::Random,
        NegativeSource::Hard,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NegativeSource::Lungs => "lungs",
            NegativeSource::Body => "body",
            NegativeSource::Dense => "dense",
            NegativeSource::Candidates => "candidates",
            NegativeSource::Random => "random",
            NegativeSource::Hard => "hard",
        }
    }
}

impl std::fmt::Display for NegativeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for NegativeSource {
    type Err = String;

    /// `lungs`, `body`, `dense`, `candidates`, `random` or `hard`.
    fn from_str(s: &str) -> Result<Self, String> {
        NegativeSource::ALL.into_iter().find(|n| n.name() == s).ok_or_else(|| {
            format!(
                "`{s}` is not a source of negatives (lungs, body, dense, candidates, random, hard)"
            )
        })
    }
}

/// The lowest HU of a `body` negative's centre: fat (-100 HU) and every denser tissue
/// count, lung parenchyma (-850) and air do not.
pub const BODY_MIN_HU: i16 = -300;

/// Uniform positions a `body` negative tries before it takes the last one.
pub const BODY_TRIES: usize = 32;

/// Positions a `dense` negative tries before it takes the last one (in a lung region about
/// a tenth of the positions tried are that dense).
pub const DENSE_TRIES: usize = 64;

/// How far (mm, along each axis) a `dense` negative's tries reach from the lung voxel drawn:
/// the margin of the lung region `predict` looks in ([`crate::labels::LUNG_REGION_MARGIN_MM`]).
pub const DENSE_REACH_MM: f64 = crate::labels::LUNG_REGION_MARGIN_MM;

/// The share of hard negatives [`Negatives::with_hard`] adds: half the negatives, as
/// mining rounds commonly use (the rest keep the network's view of ordinary background).
pub const HARD_SHARE: f64 = 0.5;

/// The shares of the sources of negatives (see the module doc).
///
/// ```
/// use ctstream::loader::{NegativeSource, Negatives};
/// let n: Negatives = "lungs=0.6,body=0.4".parse().unwrap();
/// assert_eq!(n.share(NegativeSource::Body), 0.4);
/// assert_eq!(n.to_string(), "lungs=0.6,body=0.4");
/// let one: Negatives = "candidates".parse().unwrap();
/// assert_eq!(one, Negatives::only(NegativeSource::Candidates));
/// assert!("lungs=-1".parse::<Negatives>().is_err() && "lungs=0".parse::<Negatives>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Negatives {
    /// Share of each source, in the order of [`NegativeSource::ALL`]; at least one is
    /// positive, none negative.
    shares: [f64; 6],
}

impl Negatives {
    /// Every negative from one source.
    pub const fn only(source: NegativeSource) -> Negatives {
        let mut shares = [0.0; 6];
        shares[source as usize] = 1.0;
        Negatives { shares }
    }

    /// The mixture of `(source, share)`; a source named twice keeps its last share.
    ///
    /// # Errors
    /// A share that is not finite and at least 0, or no positive share, naming it.
    pub fn mix(parts: &[(NegativeSource, f64)]) -> Result<Negatives, String> {
        let mut shares = [0.0; 6];
        for &(s, v) in parts {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("share of `{s}` {v}: give a number at least 0"));
            }
            shares[s as usize] = v;
        }
        if shares.iter().sum::<f64>() <= 0.0 {
            return Err("negatives: give at least one source a share above 0".to_string());
        }
        Ok(Negatives { shares })
    }

    /// The share of `source`, as given (not normalised).
    pub fn share(&self, source: NegativeSource) -> f64 {
        self.shares[source as usize]
    }

    /// Whether `source` is drawn at all.
    pub fn uses(&self, source: NegativeSource) -> bool {
        self.share(source) > 0.0
    }

    /// The sources drawn, with their shares normalised to sum 1.
    pub fn normalised(&self) -> Vec<(NegativeSource, f64)> {
        let total: f64 = self.shares.iter().sum();
        NegativeSource::ALL
            .into_iter()
            .filter(|s| self.uses(*s))
            .map(|s| (s, self.share(s) / total))
            .collect()
    }

    /// The source for a uniform draw `u` in [0, 1): sources in the order of
    /// [`NegativeSource::ALL`], each over an interval of its normalised share.
    pub fn pick(&self, u: f64) -> NegativeSource {
        let parts = self.normalised();
        let mut acc = 0.0;
        for &(s, share) in &parts {
            acc += share;
            if u < acc {
                return s;
            }
        }
        parts.last().map_or(NegativeSource::Lungs, |p| p.0)
    }

    /// This mixture with `hard` added at [`HARD_SHARE`] of the negatives (the others keep
    /// their proportions); unchanged when it already draws hard negatives.
    pub fn with_hard(&self) -> Negatives {
        if self.uses(NegativeSource::Hard) {
            return *self;
        }
        let total: f64 = self.shares.iter().sum();
        let mut shares = self.shares.map(|v| v / total * (1.0 - HARD_SHARE));
        shares[NegativeSource::Hard as usize] = HARD_SHARE;
        Negatives { shares }
    }

    /// This mixture without `hard` (the others keep their proportions); `lungs` alone when
    /// `hard` was all of it. For loaders of scans the findings do not cover (validation).
    pub fn without_hard(&self) -> Negatives {
        let mut shares = self.shares;
        shares[NegativeSource::Hard as usize] = 0.0;
        if shares.iter().sum::<f64>() <= 0.0 {
            return Negatives::default();
        }
        Negatives { shares }
    }

    /// Whether more than one source is drawn (then each negative takes one more draw to
    /// choose its source; a single source draws exactly as before mixtures existed).
    pub fn is_mixture(&self) -> bool {
        self.shares.iter().filter(|v| **v > 0.0).count() > 1
    }
}

impl Default for Negatives {
    /// Inside the lungs only (the loader's default; training's recipe mixes in the body).
    fn default() -> Self {
        Negatives::only(NegativeSource::Lungs)
    }
}

impl From<NegativeSource> for Negatives {
    fn from(s: NegativeSource) -> Self {
        Negatives::only(s)
    }
}

/// `lungs`, or `lungs=0.6,body=0.4` (sources with share 0 left out; one source at share 1
/// written alone).
impl std::fmt::Display for Negatives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used: Vec<NegativeSource> =
            NegativeSource::ALL.into_iter().filter(|s| self.uses(*s)).collect();
        if let [one] = used.as_slice()
            && self.share(*one) == 1.0
        {
            return f.write_str(one.name());
        }
        let parts: Vec<String> = used.iter().map(|s| format!("{s}={}", self.share(*s))).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for Negatives {
    type Err = String;

    /// `SOURCE` (share 1) or `SOURCE=SHARE,SOURCE=SHARE,...`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (name, share) = match part.split_once('=') {
                Some((n, v)) => {
                    let v = v.trim();
                    let share = v
                        .parse::<f64>()
                        .map_err(|_| format!("share `{v}` of `{}`: not a number", n.trim()))?;
                    (n.trim(), share)
                }
                None => (part, 1.0),
            };
            if parts.iter().any(|(p, _): &(NegativeSource, f64)| p.name() == name) {
                return Err(format!("`{name}` is named twice"));
            }
            let source: NegativeSource = name.parse()?;
            if share <= 0.0 {
                return Err(format!(
                    "share of `{name}` {share}: give more than 0 (or leave it out)"
                ));
            }
            parts.push((source, share));
        }
        Negatives::mix(&parts)
    }
}

impl TryFrom<String> for Negatives {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Negatives> for String {
    fn from(n: Negatives) -> String {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_shares_in_order() {
        let n: Negatives = "lungs=3,body=1".parse().unwrap();
        assert_eq!(
            n.normalised(),
            vec![(NegativeSource::Lungs, 0.75), (NegativeSource::Body, 0.25)]
        );
        assert_eq!(n.pick(0.0), NegativeSource::Lungs);
        assert_eq!(n.pick(0.7499), NegativeSource::Lungs);
        assert_eq!(n.pick(0.75), NegativeSource::Body);
        assert_eq!(n.pick(0.999_999), NegativeSource::Body);
        assert!(n.is_mixture() && !Negatives::default().is_mixture());
        let h = n.with_hard();
        assert_eq!(h.to_string(), "lungs=0.375,body=0.125,hard=0.5");
        assert_eq!(h.without_hard().normalised(), n.normalised());
        assert_eq!(Negatives::only(NegativeSource::Hard).without_hard(), Negatives::default());
    }

    #[test]
    fn written_and_read_back_alike_and_old_single_words_still_read() {
        for s in [
            "lungs",
            "random",
            "candidates",
            "body=0.5,hard=0.5",
            "lungs=0.4,body=0.4,candidates=0.2",
        ] {
            let n: Negatives = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<Negatives>(&json).unwrap(), n);
        }
        // A run's config.json from before mixtures says `"negatives": "lungs"`.
        assert_eq!(serde_json::from_str::<Negatives>("\"lungs\"").unwrap(), Negatives::default());
        for bad in
            ["", "lung", "lungs=x", "lungs=nan", "lungs=inf", "lungs=0.5,lungs=0.5", "body=0"]
        {
            assert!(bad.parse::<Negatives>().is_err(), "{bad}");
        }
    }
}
