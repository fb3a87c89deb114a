//! Compiles the `.proto` files under `proto/` with protox (no system `protoc` needed). With the
//! `grpc` feature it also generates tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
        "proto/quorate/raft/v1/raft.proto",
        "proto/quorate/fault/v1/fault.proto",
        "proto/quorate/v1/quorum.proto",
        "proto/quorate/replica/v1/replica.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .bytes(".quorate.raft.v1.SnapshotChunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}
