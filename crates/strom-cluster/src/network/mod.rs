//! The internal listener's protocol: [`wire`] (frames and messages, with the hello that
//! carries the cluster id), [`client`] (calling a peer; openraft's network) and [`server`]
//! (answering).

pub mod client;
pub mod server;
pub mod wire;
