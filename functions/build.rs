//! The build script of every function crate (`build = "../build.rs"`), and of the test crate
//! whose binaries stand in for them (worker-once, bundle-once, hello-lambda): links the
//! binaries as fixed-address executables (`-no-pie`) rather than position-independent ones.
//!
//! Why: a position-independent Rust function binary carries about 24,000 relative
//! relocations (vtables, string and function tables of the SDK clients) that the dynamic
//! loader applies at every start, writing to some 300 KB of pages that the kernel must first
//! copy. That was about 40% of a function's cold-start CPU (`make bench`, docs/benchmarks.md:
//! `cold_init_ratio_*`). A fixed-address executable has none. What it gives up: the
//! executable's own code and data sit at the same address in every run; the stack, heap,
//! shared libraries and mappings stay randomised (the trade Go makes by default for Lambda
//! binaries). The hello-world floor the bench compares against is linked the same way, so
//! the ratio compares like with like.
//!
//! `HAUL_PIE=1` at build time keeps the default position-independent link.

fn main() {
    println!("cargo::rerun-if-env-changed=HAUL_PIE");
    if std::env::var("HAUL_PIE").is_ok_and(|value| value == "1") {
        return;
    }
    if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
