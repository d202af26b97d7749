//! A check of a DICOM file's element lengths against the file's size, made before
//! dicom-rs parses it.
//!
//! dicom-rs 0.10 reserves an element's claimed length before reading its value, so a
//! 7 KB file claiming a 1 GB element makes it allocate 1 GB (found by the `dicom_series`
//! fuzz target; GDCM fixed the same as CVE-2026-3650). No real element is longer than
//! what is left of its file, so this walks the element headers (file meta group, then the
//! whole data set, into sequences and items, past Pixel Data and its fragments, to the
//! end, as dicom-rs reads it) over a memory map, touching only
//! the header bytes, and refuses any defined length that runs past the end. Big-endian
//! data sets are walked big-endian; a deflated data set is inflated (at most 64 times the
//! file's size) and walked.

use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Explicit VRs whose length field is 4 bytes (after 2 reserved bytes): all but the
/// short ones. An unknown VR counts as long, as dicom-rs reads it (as UN).
fn long_vr(vr: &[u8]) -> bool {
    !matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// The bytes dicom-rs 0.10.1 actually reads for a value of `vr` and `length`: binary
/// numbers are read as `length / size` whole values, so a length that is not a multiple
/// of the size leaves the rest unread and the next header starts early there (its
/// bookkeeping still adds `length`). The walk must stand where dicom-rs stands.
fn consumed(vr: &[u8], length: usize) -> usize {
    match vr {
        b"US" | b"OW" | b"SS" => length & !1,
        b"AT" | b"FL" | b"OF" | b"SL" | b"OL" | b"UL" => length & !3,
        b"FD" | b"OD" | b"SV" | b"OV" | b"UV" => length & !7,
        _ => length,
    }
}

/// Checks the file at `path`; `Err` says which element claims how much. Files that are
/// not DICOM Part 10 (no `DICM` at byte 128) pass: dicom-rs refuses them itself.
pub fn check_file(path: &Path) -> Result<(), String> {
    // Anything but a regular file is refused here, before dicom-rs opens it (a FIFO
    // would block the open; a device would never end).
    let file = match crate::fsutil::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(e.to_string()),
        Err(_) => return Ok(()),
    };
    // SAFETY: read-only map of a file we only read; a file changed underneath can at
    // worst make the check wrong, and dicom-rs reads it again anyway.
    let Ok(map) = (unsafe { memmap2::Mmap::map(&file) }) else { return Ok(()) };
    check(&map)
}

/// How a data set is encoded after the file meta group.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

/// Checks the bytes of a DICOM Part 10 file (see [`check_file`]).
pub fn check(b: &[u8]) -> Result<(), String> {
    if b.len() < 132 || &b[128..132] != b"DICM" {
        return Ok(());
    }
    match walk(b, 132, true, Encoding::ExplicitLe)? {
        None => Ok(()),
        // Deflated: the data set after the meta group is one raw deflate stream.
        Some(start) => {
            use std::io::Read;
            let cap = (b.len() as u64).saturating_mul(64);
            let mut inflated = Vec::new();
            let mut d = flate2::read::DeflateDecoder::new(&b[start..]).take(cap + 1);
            d.read_to_end(&mut inflated)
                .map_err(|e| format!("deflated data set does not inflate: {e}"))?;
            if inflated.len() as u64 > cap {
                return Err(format!(
                    "deflated data set expands to more than {cap} bytes (64 times the file)"
                ));
            }
            walk(&inflated, 0, false, Encoding::ExplicitLe).map(drop)
        }
    }
}

/// Walks element headers from `pos` (in the meta group if `meta`), checking lengths.
/// Returns where a deflated data set starts, if the meta group says it is deflated.
fn walk(
    b: &[u8],
    mut pos: usize,
    meta: bool,
    mut encoding: Encoding,
) -> Result<Option<usize>, String> {
    let mut in_meta = meta;
    let mut deflated = false;
    // Inside encapsulated Pixel Data: items are fragments of compressed pixels, skipped.
    let mut fragments = false;
    while pos + 8 <= b.len() {
        let big = !in_meta && encoding == Encoding::ExplicitBe;
        let u16_at = |p: usize| {
            if big {
                u16::from_be_bytes([b[p], b[p + 1]])
            } else {
                u16::from_le_bytes([b[p], b[p + 1]])
            }
        };
        let u32_at = |p: usize| {
            let v = [b[p], b[p + 1], b[p + 2], b[p + 3]];
            if big { u32::from_be_bytes(v) } else { u32::from_le_bytes(v) }
        };
        // The meta group ends at the first element of another group (read little-endian).
        if in_meta && u16::from_le_bytes([b[pos], b[pos + 1]]) != 0x0002 {
            in_meta = false;
            if deflated {
                return Ok(Some(pos));
            }
            continue;
        }
        let (group, element) = (u16_at(pos), u16_at(pos + 2));
        let tag = Tag(group, element);
        if group == 0xFFFE {
            // Item, item delimiter, sequence delimiter: a 4-byte length and no VR. Items
            // are entered, not skipped, so their elements are checked too; fragments of
            // encapsulated pixel data are skipped.
            let length = u32_at(pos + 4);
            pos += 8;
            if length != UNDEFINED && length as usize > b.len() - pos {
                return Err(format!(
                    "item at byte {} claims {length} bytes, {} remain in the file",
                    pos - 8,
                    b.len() - pos
                ));
            }
            if fragments {
                if element == 0xE0DD {
                    fragments = false;
                } else if length != UNDEFINED {
                    pos += length as usize;
                }
            }
            continue;
        }
        let (length, vr, header) = if in_meta || encoding != Encoding::ImplicitLe {
            let vr = [b[pos + 4], b[pos + 5]];
            if long_vr(&vr) {
                if pos + 12 > b.len() {
                    break;
                }
                (u32_at(pos + 8), vr, 12)
            } else {
                (u16_at(pos + 6) as u32, vr, 8)
            }
        } else {
            // Implicit VR: the dictionary's, as dicom-rs takes it (UN when unknown).
            let vr = StandardDataDictionary.by_tag(tag).map_or(VR::UN, |e| e.vr().relaxed());
            let code = vr.to_string().as_bytes().try_into().unwrap_or(*b"UN");
            (u32_at(pos + 4), code, 8)
        };
        let sequence = &vr == b"SQ";
        pos += header;
        if length == UNDEFINED {
            // A sequence or encapsulated pixel data: walk into it.
            fragments = tag == Tag(0x7FE0, 0x0010);
            continue;
        }
        let remaining = b.len() - pos;
        if length as usize > remaining {
            return Err(format!(
                "element ({group:04X},{element:04X}) at byte {} claims {length} bytes, {remaining} remain in the file",
                pos - header
            ));
        }
        if tag == Tag(0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(&b[pos..pos + length as usize]);
            let uid = uid.trim_end_matches(['\0', ' ']);
            match uid {
                "1.2.840.10008.1.2" => encoding = Encoding::ImplicitLe,
                "1.2.840.10008.1.2.2" => encoding = Encoding::ExplicitBe,
                "1.2.840.10008.1.2.1.99" => deflated = true,
                _ => {}
            }
        }
        // Elements after Pixel Data are read too (dicom-rs reads a whole file to its end).
        if !sequence {
            pos += consumed(&vr, length as usize);
        }
    }
    Ok(if deflated && in_meta { Some(pos) } else { None })
}

#[cfg(test)]
mod tests {
    use super::check;

    /// A Part 10 file: preamble, DICM, a transfer syntax element, then `body`.
    fn file(ts: &str, body: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        b.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        b.extend_from_slice(&uid);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        const EXPLICIT: &str = "1.2.840.10008.1.2.1";
        // (0010,0010) PN of 4 bytes, present: fine.
        let ok = [0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0, b'A', b'^', b'B', b' '];
        assert_eq!(check(&file(EXPLICIT, &ok)), Ok(()));
        // The same claiming 8 bytes with 4 left.
        let mut bad = ok;
        bad[6] = 8;
        let e = check(&file(EXPLICIT, &bad)).unwrap_err();
        assert!(e.contains("(0010,0010)") && e.contains("claims 8 bytes, 4 remain"), "{e}");
        // An OB element (4-byte length) claiming 1 GB.
        let mut ob = vec![0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0];
        ob.extend_from_slice(&(1u32 << 30).to_le_bytes());
        ob.extend_from_slice(&[0; 16]);
        let e = check(&file(EXPLICIT, &ob)).unwrap_err();
        assert!(e.contains("(0009,1010)") && e.contains("claims 1073741824 bytes"), "{e}");
        // Implicit VR: a defined-length sequence (0008,1140) is entered, and an element
        // inside it that claims too much is found.
        let mut seq = vec![0x08, 0x00, 0x40, 0x11];
        seq.extend_from_slice(&24u32.to_le_bytes());
        seq.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        seq.extend_from_slice(&16u32.to_le_bytes());
        seq.extend_from_slice(&[0x08, 0x00, 0x50, 0x11]);
        seq.extend_from_slice(&1000u32.to_le_bytes());
        seq.extend_from_slice(&[0; 8]);
        let e = check(&file("1.2.840.10008.1.2", &seq)).unwrap_err();
        assert!(e.contains("(0008,1150)") && e.contains("claims 1000 bytes"), "{e}");
        // An unknown VR ("C ") is read with a 4-byte length, as dicom-rs reads it: the
        // fuzzer's second finding, a 2-byte length of 4 hiding a 4-byte one of 1.1 GB.
        let mut odd = vec![0x10, 0x00, 0x30, 0x40, b'C', b' ', 4, 0];
        odd.extend_from_slice(&0x41A4_49B2u32.to_le_bytes());
        odd.extend_from_slice(&[0; 32]);
        let e = check(&file(EXPLICIT, &odd)).unwrap_err();
        assert!(e.contains("(0010,4030)") && e.contains("claims 1101285810 bytes"), "{e}");
        // Elements after Pixel Data are checked (the fourth finding): dicom-rs reads on.
        let mut after = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4];
        after.extend_from_slice(&ok);
        let n = after.len();
        after[n - 6] = 40;
        let e = check(&file(EXPLICIT, &after)).unwrap_err();
        assert!(e.contains("(0010,0010)") && e.contains("claims 40 bytes"), "{e}");
        // Encapsulated pixel data: fragments are skipped, not read as elements.
        let mut enc = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        enc.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        enc.extend_from_slice(&[
            0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0, 0x10, 0x00, 0x10, 0x00, b'O', b'B', 0, 0,
        ]);
        enc.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check(&file(EXPLICIT, &enc)), Ok(()));
        // An SL of length 2 (the fifth finding): dicom-rs reads 2 / 4 = 0 values, so its
        // next header starts at the SL's value, which here claims 1 GB as an unknown VR.
        let mut sl = vec![0x45, 0x00, 0x04, 0x10, b'S', b'L', 2, 0];
        sl.extend_from_slice(&[0x0C, 0x00, 0x45, 0x00, 0x06, 0x10, 0x00, 0x00]);
        sl.extend_from_slice(&(1u32 << 30).to_le_bytes());
        sl.extend_from_slice(&[0; 16]);
        let e = check(&file(EXPLICIT, &sl)).unwrap_err();
        assert!(e.contains("(000C,0045)") && e.contains("claims 1073741824 bytes"), "{e}");
        // Explicit VR big endian (the third finding): lengths read big-endian.
        let be = [0x00, 0x10, 0x00, 0x10, b'P', b'N', 0x00, 0x40, b'A', b'^'];
        let e = check(&file("1.2.840.10008.1.2.2", &be)).unwrap_err();
        assert!(e.contains("(0010,0010)") && e.contains("claims 64 bytes"), "{e}");
        // Deflated: the inflated data set is walked.
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &bad).unwrap();
        let e = check(&file("1.2.840.10008.1.2.1.99", &z.finish().unwrap())).unwrap_err();
        assert!(e.contains("(0010,0010)") && e.contains("claims 8 bytes"), "{e}");
        // Not Part 10: left to dicom-rs.
        assert_eq!(check(b"not dicom"), Ok(()));
    }
}
