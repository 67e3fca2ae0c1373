//! What the plugin must remember across its own restarts, kept in one JSON file under
//! the state directory: which cluster network each Docker network of this host is
//! bound to, and each Docker endpoint of this host (address, interfaces, container
//! name). Docker's network and endpoint IDs are this host's only, so none of this goes
//! to the store; what other hosts need (the endpoint records) is published from it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::DockerError;

const FILE: &str = "docker-plugin.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Binding {
    /// Docker created the network; the cluster network is being created or found (its
    /// name comes from dockerd's API once the creation is stored there).
    Pending,
    Bound {
        cluster_id: String,
        name: String,
        vni: u32,
    },
    /// The cluster refused it (the name is taken with another subnet, ...).
    Failed {
        message: String,
    },
}

/// A Docker network of this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerNetwork {
    pub docker_id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub binding: Binding,
    /// dockerd has been seen to have this network (it stores a network only after the
    /// driver's CreateNetwork). Once it has, a network dockerd no longer lists is gone
    /// from it. Networks saved before this was kept were stored long ago.
    #[serde(default = "stored_long_ago")]
    pub known_to_docker: bool,
}

fn stored_long_ago() -> bool {
    true
}

impl DockerNetwork {
    pub fn cluster_id(&self) -> Option<&str> {
        match &self.binding {
            Binding::Bound { cluster_id, .. } => Some(cluster_id),
            _ => None,
        }
    }
}

/// A Docker endpoint of this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEndpoint {
    pub id: String,
    pub docker_network: String,
    pub cluster_network: String,
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    /// The IPAM allocation's endpoint ID (`docker-…`), when the address is the cluster's.
    pub allocation: Option<String>,
    pub host_interface: String,
    pub peer_interface: String,
    pub joined: bool,
    /// The container's name as dockerd reports it, once known.
    pub container: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its network is internal: no way out, nothing published.
    #[serde(default)]
    pub internal: bool,
    /// What `docker run -p` publishes on this host for it.
    #[serde(default)]
    pub ports: Vec<crate::egress::PortMapping>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub networks: BTreeMap<String, DockerNetwork>,
    pub endpoints: BTreeMap<String, DockerEndpoint>,
    /// Cluster networks removed from this host's Docker while still in use elsewhere:
    /// the mirror does not bring them back (creating one again here binds it again).
    #[serde(default)]
    pub declined: BTreeSet<String>,
}

impl State {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// The saved state, or an empty one if there is none yet.
    pub fn load(state_dir: &Path) -> Result<State, DockerError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DockerError::State {
                path,
                message: format!("{e}; move the file away to start from an empty state"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(DockerError::State { path, message: e.to_string() }),
        }
    }

    /// Writes the state atomically (a temporary file renamed over the old one).
    pub fn save(&self, state_dir: &Path) -> Result<(), DockerError> {
        let path = Self::path(state_dir);
        let err = |e: std::io::Error| DockerError::State { path: path.clone(), message: e.to_string() };
        std::fs::create_dir_all(state_dir).map_err(err)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| DockerError::State { path: path.clone(), message: format!("encoding: {e}") })?;
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// The Docker network of this host bound to (or being bound to) `subnet`.
    pub fn network_with_subnet(&self, subnet: Ipv4Net) -> Option<&DockerNetwork> {
        self.networks.values().find(|n| n.subnet == subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("ovt-docker-state-{:08x}", rand::random::<u32>()));
        assert_eq!(State::load(&dir).unwrap(), State::default());
        let mut state = State::default();
        state.networks.insert(
            "d1".into(),
            DockerNetwork {
                docker_id: "d1".into(),
                subnet: "10.0.9.0/24".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 0, 9, 1),
                internal: false,
                binding: Binding::Bound { cluster_id: "c1".into(), name: "my_network".into(), vni: 4096 },
                known_to_docker: false,
            },
        );
        state.save(&dir).unwrap();
        let loaded = State::load(&dir).unwrap();
        assert_eq!(loaded, state);
        assert!(loaded.network_with_subnet("10.0.9.0/24".parse().unwrap()).is_some());
        // A file from before `known_to_docker` was kept: its networks were stored long ago.
        let old = r#"{"networks":{"d1":{"docker_id":"d1","subnet":"10.0.9.0/24","gateway":"10.0.9.1",
            "internal":false,"binding":{"status":"pending"}}},"endpoints":{}}"#;
        std::fs::write(State::path(&dir), old).unwrap();
        assert!(State::load(&dir).unwrap().networks["d1"].known_to_docker);
        std::fs::write(State::path(&dir), b"{not json").unwrap();
        let error = State::load(&dir).unwrap_err().to_string();
        assert!(error.contains("move the file away"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
