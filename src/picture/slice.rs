//! An axial slice in a lung window beside the same slice with the predicted and the
//! annotated nodule masks over it: RadIO's figure "original scan, predicted mask,
//! original mask", labelled, with a scale bar.

use ndarray::ArrayView2;
use plotters::element::BitMapElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Picture, PictureError, draw_err};

/// A display window: HU `level - width / 2` shows black, `level + width / 2` white.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Centre, HU.
    pub level: f64,
    /// Width, HU.
    pub width: f64,
}

impl Window {
    /// The lung window: level -600 HU, width 1500 HU (air black, soft tissue and bone white).
    pub const LUNG: Window = Window { level: -600.0, width: 1500.0 };

    /// The grey value of `hu`: 0 at or below the window, 255 at or above, linear and
    /// rounded between (the lung window: -1350 HU and below black, 150 HU and above
    /// white, -950 HU -> 400 / 1500 * 255 = 68).
    pub fn grey(&self, hu: f64) -> u8 {
        let t = (hu - (self.level - self.width / 2.0)) / self.width;
        (t * 255.0).round().clamp(0.0, 255.0) as u8
    }
}

/// Colour of the predicted mask (red).
pub const PREDICTED: [u8; 3] = [230, 40, 40];
/// Colour of the annotated mask (green).
pub const ANNOTATED: [u8; 3] = [40, 210, 70];
/// Opacity of a mask's fill; its one-pixel outline is opaque.
pub const FILL_ALPHA: f32 = 0.4;
/// Colours of the LIDC readers' outlines, by bit (blue, orange, magenta, yellow, then
/// four more for the rare series with more readers).
pub const READERS: [[u8; 3]; 8] = [
    [40, 110, 255],
    [255, 140, 0],
    [230, 40, 230],
    [250, 230, 30],
    [0, 220, 220],
    [150, 90, 40],
    [255, 255, 255],
    [120, 120, 120],
];

/// The LIDC readers' masks on a slice: bit k of `bits` (y, x) is reader `names[k]`'s.
#[derive(Debug, Clone)]
pub struct ReaderMasks<'a> {
    /// The bits, (y, x).
    pub bits: ArrayView2<'a, u8>,
    /// The readers, by bit.
    pub names: Vec<String>,
}
/// Colour of the lung contour on the CT panel (cyan).
pub const LUNG_CONTOUR: [u8; 3] = [0, 190, 230];

/// `base` with `colour` laid over it at opacity `alpha`, rounded.
pub fn blend(base: [u8; 3], colour: [u8; 3], alpha: f32) -> [u8; 3] {
    std::array::from_fn(|i| {
        (base[i] as f32 * (1.0 - alpha) + colour[i] as f32 * alpha).round() as u8
    })
}

/// One axial slice and what to draw over it.
#[derive(Debug, Clone)]
pub struct SliceView<'a> {
    /// HU, (y, x).
    pub hu: ArrayView2<'a, i16>,
    /// Voxel spacing (y, x) in mm: the panels keep the physical aspect ratio.
    pub spacing_yx: [f64; 2],
    /// Nodule probabilities (y, x) from a prediction; `None` leaves out the middle panel.
    pub predicted: Option<ArrayView2<'a, f32>>,
    /// Probability from which a voxel counts as predicted nodule.
    pub threshold: f32,
    /// The annotated mask (y, x): non-zero inside a nodule.
    pub annotated: ArrayView2<'a, u8>,
    /// The lung mask (y, x), non-zero inside the lungs: its contour is drawn on the CT
    /// panel; `None` draws none.
    pub lungs: Option<ArrayView2<'a, u8>>,
    /// The LIDC readers' masks: adds a panel of each reader's outline in its colour over
    /// the annotated mask (their consensus); `None` leaves it out.
    pub readers: Option<ReaderMasks<'a>>,
    /// The display window.
    pub window: Window,
    /// The line above the panels (series, slice, position).
    pub title: String,
}

/// Where [`render`] puts things: the panels' size and the top-left pixel of each panel's
/// image (CT, then predicted if any, then annotated, then the readers' if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Panel image width, pixels.
    pub panel_w: u32,
    /// Panel image height, pixels.
    pub panel_h: u32,
    /// Top-left corner (x, y) of each panel's image.
    pub origins: Vec<(u32, u32)>,
    /// The whole picture (width, height).
    pub size: (u32, u32),
}

const MARGIN: u32 = 12;
const TITLE_H: u32 = 34;
const LABEL_H: u32 = 26;

impl Layout {
    /// The voxel (y, x) shown at pixel (`px`, `py`) of a panel image (nearest voxel).
    pub fn voxel(&self, px: u32, py: u32, rows: usize, cols: usize) -> (usize, usize) {
        let y = ((py as f64 + 0.5) * rows as f64 / self.panel_h as f64) as usize;
        let x = ((px as f64 + 0.5) * cols as f64 / self.panel_w as f64) as usize;
        (y.min(rows - 1), x.min(cols - 1))
    }
}

/// The narrowest panel drawn, pixels.
pub const MIN_PANEL_WIDTH: u32 = 16;
/// The widest panel drawn, pixels (a picture of four panels stays under 300 MB of RGB).
pub const MAX_PANEL_WIDTH: u32 = 4096;

/// The layout of `view` drawn with panels `panel_width` pixels wide.
pub fn layout(view: &SliceView, panel_width: u32) -> Layout {
    let (rows, cols) = view.hu.dim();
    let aspect = (rows as f64 * view.spacing_yx[0])
        / (cols as f64 * view.spacing_yx[1]).max(f64::MIN_POSITIVE);
    let panel_w = panel_width.clamp(MIN_PANEL_WIDTH, MAX_PANEL_WIDTH);
    let panel_h = ((panel_w as f64 * aspect).round() as u32).clamp(16, 8 * panel_w);
    let n = 2 + u32::from(view.predicted.is_some()) + u32::from(view.readers.is_some());
    let top = TITLE_H + LABEL_H;
    let origins = (0..n).map(|k| (MARGIN + k * (panel_w + MARGIN), top)).collect();
    Layout {
        panel_w,
        panel_h,
        origins,
        size: (MARGIN + n * (panel_w + MARGIN), top + panel_h + MARGIN),
    }
}

/// The panel image: the windowed slice, with `mask` (if any) filled at [`FILL_ALPHA`] and
/// outlined in `colour`.
/// A mask drawn over a panel: inside at voxel (y, x)?, and its colour.
type Overlay<'f> = (&'f dyn Fn(usize, usize) -> bool, [u8; 3]);

fn panel(view: &SliceView, l: &Layout, mask: Option<Overlay>) -> Vec<u8> {
    panel_with(view, l, mask, false)
}

/// A panel; with `outline`, `mask` is drawn as its contour only (no fill).
fn panel_with(view: &SliceView, l: &Layout, mask: Option<Overlay>, outline: bool) -> Vec<u8> {
    let (rows, cols) = view.hu.dim();
    let (w, h) = (l.panel_w, l.panel_h);
    let inside = |px: i64, py: i64| -> bool {
        match mask {
            Some((m, _)) if px >= 0 && py >= 0 && px < w as i64 && py < h as i64 => {
                let (y, x) = l.voxel(px as u32, py as u32, rows, cols);
                m(y, x)
            }
            _ => false,
        }
    };
    let mut buf = Vec::with_capacity(w as usize * h as usize * 3);
    for py in 0..h {
        for px in 0..w {
            let (y, x) = l.voxel(px, py, rows, cols);
            let g = view.window.grey(view.hu[[y, x]] as f64);
            let mut rgb = [g, g, g];
            if let Some((_, colour)) = mask {
                let (x0, y0) = (px as i64, py as i64);
                if inside(x0, y0) {
                    let edge = !(inside(x0 - 1, y0)
                        && inside(x0 + 1, y0)
                        && inside(x0, y0 - 1)
                        && inside(x0, y0 + 1));
                    rgb = if edge {
                        colour
                    } else if outline {
                        rgb
                    } else {
                        blend(rgb, colour, FILL_ALPHA)
                    };
                }
            }
            buf.extend_from_slice(&rgb);
        }
    }
    buf
}

/// The readers' panel: the annotated mask filled (their consensus), and each reader's
/// mask (a bit of `bits`) outlined in its colour of [`READERS`].
fn readers_panel(view: &SliceView, l: &Layout, bits: &ArrayView2<u8>) -> Vec<u8> {
    let (rows, cols) = view.hu.dim();
    let (w, h) = (l.panel_w as i64, l.panel_h as i64);
    let at = |px: i64, py: i64| -> u8 {
        if px < 0 || py < 0 || px >= w || py >= h {
            return 0;
        }
        let (y, x) = l.voxel(px as u32, py as u32, rows, cols);
        bits[[y, x]]
    };
    let mut buf = Vec::with_capacity((w * h * 3) as usize);
    for py in 0..h {
        for px in 0..w {
            let (y, x) = l.voxel(px as u32, py as u32, rows, cols);
            let g = view.window.grey(view.hu[[y, x]] as f64);
            let mut rgb = [g, g, g];
            if view.annotated[[y, x]] != 0 {
                rgb = blend(rgb, ANNOTATED, FILL_ALPHA);
            }
            let here = at(px, py);
            let around = [at(px - 1, py), at(px + 1, py), at(px, py - 1), at(px, py + 1)];
            for (k, colour) in READERS.iter().enumerate() {
                let bit = 1u8 << k;
                if here & bit != 0 && around.iter().any(|v| v & bit == 0) {
                    rgb = *colour;
                }
            }
            buf.extend_from_slice(&rgb);
        }
    }
    buf
}

/// A scale bar length: the longest of 1, 2, 5, 10, 20, 50, 100 mm that fits in a quarter
/// of `field_mm`.
fn scale_mm(field_mm: f64) -> f64 {
    [100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0]
        .into_iter()
        .find(|&l| l <= field_mm / 4.0)
        .unwrap_or(1.0)
}

/// Draws the panels of `view`, each `panel_width` pixels wide.
///
/// # Errors
/// [`PictureError::Input`] when the masks' shapes differ from the slice's;
/// [`PictureError::Draw`] if drawing fails.
pub fn render(view: &SliceView, panel_width: u32) -> Result<(Picture, Layout), PictureError> {
    let (rows, cols) = view.hu.dim();
    let shape_err = |what: &str, d: (usize, usize)| PictureError::Input {
        path: "slice".into(),
        message: format!("{what} is {d:?}, the slice {:?}", (rows, cols)),
    };
    if rows == 0 || cols == 0 {
        return Err(PictureError::Input {
            path: "slice".into(),
            message: "the slice is empty".into(),
        });
    }
    if view.annotated.dim() != (rows, cols) {
        return Err(shape_err("the annotated mask", view.annotated.dim()));
    }
    if let Some(m) = &view.lungs
        && m.dim() != (rows, cols)
    {
        return Err(shape_err("the lung mask", m.dim()));
    }
    if let Some(p) = &view.predicted
        && p.dim() != (rows, cols)
    {
        return Err(shape_err("the prediction", p.dim()));
    }
    let l = layout(view, panel_width);
    let annotated = |y: usize, x: usize| view.annotated[[y, x]] != 0;
    let annotated_voxels = view.annotated.iter().filter(|&&v| v != 0).count();
    let lungs = |y: usize, x: usize| view.lungs.as_ref().is_some_and(|m| m[[y, x]] != 0);
    let ct = match view.lungs {
        Some(_) => panel_with(view, &l, Some((&lungs, LUNG_CONTOUR)), true),
        None => panel(view, &l, None),
    };
    let contour = if view.lungs.is_some() { ", lung contour" } else { "" };
    let mut panels: Vec<(Vec<u8>, String, RGBColor)> = vec![(
        ct,
        format!("CT, window L {} W {} HU{contour}", view.window.level, view.window.width),
        BLACK,
    )];
    if let Some(p) = &view.predicted {
        let predicted = |y: usize, x: usize| p[[y, x]] >= view.threshold;
        let n = p.iter().filter(|&&v| v >= view.threshold).count();
        panels.push((
            panel(view, &l, Some((&predicted, PREDICTED))),
            format!("predicted: p ≥ {:.2}, {n} voxels", view.threshold),
            RGBColor(170, 20, 20),
        ));
    }
    panels.push((
        panel(view, &l, Some((&annotated, ANNOTATED))),
        format!("annotated: {annotated_voxels} voxels"),
        RGBColor(20, 120, 40),
    ));

    let mut legend: Vec<(String, [u8; 3])> = Vec::new();
    if let Some(r) = &view.readers {
        if r.bits.dim() != (rows, cols) {
            return Err(shape_err("the readers' masks", r.bits.dim()));
        }
        panels.push((
            readers_panel(view, &l, &r.bits),
            format!("{} readers' outlines over their consensus", r.names.len()),
            BLACK,
        ));
        legend = r.names.iter().zip(READERS).map(|(n, c)| (n.clone(), c)).collect();
    }

    let mut pic = Picture::new(l.size.0, l.size.1);
    let field_mm = cols as f64 * view.spacing_yx[1];
    pic.draw(|root| {
        let title = ("sans-serif", 17).into_font().color(&BLACK);
        root.draw_text(&view.title, &title, (MARGIN as i32, 9)).map_err(draw_err)?;
        for ((buf, label, colour), &(x0, y0)) in panels.into_iter().zip(&l.origins) {
            let style = ("sans-serif", 15).into_font().color(&colour);
            root.draw_text(&label, &style, (x0 as i32, (TITLE_H + 4) as i32)).map_err(draw_err)?;
            let img = BitMapElement::<_, plotters::backend::RGBPixel>::with_owned_buffer(
                (x0 as i32, y0 as i32),
                (l.panel_w, l.panel_h),
                buf,
            )
            .ok_or_else(|| PictureError::Draw("panel buffer size".into()))?;
            root.draw(&img).map_err(draw_err)?;
        }
        // Each reader's name in its colour, in the last panel's bottom-left corner.
        if let Some(&(x0, y0)) = l.origins.last().filter(|_| !legend.is_empty()) {
            for (k, (name, c)) in legend.iter().enumerate() {
                let style = ("sans-serif", 13).into_font().color(&RGBColor(c[0], c[1], c[2]));
                let y = (y0 + l.panel_h) as i32 - 8 - 16 * (legend.len() - k) as i32;
                root.draw_text(name, &style, (x0 as i32 + 8, y)).map_err(draw_err)?;
            }
        }
        // Scale bar, bottom left of the CT panel.
        let mm = scale_mm(field_mm);
        let len = (mm / field_mm * l.panel_w as f64).round() as i32;
        let (x0, y0) = (l.origins[0].0 as i32 + 10, (l.origins[0].1 + l.panel_h) as i32 - 12);
        root.draw(&Rectangle::new([(x0, y0), (x0 + len, y0 + 3)], WHITE.filled()))
            .map_err(draw_err)?;
        let style =
            ("sans-serif", 13).into_font().color(&WHITE).pos(Pos::new(HPos::Left, VPos::Bottom));
        root.draw_text(&format!("{mm} mm"), &style, (x0, y0 - 3)).map_err(draw_err)?;
        Ok(())
    })?;
    Ok((pic, l))
}
