//! Where an object's bytes live when they are not inline in the version record: an ordered
//! list of segments, each an erasure-coded object on the disk set or a small inline piece.
//! A single PUT has one segment; a multipart object has one per part, so completing an upload
//! assembles the object without copying data.
//!
//! Encoded as a versioned binary blob that the metadata store keeps opaque.

use std::ops::Range;

use meridian_erasure::{DataId, ObjectDescriptor};

const LAYOUT_FORMAT_V1: u8 = 1;
const SEGMENT_ERASURE: u8 = 1;
const SEGMENT_INLINE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Erasure(ObjectDescriptor),
    Inline(Vec<u8>),
}

impl Segment {
    pub fn size(&self) -> u64 {
        match self {
            Segment::Erasure(d) => d.size,
            Segment::Inline(b) => b.len() as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    pub segments: Vec<Segment>,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt object layout record: {0}")]
pub struct LayoutError(pub String);

impl Layout {
    pub fn single(descriptor: ObjectDescriptor) -> Layout {
        Layout {
            segments: vec![Segment::Erasure(descriptor)],
        }
    }

    pub fn size(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Data ids of every erasure-coded segment (what must be deleted to reclaim the object).
    pub fn data_ids(&self) -> impl Iterator<Item = DataId> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Erasure(d) => Some(d.data_id),
            Segment::Inline(_) => None,
        })
    }

    /// The segments overlapping `range`, each with the sub-range to read from it.
    pub fn pieces(&self, range: Range<u64>) -> Vec<(&Segment, Range<u64>)> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for seg in &self.segments {
            let (start, end) = (offset, offset + seg.size());
            offset = end;
            if end <= range.start || start >= range.end || start == end {
                continue;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            out.push((seg, from..to));
        }
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![LAYOUT_FORMAT_V1];
        out.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        for seg in &self.segments {
            let (tag, body) = match seg {
                Segment::Erasure(d) => (SEGMENT_ERASURE, d.to_bytes()),
                Segment::Inline(b) => (SEGMENT_INLINE, b.clone()),
            };
            out.push(tag);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Layout, LayoutError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != LAYOUT_FORMAT_V1 {
            return Err(LayoutError(format!(
                "unknown layout format version {version}"
            )));
        }
        let count = r.u32()? as usize;
        let mut segments = Vec::with_capacity(count.min(10_000));
        for _ in 0..count {
            let tag = r.u8()?;
            let len = r.u32()? as usize;
            let body = r.take(len)?;
            segments.push(match tag {
                SEGMENT_ERASURE => Segment::Erasure(
                    ObjectDescriptor::from_bytes(body)
                        .map_err(|e| LayoutError(format!("descriptor: {e}")))?,
                ),
                SEGMENT_INLINE => Segment::Inline(body.to_vec()),
                other => return Err(LayoutError(format!("unknown segment tag {other}"))),
            });
        }
        if r.pos != bytes.len() {
            return Err(LayoutError("trailing bytes".into()));
        }
        Ok(Layout { segments })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LayoutError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| LayoutError("truncated".into()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, LayoutError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, LayoutError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(size: u64) -> ObjectDescriptor {
        ObjectDescriptor {
            data_id: DataId::new_v4(),
            size,
            data_shards: 4,
            parity_shards: 2,
            block_size: 262_144,
            stripe_size: 1 << 20,
            placement: vec![2, 3, 4, 5, 0, 1],
            format_version: 1,
        }
    }

    #[test]
    fn layout_round_trips() {
        let layout = Layout {
            segments: vec![
                Segment::Erasure(descriptor(10)),
                Segment::Inline(b"tail".to_vec()),
                Segment::Erasure(descriptor(0)),
            ],
        };
        assert_eq!(Layout::from_bytes(&layout.to_bytes()).unwrap(), layout);
        assert!(Layout::from_bytes(&layout.to_bytes()[..5]).is_err());
        assert_eq!(layout.data_ids().count(), 2);
    }

    #[test]
    fn pieces_cover_exactly_the_range() {
        let layout = Layout {
            segments: vec![
                Segment::Erasure(descriptor(10)),
                Segment::Inline(vec![0; 5]),
                Segment::Erasure(descriptor(10)),
            ],
        };
        let p = layout.pieces(8..17);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].1, 8..10);
        assert_eq!(p[1].1, 0..5);
        assert_eq!(p[2].1, 0..2);
        assert_eq!(layout.pieces(10..15).len(), 1);
        assert!(layout.pieces(25..25).is_empty());
    }
}
