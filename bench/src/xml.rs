//! The little XML the bench reads from S3 responses: an error's `<Code>`/`<Message>`, an
//! `<UploadId>`, and a ListObjectsV2 page's key count and continuation token. S3 emits these
//! as flat, namespace-free elements, so plain substring search is exact enough and costs
//! nothing next to the request itself.

/// The unescaped text of the first `<tag>...</tag>` in `doc`.
pub fn first_text(doc: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&close)?;
    Some(unescape(&doc[start..end]))
}

/// How many `<tag>` elements `doc` contains.
pub fn count_elements(doc: &str, tag: &str) -> u64 {
    doc.matches(&format!("<{tag}>")).count() as u64
}

/// Reverses XML's five predefined entities and numeric character references.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else { break };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(|dec| dec.parse::<u32>()))
                .and_then(|n| n.ok())
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for use inside an XML element.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The key &lt;k&gt; does not exist</Message></Error>"#;

    #[test]
    fn error_code_and_message_are_read_and_unescaped() {
        assert_eq!(first_text(ERROR, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(
            first_text(ERROR, "Message").as_deref(),
            Some("The key <k> does not exist")
        );
        assert_eq!(first_text(ERROR, "Resource"), None);
    }

    #[test]
    fn list_pages_yield_key_count_and_token() {
        let page = "<ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>a</Key></Contents><Contents><Key>b&amp;c</Key></Contents>\
            <NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>";
        assert_eq!(count_elements(page, "Contents"), 2);
        assert_eq!(
            first_text(page, "NextContinuationToken").as_deref(),
            Some("t&1")
        );
    }

    #[test]
    fn numeric_references_decode_and_stray_ampersands_survive() {
        assert_eq!(unescape("a&#65;&#x42;c"), "aABc");
        assert_eq!(unescape("fish & chips"), "fish & chips");
        assert_eq!(unescape("&bogus;"), "&bogus;");
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
