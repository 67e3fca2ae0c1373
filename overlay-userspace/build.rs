//! Builds overlay-ebpf, the agent's eBPF object, and hands it to the crate through
//! OUT_DIR, so `overlay` is one self-contained binary. Set OVERLAY_EBPF_OBJECT to an
//! object file to skip the nested build.

fn main() {
    overlay_ebpf_build::build(&overlay_ebpf_build::Object {
        crate_dir: "overlay-ebpf",
        binary: "overlay-ebpf",
        out_name: "overlay-ebpf.o",
        prebuilt_env: "OVERLAY_EBPF_OBJECT",
        watched: &["overlay-ebpf/src", "overlay-ebpf/Cargo.toml", "overlay-common/src"],
    });
}
