//! How an error reads to a person: the error and its causes joined by ": ", each once.
//! The `ctstream` binary prints errors this way, and the Python package raises them with
//! this text, so both say the same thing (the file and the field).

/// The messages of `chain` (an error, then its causes) joined by ": ", each cause once:
/// a cause whose text the message before it already ends with (library errors that show
/// their source, such as "FILE: No such file or directory") is not repeated.
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
/// let e = ctstream::store::StoreError::Io { path: "s/manifest.json".into(), source: io };
/// assert_eq!(ctstream::message::causes_once(ctstream::message::chain(&e)), "s/manifest.json: No such file or directory (os error 2)");
/// ```
pub fn causes_once<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'a)>,
) -> String {
    let mut out = String::new();
    for c in chain {
        let text = c.to_string();
        if out.ends_with(&text) || text.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `e` and its sources, in order (what `anyhow::Error::chain` gives for an anyhow error).
pub fn chain<'a>(
    e: &'a (dyn std::error::Error + 'a),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'a)> {
    std::iter::successors(Some(e), |e| e.source())
}
