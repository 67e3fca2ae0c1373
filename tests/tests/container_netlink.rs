//! The agent's container plumbing, on a simulated host: namespace, veth with the
//! container end inside, address, MTU, MAC, default route; then removal.

use std::{net::Ipv4Addr, path::PathBuf};

use overlay::{
    container::{self, Attachment},
    netlink::Netlink,
    netns,
};
use overlay_tests::{Lab, cmd};

#[test]
fn creates_and_removes_a_container_namespace() -> anyhow::Result<()> {
    let lab = Lab::builder("ctr").host("h1", "192.168.1.141/24").build()?;
    let host = lab.host("h1").clone();
    let name = format!("{}-c-web", lab.prefix);
    let netns_path = PathBuf::from("/run/netns").join(&name);
    let attachment = Attachment {
        interface: "eth0".into(),
        host_interface: container::host_interface_name("0123456789abcdef"),
        ip: Ipv4Addr::new(10, 0, 9, 7),
        prefix_len: 24,
        mac: container::mac_for(Ipv4Addr::new(10, 0, 9, 7)),
        mtu: 1450,
        default_gateway: Some(Ipv4Addr::new(10, 0, 9, 1)),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let host_nl = Netlink::connect_in(&netns::path(&host.ns))?;
        container::create_namespace(&netns_path).await?;
        container::attach(&host_nl, &netns_path, &attachment).await?;

        let link = cmd::ip(&name, &["-o", "link", "show", "eth0"])?;
        assert!(link.contains("mtu 1450"), "{link}");
        assert!(link.contains("02:42:0a:00:09:07"), "{link}");
        assert!(link.contains("state UP") || link.contains("LOWERLAYERDOWN") || link.contains(",UP"), "{link}");
        let addr = cmd::ip(&name, &["-o", "-4", "addr", "show", "eth0"])?;
        assert!(addr.contains("10.0.9.7/24"), "{addr}");
        let route = cmd::ip(&name, &["route", "show", "default"])?;
        assert!(route.contains("via 10.0.9.1 dev eth0"), "{route}");
        let host_side = cmd::ip(&host.ns, &["-o", "link", "show", &attachment.host_interface])?;
        assert!(host_side.contains("mtu 1450"), "{host_side}");

        container::detach(&host_nl, &attachment).await?;
        assert!(host_nl.link_index(&attachment.host_interface).await?.is_none());
        container::delete_namespace(&netns_path)?;
        anyhow::Ok(())
    });
    // Whatever happened, leave no namespace behind.
    let _ = container::delete_namespace(&netns_path);
    result?;
    assert!(!netns_path.exists());
    Ok(())
}
