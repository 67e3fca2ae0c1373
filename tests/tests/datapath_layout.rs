//! A new datapath finding maps pinned by an older agent: the interface and local
//! endpoint tables of the earlier layouts (no copy of the network) are migrated in
//! place, with forwarding going on; a pinned map of a layout it does not know is refused with an error that says how
//! to start clean, before anything is loaded.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, Map, MapData};
use overlay::datapath::DatapathError;
use overlay_common::{EndpointKey, Interface, LocalEndpoint, NO_NETWORK_SLOT, ipv4_key, map_names};
use overlay_tests::{
    ContainerSpec, Lab, cmd,
    datapath::{HostDatapath, full_mesh},
    lab::{Container, Host},
    traffic,
};

/// `bpftool map create PIN type hash key K value V entries N name NAME`.
fn create_pinned_hash(path: &std::path::Path, name: &str, key: u32, value: u32, entries: u32) -> anyhow::Result<()> {
    let path = path.to_string_lossy();
    let (key, value, entries) = (key.to_string(), value.to_string(), entries.to_string());
    cmd::run(&[
        "bpftool", "map", "create", &path, "type", "hash", "key", &key, "value", &value, "entries", &entries, "name",
        name,
    ])?;
    Ok(())
}

/// The bytes as bpftool takes them: `hex 0a 00 ...`.
fn hex(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ifindex(ns: &str, dev: &str) -> anyhow::Result<u32> {
    let out = cmd::ip(ns, &["-j", "link", "show", "dev", dev])?;
    let links: serde_json::Value = serde_json::from_str(&out)?;
    links[0]["ifindex"].as_u64().map(|i| i as u32).ok_or_else(|| anyhow::anyhow!("no ifindex for {dev}"))
}

/// Container c1 on h1 and c2 on h2 in network 11, programmed and reaching each other,
/// and then left as a stopped agent leaves them: the datapaths are dropped, their
/// programs stay attached to their pinned maps.
fn two_hosts_left_running(name: &str) -> anyhow::Result<(Lab, Host, Container, Container)> {
    let mut lab = Lab::builder(name).host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let h1 = lab.host("h1").clone();
    let mut dps = vec![HostDatapath::start(&h1)?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, 11, Ipv4Addr::new(10, 0, 9, 1), &[(0, &c1), (1, &c2)])?;
    traffic::ping_ok(&c1.ns, c2.ip, 2)?;
    Ok((lab, h1, c1, c2))
}

#[test]
fn interfaces_of_the_older_layout_are_migrated() -> anyhow::Result<()> {
    let (_lab, h1, c1, c2) = two_hosts_left_running("layout")?;

    // What an agent of the earlier layout left pinned: c1's interface as vni, ip, mac.
    let pinned = h1.pin_dir.join("maps").join(map_names::INTERFACES);
    std::fs::remove_file(&pinned)?;
    create_pinned_hash(&pinned, map_names::INTERFACES, 4, 16, overlay_common::capacity::INTERFACES)?;
    let veth = ifindex(&h1.ns, &c1.host_interface)?;
    let mut value = Vec::new();
    value.extend_from_slice(&11u32.to_ne_bytes());
    value.extend_from_slice(&c1.ip.octets());
    value.extend_from_slice(&c1.mac);
    value.extend_from_slice(&[0, 0]);
    update_pinned(&pinned, &veth.to_ne_bytes(), &value)?;

    // The running programs keep their own maps: forwarding goes on meanwhile.
    traffic::ping_ok(&c1.ns, c2.ip, 2)?;
    let mut dp1 = HostDatapath::start(&h1)?;
    let migrated: HashMap<MapData, u32, Interface> = HashMap::try_from(Map::HashMap(MapData::from_pin(&pinned)?))?;
    let iface = migrated.get(&veth, 0)?;
    assert_eq!((iface.vni, iface.ip, iface.mac), (11, ipv4_key(c1.ip.octets()), c1.mac));
    assert_eq!(iface.gateway, ipv4_key([10, 0, 9, 1]));
    assert_ne!(iface.counter_slot, NO_NETWORK_SLOT, "the network's copy was not filled in");
    // The container's program replaced in place runs on the migrated table.
    dp1.add_local(11, &c1)?;
    traffic::ping_ok(&c1.ns, c2.ip, 3)?;
    Ok(())
}

/// `bpftool map update pinned PATH key hex .. value hex ..`.
fn update_pinned(path: &std::path::Path, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let (path, key, value) = (path.to_string_lossy().into_owned(), hex(key), hex(value));
    let mut update = vec!["bpftool", "map", "update", "pinned", &path, "key", "hex"];
    update.extend(key.iter().map(String::as_str));
    update.extend(["value", "hex"]);
    update.extend(value.iter().map(String::as_str));
    cmd::run(&update)?;
    Ok(())
}

#[test]
fn local_endpoints_of_the_older_layout_are_migrated() -> anyhow::Result<()> {
    let (_lab, h1, c1, c2) = two_hosts_left_running("layout-ep")?;

    // What an agent of the earlier layout left pinned: c1's endpoint as ifindex, mac.
    let pinned = h1.pin_dir.join("maps").join(map_names::LOCAL_ENDPOINTS);
    std::fs::remove_file(&pinned)?;
    create_pinned_hash(&pinned, map_names::LOCAL_ENDPOINTS, 8, 12, overlay_common::capacity::LOCAL_ENDPOINTS)?;
    let veth = ifindex(&h1.ns, &c1.host_interface)?;
    let mut key = Vec::new();
    key.extend_from_slice(&11u32.to_ne_bytes());
    key.extend_from_slice(&c1.ip.octets());
    let mut value = Vec::new();
    value.extend_from_slice(&veth.to_ne_bytes());
    value.extend_from_slice(&c1.mac);
    value.extend_from_slice(&[0, 0]);
    update_pinned(&pinned, &key, &value)?;

    // The running programs keep their own maps: forwarding goes on meanwhile.
    traffic::ping_ok(&c2.ns, c1.ip, 2)?;
    let mut dp1 = HostDatapath::start(&h1)?;
    let migrated: HashMap<MapData, EndpointKey, LocalEndpoint> =
        HashMap::try_from(Map::HashMap(MapData::from_pin(&pinned)?))?;
    let endpoint = migrated.get(&EndpointKey { vni: 11, ip: ipv4_key(c1.ip.octets()) }, 0)?;
    assert_eq!((endpoint.ifindex, endpoint.mac), (veth, c1.mac));
    assert_ne!(endpoint.counter_slot, NO_NETWORK_SLOT, "the network's counter slot was not filled in");
    // The underlay's program replaced in place delivers by the migrated table.
    dp1.add_local(11, &c1)?;
    traffic::ping_ok(&c2.ns, c1.ip, 3)?;
    Ok(())
}

#[test]
fn a_pinned_map_of_an_unknown_layout_is_refused() -> anyhow::Result<()> {
    let lab = Lab::builder("layout-bad").host("h1", "192.168.1.141/24").build()?;
    let h1 = lab.host("h1").clone();
    drop(HostDatapath::start(&h1)?);
    let pinned = h1.pin_dir.join("maps").join(map_names::REMOTE_ENDPOINTS);
    std::fs::remove_file(&pinned)?;
    create_pinned_hash(&pinned, map_names::REMOTE_ENDPOINTS, 8, 24, 1024)?;

    let error = match HostDatapath::start(&h1) {
        Ok(_) => anyhow::bail!("a datapath was loaded over a map of another layout"),
        Err(error) => error,
    };
    let layout = error.chain().find_map(|e| e.downcast_ref::<DatapathError>());
    assert!(
        matches!(layout, Some(DatapathError::PinnedLayout { map, .. }) if *map == map_names::REMOTE_ENDPOINTS),
        "{error:#}"
    );
    assert!(format!("{error:#}").contains("overlay agent --cleanup"), "{error:#}");
    Ok(())
}
