//! Embeds the demo model when `assets/landscape.safetensors` is present (it is in the repository;
//! a checkout without it builds a binary that needs `--weights`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(demo_model)");
    println!("cargo::rerun-if-changed=assets/landscape.safetensors");
    if std::path::Path::new("assets/landscape.safetensors").exists() {
        println!("cargo::rustc-cfg=demo_model");
    }
}
