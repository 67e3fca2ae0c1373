//! Throw-away certificates for the tests, made with the `openssl` command: one CA, and
//! leaf certificates it signs for servers (naming their IP addresses) and clients. Keys
//! are EC P-256, as PKCS#8 PEM, which rustls, etcd and the docker CLI all read.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::cmd;

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Both: a manager serves the CLI and is a client of the agents.
    Both,
}

/// A leaf certificate and its key.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA in a directory of its own.
pub struct Ca {
    pub dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

fn text(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("path is not UTF-8")
}

impl Ca {
    /// A new CA (`CN=overlay-test-ca`, valid one day) in `dir`.
    pub fn create(dir: &Path) -> anyhow::Result<Ca> {
        std::fs::create_dir_all(dir)?;
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let mut args = vec!["openssl", "req", "-x509"];
        args.extend_from_slice(&EC);
        args.extend_from_slice(&[
            "-keyout",
            text(&key)?,
            "-out",
            text(&cert)?,
            "-days",
            "1",
            "-subj",
            "/CN=overlay-test-ca",
        ]);
        cmd::run(&args)?;
        Ok(Ca { dir: dir.to_owned(), cert, key })
    }

    /// A certificate `NAME.pem` (key `NAME.key`) with common name `cn`, naming `ips`.
    pub fn sign(&self, name: &str, cn: &str, ips: &[Ipv4Addr], usage: Usage) -> anyhow::Result<Leaf> {
        let path = |ext: &str| self.dir.join(format!("{name}.{ext}"));
        let (cert, key, csr, ext) = (path("pem"), path("key"), path("csr"), path("ext"));
        let mut extensions = String::new();
        if !ips.is_empty() {
            let names: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
            extensions.push_str(&format!("subjectAltName={}\n", names.join(",")));
        }
        let usage = match usage {
            Usage::Server => "serverAuth",
            Usage::Client => "clientAuth",
            Usage::Both => "serverAuth,clientAuth",
        };
        extensions.push_str(&format!("extendedKeyUsage={usage}\nkeyUsage=digitalSignature\n"));
        std::fs::write(&ext, extensions)?;
        let subject = format!("/CN={cn}");
        let mut args = vec!["openssl", "req"];
        args.extend_from_slice(&EC);
        args.extend_from_slice(&["-keyout", text(&key)?, "-out", text(&csr)?, "-subj", &subject]);
        cmd::run(&args)?;
        cmd::run(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            text(&csr)?,
            "-CA",
            text(&self.cert)?,
            "-CAkey",
            text(&self.key)?,
            "-CAcreateserial",
            "-out",
            text(&cert)?,
            "-days",
            "1",
            "-extfile",
            text(&ext)?,
        ])?;
        Ok(Leaf { cert, key })
    }

    /// A directory as `DOCKER_CERT_PATH` wants it (`ca.pem`, `cert.pem`, `key.pem`) for `leaf`.
    pub fn docker_cert_path(&self, leaf: &Leaf, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        std::fs::copy(&self.cert, dir.join("ca.pem"))?;
        std::fs::copy(&leaf.cert, dir.join("cert.pem"))?;
        std::fs::copy(&leaf.key, dir.join("key.pem"))?;
        Ok(dir.to_owned())
    }
}
