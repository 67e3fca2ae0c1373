//! Placement of containers on nodes: spread (the default), binpack, random; a pinned
//! node or label constraints narrow the candidates first. Pure: the leading manager's
//! placement feeds it the live, healthy nodes and the current placement.

use std::collections::BTreeMap;

use crate::container::record::Strategy;

/// What the scheduler knows of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Containers placed on it now.
    pub containers: usize,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no live node to run the container on: start an agent (`overlay agent`)")]
    NoNodes,
    #[error("no live node named or with ID {0:?}; `overlay list` shows the live nodes")]
    NoSuchNode(String),
    #[error("no live node has the labels {0}; `overlay info` shows each node's labels")]
    NoMatch(String),
}

/// Picks the node. Ties go to the node whose name sorts first, so placement is
/// predictable; `random` draws from `seed`.
pub fn place(
    candidates: &[Candidate],
    pinned: Option<&str>,
    constraints: &BTreeMap<String, String>,
    strategy: Strategy,
    seed: u64,
) -> Result<String, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    let mut pool: Vec<&Candidate> = candidates.iter().collect();
    if let Some(node) = pinned {
        pool.retain(|c| c.id == node || c.name == node);
        if pool.is_empty() {
            return Err(PlacementError::NoSuchNode(node.to_owned()));
        }
    }
    pool.retain(|c| constraints.iter().all(|(k, v)| c.labels.get(k) == Some(v)));
    if pool.is_empty() {
        let wanted: Vec<String> = constraints.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(PlacementError::NoMatch(wanted.join(", ")));
    }
    pool.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let chosen = match strategy {
        Strategy::Spread => pool.iter().min_by_key(|c| c.containers),
        Strategy::Binpack => pool.iter().rev().max_by_key(|c| c.containers),
        Strategy::Random => pool.get((seed % pool.len() as u64) as usize),
    };
    Ok(chosen.expect("pool is not empty").id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<Candidate> {
        [("n1", "agt01", 2, "ssd"), ("n2", "agt02", 0, "hdd"), ("n3", "agt03", 1, "ssd")]
            .into_iter()
            .map(|(id, name, containers, disk)| Candidate {
                id: id.into(),
                name: name.into(),
                labels: [("disk".to_owned(), disk.to_owned())].into(),
                containers,
            })
            .collect()
    }

    #[test]
    fn spread_binpack_random() {
        let none = BTreeMap::new();
        assert_eq!(place(&nodes(), None, &none, Strategy::Spread, 0).unwrap(), "n2");
        assert_eq!(place(&nodes(), None, &none, Strategy::Binpack, 0).unwrap(), "n1");
        for seed in 0..6 {
            assert!(
                ["n1", "n2", "n3"].contains(&place(&nodes(), None, &none, Strategy::Random, seed).unwrap().as_str())
            );
        }
    }

    #[test]
    fn spread_ties_go_to_the_first_name() {
        let mut n = nodes();
        for c in &mut n {
            c.containers = 1;
        }
        assert_eq!(place(&n, None, &BTreeMap::new(), Strategy::Spread, 0).unwrap(), "n1");
    }

    #[test]
    fn pinning_and_constraints() {
        let ssd: BTreeMap<_, _> = [("disk".to_owned(), "ssd".to_owned())].into();
        assert_eq!(place(&nodes(), None, &ssd, Strategy::Spread, 0).unwrap(), "n3");
        assert_eq!(place(&nodes(), Some("agt01"), &BTreeMap::new(), Strategy::Spread, 0).unwrap(), "n1");
        assert_eq!(
            place(&nodes(), Some("agt09"), &BTreeMap::new(), Strategy::Spread, 0),
            Err(PlacementError::NoSuchNode("agt09".into()))
        );
        let nvme: BTreeMap<_, _> = [("disk".to_owned(), "nvme".to_owned())].into();
        assert!(matches!(place(&nodes(), None, &nvme, Strategy::Spread, 0), Err(PlacementError::NoMatch(_))));
        assert_eq!(place(&[], None, &BTreeMap::new(), Strategy::Spread, 0), Err(PlacementError::NoNodes));
    }
}
