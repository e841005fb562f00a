// RocksDB is C++. When librocksdb-sys builds it, it links the C++ runtime
// itself; when it links a prebuilt library (ROCKSDB_LIB_DIR, used on dev
// machines to avoid recompiling RocksDB), nobody does. Linking it here is
// harmless in the first case and required in the second.
fn main() {
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
