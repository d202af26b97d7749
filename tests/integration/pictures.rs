//! Pictures: the slice panels pixel by pixel against hand-computed colours, the FROC
//! staircase and the training-curve reader against hand-worked cases, and that every
//! chart draws something.

use crate::common::tempdir;
use ctstream::evaluate::{Froc, FrocPoint};
use ctstream::picture::slice::{self, ANNOTATED, PREDICTED, SliceView, Window, blend};
use ctstream::picture::{Picture, PictureError, curves, froc};
use ndarray::Array2;

#[test]
fn lung_window_maps_hu_to_grey() {
    // Level -600, width 1500: black at -1350 HU, white at 150 HU, 255 / 1500 = 0.17 grey per HU.
    let w = Window::LUNG;
    assert_eq!(w.grey(-1350.0), 0);
    assert_eq!(w.grey(-3000.0), 0);
    assert_eq!(w.grey(150.0), 255);
    assert_eq!(w.grey(3000.0), 255);
    assert_eq!(w.grey(-950.0), 68); // 400 * 0.17 = 68
    assert_eq!(w.grey(20.0), 233); // 1370 * 0.17 = 232.9
    assert_eq!(w.grey(-1250.0), 17); // 100 * 0.17
}

#[test]
fn blend_is_alpha_compositing() {
    // 100 * 0.6 + 230 * 0.4 = 152; 100 * 0.6 + 40 * 0.4 = 76.
    assert_eq!(blend([100, 100, 100], [230, 40, 40], 0.4), [152, 76, 76]);
    assert_eq!(blend([7, 8, 9], [1, 2, 3], 0.0), [7, 8, 9]);
    assert_eq!(blend([7, 8, 9], [1, 2, 3], 1.0), [1, 2, 3]);
}

/// A 20x20 slice at -950 HU with a 20 HU block; annotated voxels (5..10, 5..10),
/// predicted p = 0.9 on (10..13, 10..13), 0.3 elsewhere.
fn scene() -> (Array2<i16>, Array2<u8>, Array2<f32>) {
    let mut hu = Array2::from_elem((20, 20), -950i16);
    hu.slice_mut(ndarray::s![0..3, 15..20]).fill(20);
    let mut ann = Array2::zeros((20, 20));
    ann.slice_mut(ndarray::s![5..10, 5..10]).fill(1u8);
    let mut pred = Array2::from_elem((20, 20), 0.3f32);
    pred.slice_mut(ndarray::s![10..13, 10..13]).fill(0.9);
    (hu, ann, pred)
}

fn px(p: &Picture, origin: (u32, u32), x: u32, y: u32) -> [u8; 3] {
    p.pixel(origin.0 + x, origin.1 + y)
}

#[test]
fn slice_panels_show_window_and_masks_where_the_voxels_are() {
    let (hu, ann, pred) = scene();
    let view = SliceView {
        hu: hu.view(),
        spacing_yx: [1.0, 1.0],
        predicted: Some(pred.view()),
        threshold: 0.5,
        annotated: ann.view(),
        lungs: None,
        readers: None,
        window: Window::LUNG,
        title: "test".into(),
    };
    // 200 px panels for 20 voxels: voxel (y, x) covers pixels 10y..10y+9, 10x..10x+9.
    let (pic, l) = slice::render(&view, 200).unwrap();
    assert_eq!((l.panel_w, l.panel_h), (200, 200));
    assert_eq!(l.origins.len(), 3);
    let [ct, pr, an] = [l.origins[0], l.origins[1], l.origins[2]];
    let bg = [68u8; 3]; // -950 HU
    // CT panel: background, the 20 HU block (233), and no mask colour over the nodule.
    assert_eq!(px(&pic, ct, 25, 25), bg);
    assert_eq!(px(&pic, ct, 175, 5), [233; 3]);
    assert_eq!(px(&pic, ct, 75, 75), bg);
    // Annotated panel: inside the block 68 * 0.6 + (40, 210, 70) * 0.4 = (56.8, 124.8, 68.8);
    // the outline (pixel 50, voxel x 5 beside voxel 4) is opaque green; outside is grey.
    assert_eq!(px(&pic, an, 75, 75), [57, 125, 69]);
    assert_eq!(px(&pic, an, 50, 75), ANNOTATED);
    assert_eq!(px(&pic, an, 99, 75), ANNOTATED);
    assert_eq!(px(&pic, an, 49, 75), bg);
    assert_eq!(px(&pic, an, 115, 115), bg, "the prediction is not drawn on the annotated panel");
    // Predicted panel: p >= 0.5 only on voxels 10..13: 68 * 0.6 + (230, 40, 40) * 0.4.
    assert_eq!(px(&pic, pr, 115, 115), [133, 57, 57]);
    assert_eq!(px(&pic, pr, 100, 115), PREDICTED);
    assert_eq!(px(&pic, pr, 75, 75), bg, "p = 0.3 is below the threshold");
    // The title and labels put dark pixels above the panels.
    let dark = (0..pic.width())
        .flat_map(|x| (0..l.origins[0].1).map(move |y| (x, y)))
        .filter(|&(x, y)| pic.pixel(x, y).iter().all(|&c| c < 100))
        .count();
    assert!(dark > 200, "{dark} dark pixels of text");
}

#[test]
fn slice_panels_keep_the_physical_aspect_and_refuse_mismatched_masks() {
    let (hu, ann, _) = scene();
    // Rows 2 mm apart, columns 1 mm: a 20 x 20 slice is 40 mm tall and 20 mm wide.
    let view = SliceView {
        hu: hu.view(),
        spacing_yx: [2.0, 1.0],
        predicted: None,
        threshold: 0.5,
        annotated: ann.view(),
        lungs: None,
        readers: None,
        window: Window::LUNG,
        title: String::new(),
    };
    let (pic, l) = slice::render(&view, 100).unwrap();
    assert_eq!((l.panel_w, l.panel_h, l.origins.len()), (100, 200, 2));
    assert_eq!((pic.width(), pic.height()), l.size);
    // Voxel (7, 7) spans pixels x 35..40, y 70..80 of the annotated (second) panel.
    assert_eq!(px(&pic, l.origins[1], 37, 75), [57, 125, 69]);
    let small = Array2::<u8>::zeros((10, 20));
    let bad = SliceView { annotated: small.view(), ..view };
    assert!(matches!(slice::render(&bad, 100), Err(PictureError::Input { .. })));
}

#[test]
fn png_round_trips_through_the_decoder() {
    let (hu, ann, pred) = scene();
    let view = SliceView {
        hu: hu.view(),
        spacing_yx: [1.0, 1.0],
        predicted: Some(pred.view()),
        threshold: 0.5,
        annotated: ann.view(),
        lungs: None,
        readers: None,
        window: Window::LUNG,
        title: "round trip".into(),
    };
    let (pic, _) = slice::render(&view, 120).unwrap();
    let dir = tempdir();
    let path = dir.path().join("slice.png");
    pic.save(&path).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!((back.width(), back.height()), (pic.width(), pic.height()));
    assert_eq!(back.as_raw().as_slice(), pic.rgb());
    let err = pic.save(&dir.path().join("no/such/folder/x.png")).unwrap_err();
    assert!(err.to_string().contains("no/such/folder/x.png"), "{err}");
}

fn froc_with(curve: &[(f64, f64)]) -> Froc {
    Froc {
        scans: 2,
        nodules: 2,
        detected: 2,
        false_positives: 40,
        ignored: 0,
        double_hits: 0,
        curve: curve
            .iter()
            .enumerate()
            .map(|(k, &(f, s))| FrocPoint {
                threshold: 1.0 - k as f64 * 0.1,
                fps_per_scan: f,
                sensitivity: s,
            })
            .collect(),
        sensitivities: [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0],
        cpm: 5.5 / 7.0,
        intervals: vec![[0.0, 1.0]; 8],
    }
}

#[test]
fn froc_staircase_is_the_best_sensitivity_at_each_rate() {
    // Points (FP/scan, sensitivity): 0.05 -> 0.5 lies left of the drawn range (0.1), so the
    // line starts at (0.1, 0.5); at 0.5 nothing new; at 1.0 it steps up to 1.0; 20 lies
    // right of the range, so the line ends at 10.
    let r = froc_with(&[(0.05, 0.5), (0.5, 0.5), (1.0, 1.0), (20.0, 1.0)]);
    assert_eq!(
        froc::staircase(&r),
        vec![(0.1, 0.5), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (10.0, 1.0)]
    );
    // A curve ending at 2 FP/scan ends there.
    let r = froc_with(&[(0.25, 0.5), (2.0, 1.0)]);
    assert_eq!(
        froc::staircase(&r),
        vec![(0.1, 0.0), (0.25, 0.0), (0.25, 0.5), (2.0, 0.5), (2.0, 1.0)]
    );
}

/// Pixels of exactly `rgb`.
fn count(p: &Picture, rgb: [u8; 3]) -> usize {
    p.rgb().chunks_exact(3).filter(|c| c == &rgb).count()
}

#[test]
fn froc_and_curve_charts_draw_their_lines() {
    let r = froc_with(&[(0.05, 0.5), (0.5, 0.5), (1.0, 1.0), (20.0, 1.0)]);
    let pic = froc::plot(&r, "test").unwrap();
    assert!(count(&pic, [40, 90, 200]) > 300, "the blue FROC line");
    assert!(count(&pic, [230, 120, 20]) > 7 * 40, "seven orange operating points");
    let train: Vec<(f64, f64)> = (1..=100).map(|s| (s as f64, 1.0 / s as f64)).collect();
    let c = curves::Curves {
        train_loss: train.clone(),
        train_dice: train.iter().map(|&(s, l)| (s, 1.0 - l)).collect(),
        val_loss: vec![(50.0, 0.1), (100.0, 0.05)],
        val_dice: vec![(50.0, 0.8), (100.0, 0.9)],
        val_cpm: Vec::new(),
    };
    let pic = curves::plot(&c, "test").unwrap();
    assert_eq!(pic.width(), 1200, "two panels without a CPM");
    assert!(count(&pic, [40, 90, 200]) > 600, "two blue running means");
    let orange = count(&pic, [230, 120, 20]);
    assert!(orange > 4 * 30, "validation dots");
    // With the held-out CPM: a third panel, its two validations drawn in orange too.
    let c = curves::Curves { val_cpm: vec![(50.0, 0.2), (100.0, 0.6)], ..c };
    let pic = curves::plot(&c, "test").unwrap();
    assert_eq!(pic.width(), 1800, "a third panel for the CPM");
    assert!(count(&pic, [40, 90, 200]) > 600, "two blue running means");
    assert!(count(&pic, [230, 120, 20]) > orange + 2 * 30, "the CPM's dots and line");
}

#[test]
fn running_mean_by_hand() {
    // Window 3, shortened at the ends: (1 + 2) / 2, (1 + 2 + 6) / 3, (2 + 6) / 2.
    assert_eq!(
        curves::running_mean(&[(1.0, 1.0), (2.0, 2.0), (3.0, 6.0)], 3),
        vec![(1.0, 1.5), (2.0, 3.0), (3.0, 4.0)]
    );
    assert_eq!(curves::running_mean(&[(1.0, 1.0), (2.0, 2.0)], 1), vec![(1.0, 1.0), (2.0, 2.0)]);
}

#[test]
fn run_logs_are_read_by_column_name_and_bad_rows_are_named() {
    let dir = tempdir();
    let run = dir.path();
    std::fs::write(
        run.join("metrics.csv"),
        "step,loss,dice,patches_per_s\n1,1.5,0.1,9\n2,1.25,0.2,9\n",
    )
    .unwrap();
    std::fs::write(run.join("val.csv"), "step,loss,dice,fp_voxels_per_negative\n2,1.0,0.5,3\n")
        .unwrap();
    let c = curves::read_run(run).unwrap();
    assert_eq!(c.train_loss, vec![(1.0, 1.5), (2.0, 1.25)]);
    assert_eq!(c.train_dice, vec![(1.0, 0.1), (2.0, 0.2)]);
    assert_eq!((c.val_loss.clone(), c.val_dice.clone()), (vec![(2.0, 1.0)], vec![(2.0, 0.5)]));
    assert!(c.val_cpm.is_empty(), "no cpm column, no CPM");
    // The held-out CPM where validation filled it (empty cells: validations without the
    // scans); a value that is not a number is named with its line.
    std::fs::write(
        run.join("val.csv"),
        "step,loss,dice,cpm
2,1.0,0.5,
4,0.9,0.6,0.25
",
    )
    .unwrap();
    assert_eq!(curves::read_run(run).unwrap().val_cpm, vec![(4.0, 0.25)]);
    std::fs::write(
        run.join("val.csv"),
        "step,loss,dice,cpm
2,1.0,0.5,high
",
    )
    .unwrap();
    let e = curves::read_run(run).unwrap_err().to_string();
    assert!(e.contains("val.csv") && e.contains("line 2") && e.contains("cpm `high`"), "{e}");
    std::fs::write(run.join("val.csv"), "step,loss,dice\n2,oops,0.5\n").unwrap();
    let e = curves::read_run(run).unwrap_err().to_string();
    assert!(e.contains("val.csv") && e.contains("line 2") && e.contains("oops"), "{e}");
    std::fs::write(run.join("metrics.csv"), "step,dice\n1,0.1\n").unwrap();
    let e = curves::read_run(run).unwrap_err().to_string();
    assert!(e.contains("metrics.csv") && e.contains("no `loss` column"), "{e}");
    std::fs::write(run.join("metrics.csv"), "step,loss,dice\n").unwrap();
    let e = curves::read_run(run).unwrap_err().to_string();
    assert!(e.contains("no training steps"), "{e}");
}

/// The lung contour on the CT panel: the mask's edge pixels in the contour colour, its
/// inside left grey (no fill), and the other panels untouched by it.
#[test]
fn the_ct_panel_outlines_the_lungs() {
    let (hu, ann, _) = scene();
    let mut lungs = Array2::<u8>::zeros((20, 20));
    lungs.slice_mut(ndarray::s![12..18, 2..8]).fill(1);
    let view = SliceView {
        hu: hu.view(),
        spacing_yx: [1.0, 1.0],
        predicted: None,
        threshold: 0.5,
        annotated: ann.view(),
        lungs: Some(lungs.view()),
        readers: None,
        window: Window::LUNG,
        title: "lungs".into(),
    };
    // 200 px for 20 voxels: voxel (y, x) covers pixels 10y..10y+9, 10x..10x+9.
    let (pic, l) = slice::render(&view, 200).unwrap();
    let [ct, an] = [l.origins[0], l.origins[1]];
    assert_eq!(px(&pic, ct, 20, 125), slice::LUNG_CONTOUR, "left edge of the lungs (voxel x 2)");
    assert_eq!(px(&pic, ct, 79, 150), slice::LUNG_CONTOUR, "right edge (voxel x 7)");
    assert_eq!(px(&pic, ct, 50, 150), [68; 3], "inside: the CT's grey, not filled");
    assert_eq!(px(&pic, ct, 150, 150), [68; 3], "outside");
    assert_eq!(px(&pic, an, 20, 125), [68; 3], "the annotated panel has no lung contour");
}
