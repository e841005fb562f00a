//! # tessera-proto: generated gRPC code
//!
//! Owns the wire definitions, compiled without a system `protoc`:
//! - Tessera's admin API (`tessera/admin/v1/admin.proto`), which the CLI uses to reach
//!   the server holding a pool;
//! - the Container Storage Interface, `csi/v1/csi.proto` (spec v1.9.0, vendored; see
//!   `proto/README.md`), served by `tessera-csi`.
//!
//! Knows nothing of how the calls are served.

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("tessera.admin.v1");
    }
}

pub mod csi {
    pub mod v1 {
        #![allow(clippy::all, rustdoc::invalid_html_tags, rustdoc::bare_urls)]
        tonic::include_proto!("csi.v1");
    }
}
