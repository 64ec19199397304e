//! The little XML the bench reads from S3 responses — an error's `<Code>`/`<Message>`, an
//! `<UploadId>`, a ListObjectsV2 page's truncation, token and key count — read with
//! quick-xml in one pass per document, and escaping for the few documents it sends.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What the bench needs of a ListObjectsV2 page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListSummary {
    pub is_truncated: bool,
    pub next_token: Option<String>,
    /// `<Contents>` entries: the keys on the page.
    pub keys: u64,
}

/// Reads `doc` once, calling `on_element(reader, name)` at every start tag; the callback may
/// consume the element's text with [`text_of`]. A malformed document ends the walk early:
/// the bench then reports what it found (an unreadable error body still has a status).
fn walk<'a>(doc: &'a str, mut on_element: impl FnMut(&mut Reader<&'a [u8]>, &[u8]) -> bool) {
    let mut reader = Reader::from_str(doc);
    // S3 writes well-formed documents; matching every end tag to its start would only cost.
    reader.config_mut().check_end_names = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => {
                let name = start.local_name();
                if !on_element(&mut reader, name.as_ref()) {
                    return;
                }
            }
            Ok(Event::Eof) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The unescaped text of the element whose start tag `name` was just read.
fn text_of(reader: &mut Reader<&[u8]>, name: &[u8]) -> Option<String> {
    let raw = reader.read_text(quick_xml::name::QName(name)).ok()?;
    let raw = raw.decode().ok()?;
    quick_xml::escape::unescape(&raw)
        .ok()
        .map(|text| text.into_owned())
}

/// The unescaped text of the first `<tag>` element in `doc`.
pub fn first_text(doc: &str, tag: &str) -> Option<String> {
    let mut found = None;
    walk(doc, |reader, name| {
        if name == tag.as_bytes() {
            found = text_of(reader, name);
            return false;
        }
        true
    });
    found
}

/// An S3 error document's `Code` and `Message`.
pub fn error_fields(doc: &str) -> (Option<String>, Option<String>) {
    let (mut code, mut message) = (None, None);
    walk(doc, |reader, name| {
        match name {
            b"Code" => code = text_of(reader, name),
            b"Message" => message = text_of(reader, name),
            _ => {}
        }
        code.is_none() || message.is_none()
    });
    (code, message)
}

/// Truncation, continuation token and key count of a ListObjectsV2 page.
pub fn list_summary(doc: &str) -> ListSummary {
    let mut summary = ListSummary::default();
    walk(doc, |reader, name| {
        match name {
            b"Contents" => summary.keys += 1,
            b"IsTruncated" => {
                summary.is_truncated = text_of(reader, name).is_some_and(|t| t == "true")
            }
            b"NextContinuationToken" => summary.next_token = text_of(reader, name),
            _ => {}
        }
        true
    });
    summary
}

/// Escapes text for use inside an XML element.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The key &lt;k&gt; does not exist</Message></Error>"#;

    #[test]
    fn error_code_and_message_are_read_and_unescaped() {
        assert_eq!(
            error_fields(ERROR),
            (
                Some("NoSuchKey".to_owned()),
                Some("The key <k> does not exist".to_owned())
            )
        );
        assert_eq!(first_text(ERROR, "Resource"), None);
        assert_eq!(error_fields("not xml at all"), (None, None));
    }

    #[test]
    fn list_pages_yield_truncation_key_count_and_token() {
        let page = "<ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>a</Key></Contents><Contents><Key>b&amp;c</Key><Size>1</Size></Contents>\
            <NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>";
        assert_eq!(
            list_summary(page),
            ListSummary {
                is_truncated: true,
                next_token: Some("t&1".into()),
                keys: 2
            }
        );
        let last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(list_summary(last), ListSummary::default());
    }

    #[test]
    fn upload_ids_and_numeric_references_decode() {
        let doc = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
            <UploadId>a&#65;&#x42;c</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(first_text(doc, "UploadId").as_deref(), Some("aABc"));
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
