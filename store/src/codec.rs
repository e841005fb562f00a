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
    fn corrupt_chunk_is_an_error() {
        assert!(decode(9, &[1, 2], 2).is_err());
        assert!(decode(LZ4, &[], 0).is_err());
        assert!(decode(RAW, &[1, 2], 3).is_err());
    }
}
