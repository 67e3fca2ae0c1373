//! The cluster's native containers (`overlay run`: a namespace running a host command,
//! no image) in the Engine API's shapes, so that `docker ps` through the manager lists
//! them beside Docker's. They are read from the store, not from any dockerd; `docker rm`
//! removes them as `overlay rm` does, and the rest (exec, logs, attach) is left to
//! `overlay` on their host.

use serde_json::{Value, json};

use super::ApiError;
use crate::{
    container::record::{self, ContainerRecord, ContainerStatus, State},
    store::Store,
};

/// What `docker ps` shows as a native container's image.
pub const IMAGE: &str = "(native)";

#[derive(Clone, Debug)]
pub struct NativeContainer {
    pub record: ContainerRecord,
    pub status: Option<ContainerStatus>,
}

/// Every native container with its status.
pub async fn list<S: Store>(store: &S) -> Result<Vec<NativeContainer>, ApiError> {
    let all = record::list_with_status(store).await?;
    Ok(all.into_iter().map(|(record, status)| NativeContainer { record, status }).collect())
}

/// The native container named `name` (or with that ID, or an ID prefix of at least 12).
pub async fn find<S: Store>(store: &S, name: &str) -> Result<Option<NativeContainer>, ApiError> {
    Ok(list(store)
        .await?
        .into_iter()
        .find(|c| c.record.name == name || c.record.id == name || (name.len() >= 12 && c.record.id.starts_with(name))))
}

/// `docker rm` of a native container: what `overlay rm` does.
pub async fn remove<S: Store>(store: &S, container: &NativeContainer) -> Result<(), ApiError> {
    record::remove(store, &container.record.name).await?;
    Ok(())
}

impl NativeContainer {
    pub fn node(&self) -> &str {
        self.status.as_ref().map(|s| s.node_name.as_str()).filter(|n| !n.is_empty()).unwrap_or("-")
    }

    pub fn running(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.state == State::Running)
    }

    /// Docker's state word and status text.
    fn state(&self) -> (&'static str, String) {
        match &self.status {
            Some(s) if s.state == State::Running => ("running", "Up (native)".to_owned()),
            Some(s) => ("exited", format!("Failed: {}", s.message.clone().unwrap_or_default())),
            None if self.record.node_id.is_some() => ("created", "Created (starting, or its node is down)".to_owned()),
            None => ("created", "Created (pending placement)".to_owned()),
        }
    }

    fn networks(&self) -> Value {
        let mut networks = serde_json::Map::new();
        for n in self.status.iter().flat_map(|s| &s.networks) {
            networks.insert(
                n.network.clone(),
                json!({ "NetworkID": n.network_id, "IPAddress": n.ip.to_string(), "EndpointID": "" }),
            );
        }
        Value::Object(networks)
    }

    /// As `GET /containers/json` lists a container, named `/NODE/NAME`.
    pub fn summary(&self) -> Value {
        let (state, status) = self.state();
        let network_mode = self.status.as_ref().and_then(|s| s.networks.first()).map(|n| n.network.clone());
        json!({
            "Id": self.record.id,
            "Names": [format!("/{}/{}", self.node(), self.record.name)],
            "Image": IMAGE,
            "ImageID": "",
            "Command": self.record.command.join(" "),
            "Created": self.record.created_at,
            "Ports": [],
            "Labels": { "overlay.native": "true" },
            "State": state,
            "Status": status,
            "HostConfig": { "NetworkMode": network_mode.unwrap_or_default() },
            "NetworkSettings": { "Networks": self.networks() },
            "Mounts": [],
        })
    }

    /// As `GET /containers/NAME/json` describes a container, as far as a native one has
    /// the fields.
    pub fn inspect(&self) -> Value {
        let (state, status) = self.state();
        json!({
            "Id": self.record.id,
            "Name": format!("/{}/{}", self.node(), self.record.name),
            "Created": self.record.created_at.to_string(),
            "Path": self.record.command.first().cloned().unwrap_or_default(),
            "Args": self.record.command.iter().skip(1).collect::<Vec<_>>(),
            "State": { "Status": state, "Running": self.running(), "Error": status },
            "Image": IMAGE,
            "Config": { "Image": IMAGE, "Cmd": self.record.command, "Labels": { "overlay.native": "true" }, "Tty": false },
            "HostConfig": {},
            "NetworkSettings": { "Networks": self.networks() },
            "Node": { "Name": self.node() },
        })
    }
}
