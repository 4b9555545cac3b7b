//! `cargo run -p agentwire-spec-generator` rewrites spec/vectors/;
//! `... -- --fuzz-seeds DIR` writes seed corpora to DIR/<target>/.

use std::path::{Path, PathBuf};

fn write(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
    if let Err(e) = std::fs::write(path, bytes) {
        eprintln!("error: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    if args.first().map(String::as_str) == Some("--fuzz-seeds") {
        let dir = args.get(1).map(PathBuf::from).unwrap_or_else(|| root.join("fuzz").join("corpus"));
        let seeds = agentwire_spec_generator::fuzz_seeds();
        for (target, name, bytes) in &seeds {
            write(&dir.join(target).join(format!("seed-{name}")), bytes);
        }
        println!("wrote {} seeds under {}", seeds.len(), dir.display());
        return;
    }
    let out = args.first().map(PathBuf::from).unwrap_or_else(|| root.join("spec").join("vectors"));
    for (name, value) in agentwire_spec_generator::generate() {
        let path = out.join(name);
        write(&path, agentwire_spec_generator::render(&value).as_bytes());
        println!("wrote {}", path.display());
    }
}
