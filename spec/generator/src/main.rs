//! `cargo run -p agentwire-spec-generator [-- OUT_DIR]` rewrites spec/vectors/.

use std::path::PathBuf;

fn main() {
    let out = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("vectors")
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: cannot create {}: {e}", out.display());
        std::process::exit(1);
    }
    for (name, value) in agentwire_spec_generator::generate() {
        let path = out.join(name);
        if let Err(e) = std::fs::write(&path, agentwire_spec_generator::render(&value)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("wrote {}", path.display());
    }
}
