include!("../../build-support/libtorch_link.rs");

fn main() {
    // `posekit` (src/main.rs) is the front binary: it runs the commands that need no network
    // and hands the others to `posekit-engine`, so it must not load libtorch. It does not get
    // the forced `libtorch_cuda` link (the rpath does no harm), and its archive members' symbols stay
    // local (`--exclude-libs`): otherwise lld exports the inline libtorch functions compiled
    // into tch's C++ shim (libtorch's own libraries define them too, so they "may interpose"),
    // which keeps them, and libtorch_cpu.so with them, even though no code of ours calls them.
    // tests/startup.rs checks the result.
    link_libtorch(LinkScope::Only {
        bins: &["posekit-engine"],
        kinds: &["tests", "examples"],
    });
    println!("cargo:rustc-link-arg-bin=posekit=-Wl,--exclude-libs,ALL");
}
