//! The store's protections: TLS with client certificates (etcd), and users with
//! passwords (etcd users, ZooKeeper digest ACLs). Agents and the CLI reach the store only with the right credentials, and
//! say clearly what is missing otherwise.

use std::time::Duration;

use anyhow::{Context, ensure};
use overlay_tests::{
    Lab,
    cluster::{Scratch, overlay, report, start_agent, wait_for_list},
    cmd,
    etcd::{Etcd, TestPki},
    for_each_store, overlay_binary,
    stores::{Backend, StoreServer},
};

#[test]
fn tls_with_client_certificates() -> anyhow::Result<()> {
    let lab = Lab::builder("ctls").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let scratch = Scratch::new("tls")?;
    let pki = TestPki::create(&scratch.path("pki"), lab.host("store01").ip)?;
    let etcd = Etcd::start_tls(lab.host("store01"), &pki.server_cert, &pki.server_key, &pki.ca)?;
    let store = etcd.url("secure");
    let (ca, cert, key) = (
        pki.ca.to_str().context("utf-8")?,
        pki.client_cert.to_str().context("utf-8")?,
        pki.client_key.to_str().context("utf-8")?,
    );
    let tls = ["--store-ca", ca, "--store-cert", cert, "--store-key", key];
    let agt01 = lab.host("agt01");
    let agent = start_agent(&scratch, &store, agt01, &tls)?;
    let result = (|| {
        let mut args = vec!["list", "--store", &store, "--store-timeout", "10s"];
        args.extend_from_slice(&tls);
        let (_, _) = overlay_tests::cluster::wait_for("the TLS agent in the list", Duration::from_secs(20), || {
            let out = overlay(agt01, &args)?;
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Ok(if stdout == "192.168.1.141" { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) })
        })?;
        // Without TLS, or without a client certificate, the store is out of reach.
        for partial in [&[][..], &["--store-ca", ca][..]] {
            let mut args = vec!["list", "--store", &store, "--store-timeout", "2s"];
            args.extend_from_slice(partial);
            let out = overlay(agt01, &args)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(!out.status.success(), "listing with {partial:?} succeeded");
            ensure!(stderr.contains("unreachable"), "listing with {partial:?}: {stderr}");
        }
        let out = overlay(agt01, &["list", "--store", &store, "--store-ca", ca, "--store-cert", cert])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && stderr.contains("--store-key"), "{stderr}");
        Ok(())
    })();
    report(result, &[&agent], &etcd.logs())
}

for_each_store!(users_and_passwords);

/// etcd: users and roles, turned on by the operator. ZooKeeper: digest authentication;
/// the first agent's user owns the cluster's nodes (their ACL names only it).
fn users_and_passwords(backend: Backend) -> anyhow::Result<()> {
    let lab = Lab::builder("cauth").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let scratch = Scratch::new("auth")?;
    let server = StoreServer::start(backend, lab.host("store01"))?;
    let agt01 = lab.host("agt01");
    if let StoreServer::Etcd(etcd) = &server {
        // Turn authentication on, as an operator would with etcdctl.
        let endpoint = etcd.endpoint();
        overlay::netns::run_in(&agt01.ns, || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await?;
                client.user_add("root", "rootpw", None).await?;
                client.user_grant_role("root", "root").await?;
                client.auth_enable().await?;
                anyhow::Ok(())
            })
        })??;
    }
    let store = server.url("guarded");
    let password_file = scratch.path("password");
    std::fs::write(&password_file, "rootpw\n")?;
    let password_arg = password_file.to_str().context("utf-8")?;
    let agent = start_agent(&scratch, &store, agt01, &["--store-user", "root", "--store-password-file", password_arg])?;
    let result = (|| {
        let bin = overlay_binary::path()?;
        let bin = bin.to_str().context("utf-8")?;
        let list_with = |env: &[&str], args: &[&str]| {
            let mut all = vec!["env"];
            all.extend_from_slice(env);
            all.extend_from_slice(&[bin, "list", "--store", &store, "--store-timeout", "2s"]);
            all.extend_from_slice(args);
            cmd::output_in(&agt01.ns, &all)
        };
        // The agent is in (on ZooKeeper its user now owns the cluster's nodes).
        overlay_tests::cluster::wait_for("the agent in the list", Duration::from_secs(20), || {
            let out = list_with(&["OVERLAY_STORE_PASSWORD=rootpw"], &["--store-user", "root"])?;
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Ok(if stdout == "192.168.1.141" { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) })
        })?;
        wait_for_list(agt01, &store, &[], Duration::ZERO).err().context("listing without credentials worked")?;
        let out = list_with(&[], &[])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && stderr.contains("requires authentication"), "no credentials: {stderr}");
        let out = list_with(&["OVERLAY_STORE_PASSWORD=wrong"], &["--store-user", "root"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && stderr.contains("refused the credentials"), "bad password: {stderr}");
        let out = list_with(&[], &["--store-user", "root"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && stderr.contains("needs a password"), "no password: {stderr}");
        Ok(())
    })();
    report(result, &[&agent], &server.logs())
}
