//! # tessera-proto: generated gRPC code
//!
//! Owns the wire definitions: Tessera's admin API (`tessera/admin/v1/admin.proto`),
//! which the CLI uses to reach a server holding a pool. Knows nothing of how
//! the calls are served.

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("tessera.admin.v1");
    }
}
