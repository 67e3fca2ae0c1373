//! The cluster every fault scenario starts from: an etcd cluster of one or more members
//! (one per store host), a manager, container agents on `agt01…`, and network `net1`.

use std::{net::Ipv4Addr, time::Duration};

use overlay::store::Entry;

use crate::{
    Lab,
    cluster::{self, Daemon, Scratch},
    etcd::EtcdCluster,
    stores::{Backend, StoreServer},
};

pub const NETWORK: &str = "net1";
pub const SUBNET: &str = "10.0.7.0/24";

pub struct Cluster {
    pub lab: Lab,
    pub scratch: Scratch,
    pub etcd: EtcdCluster,
    /// The URL with every member: `etcd://A,B,C/PREFIX`.
    pub store: String,
    pub prefix: String,
    /// `agt01`, `agt02`, …, in the order of [`Cluster::agents`].
    pub agent_names: Vec<String>,
    /// `None` while an agent is stopped.
    pub agents: Vec<Option<Daemon>>,
    pub manager: Daemon,
    pub ttl_secs: u64,
    /// More options of each agent (e.g. `--docker ...`), from its next start on.
    pub agent_extra: Vec<Vec<String>>,
    /// The store when it is ZooKeeper (on `zk1`, 192.168.1.131); `etcd` has no member then.
    pub zookeeper: Option<StoreServer>,
}

impl Cluster {
    /// `members` etcd members on `etcd1…` (192.168.1.131…) and `agents` agents on
    /// `agt01…` (192.168.1.141…), each agent with a lease of `ttl_secs`; `net1` created.
    pub fn start(tag: &str, members: usize, agents: usize, ttl_secs: u64) -> anyhow::Result<Self> {
        Self::start_on(Backend::Etcd, tag, members, agents, ttl_secs)
    }

    /// [`Cluster::start`] on `backend`: with ZooKeeper, one server on `zk1` (`members`
    /// is then ignored).
    pub fn start_on(backend: Backend, tag: &str, members: usize, agents: usize, ttl_secs: u64) -> anyhow::Result<Self> {
        let members = if backend == Backend::Etcd { members } else { 0 };
        let mut builder = Lab::builder(tag);
        for i in 1..=members {
            builder = builder.host(&format!("etcd{i}"), &format!("192.168.1.{}/24", 130 + i));
        }
        if backend == Backend::ZooKeeper {
            builder = builder.host("zk1", "192.168.1.131/24");
        }
        let agent_names: Vec<String> = (1..=agents).map(|i| format!("agt{i:02}")).collect();
        for (i, name) in agent_names.iter().enumerate() {
            builder = builder.host(name, &format!("192.168.1.{}/24", 141 + i));
        }
        let lab = builder.build()?;
        let scratch = Scratch::new(tag)?;
        let etcd_hosts: Vec<&crate::Host> = (1..=members).map(|i| lab.host(&format!("etcd{i}"))).collect();
        let etcd = EtcdCluster::start(&etcd_hosts)?;
        let prefix = format!("{tag}_cluster");
        let (zookeeper, store, manager_host) = match backend {
            Backend::Etcd => (None, etcd.url(&prefix), "etcd1"),
            Backend::ZooKeeper => {
                let server = StoreServer::start(backend, lab.host("zk1"))?;
                let url = server.url(&prefix);
                (Some(server), url, "zk1")
            }
        };
        let manager = cluster::start_manager(&scratch, &store, lab.host(manager_host))?;
        let agent_extra = vec![Vec::new(); agents];
        let mut cluster = Cluster {
            lab,
            scratch,
            etcd,
            store,
            prefix,
            agent_names,
            agents: Vec::new(),
            manager,
            ttl_secs,
            agent_extra,
            zookeeper,
        };
        for i in 0..agents {
            let agent = cluster.spawn_agent(i)?;
            cluster.agents.push(Some(agent));
        }
        let hosts: Vec<&crate::Host> = cluster.agent_names.iter().map(|n| cluster.lab.host(n)).collect();
        cluster::wait_for_list(cluster.lab.host(manager_host), &cluster.store, &hosts, Duration::from_secs(30))?;
        cluster.overlay(0, &["network", "create", "--subnet", SUBNET, NETWORK])?;
        Ok(cluster)
    }

    fn spawn_agent(&self, index: usize) -> anyhow::Result<Daemon> {
        cluster::start_container_agent_ttl_with(
            &self.scratch,
            &self.store,
            &self.lab,
            &self.agent_names[index],
            self.ttl_secs,
            &self.agent_extra[index],
        )
    }

    /// SIGKILL of agent `index`.
    pub fn kill_agent(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut agent) = self.agents[index].take() {
            agent.kill()?;
        }
        Ok(())
    }

    /// Starts agent `index` again (after [`Cluster::kill_agent`]).
    pub fn start_agent(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.agents[index].is_none(), "agent {} still runs", self.agent_names[index]);
        self.agents[index] = Some(self.spawn_agent(index)?);
        Ok(())
    }

    pub fn host(&self, index: usize) -> &crate::Host {
        self.lab.host(&self.agent_names[index])
    }

    /// `overlay ARGS --store …` on agent host `index`: its stdout.
    pub fn overlay(&self, index: usize, args: &[&str]) -> anyhow::Result<String> {
        cluster::overlay_ok(&self.lab, &self.agent_names[index], &self.store, args)
    }

    /// `overlay run --node agtNN --name NAME --net net1 -- sleep 3600`: its namespace and address.
    pub fn run(&self, index: usize, name: &str) -> anyhow::Result<(String, Ipv4Addr)> {
        cluster::run_container(&self.lab, &self.store, &self.agent_names[index], name, NETWORK, &[])
    }

    /// The namespace of container `name` run by agent `index`.
    pub fn container_ns(&self, index: usize, name: &str) -> String {
        format!("{}{name}", cluster::container_netns_prefix(&self.lab, self.host(index)))
    }

    /// Everything under `v1/`, read through every member.
    pub fn snapshot(&self) -> anyhow::Result<Vec<Entry>> {
        Ok(cluster::list_raw(self.host(0), &self.store, "v1/")?.entries)
    }

    /// Agents that exited by themselves.
    pub fn dead_agents(&mut self) -> Vec<String> {
        let names = self.agent_names.clone();
        self.agents
            .iter_mut()
            .zip(names)
            .filter_map(|(agent, name)| {
                let exited = agent.as_mut().is_some_and(|a| !a.running());
                exited.then_some(name)
            })
            .collect()
    }

    /// Prints the logs of every daemon and etcd member when `result` is an error.
    pub fn report<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            for agent in self.agents.iter().flatten() {
                eprintln!("{}", agent.log_tail());
            }
            eprintln!("{}", self.manager.log_tail());
            eprintln!("{}", self.etcd.logs());
            if let Some(zookeeper) = &self.zookeeper {
                eprintln!("{}", zookeeper.logs());
            }
        }
        result
    }
}
