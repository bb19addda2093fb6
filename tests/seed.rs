//! Every random stream comes from `src/seed.rs`: no other source file seeds a generator or
//! picks a ChaCha stream of its own (the loader, augmentation and built-in sets once did,
//! with constants of their own).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_seed_module_seeds_generators() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found the sources");
    let mut offenders = Vec::new();
    for file in &files {
        if file.ends_with("seed.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable");
        for (number, line) in text.lines().enumerate() {
            for call in [
                "seed_from_u64",
                "set_stream(",
                "from_seed(",
                "from_os_rng",
                "rand::rng()",
            ] {
                if line.contains(call) {
                    offenders.push(format!(
                        "{}:{}: {}",
                        file.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "random streams outside src/seed.rs:\n{}",
        offenders.join("\n")
    );
}
