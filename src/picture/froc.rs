//! The FROC curve of an evaluation: sensitivity against false positives per scan (log
//! scale, 1/8 to 8 as LUNA16 plots it), the seven operating points with their bootstrap
//! intervals, and the CPM in the title.

use plotters::prelude::*;

use super::{Picture, PictureError, draw_err};
use crate::evaluate::{FP_RATES, Froc};

/// The x range drawn: false positives per scan (1/8 to 8, with a margin).
const X_RANGE: (f64, f64) = (0.1, 10.0);

/// The curve as a staircase on the drawn x range: sensitivity is the best reached at or
/// below each false-positive rate (points below 0.1 FP/scan start the line at 0.1).
pub fn staircase(r: &Froc) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> =
        r.curve.iter().map(|p| (p.fps_per_scan, p.sensitivity)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut out = Vec::new();
    let mut best = 0.0f64;
    for (x, y) in pts {
        if x <= X_RANGE.0 {
            best = best.max(y);
            continue;
        }
        if x > X_RANGE.1 {
            break;
        }
        if out.is_empty() {
            out.push((X_RANGE.0, best));
        }
        out.push((x, best));
        if y > best {
            best = y;
            out.push((x, best));
        }
    }
    if out.is_empty() {
        out.push((X_RANGE.0, best));
    }
    let last = out[out.len() - 1];
    let max_fps = r.curve.iter().map(|p| p.fps_per_scan).fold(0.0, f64::max);
    let end = max_fps.clamp(last.0, X_RANGE.1);
    if end > last.0 {
        out.push((end, last.1));
    }
    out
}

/// Plots the FROC curve of `r`, titled with `title` and the CPM.
///
/// # Errors
/// [`PictureError::Draw`] if drawing fails.
pub fn plot(r: &Froc, title: &str) -> Result<Picture, PictureError> {
    let mut pic = Picture::new(760, 560);
    let cpm_iv =
        r.intervals.get(7).map(|i| format!(" [{:.3}, {:.3}]", i[0], i[1])).unwrap_or_default();
    let caption = format!("{title}: CPM {:.3}{cpm_iv}", r.cpm);
    let subtitle = format!(
        "{} scans, {} nodules, {} found, {} false-positive marks",
        r.scans, r.nodules, r.detected, r.false_positives
    );
    // The x axis is log2 of the rate, so the ticks fall on 1/8, 1/4, ..., 8.
    let lg = |x: f64| x.log2();
    pic.draw(|root| {
        let (head, body) = root.split_vertically(64);
        head.draw_text(&caption, &("sans-serif", 19).into_font().color(&BLACK), (72, 10))
            .map_err(draw_err)?;
        head.draw_text(
            &subtitle,
            &("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
            (72, 38),
        )
        .map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .margin_top(4)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(lg(X_RANGE.0)..lg(X_RANGE.1), 0.0..1.02)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("false positives per scan")
            .y_desc("sensitivity")
            .x_labels(7)
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-9 {
                    format!("{}", 2f64.powf(v.round()))
                } else {
                    String::new()
                }
            })
            .light_line_style(RGBColor(242, 242, 242))
            .draw()
            .map_err(draw_err)?;
        let blue = RGBColor(40, 90, 200);
        chart
            .draw_series(LineSeries::new(
                staircase(r).into_iter().map(|(x, y)| (lg(x), y)),
                blue.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label("FROC")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], blue.stroke_width(2)));
        let orange = RGBColor(230, 120, 20);
        for (k, &rate) in FP_RATES.iter().enumerate() {
            if let Some(iv) = r.intervals.get(k) {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        [(lg(rate), iv[0]), (lg(rate), iv[1])],
                        orange.stroke_width(2),
                    )))
                    .map_err(draw_err)?;
            }
        }
        chart
            .draw_series(
                FP_RATES
                    .iter()
                    .zip(r.sensitivities)
                    .map(|(&x, y)| Circle::new((lg(x), y), 5, orange.filled())),
            )
            .map_err(draw_err)?
            .label(if r.intervals.is_empty() {
                "sensitivity at 1/8 ... 8 FP/scan".to_string()
            } else {
                "at 1/8 ... 8 FP/scan, 95% bootstrap interval".to_string()
            })
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, orange.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(draw_err)?;
        Ok(())
    })?;
    Ok(pic)
}
