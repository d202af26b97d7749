//! `ctstream`: the command-line tool. Each subcommand is a small module that parses its
//! flags and calls the library; nothing here that a library user would also need.

mod args;
mod batches;
mod bench;
#[cfg(feature = "train")]
mod bench_net;
mod demo;
mod evaluate;
mod export;
mod index;
mod info;
mod ingest;
mod inspect;
mod plot;
#[cfg(feature = "train")]
mod predict;
mod progress;
mod render;
mod synth;
#[cfg(feature = "train")]
mod train;
mod verify;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use args::{CsvArgs, DiskCacheArgs, NoduleFilterArgs, open_store, parse3};

/// Fast, correct 3D CT deep learning: read scans and LUNA16 annotations exactly,
/// generate synthetic LUNA-like data.
#[derive(Debug, Parser)]
#[command(name = "ctstream", version, about, propagate_version = true)]
struct Cli {
    /// Turn progress bars off.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the larger variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Print a scan's geometry and HU range (MetaImage, NIfTI, DICOM file or folder).
    Info(info::Args),
    /// Write a synthetic LUNA16-style dataset (MetaImage, CSVs, optionally DICOM).
    Synth(synth::Args),
    /// Build a store: resample scans to a common grid, chunk, compress, index (parquet).
    Ingest(ingest::Args),
    /// Rebuild a store's parquet index from its records and the CSVs (after a sharded ingest).
    Index(index::Args),
    /// Show what a store holds: parameters, scans, nodules, sizes.
    Inspect(inspect::Args),
    /// Check every byte of a store: volumes, every chunk's CRC, records, the index.
    Verify(verify::Args),
    /// Write a stored volume back out as MetaImage or NIfTI.
    Export(export::Args),
    /// Measure the loader (patches/s) against decode-only, copy-only and NumPy bounds, with f32 and compact batches.
    Bench(bench::Args),
    /// List the loader's batches: patches and SHA-256 of the arrays, to compare runs.
    Batches(batches::Args),
    /// Time the network alone: training steps and prediction calls on a backend.
    #[cfg(feature = "train")]
    BenchNet(bench_net::Args),
    /// Train a 3D U-Net or V-Net on a store (built with the cargo feature `train`).
    #[cfg(feature = "train")]
    Train(train::Args),
    /// Predict whole scans with a trained run (sliding window) and find the nodules.
    #[cfg(feature = "train")]
    Predict(predict::Args),
    /// Score detections against annotations: LUNA16 FROC sensitivities and CPM.
    Evaluate(evaluate::Args),
    /// Draw one slice of a stored scan with its predicted and annotated nodules (PNG).
    Render(render::Args),
    /// Plot a training run's loss, Dice and held-out CPM against step (PNG).
    Plot(plot::Args),
    /// Run the pipeline end to end on the embedded synthetic default.
    Demo(demo::Args),
    /// Look at a store, its predictions and a training run in the browser (a local web server).
    View(view::Args),
}

/// Failure classes, each with its own exit code.
#[derive(Debug, Clone, Copy)]
enum Exit {
    /// A scan, CSV or store could not be read or written (1).
    Failed = 1,
    /// The arguments make no sense together (2, as clap's own usage errors).
    Usage = 2,
    /// The request needs more from the user, e.g. `--series` (3).
    NeedsChoice = 3,
    /// Stopped by Ctrl-C after saving its state (130, as a shell reports SIGINT).
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    Interrupted = 130,
}

/// An error that carries its exit code.
#[derive(Debug)]
struct ExitError(Exit, anyhow::Error);

/// A loader error as the CLI's: options that make no sense or select nothing are usage
/// errors (2); a store that cannot be read is a failure (1), as in every other command.
fn loader_exit(e: ctstream::loader::LoaderError) -> ExitError {
    use ctstream::loader::LoaderError;
    match e {
        LoaderError::Config(_) | LoaderError::Empty(_) => ExitError(Exit::Usage, e.into()),
        other => other.into(),
    }
}

impl<E: Into<anyhow::Error>> From<E> for ExitError {
    fn from(e: E) -> Self {
        ExitError(Exit::Failed, e.into())
    }
}

/// The command line, with a negative number after a flag taken as that flag's value
/// (`--seed -1`), so the flag's own parser refuses it by name, instead of clap's
/// "unexpected argument '-1' found".
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_subcommands(|s| s.allow_negative_numbers(true));
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    // A closed pipe (`ctstream inspect ... | head`) ends the process as it ends any Unix
    // tool, instead of a panic in println!.
    #[cfg(unix)]
    // SAFETY: called first, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = parse();
    let progress = progress::Bars::new(cli.quiet);
    let result = match cli.command {
        Command::Info(a) => info::run(a, &progress),
        Command::Synth(a) => synth::run(a, &progress),
        Command::Ingest(a) => ingest::run(a, &progress),
        Command::Index(a) => index::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a, &progress),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Batches(a) => batches::run(a),
        #[cfg(feature = "train")]
        Command::BenchNet(a) => bench_net::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => train::run(a, &progress),
        #[cfg(feature = "train")]
        Command::Predict(a) => predict::run(a, &progress),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Render(a) => render::run(a),
        Command::Plot(a) => plot::run(a),
        Command::View(a) => view::run(a),
        Command::Demo(a) => demo::run(a, &progress),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ExitError(code, e)) => {
            // A closed pipe (`ctstream info ... | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", causes_once(&e));
            ExitCode::from(code as u8)
        }
    }
}

/// The error and its causes joined by ": ", each cause once: a cause whose text the
/// message before it already ends with (library errors that show their source, such as
/// "FILE: No such file or directory") is not printed again.
fn causes_once(e: &anyhow::Error) -> String {
    ctstream::message::causes_once(e.chain().map(|c| c as &dyn std::error::Error))
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let lib = ctstream::store::StoreError::Io { path: "s/manifest.json".into(), source: io };
        let e = anyhow::Error::new(lib).context("opening s");
        assert_eq!(
            super::causes_once(&e),
            "opening s: s/manifest.json: No such file or directory (os error 2)"
        );
    }

    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
