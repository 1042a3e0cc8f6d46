//! Checks that can be made on names and bytes alone: relative paths, the extension allowlist and
//! content sniffing. Nothing here touches the disk.

use droppr_protocol::wire::ErrorCode;

use crate::error::{Error, Result};

/// The original Droppr's default allowlist: common images and videos.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "bmp", "heic", "heif", "avif", // images
    "3g2", "3gp", "asf", "avi", "flv", "m2ts", "m2v", "m4v", "mkv", "mov", "mp4", "mpe", "mpeg",
    "mpg", "mts", "mxf", "ogv", "ts", "vob", "webm", "wmv", // videos
];

/// Longest relative path and longest single component we accept (bytes).
const MAX_PATH_LEN: usize = 1024;
const MAX_COMPONENT_LEN: usize = 255;

/// A cleaned relative path: `/`-separated, no empty, `.` or `..` components, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(String);

impl RelPath {
    /// Cleans a client-supplied relative path. Backslashes become slashes (Windows folder uploads);
    /// absolute paths, `..`, control characters and empty names are refused.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::client(
                ErrorCode::BadPath,
                format!("Invalid file path: {why}."),
            ))
        };
        let unified = raw.replace('\\', "/");
        if unified.starts_with('/') {
            return bad("absolute paths are not allowed");
        }
        if unified.chars().any(char::is_control) {
            return bad("control characters are not allowed");
        }
        if unified.len() > MAX_PATH_LEN {
            return bad("the path is too long");
        }
        let mut parts = Vec::new();
        for part in unified.split('/') {
            match part.trim() {
                "" | "." => {}
                ".." => return bad("'..' is not allowed"),
                // A drive prefix such as "C:" would make the path absolute on some systems.
                p if p.len() == 2 && p.ends_with(':') => {
                    return bad("drive letters are not allowed")
                }
                _ if part.len() > MAX_COMPONENT_LEN => return bad("a name is too long"),
                _ => parts.push(part.trim()),
            }
        }
        if parts.is_empty() {
            return bad("the file name is empty");
        }
        Ok(RelPath(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component: the file name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The folders before the file name, if any.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(dir, _)| dir)
    }

    /// Lower-case extension of the file name, without the dot.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name();
        let (stem, ext) = name.rsplit_once('.')?;
        (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }
}

/// Room kept in a file name for the ` (n)` suffix a clash adds at completion (up to ` (9999)`).
pub const SUFFIX_ROOM: usize = 7;

/// Rules decided when a session opens, so that completion cannot fail on the name later: the
/// file name leaves room for a ` (n)` suffix, and (unless `unportable` is allowed) no component
/// carries invisible or direction-changing characters, a Windows device name, characters Windows
/// forbids, or a trailing dot or space.
pub fn check_name(path: &RelPath, unportable: bool) -> Result<()> {
    let bad = |why: String| {
        Err(Error::client(
            ErrorCode::BadPath,
            format!("Invalid file name: {why}."),
        ))
    };
    if path.file_name().len() + SUFFIX_ROOM > MAX_COMPONENT_LEN {
        return bad(format!(
            "a file name may have at most {} bytes",
            MAX_COMPONENT_LEN - SUFFIX_ROOM
        ));
    }
    if unportable {
        return Ok(());
    }
    for part in path.as_str().split('/') {
        if let Some(c) = part.chars().find(|&c| is_invisible(c)) {
            return bad(format!(
                "'{}' holds the invisible or direction-changing character U+{:04X}",
                part.escape_default(),
                u32::from(c)
            ));
        }
        if let Some(c) = part.chars().find(|c| "<>:\"|?*".contains(*c)) {
            return bad(format!(
                "'{part}' holds '{c}', which Windows does not allow"
            ));
        }
        if part.ends_with('.') || part.ends_with(' ') {
            return bad(format!("'{part}' ends with a dot or a space"));
        }
        if is_device_name(part) {
            return bad(format!("'{part}' is a reserved device name on Windows"));
        }
    }
    Ok(())
}

/// Bidi embeddings, overrides and isolates, zero-width characters and the byte-order mark: they
/// make a name read differently from what it is (`exe.mp4` shown for `mp4.exe`).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}' | '\u{00AD}')
}

fn is_device_name(part: &str) -> bool {
    let stem = part
        .split('.')
        .next()
        .unwrap_or(part)
        .trim_end()
        .to_ascii_uppercase();
    match stem.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        s => {
            let mut chars = s.chars();
            let digit = chars.next_back();
            matches!(chars.as_str(), "COM" | "LPT")
                && digit.is_some_and(|d| d.is_ascii_digit() || "¹²³".contains(d))
        }
    }
}

/// The allowlist of one request: `["*"]` allows everything.
pub fn check_extension(path: &RelPath, allowed: &[String]) -> Result<()> {
    if allowed.iter().any(|e| e == "*") {
        return Ok(());
    }
    let Some(ext) = path.extension() else {
        return Err(Error::client(
            ErrorCode::MissingExtension,
            format!("'{}' has no file extension.", path.file_name()),
        ));
    };
    if allowed.contains(&ext) {
        Ok(())
    } else {
        Err(Error::client(
            ErrorCode::TypeNotAllowed,
            format!(
                "Files of type .{ext} are not accepted here (allowed: {}).",
                allowed.join(", ")
            ),
        ))
    }
}

/// Parses an allowlist as given on the command line or in the admin API.
pub fn parse_extensions<S: AsRef<str>>(items: &[S]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let e = item
            .as_ref()
            .trim()
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if e.is_empty() {
            continue;
        }
        if e != "*" && !e.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::client(
                ErrorCode::BadBody,
                format!("'{e}' is not a file extension."),
            ));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    if out.is_empty() {
        return Err(Error::client(
            ErrorCode::BadBody,
            "The extension list is empty.",
        ));
    }
    Ok(out)
}

/// How many leading bytes [`sniff`] needs (it also works with fewer, for tiny files).
pub const SNIFF_LEN: u64 = 16;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Webp,
    Avi,
    Ogg,
    /// Matroska / WebM.
    Ebml,
    /// ISO base media (ftyp): mp4, mov, 3gp, m4v.
    IsoVideo,
    /// QuickTime without an ftyp box (moov/mdat/wide/free atom first).
    QuickTime,
    Heif,
    Avif,
    Asf,
    Flv,
    MpegPs,
    MpegTs,
    /// MPEG-TS with 4-byte timestamps before each packet (m2ts, mts).
    M2ts,
    Mxf,
    Unknown,
}

impl Sniffed {
    pub fn mime(self) -> &'static str {
        match self {
            Sniffed::Jpeg => "image/jpeg",
            Sniffed::Png => "image/png",
            Sniffed::Gif => "image/gif",
            Sniffed::Bmp => "image/bmp",
            Sniffed::Webp => "image/webp",
            Sniffed::Avi => "video/x-msvideo",
            Sniffed::Ogg => "video/ogg",
            Sniffed::Ebml => "video/x-matroska",
            Sniffed::IsoVideo => "video/mp4",
            Sniffed::QuickTime => "video/quicktime",
            Sniffed::Heif => "image/heif",
            Sniffed::Avif => "image/avif",
            Sniffed::Asf => "video/x-ms-asf",
            Sniffed::Flv => "video/x-flv",
            Sniffed::MpegPs => "video/mpeg",
            Sniffed::MpegTs | Sniffed::M2ts => "video/mp2t",
            Sniffed::Mxf => "application/mxf",
            Sniffed::Unknown => "application/octet-stream",
        }
    }
}

/// Identifies a file from its first bytes (up to [`SNIFF_LEN`]).
pub fn sniff(head: &[u8]) -> Sniffed {
    let at = |i: usize, sig: &[u8]| head.get(i..i + sig.len()) == Some(sig);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        Sniffed::Jpeg
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Sniffed::Png
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Sniffed::Gif
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Sniffed::Webp
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Sniffed::Avi
    } else if at(0, b"BM") && head.len() >= 14 {
        Sniffed::Bmp
    } else if at(0, b"OggS") {
        Sniffed::Ogg
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Sniffed::Ebml
    } else if at(4, b"ftyp") {
        match head.get(8..12) {
            Some(b"avif" | b"avis") => Sniffed::Avif,
            Some(b"heic" | b"heix" | b"hevc" | b"hevx" | b"mif1" | b"msf1") => Sniffed::Heif,
            Some(b"qt  ") => Sniffed::QuickTime,
            _ => Sniffed::IsoVideo,
        }
    } else if ["moov", "mdat", "wide", "free", "skip", "pnot"]
        .iter()
        .any(|atom| at(4, atom.as_bytes()))
    {
        Sniffed::QuickTime
    } else if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        Sniffed::Asf
    } else if at(0, b"FLV\x01") {
        Sniffed::Flv
    } else if at(0, &[0x00, 0x00, 0x01, 0xBA]) || at(0, &[0x00, 0x00, 0x01, 0xB3]) {
        Sniffed::MpegPs
    } else if at(0, &[0x47]) {
        Sniffed::MpegTs
    } else if at(4, &[0x47]) {
        Sniffed::M2ts
    } else if at(0, &[0x06, 0x0E, 0x2B, 0x34]) {
        Sniffed::Mxf
    } else {
        Sniffed::Unknown
    }
}

/// The kinds of content an extension may hold, or `None` when we know no signature for it (an
/// extension the request allows explicitly, such as `pdf`, is then taken at its word).
fn expected(ext: &str) -> Option<&'static [Sniffed]> {
    use Sniffed::*;
    const ISO: &[Sniffed] = &[IsoVideo, QuickTime];
    Some(match ext {
        "jpg" | "jpeg" => &[Jpeg],
        "png" => &[Png],
        "gif" => &[Gif],
        "bmp" => &[Bmp],
        "webp" => &[Webp],
        "heic" | "heif" => &[Heif],
        "avif" => &[Avif],
        "mp4" | "m4v" | "mov" | "3gp" | "3g2" => ISO,
        "mkv" | "webm" => &[Ebml],
        "avi" => &[Avi],
        "ogv" => &[Ogg],
        "asf" | "wmv" => &[Asf],
        "flv" => &[Flv],
        "mpeg" | "mpg" | "mpe" | "m2v" | "vob" => &[MpegPs],
        "ts" => &[MpegTs, M2ts],
        "m2ts" | "mts" => &[M2ts, MpegTs],
        "mxf" => &[Mxf],
        _ => return None,
    })
}

/// Checks the first bytes against the extension. With `*` allowed, any content goes.
pub fn check_content(path: &RelPath, allowed: &[String], head: &[u8]) -> Result<Sniffed> {
    let sniffed = sniff(head);
    if allowed.iter().any(|e| e == "*") {
        return Ok(sniffed);
    }
    let ext = path.extension().unwrap_or_default();
    match expected(&ext) {
        Some(kinds) if !kinds.contains(&sniffed) => Err(Error::client(
            ErrorCode::ContentMismatch,
            format!(
                "The content of '{}' is {}, which does not match its .{ext} extension.",
                path.file_name(),
                sniffed.mime()
            ),
        )),
        _ => Ok(sniffed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<impl std::fmt::Debug>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn paths_are_cleaned_or_refused() {
        assert_eq!(RelPath::parse("a/b/c.mp4").unwrap().as_str(), "a/b/c.mp4");
        assert_eq!(RelPath::parse("a\\b\\c.mp4").unwrap().as_str(), "a/b/c.mp4");
        assert_eq!(RelPath::parse("./a//c.mp4").unwrap().as_str(), "a/c.mp4");
        let p = RelPath::parse("Holiday 2026/day 1.MP4").unwrap();
        assert_eq!(p.file_name(), "day 1.MP4");
        assert_eq!(p.parent(), Some("Holiday 2026"));
        assert_eq!(p.extension().as_deref(), Some("mp4"));
        for bad in [
            "/etc/passwd",
            "a/../../b.mp4",
            "..",
            "a/\u{7}.mp4",
            "",
            "/",
            "C:/x.mp4",
            "a/\n.mp4",
        ] {
            assert_eq!(code(RelPath::parse(bad)), ErrorCode::BadPath, "{bad:?}");
        }
        assert_eq!(RelPath::parse(".bashrc").unwrap().extension(), None);
    }

    #[test]
    fn names_that_mislead_or_break_elsewhere_are_refused() {
        let check = |p: &str, unportable: bool| {
            let path = RelPath::parse(p).unwrap();
            check_name(&path, unportable).err().map(|e| e.code())
        };
        let ok = None;
        for good in [
            "clip.mp4",
            "Summer 2026/clip (1).mp4",
            "con-trail.mp4",
            "com10.mp4",
            "ナ.mp4",
        ] {
            assert_eq!(check(good, false), ok, "{good}");
        }
        for bad in [
            "clip\u{202E}4pm.exe",
            "a\u{200B}b.mp4",
            "\u{FEFF}x.mp4",
            "CON.mp4",
            "folder/lpt1.txt",
            "aux",
            "name.mp4.",
            "a:b.mp4",
            "what?.mp4",
        ] {
            assert_eq!(check(bad, false), Some(ErrorCode::BadPath), "{bad:?}");
            assert_eq!(
                check(bad, true),
                ok,
                "{bad:?} allowed when unportable names are"
            );
        }
        let long = format!("{}.mp4", "a".repeat(245));
        assert_eq!(
            check(&long, true),
            Some(ErrorCode::BadPath),
            "no room for a suffix"
        );
        let fits = format!("{}.mp4", "a".repeat(244));
        assert_eq!(check(&fits, false), ok);
    }

    #[test]
    fn allowlist() {
        let list = parse_extensions(DEFAULT_EXTENSIONS).unwrap();
        let p = |s: &str| RelPath::parse(s).unwrap();
        assert!(check_extension(&p("x.JPG"), &list).is_ok());
        assert_eq!(
            code(check_extension(&p("x.exe"), &list)),
            ErrorCode::TypeNotAllowed
        );
        assert_eq!(
            code(check_extension(&p("noext"), &list)),
            ErrorCode::MissingExtension
        );
        assert!(check_extension(&p("x.exe"), &["*".to_owned()]).is_ok());
        assert_eq!(
            parse_extensions(&[".MP4", "jpg", "mp4"]).unwrap(),
            vec!["mp4", "jpg"]
        );
        assert!(parse_extensions(&["m p4"]).is_err());
        assert!(parse_extensions::<&str>(&[]).is_err());
    }

    #[test]
    fn sniffing_matches_the_original_table() {
        let mp4 = b"\0\0\0\x18ftypisom\0\0\0\0";
        assert_eq!(sniff(mp4), Sniffed::IsoVideo);
        assert_eq!(sniff(b"\0\0\0\x18ftypqt  \0\0\0\0"), Sniffed::QuickTime);
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Sniffed::Heif);
        assert_eq!(sniff(b"\0\0\0\x18ftypavif\0\0\0\0"), Sniffed::Avif);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Sniffed::Webp);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI LIST"), Sniffed::Avi);
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Sniffed::Jpeg);
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x01]), Sniffed::Ebml);
        assert_eq!(sniff(b"hello world"), Sniffed::Unknown);
        assert_eq!(sniff(b""), Sniffed::Unknown);
        let list = parse_extensions(DEFAULT_EXTENSIONS).unwrap();
        let p = |s: &str| RelPath::parse(s).unwrap();
        assert!(check_content(&p("a.mov"), &list, mp4).is_ok());
        assert!(check_content(&p("a.mp4"), &list, mp4).is_ok());
        assert_eq!(
            code(check_content(&p("a.jpg"), &list, mp4)),
            ErrorCode::ContentMismatch
        );
        assert_eq!(
            code(check_content(&p("a.mp4"), &list, b"#!/bin/sh\n")),
            ErrorCode::ContentMismatch
        );
        assert!(check_content(&p("a.mp4"), &["*".to_owned()], b"#!/bin/sh\n").is_ok());
        assert!(check_content(&p("a.pdf"), &["pdf".to_owned()], b"%PDF-1.7").is_ok());
    }
}
