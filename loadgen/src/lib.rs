//! The load generator's parts: [`sim`], the simulated city (people who walk and drive between
//! home, work and errands; friends who mostly live near each other), shared by the run against
//! the real system and by the Redis Pub/Sub baseline, so both are driven by the same people.

pub mod sim;
