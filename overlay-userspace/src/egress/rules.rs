//! The agent's own nftables table, `ip overlay`, in the host's namespace: the only
//! netfilter state the agent makes, so removing it is exact and never touches anyone
//! else's rules. Built with the `nftables` crate's typed JSON schema and applied with
//! `nft -j -f -`, one transaction per change (a packet sees the old rules or the new,
//! never a mix).
//!
//! ```text
//! table ip overlay
//!   chain prerouting  (nat, dstnat)     jump published_dnat    outside → published port
//!   chain output      (nat, -100)       jump published_dnat    this host → published port
//!   chain postrouting (nat, srcnat)     jump networks_nat      masquerade per network
//!   chain forward     (filter, filter)  jump published_fwd     published ports, counted
//!                                       jump networks_fwd      replies in, egress out, the rest dropped
//! ```
//!
//! Two parts change independently, each by flushing and refilling its own chains: the
//! networks (from the cluster's networks) and the published ports (from the containers
//! of this host). The base chains hold only the jumps. Counters are named objects
//! (`net_*`, `port_*`), so they survive a refill and go when what they count goes.
//! Conntrack keeps each connection's translation, so a refill, or an agent restart that
//! rewrites the same rules, never breaks a connection.

use std::{borrow::Cow, collections::BTreeSet, net::Ipv4Addr};

use ipnet::Ipv4Net;
use nftables::{
    batch::Batch,
    expr::{CT, CTDir, Expression, Fib, FibFlag, FibResult, NamedExpression, Payload, PayloadField, Prefix},
    schema::{self, Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table},
    stmt::{self, Match, NAT, Operator, Statement},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};
use serde::Deserialize;

use super::{EgressError, ports::PortMapping};

pub const TABLE: &str = "overlay";
const FAMILY: NfFamily = NfFamily::IP;

const PUBLISHED_DNAT: &str = "published_dnat";
const PUBLISHED_FWD: &str = "published_fwd";
const NETWORKS_NAT: &str = "networks_nat";
const NETWORKS_FWD: &str = "networks_fwd";

/// What the networks part holds for one overlay network of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetworkRules {
    pub vni: u32,
    pub name: String,
    pub subnet: Ipv4Net,
    /// Not internal: masqueraded out, replies let back in.
    pub egress: bool,
}

/// One published port of one container.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRule {
    /// Who published it: `container/NAME` or `docker/ENDPOINT`.
    pub owner: String,
    pub ip: Ipv4Addr,
    pub mapping: PortMapping,
}

impl PortRule {
    /// The rule comment, from which a restarted agent reads back what is published.
    fn comment(&self) -> String {
        let m = &self.mapping;
        format!("{} {}/{} {}:{}", self.owner, m.host_port, m.protocol.as_str(), self.ip, m.port)
    }

    fn from_comment(comment: &str) -> Option<PortRule> {
        let mut words = comment.split(' ');
        let (owner, host, target) = (words.next()?, words.next()?, words.next()?);
        let (host_port, protocol) = host.split_once('/')?;
        let (ip, port) = target.split_once(':')?;
        let mapping: PortMapping = format!("{host_port}:{port}/{protocol}").parse().ok()?;
        Some(PortRule { owner: owner.to_owned(), ip: ip.parse().ok()?, mapping })
    }
}

/// Counter names: what `overlay stats` and the metrics read back.
pub mod counter {
    use super::PortMapping;

    pub fn egress_out(vni: u32) -> String {
        format!("net_{vni}_out")
    }
    pub fn egress_in(vni: u32) -> String {
        format!("net_{vni}_in")
    }
    pub fn blocked(vni: u32) -> String {
        format!("net_{vni}_blocked")
    }
    pub fn port_in(m: &PortMapping) -> String {
        format!("port_{}_{}_in", m.protocol.as_str(), m.host_port)
    }
    pub fn port_out(m: &PortMapping) -> String {
        format!("port_{}_{}_out", m.protocol.as_str(), m.host_port)
    }
}

fn s(text: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(text.to_owned()))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

fn prefix(net: Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn ct(key: &'static str, dir: Option<CTDir>) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT { key: key.into(), family: None, dir }))
}

fn matches(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn named_counter(name: String) -> Statement<'static> {
    Statement::Counter(stmt::Counter::Named(Cow::Owned(name)))
}

fn rule(chain: &'static str, expr: Vec<Statement<'static>>, comment: String) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: expr.into(),
        comment: Some(comment.into()),
        ..Rule::default()
    })
}

fn chain(name: &'static str) -> Chain<'static> {
    Chain { family: FAMILY, table: TABLE.into(), name: name.into(), ..Chain::default() }
}

fn base_chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain { _type: Some(kind), hook: Some(hook), prio: Some(prio), policy: Some(NfChainPolicy::Accept), ..chain(name) }
}

fn table() -> Table<'static> {
    Table { family: FAMILY, name: TABLE.into(), handle: None }
}

fn counter_object(name: String) -> NfListObject<'static> {
    NfListObject::Counter(schema::Counter {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        handle: None,
        packets: None,
        bytes: None,
    })
}

fn jump(target: &'static str) -> Statement<'static> {
    Statement::Jump(stmt::JumpTarget { target: target.into() })
}

/// The table, its chains and the jumps of its base chains; what the parts fill is kept.
pub fn skeleton() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    let bases = [
        (base_chain("prerouting", NfChainType::NAT, NfHook::Prerouting, -100), vec![PUBLISHED_DNAT]),
        (base_chain("output", NfChainType::NAT, NfHook::Output, -100), vec![PUBLISHED_DNAT]),
        (base_chain("postrouting", NfChainType::NAT, NfHook::Postrouting, 100), vec![NETWORKS_NAT]),
        (base_chain("forward", NfChainType::Filter, NfHook::Forward, 0), vec![PUBLISHED_FWD, NETWORKS_FWD]),
    ];
    for name in [PUBLISHED_DNAT, PUBLISHED_FWD, NETWORKS_NAT, NETWORKS_FWD] {
        batch.add(NfListObject::Chain(chain(name)));
    }
    for (base, targets) in bases {
        let name = base.name.clone();
        batch.add(NfListObject::Chain(base.clone()));
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(base)));
        for target in targets {
            let mut jump_rule = Rule {
                family: FAMILY,
                table: TABLE.into(),
                chain: name.clone(),
                expr: vec![jump(target)].into(),
                ..Rule::default()
            };
            jump_rule.comment = None;
            batch.add(NfListObject::Rule(jump_rule));
        }
    }
    batch.to_nftables()
}

/// Flushes `chains`, adds `counters` and `rules`, and deletes the counters of the part
/// that are no longer wanted (`stale`), in one transaction.
fn part(
    chains: &[&'static str],
    counters: &BTreeSet<String>,
    stale: &BTreeSet<String>,
    rules: Vec<NfListObject<'static>>,
) -> Nftables<'static> {
    let mut batch = Batch::new();
    for name in chains {
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(chain(name))));
    }
    for name in counters {
        batch.add(counter_object(name.clone()));
    }
    for rule in rules {
        batch.add(rule);
    }
    for name in stale.difference(counters) {
        batch.delete(counter_object(name.clone()));
    }
    batch.to_nftables()
}

/// The networks part: per network, masquerade of its containers' new connections
/// (egress, and a container reaching a published port through its own host), and in
/// the forward chain its egress counted each way and everything else to it dropped.
/// That drop is what keeps an underlay peer that routes the subnet at this host out.
pub fn networks(networks: &[NetworkRules], stale: &BTreeSet<String>) -> (Nftables<'static>, BTreeSet<String>) {
    let mut counters = BTreeSet::new();
    let mut rules = Vec::new();
    for n in networks {
        let what = format!("network {} (VNI {}, {})", n.name, n.vni, n.subnet);
        if n.egress {
            rules.push(rule(
                NETWORKS_NAT,
                vec![matches(payload("ip", "saddr"), Operator::EQ, prefix(n.subnet)), Statement::Masquerade(None)],
                format!("egress of {what}"),
            ));
            let (out, back) = (counter::egress_out(n.vni), counter::egress_in(n.vni));
            rules.push(rule(
                NETWORKS_FWD,
                vec![
                    matches(payload("ip", "daddr"), Operator::EQ, prefix(n.subnet)),
                    matches(ct("state", None), Operator::IN, Expression::List(vec![s("established"), s("related")])),
                    named_counter(back.clone()),
                    Statement::Accept(None),
                ],
                format!("replies to the egress of {what}"),
            ));
            rules.push(rule(
                NETWORKS_FWD,
                vec![
                    matches(payload("ip", "saddr"), Operator::EQ, prefix(n.subnet)),
                    named_counter(out.clone()),
                    Statement::Accept(None),
                ],
                format!("egress of {what}"),
            ));
            counters.extend([out, back]);
        }
        let blocked = counter::blocked(n.vni);
        rules.push(rule(
            NETWORKS_FWD,
            vec![
                matches(payload("ip", "daddr"), Operator::EQ, prefix(n.subnet)),
                named_counter(blocked.clone()),
                Statement::Drop(None),
            ],
            format!("nothing else reaches {what} from outside"),
        ));
        counters.insert(blocked);
    }
    (part(&[NETWORKS_NAT, NETWORKS_FWD], &counters, stale, rules), counters)
}

/// The published ports part: per port, DNAT on this host's own addresses (not
/// loopback) and, in the forward chain, its traffic counted each way and accepted.
pub fn published(ports: &[PortRule], stale: &BTreeSet<String>) -> (Nftables<'static>, BTreeSet<String>) {
    let mut counters = BTreeSet::new();
    let mut rules = Vec::new();
    for p in ports {
        let m = &p.mapping;
        let proto = m.protocol.as_str();
        rules.push(rule(
            PUBLISHED_DNAT,
            vec![
                matches(
                    Expression::Named(NamedExpression::Fib(Fib {
                        result: FibResult::Type,
                        flags: [FibFlag::Daddr].into_iter().collect(),
                    })),
                    Operator::EQ,
                    s("local"),
                ),
                matches(
                    payload("ip", "daddr"),
                    Operator::NEQ,
                    prefix(Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).unwrap_or_default()),
                ),
                matches(payload(proto, "dport"), Operator::EQ, Expression::Number(u32::from(m.host_port))),
                Statement::DNAT(Some(NAT {
                    addr: Some(s(&p.ip.to_string())),
                    family: None,
                    port: Some(Expression::Number(u32::from(m.port))),
                    flags: None,
                })),
            ],
            p.comment(),
        ));
        let translated = |direction: &'static str, port_field: &'static str| {
            vec![
                matches(payload("ip", direction), Operator::EQ, s(&p.ip.to_string())),
                matches(payload(proto, port_field), Operator::EQ, Expression::Number(u32::from(m.port))),
                matches(ct("status", None), Operator::IN, s("dnat")),
                matches(
                    ct("proto-dst", Some(CTDir::Original)),
                    Operator::EQ,
                    Expression::Number(u32::from(m.host_port)),
                ),
            ]
        };
        let (into, out) = (counter::port_in(m), counter::port_out(m));
        let mut to_container = translated("daddr", "dport");
        to_container.extend([named_counter(into.clone()), Statement::Accept(None)]);
        rules.push(rule(PUBLISHED_FWD, to_container, p.comment()));
        let mut from_container = translated("saddr", "sport");
        from_container.extend([named_counter(out.clone()), Statement::Accept(None)]);
        rules.push(rule(PUBLISHED_FWD, from_container, p.comment()));
        counters.extend([into, out]);
    }
    (part(&[PUBLISHED_DNAT, PUBLISHED_FWD], &counters, stale, rules), counters)
}

/// Deletes the table and everything in it (`nft delete table ip overlay`).
pub fn delete_table() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.delete(NfListObject::Table(table()));
    batch.to_nftables()
}

/// Runs `nft -j -f -` with `ruleset` on its standard input, in the calling process's
/// network namespace. Its error output is part of the error.
pub async fn apply(ruleset: &Nftables<'_>) -> Result<(), EgressError> {
    let json =
        serde_json::to_vec(ruleset).map_err(|e| EgressError::Nft { what: "encoding", message: e.to_string() })?;
    run_nft(&["-j", "-f", "-"], Some(json)).await.map(|_| ())
}

async fn run_nft(args: &[&str], input: Option<Vec<u8>>) -> Result<Vec<u8>, EgressError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| EgressError::NftMissing { source })?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(input) = input {
            stdin.write_all(&input).await.map_err(|e| EgressError::Nft { what: "writing", message: e.to_string() })?;
        }
        drop(stdin);
    }
    let out =
        child.wait_with_output().await.map_err(|e| EgressError::Nft { what: "running", message: e.to_string() })?;
    if !out.status.success() {
        return Err(EgressError::Nft {
            what: "applying",
            message: format!(
                "nft {} exited with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// One named counter of the table, as `nft -j list counters` prints it. (The crate's
/// own schema holds counter values in 32 bits, which a busy port's bytes outgrow.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CounterValue {
    pub name: String,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
}

/// What the table holds now: its counters, and the published ports (read back from
/// the comments of `published_dnat`). `None` when there is no table.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    pub counters: Vec<CounterValue>,
    pub ports: Vec<PortRule>,
}

#[derive(Deserialize)]
struct Listing {
    nftables: Vec<serde_json::Value>,
}

/// `nft -j list table ip overlay`, parsed; `Ok(None)` if the table does not exist.
pub async fn read() -> Result<Option<Existing>, EgressError> {
    let out = match run_nft(&["-j", "list", "table", "ip", TABLE], None).await {
        Ok(out) => out,
        Err(EgressError::Nft { message, .. }) if message.contains("No such file or directory") => return Ok(None),
        Err(e) => return Err(e),
    };
    parse(&out).map(Some)
}

fn parse(json: &[u8]) -> Result<Existing, EgressError> {
    let listing: Listing =
        serde_json::from_slice(json).map_err(|e| EgressError::Nft { what: "reading", message: e.to_string() })?;
    let mut existing = Existing::default();
    for object in listing.nftables {
        if let Some(counter) = object.get("counter") {
            if let Ok(counter) = serde_json::from_value::<CounterValue>(counter.clone()) {
                existing.counters.push(counter);
            }
        } else if let Some(rule) = object.get("rule")
            && rule.get("chain").and_then(|c| c.as_str()) == Some(PUBLISHED_DNAT)
            && let Some(port) = rule.get("comment").and_then(|c| c.as_str()).and_then(PortRule::from_comment)
        {
            existing.ports.push(port);
        }
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(owner: &str, spec: &str) -> PortRule {
        PortRule { owner: owner.into(), ip: Ipv4Addr::new(10, 0, 9, 2), mapping: spec.parse().unwrap() }
    }

    #[test]
    fn port_comments_read_back() {
        let p = port("container/web1", "8080:80/udp");
        assert_eq!(PortRule::from_comment(&p.comment()), Some(p));
        assert_eq!(PortRule::from_comment("something else"), None);
    }

    #[test]
    fn a_part_replaces_its_chains_and_drops_its_stale_counters() {
        let net = NetworkRules { vni: 4096, name: "web".into(), subnet: "10.0.9.0/24".parse().unwrap(), egress: true };
        let stale: BTreeSet<String> = ["net_4096_out".to_owned(), "net_77_out".to_owned()].into();
        let (ruleset, counters) = networks(&[net], &stale);
        assert_eq!(counters, ["net_4096_blocked", "net_4096_in", "net_4096_out"].map(String::from).into());
        let json = serde_json::to_string(&ruleset).unwrap();
        assert!(json.contains("\"masquerade\""), "{json}");
        assert!(
            json.contains("{\"delete\":{\"counter\":{\"family\":\"ip\",\"table\":\"overlay\",\"name\":\"net_77_out\""),
            "{json}"
        );
        assert!(!json.contains("\"name\":\"net_4096_out\"}}}"), "a wanted counter is deleted: {json}");
        assert!(json.starts_with("{\"nftables\":[{\"flush\":{\"chain\""), "{json}");
    }

    #[test]
    fn internal_networks_only_drop() {
        let net = NetworkRules { vni: 7, name: "db".into(), subnet: "10.0.7.0/24".parse().unwrap(), egress: false };
        let (ruleset, counters) = networks(&[net], &BTreeSet::new());
        assert_eq!(counters, ["net_7_blocked".to_owned()].into());
        assert!(!serde_json::to_string(&ruleset).unwrap().contains("masquerade"));
    }

    #[test]
    fn listing_gives_counters_and_ports() {
        let p = port("docker/abc", "5353:53/udp");
        let json = format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6"}}}}, {{"table": {{"family": "ip", "name": "overlay", "handle": 1}}}},
            {{"counter": {{"family": "ip", "name": "port_udp_5353_in", "table": "overlay", "handle": 4, "packets": 5000000000, "bytes": 7}}}},
            {{"rule": {{"family": "ip", "table": "overlay", "chain": "published_dnat", "handle": 5, "comment": "{}", "expr": []}}}},
            {{"rule": {{"family": "ip", "table": "overlay", "chain": "published_fwd", "handle": 6, "comment": "{}", "expr": []}}}}]}}"#,
            p.comment(),
            p.comment()
        );
        let existing = parse(json.as_bytes()).unwrap();
        assert_eq!(existing.counters[0].packets, 5_000_000_000);
        assert_eq!(existing.ports, vec![p]);
    }
}
