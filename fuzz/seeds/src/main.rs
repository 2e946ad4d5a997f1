//! Writes `syncbase::fuzzing::seeds()` under `<dir>/<target>/<name>` (default `fuzz/corpus`),
//! replacing the seeds of the same name and leaving other corpus files alone.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let mut bytes = 0;
    for (target, name, seed) in syncbase::fuzzing::seeds() {
        let path = dir.join(target).join(format!("seed-{name}"));
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        bytes += seed.len();
        std::fs::write(&path, seed)?;
    }
    println!("wrote {bytes} bytes of seeds under {}", dir.display());
    Ok(())
}
