//! The AgentWire agent runtime (`agentwire` is its command).
//!
//! - [`near`]: the NEAR client for the channel contract (any RPC: the local
//!   devnet, testnet, mainnet).
//! - [`devnet`]: a local devnet with the contracts deployed and funded users.
//! - [`quic`]: sessions over QUIC with the Noise handshake bound to TLS; a server for brands.

pub mod devnet;
pub mod near;
pub mod quic;
