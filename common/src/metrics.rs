//! Prometheus metrics: each process keeps one registry of its counters and gauges and serves it
//! as Prometheus text (format 0.0.4) on its admin port's `/metrics`.

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
pub use prometheus_client::metrics::counter::{ConstCounter, Counter};
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of one string label, for families like `reports_total{result="accepted"}`.
pub type Label = Vec<(&'static str, String)>;

/// The registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// A registry of values read once, for a process whose counters live elsewhere (atomics shared
/// with its loop): each scrape builds one and renders it.
#[derive(Debug)]
pub struct Snapshot(Registry);

impl Snapshot {
    /// An empty snapshot whose metric names start with `prefix_`.
    pub fn new(prefix: &str) -> Self {
        Snapshot(Registry::with_prefix(prefix))
    }

    /// Adds a counter (its name gets `_total`).
    pub fn counter(mut self, name: &str, help: &str, value: u64) -> Self {
        self.0.register(name, help, ConstCounter::new(value));
        self
    }

    /// Adds a gauge.
    pub fn gauge(mut self, name: &str, help: &str, value: i64) -> Self {
        self.0.register(name, help, ConstGauge::new(value));
        self
    }

    /// Adds a gauge family with one label, a value per label value (per-partition lag, say:
    /// `name{partition="3"} 12`). Label values must be few (partitions, kinds), never user ids.
    pub fn gauges(
        mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: &[(String, i64)],
    ) -> Self {
        let family: Family<Label, Gauge> = Family::default();
        for (value, n) in values {
            family.get_or_create(&vec![(label, value.clone())]).set(*n);
        }
        self.0.register(name, help, family);
        self
    }

    /// The snapshot as Prometheus text.
    pub fn render(&self) -> String {
        render(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_labelled_families_render_as_prometheus_text() {
        let mut registry = Registry::with_prefix("nearby_test");
        let reports: Family<Label, Counter> = Family::default();
        registry.register("reports", "Reports by result", reports.clone());
        let open = Gauge::<i64>::default();
        registry.register("connections", "Open sockets", open.clone());
        reports
            .get_or_create(&vec![("result", "accepted".to_owned())])
            .inc_by(3);
        open.set(2);
        let text = render(&registry);
        assert!(
            text.contains("# TYPE nearby_test_reports_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("nearby_test_reports_total{result=\"accepted\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("nearby_test_connections 2\n"), "{text}");
    }

    #[test]
    fn a_snapshot_renders_its_values() {
        let text = Snapshot::new("nearby_x")
            .counter("rows", "Rows written", 7)
            .gauge("in_flight", "Writes in flight", 3)
            .render();
        assert!(
            text.contains("# TYPE nearby_x_rows_total counter\n"),
            "{text}"
        );
        assert!(text.contains("nearby_x_rows_total 7\n"), "{text}");
        assert!(text.contains("nearby_x_in_flight 3\n"), "{text}");
    }

    #[test]
    fn a_snapshot_renders_one_gauge_per_label_value() {
        let text = Snapshot::new("nearby_x")
            .gauges(
                "lag",
                "Records behind",
                "partition",
                &[("0".into(), 5), ("1".into(), 0)],
            )
            .render();
        assert!(text.contains("# TYPE nearby_x_lag gauge\n"), "{text}");
        assert!(text.contains("nearby_x_lag{partition=\"0\"} 5\n"), "{text}");
        assert!(text.contains("nearby_x_lag{partition=\"1\"} 0\n"), "{text}");
    }
}
