//! The AgentWire agent runtime (`agentwire` is its command).
//!
//! - [`near`]: the NEAR client for the channel contract (any RPC: the local
//!   devnet, testnet, mainnet).

pub mod near;
