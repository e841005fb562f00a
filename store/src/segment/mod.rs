//! Append-only segment files: where chunk bodies live.
//!
//! A pool's chunk bodies are appended to `<pool>/segments/<id>.seg`, one
//! [`record`] per chunk, each self-describing (magic, hash, lengths, codec,
//! checksums), so a segment can be scanned and verified without RocksDB. One
//! segment is *active* and takes appends; at [`SEGMENT_MAX`] it is synced and
//! *sealed*, and never modified again: only the cleaner deletes it once its
//! live records were copied out. Sealed segments are immutable objects named
//! by id and read by byte range, so a later backend can keep them in an
//! object store unchanged.
//!
//! Crash order: [`SegmentLog::make_durable`] syncs every byte appended so far,
//! and callers run it before committing the RocksDB batch that first
//! references those bytes, so a committed reference always points at durable
//! bytes. A crash can leave a torn record at the active segment's tail: open
//! checks the tail records and truncates at the first one that does not verify,
//! unless the index references it (then it is damage, not a torn write).

pub mod record;

use crate::error::{Result, StoreError};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Size at which the active segment is sealed.
pub const SEGMENT_MAX: u64 = 64 << 20;
/// Every segment starts with this magic and its id (little-endian u64).
pub const SEGMENT_MAGIC: [u8; 8] = *b"TSEGMNT1";
pub const SEGMENT_HEADER: u64 = 16;

/// The segment files of one pool.
pub struct SegmentLog {
    dir: PathBuf,
    max_size: u64,
    active: Mutex<Active>,
    files: RwLock<HashMap<u64, Arc<File>>>,
    /// Serialises syncs so concurrent callers share one `fdatasync`.
    sync_lock: Mutex<()>,
    /// Bytes appended since open, across segments (a logical position).
    appended: AtomicU64,
    /// The part of `appended` known durable.
    synced: AtomicU64,
}

struct Active {
    id: u64,
    file: Arc<File>,
    len: u64,
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    if source.raw_os_error() == Some(libc::ENOSPC) {
        StoreError::DiskFull(format!("{}: {source}", path.display()))
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl SegmentLog {
    /// [`SegmentLog::open_with`] with nothing referenced and segments of `max_size`.
    #[cfg(test)]
    pub fn open_with_max(dir: &Path, max_size: u64) -> Result<SegmentLog> {
        Self::open_with(dir, max_size, &|_, _| Ok(false))
    }

    /// Opens the segments under `dir`, creating the first one in a new pool and
    /// cutting a torn tail off the active one. `referenced(segment, from)` says
    /// whether a committed index entry points at or past offset `from` of that
    /// segment. Such bytes
    /// were made durable before they were committed, so they are never a torn
    /// tail: a bad record there is damage, kept for reads to fail and fsck to name.
    pub fn open_with(
        dir: &Path,
        max_size: u64,
        referenced: &dyn Fn(u64, u64) -> Result<bool>,
    ) -> Result<SegmentLog> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let active = match list_ids(dir)?.last() {
            Some(&id) => recover(dir, id, referenced)?,
            None => create(dir, 1)?,
        };
        let files = HashMap::from([(active.id, active.file.clone())]);
        Ok(SegmentLog {
            dir: dir.to_path_buf(),
            max_size,
            active: Mutex::new(active),
            files: RwLock::new(files),
            sync_lock: Mutex::new(()),
            appended: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        })
    }

    pub fn path_of(&self, id: u64) -> PathBuf {
        path_of(&self.dir, id)
    }

    /// Appends one record (its header and payload) and returns (segment, offset).
    /// The bytes are durable only after [`SegmentLog::make_durable`].
    pub fn append(&self, header: &[u8], payload: &[u8]) -> Result<(u64, u64)> {
        let len = (header.len() + payload.len()) as u64;
        let mut active = self.active.lock();
        if active.len + len > self.max_size && active.len > SEGMENT_HEADER {
            self.seal_locked(&mut active)?;
        }
        let at = active.len;
        let path = || self.path_of(active.id);
        active
            .file
            .write_all_at(header, at)
            .and_then(|_| active.file.write_all_at(payload, at + header.len() as u64))
            .map_err(|e| {
                // Nothing points at a partly written record; the next append overwrites it.
                io_err(&path(), e)
            })?;
        active.len += len;
        self.appended.fetch_add(len, Ordering::SeqCst);
        Ok((active.id, at))
    }

    /// Syncs the active segment and starts a new one.
    fn seal_locked(&self, active: &mut Active) -> Result<()> {
        active
            .file
            .sync_data()
            .map_err(|e| io_err(&self.path_of(active.id), e))?;
        let done = self.appended.load(Ordering::SeqCst);
        self.synced.fetch_max(done, Ordering::SeqCst);
        *active = create(&self.dir, active.id + 1)?;
        self.files.write().insert(active.id, active.file.clone());
        Ok(())
    }

    /// Seals the active segment if it holds any record, so the cleaner may take it.
    pub fn seal_active(&self) -> Result<()> {
        let mut active = self.active.lock();
        if active.len > SEGMENT_HEADER {
            self.seal_locked(&mut active)?;
        }
        Ok(())
    }

    /// Makes every record appended so far durable. Concurrent callers share a sync.
    pub fn make_durable(&self) -> Result<()> {
        let target = self.appended.load(Ordering::SeqCst);
        if self.synced.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let _one = self.sync_lock.lock();
        if self.synced.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let (id, file, upto) = {
            let a = self.active.lock();
            (a.id, a.file.clone(), self.appended.load(Ordering::SeqCst))
        };
        // Earlier segments were synced when they were sealed.
        file.sync_data().map_err(|e| io_err(&self.path_of(id), e))?;
        self.synced.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }

    fn file(&self, id: u64) -> Result<Arc<File>> {
        if let Some(f) = self.files.read().get(&id) {
            return Ok(f.clone());
        }
        let path = self.path_of(id);
        let file = Arc::new(File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Corrupt(format!("segment {} is missing", path.display()))
            } else {
                io_err(&path, e)
            }
        })?);
        Ok(self.files.write().entry(id).or_insert(file).clone())
    }

    /// Reads exactly `buf.len()` bytes at `offset` of segment `id`.
    pub fn read_at(&self, id: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file = self.file(id)?;
        file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt(format!(
                    "segment {id:x} ends before byte {}",
                    offset + buf.len() as u64
                ))
            } else {
                io_err(&self.path_of(id), e)
            }
        })
    }

    /// Asks the kernel to start reading `len` bytes at `offset` of segment `id`
    /// into the page cache (`posix_fadvise(WILLNEED)`); a hint, so failures are ignored.
    pub fn prefetch(&self, id: u64, offset: u64, len: u64) {
        if let Ok(file) = self.file(id) {
            // SAFETY: the fd is open for as long as `file` lives; fadvise only reads it.
            unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&*file),
                    offset as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
        }
    }

    pub fn active_id(&self) -> u64 {
        self.active.lock().id
    }

    /// Every segment with its length in bytes, in id order.
    pub fn segments(&self) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for id in list_ids(&self.dir)? {
            let path = self.path_of(id);
            match std::fs::metadata(&path) {
                Ok(m) => out.push((id, m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Ok(out)
    }

    /// Deletes a sealed segment. The caller made sure nothing points into it.
    pub fn remove(&self, id: u64) -> Result<()> {
        if id == self.active_id() {
            return Err(StoreError::Invalid(format!(
                "segment {id:x} is the active one"
            )));
        }
        self.files.write().remove(&id);
        let path = self.path_of(id);
        std::fs::remove_file(&path).map_err(|e| io_err(&path, e))
    }

    /// Calls `visit(offset, header, payload)` for each record of a segment that
    /// verifies, in order; returns the offset where verification stopped and the
    /// segment's length. (Tests check segments with it; a salvage tool would too.)
    #[cfg(test)]
    pub fn scan(&self, id: u64, visit: &mut RecordVisitor) -> Result<(u64, u64)> {
        let file = self.file(id)?;
        let len = file
            .metadata()
            .map_err(|e| io_err(&self.path_of(id), e))?
            .len();
        let mut at = SEGMENT_HEADER;
        while at < len {
            let Some((header, payload)) = read_record_at(&file, at, len) else {
                break;
            };
            visit(at, &header, &payload)?;
            at += record::record_len(header.stored_len);
        }
        Ok((at, len))
    }
}

fn path_of(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

fn create(dir: &Path, id: u64) -> Result<Active> {
    let path = path_of(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    let mut header = SEGMENT_MAGIC.to_vec();
    header.extend_from_slice(&id.to_le_bytes());
    file.write_all_at(&header, 0)
        .map_err(|e| io_err(&path, e))?;
    file.sync_all().map_err(|e| io_err(&path, e))?;
    // The new name must survive a power loss before anything points into it.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    Ok(Active {
        id,
        file: Arc::new(file),
        len: SEGMENT_HEADER,
    })
}

/// Opens the newest segment for appending after the last record that verifies.
fn recover(dir: &Path, id: u64, referenced: &dyn Fn(u64, u64) -> Result<bool>) -> Result<Active> {
    let path = path_of(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    let file_len = file.metadata().map_err(|e| io_err(&path, e))?.len();
    let mut head = [0u8; SEGMENT_HEADER as usize];
    if file_len < SEGMENT_HEADER
        || file.read_exact_at(&mut head, 0).is_err()
        || head[..8] != SEGMENT_MAGIC
    {
        // Created but its header never reached the disk: start it afresh.
        drop(file);
        return create(dir, id);
    }
    let mut end = SEGMENT_HEADER;
    while end < file_len {
        match check_record_at(&file, end, file_len) {
            RecordCheck::Good(len) => end += len,
            // A whole record with a bad block before other records is damage, not a
            // torn tail: keep it (reads of it fail, fsck names it) and go on.
            RecordCheck::BadPayload(len) if end + len < file_len => end += len,
            _ => break,
        }
    }
    if end < file_len && valid_record_after(&file, end, file_len) {
        tracing::error!(
            segment = %path.display(),
            at = end,
            "damaged record in the middle of the active segment; keeping what follows"
        );
        end = file_len;
    }
    if end < file_len && referenced(id, end)? {
        tracing::error!(
            segment = %path.display(),
            at = end,
            "damaged record at the end of the active segment that the index references; keeping it"
        );
        end = file_len;
    }
    if end < file_len {
        tracing::warn!(
            segment = %path.display(),
            kept = end,
            dropped = file_len - end,
            "cutting a torn tail off the active segment"
        );
        file.set_len(end).map_err(|e| io_err(&path, e))?;
        file.sync_all().map_err(|e| io_err(&path, e))?;
    }
    Ok(Active {
        id,
        file: Arc::new(file),
        len: end,
    })
}

fn list_ids(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(id) = u64::from_str_radix(stem, 16) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Called by [`SegmentLog::scan`] with each record's offset, header and payload.
#[cfg(test)]
type RecordVisitor<'a> = dyn FnMut(u64, &record::RecordHeader, &[u8]) -> Result<()> + 'a;

/// Reads and verifies the whole record at `at`.
#[cfg(test)]
fn read_record_at(file: &File, at: u64, file_len: u64) -> Option<(record::RecordHeader, Vec<u8>)> {
    let mut fixed = [0u8; record::FIXED_HEADER];
    if at + record::FIXED_HEADER as u64 > file_len {
        return None;
    }
    file.read_exact_at(&mut fixed, at).ok()?;
    let stored_len = record::peek_stored_len(&fixed)?;
    let total = record::record_len(stored_len);
    if at + total > file_len {
        return None;
    }
    let mut buf = vec![0u8; total as usize];
    file.read_exact_at(&mut buf, at).ok()?;
    let hlen = record::header_len(stored_len);
    let header = record::parse_header(&buf[..hlen]).ok()?;
    record::verify_blocks(&buf[record::FIXED_HEADER..hlen], 0, &buf[hlen..]).ok()?;
    buf.drain(..hlen);
    Some((header, buf))
}

enum RecordCheck {
    Good(u64),
    /// The header verifies but a payload block does not.
    BadPayload(u64),
    /// No record header here, or the record runs past the end of the file.
    NoRecord,
}

fn check_record_at(file: &File, at: u64, file_len: u64) -> RecordCheck {
    let mut fixed = [0u8; record::FIXED_HEADER];
    if at + record::FIXED_HEADER as u64 > file_len || file.read_exact_at(&mut fixed, at).is_err() {
        return RecordCheck::NoRecord;
    }
    let Some(stored_len) = record::peek_stored_len(&fixed) else {
        return RecordCheck::NoRecord;
    };
    let total = record::record_len(stored_len);
    if at + total > file_len {
        return RecordCheck::NoRecord;
    }
    let mut buf = vec![0u8; total as usize];
    if file.read_exact_at(&mut buf, at).is_err() {
        return RecordCheck::NoRecord;
    }
    let hlen = record::header_len(stored_len);
    if record::parse_header(&buf[..hlen]).is_err() {
        return RecordCheck::NoRecord;
    }
    match record::verify_blocks(&buf[record::FIXED_HEADER..hlen], 0, &buf[hlen..]) {
        Ok(()) => RecordCheck::Good(total),
        Err(_) => RecordCheck::BadPayload(total),
    }
}

/// Whether a record that verifies starts anywhere in `(from, file_len)`.
fn valid_record_after(file: &File, from: u64, file_len: u64) -> bool {
    let mut rest = vec![0u8; (file_len - from) as usize];
    if file.read_exact_at(&mut rest, from).is_err() {
        return false;
    }
    (1..rest.len().saturating_sub(record::FIXED_HEADER))
        .filter(|&i| rest[i..i + 4] == record::MAGIC)
        .any(|i| {
            matches!(
                check_record_at(file, from + i as u64, file_len),
                RecordCheck::Good(_)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(log: &SegmentLog, n: u8, len: usize) -> (u64, u64, usize) {
        let payload = vec![n; len];
        let (h, _) = record::encode_header(&[n; 32], 0, len as u32, &payload);
        let (seg, off) = log.append(&h, &payload).unwrap();
        (seg, off, h.len())
    }

    #[test]
    fn appends_rotate_and_a_torn_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open_with_max(dir.path(), 64 << 10).unwrap();
        let mut at = Vec::new();
        for n in 0..10u8 {
            at.push(put(&log, n, 20_000));
        }
        log.make_durable().unwrap();
        assert!(
            at.last().unwrap().0 > 1,
            "segments rotate at the maximum size"
        );
        let (seg, off, hlen) = at[3];
        let mut back = vec![0u8; 20_000];
        log.read_at(seg, off + hlen as u64, &mut back).unwrap();
        assert_eq!(back, vec![3u8; 20_000]);
        let active = log.active_id();
        let before = log.segments().unwrap();
        drop(log);

        // Half a record at the tail, as a crash mid-append leaves it.
        let path = dir.path().join(format!("{active:016x}.seg"));
        let len = std::fs::metadata(&path).unwrap().len();
        let payload = vec![9u8; 5000];
        let (h, _) = record::encode_header(&[9; 32], 0, 5000, &payload);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&h, len).unwrap();
        f.write_all_at(&payload[..100], len + h.len() as u64)
            .unwrap();
        drop(f);
        let log = SegmentLog::open_with_max(dir.path(), 64 << 10).unwrap();
        assert_eq!(log.segments().unwrap(), before);
        let (seg, off, _) = put(&log, 11, 100);
        assert_eq!((seg, off), (active, len));
        let mut seen = 0;
        log.scan(active, &mut |_, h, p| {
            assert_eq!(p, vec![h.hash[0]; h.stored_len as usize]);
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert!(seen >= 2);
    }
}
