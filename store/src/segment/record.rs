//! The self-describing chunk record of a segment file.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "TCR1"
//!      4     1  codec (0 raw, 1 lz4, 2 zstd)
//!      5     3  zero
//!      8     4  raw length (little-endian)
//!     12     4  stored length (little-endian)
//!     16    32  BLAKE3 hash of the raw bytes
//!     48     4  CRC32C of bytes 0..48 and of the block table
//!     52  4×n  block table: CRC32C of each 4 KiB block of the payload
//!      …     …  payload (stored length bytes)
//! ```
//! The header checksum covers the block table, so a reader that wants bytes
//! 8192..12288 of a raw chunk reads the header with its table and that one
//! block, and checks both, without reading the rest of the record.

use crate::keys::Hash;

pub const MAGIC: [u8; 4] = *b"TCR1";
pub const FIXED_HEADER: usize = 52;
/// Payload bytes covered by one block checksum.
pub const BLOCK: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub codec: u8,
    pub raw_len: u32,
    pub stored_len: u32,
    pub hash: Hash,
    /// The header checksum, also kept in the chunk index.
    pub crc: u32,
}

pub fn blocks(stored_len: u32) -> usize {
    (stored_len as usize).div_ceil(BLOCK)
}

/// Bytes before the payload: fixed header and block table.
pub fn header_len(stored_len: u32) -> usize {
    FIXED_HEADER + 4 * blocks(stored_len)
}

pub fn record_len(stored_len: u32) -> u64 {
    (header_len(stored_len) + stored_len as usize) as u64
}

/// The header and block table of a record holding `payload`.
pub fn encode_header(hash: &Hash, codec: u8, raw_len: u32, payload: &[u8]) -> (Vec<u8>, u32) {
    let stored_len = payload.len() as u32;
    let mut h = Vec::with_capacity(header_len(stored_len));
    h.extend_from_slice(&MAGIC);
    h.push(codec);
    h.extend_from_slice(&[0; 3]);
    h.extend_from_slice(&raw_len.to_le_bytes());
    h.extend_from_slice(&stored_len.to_le_bytes());
    h.extend_from_slice(hash);
    h.extend_from_slice(&[0; 4]);
    for block in payload.chunks(BLOCK) {
        h.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
    }
    let crc = header_crc(&h);
    h[48..52].copy_from_slice(&crc.to_le_bytes());
    (h, crc)
}

fn header_crc(h: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[..48]), &h[FIXED_HEADER..])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reads the fixed part of a header without checking it (the caller then
/// reads the block table and calls [`parse_header`]).
pub fn peek_stored_len(fixed: &[u8]) -> Option<u32> {
    (fixed.len() >= FIXED_HEADER && fixed[..4] == MAGIC).then(|| le32(fixed, 12))
}

/// Parses and checks a header with its block table (`buf` holds at least
/// [`header_len`] bytes). The error says what is wrong.
pub fn parse_header(buf: &[u8]) -> Result<RecordHeader, String> {
    if buf.len() < FIXED_HEADER || buf[..4] != MAGIC {
        return Err("no record magic".into());
    }
    let stored_len = le32(buf, 12);
    let len = header_len(stored_len);
    if buf.len() < len {
        return Err(format!("header of {} bytes is cut short", len));
    }
    let crc = le32(buf, 48);
    if header_crc(&buf[..len]) != crc {
        return Err("header checksum mismatch".into());
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&buf[16..48]);
    Ok(RecordHeader {
        codec: buf[4],
        raw_len: le32(buf, 8),
        stored_len,
        hash,
        crc,
    })
}

/// Checks payload bytes starting at block `first_block` against the block
/// table of a parsed header (`table` is the header's bytes after
/// [`FIXED_HEADER`]). Returns the first bad block's index.
pub fn verify_blocks(table: &[u8], first_block: usize, data: &[u8]) -> Result<(), usize> {
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let b = first_block + i;
        let want = table
            .get(4 * b..4 * b + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()));
        if want != Some(crc32c::crc32c(block)) {
            return Err(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let hash = [3u8; 32];
        let (h, crc) = encode_header(&hash, 0, 10_000, &payload);
        assert_eq!(h.len(), header_len(10_000));
        assert_eq!(h.len(), FIXED_HEADER + 12);
        let parsed = parse_header(&h).unwrap();
        assert_eq!(
            parsed,
            RecordHeader {
                codec: 0,
                raw_len: 10_000,
                stored_len: 10_000,
                hash,
                crc
            }
        );
        let table = &h[FIXED_HEADER..];
        assert_eq!(verify_blocks(table, 0, &payload), Ok(()));
        assert_eq!(verify_blocks(table, 1, &payload[BLOCK..2 * BLOCK]), Ok(()));
        let mut bad = payload.clone();
        bad[9_000] ^= 1;
        assert_eq!(verify_blocks(table, 0, &bad), Err(2));
        for at in [0, 5, 9, 20, 50, FIXED_HEADER + 3] {
            let mut broken = h.clone();
            broken[at] ^= 0x10;
            assert!(parse_header(&broken).is_err(), "byte {at} flipped");
        }
        assert!(parse_header(&h[..h.len() - 1]).is_err());
    }
}
