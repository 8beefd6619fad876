//! The gateway: clients' WebSocket and HTTP port, authentication, the connection registry, the
//! first page and paging, and the consumer of its own delivery topic.
//!
//! [`Gateway::build`] (`state.rs`) connects to the stack; [`GatewayStage`]'s `run` (`serve.rs`) serves on
//! listeners it is given until its [`Shutdown`] asks it to stop (the first ask drains, a second
//! stops at once), so tests start the real thing on port 0. The client port's calls are in
//! [`http`], one file per resource.
//!
//! [`Shutdown`]: nearby_common::shutdown::Shutdown

pub mod admin;
pub mod changes;
pub mod config;
pub mod deliveries;
pub mod demo;
pub mod drain;
pub mod duplex;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod nearby;
pub mod openapi;
pub mod pinger;
pub mod protocol;
pub mod registry;
mod serve;
pub mod session;
mod state;
pub mod upgrade;
pub mod user_sockets;
pub mod users;
pub mod writer;
pub mod wsframe;

pub use config::GatewayConfig;
pub use serve::GatewayStage;
pub use state::Gateway;
