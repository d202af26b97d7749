//! The map from a stored (or interpolated) HU value to the value a batch delivers: the
//! drawn HU scale and shift, then the loader's window to 0..1. One place, so the copied
//! patches and the sampled ones do the same arithmetic in the same order (the same
//! values bit for bit).

/// `((v * scale + shift - lo) * inv)` clamped to 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The drawn HU factor.
    pub scale: f32,
    /// The drawn HU shift.
    pub shift: f32,
    /// The window's lower end (HU).
    pub lo: f32,
    /// One over the window's width.
    pub inv: f32,
}

impl Window {
    /// The map for the loader's `window` (HU, lower and upper end) after a HU factor
    /// `scale` and shift `shift`.
    pub fn new(window: [f32; 2], scale: f32, shift: f32) -> Window {
        Window { scale, shift, lo: window[0], inv: 1.0 / (window[1] - window[0]) }
    }

    /// The delivered value of HU `v`.
    #[inline(always)]
    pub fn apply(&self, v: f32) -> f32 {
        let w = (v * self.scale + self.shift - self.lo) * self.inv;
        // Compare-and-select, as `maxps` and `minps` do (equal to `clamp` for the finite
        // values here), so the SIMD rows of the sampler give the same bits.
        let w = if w > 0.0 { w } else { 0.0 };
        if w < 1.0 { w } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_maps_its_ends_to_0_and_1_and_clamps() {
        let w = Window::new([-1000.0, 400.0], 1.0, 0.0);
        assert_eq!(w.apply(-1000.0), 0.0);
        assert_eq!(w.apply(400.0), 1.0);
        assert_eq!(w.apply(-300.0), 0.5);
        assert_eq!((w.apply(-5000.0), w.apply(3000.0)), (0.0, 1.0));
        // HU -200 scaled by 1.1 and shifted by 20: -200 HU, then halfway up the window.
        let s = Window::new([-1000.0, 400.0], 1.1, 20.0);
        assert!((s.apply(-200.0) - (-200.0 * 1.1 + 20.0 + 1000.0) / 1400.0).abs() < 1e-7);
    }
}
