//! The load generator's parts: [`sim`], the simulated city (people who walk and drive between
//! home, work and errands; friends who mostly live near each other), shared by the run against
//! the real system and by the Redis Pub/Sub baseline, so both are driven by the same people;
//! [`run`], the run against a running system (with [`setup`] of its people, the client side in
//! [`net`], readings of /proc (`nearby_common::procfs`) and consumer [`lag`], [`stats`] and
//! the [`plot`]); [`ramp`], the same city at offered rates raised step by step until the
//! system saturates (the saturation curve). The other measurement tools: [`measure`], idle memory per socket and latencies
//! of a running system; [`rebuild`], a new fanout instance's table rebuild; [`sink_throughput`],
//! the history sink's rows/s against a plain insert loop.

pub mod baseline;
pub mod lag;
pub mod measure;
pub mod net;
pub mod plot;
pub mod ramp;
pub mod rebuild;
pub mod run;
pub mod setup;
pub mod sim;
pub mod sink_throughput;
pub mod stats;

// `run` reads /proc as `crate::procfs`: the readings live in `nearby_common` (the tools and
// tests use them too).
use nearby_common::procfs;
