//! The Rust code generated from `schema/*.capnp` by `build.rs`: the wire contract.

#![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]

pub mod types_capnp {
    include!(concat!(env!("OUT_DIR"), "/types_capnp.rs"));
}
pub mod sync_capnp {
    include!(concat!(env!("OUT_DIR"), "/sync_capnp.rs"));
}
pub mod service_capnp {
    include!(concat!(env!("OUT_DIR"), "/service_capnp.rs"));
}
