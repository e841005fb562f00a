//! Chunk encoding: a codec tag and the stored bytes. The store compresses
//! chunks itself and keeps a chunk raw when compression does not make it
//! smaller; a raw chunk is stored as the caller's bytes, without a copy.

use crate::error::{Result, StoreError};
use crate::types::Compression;
use std::borrow::Cow;

pub const RAW: u8 = 0;
pub const LZ4: u8 = 1;
pub const ZSTD: u8 = 2;

/// The codec tag and stored bytes of `data`.
pub fn encode(data: &[u8], compression: Compression) -> (u8, Cow<'_, [u8]>) {
    if compression != Compression::None && !worth_compressing(data) {
        return (RAW, Cow::Borrowed(data));
    }
    let compressed = match compression {
        Compression::None => None,
        Compression::Lz4 => Some((LZ4, lz4_flex::block::compress_prepend_size(data))),
        Compression::Zstd => zstd::bulk::compress(data, 3).ok().map(|c| (ZSTD, c)),
    };
    match compressed {
        // Compression pays only when it saves at least one 4 KiB block in eight.
        Some((tag, c)) if c.len() + data.len() / 8 < data.len() => (tag, Cow::Owned(c)),
        _ => (RAW, Cow::Borrowed(data)),
    }
}

/// Samples of this size, this many of them, spread over a chunk.
const SAMPLE: usize = 4 << 10;
const SAMPLES: usize = 4;

/// Whether compressing `data` may pay: lz4 on samples spread over it must
/// save an eighth. Incompressible data (media, encrypted, already compressed,
/// fio's random buffers) then costs an lz4 pass over 16 KiB instead of the
/// whole chunk (measured: lz4 took 55% of the daemon's CPU in a sequential
/// write of random data), and a mostly compressible chunk is still tried whole.
fn worth_compressing(data: &[u8]) -> bool {
    if data.len() < 2 * SAMPLE * SAMPLES {
        return true;
    }
    let step = data.len() / SAMPLES;
    let packed: usize = (0..SAMPLES)
        .map(|i| lz4_flex::block::compress(&data[i * step..i * step + SAMPLE]).len())
        .sum();
    let raw = SAMPLE * SAMPLES;
    packed + raw / 8 < raw
}

pub fn decode(codec: u8, stored: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    let data = match codec {
        RAW => stored.to_vec(),
        LZ4 => lz4_flex::block::decompress_size_prepended(stored)
            .map_err(|e| StoreError::Corrupt(format!("lz4 chunk: {e}")))?,
        ZSTD => zstd::bulk::decompress(stored, raw_len.max(1))
            .map_err(|e| StoreError::Corrupt(format!("zstd chunk: {e}")))?,
        t => return Err(StoreError::Corrupt(format!("unknown chunk codec {t}"))),
    };
    if data.len() != raw_len {
        return Err(StoreError::Corrupt(format!(
            "chunk decodes to {} bytes, expected {raw_len}",
            data.len()
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_codec() {
        let compressible = vec![7u8; 100_000];
        let random: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            for data in [&compressible, &random] {
                let (tag, e) = encode(data, c);
                assert_eq!(&decode(tag, &e, data.len()).unwrap(), data);
            }
        }
        assert!(encode(&compressible, Compression::Lz4).1.len() < 1000);
        let (tag, raw) = encode(&compressible, Compression::None);
        assert_eq!((tag, raw.len()), (RAW, compressible.len()));
        assert!(matches!(raw, Cow::Borrowed(_)), "raw chunks are not copied");
    }

    #[test]
    fn incompressible_chunks_are_not_compressed_whole() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..256 << 10)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(!worth_compressing(&random));
        assert_eq!(encode(&random, Compression::Lz4).0, RAW);
        // Half random, half zeros: the samples see both, so the chunk is tried.
        let mut half = random.clone();
        half[128 << 10..].fill(0);
        assert!(worth_compressing(&half));
        assert_eq!(encode(&half, Compression::Lz4).0, LZ4);
        assert_eq!(encode(&half, Compression::Zstd).0, ZSTD);
    }

    #[test]
    fn corrupt_chunk_is_an_error() {
        assert!(decode(9, &[1, 2], 2).is_err());
        assert!(decode(LZ4, &[], 0).is_err());
        assert!(decode(RAW, &[1, 2], 3).is_err());
    }
}
