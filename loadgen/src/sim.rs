//! The simulated city. People live in neighbourhoods and work in a few business districts;
//! each alternates between staying put and travelling — on foot when the destination is near,
//! by car when it is far — to work, home or an errand. Friends are drawn mostly among people
//! who live near each other (as real friend graphs are), so a realistic share of friends is
//! within 5 miles at any time. Everything follows from the seed.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Metres per degree of latitude (the haversine radius the project uses).
const M_PER_DEG: f64 = 111_195.08;
/// Walking speed, m/s.
const WALK_MPS: f64 = 1.4;
/// Trips shorter than this are walked, m.
const WALK_MAX_M: f64 = 1_500.0;

/// The city's shape and its people.
#[derive(Debug, Clone, clap::Args)]
pub struct CityConfig {
    /// People simulated.
    #[arg(long, default_value_t = 2_000)]
    pub people: usize,
    /// Friends per person on average (400 at full scale).
    #[arg(long, default_value_t = 50)]
    pub degree: usize,
    /// The city is a square this many km on a side.
    #[arg(long, default_value_t = 30.0)]
    pub side_km: f64,
    /// Share of each person's friends drawn among people living within `--local-km`.
    #[arg(long, default_value_t = 0.7)]
    pub local_share: f64,
    /// "Living nearby", km.
    #[arg(long, default_value_t = 5.0)]
    pub local_km: f64,
    /// The city's centre, latitude.
    #[arg(long, default_value_t = 37.7749)]
    pub center_lat: f64,
    /// The city's centre, longitude.
    #[arg(long, default_value_t = -122.4194)]
    pub center_lon: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Metres east and north of the city's centre.
type Xy = (f64, f64);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activity {
    /// Staying put for this many more seconds.
    Still(f64),
    /// Travelling to a point at a speed, m/s.
    Going { to: Xy, speed: f64 },
}

#[derive(Debug, Clone)]
struct Person {
    home: Xy,
    work: Xy,
    at: Xy,
    activity: Activity,
}

/// The people of a city and who is friends with whom (each pair in both lists).
#[derive(Debug, Clone)]
pub struct City {
    config: CityConfig,
    people: Vec<Person>,
    friends: Vec<Vec<u32>>,
    rng: StdRng,
}

fn distance(a: Xy, b: Xy) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

impl City {
    /// Builds the city: homes clustered in neighbourhoods, work places in a few districts,
    /// everyone at home to start with, and the friend graph.
    pub fn new(config: &CityConfig) -> City {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let half = config.side_km * 500.0;
        let clamp = |v: f64| v.clamp(-half, half);
        let around = |rng: &mut StdRng, c: Xy, spread: f64| -> Xy {
            // A cheap bell shape: the mean of three uniform draws.
            let mut d = || {
                (0..3)
                    .map(|_| rng.random_range(-spread..spread))
                    .sum::<f64>()
                    / 1.5
            };
            (clamp(c.0 + d()), clamp(c.1 + d()))
        };
        let hoods: Vec<Xy> = (0..(config.people / 150).max(4))
            .map(|_| (rng.random_range(-half..half), rng.random_range(-half..half)))
            .collect();
        let districts: Vec<Xy> = (0..5)
            .map(|_| {
                (
                    rng.random_range(-half..half) / 2.0,
                    rng.random_range(-half..half) / 2.0,
                )
            })
            .collect();
        let people: Vec<Person> = (0..config.people)
            .map(|_| {
                let hood = hoods[rng.random_range(0..hoods.len())];
                let home = around(&mut rng, hood, 1_500.0);
                let district = districts[rng.random_range(0..districts.len())];
                let work = around(&mut rng, district, 800.0);
                Person {
                    home,
                    work,
                    at: home,
                    activity: Activity::Still(rng.random_range(0.0..300.0)),
                }
            })
            .collect();
        let friends = Self::friend_graph(config, &people, &mut rng);
        City {
            config: config.clone(),
            people,
            friends,
            rng,
        }
    }

    /// `degree × people / 2` pairs: a `local_share` of them between people living within
    /// `local_km` of each other (found through a grid of homes), the rest at random.
    fn friend_graph(config: &CityConfig, people: &[Person], rng: &mut StdRng) -> Vec<Vec<u32>> {
        let n = people.len();
        let mut friends = vec![Vec::new(); n];
        if n < 2 {
            return friends;
        }
        let cell = config.local_km * 1_000.0;
        let key = |p: Xy| ((p.0 / cell).floor() as i64, (p.1 / cell).floor() as i64);
        let mut grid: std::collections::HashMap<(i64, i64), Vec<u32>> = Default::default();
        for (i, p) in people.iter().enumerate() {
            grid.entry(key(p.home)).or_default().push(i as u32);
        }
        let want = n * config.degree.min(n - 1) / 2;
        let mut pairs: HashSet<(u32, u32)> = HashSet::with_capacity(want);
        let mut attempts = 0;
        while pairs.len() < want && attempts < want * 20 {
            attempts += 1;
            let a = rng.random_range(0..n) as u32;
            let b = if rng.random_bool(config.local_share.clamp(0.0, 1.0)) {
                let (cx, cy) = key(people[a as usize].home);
                let (dx, dy) = (rng.random_range(-1..=1), rng.random_range(-1..=1));
                let Some(near) = grid.get(&(cx + dx, cy + dy)) else {
                    continue;
                };
                let b = near[rng.random_range(0..near.len())];
                if distance(people[a as usize].home, people[b as usize].home) > cell {
                    continue;
                }
                b
            } else {
                rng.random_range(0..n) as u32
            };
            if a != b && pairs.insert((a.min(b), a.max(b))) {
                friends[a as usize].push(b);
                friends[b as usize].push(a);
            }
        }
        friends
    }

    /// How many people.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// Whether the city is empty.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Person `i`'s friends (indexes).
    pub fn friends(&self, i: usize) -> &[u32] {
        &self.friends[i]
    }

    /// Friends per person, on average.
    pub fn mean_degree(&self) -> f64 {
        let total: usize = self.friends.iter().map(Vec::len).sum();
        total as f64 / self.people.len().max(1) as f64
    }

    /// Person `i`'s position now, WGS84 degrees.
    pub fn position(&self, i: usize) -> (f64, f64) {
        self.to_degrees(self.people[i].at)
    }

    fn to_degrees(&self, (x, y): Xy) -> (f64, f64) {
        let lat0 = self.config.center_lat;
        (
            lat0 + y / M_PER_DEG,
            self.config.center_lon + x / (M_PER_DEG * lat0.to_radians().cos()),
        )
    }

    /// Moves person `i` on by `dt` seconds and returns where they are, WGS84 degrees.
    pub fn step(&mut self, i: usize, mut dt: f64) -> (f64, f64) {
        while dt > 0.0 {
            let p = &self.people[i];
            match p.activity {
                Activity::Still(left) if left > dt => {
                    self.people[i].activity = Activity::Still(left - dt);
                    dt = 0.0;
                }
                Activity::Still(left) => {
                    dt -= left;
                    let to = self.next_destination(i);
                    let far = distance(self.people[i].at, to);
                    let speed = if far < WALK_MAX_M {
                        WALK_MPS
                    } else {
                        self.rng.random_range(8.0..15.0)
                    };
                    self.people[i].activity = Activity::Going { to, speed };
                }
                Activity::Going { to, speed } => {
                    let far = distance(p.at, to);
                    let reach = speed * dt;
                    if reach >= far {
                        dt -= far / speed;
                        self.people[i].at = to;
                        let stay = self.rng.random_range(60.0..900.0);
                        self.people[i].activity = Activity::Still(stay);
                    } else {
                        let f = reach / far;
                        let at = p.at;
                        self.people[i].at = (at.0 + (to.0 - at.0) * f, at.1 + (to.1 - at.1) * f);
                        dt = 0.0;
                    }
                }
            }
        }
        self.position(i)
    }

    /// Where person `i` goes next: work from home, home from work, or an errand nearby.
    fn next_destination(&mut self, i: usize) -> Xy {
        let p = &self.people[i];
        let half = self.config.side_km * 500.0;
        if self.rng.random_bool(0.3) {
            let (dx, dy) = (
                self.rng.random_range(-2_000.0..2_000.0),
                self.rng.random_range(-2_000.0..2_000.0),
            );
            (
                (p.at.0 + dx).clamp(-half, half),
                (p.at.1 + dy).clamp(-half, half),
            )
        } else if distance(p.at, p.home) < 100.0 {
            p.work
        } else {
            p.home
        }
    }

    /// The share of friend pairs now within `radius_m` of each other (great-circle distance).
    pub fn share_within(&self, radius_m: f64) -> f64 {
        let (mut near, mut all) = (0usize, 0usize);
        for (a, list) in self.friends.iter().enumerate() {
            for &b in list {
                if (b as usize) < a {
                    continue;
                }
                all += 1;
                let (p, q) = (self.position(a), self.position(b as usize));
                if nearby_common::geo::haversine_m(p.0, p.1, q.0, q.1) <= radius_m {
                    near += 1;
                }
            }
        }
        near as f64 / all.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(people: usize, degree: usize) -> CityConfig {
        CityConfig {
            people,
            degree,
            side_km: 30.0,
            local_share: 0.7,
            local_km: 5.0,
            center_lat: 37.7749,
            center_lon: -122.4194,
            seed: 7,
        }
    }

    #[test]
    fn friendship_is_mutual_and_the_degree_is_as_asked() {
        let city = City::new(&config(2_000, 50));
        assert!(
            (city.mean_degree() - 50.0).abs() < 1.0,
            "{}",
            city.mean_degree()
        );
        for a in 0..city.len() {
            for &b in city.friends(a) {
                assert!(city.friends(b as usize).contains(&(a as u32)));
                assert_ne!(b as usize, a);
            }
        }
    }

    #[test]
    fn friends_cluster_so_many_are_within_five_miles() {
        let clustered = City::new(&config(2_000, 50));
        let random = City::new(&CityConfig {
            local_share: 0.0,
            ..config(2_000, 50)
        });
        let (c, r) = (
            clustered.share_within(8_046.72),
            random.share_within(8_046.72),
        );
        assert!(c > r + 0.2, "clustered {c:.2} vs random {r:.2}");
    }

    #[test]
    fn people_walk_and_drive_at_human_speeds_and_stay_in_town() {
        let mut city = City::new(&config(300, 10));
        let half = 15_000.0 + 1.0;
        let mut moved = 0;
        for _ in 0..200 {
            for i in 0..city.len() {
                let before = city.position(i);
                let after = city.step(i, 5.0);
                let d = nearby_common::geo::haversine_m(before.0, before.1, after.0, after.1);
                assert!(d <= 15.0 * 5.0 + 1.0, "{d} m in 5 s");
                moved += usize::from(d > 0.0);
                let (x, y) = city.people[i].at;
                assert!(x.abs() <= half && y.abs() <= half);
            }
        }
        assert!(moved > 300 * 200 / 10, "hardly anyone moved: {moved}");
    }

    #[test]
    fn the_same_seed_makes_the_same_city() {
        let (a, b) = (City::new(&config(500, 20)), City::new(&config(500, 20)));
        assert_eq!(a.friends, b.friends);
        assert_eq!(a.position(17), b.position(17));
    }
}
