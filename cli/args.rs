//! Flags and helpers several subcommands share: the LUNA16 CSVs, the disk cache of a store
//! on object storage, and `A,B,C` triples.

use ctstream::store::cache::disk::DiskCacheConfig;
use ctstream::store::{Store, StoreError};

use crate::{Exit, ExitError};

/// The LUNA16 CSVs an index joins to the scans (`ingest`, `index`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CsvArgs {
    /// LUNA16 annotations.csv (nodules, world mm).
    #[arg(long)]
    pub(crate) annotations: Option<std::path::PathBuf>,
    /// LUNA16 annotations_excluded.csv.
    #[arg(long)]
    pub(crate) excluded: Option<std::path::PathBuf>,
    /// LUNA16 candidates.csv (or candidates_V2.csv).
    #[arg(long)]
    pub(crate) candidates: Option<std::path::PathBuf>,
}

/// `--disk-cache DIR --disk-cache-gb N`, for the commands that stream from a store.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DiskCacheArgs {
    /// For a store on object storage: keep the chunk bytes fetched in this local folder and
    /// read them from there first (a second epoch or run fetches nothing it holds).
    #[arg(long, value_name = "DIR")]
    pub(crate) disk_cache: Option<std::path::PathBuf>,
    /// The most the --disk-cache folder may hold, in GB (10^9 bytes); the least recently
    /// used chunks go first.
    #[arg(long, value_name = "N", default_value_t = DiskCacheConfig::DEFAULT_GB, requires = "disk_cache", allow_negative_numbers = true)]
    pub(crate) disk_cache_gb: f64,
}

impl Default for DiskCacheArgs {
    /// No disk cache.
    fn default() -> Self {
        DiskCacheArgs { disk_cache: None, disk_cache_gb: DiskCacheConfig::DEFAULT_GB }
    }
}

/// Opens the store at `path` with the disk cache of `cache`, if one is given.
pub(crate) fn open_store(
    path: &std::path::Path,
    cache: &DiskCacheArgs,
) -> Result<ctstream::store::Store, ExitError> {
    let config = cache
        .disk_cache
        .as_ref()
        .map(|dir| DiskCacheConfig { dir: dir.clone(), gb: cache.disk_cache_gb });
    let (store, used) = Store::open_with_disk_cache(path, config.as_ref()).map_err(|e| {
        let code = if matches!(e, StoreError::Invalid { .. }) { Exit::Usage } else { Exit::Failed };
        ExitError(code, anyhow::Error::new(e).context(format!("opening {}", path.display())))
    })?;
    if config.is_some() && !used {
        eprintln!(
            "note: {} is a local store; --disk-cache is for stores on object storage and is not used",
            path.display()
        );
    }
    Ok(store)
}

/// Parses `A,B,C` (three comma-separated numbers) for flags such as `--spacing` and `--chunk`.
pub(crate) fn parse3<T: std::str::FromStr>(s: &str) -> Result<[T; 3], String> {
    let v: Vec<T> = s
        .split(',')
        .map(|p| p.trim().parse::<T>().map_err(|_| format!("`{p}` is not a number")))
        .collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| format!("expected three comma-separated numbers, got `{s}`"))
}

/// The flags that choose which nodules positive patches are centred on (`train`,
/// `batches`, `bench`): [`ctstream::loader::NoduleFilter`].
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct NoduleFilterArgs {
    /// Only nodules that at least N of LIDC's readers annotated (1-4; LUNA16 kept 3).
    /// Nodules from annotations.csv carry no reader count and are left out.
    #[arg(long, value_name = "N")]
    pub(crate) min_readers: Option<u8>,
    /// Only nodules whose LIDC readers' median malignancy is at least M (1-5: 4 is
    /// "moderately suspicious").
    #[arg(long, value_name = "M")]
    pub(crate) min_malignancy: Option<f64>,
}

impl NoduleFilterArgs {
    /// The filter, as the library takes it (checked where the loader is built).
    pub(crate) fn filter(&self) -> ctstream::loader::NoduleFilter {
        ctstream::loader::NoduleFilter {
            min_readers: self.min_readers,
            min_malignancy: self.min_malignancy,
        }
    }
}
