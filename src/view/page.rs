//! The page of `ctstream view`, shipped in the binary: one HTML file, its script and its
//! style (`src/view/page/`), plain browser JavaScript with no build step and no network
//! (the server's content security policy allows nothing from elsewhere).

/// `index.html`.
pub const HTML: &str = include_str!("page/index.html");

/// `app.js`: the scans table, the three slice views with their overlays, the run's curves.
pub const JS: &str = include_str!("page/app.js");

/// `app.css`.
pub const CSS: &str = include_str!("page/app.css");
