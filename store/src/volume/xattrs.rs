//! Extended attributes.

use super::txn::Txn;
use super::Volume;
use crate::error::{Result, StoreError};
use crate::keys::{self, Cf};
use crate::types::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

impl Volume {
    fn xattr_key(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let n = name.as_bytes();
        if n.is_empty() || n.len() > XATTR_NAME_MAX {
            return Err(StoreError::Range);
        }
        Ok(keys::pair_name(self.inner.id, ino, n))
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: XattrFlags) -> Result<()> {
        let vol = &*self.inner;
        let key = self.xattr_key(ino, name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(StoreError::TooBig);
        }
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
        let mut r = txn.get(ino)?;
        let exists = vol.pool.engine().get(Cf::Xattrs, &key)?.is_some();
        match flags {
            XattrFlags::Create if exists => return Err(StoreError::Exists("attribute".into())),
            XattrFlags::Replace if !exists => return Err(StoreError::NoXattr),
            _ => {}
        }
        txn.batch.put(Cf::Xattrs, key, value.to_vec());
        r.ctime = Timestamp::now();
        txn.set(ino, r);
        txn.commit()
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let key = self.xattr_key(ino, name)?;
        let _b = self.inner.enter();
        self.inner.inode(ino)?;
        self.inner
            .pool
            .engine()
            .get(Cf::Xattrs, &key)?
            .ok_or(StoreError::NoXattr)
    }

    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let vol = &*self.inner;
        let _b = vol.enter();
        vol.inode(ino)?;
        let mut out = Vec::new();
        vol.pool.engine().scan(
            Cf::Xattrs,
            &keys::pair(vol.id, ino),
            &keys::pair(vol.id, ino + 1),
            &mut |k, _| {
                out.push(k[16..].to_vec());
                Ok(true)
            },
        )?;
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let vol = &*self.inner;
        let key = self.xattr_key(ino, name)?;
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
        let mut r = txn.get(ino)?;
        if vol.pool.engine().get(Cf::Xattrs, &key)?.is_none() {
            return Err(StoreError::NoXattr);
        }
        txn.batch.delete(Cf::Xattrs, key);
        r.ctime = Timestamp::now();
        txn.set(ino, r);
        txn.commit()
    }
}
