//! A small mesh of real agents, as `cargo xtask bench` measures a large one: containers
//! started on every host with `overlay run` all reach each other (every ordered pair).

#[test]
fn every_container_of_a_six_host_mesh_reaches_every_other() -> anyhow::Result<()> {
    let mesh = overlay_bench::mesh::run(6, 3)?;
    eprintln!("{mesh}");
    assert_eq!((mesh.hosts, mesh.containers), (6, 18), "{mesh:?}");
    assert_eq!(mesh.pairs_checked, 18 * 17, "{mesh:?}");
    assert_eq!(mesh.pairs_failed, 0, "{mesh:?}");
    assert!(mesh.reachable_seconds.is_some(), "{mesh:?}");
    assert!(mesh.programmed_seconds <= mesh.reachable_seconds.unwrap_or_default(), "{mesh:?}");
    Ok(())
}
