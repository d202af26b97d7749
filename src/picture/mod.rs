//! Pictures a person can look at, as PNG: an axial slice with the predicted and annotated
//! masks over it ([`slice`]; which slice of a stored scan, and its masks: [`scan_slice`]),
//! a run's training curves ([`curves`]) and a FROC curve ([`froc`]).
//!
//! Drawing goes through `plotters` (bitmap backend) and encoding through `image`. Text uses
//! an embedded font (DejaVu Sans cut to the characters used, `assets/fonts/`), so a picture
//! looks the same on every machine and needs no font lookup.
//!
//! ```no_run
//! use ctstream::picture::curves;
//! let c = curves::read_run("runs/demo".as_ref())?;
//! curves::plot(&c, "demo run")?.save("runs/demo/curves.png".as_ref())?;
//! # Ok::<(), ctstream::picture::PictureError>(())
//! ```

pub mod curves;
pub mod froc;
pub mod scan_slice;
pub mod slice;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::IntoDrawingArea;
use plotters::style::FontStyle;

/// Why a picture could not be made or saved.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    /// The drawing library failed (a bug, or an impossible size).
    #[error("drawing the picture: {0}")]
    Draw(String),
    /// The data to draw is missing or malformed.
    #[error("{path}: {message}")]
    Input {
        /// The file read.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A request that does not fit the scan (a slice it does not have, ...); the
    /// message starts with the setting's name.
    #[error("{0}")]
    Request(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PictureError {
    PictureError::Draw(format!("{e:?}"))
}

/// The embedded font (DejaVu Sans, printable ASCII and a few symbols; see
/// `assets/fonts/README.md`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// Registers the embedded font as plotters' "sans-serif" (the family its charts use by
/// default), once per process.
fn register_font() -> Result<(), PictureError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok { Ok(()) } else { Err(PictureError::Draw("the embedded font does not load".into())) }
}

/// An 8-bit RGB picture, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Picture {
    /// A white picture.
    pub fn new(width: u32, height: u32) -> Picture {
        Picture { width, height, rgb: vec![255; width as usize * height as usize * 3] }
    }

    /// A picture of these pixels (RGB, row-major).
    ///
    /// # Errors
    /// [`PictureError::Draw`] when `rgb` is not `width * height * 3` bytes.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Picture, PictureError> {
        if rgb.len() != width as usize * height as usize * 3 {
            return Err(PictureError::Draw(format!(
                "{} bytes for a {width}x{height} RGB picture",
                rgb.len()
            )));
        }
        Ok(Picture { width, height, rgb })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, RGB, row-major.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The pixel at column `x`, row `y`.
    ///
    /// # Panics
    /// When (x, y) lies outside the picture.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) outside {}x{}",
            self.width,
            self.height
        );
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The picture encoded as PNG.
    ///
    /// # Errors
    /// [`PictureError::Draw`] if the encoder fails.
    pub fn png(&self) -> Result<Vec<u8>, PictureError> {
        use image::ImageEncoder;
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&self.rgb, self.width, self.height, image::ExtendedColorType::Rgb8)
            .map_err(draw_err)?;
        Ok(out)
    }

    /// Writes the picture as PNG to `path`, atomically (temporary name, then rename).
    ///
    /// # Errors
    /// [`PictureError::Io`] naming `path`.
    pub fn save(&self, path: &Path) -> Result<(), PictureError> {
        let png = self.png()?;
        crate::fsutil::write_bytes_atomic(path, &png)
            .map_err(|source| PictureError::Io { path: path.to_path_buf(), source })
    }

    /// Draws on the picture with plotters, the embedded font registered.
    fn draw<F>(&mut self, f: F) -> Result<(), PictureError>
    where
        F: FnOnce(
            &plotters::drawing::DrawingArea<
                plotters::prelude::BitMapBackend<'_>,
                plotters::coord::Shift,
            >,
        ) -> Result<(), PictureError>,
    {
        register_font()?;
        let root =
            plotters::prelude::BitMapBackend::with_buffer(&mut self.rgb, (self.width, self.height))
                .into_drawing_area();
        f(&root)?;
        root.present().map_err(draw_err)
    }
}
