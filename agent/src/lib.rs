//! The AgentWire agent runtime (`agentwire` is its command).
//!
//! - [`near`]: the NEAR client for the channel contract (any RPC: the local
//!   devnet, testnet, mainnet).
//! - [`devnet`]: a local devnet with the contracts deployed and funded users.
//! - [`dht`]: discovery on a Kademlia DHT with validated records.
//! - [`quic`]: sessions over QUIC with the Noise handshake bound to TLS; a server for brands.
//! - [`services`]: built-in services and the HTTP upstream proxy.
//! - [`brand`], [`config`], [`metrics`]: a brand agent (`agentwire serve`) from TOML, with Prometheus metrics.
//! - [`user`]: a user agent: discovery, the endpoint-registry check, sessions.
//! - [`keyfile`]: the agent's key file.
//! - [`units`]: amounts, dates and durations for people.

pub mod brand;
pub mod catalog;
pub mod config;
pub mod devnet;
pub mod dht;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod keyfile;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod metrics;
pub mod near;
pub mod pay;
pub mod quic;
pub mod services;
pub mod units;
pub mod user;
