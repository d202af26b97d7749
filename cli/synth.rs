//! `ctstream synth --out DIR --scans N --seed S [--small] [--dicom]`.

use std::path::PathBuf;
use std::time::Instant;

use ctstream::synth::{self, SynthConfig};

use crate::ExitError;
use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to write the dataset to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Number of scans.
    #[arg(long, default_value_t = 4)]
    scans: usize,
    /// Seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Small scans (128 x 128 in-plane, 32-48 slices) for fast tests.
    #[arg(long)]
    small: bool,
    /// Also write every scan as a DICOM series under OUT/dicom/<seriesuid>/.
    #[arg(long)]
    dicom: bool,
    /// Also write each scan's label map (1 lung, 2 nodule) as OUT/labels/<seriesuid>.mha,
    /// for `ingest --labels OUT/labels`.
    #[arg(long)]
    labels: bool,
    /// Also write the dataset in nnU-Net's raw layout under
    /// OUT/nnunet/Dataset001_SynthLung/, for `ingest --nnunet`.
    #[arg(long)]
    nnunet: bool,
}

impl Args {
    pub fn config(&self) -> SynthConfig {
        SynthConfig {
            scans: self.scans,
            seed: self.seed,
            small: self.small,
            dicom: self.dicom,
            labels: self.labels,
            nnunet: self.nnunet,
        }
    }
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let t = Instant::now();
    let s = synth::generate(&a.out, &a.config(), bars).map_err(|e| match e {
        // A value out of range is a usage error, as clap's own.
        synth::SynthError::Config(_) => crate::ExitError(crate::Exit::Usage, e.into()),
        e => anyhow::Error::from(e)
            .context(format!("writing a synthetic dataset to {}", a.out.display()))
            .into(),
    })?;
    println!(
        "wrote {} scans with {} nodules to {} in {:.1} s",
        s.scans.len(),
        s.nodules,
        s.out.display(),
        t.elapsed().as_secs_f64()
    );
    println!("  scans        {}/subset0/*.mhd", s.out.display());
    if !s.dicom_series.is_empty() {
        println!("  DICOM        {}/dicom/<seriesuid>/", s.out.display());
    }
    if a.labels {
        println!("  label maps   {}/labels/*.mha", s.out.display());
    }
    if a.nnunet {
        println!("  nnU-Net      {}/{}", s.out.display(), synth::NNUNET_DATASET);
    }
    println!("  annotations  {}", s.annotations.display());
    println!("  candidates   {}", s.candidates.display());
    Ok(())
}
