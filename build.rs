//! Compiles `schema/*.capnp` into Rust with the Cap'n Proto compiler embedded as WebAssembly
//! (`capnpc-embedded`), so a machine with only the Rust toolchain builds the project.
//! `schema/capnp/` vendors the standard imports the schemas use (`stream.capnp` for
//! `-> stream`), so the same directory serves foreign clients such as pycapnp.

const SCHEMAS: &[&str] = &[
    "schema/types.capnp",
    "schema/sync.capnp",
    "schema/service.capnp",
];

fn main() {
    println!("cargo:rerun-if-changed=schema");
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
