use meridian_erasure::ErasureError;
use proptest::prelude::*;

use crate::support::{pattern, TestSet, MIB};

#[tokio::test]
async fn ranges_on_stripe_and_block_boundaries_return_exact_bytes() {
    let set = TestSet::new(4, 2).await;
    let size = 3 * MIB + 12_345;
    let data = pattern(size, 1);
    let desc = set.write(&data).await;
    let (stripe, block) = (MIB as u64, MIB as u64 / 4);
    let size = size as u64;
    let ranges = [
        0..1,
        0..block,
        block - 1..block + 1,
        block..2 * block,
        stripe - 1..stripe,
        stripe - 1..stripe + 1,
        stripe..2 * stripe,
        stripe + block..stripe + 2 * block + 1,
        2 * stripe - 3..3 * stripe + 3,
        3 * stripe..size,
        size - 1..size,
        0..size,
        17..17,
        size..size,
    ];
    for range in ranges {
        let got = set.read(&desc, range.clone()).await.unwrap();
        assert_eq!(
            got,
            &data[range.start as usize..range.end as usize],
            "range {range:?}"
        );
    }
}

#[tokio::test]
async fn ranges_outside_the_object_are_refused() {
    let set = TestSet::new(2, 1).await;
    let desc = set.write(&pattern(1000, 2)).await;
    #[allow(clippy::reversed_empty_ranges)] // a backwards range is one of the refused inputs
    let ranges = [0..1001, 1000..1001, 5..3];
    for range in ranges {
        let err = set.read(&desc, range.clone()).await.unwrap_err();
        assert!(
            matches!(err, ErasureError::InvalidRange { .. }),
            "{range:?}: {err}"
        );
    }
}

#[tokio::test]
async fn ranges_of_a_padded_layout_are_exact() {
    // 1 MiB does not divide by 6: every stripe's last data block carries padding.
    let set = TestSet::new(6, 3).await;
    let data = pattern(2 * MIB + 1, 3);
    let desc = set.write(&data).await;
    let b = desc.block_size as u64;
    for range in [
        0..b,
        b * 5..MIB as u64 + 1,
        MIB as u64 - 1..2 * MIB as u64 + 1,
    ] {
        let got = set.read(&desc, range.clone()).await.unwrap();
        assert_eq!(
            got,
            &data[range.start as usize..range.end as usize],
            "range {range:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_range_of_any_object_reads_back_exactly(
        size in 0usize..20_000,
        stripe in 1usize..3_000,
        chunk in 1usize..5_000,
        a in 0usize..20_000,
        b in 0usize..20_000,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let set = TestSet::with_stripe(3, 2, stripe).await;
            let data = pattern(size, size as u64);
            let desc = set.write_chunked(&data, chunk).await.descriptor;
            let (start, end) = ((a.min(b)).min(size), (a.max(b)).min(size));
            let got = set.read(&desc, start as u64..end as u64).await.unwrap();
            assert_eq!(got, &data[start..end]);
        });
    }
}
