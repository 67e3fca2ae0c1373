//! The plugin's settings and their defaults, checked before anything is made.

use std::path::PathBuf;

use super::{DEFAULT_DOCKER_SOCKET, DEFAULT_STATE_DIR, PLUGIN_DIR, error::DockerError};
use crate::network::SubnetPool;

/// The plugin's settings, checked by [`PluginConfig::validate`] before anything is made.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// The driver and IPAM driver name users give Docker.
    pub name: String,
    /// The socket dockerd discovers: `/run/docker/plugins/NAME.sock`.
    pub socket: PathBuf,
    /// The local dockerd's API: network names, container names, the mirror. `None`:
    /// networks created here are named `docker-ID12`, containers `docker-EP12`, and
    /// nothing is mirrored.
    pub docker_socket: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// MTU of container interfaces: the underlay's minus the VXLAN overhead (50).
    pub mtu: u32,
    /// Subnets for `docker network create` without `--subnet`.
    pub subnet_pool: SubnetPool,
    /// Create the networks made through Docker on other hosts in this dockerd too.
    pub mirror: bool,
}

impl PluginConfig {
    /// The defaults for plugin `name`: its socket under [`PLUGIN_DIR`], dockerd at
    /// [`DEFAULT_DOCKER_SOCKET`], state under [`DEFAULT_STATE_DIR`], the mirror on.
    pub fn new(name: &str, mtu: u32) -> Self {
        PluginConfig {
            name: name.to_owned(),
            socket: PathBuf::from(PLUGIN_DIR).join(format!("{name}.sock")),
            docker_socket: Some(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            mtu,
            subnet_pool: SubnetPool::default(),
            mirror: true,
        }
    }

    pub fn validate(&self) -> Result<(), DockerError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(DockerError::Config(format!(
                "plugin name {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        if !(576..=9000).contains(&self.mtu) {
            return Err(DockerError::Config(format!("container MTU {} is outside 576..=9000", self.mtu)));
        }
        if self.socket.as_os_str().is_empty() || self.state_dir.as_os_str().is_empty() {
            return Err(DockerError::Config("the plugin socket and the state directory must be given".into()));
        }
        Ok(())
    }
}
