//! Generates the Sparkplug B payload types (src/sparkplug/payload.rs includes them) from
//! proto/sparkplug_b.proto. prost-build runs the system `protoc` (Debian package
//! `protobuf-compiler`, installed by scripts/setup), or the one named by `PROTOC`.

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/sparkplug_b.proto");
    prost_build::compile_protos(&["proto/sparkplug_b.proto"], &["proto"])
}
