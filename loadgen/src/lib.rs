//! The load generator's parts: [`sim`], the simulated city (people who walk and drive between
//! home, work and errands; friends who mostly live near each other), shared by the run against
//! the real system and by the Redis Pub/Sub baseline, so both are driven by the same people;
//! [`run`], the run against a running system (with [`setup`] of its people, the client side in
//! [`net`], readings of [`procfs`] and consumer [`lag`], [`stats`] and the [`plot`]).

pub mod baseline;
pub mod lag;
pub mod net;
pub mod plot;
pub mod process;
pub mod procfs;
pub mod run;
pub mod setup;
pub mod sim;
pub mod stats;
