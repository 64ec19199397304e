//! Encrypted bodies through the real write and read paths of a 4+2 store: every range of a
//! two-segment object decrypts to the plaintext, shards hold no plaintext, and a flipped
//! shard byte is caught by the bitrot check and rebuilt from parity before decryption.

use bytes::Bytes;
use futures::TryStreamExt;
use meridian_metadata::{ChecksumAlgorithm, Storage};
use meridian_store::encryption::package::PACKAGE;
use meridian_store::encryption::DataKey;
use meridian_store::ingest::{ingest, BodyError, IngestOptions};
use meridian_store::layout::Layout;
use meridian_store::{Store, StoreConfig};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";

fn body(len: usize) -> Vec<u8> {
    MARKER.iter().copied().cycle().take(len).collect()
}

async fn store_in(dir: &std::path::Path) -> Store {
    let mut config = StoreConfig::in_dir(dir, 4, 2);
    config.inline_threshold = 4096;
    Store::open(&config).await.unwrap()
}

async fn put(store: &Store, data: &[u8], key: &DataKey) -> meridian_store::ingest::Ingested {
    let chunks: Vec<Result<Bytes, BodyError>> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    ingest(
        &store.disks,
        futures::stream::iter(chunks),
        IngestOptions {
            identity: b"test".to_vec(),
            checksum: Some(ChecksumAlgorithm::Crc64Nvme),
            inline_threshold: store.inline_threshold(),
            seal: Some(key.clone()),
        },
    )
    .await
    .unwrap()
}

async fn read(
    store: &Store,
    storage: &Storage,
    range: std::ops::Range<u64>,
    key: &DataKey,
) -> Vec<u8> {
    let stream = store.read_plain(storage, range, Some(key), &[]).unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn encrypted_segments_read_back_by_range_and_survive_a_flipped_shard() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let key = DataKey::generate().unwrap();

    // Two segments, as a multipart object: 3 MiB + 17 and one package + 1.
    let (a, b) = (body(3 * 1024 * 1024 + 17), body(PACKAGE + 1));
    let (ia, ib) = (put(&store, &a, &key).await, put(&store, &b, &key).await);
    assert_eq!((ia.size, ib.size), (a.len() as u64, b.len() as u64));
    let mut segments = Vec::new();
    for ingested in [&ia, &ib] {
        let Storage::Layout(blob) = Store::storage_of(&ingested.data) else {
            panic!("erasure-coded");
        };
        segments.extend(Layout::from_bytes(&blob).unwrap().segments);
    }
    let storage = Storage::Layout(Layout { segments }.to_bytes());
    let whole: Vec<u8> = [a.clone(), b.clone()].concat();
    let n = whole.len() as u64;

    assert_eq!(read(&store, &storage, 0..n, &key).await, whole);
    let p = PACKAGE as u64;
    for r in [
        0..1,
        p - 1..p + 1,
        p..2 * p,
        a.len() as u64 - 1..a.len() as u64 + 2,
        n - 1..n,
        5..n - 5,
    ] {
        assert_eq!(
            read(&store, &storage, r.clone(), &key).await,
            &whole[r.start as usize..r.end as usize],
            "{r:?}"
        );
    }

    // No shard holds the plaintext.
    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    let shards: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(dir.path().join("meta")))
        .collect();
    assert!(shards.len() >= 6);
    for f in &shards {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{}",
            f.display()
        );
    }

    // A flipped byte in every shard on two of the six disks: the blocks fail their bitrot
    // check, parity rebuilds them, and the packages still authenticate.
    for f in shards.iter().filter(|f| {
        (f.starts_with(dir.path().join("disk1")) || f.starts_with(dir.path().join("disk2")))
            && std::fs::metadata(f).unwrap().len() > 64 * 1024
    }) {
        let mut bytes = std::fs::read(f).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(f, bytes).unwrap();
    }
    assert_eq!(read(&store, &storage, 0..n, &key).await, whole);

    // The wrong key fails: nothing unauthenticated is served.
    let wrong = DataKey::generate().unwrap();
    let stream = store.read_plain(&storage, 0..n, Some(&wrong), &[]).unwrap();
    assert!(stream.try_collect::<Vec<Bytes>>().await.is_err());
}

#[tokio::test]
async fn small_encrypted_bodies_stay_inline_and_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let key = DataKey::generate().unwrap();
    for len in [0usize, 1, 100, 4000] {
        let data = body(len);
        let ingested = put(&store, &data, &key).await;
        let storage = Store::storage_of(&ingested.data);
        let Storage::Inline(raw) = &storage else {
            panic!("inline below the threshold");
        };
        assert!(!raw.windows(MARKER.len()).any(|w| w == MARKER) || len < MARKER.len());
        if len > 0 {
            assert_eq!(read(&store, &storage, 0..len as u64, &key).await, data);
            assert_eq!(
                read(&store, &storage, 1..len as u64, &key).await,
                &data[1..]
            );
        }
    }
}
