//! Escaping text for XML and HTML (the S3 error bodies, the HTML report).

/// Escapes `s` for element content and quoted attribute values in both XML
/// and HTML. Control characters, which XML 1.0 does not allow even as
/// character references, become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_replaces_controls() {
        assert_eq!(
            super::escape("/b/<a&'\">\u{1}"),
            "/b/&lt;a&amp;&#39;&quot;&gt;\u{FFFD}"
        );
    }
}
