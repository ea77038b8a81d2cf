//! Entry names a reader can extract safely: relative paths without `..`, `.`, empty segments,
//! backslashes or control characters, and no two alike (compared without case, since the
//! archive may be unpacked on a case-insensitive file system).

use std::collections::HashSet;

/// A name's UTF-8 bytes stay below this (the format's limit is 65535).
const MAX_NAME_BYTES: usize = 1024;
const FALLBACK: &str = "file";

/// A safe relative path for `raw`: backslashes and control characters become `_`, and
/// empty, `.` and `..` segments (hence a leading `/`) are dropped.
pub fn sanitize(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c == '\\' || c.is_control() { '_' } else { c })
        .collect();
    let segments: Vec<&str> = cleaned
        .split('/')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect();
    let joined = segments.join("/");
    if joined.is_empty() {
        return FALLBACK.to_owned();
    }
    truncate(&joined, MAX_NAME_BYTES)
}

/// At most `max` bytes of `name`, cut on a character boundary, keeping its extension.
fn truncate(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() > 16 { "" } else { ext };
    let mut end = max - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", &stem[..end])
}

/// `dir/a.tar.gz` → (`dir/a.tar`, `.gz`); a leading dot is not an extension (`.env`).
fn split_extension(name: &str) -> (&str, &str) {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[base_start..].rfind('.') {
        Some(dot) if dot > 0 => name.split_at(base_start + dot),
        _ => (name, ""),
    }
}

/// The names given out so far.
#[derive(Debug, Default)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl UniqueNames {
    /// Marks `name`, given out by an earlier writer of the same archive, as taken.
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_lowercase());
    }

    /// `raw` sanitized, with ` (2)`, ` (3)`… before the extension when already taken.
    pub fn claim(&mut self, raw: &str) -> String {
        let name = sanitize(raw);
        if self.taken.insert(name.to_lowercase()) {
            return name;
        }
        let (stem, ext) = split_extension(&name);
        let stem = truncate(stem, MAX_NAME_BYTES - 24);
        let mut n = 2u64;
        loop {
            let candidate = format!("{stem} ({n}){ext}");
            if self.taken.insert(candidate.to_lowercase()) {
                return candidate;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_become_relative_and_plain() {
        assert_eq!(sanitize("report.pdf"), "report.pdf");
        assert_eq!(sanitize("/etc/passwd"), "etc/passwd");
        assert_eq!(sanitize("../../x/../y.txt"), "x/y.txt");
        assert_eq!(sanitize("a\\..\\b.txt"), "a_.._b.txt");
        assert_eq!(sanitize("a/./b//c"), "a/b/c");
        assert_eq!(sanitize("tab\there\u{0}nul\n"), "tab_here_nul_");
        assert_eq!(sanitize(""), "file");
        assert_eq!(sanitize("/../.."), "file");
        assert_eq!(sanitize("dir/"), "dir");
        assert_eq!(sanitize("résumé ✓.txt"), "résumé ✓.txt");
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(2000));
        let cut = sanitize(&long);
        assert!(cut.len() <= MAX_NAME_BYTES, "{}", cut.len());
        assert!(cut.ends_with("é.pdf"), "{cut}");
    }

    #[test]
    fn duplicates_get_a_number_before_the_extension() {
        let mut names = UniqueNames::default();
        assert_eq!(names.claim("a.txt"), "a.txt");
        assert_eq!(names.claim("a.txt"), "a (2).txt");
        assert_eq!(names.claim("/a.txt"), "a (3).txt");
        assert_eq!(names.claim("A.TXT"), "A (4).TXT");
        assert_eq!(names.claim("a (2).txt"), "a (2) (2).txt");
        assert_eq!(names.claim("dir.v1/README"), "dir.v1/README");
        assert_eq!(names.claim("dir.v1/README"), "dir.v1/README (2)");
        assert_eq!(names.claim(".env"), ".env");
        assert_eq!(names.claim(".env"), ".env (2)");
        assert_eq!(names.claim(""), "file");
        assert_eq!(names.claim(".."), "file (2)");
    }
}
