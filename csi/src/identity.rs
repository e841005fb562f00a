//! The CSI Identity service.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_proto::csi::v1 as csi;
use tessera_proto::csi::v1::identity_server::Identity;
use tessera_proto::csi::v1::plugin_capability::{self, service, volume_expansion};
use tonic::{Request, Response, Status};

use crate::plugin::Plugin;
use crate::DRIVER_NAME;

pub struct IdentityService {
    plugin: Arc<Plugin>,
}

impl IdentityService {
    pub fn new(plugin: Arc<Plugin>) -> IdentityService {
        IdentityService { plugin }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: DRIVER_NAME.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: HashMap::from([
                ("node".to_string(), self.plugin.node_id.clone()),
                (
                    "pools".to_string(),
                    self.plugin
                        .pools
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ]),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        let service = |t: service::Type| csi::PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t as i32 },
            )),
        };
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: vec![
                service(service::Type::ControllerService),
                service(service::Type::VolumeAccessibilityConstraints),
                csi::PluginCapability {
                    r#type: Some(plugin_capability::Type::VolumeExpansion(
                        plugin_capability::VolumeExpansion {
                            r#type: volume_expansion::Type::Online as i32,
                        },
                    )),
                },
            ],
        }))
    }

    async fn probe(
        &self,
        _request: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        // Serving starts only after the node's mounts were restored, and the pools are
        // open for the life of the process: reaching this call means ready.
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}
