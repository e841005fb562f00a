//! Chunk encoding: a one-byte codec tag, then the payload. The store compresses
//! chunks itself (RocksDB stores them as-is in blob files), and keeps a chunk
//! raw when compression does not make it smaller.

use crate::error::{Result, StoreError};
use crate::types::Compression;

const RAW: u8 = 0;
const LZ4: u8 = 1;
const ZSTD: u8 = 2;

pub fn encode(data: &[u8], compression: Compression) -> Vec<u8> {
    let compressed = match compression {
        Compression::None => None,
        Compression::Lz4 => Some((LZ4, lz4_flex::block::compress_prepend_size(data))),
        Compression::Zstd => zstd::bulk::compress(data, 3).ok().map(|c| (ZSTD, c)),
    };
    match compressed {
        Some((tag, c)) if c.len() + 1 < data.len() => {
            let mut out = Vec::with_capacity(c.len() + 1);
            out.push(tag);
            out.extend_from_slice(&c);
            out
        }
        _ => {
            let mut out = Vec::with_capacity(data.len() + 1);
            out.push(RAW);
            out.extend_from_slice(data);
            out
        }
    }
}

pub fn decode(stored: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    let (&tag, payload) = stored
        .split_first()
        .ok_or_else(|| StoreError::Corrupt("empty chunk".into()))?;
    let data = match tag {
        RAW => payload.to_vec(),
        LZ4 => lz4_flex::block::decompress_size_prepended(payload)
            .map_err(|e| StoreError::Corrupt(format!("lz4 chunk: {e}")))?,
        ZSTD => zstd::bulk::decompress(payload, raw_len.max(1))
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
                let e = encode(data, c);
                assert_eq!(&decode(&e, data.len()).unwrap(), data);
            }
        }
        assert!(encode(&compressible, Compression::Lz4).len() < 1000);
        assert_eq!(
            encode(&compressible, Compression::None).len(),
            compressible.len() + 1
        );
    }

    #[test]
    fn corrupt_chunk_is_an_error() {
        assert!(decode(&[9, 1, 2], 2).is_err());
        assert!(decode(&[], 0).is_err());
        assert!(decode(&[0, 1, 2], 3).is_err());
    }
}
