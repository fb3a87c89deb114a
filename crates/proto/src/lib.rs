//! Generated code only: the etcd v3 wire contract (package, service and message names and field
//! numbers kept from etcd so every etcd client works) and Quorate's internal peer protocol.
//! Hand-written logic must never live here.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}
pub mod quorate {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/quorate.v1.rs"));
    }
    pub mod replica {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/quorate.replica.v1.rs"));
        }
    }
    pub mod fault {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/quorate.fault.v1.rs"));
        }
    }
    pub mod raft {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/quorate.raft.v1.rs"));
        }
    }
}
