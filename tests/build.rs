//! Links `hello-lambda`, the cold-start floor of `make bench`, the way the functions are
//! linked (functions/build.rs: a fixed-address executable, unless `HAUL_PIE=1`), so each
//! function's `cold_init_ratio_*` compares binaries built alike.

fn main() {
    println!("cargo::rerun-if-env-changed=HAUL_PIE");
    if std::env::var("HAUL_PIE").is_ok_and(|value| value == "1") {
        return;
    }
    if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        println!("cargo::rustc-link-arg-bin=hello-lambda=-no-pie");
    }
}
