//! Reads one reader XML file into a [`ReadMessage`], streaming (quick-xml, already in the
//! tree through object_store): values may carry whitespace and newlines, indentation is
//! uneven, and ids are the readers' own. A value that does not parse is a [`Problem`] of
//! its annotation; only a file that is not well-formed XML, or not an LIDC reader message,
//! fails as a whole.

use std::path::Path;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{
    Characteristics, LidcError, MAX_EDGE_POINTS, MAX_XML_BYTES, NAMESPACE, NonNodule, Problem,
    ReadMessage, ReaderNodule, ReadingSession, Roi,
};

/// Reads the file at `path`.
///
/// # Errors
/// [`LidcError::Io`], [`LidcError::TooLarge`] (over [`MAX_XML_BYTES`]), [`LidcError::Xml`]
/// and [`LidcError::NotLidc`], each naming the file.
pub fn read_file(path: &Path) -> Result<ReadMessage, LidcError> {
    let io = |source| LidcError::Io { path: path.to_path_buf(), source };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_XML_BYTES {
        return Err(LidcError::TooLarge { path: path.to_path_buf(), bytes });
    }
    let data = std::fs::read(path).map_err(io)?;
    read_bytes(path, &data)
}

/// Reads a reader XML from `data`; `path` names it in errors.
///
/// # Errors
/// As [`read_file`], less the I/O.
pub fn read_bytes(path: &Path, data: &[u8]) -> Result<ReadMessage, LidcError> {
    read_with(path, data, false)
}

/// The series a reader XML file is of (`ResponseHeader/SeriesInstanceUid`), reading only
/// as far as it: how ingest pairs files with series before reading them whole.
///
/// # Errors
/// As [`read_file`], for the part read; `Ok(None)` when the file names no series.
pub fn series_uid_of(path: &Path) -> Result<Option<String>, LidcError> {
    let io = |source| LidcError::Io { path: path.to_path_buf(), source };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_XML_BYTES {
        return Err(LidcError::TooLarge { path: path.to_path_buf(), bytes });
    }
    let data = std::fs::read(path).map_err(io)?;
    Ok(read_with(path, &data, true)?.series_uid)
}

/// Reads `data`; with `header_only`, stops once the series UID is read.
fn read_with(path: &Path, data: &[u8], header_only: bool) -> Result<ReadMessage, LidcError> {
    let mut reader = NsReader::from_reader(data);
    reader.config_mut().trim_text(true);
    let mut parser = Parser {
        msg: ReadMessage { path: path.to_path_buf(), ..Default::default() },
        ..Default::default()
    };
    let xml_err = |reader: &NsReader<&[u8]>, message: String| LidcError::Xml {
        path: path.to_path_buf(),
        position: reader.buffer_position(),
        message,
    };
    let mut buf = Vec::new();
    let mut root_seen = false;
    loop {
        buf.clear();
        let position = reader.buffer_position();
        let (ns, event) = match reader.read_resolved_event_into(&mut buf) {
            Ok(v) => v,
            Err(e) => {
                return Err(LidcError::Xml {
                    path: path.to_path_buf(),
                    position,
                    message: e.to_string(),
                });
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if !root_seen {
                    root_seen = true;
                    let namespace = match ns {
                        ResolveResult::Bound(n) => {
                            Some(String::from_utf8_lossy(n.as_ref()).into_owned())
                        }
                        _ => None,
                    };
                    match (name.as_str(), namespace.as_deref()) {
                        ("LidcReadMessage", Some(NAMESPACE)) => {}
                        // A chest X-ray read: nothing for a CT series.
                        ("IdriReadMessage", _) => parser.msg.cxr_sessions += 1,
                        (n, ns) => {
                            return Err(LidcError::NotLidc {
                                path: path.to_path_buf(),
                                message: format!(
                                    "the root element is <{n}> in namespace {}; an LIDC reader XML is <LidcReadMessage xmlns=\"{NAMESPACE}\">",
                                    ns.map_or("(none)".to_string(), |s| format!("\"{s}\""))
                                ),
                            });
                        }
                    }
                }
                parser.start(&name);
                if empty {
                    parser.end(&name);
                }
            }
            Event::End(ref e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                parser.end(&name);
                if header_only && parser.msg.series_uid.is_some() {
                    return Ok(parser.msg);
                }
            }
            Event::Text(ref t) => {
                let s = t.xml10_content().map_err(|e| xml_err(&reader, e.to_string()))?;
                parser.text.push_str(&s);
            }
            Event::CData(ref t) => {
                let s = t.xml10_content().map_err(|e| xml_err(&reader, e.to_string()))?;
                parser.text.push_str(&s);
            }
            Event::GeneralRef(ref r) => {
                let c = r.resolve_char_ref().map_err(|e| xml_err(&reader, e.to_string()))?;
                match c {
                    Some(c) => parser.text.push(c),
                    None => {
                        let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                        match name.as_str() {
                            "amp" => parser.text.push('&'),
                            "lt" => parser.text.push('<'),
                            "gt" => parser.text.push('>'),
                            "quot" => parser.text.push('"'),
                            "apos" => parser.text.push('\''),
                            other => {
                                return Err(xml_err(&reader, format!("unknown entity &{other};")));
                            }
                        }
                    }
                }
            }
            Event::Eof => {
                if !root_seen {
                    return Err(xml_err(&reader, "no element at all (an empty file?)".into()));
                }
                if let Some(open) = parser.stack.last() {
                    return Err(xml_err(
                        &reader,
                        format!("the file ends inside <{open}> (truncated?)"),
                    ));
                }
                break;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Ok(parser.msg)
}

/// The walk's state: the open elements, the text of the innermost, and what is being
/// filled.
#[derive(Default)]
struct Parser {
    msg: ReadMessage,
    stack: Vec<String>,
    text: String,
    /// Inside a `CXRreadingSession`: its depth in `stack`.
    skip_from: Option<usize>,
    /// The edge point being read: x, y.
    point: [Option<i32>; 2],
}

impl Parser {
    fn parent(&self) -> Option<&str> {
        self.stack.iter().rev().nth(1).map(String::as_str)
    }

    fn within(&self, name: &str) -> bool {
        self.stack.iter().any(|s| s == name)
    }

    fn session(&mut self) -> Option<&mut ReadingSession> {
        self.msg.sessions.last_mut()
    }

    fn nodule(&mut self) -> Option<&mut ReaderNodule> {
        self.session().and_then(|s| s.nodules.last_mut())
    }

    fn start(&mut self, name: &str) {
        self.stack.push(name.to_string());
        self.text.clear();
        if self.skip_from.is_some() {
            return;
        }
        match name {
            "CXRreadingSession" => {
                self.msg.cxr_sessions += 1;
                self.skip_from = Some(self.stack.len());
            }
            "readingSession" => {
                let n = self.msg.sessions.len() + 1;
                self.msg
                    .sessions
                    .push(ReadingSession { reader: format!("reader {n}"), ..Default::default() });
            }
            "unblindedReadNodule" => {
                if let Some(s) = self.session() {
                    s.nodules.push(ReaderNodule::default());
                }
            }
            "characteristics" if self.parent() == Some("unblindedReadNodule") => {
                if let Some(n) = self.nodule() {
                    n.characteristics.get_or_insert_with(Characteristics::default);
                }
            }
            "roi" if self.parent() == Some("unblindedReadNodule") => {
                if let Some(n) = self.nodule() {
                    n.rois.push(Roi { z: f64::NAN, inclusion: true, ..Default::default() });
                }
            }
            "nonNodule" => {
                if let Some(s) = self.session() {
                    s.non_nodules.push(NonNodule {
                        z: f64::NAN,
                        point: [i32::MIN; 2],
                        ..Default::default()
                    });
                }
            }
            "edgeMap" | "locus" => self.point = [None; 2],
            _ => {}
        }
    }

    fn end(&mut self, name: &str) {
        let text = std::mem::take(&mut self.text);
        let value = text.trim();
        let parent = self.parent().map(String::from);
        if let Some(depth) = self.skip_from {
            if self.stack.len() == depth {
                self.skip_from = None;
            }
            self.stack.pop();
            return;
        }
        match (parent.as_deref(), name) {
            (Some("ResponseHeader"), "SeriesInstanceUid" | "SeriesInstanceUID") => {
                self.msg.series_uid = Some(value.to_string());
            }
            (Some("ResponseHeader"), "StudyInstanceUID" | "StudyInstanceUid") => {
                self.msg.study_uid = Some(value.to_string());
            }
            (Some("readingSession"), "servicingRadiologistID") if !value.is_empty() => {
                if let Some(s) = self.session() {
                    s.reader = value.to_string();
                }
            }
            (Some("unblindedReadNodule"), "noduleID") => {
                if let Some(n) = self.nodule() {
                    n.id = value.to_string();
                }
            }
            (Some("characteristics"), field) if self.within("unblindedReadNodule") => {
                if let Some(i) = Characteristics::FIELDS.iter().position(|(f, _)| *f == field) {
                    let max = Characteristics::FIELDS[i].1;
                    let parsed = parse_score(value, max);
                    if let Some(n) = self.nodule() {
                        match parsed {
                            Ok(v) => {
                                if let Some(slot) = n
                                    .characteristics
                                    .get_or_insert_with(Characteristics::default)
                                    .slot(i)
                                {
                                    *slot = v;
                                }
                            }
                            Err(message) => n.notes.push(Problem {
                                field: format!("characteristics {field}"),
                                message: format!("{message}; the score is left out"),
                            }),
                        }
                    }
                }
            }
            (Some("roi"), "imageZposition" | "imageSOP_UID" | "inclusion")
                if self.within("unblindedReadNodule") =>
            {
                self.roi_value(name, value);
            }
            (Some("edgeMap" | "locus"), "xCoord" | "yCoord") => {
                let axis = usize::from(name == "yCoord");
                match parse_coord(value) {
                    Ok(v) => self.point[axis] = Some(v),
                    Err(message) => self.point_problem(name.to_string(), message),
                }
            }
            (Some("roi"), "edgeMap") if self.within("unblindedReadNodule") => {
                if let [Some(x), Some(y)] = self.point {
                    if let Some(n) = self.nodule()
                        && let nroi = n.rois.len()
                        && let Some(r) = n.rois.last_mut()
                    {
                        if r.points.len() < MAX_EDGE_POINTS {
                            r.points.push([x, y]);
                        } else if r.points.len() == MAX_EDGE_POINTS {
                            // Counted once: the nodule is unusable from here on.
                            r.points.push([x, y]);
                            n.problems.push(Problem {
                                field: format!("roi {nroi} edgeMap"),
                                message: format!("more than {MAX_EDGE_POINTS} edge points (the outline of a nodule has far fewer)"),
                            });
                        }
                    }
                } else {
                    self.point_problem(
                        "edgeMap".into(),
                        "a point without both xCoord and yCoord".into(),
                    );
                }
            }
            (Some("nonNodule"), "nonNoduleID" | "imageZposition" | "imageSOP_UID") => {
                if let Some(nn) = self.session().and_then(|s| s.non_nodules.last_mut()) {
                    match name {
                        "nonNoduleID" => nn.id = value.to_string(),
                        "imageSOP_UID" => nn.sop_uid = value.to_string(),
                        _ => match parse_z(value) {
                            Ok(z) => nn.z = z,
                            Err(message) => {
                                nn.problems.push(Problem { field: name.into(), message })
                            }
                        },
                    }
                }
            }
            (Some("nonNodule"), "locus") => {
                let point = self.point;
                if let Some(nn) = self.session().and_then(|s| s.non_nodules.last_mut()) {
                    match point {
                        [Some(x), Some(y)] => nn.point = [x, y],
                        _ => nn.problems.push(Problem {
                            field: "locus".into(),
                            message: "a point without both xCoord and yCoord".into(),
                        }),
                    }
                }
            }
            _ => {}
        }
        self.stack.pop();
    }

    fn roi_value(&mut self, name: &str, value: &str) {
        let Some(n) = self.nodule() else { return };
        let i = n.rois.len();
        let Some(r) = n.rois.last_mut() else { return };
        let field = format!("roi {i} {name}");
        match name {
            "imageSOP_UID" => r.sop_uid = value.to_string(),
            "inclusion" => match value.to_ascii_uppercase().as_str() {
                "TRUE" => r.inclusion = true,
                "FALSE" => r.inclusion = false,
                _ => n.problems.push(Problem {
                    field,
                    message: format!("`{value}` is neither TRUE nor FALSE"),
                }),
            },
            _ => match parse_z(value) {
                Ok(z) => r.z = z,
                Err(message) => n.problems.push(Problem { field, message }),
            },
        }
    }

    /// A bad coordinate: a problem of the nodule (edge map) or non-nodule (locus) it is in.
    fn point_problem(&mut self, field: String, message: String) {
        if self.within("nonNodule") {
            if let Some(nn) = self.session().and_then(|s| s.non_nodules.last_mut()) {
                nn.problems.push(Problem { field, message });
            }
        } else if let Some(n) = self.nodule() {
            let i = n.rois.len();
            n.problems.push(Problem { field: format!("roi {i} {field}"), message });
        }
    }
}

/// A z position in mm: a finite number (whitespace around it allowed).
fn parse_z(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(z) if z.is_finite() && z.abs() <= 1e6 => Ok(z),
        Ok(_) => Err(format!("`{value}` is not a finite position in mm")),
        Err(_) => Err(format!("`{value}` is not a number")),
    }
}

/// A pixel index: a whole number from 0 to 65,535 (some tools write `312.0`).
fn parse_coord(value: &str) -> Result<i32, String> {
    let v: f64 = value.parse().map_err(|_| format!("`{value}` is not a number"))?;
    if v.fract() != 0.0 || !(0.0..=65_535.0).contains(&v) {
        return Err(format!("`{value}` is not a pixel index (a whole number from 0 to 65535)"));
    }
    Ok(v as i32)
}

/// A score from 1 to `max`; empty is none.
fn parse_score(value: &str, max: u8) -> Result<Option<u8>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<u8>() {
        Ok(v) if (1..=max).contains(&v) => Ok(Some(v)),
        _ => Err(format!("`{value}` is not a score from 1 to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader XML as LIDC writes them: uneven indentation, whitespace inside numbers, a
    /// small nodule, a non-nodule, a hole, and a chest X-ray session to skip.
    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<LidcReadMessage uid="1.3.6.1.4.1.14519.5.2.1.6279.6001.1307390687803.0" xmlns="http://www.nih.gov" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<ResponseHeader>
   <Version>1.8.1</Version>
   <SeriesInstanceUid>1.2.3.4</SeriesInstanceUid>
  <StudyInstanceUID>1.2.3</StudyInstanceUID>
</ResponseHeader>
<readingSession>
  <annotationVersion>3.12</annotationVersion>
  <servicingRadiologistID>540461523</servicingRadiologistID>
  <unblindedReadNodule>
    <noduleID>Nodule 001</noduleID>
    <characteristics>
      <subtlety>5</subtlety>
      <internalStructure>1</internalStructure>
      <calcification>6</calcification>
      <sphericity>3</sphericity>
      <margin>3</margin>
      <lobulation>3</lobulation>
      <spiculation>4</spiculation>
      <texture>5</texture>
      <malignancy>5</malignancy>
    </characteristics>
    <roi>
      <imageZposition>-125.000000 </imageZposition>
      <imageSOP_UID>1.2.3.4.100</imageSOP_UID>
      <inclusion>TRUE</inclusion>
      <edgeMap><xCoord>312</xCoord><yCoord>355</yCoord></edgeMap>
      <edgeMap>
          <xCoord> 313 </xCoord>
        <yCoord>356
        </yCoord>
      </edgeMap>
      <edgeMap><xCoord>314</xCoord><yCoord>355</yCoord></edgeMap>
    </roi>
    <roi>
      <imageZposition>-125.0</imageZposition>
      <imageSOP_UID>1.2.3.4.100</imageSOP_UID>
      <inclusion>FALSE</inclusion>
      <edgeMap><xCoord>313</xCoord><yCoord>355</yCoord></edgeMap>
    </roi>
  </unblindedReadNodule>
  <unblindedReadNodule>
    <noduleID>7</noduleID>
    <roi>
      <imageZposition>-130</imageZposition>
      <imageSOP_UID>1.2.3.4.101</imageSOP_UID>
      <inclusion>TRUE</inclusion>
      <edgeMap><xCoord>100</xCoord><yCoord>200</yCoord></edgeMap>
    </roi>
  </unblindedReadNodule>
  <nonNodule>
    <nonNoduleID>Non-nodule 001</nonNoduleID>
    <imageZposition>-140.5</imageZposition>
    <imageSOP_UID>1.2.3.4.102</imageSOP_UID>
    <locus><xCoord>50</xCoord><yCoord>60</yCoord></locus>
  </nonNodule>
</readingSession>
<CXRreadingSession>
  <unblindedReadNodule><noduleID>cxr</noduleID></unblindedReadNodule>
</CXRreadingSession>
<readingSession>
  <servicingRadiologistID/>
  <unblindedReadNodule>
    <noduleID>IL057_1</noduleID>
    <characteristics><malignancy>9</malignancy></characteristics>
    <roi>
      <imageZposition>NaN</imageZposition>
      <imageSOP_UID>1.2.3.4.100</imageSOP_UID>
      <inclusion>maybe</inclusion>
      <edgeMap><xCoord>1.5</xCoord><yCoord>2</yCoord></edgeMap>
    </roi>
  </unblindedReadNodule>
</readingSession>
</LidcReadMessage>
"#;

    #[test]
    fn a_reader_message_reads_with_every_value_and_each_problem_in_its_place() {
        let m = read_bytes(Path::new("069.xml"), XML.as_bytes()).unwrap();
        assert_eq!(m.series_uid.as_deref(), Some("1.2.3.4"));
        assert_eq!(m.study_uid.as_deref(), Some("1.2.3"));
        assert_eq!(m.cxr_sessions, 1);
        assert_eq!(m.sessions.len(), 2);
        let s = &m.sessions[0];
        assert_eq!(s.reader, "540461523");
        assert_eq!(s.nodules.len(), 2);
        let n = &s.nodules[0];
        assert_eq!(n.id, "Nodule 001");
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        let c = n.characteristics.unwrap();
        assert_eq!(
            (0..9).map(|i| c.get(i).unwrap()).collect::<Vec<_>>(),
            [5, 1, 6, 3, 3, 3, 4, 5, 5]
        );
        assert_eq!(n.rois.len(), 2);
        assert_eq!(n.rois[0].z, -125.0);
        assert_eq!(n.rois[0].sop_uid, "1.2.3.4.100");
        assert!(n.rois[0].inclusion && !n.rois[1].inclusion);
        assert_eq!(n.rois[0].points, [[312, 355], [313, 356], [314, 355]]);
        assert!(n.is_contoured());
        let small = &s.nodules[1];
        assert!(!small.is_contoured() && small.characteristics.is_none());
        assert_eq!(small.rois[0].points, [[100, 200]]);
        assert_eq!(s.non_nodules.len(), 1);
        let nn = &s.non_nodules[0];
        assert_eq!((nn.id.as_str(), nn.z, nn.point), ("Non-nodule 001", -140.5, [50, 60]));
        assert!(nn.problems.is_empty());
        // The second reader gave no id: its place names it. Its one nodule carries every
        // problem, each with the field it is in.
        let s = &m.sessions[1];
        assert_eq!(s.reader, "reader 2");
        let n: Vec<String> = s.nodules[0].notes.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            n,
            ["characteristics malignancy: `9` is not a score from 1 to 5; the score is left out"]
        );
        assert_eq!(s.nodules[0].characteristics.unwrap().malignancy, None);
        let p: Vec<String> = s.nodules[0].problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            p,
            [
                "roi 1 imageZposition: `NaN` is not a finite position in mm",
                "roi 1 inclusion: `maybe` is neither TRUE nor FALSE",
                "roi 1 xCoord: `1.5` is not a pixel index (a whole number from 0 to 65535)",
                "roi 1 edgeMap: a point without both xCoord and yCoord",
            ]
        );
    }

    #[test]
    fn files_that_are_not_reader_messages_fail_by_name() {
        let p = Path::new("bad.xml");
        // Cut inside a tag, and cut between elements.
        let e = read_bytes(p, &XML.as_bytes()[..XML.len() / 2]).unwrap_err();
        assert!(e.to_string().starts_with("bad.xml: not well-formed XML at byte"), "{e}");
        let cut = XML.find("</roi>").unwrap() + "</roi>".len();
        let e = read_bytes(p, &XML.as_bytes()[..cut]).unwrap_err();
        assert!(
            e.to_string().contains("the file ends inside <unblindedReadNodule> (truncated?)"),
            "{e}"
        );
        let other = XML.replace("http://www.nih.gov", "http://example.org");
        let e = read_bytes(p, other.as_bytes()).unwrap_err();
        assert!(matches!(e, LidcError::NotLidc { .. }), "{e}");
        assert!(e.to_string().contains("\"http://example.org\""), "{e}");
        let e = read_bytes(p, b"").unwrap_err();
        assert!(e.to_string().contains("no element"), "{e}");
        let e =
            read_bytes(p, b"<LidcReadMessage xmlns=\"http://www.nih.gov\"><a></b>").unwrap_err();
        assert!(matches!(e, LidcError::Xml { .. }), "{e}");
        // A chest X-ray message reads as no CT reads at all.
        let cxr =
            read_bytes(p, b"<IdriReadMessage><CXRreadingSession/></IdriReadMessage>").unwrap();
        assert!(cxr.sessions.is_empty() && cxr.cxr_sessions >= 1);
    }

    #[test]
    fn an_edge_map_over_the_bound_makes_its_nodule_unusable_without_holding_it_all() {
        let mut xml = String::from(
            "<LidcReadMessage xmlns=\"http://www.nih.gov\"><readingSession><unblindedReadNodule><noduleID>big</noduleID><roi><imageZposition>1</imageZposition><imageSOP_UID>u</imageSOP_UID><inclusion>TRUE</inclusion>",
        );
        for i in 0..MAX_EDGE_POINTS + 10 {
            xml.push_str(&format!(
                "<edgeMap><xCoord>{}</xCoord><yCoord>1</yCoord></edgeMap>",
                i % 512
            ));
        }
        xml.push_str("</roi></unblindedReadNodule></readingSession></LidcReadMessage>");
        let m = read_bytes(Path::new("big.xml"), xml.as_bytes()).unwrap();
        let n = &m.sessions[0].nodules[0];
        assert_eq!(n.rois[0].points.len(), MAX_EDGE_POINTS + 1);
        assert_eq!(n.problems.len(), 1);
        assert!(n.problems[0].to_string().contains("more than 65536 edge points"));
    }
}
