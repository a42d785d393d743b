//! The record codecs Kafka batches use, for the broker's recompression: decompress a batch's
//! records section in the producer's codec, compress it in the topic's.
//!
//! The compression itself is the codec crates' (flate2, snap, lz4, zstd — the ones
//! `kafka-protocol` builds). This module adds only what they do not: Kafka's framing of snappy
//! (xerial's stream format, which Java clients need; raw snappy is read too, as Java reads
//! it), Kafka's compression levels, and a bound on the decompressed size, so a small batch
//! that expands without limit is refused instead of exhausting memory. `kafka-protocol`'s own
//! codec functions have neither levels nor a bound.

use std::io::{Read, Write};

/// A Kafka compression codec, by its id in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// No compression (id 0).
    None,
    /// gzip (id 1).
    Gzip,
    /// snappy, in xerial's framing (id 2).
    Snappy,
    /// LZ4 frames (id 3).
    Lz4,
    /// zstd (id 4).
    Zstd,
}

/// A codec failure: the producer's bytes did not decode, or expanded past the bound.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The compressed records did not decode in their codec.
    #[error("{codec:?} records do not decompress: {reason}")]
    Corrupt {
        /// The batch's codec.
        codec: Codec,
        /// What the decoder said.
        reason: String,
    },
    /// The decompressed records are larger than the broker decompresses.
    #[error("{codec:?} records expand past {limit} bytes")]
    TooLarge {
        /// The batch's codec.
        codec: Codec,
        /// The bound.
        limit: usize,
    },
    /// The codec refused to compress (bad parameters).
    #[error("{codec:?} compression failed: {reason}")]
    Compress {
        /// The target codec.
        codec: Codec,
        /// What the encoder said.
        reason: String,
    },
    /// The attributes name no codec Kafka has.
    #[error("unknown compression codec id {0}")]
    Unknown(i16),
}

impl Codec {
    /// The codec with this attributes id.
    pub fn from_id(id: i16) -> Result<Codec, CodecError> {
        Ok(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => return Err(CodecError::Unknown(other)),
        })
    }

    /// Its id in the batch attributes.
    pub fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

/// xerial's stream header: magic, then version 1 and compatible version 1 (big-endian).
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The magic alone (what a reader checks).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Uncompressed bytes per snappy block, as Kafka's Java producer writes them.
const SNAPPY_BLOCK: usize = 32 * 1024;

/// Decompresses `data`, refusing output larger than `limit` bytes.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let corrupt = |reason: String| CodecError::Corrupt { codec, reason };
    let read_bounded = |mut r: Box<dyn Read + '_>| -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        (&mut r).take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| corrupt(e.to_string()))?;
        if out.len() > limit {
            return Err(CodecError::TooLarge { codec, limit });
        }
        Ok(out)
    };
    match codec {
        Codec::None => {
            if data.len() > limit {
                return Err(CodecError::TooLarge { codec, limit });
            }
            Ok(data.to_vec())
        }
        Codec::Gzip => read_bounded(Box::new(flate2::read::MultiGzDecoder::new(data))),
        Codec::Lz4 => read_bounded(Box::new(lz4::Decoder::new(data).map_err(|e| corrupt(e.to_string()))?)),
        Codec::Zstd => {
            read_bounded(Box::new(zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(e.to_string()))?))
        }
        Codec::Snappy => snappy_decompress(data, limit),
    }
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CodecError> {
    let corrupt = |e: snap::Error| CodecError::Corrupt { codec: Codec::Snappy, reason: e.to_string() };
    let len = snap::raw::decompress_len(block).map_err(corrupt)?;
    if out.len() + len > limit {
        return Err(CodecError::TooLarge { codec: Codec::Snappy, limit });
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(corrupt)?;
    Ok(())
}

fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER.len()..)
        .ok_or_else(|| CodecError::Corrupt { codec: Codec::Snappy, reason: "truncated xerial header".into() })?;
    while !rest.is_empty() {
        let truncated = || CodecError::Corrupt { codec: Codec::Snappy, reason: "truncated xerial block".into() };
        let len_bytes: [u8; 4] = rest.get(..4).ok_or_else(truncated)?.try_into().map_err(|_| truncated())?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = rest.get(4..4 + len).ok_or_else(truncated)?;
        snappy_block(block, &mut out, limit)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Compresses `data` at `level` (Kafka's meaning per codec: gzip 1–9 or -1 for its default,
/// lz4 1–17, zstd -131072–22; snappy has none). Writing into memory fails only on bad
/// parameters, which validation of the level configs rules out; the error says which.
pub fn compress(codec: Codec, data: &[u8], level: i32) -> Result<Vec<u8>, CodecError> {
    let failed = |e: std::io::Error| CodecError::Compress { codec, reason: e.to_string() };
    Ok(match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let level = if level < 0 { flate2::Compression::default() } else { flate2::Compression::new(level as u32) };
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            e.write_all(data).map_err(failed)?;
            e.finish().map_err(failed)?
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER.len() + data.len());
            out.extend_from_slice(XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(SNAPPY_BLOCK) {
                let block =
                    encoder.compress_vec(chunk).map_err(|e| CodecError::Compress { codec, reason: e.to_string() })?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Codec::Lz4 => {
            // Independent 64 KiB blocks without a content checksum: the frames Kafka's Java
            // producer writes, which every client reads.
            let mut e = lz4::EncoderBuilder::new()
                .level(level.max(0) as u32)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(data.len() / 2))
                .map_err(failed)?;
            e.write_all(data).map_err(failed)?;
            let (out, result) = e.finish();
            result.map_err(failed)?;
            out
        }
        Codec::Zstd => zstd::bulk::compress(data, level).map_err(failed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let c = compress(codec, &data, if codec == Codec::Lz4 { 9 } else { 3 }).expect("compresses");
            assert!(!c.is_empty(), "{codec:?}");
            if codec != Codec::None {
                assert!(c.len() < data.len(), "{codec:?} compresses a repetitive sample");
            }
            assert_eq!(decompress(codec, &c, data.len()).expect("decodes"), data, "{codec:?}");
            assert!(
                matches!(decompress(codec, &c, data.len() - 1), Err(CodecError::TooLarge { .. })),
                "{codec:?}: output past the bound is refused"
            );
        }
    }

    #[test]
    fn raw_snappy_is_read_as_java_reads_it() {
        let data = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&data).expect("compress");
        assert_eq!(decompress(Codec::Snappy, &raw, data.len()).expect("raw snappy"), data);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            for bad in
                [&b""[..], b"\x00\x01\x02garbage", b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff"]
            {
                let _ = decompress(codec, bad, 1 << 20);
            }
        }
        assert!(matches!(Codec::from_id(5), Err(CodecError::Unknown(5))));
    }
}
