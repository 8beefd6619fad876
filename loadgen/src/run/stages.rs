//! What the stages cost over the measured run: their CPU time and the gateway's memory, read
//! from /proc at fixed points of the run, with this process's own CPU and the machine's load.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::SessionArgs;
use crate::procfs;

/// One stage's CPU time over the measured run.
#[derive(Debug, Clone, Serialize)]
pub struct StageCpu {
    /// Its pid.
    pub pid: u32,
    /// CPU seconds (user + system) used during the run.
    pub cpu_s: f64,
    /// CPU seconds per million reports sent.
    pub cpu_s_per_million_reports: Option<f64>,
}

/// The per-stage costs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    /// Per stage (`gateway`, `fanout`, `history_sink`), those found, and their parts by thread
    /// (`gateway.deliveries`, `gateway.workers`, `gateway.kafka`, `fanout.kafka`, ...).
    pub stages: BTreeMap<String, StageCpu>,
    /// Deliveries received per CPU-second of gateway + fanout.
    pub deliveries_per_cpu_s_gateway_fanout: Option<f64>,
    /// Gateway VmRSS before connecting, KiB.
    pub gateway_rss_before_kib: Option<u64>,
    /// Gateway VmRSS once every socket was open (before any report), KiB.
    pub gateway_rss_connected_kib: Option<u64>,
    /// Gateway VmRSS at the end of the run, KiB.
    pub gateway_rss_end_kib: Option<u64>,
    /// (connected − before) / sockets opened, bytes.
    pub gateway_rss_bytes_per_connection: Option<f64>,
    /// This load generator's own CPU seconds during the run.
    pub loadgen_cpu_s: Option<f64>,
    /// How busy the whole machine was during the run, share of all cores.
    pub machine_busy: Option<f64>,
    /// Cores of the machine.
    pub machine_cores: usize,
    /// The same costs from the end of the first interval (when everyone has reported once,
    /// their first pages are served and fanout knows their friends) to the end of the run:
    /// the steady state, with the one-off work of people becoming active left out.
    pub steady: Option<SteadyCosts>,
}

/// The stages' costs over the steady part of the run (see [`Costs::steady`]).
#[derive(Debug, Clone, Serialize)]
pub struct SteadyCosts {
    /// Seconds after the start of the measured run where it begins.
    pub from_s: f64,
    /// Its length, seconds.
    pub seconds: f64,
    /// Reports sent in it.
    pub reports: u64,
    /// `friend_location`s received in it.
    pub deliveries: u64,
    /// CPU seconds per stage and part, as in [`Costs::stages`].
    pub cpu_s: BTreeMap<String, f64>,
    /// Deliveries received per CPU-second of gateway + fanout.
    pub deliveries_per_cpu_s_gateway_fanout: Option<f64>,
    /// How busy the whole machine was, share of all cores.
    pub machine_busy: Option<f64>,
    /// Per stage and part: times its threads blocked and were woken again, per report sent
    /// (voluntary context switches). What a report costs in thread hand-offs.
    pub wakeups_per_report: BTreeMap<String, f64>,
    /// Per stage and part: times the scheduler took the core from its threads, per report sent
    /// (involuntary context switches: another thread woken on the same core, say).
    pub preemptions_per_report: BTreeMap<String, f64>,
}

/// The readings at the start of the steady part: when, the counts so far, the CPU counters.
#[derive(Debug)]
struct SteadyMark {
    at: Instant,
    from_s: f64,
    reports: u64,
    deliveries: u64,
    cpu: BTreeMap<String, f64>,
    switches: BTreeMap<String, (u64, u64)>,
    machine: Option<(u64, u64)>,
}

/// The stages' pids (unless `--no-costs`); a stage not found is left out, with a warning.
fn stage_pids(args: &SessionArgs) -> BTreeMap<String, u32> {
    let mut pids = BTreeMap::new();
    if args.no_costs {
        return pids;
    }
    for (stage, given, program) in [
        ("gateway", args.gateway_pid, "nearby-gateway"),
        ("fanout", args.fanout_pid, "nearby-fanout"),
        ("history_sink", args.sink_pid, "nearby-history-sink"),
    ] {
        match given.map_or_else(|| procfs::pid_named(program), Ok) {
            Ok(pid) => {
                pids.insert(stage.to_owned(), pid);
            }
            Err(e) => eprintln!("loadgen: no CPU reading for {stage}: {e:#}"),
        }
    }
    pids
}

/// Each stage's CPU seconds so far, and parts of it by thread: `<stage>.kafka` (the Kafka
/// client's threads, `rdk:*`), `<stage>.workers` (the async runtime's workers: for the gateway,
/// report intake, sessions, pages and pings) and `gateway.deliveries` (the gateway's delivery
/// reader: decoding, frames and socket writes). Threads that ended are in the stage's total only.
fn cpu(pids: &BTreeMap<String, u32>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (stage, pid) in pids {
        let pid = pid.to_string();
        let Some(total) = procfs::cpu_secs(&pid) else {
            continue;
        };
        out.insert(stage.clone(), total);
        for (thread, secs) in procfs::thread_cpu_secs(&pid) {
            if let Some(part) = part_of(&thread) {
                *out.entry(format!("{stage}.{part}")).or_insert(0.0) += secs;
            }
        }
    }
    out
}

/// The part of a stage a thread's work counts in, by the thread's name.
fn part_of(thread: &str) -> Option<&'static str> {
    if thread.starts_with("rdk:") {
        Some("kafka")
    } else if thread.starts_with("tokio-rt") {
        Some("workers")
    } else if thread == "gw-deliveries" {
        Some("deliveries")
    } else {
        None
    }
}

/// Each stage's context switches so far (voluntary, involuntary), the whole process's and by
/// part as in [`cpu`], of the threads running now.
fn switches(pids: &BTreeMap<String, u32>) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (stage, pid) in pids {
        for (thread, (vol, invol)) in procfs::thread_switches(&pid.to_string()) {
            let keys = [
                Some(stage.clone()),
                part_of(&thread).map(|p| format!("{stage}.{p}")),
            ];
            for key in keys.into_iter().flatten() {
                let e = out.entry(key).or_insert((0, 0));
                *e = (e.0 + vol, e.1 + invol);
            }
        }
    }
    out
}

/// The readings taken up to the end of the measured run: where the stages are, the gateway's
/// memory before and after the sockets opened, and the CPU counters at the start.
#[derive(Debug)]
pub(crate) struct CostMeter {
    pids: BTreeMap<String, u32>,
    /// The gateway's pid as /proc names it.
    gateway_pid: Option<String>,
    rss_before: Option<u64>,
    rss_connected: Option<u64>,
    cpu_before: BTreeMap<String, f64>,
    my_cpu_before: Option<f64>,
    machine_before: Option<(u64, u64)>,
    steady: Option<SteadyMark>,
}

impl CostMeter {
    /// Finds the stages and reads the gateway's memory before any socket opens.
    pub(crate) fn new(args: &SessionArgs) -> Self {
        let pids = stage_pids(args);
        let gateway_pid = pids.get("gateway").map(u32::to_string);
        let mut meter = Self {
            pids,
            gateway_pid,
            rss_before: None,
            rss_connected: None,
            cpu_before: BTreeMap::new(),
            my_cpu_before: None,
            machine_before: None,
            steady: None,
        };
        meter.rss_before = meter.gateway_rss();
        meter
    }

    /// The gateway's VmRSS now, KiB.
    fn gateway_rss(&self) -> Option<u64> {
        self.gateway_pid
            .as_deref()
            .and_then(|p| procfs::vm_kib(p, "VmRSS").ok())
    }

    /// Each stage's CPU seconds now (user + system), by stage name, for a reading over part of
    /// the run (a step of `ramp`).
    pub(crate) fn stage_cpu_now(&self) -> BTreeMap<String, f64> {
        cpu(&self.pids)
    }

    /// Reads the gateway's memory once every socket is open.
    pub(crate) fn on_connected(&mut self) {
        self.rss_connected = self.gateway_rss();
    }

    /// Reads the CPU counters as the measured run starts.
    pub(crate) fn on_start(&mut self) {
        self.cpu_before = cpu(&self.pids);
        self.my_cpu_before = procfs::cpu_secs("self");
        self.machine_before = procfs::machine_ticks();
    }

    /// Reads the CPU counters as the steady part of the run starts, `from_s` seconds into it,
    /// with `reports` sent and `deliveries` received so far.
    pub(crate) fn on_steady(&mut self, from_s: f64, reports: u64, deliveries: u64) {
        self.steady = Some(SteadyMark {
            at: Instant::now(),
            from_s,
            reports,
            deliveries,
            cpu: cpu(&self.pids),
            switches: switches(&self.pids),
            machine: procfs::machine_ticks(),
        });
    }

    /// Reads them again, and the gateway's memory, as the measured run ends.
    pub(crate) fn on_end(mut self) -> CostReadings {
        let cpu_after = cpu(&self.pids);
        let steady = self.steady.take().map(|mark| SteadyReading {
            seconds: mark.at.elapsed().as_secs_f64(),
            busy: procfs::busy_share(mark.machine),
            cpu_s: since(&mark.cpu, &cpu_after),
            switches: switches(&self.pids)
                .into_iter()
                .filter_map(|(k, (v, i))| {
                    let (v0, i0) = mark.switches.get(&k)?;
                    Some((k, (v.saturating_sub(*v0), i.saturating_sub(*i0))))
                })
                .collect(),
            mark,
        });
        let my_cpu = procfs::cpu_secs("self")
            .zip(self.my_cpu_before)
            .map(|(a, b)| a - b);
        let machine_busy = procfs::busy_share(self.machine_before);
        let rss_end = self.gateway_rss();
        CostReadings {
            meter: self,
            cpu_after,
            my_cpu,
            machine_busy,
            steady,
            rss_end,
        }
    }
}

/// Every reading of the run, waiting for its counts to become [`Costs`].
#[derive(Debug)]
pub(crate) struct CostReadings {
    meter: CostMeter,
    cpu_after: BTreeMap<String, f64>,
    my_cpu: Option<f64>,
    machine_busy: Option<f64>,
    steady: Option<SteadyReading>,
    rss_end: Option<u64>,
}

/// The steady part's readings at the end: its start mark, its length, the machine's busy share
/// and each stage's CPU seconds over it.
#[derive(Debug)]
struct SteadyReading {
    mark: SteadyMark,
    seconds: f64,
    busy: Option<f64>,
    cpu_s: BTreeMap<String, f64>,
    switches: BTreeMap<String, (u64, u64)>,
}

/// CPU seconds per stage and part between two readings (those in both).
fn since(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(stage, b)| before.get(stage).map(|a| (stage.clone(), b - a)))
        .collect()
}

/// `deliveries` per CPU-second of gateway + fanout, from CPU seconds by stage.
#[allow(clippy::cast_precision_loss)]
fn deliveries_per_cpu_s(deliveries: u64, cpu_s: &BTreeMap<String, f64>) -> Option<f64> {
    let gw_fanout: Option<f64> = ["gateway", "fanout"]
        .iter()
        .map(|s| cpu_s.get(*s).copied())
        .sum();
    gw_fanout
        .filter(|&s| s > 0.0)
        .map(|s| deliveries as f64 / s)
}

impl CostReadings {
    /// The costs of a run that sent `reports` and received `friend_locations` over `connected`
    /// sockets.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn costs(self, reports: u64, friend_locations: u64, connected: usize) -> Costs {
        let m = self.meter;
        let run_cpu = since(&m.cpu_before, &self.cpu_after);
        let mut stages = BTreeMap::new();
        // Stages and their parts by thread (`gateway.deliveries`, ...).
        for (stage, &cpu_s) in &run_cpu {
            let process = stage.split('.').next().unwrap_or(stage);
            if let Some(pid) = m.pids.get(process) {
                stages.insert(
                    stage.clone(),
                    StageCpu {
                        pid: *pid,
                        cpu_s,
                        cpu_s_per_million_reports: (reports > 0)
                            .then(|| cpu_s * 1e6 / reports as f64),
                    },
                );
            }
        }
        let steady = self.steady.map(|r| {
            let deliveries = friend_locations.saturating_sub(r.mark.deliveries);
            let sent = reports.saturating_sub(r.mark.reports).max(1) as f64;
            let per_report = |pick: fn(&(u64, u64)) -> u64| {
                r.switches
                    .iter()
                    .map(|(k, v)| (k.clone(), pick(v) as f64 / sent))
                    .collect()
            };
            SteadyCosts {
                wakeups_per_report: per_report(|v| v.0),
                preemptions_per_report: per_report(|v| v.1),
                from_s: r.mark.from_s,
                seconds: r.seconds,
                reports: reports.saturating_sub(r.mark.reports),
                deliveries,
                deliveries_per_cpu_s_gateway_fanout: deliveries_per_cpu_s(deliveries, &r.cpu_s),
                cpu_s: r.cpu_s,
                machine_busy: r.busy,
            }
        });
        Costs {
            deliveries_per_cpu_s_gateway_fanout: deliveries_per_cpu_s(friend_locations, &run_cpu),
            stages,
            gateway_rss_before_kib: m.rss_before,
            gateway_rss_connected_kib: m.rss_connected,
            gateway_rss_end_kib: self.rss_end,
            gateway_rss_bytes_per_connection: m
                .rss_before
                .zip(m.rss_connected)
                .filter(|_| connected > 0)
                .map(|(b, a)| (a as f64 - b as f64) * 1024.0 / connected as f64),
            loadgen_cpu_s: self.my_cpu,
            machine_busy: self.machine_busy,
            machine_cores: std::thread::available_parallelism().map_or(0, usize::from),
            steady,
        }
    }
}
