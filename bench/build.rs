//! Builds bench/ebpf, the benchmark's own eBPF object (never the agent's), and hands it
//! to the crate through OUT_DIR. Set OVERLAY_BENCH_EBPF_OBJECT to an object file to
//! skip the nested build.

fn main() {
    overlay_ebpf_build::build(&overlay_ebpf_build::Object {
        crate_dir: "bench/ebpf",
        binary: "overlay-bench-ebpf",
        out_name: "overlay-bench-ebpf.o",
        prebuilt_env: "OVERLAY_BENCH_EBPF_OBJECT",
        watched: &[
            "bench/ebpf/src",
            "bench/ebpf/Cargo.toml",
            "bench/common/src",
            "overlay-ebpf/src",
            "overlay-ebpf/Cargo.toml",
            "overlay-common/src",
        ],
    });
}
