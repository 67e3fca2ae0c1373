//! Attaching the TC programs with TCX links pinned on the bpffs, so they survive the
//! agent. A link already pinned is updated in place (`bpf_link_update`): the new
//! program replaces the old one atomically, with no moment where no program runs.

use std::path::PathBuf;

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::TcAttachOptions,
};
use overlay_common::program_names;

use super::{Datapath, DatapathError};

/// The interface index, like `cat /sys/class/net/NAME/ifindex` in this namespace.
pub(super) fn ifindex(name: &str) -> Result<u32, DatapathError> {
    nix::net::if_::if_nametoindex(name)
        .map_err(|source| DatapathError::NoSuchInterface { name: name.to_owned(), source })
}

impl Datapath {
    /// Attaches the decapsulating program at TC ingress of the underlay interface
    /// (like `tc filter add dev DEV ingress bpf ...`, but as a pinned TCX link).
    pub fn attach_underlay(&mut self) -> Result<(), DatapathError> {
        let interface = self.config.underlay_interface.clone();
        let path = self.link_path("underlay");
        self.attach(program_names::FROM_UNDERLAY, &interface, path)
    }

    /// Detaches the underlay program: VXLAN then reaches the host stack undecapsulated.
    pub fn detach_underlay(&mut self) -> Result<(), DatapathError> {
        self.unpin_link(self.link_path("underlay"))
    }

    pub(super) fn attach_container_interface(&mut self, interface: &str) -> Result<(), DatapathError> {
        let path = self.link_path(&format!("if-{interface}"));
        self.attach(program_names::FROM_CONTAINER, interface, path)
    }

    pub(super) fn detach_container_interface(&mut self, interface: &str) -> Result<(), DatapathError> {
        self.unpin_link(self.link_path(&format!("if-{interface}")))
    }

    pub(super) fn attach_resolver_interface(&mut self, interface: &str) -> Result<(), DatapathError> {
        let path = self.link_path("resolver");
        self.attach(program_names::FROM_CONTAINER, interface, path)
    }

    pub(super) fn detach_resolver_interface(&mut self) -> Result<(), DatapathError> {
        self.unpin_link(self.link_path("resolver"))
    }

    fn link_path(&self, name: &str) -> PathBuf {
        self.config.pin_dir.join("links").join(name)
    }

    fn attach(&mut self, program_name: &'static str, interface: &str, path: PathBuf) -> Result<(), DatapathError> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(program_name)
            .ok_or(DatapathError::MissingProgram(program_name))?
            .try_into()
            .map_err(|source| DatapathError::Program { name: program_name, source })?;
        let program_err = |source| DatapathError::Program { name: program_name, source };

        let existing = PinnedLink::from_pin(&path).ok().map(FdLink::from);
        let link_id = match existing {
            // The pinned link may belong to an interface that was deleted and re-created
            // under the same name; only reuse it if it still points at this one.
            Some(link) if link_targets(&link, interface) => {
                let link = link.try_into().map_err(|source| DatapathError::Link { name: program_name, source })?;
                program.attach_to_link(link).map_err(program_err)?
            }
            _ => {
                let _ = std::fs::remove_file(&path);
                program
                    .attach_with_options(
                        interface,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(program_err)?
            }
        };
        let link = program.take_link(link_id).map_err(program_err)?;
        let fd_link: FdLink = link.try_into().map_err(|source| DatapathError::Link { name: program_name, source })?;
        // Re-pinning an updated link at the same path fails with EEXIST: remove first.
        let _ = std::fs::remove_file(&path);
        fd_link.pin(&path).map_err(|source| DatapathError::Pin { path, source })?;
        Ok(())
    }

    fn unpin_link(&mut self, path: PathBuf) -> Result<(), DatapathError> {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DatapathError::PinDir { path, source }),
        }
    }
}

/// Whether a TCX link is still attached to `interface` in this namespace: its program
/// is among those TCX runs at the interface's ingress. A link whose interface was
/// deleted is defunct, and a new interface of the same name starts with no programs.
fn link_targets(link: &FdLink, interface: &str) -> bool {
    let Ok(info) = link.info() else { return false };
    match SchedClassifier::query_tcx(interface, TcAttachType::Ingress) {
        Ok((_, programs)) => programs.iter().any(|p| p.id() == info.program_id()),
        Err(_) => false,
    }
}
