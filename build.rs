//! Compiles `schema/*.capnp` into Rust with the Cap'n Proto compiler embedded as WebAssembly
//! (`capnpc-embedded`), so a machine with only the Rust toolchain builds the project.
//! `schema/capnp/` vendors the standard imports the schemas use (`stream.capnp` for
//! `-> stream`), so the same directory serves foreign clients such as pycapnp.
//!
//! It also sets `SYNCBASE_COMMIT`, the short hash of the checked-out commit that
//! `syncbase --version` prints: `git rev-parse --short HEAD`, or "unknown" when there is no
//! git, no checkout (a source tarball) or git fails; never an error.

const SCHEMAS: &[&str] = &[
    "schema/types.capnp",
    "schema/sync.capnp",
    "schema/service.capnp",
];

fn main() {
    println!("cargo:rerun-if-changed=schema");
    set_commit();
    compile_schemas();
}

/// Sets `SYNCBASE_COMMIT` for the crate, rebuilding when HEAD moves (a commit or checkout).
fn set_commit() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SYNCBASE_COMMIT={commit}");
    // HEAD names the branch (in a worktree, HEAD is the worktree's own and the refs are the
    // common directory's); the branch's ref, loose or packed, moves with each commit. Only
    // files that exist are named: cargo reruns a script for ever over a missing one.
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let common = git(&["rev-parse", "--git-common-dir"]).map(std::path::PathBuf::from);
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let mut watched: Vec<std::path::PathBuf> = head.into_iter().map(Into::into).collect();
    if let Some(common) = common {
        watched.extend(branch.map(|name| common.join(name)));
        watched.push(common.join("packed-refs"));
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed stdout of a successful `git ARGS` run here, or None (no git, not a checkout).
fn git(args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn compile_schemas() {
    let mut compile = capnpc_embedded::CompileCommand::new();
    compile
        .src_prefix("schema")
        .import_path("schema")
        .no_standard_import();
    for schema in SCHEMAS {
        compile.file(schema);
    }
    let request = compile.compile().expect("compiling schema/*.capnp");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(out_dir)
        .default_parent_module(vec!["schema".into()])
        .run(&request[..])
        .expect("generating Rust from the schema");
}
