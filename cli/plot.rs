//! `ctstream plot`: a training run's loss, Dice and held-out CPM against step, as PNG.

use std::path::PathBuf;

use ctstream::picture::curves;

use crate::ExitError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run folder (its metrics.csv and val.csv).
    pub run: PathBuf,
    /// The PNG to write [default: RUN/curves.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let c = curves::read_run(&a.run)?;
    let out = a.out.clone().unwrap_or_else(|| a.run.join("curves.png"));
    let title = format!(
        "{}: {} steps, {} validations",
        a.run.display(),
        c.train_loss.len(),
        c.val_loss.len()
    );
    curves::plot(&c, &title)?.save(&out)?;
    println!("{}", out.display());
    Ok(())
}
