//! ListObjects v1 and v2 end to end: prefix, delimiter and common prefixes, max-keys,
//! markers, continuation tokens, start-after, fetch-owner and encoding-type=url.

use aws_sdk_s3::types::EncodingType;
use aws_sdk_s3::Client;
use meridian_tests::{error_code, TestServer};

const KEYS: [&str; 9] = [
    "a.txt",
    "dir/one",
    "dir/sub/two",
    "dir/sub/three",
    "dir/zz",
    "other/x",
    "space key+plus",
    "z",
    "ünïcode/ß",
];

async fn populated() -> (TestServer, Client) {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("list").send().await.unwrap();
    for k in KEYS {
        s3.put_object()
            .bucket("list")
            .key(k)
            .body(k.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    (server, s3)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn list_v2_everything_in_key_order() {
    let (_server, s3) = populated().await;
    let out = s3.list_objects_v2().bucket("list").send().await.unwrap();
    let keys: Vec<_> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    assert_eq!(keys, sorted(KEYS.iter().map(|k| k.to_string()).collect()));
    assert_eq!(out.key_count(), Some(KEYS.len() as i32));
    assert_eq!(out.is_truncated(), Some(false));
    let first = &out.contents()[0];
    assert_eq!(first.size(), Some(5));
    assert!(first.e_tag().is_some() && first.last_modified().is_some());
    assert!(first.owner().is_none(), "owner only with fetch-owner");
    let with_owner = s3
        .list_objects_v2()
        .bucket("list")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    assert!(with_owner.contents()[0]
        .owner()
        .and_then(|o| o.id())
        .is_some());
}

#[tokio::test]
async fn delimiter_groups_common_prefixes() {
    let (_server, s3) = populated().await;
    let out = s3
        .list_objects_v2()
        .bucket("list")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["a.txt", "space key+plus", "z"]);
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["dir/", "other/", "ünïcode/"]);

    let out = s3
        .list_objects_v2()
        .bucket("list")
        .prefix("dir/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["dir/one", "dir/zz"]);
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["dir/sub/"]);
}

#[tokio::test]
async fn continuation_tokens_walk_every_key_once() {
    let (_server, s3) = populated().await;
    let mut seen = Vec::new();
    let mut token = None;
    for _ in 0..20 {
        let out = s3
            .list_objects_v2()
            .bucket("list")
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(out.key_count().unwrap() <= 2);
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        seen.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        if !out.is_truncated().unwrap() {
            break;
        }
        token = out.next_continuation_token().map(str::to_owned);
    }
    // Each page lists keys and prefixes in key order; across pages nothing repeats.
    seen.sort();
    assert_eq!(
        seen,
        ["a.txt", "dir/", "other/", "space key+plus", "z", "ünïcode/"]
    );
    let err = s3
        .list_objects_v2()
        .bucket("list")
        .continuation_token("!!!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidArgument"));
}

#[tokio::test]
async fn start_after_and_v1_markers() {
    let (_server, s3) = populated().await;
    let out = s3
        .list_objects_v2()
        .bucket("list")
        .start_after("dir/zz")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["other/x", "space key+plus", "z", "ünïcode/ß"]);

    let page1 = s3
        .list_objects()
        .bucket("list")
        .max_keys(3)
        .send()
        .await
        .unwrap();
    assert_eq!(page1.is_truncated(), Some(true));
    let last = page1.contents().last().unwrap().key().unwrap().to_owned();
    let marker = page1.next_marker().map(str::to_owned).unwrap_or(last);
    let page2 = s3
        .list_objects()
        .bucket("list")
        .marker(&marker)
        .send()
        .await
        .unwrap();
    let total = page1.contents().len() + page2.contents().len();
    assert_eq!(total, KEYS.len());
    assert!(page2
        .contents()
        .iter()
        .all(|o| o.key().unwrap() > marker.as_str()));
    assert!(
        page1.contents()[0].owner().is_some(),
        "v1 always lists owners"
    );
}

#[tokio::test]
async fn max_keys_zero_and_prefix_without_matches() {
    let (_server, s3) = populated().await;
    let out = s3
        .list_objects_v2()
        .bucket("list")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert!(out.contents().is_empty());
    let out = s3
        .list_objects_v2()
        .bucket("list")
        .prefix("nothing-here")
        .send()
        .await
        .unwrap();
    assert!(out.contents().is_empty() && out.common_prefixes().is_empty());
    let err = s3
        .list_objects_v2()
        .bucket("absent")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn url_encoding_type_round_trips_awkward_keys() {
    let (_server, s3) = populated().await;
    // The SDK decodes url-encoded keys itself when it asked for them.
    let out = s3
        .list_objects_v2()
        .bucket("list")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    let decoded: Vec<String> = keys.iter().map(|k| percent_decode(k)).collect();
    assert!(decoded.contains(&"space key+plus".to_owned()), "{keys:?}");
    assert!(decoded.contains(&"ünïcode/ß".to_owned()), "{keys:?}");
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("UTF-8 key")
        .into_owned()
}
