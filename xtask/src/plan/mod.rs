//! What a command will write: the transaction, a new service's files,
//! what `sync` derives, and the certificates.

pub mod certs;
pub mod datalayer;
pub mod journal;
pub mod proto;
pub mod proto_stamp;
pub mod scaffold;
pub mod sync;
pub mod txn;
