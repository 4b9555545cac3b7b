//! A local NEAR devnet for AgentWire.
//!
//! This first part is [`vm`]: it runs a compiled contract in NEAR's real VM
//! (`near-vm-runner` 0.38, protocol version 88) with the mainnet runtime
//! configuration's gas costs, keeping state across calls. The JSON-RPC server,
//! accounts, transactions and receipt execution build on it.

pub mod vm;
